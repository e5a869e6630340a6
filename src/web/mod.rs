//! `gan-gpu export-web`: the generator as a static web page that runs our WGSL kernels
//! on WebGPU.
//!
//! The page needs no kernel logic of its own. The export compiles the generator's forward
//! pass with the wgpu executor, exactly as training samples it, on a context retargeted
//! at browsers (real-GPU kernel variants, WebGPU's default limits), then writes that plan
//! out: every dispatch's shader file, entry point, override constants, bound buffers and
//! grid, and every uniform's bytes as read back from the device. `web/gan.js` replays the
//! plan with `shaders/*.wgsl` copied from the very sources compiled into this binary, so
//! the browser runs what the trainer runs, through a second compiler (Dawn/Tint).

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::Serialize;

use crate::cpu::AdamConfig;
use crate::error::{Error, Result};
use crate::gpu::{Binding, GpuBuffer, GpuContext, Shader};
use crate::graph::runtime::Runtime;
use crate::graph::{Dataset, Executor, Graph, NodeId, RandomStreams, lower};
use crate::io::atomic::write_atomically;
use crate::io::checkpoint::{Checkpoint, FORMAT, FORMAT_KEY, load_checkpoint, save_checkpoint};
use crate::model::classifier::Classifier;
use crate::model::load::{
    MODEL_KEY, NOISE_DIM_KEY, WEIGHTS_KEY, Weights, WeightsUsed, load_generator,
};
use crate::model::{GeneratorNodes, IMAGE_SIDE, ModelConfig, ModelKind, PIXELS};

/// Version tag of `plan.json`; `web/gan.js` refuses any other.
pub const PLAN_FORMAT: &str = "gan-gpu-web-plan-v1";
pub const WEIGHTS_FILE: &str = "generator.safetensors";

/// Digits per side of the page's grid for a generator without classes.
pub const DEFAULT_GRID: usize = 8;
pub const PLAN_FILE: &str = "plan.json";

/// The page, its scripts and its style, as kept in `web/`.
const SITE_FILES: &[(&str, &str)] = &[
    ("index.html", include_str!("../../web/index.html")),
    ("app.js", include_str!("../../web/app.js")),
    ("gan.js", include_str!("../../web/gan.js")),
    (
        "check-shaders.html",
        include_str!("../../web/check-shaders.html"),
    ),
    (
        "check-shaders.js",
        include_str!("../../web/check-shaders.js"),
    ),
    ("style.css", include_str!("../../web/style.css")),
];

#[derive(Serialize)]
struct WebPlan {
    format: &'static str,
    /// Digits per forward pass: the page's grid is `grid` x `grid`.
    batch: usize,
    grid: usize,
    noise_dim: usize,
    image_side: usize,
    weights: &'static str,
    /// Buffers the page writes noise into and reads digits from.
    noise_buffer: usize,
    image_buffer: usize,
    /// For a class-conditional generator: how many classes, and the buffer of the
    /// digits to draw ([batch] u32) that the page's digit selector writes.
    #[serde(skip_serializing_if = "Option::is_none")]
    classes: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    labels_buffer: Option<usize>,
    /// Every file in `shaders/`, all of which the compilation check page compiles.
    shader_files: Vec<&'static str>,
    buffers: Vec<PlanBuffer>,
    dispatches: Vec<PlanDispatch>,
    /// Every pipeline training builds, for the check page to build in the browser.
    trainer_pipelines: Vec<PlanPipeline>,
    exported_by: String,
    recorded_on: String,
}

#[derive(Serialize)]
struct PlanBuffer {
    label: String,
    bytes: u64,
    /// The weight tensor (in the weights file) this buffer starts with.
    #[serde(skip_serializing_if = "Option::is_none")]
    tensor: Option<String>,
    /// A uniform's contents, as 32-bit words.
    #[serde(skip_serializing_if = "Option::is_none")]
    uniform: Option<Vec<u32>>,
}

#[derive(Serialize)]
struct PlanDispatch {
    shader: &'static str,
    entry: &'static str,
    constants: BTreeMap<&'static str, f64>,
    bindings: Vec<PlanBinding>,
    groups: [u32; 3],
}

#[derive(Serialize)]
struct PlanPipeline {
    shader: &'static str,
    entry: &'static str,
    constants: BTreeMap<&'static str, f64>,
    /// How each binding of group 0 is accessed, in order.
    access: Vec<&'static str>,
}

#[derive(Serialize)]
struct PlanBinding {
    buffer: usize,
    access: &'static str,
}

/// What [`export_web`] wrote.
#[derive(Debug)]
pub struct ExportSummary {
    pub files: Vec<PathBuf>,
    pub dispatches: usize,
    pub weight_bytes: u64,
    pub recorded_on: String,
    pub weights: WeightsUsed,
}

impl ExportSummary {
    /// What was written to `out`, and how to serve it.
    pub fn describe(&self, out: &Path) -> String {
        format!(
            "wrote {} files to {} ({} dispatches recorded on {}, weights {:.1} MB: {})\n\
             serve it on localhost (WebGPU needs a secure origin, and the page fetches its \
             files), e.g.\n  python3 -m http.server --directory {} 8000\nthen open \
             http://localhost:8000/",
            self.files.len(),
            out.display(),
            self.dispatches,
            self.recorded_on,
            self.weight_bytes as f64 / 1e6,
            self.weights,
            out.display()
        )
    }
}

/// Writes the site for the generator in `checkpoint` into `out` (created if missing;
/// other files there are left alone). The plan is recorded on `runtime`'s adapter, which
/// must plan for browsers ([`Runtime::for_browser`]); `grid` x `grid` digits are drawn per
/// forward pass (by default a row per class of a class-conditional generator, else
/// [`DEFAULT_GRID`]), with `weights` (see [`load_generator`]).
pub fn export_web(
    runtime: &Runtime,
    checkpoint: &Path,
    out: &Path,
    grid: Option<usize>,
    weights: Weights,
) -> Result<ExportSummary> {
    if let Some(grid) = grid
        && !(1..=32).contains(&grid)
    {
        return Err(Error::InvalidArgument(format!(
            "--grid {grid}: expected 1 to 32 digits per side"
        )));
    }
    if out.is_file() {
        return Err(Error::InvalidArgument(format!(
            "--out {}: is a file, expected a directory for the site",
            out.display()
        )));
    }
    let ckpt = load_checkpoint(checkpoint)?;
    let stored = load_generator(checkpoint, &ckpt, weights)?;
    let grid = grid.unwrap_or_else(|| stored.kind.classes.unwrap_or(DEFAULT_GRID));
    let (graph, generator) = stored.graph(grid * grid)?;
    let plan = record_plan(runtime, &graph, &generator, stored.kind, grid)?;

    let mut files = Vec::new();
    let mut write = |name: &str, bytes: &[u8]| -> Result<()> {
        let path = out.join(name);
        write_atomically(&path, &[bytes])?;
        files.push(path);
        Ok(())
    };
    for (name, text) in SITE_FILES {
        write(name, text.as_bytes())?;
    }
    for shader in Shader::ALL {
        write(
            &format!("shaders/{}", shader.file_name()),
            shader.source().as_bytes(),
        )?;
    }
    let plan_json = serde_json::to_vec_pretty(&plan)
        .map_err(|e| Error::InvalidArgument(format!("cannot encode the plan: {e}")))?;
    write(PLAN_FILE, &plan_json)?;

    // A checkpoint with only the generator: `gan-gpu sample` reads it too.
    let mut metadata = BTreeMap::from([
        (FORMAT_KEY.to_string(), FORMAT.to_string()),
        (MODEL_KEY.to_string(), stored.kind.name.to_string()),
        (NOISE_DIM_KEY.to_string(), stored.noise_dim.to_string()),
        (
            WEIGHTS_KEY.to_string(),
            stored.weights.used.key().to_string(),
        ),
        ("source".to_string(), checkpoint.display().to_string()),
    ]);
    if let Some(iteration) = stored.iteration {
        metadata.insert("iteration".to_string(), iteration.to_string());
    }
    let generator_only = Checkpoint {
        tensors: stored.tensors.clone(),
        metadata,
    };
    let weights_path = out.join(WEIGHTS_FILE);
    save_checkpoint(&weights_path, &generator_only)?;
    let weight_bytes = std::fs::metadata(&weights_path)
        .map_err(|e| Error::io(&weights_path, e))?
        .len();
    files.push(weights_path);
    Ok(ExportSummary {
        files,
        dispatches: plan.dispatches.len(),
        weight_bytes,
        recorded_on: plan.recorded_on,
        weights: stored.weights,
    })
}

fn access(binding: Binding) -> &'static str {
    match binding {
        Binding::Uniform => "uniform",
        Binding::Read => "read",
        Binding::ReadWrite => "read_write",
    }
}

/// Every pipeline the trainer builds for a step of `kind` and a classifier step (at batch
/// 100), compiled on `runtime` and listed with what is already in its cache. The check
/// page builds each in the browser: some problems (override constants, workgroup limits)
/// only show when a pipeline is created, not when a module compiles.
fn trainer_pipelines(
    runtime: &Runtime,
    kind: &'static ModelKind,
    noise_dim: usize,
) -> Result<Vec<PlanPipeline>> {
    // One dataset row is enough to record the batch gathers; nothing runs.
    let dataset = Some(Arc::new(Dataset {
        bytes: vec![0; PIXELS],
        rows: 1,
        row_len: PIXELS,
        labels: Some(vec![0]),
    }));
    let streams = RandomStreams { seed: 0 };
    let model = kind.build(&ModelConfig {
        batch: 100,
        noise_dim,
        adam: AdamConfig::default(),
        sample_batch: 1,
        ema_decay: crate::model::DEFAULT_EMA_DECAY,
    })?;
    let mut exec =
        runtime.gpu_executor(&model.graph, model.optimizers(), streams, dataset.clone())?;
    exec.compile(&model.train_step()?)?;

    let classifier = Classifier::new(100, true)?;
    let g = &classifier.graph;
    let plan = lower::training_step(g, &classifier.phases()?)?;
    let adams = vec![AdamConfig::default()];
    let mut exec = runtime.gpu_executor(g, adams, streams, dataset)?;
    exec.compile(&plan)?;
    let ctx = runtime.require_gpu("recording the trainer's pipelines")?;
    ctx.check("recording the trainer's pipelines")?;

    Ok(ctx
        .pipelines
        .compiled()
        .iter()
        .map(|k| PlanPipeline {
            shader: k.shader.file_name(),
            entry: k.entry,
            constants: k.constants.iter().copied().collect(),
            access: k.bindings.iter().map(|&b| access(b)).collect(),
        })
        .collect())
}

/// Compiles the generator's forward pass on `ctx` and describes what it recorded: each
/// buffer (weights by tensor name, uniforms with their bytes read back from the device)
/// and each dispatch.
// Buffers are map keys by identity: GpuBuffer hashes and compares by its id, which
// its interior mutability (mapping state) never changes.
#[allow(clippy::mutable_key_type)]
fn record_plan(
    runtime: &Runtime,
    graph: &Graph,
    generator: &GeneratorNodes,
    kind: &'static ModelKind,
    grid: usize,
) -> Result<WebPlan> {
    let ctx: Arc<GpuContext> = runtime.require_gpu("the web export")?;
    let mut exec = runtime.gpu_executor(graph, vec![], RandomStreams { seed: 0 }, None)?;
    let plan = exec.compile(&lower::forward(
        graph,
        &[generator.image],
        &Default::default(),
    ))?;

    // Name every buffer the executor owns; anything else a launcher made is scratch.
    let mut known: HashMap<GpuBuffer, (String, Option<String>)> = HashMap::new();
    for (id, node) in graph.nodes.iter().enumerate() {
        if let Some(buffer) = exec.value_buffer(id) {
            let tensor = generator.tensors().contains(&id).then(|| node.name.clone());
            known
                .entry(buffer.clone())
                .or_insert_with(|| (node.name.clone(), tensor));
        }
    }

    let mut index: HashMap<GpuBuffer, usize> = HashMap::new();
    let mut buffers = Vec::new();
    let mut dispatches = Vec::new();
    for d in exec.recorded_dispatches(plan)? {
        if d.groups.contains(&0) {
            continue;
        }
        let kernel = &d.kernel;
        let mut bindings = Vec::new();
        for (buffer, &binding) in d.bind_group.buffers.iter().zip(kernel.bindings) {
            let slot = match index.get(buffer) {
                Some(&slot) => slot,
                None => {
                    let (label, tensor, uniform) = if binding == Binding::Uniform {
                        let words = ctx.read::<u32>(buffer, buffer.size() as usize / 4)?;
                        (format!("{} params", kernel.label), None, Some(words))
                    } else {
                        let (label, tensor) = known
                            .get(buffer)
                            .cloned()
                            .unwrap_or_else(|| (format!("{} scratch", kernel.label), None));
                        (label, tensor, None)
                    };
                    buffers.push(PlanBuffer {
                        label,
                        bytes: buffer.size(),
                        tensor,
                        uniform,
                    });
                    index.insert(buffer.clone(), buffers.len() - 1);
                    buffers.len() - 1
                }
            };
            bindings.push(PlanBinding {
                buffer: slot,
                access: access(binding),
            });
        }
        dispatches.push(PlanDispatch {
            shader: kernel.shader.file_name(),
            entry: kernel.entry,
            constants: kernel.constants.iter().copied().collect(),
            bindings,
            groups: d.groups,
        });
    }
    ctx.check("recording the generator's plan for the browser")?;

    let slot_of = |id: NodeId| {
        exec.value_buffer(id)
            .and_then(|buffer| index.get(buffer).copied())
            .ok_or_else(|| {
                Error::InvalidArgument(format!(
                    "the recorded plan never binds the generator's {}",
                    graph.nodes[id].name
                ))
            })
    };
    Ok(WebPlan {
        format: PLAN_FORMAT,
        batch: grid * grid,
        grid,
        noise_dim: graph.nodes[generator.z].shape[1],
        image_side: IMAGE_SIDE,
        weights: WEIGHTS_FILE,
        noise_buffer: slot_of(generator.z)?,
        image_buffer: slot_of(generator.image)?,
        classes: kind.classes,
        labels_buffer: generator.labels.map(slot_of).transpose()?,
        shader_files: Shader::ALL.iter().map(|s| s.file_name()).collect(),
        buffers,
        dispatches,
        trainer_pipelines: trainer_pipelines(runtime, kind, generator.noise_dim)?,
        exported_by: format!("gan-gpu {}", env!("CARGO_PKG_VERSION")),
        recorded_on: ctx.describe(),
    })
}
