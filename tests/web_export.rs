//! `gan-gpu export-web` end to end. A freshly trained checkpoint exports to a complete
//! site. The bundled demo generator's site is served on 127.0.0.1 and driven in headless
//! Chromium (SwiftShader WebGPU) by `tests/web/drive.mjs`, and what the pages report is
//! checked here: every shader
//! compiles, the page's digits equal the CPU executor's for the same noise and weights
//! (a fixed batch, then after "New noise" and after moving the slider), the page names
//! its adapter, screenshots are PNGs of digits, and a browser without WebGPU gets the
//! explanation instead.
//!
//! Needs Debian's `chromium` and `npm ci --prefix tests/web` (`.ci/run` does both);
//! without them the test prints SKIP, unless `GAN_GPU_REQUIRE_BROWSER=1` makes that a
//! failure.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::{assert_close, run_cli};
use gan_gpu::cpu::normal_noise;
use gan_gpu::gpu::Shader;
use gan_gpu::gpu::testing::test_context;
use gan_gpu::graph::runtime::Runtime;
use gan_gpu::io::checkpoint::load_checkpoint;
use gan_gpu::model::load::{StoredGenerator, generator_from_checkpoint};
use gan_gpu::model::sample::generate_stored;
use serde_json::Value;

const REQUIRE_BROWSER_ENV: &str = "GAN_GPU_REQUIRE_BROWSER";
const NOISE_FILE: &str = "parity-noise.f32";

/// Chromium and the driver's node_modules, or why the test cannot run.
fn browser_setup() -> Result<PathBuf, String> {
    let chromium = std::env::var("GAN_GPU_CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    if !Path::new(&chromium).exists() {
        return Err(format!(
            "no Chromium at {chromium} (apt-get install chromium)"
        ));
    }
    let driver_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/web");
    if !driver_dir.join("node_modules/playwright-core").is_dir() {
        return Err("no tests/web/node_modules (npm ci --prefix tests/web)".into());
    }
    match Command::new("node").arg("--version").output() {
        Ok(out) if out.status.success() => Ok(driver_dir.join("drive.mjs")),
        _ => Err("no `node` on PATH".into()),
    }
}

fn floats(v: &Value, what: &str) -> Vec<f32> {
    v.as_array()
        .unwrap_or_else(|| panic!("{what} is not an array: {v}"))
        .iter()
        .map(|x| x.as_f64().unwrap_or(f64::NAN) as f32)
        .collect()
}

/// Checks a state's digits against the CPU executor on the same noise; returns the
/// largest |page - cpu|.
fn page_vs_cpu(name: &str, state: &Value, stored: &StoredGenerator) -> f32 {
    assert_eq!(
        state["status"], "ready",
        "{name}: the page reported {}",
        state["error"]
    );
    let noise = floats(&state["noise"], "noise");
    let images = floats(&state["images"], "images");
    let labels: Option<Vec<u32>> = state["labels"]
        .as_array()
        .map(|l| l.iter().map(|x| x.as_u64().unwrap() as u32).collect());
    assert_eq!(
        labels.is_some(),
        stored.kind.classes.is_some(),
        "{name}: labels {labels:?} for the {} model",
        stored.kind.name
    );
    let cpu = generate_stored(&Runtime::cpu(), stored, &noise, labels.as_deref()).unwrap();
    assert_eq!(images.len(), cpu.len(), "{name}: digit values");
    assert!(
        images.iter().all(|v| (-1.0..=1.0).contains(v)),
        "{name}: the page drew values outside [-1, 1] (or NaN)"
    );
    let spread = cpu.iter().fold(0.0f32, |m, v| m.max(v.abs()));
    assert!(
        spread > 0.1,
        "{name}: the CPU digits are flat ({spread}); a useless comparison"
    );
    // The project's tolerance for layers (sums of many products, as for the golden vectors):
    // the page and the CPU sum each output in their own orders, through three layers.
    assert_close("page vs CPU executor", name, &images, &cpu, 1e-4, 1e-4);
    images
        .iter()
        .zip(&cpu)
        .map(|(p, c)| (p - c).abs())
        .fold(0.0, f32::max)
}

fn assert_png(path: &Path) -> (u32, u32) {
    let file = std::fs::File::open(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let decoder = png::Decoder::new(std::io::BufReader::new(file));
    let reader = decoder
        .read_info()
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let info = reader.info();
    (info.width, info.height)
}

/// The generator bundled for demos: the default model after its full run (moving average).
const DEMO_GENERATOR: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/docs/demo-generator.safetensors"
);

/// `export-web` of `checkpoint` into `site`, with `--grid` when given.
fn export(checkpoint: &Path, site: &Path, grid: Option<usize>) {
    let grid = grid.map(|g| g.to_string());
    let mut args = vec![
        "export-web",
        "--checkpoint",
        checkpoint.to_str().unwrap(),
        "--out",
        site.to_str().unwrap(),
    ];
    if let Some(grid) = &grid {
        args.extend(["--grid", grid]);
    }
    let exported = run_cli(&args);
    assert!(exported.status.success(), "{exported:?}");
}

fn weights_of(checkpoint: &Path) -> StoredGenerator {
    generator_from_checkpoint(checkpoint, &load_checkpoint(checkpoint).unwrap()).unwrap()
}

/// A freshly trained checkpoint exports to a complete site: the trainer's own shader
/// sources, a plan that binds every generator tensor, and the generator's weights.
#[test]
fn a_trained_checkpoint_exports_to_a_complete_site() {
    if test_context("a_trained_checkpoint_exports_to_a_complete_site").is_none() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (run, site) = (dir.path().join("run"), dir.path().join("site"));
    let trained = run_cli(&[
        "train",
        "--device",
        "cpu",
        "--iterations",
        "3",
        "--out",
        run.to_str().unwrap(),
    ]);
    assert!(trained.status.success(), "{trained:?}");
    let checkpoint = run.join("checkpoint.safetensors");
    export(&checkpoint, &site, None);

    for shader in Shader::ALL {
        let copied =
            std::fs::read_to_string(site.join("shaders").join(shader.file_name())).unwrap();
        assert_eq!(
            copied,
            shader.source(),
            "{} is not the trainer's copy",
            shader.file_name()
        );
    }
    for page in [
        "index.html",
        "app.js",
        "gan.js",
        "check-shaders.html",
        "check-shaders.js",
        "style.css",
    ] {
        assert!(site.join(page).is_file(), "{page} missing");
    }
    // The weights file is a checkpoint of the generator alone, equal to the trained one.
    let exported = site.join("generator.safetensors");
    let (a, b) = (weights_of(&exported), weights_of(&checkpoint));
    assert_eq!((a.kind.name, a.noise_dim), (b.kind.name, b.noise_dim));
    assert_eq!(a.tensors, b.tensors);
    assert_eq!((a.iteration, b.iteration), (Some(3), Some(3)));

    let plan: Value =
        serde_json::from_slice(&std::fs::read(site.join("plan.json")).unwrap()).unwrap();
    assert_eq!(plan["format"], "gan-gpu-web-plan-v1");
    // Without --grid, a row per digit for a class-conditional model (the default one).
    let side = gan_gpu::model::DEFAULT_MODEL.classes.unwrap_or(8);
    assert_eq!(plan["batch"], side * side);
    let buffers = plan["buffers"].as_array().unwrap();
    let mut tensors: Vec<&str> = buffers
        .iter()
        .filter_map(|b| b["tensor"].as_str())
        .collect();
    tensors.sort();
    let ckpt = load_checkpoint(&exported).unwrap();
    let names: Vec<&str> = ckpt.tensors.iter().map(|t| t.name.as_str()).collect();
    assert_eq!(
        tensors, names,
        "the plan must bind every generator tensor once"
    );
    for d in plan["dispatches"].as_array().unwrap() {
        let shader = d["shader"].as_str().unwrap();
        assert!(
            Shader::ALL.iter().any(|s| s.file_name() == shader),
            "{shader}"
        );
        for b in d["bindings"].as_array().unwrap() {
            let buffer = &buffers[b["buffer"].as_u64().unwrap() as usize];
            assert_eq!(
                buffer["uniform"].is_array(),
                b["access"] == "uniform",
                "{d}"
            );
        }
    }
}

/// Exports `checkpoint` with a `grid` x `grid` page and drives it in Chromium with a fixed
/// noise batch: what the driver reports, the exported generator and that noise. `None`
/// (after printing SKIP) without Chromium and the driver, unless CI requires them.
fn drive(
    checkpoint: &Path,
    grid: usize,
    out_name: &str,
) -> Option<(Value, StoredGenerator, Vec<f32>, PathBuf)> {
    let driver = match browser_setup() {
        Ok(driver) => driver,
        Err(reason) => {
            let required = std::env::var(REQUIRE_BROWSER_ENV).is_ok_and(|v| v == "1");
            assert!(!required, "{REQUIRE_BROWSER_ENV}=1 but {reason}");
            eprintln!("SKIP: browser test not run: {reason}");
            return None;
        }
    };
    let dir = tempfile::tempdir().unwrap();
    let site = dir.path().join("site");
    // Screenshots stay in cargo's test scratch folder; docs/web-page.png is a copy.
    let out = Path::new(env!("CARGO_TARGET_TMPDIR")).join(out_name);
    std::fs::create_dir_all(&out).unwrap();
    export(checkpoint, &site, Some(grid));
    let stored = weights_of(&site.join("generator.safetensors"));
    let noise = normal_noise(11, 0, grid * grid * stored.noise_dim);
    std::fs::write(
        site.join(NOISE_FILE),
        bytemuck::cast_slice::<f32, u8>(&noise),
    )
    .unwrap();
    let driven = Command::new("node")
        .arg(&driver)
        .args([&site, &out])
        .arg(NOISE_FILE)
        .output()
        .unwrap();
    assert!(
        driven.status.success(),
        "drive.mjs failed:\n{}\n{}",
        String::from_utf8_lossy(&driven.stdout),
        String::from_utf8_lossy(&driven.stderr)
    );
    let result: Value =
        serde_json::from_slice(&std::fs::read(out.join("result.json")).unwrap()).unwrap();
    Some((result, stored, noise, out))
}

#[test]
fn exported_page_matches_the_cpu_executor_in_headless_chromium() {
    let Some((result, stored, noise, out)) = drive(Path::new(DEMO_GENERATOR), 10, "web-export")
    else {
        return;
    };
    let console = result["console"].to_string();

    let check = &result["shaderCheck"];
    assert_eq!(
        check["status"], "done",
        "shader check: {check:#}\nconsole: {console}"
    );
    let files: Vec<&str> = check["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["file"].as_str().unwrap())
        .collect();
    let all: Vec<&str> = Shader::ALL.iter().map(|s| s.file_name()).collect();
    assert_eq!(files, all, "the check page compiled other files");
    assert_eq!(check["errors"], 0, "Chromium rejects shaders: {check:#}");
    let pipelines = check["pipelines"].as_array().unwrap();
    assert!(
        pipelines.len() >= 20,
        "only {} trainer pipelines",
        pipelines.len()
    );
    assert_eq!(
        check["pipelineErrors"], 0,
        "Chromium rejects pipelines: {check:#}"
    );

    let states = &result["states"];
    let fixed = &states["fixed"];
    let adapter = fixed["adapter"].as_str().unwrap_or_default();
    assert!(
        !adapter.is_empty(),
        "the page names no adapter (status {})",
        fixed["status"]
    );
    assert_eq!(
        floats(&fixed["noise"], "noise"),
        noise,
        "the page ignored ?noise="
    );
    let mut worst = page_vs_cpu("fixed noise", fixed, &stored);

    let new_noise = &states["newNoise"];
    assert_ne!(
        new_noise["noise"], fixed["noise"],
        "New noise kept the noise"
    );
    worst = worst.max(page_vs_cpu("after New noise", new_noise, &stored));

    let halfway = &states["halfway"];
    assert_eq!(halfway["mix"], 0.5);
    assert_ne!(
        halfway["noise"], new_noise["noise"],
        "the slider left the noise alone"
    );
    worst = worst.max(page_vs_cpu("slider at 0.5", halfway, &stored));
    eprintln!(
        "page on {adapter}: max |page - cpu| {worst:e}, {} ms per forward pass",
        fixed["ms"]
    );

    let (w, h) = assert_png(&out.join("page.png"));
    assert!(w >= 600 && h >= 600, "page screenshot is {w}x{h}");
    assert_png(&out.join("check-shaders.png"));

    let no_webgpu = &result["noWebgpu"];
    assert_eq!(no_webgpu["status"], "no-webgpu", "{no_webgpu:#}");
    assert_eq!(no_webgpu["visible"], true, "{no_webgpu:#}");
    assert!(
        no_webgpu["text"]
            .as_str()
            .unwrap_or_default()
            .contains("WebGPU is not available"),
        "{no_webgpu:#}"
    );
    assert_png(&out.join("no-webgpu.png"));
}

#[test]
fn export_web_names_bad_input() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nothing.safetensors");
    let out = run_cli(&[
        "export-web",
        "--checkpoint",
        missing.to_str().unwrap(),
        "--out",
        dir.path().join("site").to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("nothing.safetensors"), "{stderr}");

    let file = dir.path().join("a-file");
    std::fs::write(&file, b"x").unwrap();
    let out = run_cli(&[
        "export-web",
        "--checkpoint",
        missing.to_str().unwrap(),
        "--out",
        file.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("is a file"), "{stderr}");
    assert_eq!(std::fs::read(&file).unwrap(), b"x", "the file was touched");

    let out = run_cli(&[
        "export-web",
        "--checkpoint",
        missing.to_str().unwrap(),
        "--out",
        dir.path().join("site").to_str().unwrap(),
        "--grid",
        "0",
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--grid 0"));
}

/// A class-conditional generator's page: its digit selector draws the chosen digit, and
/// "all" one row per digit, both equal to the CPU executor's digits for those labels.
#[test]
fn a_cgan_page_draws_the_chosen_digit() {
    if browser_setup().is_err() && std::env::var(REQUIRE_BROWSER_ENV).is_err() {
        eprintln!("SKIP: browser test not run (no Chromium or driver)");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("run");
    // Enough steps for digit-like strokes, so that the comparison is not of flat images.
    let trained = run_cli(&[
        "train",
        "--model",
        "cgan",
        "--device",
        "cpu",
        "--iterations",
        "30",
        "--batch-size",
        "32",
        "--out",
        run.to_str().unwrap(),
    ]);
    assert!(trained.status.success(), "{trained:?}");
    let Some((result, stored, _, out)) =
        drive(&run.join("checkpoint.safetensors"), 10, "web-export-cgan")
    else {
        return;
    };
    let states = &result["states"];
    let all = &states["fixed"];
    assert_eq!(all["classes"], 10, "{all:#}");
    let labels: Vec<u64> = all["labels"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l.as_u64().unwrap())
        .collect();
    let rows: Vec<u64> = (0..100).map(|i| i / 10).collect();
    assert_eq!(labels, rows, "\"all\" draws one row per digit");
    page_vs_cpu("cgan, all digits", all, &stored);
    let seven = &states["digit"];
    assert!(
        seven["labels"].as_array().unwrap().iter().all(|l| l == 7),
        "the selector asked for 7: {}",
        seven["labels"]
    );
    page_vs_cpu("cgan, digit 7", seven, &stored);
    assert_png(&out.join("page-digit.png"));
}

/// dcgan's page: the plan binds BatchNorm's running statistics as tensors of the weights
/// file (the page uploads them; inference mode, no batch statistics), and the page's
/// digits equal the CPU executor's for the same noise.
#[test]
fn a_dcgan_page_uses_the_running_statistics_and_matches_the_cpu_executor() {
    if test_context("a_dcgan_page_uses_the_running_statistics").is_none() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("run");
    let trained = run_cli(&[
        "train",
        "--model",
        "dcgan",
        "--device",
        "cpu",
        // Enough steps for its output to leave tanh's flat middle (a useful comparison).
        "--iterations",
        "25",
        "--batch-size",
        "8",
        "--out",
        run.to_str().unwrap(),
    ]);
    assert!(trained.status.success(), "{trained:?}");
    let checkpoint = run.join("checkpoint.safetensors");
    let site = dir.path().join("site");
    export(&checkpoint, &site, Some(3));
    let plan: Value =
        serde_json::from_slice(&std::fs::read(site.join("plan.json")).unwrap()).unwrap();
    let plan_text = plan.to_string();
    let weights = load_checkpoint(&site.join("generator.safetensors")).unwrap();
    let statistics: Vec<&str> = weights
        .tensors
        .iter()
        .map(|t| t.name.as_str())
        .filter(|n| n.contains(".moving_"))
        .collect();
    assert_eq!(
        statistics.len(),
        6,
        "three BatchNorm layers, mean and variance"
    );
    for name in statistics {
        assert!(
            plan_text.contains(&format!("\"{name}\"")),
            "the plan does not bind {name}"
        );
    }
    let Some((result, stored, _, _)) = drive(&checkpoint, 3, "web-export-dcgan") else {
        return;
    };
    let fixed = &result["states"]["fixed"];
    let worst = page_vs_cpu("dcgan, fixed noise", fixed, &stored);
    eprintln!("dcgan page: max |page - cpu| {worst:e}");
}
