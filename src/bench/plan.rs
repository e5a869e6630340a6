//! `gan-gpu plan`: one training iteration as the wgpu executor records it, dispatch by
//! dispatch, with how wide and how long each one is.
//!
//! Nothing here is a model of the launchers: the model's training step is compiled on a
//! real executor with the chosen kernel settings, and every row reads the
//! [`Footprint`] its launcher stored in the recorded [`crate::gpu::Dispatch`]. Each row
//! is checked against the width rule of issue 14 (see [`width_problems`]).

use std::sync::Arc;

use serde::Serialize;

use crate::cpu::AdamConfig;
use crate::error::Result;
use crate::gpu::dispatch::{PASSES_PER_RUN, SUBMISSIONS_PER_RUN};
use crate::gpu::{Footprint, KernelSettings};
use crate::graph::describe::{describe, layer_label};
use crate::graph::runtime::Runtime;
use crate::graph::{Dataset, Executor, Graph, Instr, RandomStreams};
use crate::model::{DEFAULT_EMA_DECAY, ModelConfig, ModelKind, PIXELS};

/// A dispatch moving more bytes or doing more FLOPs than these is big enough to fill a
/// GPU, so it must have at least [`MIN_WORKGROUPS`] workgroups.
pub const BIG_BYTES: f64 = 1e6;
pub const BIG_FLOPS: f64 = 1e6;
pub const MIN_WORKGROUPS: u64 = crate::gpu::settings::MIN_WORKGROUPS as u64;
/// The longest loop one invocation may run before it serialises the dispatch.
pub const MAX_LOOP: u64 = 512;

/// Batch and noise dimension of the planned iteration: `train`'s defaults.
const BATCH: usize = 100;
const NOISE_DIM: usize = 100;

/// One recorded dispatch.
#[derive(Debug, Clone, Serialize)]
pub struct PlanRow {
    /// Position in the plan (0-based).
    pub index: usize,
    /// Position of the instruction it was recorded for in the training step (the first,
    /// when it runs several: a merged run of Adam or moving-average steps).
    pub instruction: usize,
    /// How many instructions it runs.
    pub instructions: usize,
    /// The instruction, e.g. `conv2d weight grad`, and its shape.
    pub what: String,
    pub shape: String,
    /// The graph node whose value or gradient the instruction writes; for a merged run,
    /// the common prefix of its nodes' names and `*`.
    pub layer: String,
    /// Shader file and entry point.
    pub shader: &'static str,
    pub entry: &'static str,
    /// Workgroup counts (x, y, z) and their product.
    pub groups: [u32; 3],
    pub workgroups: u64,
    pub workgroup_size: [u32; 3],
    pub longest_loop: u64,
    pub flops: f64,
    pub bytes: f64,
    /// Which parts of the width rule it breaks (empty: none).
    pub problems: Vec<&'static str>,
}

#[derive(Debug, Clone, Serialize)]
pub struct PlanTotals {
    /// Dispatches that run (a dispatch with a zero workgroup count is recorded but skipped).
    pub dispatches: usize,
    pub passes: usize,
    pub submissions: usize,
    pub flops: f64,
    pub bytes: f64,
    /// The longest loop of any invocation, and the row it is in.
    pub longest_loop: u64,
    pub longest_loop_row: Option<usize>,
    /// Rows breaking the width rule.
    pub flagged: usize,
}

#[derive(Debug, Clone, Serialize)]
pub struct PlanReport {
    pub model: &'static str,
    pub adapter: String,
    pub kernels: KernelSettings,
    /// Where the launchers' knobs came from (`tuning: ...`).
    pub tuning: String,
    pub batch: usize,
    pub rows: Vec<PlanRow>,
    pub totals: PlanTotals,
}

/// The parts of the width rule a dispatch breaks: more than [`BIG_BYTES`] moved or
/// [`BIG_FLOPS`] done with fewer than [`MIN_WORKGROUPS`] workgroups, or a loop longer
/// than [`MAX_LOOP`] trips per invocation.
pub fn width_problems(footprint: &Footprint, workgroups: u64) -> Vec<&'static str> {
    let mut problems = Vec::new();
    let big = footprint.bytes > BIG_BYTES || footprint.flops > BIG_FLOPS;
    if big && workgroups < MIN_WORKGROUPS {
        problems.push("few workgroups");
    }
    if footprint.longest_loop > MAX_LOOP {
        problems.push("long loop");
    }
    problems
}

/// A dataset of `BATCH` blank labelled images: compiling the step uploads it, nothing
/// reads it.
fn blank_dataset() -> Arc<Dataset> {
    Arc::new(Dataset {
        bytes: vec![0; BATCH * PIXELS],
        rows: BATCH,
        row_len: PIXELS,
        labels: Some(vec![0; BATCH]),
    })
}

/// Compiles `model`'s training step at `train`'s defaults on `runtime`'s wgpu adapter
/// and reports every dispatch it records.
pub fn plan(runtime: &Runtime, model: &'static ModelKind) -> Result<PlanReport> {
    let ctx = runtime.require_gpu("plan")?;
    let model = model.build(&ModelConfig {
        batch: BATCH,
        noise_dim: NOISE_DIM,
        adam: AdamConfig::default(),
        sample_batch: 1,
        ema_decay: DEFAULT_EMA_DECAY,
    })?;
    let step = model.train_step()?;
    let mut exec = runtime.gpu_executor(
        &model.graph,
        model.optimizers(),
        RandomStreams { seed: 0 },
        Some(blank_dataset()),
    )?;
    let compiled = exec.compile(&step)?;
    let (dispatches, origins) = exec.plan_dispatches(compiled)?;
    let graph = &model.graph;
    let rows: Vec<PlanRow> = dispatches
        .iter()
        .zip(origins)
        .enumerate()
        .map(|(index, (d, sources))| {
            let run = &step[sources.clone()];
            let (what, shape, layer) = describe_run(graph, run);
            let workgroups = d.workgroups();
            PlanRow {
                index,
                instruction: sources.start,
                instructions: run.len(),
                what,
                shape,
                layer,
                shader: d.kernel.shader.file_name(),
                entry: d.kernel.entry,
                groups: d.groups,
                workgroups,
                workgroup_size: d.footprint.workgroup_size,
                longest_loop: d.footprint.longest_loop,
                flops: d.footprint.flops,
                bytes: d.footprint.bytes,
                problems: width_problems(&d.footprint, workgroups),
            }
        })
        .collect();
    let running = || rows.iter().filter(|r| r.workgroups > 0);
    let longest = running().max_by_key(|r| r.longest_loop);
    let totals = PlanTotals {
        dispatches: running().count(),
        passes: PASSES_PER_RUN,
        submissions: SUBMISSIONS_PER_RUN,
        flops: running().map(|r| r.flops).sum(),
        bytes: running().map(|r| r.bytes).sum(),
        longest_loop: longest.map_or(0, |r| r.longest_loop),
        longest_loop_row: longest.map(|r| r.index),
        flagged: running().filter(|r| !r.problems.is_empty()).count(),
    };
    Ok(PlanReport {
        model: model.kind.name,
        adapter: ctx.info.name.clone(),
        kernels: ctx.kernel_settings(),
        tuning: ctx.describe_tuning(),
        batch: BATCH,
        rows,
        totals,
    })
}

/// What a dispatch runs, its shape and its layer: one instruction's; for a layer with its
/// activation fused, the layer's with the activation named; for a merged run of steps
/// (same kind, one per tensor) the total length over the tensor count and the common
/// prefix of the tensors' names.
/// What a run of instructions recorded as one dispatch computes, its shape and its layer.
pub(super) fn describe_run(graph: &Graph, run: &[Instr]) -> (String, String, String) {
    let (what, shape) = describe(graph, &run[0]);
    let layer = layer_label(graph, &run[0]);
    if run.len() == 1 {
        return (what, shape, layer);
    }
    if let [_, Instr::Activation { act, .. }] = run {
        return (format!("{what} + {act:?}"), shape, layer);
    }
    if let [
        Instr::BceLoss { .. },
        Instr::BceGrad { .. },
        Instr::BceLoss { .. },
        Instr::BceGrad { .. },
    ] = run
    {
        let (what, shape, layer) = describe_run(graph, &run[..2]);
        let (second_what, second_shape, second_layer) = describe_run(graph, &run[2..]);
        return (
            format!("{what}; {second_what}"),
            format!("{shape}; {second_shape}"),
            format!("{layer}; {second_layer}"),
        );
    }
    if let [
        Instr::BceLoss { .. },
        grad @ Instr::BceGrad { accumulate, .. },
    ] = run
    {
        let (_, grad_shape) = describe(graph, grad);
        let grad_layer = layer_label(graph, grad);
        let what = match accumulate {
            true => "bce loss + grad (accumulate)",
            false => "bce loss + grad",
        };
        return (what.into(), grad_shape, format!("{layer}, {grad_layer}"));
    }
    if let [_, grad @ Instr::ActivationGrad { act, .. }] = run {
        let grad_layer = layer_label(graph, grad);
        return (
            format!("{what} + {act:?} backward"),
            shape,
            format!("{layer}, {grad_layer}"),
        );
    }
    if let [
        Instr::RowDotGrad { .. },
        product @ Instr::Gemm { .. },
        grad @ Instr::ActivationGrad { act, .. },
    ] = run
    {
        let (product_what, product_shape) = describe(graph, product);
        return (
            format!("{what} + {product_what} + {act:?} backward"),
            product_shape,
            format!("{layer}, {}", layer_label(graph, grad)),
        );
    }
    if let [Instr::Embedding { .. }, rest @ ..] = run {
        let last = &run[run.len() - 1];
        let (_, last_shape) = describe(graph, last);
        let what = match rest {
            [Instr::RowDot { .. }, Instr::Add { .. }] => "embedding + row dot + add",
            _ => "embedding + add",
        };
        return (
            what.into(),
            last_shape,
            format!("{layer}, {}", layer_label(graph, last)),
        );
    }
    if let [_, Instr::BiasGrad { .. }] = run {
        let bias = layer_label(graph, &run[1]);
        return (
            format!("{what} + bias grad"),
            shape,
            format!("{layer}, {bias}"),
        );
    }
    // Two instructions computed in one pass, each with its own shape.
    if let [
        _,
        second @ (Instr::RandomLabels { .. }
        | Instr::DataLabels { .. }
        | Instr::Concat { .. }
        | Instr::EmbeddingGrad { .. }),
    ] = run
    {
        let (second_what, second_shape) = describe(graph, second);
        let shape = match shape == second_shape {
            true => shape,
            false => format!("{shape}; {second_shape}"),
        };
        let layers = format!("{layer}, {}", layer_label(graph, second));
        return (format!("{what} + {second_what}"), shape, layers);
    }
    // An optimizer group's Adam steps and the moving average of the same tensors.
    let adams = run
        .iter()
        .take_while(|i| matches!(i, Instr::Adam { .. }))
        .count();
    if adams > 0 && adams < run.len() {
        let (what, shape, layer) = describe_run(graph, &run[..adams]);
        let (_, _, averages) = describe_run(graph, &run[adams..]);
        return (
            format!("{what} + ema"),
            shape,
            format!("{layer}, {averages}"),
        );
    }
    let elements: usize = run
        .iter()
        .map(|instr| match instr {
            Instr::Adam { len, .. } | Instr::Ema { len, .. } => *len,
            _ => 0,
        })
        .sum();
    let labels: Vec<String> = run.iter().map(|i| layer_label(graph, i)).collect();
    let mut prefix = labels[0].as_str();
    for label in &labels[1..] {
        while !label.starts_with(prefix) {
            prefix = prefix.rsplit_once('.').map_or("", |(head, _)| head);
        }
    }
    let shape = format!("{elements} in {} tensors", run.len());
    (what, shape, format!("{prefix}.*"))
}

fn dims(v: [u32; 3]) -> String {
    match v {
        [x, 1, 1] => format!("{x}"),
        [x, y, 1] => format!("{x}x{y}"),
        [x, y, z] => format!("{x}x{y}x{z}"),
    }
}

/// The table `gan-gpu plan` prints: a line per dispatch, then the totals and the rule.
pub fn render(report: &PlanReport) -> String {
    let mut out = format!(
        "training iteration of {} (batch {}) on {}, kernels {}\n{}\n",
        report.model,
        report.batch,
        report.adapter,
        report.kernels.name(),
        report.tuning
    );
    let layer = super::column_width(report.rows.iter().map(|r| r.layer.as_str()), 26);
    out += &format!(
        "{:>3} {:<64} {:<layer$} {:<34} {:>9} {:>7} {:>6} {:>9} {:>8}  flags\n",
        "#", "instruction", "layer", "entry", "groups", "wg", "loop", "MFLOP", "MB"
    );
    for r in &report.rows {
        let instr = format!("{} {}", r.what, r.shape);
        out += &format!(
            "{:>3} {:<64} {:<layer$} {:<34} {:>9} {:>7} {:>6} {:>9.3} {:>8.3}  {}\n",
            r.index,
            instr,
            r.layer,
            format!("{}::{}", r.shader.trim_end_matches(".wgsl"), r.entry),
            if r.workgroups == 0 {
                "skipped".to_string()
            } else {
                dims(r.groups)
            },
            dims(r.workgroup_size),
            r.longest_loop,
            r.flops / 1e6,
            r.bytes / 1e6,
            r.problems.join(", ")
        );
    }
    let t = &report.totals;
    out += &format!(
        "totals: {} dispatches, {} compute pass, {} queue submission, {:.1} MFLOP, {:.1} MB, \
         longest loop {} trips{}\n",
        t.dispatches,
        t.passes,
        t.submissions,
        t.flops / 1e6,
        t.bytes / 1e6,
        t.longest_loop,
        t.longest_loop_row
            .map(|i| format!(" (#{i})"))
            .unwrap_or_default()
    );
    out += &format!(
        "{} dispatches break the width rule: over {:.0} MB or {:.0} MFLOP with fewer than {} \
         workgroups (few workgroups), or a loop over {} trips per invocation (long loop)\n",
        t.flagged,
        BIG_BYTES / 1e6,
        BIG_FLOPS / 1e6,
        MIN_WORKGROUPS,
        MAX_LOOP
    );
    out
}

/// `gan-gpu plan`: the table, or with `json` the report as JSON.
pub fn command(runtime: &Runtime, model: &'static ModelKind, json: bool) -> Result<()> {
    let report = plan(runtime, model)?;
    if json {
        let text = serde_json::to_string_pretty(&report)
            .map_err(|e| crate::Error::InvalidArgument(format!("cannot encode the plan: {e}")))?;
        println!("{text}");
    } else {
        print!("{}", render(&report));
    }
    Ok(())
}
