//! Every entry point of every `shaders/*.wgsl` translated by naga's own back ends for
//! the three native APIs wgpu drives: SPIR-V (Vulkan; 1.0 and 1.6, each validated by
//! `spirv-val`), MSL (Metal 2.0) and HLSL (DX12, shader models 5.1 for FXC and 6.0 for
//! DXC), with the options wgpu uses (bounds checks on, zeroed workgroup memory, loop
//! bounding) and one resource binding per WGSL binding.
//!
//! The override constants are those of the pipelines the trainer's launchers actually
//! create: the GAN's and the classifier's training steps are compiled on a wgpu context
//! under each kernel setting, each instruction also with every candidate `gan-gpu tune`
//! may keep for it, and every (shader, entry point, constants) in its pipeline cache is
//! translated. Entry points the trainer never uses get their WGSL defaults. A
//! failure here is fixed in the shader.
//!
//! The HLSL gets a second compiler: glslang's HLSL front end (`glslangValidator -D`,
//! Debian's `glslang-tools`) compiles it to SPIR-V, which `spirv-val` checks. Debian 12's
//! `vkd3d-compiler` (1.2) cannot serve: it only reads DXBC bytecode
//! (`--print-source-types` lists dxbc-tpf alone), not HLSL, and Microsoft's FXC and DXC
//! are not packaged. glslang lacks one HLSL idiom that naga emits to zero arrays,
//! `(float[N])0` (FXC and DXC accept it); files whose only errors are on such lines are
//! counted as not compiled by glslang, any other error fails. Metal has no compiler off
//! Apple machines: naga's MSL output is the check there.
//!
//! Without `spirv-val` or `glslangValidator` the translations are still written, with a
//! SKIP line, unless `GAN_GPU_REQUIRE_SHADER_TOOLS=1` (set by `.ci/run`, which installs
//! `spirv-tools` and `glslang-tools`) makes that a failure.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use gan_gpu::gpu::testing::REQUIRE_ADAPTER_ENV;
use gan_gpu::gpu::{AdapterRequest, GpuContext, KernelChoice, KernelSettings, Knobs, Shader};
use gan_gpu::graph::Executor;
use gan_gpu::graph::RandomStreams;
use gan_gpu::graph::gpu_exec::GpuExecutor;
use gan_gpu::selftest::plans;
use naga::back::{hlsl, msl, spv};
use naga::valid::{Capabilities, ValidationFlags, Validator};

const REQUIRE_TOOLS_ENV: &str = "GAN_GPU_REQUIRE_SHADER_TOOLS";

/// Override values by name, as bit patterns so sets of them order and compare.
type Constants = Vec<(String, u64)>;

/// (file, entry point) -> the constant sets to translate it with.
type Translations = BTreeMap<(&'static str, String), BTreeSet<Constants>>;

fn required(var: &str) -> bool {
    std::env::var(var).is_ok_and(|v| v == "1")
}

/// Pipelines as (shader, entry, constants).
type Pipelines = BTreeSet<(&'static str, String, Constants)>;

/// The pipelines the trainer builds under `choice` with the defaults, and those with every
/// tuning candidate as well, or `None` without an adapter.
fn trainer_pipelines(choice: KernelChoice) -> Option<(Pipelines, Pipelines)> {
    let ctx = match GpuContext::new(&AdapterRequest::default()) {
        Ok(ctx) => Arc::new(ctx.with_kernels(choice)),
        Err(e) => {
            assert!(
                !required(REQUIRE_ADAPTER_ENV),
                "{REQUIRE_ADAPTER_ENV}=1 but {e}"
            );
            eprintln!("SKIP: no wgpu adapter, the trainer's constants not collected ({e})");
            return None;
        }
    };
    let mut steps = plans::model_steps(100, 100).unwrap();
    steps.push(plans::classifier_step().unwrap());
    let mut executors = Vec::new();
    for plan in steps {
        let mut exec = GpuExecutor::new(
            Arc::clone(&ctx),
            &plan.graph,
            plan.optimizers.clone(),
            Some(Arc::clone(&plan.dataset)),
            RandomStreams { seed: 0 },
        )
        .unwrap();
        exec.compile(&plan.instrs).unwrap();
        executors.push((exec, plan));
    }
    let defaults = compiled(&ctx);
    // And every candidate `tune` may keep for these instructions on some adapter.
    for (exec, plan) in &mut executors {
        for instr in &plan.instrs {
            let one = std::slice::from_ref(instr);
            ctx.take_sites();
            exec.compile(one).unwrap();
            for (site, candidates) in ctx.take_sites() {
                for knobs in candidates {
                    ctx.set_knobs(&site, knobs);
                    exec.compile(one).unwrap();
                }
                ctx.set_knobs(&site, Knobs::default());
            }
        }
    }
    Some((defaults, compiled(&ctx)))
}

/// The (shader, entry, constants) of every pipeline `ctx` has built.
fn compiled(ctx: &GpuContext) -> Pipelines {
    ctx.pipelines
        .compiled()
        .iter()
        .map(|k| {
            let constants = k
                .constants
                .iter()
                .map(|&(n, v)| (n.to_string(), v.to_bits()));
            (
                k.shader.file_name(),
                k.entry.to_string(),
                constants.collect(),
            )
        })
        .collect()
}

fn parse(shader: Shader) -> (naga::Module, naga::valid::ModuleInfo) {
    let module = naga::front::wgsl::parse_str(shader.source()).unwrap();
    let info = Validator::new(ValidationFlags::all(), Capabilities::empty())
        .validate(&module)
        .unwrap();
    (module, info)
}

/// Every entry point with the constant sets it is translated with.
fn translations() -> Translations {
    let mut out = Translations::new();
    for &shader in Shader::ALL {
        for entry in &parse(shader).0.entry_points {
            out.insert((shader.file_name(), entry.name.clone()), BTreeSet::new());
        }
    }
    let mut by_setting = BTreeMap::new();
    for (choice, setting) in [
        (KernelChoice::Gpu, KernelSettings::Gpu),
        (KernelChoice::Software, KernelSettings::Software),
    ] {
        let Some((defaults, pipelines)) = trainer_pipelines(choice) else {
            break;
        };
        for (file, entry, constants) in &pipelines {
            out.get_mut(&(*file, entry.clone()))
                .unwrap_or_else(|| panic!("{file} has no entry point {entry}"))
                .insert(constants.clone());
        }
        by_setting.insert(format!("{setting:?}"), defaults);
    }
    if let (Some(gpu), Some(software)) = (by_setting.get("Gpu"), by_setting.get("Software")) {
        // The switch works: the settings build different pipelines.
        let has = |set: &Pipelines, entry: &str, wg: Option<u64>| {
            set.iter().any(|(_, e, c)| {
                e == entry && wg.is_none_or(|wg| c.contains(&("WG".into(), (wg as f64).to_bits())))
            })
        };
        assert!(has(gpu, "gemm_tiled", None) && !has(software, "gemm_tiled", None));
        assert!(has(gpu, "conv_forward_vec4", Some(64)));
        assert!(has(software, "conv_forward_vec4", Some(16)));
        // The gpu settings narrow a small convolution's workgroup (down to 16) to keep 128
        // workgroups; the software settings never widen it.
        assert!(!has(software, "conv_forward_vec4", Some(64)));
    }
    // Unused by the trainer: the WGSL defaults.
    for sets in out.values_mut() {
        if sets.is_empty() {
            sets.insert(Constants::new());
        }
    }
    out
}

fn out_dir() -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("shader-translations");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// The module reduced to `entry` with `constants` applied, as wgpu does per pipeline.
fn specialise(
    shader: Shader,
    entry: &str,
    constants: &Constants,
) -> Result<(naga::Module, naga::valid::ModuleInfo), String> {
    let (module, info) = parse(shader);
    let values: naga::back::PipelineConstants = constants
        .iter()
        .map(|(n, bits)| (n.clone(), f64::from_bits(*bits)))
        .collect();
    let stage = Some((naga::ShaderStage::Compute, entry));
    naga::back::pipeline_constants::process_overrides(&module, &info, stage, &values)
        .map(|(m, i)| (m.into_owned(), i.into_owned()))
        .map_err(|e| format!("overrides: {e}"))
}

/// The bound globals: (binding, whether the shader may write it).
fn bindings(module: &naga::Module) -> Vec<(naga::ResourceBinding, bool)> {
    module
        .global_variables
        .iter()
        .filter_map(|(_, g)| {
            let writable = matches!(g.space, naga::AddressSpace::Storage { access }
                if access.contains(naga::StorageAccess::STORE));
            g.binding.map(|b| (b, writable))
        })
        .collect()
}

fn restrict() -> naga::proc::BoundsCheckPolicies {
    let r = naga::proc::BoundsCheckPolicy::Restrict;
    naga::proc::BoundsCheckPolicies {
        index: r,
        buffer: r,
        image_load: r,
        binding_array: naga::proc::BoundsCheckPolicy::Unchecked,
    }
}

fn spirv(
    module: &naga::Module,
    info: &naga::valid::ModuleInfo,
    entry: &str,
    lang: (u8, u8),
) -> Result<Vec<u32>, String> {
    let options = spv::Options {
        lang_version: lang,
        bounds_check_policies: restrict(),
        fake_missing_bindings: false,
        binding_map: bindings(module)
            .into_iter()
            .map(|(b, _)| {
                let target = spv::BindingInfo {
                    descriptor_set: b.group,
                    binding: b.binding,
                    binding_array_size: None,
                };
                (b, target)
            })
            .collect(),
        ..spv::Options::default()
    };
    let pipeline = spv::PipelineOptions {
        shader_stage: naga::ShaderStage::Compute,
        entry_point: entry.to_string(),
    };
    spv::write_vec(module, info, &options, Some(&pipeline)).map_err(|e| format!("SPIR-V: {e}"))
}

fn metal(
    module: &naga::Module,
    info: &naga::valid::ModuleInfo,
    entry: &str,
) -> Result<String, String> {
    let bound = bindings(module);
    let resources = bound
        .iter()
        .map(|&(b, mutable)| {
            let target = msl::BindTarget {
                buffer: Some(b.binding as u8),
                mutable,
                ..Default::default()
            };
            (b, target)
        })
        .collect();
    let options = msl::Options {
        lang_version: (2, 0),
        per_entry_point_map: [(
            entry.to_string(),
            msl::EntryPointResources {
                resources,
                immediates_buffer: None,
                sizes_buffer: Some(bound.len() as u8),
            },
        )]
        .into(),
        fake_missing_bindings: false,
        bounds_check_policies: restrict(),
        ..msl::Options::default()
    };
    let pipeline = msl::PipelineOptions {
        entry_point: Some((naga::ShaderStage::Compute, entry.to_string())),
        ..Default::default()
    };
    msl::write_string(module, info, &options, &pipeline)
        .map(|(text, _)| text)
        .map_err(|e| format!("MSL: {e}"))
}

/// The HLSL text and its entry point's name there (naga renames some).
fn hlsl(
    module: &naga::Module,
    info: &naga::valid::ModuleInfo,
    entry: &str,
    model: hlsl::ShaderModel,
) -> Result<(String, String), String> {
    let bound = bindings(module);
    // wgpu's DX12 layouts always carry the special constants (num_workgroups lives
    // there: HLSL has no semantic for it), in the CBV register after the bindings'.
    let special = bound.iter().map(|(b, _)| b.binding + 1).max().unwrap_or(0);
    let options = hlsl::Options {
        shader_model: model,
        special_constants_binding: Some(hlsl::BindTarget {
            space: 0,
            register: special,
            binding_array_size: None,
            dynamic_storage_buffer_offsets_index: None,
            restrict_indexing: false,
        }),
        binding_map: bound
            .into_iter()
            .map(|(b, _)| {
                let target = hlsl::BindTarget {
                    space: b.group as u8,
                    register: b.binding,
                    binding_array_size: None,
                    dynamic_storage_buffer_offsets_index: None,
                    restrict_indexing: false,
                };
                (b, target)
            })
            .collect(),
        fake_missing_bindings: false,
        ..hlsl::Options::default()
    };
    let pipeline = hlsl::PipelineOptions {
        entry_point: Some((naga::ShaderStage::Compute, entry.to_string())),
    };
    let mut text = String::new();
    let reflection = hlsl::Writer::new(&mut text, &options, &pipeline)
        .write(module, info, None)
        .map_err(|e| format!("HLSL {model:?}: {e}"))?;
    let name = match reflection.entry_point_names.into_iter().next() {
        Some(Ok(name)) => name,
        other => return Err(format!("HLSL {model:?}: entry point name {other:?}")),
    };
    Ok((text, name))
}

/// What glslang made of one HLSL file.
enum Glslang {
    /// Compiled, and the SPIR-V is valid.
    Valid,
    /// Its only errors are on lines zeroing an array with `(T[N])0`.
    ZeroCastUnsupported,
}

/// glslang's HLSL front end on `file` (entry `entry`), then `spirv-val` on its SPIR-V;
/// `None` when glslang is not installed.
fn glslang(file: &Path, entry: &str) -> Option<Result<Glslang, String>> {
    let spv = file.with_extension("hlsl.spv");
    let output = Command::new("glslangValidator")
        .args(["-D", "-S", "comp", "-V", "-e", entry, "-o"])
        .arg(&spv)
        .arg(file)
        .output()
        .ok()?;
    if output.status.success() {
        return Some(match spirv_val(&spv, "vulkan1.0") {
            Some(Ok(())) | None => Ok(Glslang::Valid),
            Some(Err(e)) => Err(format!("glslang's SPIR-V: {e}")),
        });
    }
    let log = String::from_utf8_lossy(&output.stdout).into_owned();
    let source = std::fs::read_to_string(file).unwrap();
    let lines: Vec<&str> = source.lines().collect();
    let prefix = format!("ERROR: {}:", file.display());
    let error_lines: Vec<Option<&str>> = log
        .lines()
        .filter_map(|l| l.strip_prefix(&prefix))
        .map(|rest| {
            let n: usize = rest.split(':').next()?.trim().parse().ok()?;
            lines.get(n.checked_sub(1)?).copied()
        })
        .collect();
    let zero_cast = |line: &str| line.contains("])0;");
    Some(
        if !error_lines.is_empty() && error_lines.iter().all(|l| l.is_some_and(zero_cast)) {
            Ok(Glslang::ZeroCastUnsupported)
        } else {
            Err(format!("glslangValidator {}: {log}", file.display()))
        },
    )
}

/// `spirv-val` on `file`, or `None` when it is not installed.
fn spirv_val(file: &Path, env: &str) -> Option<Result<(), String>> {
    let output = Command::new("spirv-val")
        .args(["--target-env", env])
        .arg(file)
        .output()
        .ok()?;
    Some(if output.status.success() {
        Ok(())
    } else {
        Err(format!(
            "spirv-val --target-env {env} {}: {}{}",
            file.display(),
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        ))
    })
}

#[test]
fn every_entry_point_translates_to_spirv_msl_and_hlsl() {
    let dir = out_dir();
    let mut failures = Vec::new();
    let (mut translated, mut validated, mut missing) = (0, 0, Vec::new());
    let (mut hlsl_compiled, mut hlsl_zero_cast) = (0, 0);
    for ((file, entry), sets) in translations() {
        let shader = *Shader::ALL.iter().find(|s| s.file_name() == file).unwrap();
        for (n, constants) in sets.iter().enumerate() {
            let what = format!("{file}::{entry} with {constants:?}");
            let (module, info) = match specialise(shader, &entry, constants) {
                Ok(m) => m,
                Err(e) => {
                    failures.push(format!("{what}: {e}"));
                    continue;
                }
            };
            let stem = format!("{}.{entry}.{n}", file.trim_end_matches(".wgsl"));
            for (lang, env) in [((1, 0), "vulkan1.0"), ((1, 6), "vulkan1.3")] {
                match spirv(&module, &info, &entry, lang) {
                    Err(e) => failures.push(format!("{what}: {e}")),
                    Ok(words) => {
                        let path = dir.join(format!("{stem}.spv{}{}.spv", lang.0, lang.1));
                        std::fs::write(&path, bytemuck::cast_slice(&words)).unwrap();
                        translated += 1;
                        match spirv_val(&path, env) {
                            None => missing.push("spirv-val (spirv-tools)"),
                            Some(Ok(())) => validated += 1,
                            Some(Err(e)) => failures.push(format!("{what}: {e}")),
                        }
                    }
                }
            }
            match metal(&module, &info, &entry) {
                Ok(text) => {
                    std::fs::write(dir.join(format!("{stem}.metal")), text).unwrap();
                    translated += 1;
                }
                Err(e) => failures.push(format!("{what}: {e}")),
            }
            for model in [hlsl::ShaderModel::V5_1, hlsl::ShaderModel::V6_0] {
                match hlsl(&module, &info, &entry, model) {
                    Ok((text, name)) => {
                        let path = dir.join(format!("{stem}.sm{}.hlsl", model.to_str()));
                        std::fs::write(&path, text).unwrap();
                        translated += 1;
                        match glslang(&path, &name) {
                            None => missing.push("glslangValidator (glslang-tools)"),
                            Some(Ok(Glslang::Valid)) => hlsl_compiled += 1,
                            Some(Ok(Glslang::ZeroCastUnsupported)) => hlsl_zero_cast += 1,
                            Some(Err(e)) => failures.push(format!("{what}: {e}")),
                        }
                    }
                    Err(e) => failures.push(format!("{what}: {e}")),
                }
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    missing.sort();
    missing.dedup();
    for tool in &missing {
        assert!(
            !required(REQUIRE_TOOLS_ENV),
            "{REQUIRE_TOOLS_ENV}=1 but {tool} is not installed"
        );
        eprintln!("SKIP: {tool} not found, its check of the translations not run");
    }
    eprintln!(
        "{translated} translations in {}: {validated} SPIR-V modules valid per spirv-val; \
         {hlsl_compiled} HLSL files compiled by glslang to valid SPIR-V, {hlsl_zero_cast} \
         not compiled by it only for naga's (T[N])0 array zeroing",
        dir.display()
    );
    assert!(translated > 0);
}
