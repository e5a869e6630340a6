//! `gan-gpu bench`: every distinct instruction of a model's training step and of its
//! sampling (BatchNorm in inference mode), and of the classifier's step, timed on the
//! executors that run it, plus square GEMMs for scale and one
//! whole training iteration per executor. The cases come from the plan itself, so the
//! bench times exactly what training runs, at the model's real shapes; see [`cases`] for
//! how work is counted. GPU times are medians of timestamp-query samples (or the wall
//! clock with a device wait where the adapter has no timestamps), after a warm-up; CPU
//! times are wall-clock medians. A row takes at least 7 runs (a training step 5), and a
//! short kernel as many more as fill a quarter of a second (a step two seconds), at most
//! 200: medians of a few millisecond-long runs moved by a third on a shared machine.

pub mod cases;
pub mod plan;

use std::sync::Arc;
use std::time::Instant;

use rand::{RngExt, SeedableRng, rngs::StdRng};
use serde::Serialize;

use crate::cpu::AdamConfig;
use crate::error::Result;
use crate::gpu::timer::median;
use crate::gpu::{GpuContext, KernelSettings, Knobs};
use crate::graph::runtime::Runtime;
use crate::graph::{Buf, Dataset, Executor, Graph, InputSource, Instr, RandomStreams, lower};
use crate::model::classifier::Classifier;
use crate::model::{ModelConfig, ModelKind, PIXELS};
use cases::{Case, Work, plan_cases};

#[derive(Debug, Clone, Serialize)]
pub struct BenchRow {
    pub kernel: String,
    /// The graph node the instruction first serves (empty for the square GEMMs).
    pub layer: String,
    pub shape: String,
    pub executor: &'static str,
    pub adapter: String,
    /// The kernel settings a GPU row ran with.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kernels: Option<KernelSettings>,
    pub median_ms: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gflops: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gbps: Option<f64>,
    /// Training step only: images per second and GFLOP/s as a fraction of this
    /// executor's GEMM 512³ rate in the same run.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub images_per_s: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fraction_of_gemm512: Option<f64>,
    /// Training step on a GPU executor only: the dispatches one iteration issues.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dispatches_per_iteration: Option<usize>,
    /// CPU rows with GFLOP/s: the rate as a fraction of the fp32 FMA peak measured in the
    /// same run on the executor's threads (the `fp32 FMA peak` row).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fraction_of_peak: Option<f64>,
    /// GPU rows whose kernels run with tuned knobs (`gan-gpu tune`): the same work timed
    /// with the built-in defaults in the same run.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub default_ms: Option<f64>,
}

pub struct BenchOptions {
    /// Fewer samples and no 1024³ GEMM: a smoke run.
    pub quick: bool,
    pub gpu: bool,
    pub cpu: bool,
    /// The model whose training step is timed.
    pub model: &'static ModelKind,
}

/// Batch and noise dimension of the timed training step: `train`'s defaults.
const BATCH: usize = 100;
const NOISE_DIM: usize = 100;
/// The classifier's training batch (`ClassifierConfig`'s default).
const CLASSIFIER_BATCH: usize = 128;

fn row(case_kernel: &str, layer: &str, shape: &str, on: &Target, ms: f64, work: Work) -> BenchRow {
    let per_s = |x: f64| x / (ms * 1e-3) / 1e9;
    BenchRow {
        kernel: case_kernel.to_string(),
        layer: layer.to_string(),
        shape: shape.to_string(),
        executor: on.executor,
        adapter: on.adapter.clone(),
        kernels: on.kernels,
        median_ms: ms,
        gflops: match work {
            Work::Flops(f) => Some(per_s(f)),
            Work::Bytes(_) => None,
        },
        gbps: match work {
            Work::Bytes(b) => Some(per_s(b)),
            Work::Flops(_) => None,
        },
        images_per_s: None,
        fraction_of_gemm512: None,
        dispatches_per_iteration: None,
        fraction_of_peak: None,
        default_ms: None,
    }
}

/// An executor family to time on.
struct Target<'a> {
    runtime: &'a Runtime,
    executor: &'static str,
    adapter: String,
    kernels: Option<KernelSettings>,
}

/// A synthetic labelled dataset of 1000 random images.
pub(crate) fn dataset(rng: &mut StdRng) -> Arc<Dataset> {
    let rows = 1000;
    Arc::new(Dataset {
        bytes: (0..rows * PIXELS).map(|_| rng.random()).collect(),
        rows,
        row_len: PIXELS,
        labels: Some((0..rows).map(|i| (i % 10) as u8).collect()),
    })
}

/// How many runs a timing takes: at least `runs`, and for short kernels as many more as fill
/// `seconds` (at most [`Sampling::MOST_RUNS`]), so that a millisecond kernel's median is
/// taken over enough runs to outlast a thread's wake-up or a neighbour's burst.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Sampling {
    runs: usize,
    seconds: f64,
}

impl Sampling {
    const MOST_RUNS: usize = 200;

    pub(crate) fn of(opts: &BenchOptions, runs: usize, seconds: f64) -> Self {
        if opts.quick {
            Sampling {
                runs: 2,
                seconds: 0.0,
            }
        } else {
            Sampling { runs, seconds }
        }
    }

    /// The runs for a plan whose one run took `probe_ms`.
    fn runs_for(self, probe_ms: f64) -> usize {
        let filling = (self.seconds * 1e3 / probe_ms.max(1e-3)).ceil() as usize;
        self.runs.max(filling.min(Self::MOST_RUNS))
    }

    /// Median milliseconds of `plan` on `exec`.
    pub(crate) fn time(self, exec: &mut dyn Executor, plan: usize) -> Result<f64> {
        let runs = if self.seconds > 0.0 {
            self.runs_for(exec.time_plan(plan, 1)?)
        } else {
            self.runs
        };
        exec.time_plan(plan, runs)
    }
}

/// Times every case on an executor that has run `plan` once (so every buffer holds
/// realistic values).
fn time_cases(
    exec: &mut dyn Executor,
    cases: Vec<Case>,
    on: &Target,
    sampling: Sampling,
    progress: &mut dyn FnMut(&BenchRow),
    rows: &mut Vec<BenchRow>,
) -> Result<()> {
    for case in cases {
        let ctx = on.runtime.gpu()?;
        if let Some(ctx) = &ctx {
            ctx.take_sites();
        }
        let plan = exec.compile(&case.instrs)?;
        let ms = sampling.time(exec, plan)?;
        let mut r = row(&case.kernel, &case.layer, &case.shape, on, ms, case.work);
        if let Some(ctx) = &ctx {
            let tuned = tuned_sites(ctx, ctx.take_sites().into_keys());
            r.default_ms = with_defaults(ctx, &tuned, || {
                let plan = exec.compile(&case.instrs)?;
                sampling.time(exec, plan)
            })?;
        }
        progress(&r);
        rows.push(r);
    }
    Ok(())
}

/// The sites among `sites` whose knobs in use are not the defaults, with those knobs.
fn tuned_sites(ctx: &GpuContext, sites: impl Iterator<Item = String>) -> Vec<(String, Knobs)> {
    sites
        .map(|site| {
            let knobs = ctx.tuned(&site);
            (site, knobs)
        })
        .filter(|(_, knobs)| *knobs != Knobs::default())
        .collect()
}

/// `timing` run with the built-in defaults at the `tuned` sites (then restored): `None`
/// where nothing is tuned.
fn with_defaults(
    ctx: &GpuContext,
    tuned: &[(String, Knobs)],
    mut timing: impl FnMut() -> Result<f64>,
) -> Result<Option<f64>> {
    if tuned.is_empty() {
        return Ok(None);
    }
    for (site, _) in tuned {
        ctx.set_knobs(site, Knobs::default());
    }
    let ms = timing();
    for (site, knobs) in tuned {
        ctx.set_knobs(site, *knobs);
    }
    ms.map(Some)
}

/// c = a·b for square matrices of side `s`, on random data.
fn square_gemm(on: &Target, s: usize, sampling: Sampling) -> Result<BenchRow> {
    let mut g = Graph::default();
    let a = g.input("a", InputSource::External, vec![s, s]);
    let b = g.input("b", InputSource::External, vec![s, s]);
    let c = g.input("c", InputSource::External, vec![s, s]);
    let mut exec = on
        .runtime
        .executor(&g, vec![], RandomStreams { seed: 0 }, None)?;
    let mut rng = StdRng::seed_from_u64(1);
    for id in [a, b] {
        let values: Vec<f32> = (0..s * s).map(|_| rng.random_range(-1.0..1.0)).collect();
        exec.write(Buf::Value(id), &values)?;
    }
    let instr = Instr::Gemm {
        a: Buf::Value(a),
        b: Buf::Value(b),
        c: Buf::Value(c),
        bias: None,
        m: s,
        n: s,
        k: s,
        trans_a: false,
        trans_b: false,
        accumulate: false,
    };
    let work = Work::Flops(instr.flops());
    let plan = exec.compile(&[instr])?;
    let ms = sampling.time(exec.as_mut(), plan)?;
    Ok(row("gemm", "", &format!("{s}x{s}x{s} NN"), on, ms, work))
}

/// The model whose step the bench times and `tune` tunes, at `train`'s defaults, and its
/// training step.
pub(crate) fn timed_model(kind: &'static ModelKind) -> Result<(crate::model::Model, Vec<Instr>)> {
    let model = kind.build(&ModelConfig {
        batch: BATCH,
        noise_dim: NOISE_DIM,
        adam: AdamConfig::default(),
        // Sampling at the training batch, so its own instructions (BatchNorm in
        // inference mode) are timed at the step's shapes.
        sample_batch: BATCH,
        ema_decay: crate::model::DEFAULT_EMA_DECAY,
    })?;
    let step = model.train_step()?;
    Ok((model, step))
}

/// Rows for one executor family: square GEMMs, the model's and the classifier's
/// instructions, and the model's whole training step.
fn bench_target(
    on: &Target,
    opts: &BenchOptions,
    progress: &mut dyn FnMut(&BenchRow),
) -> Result<Vec<BenchRow>> {
    let timing = Sampling::of(opts, 7, 0.25);
    let mut rows = Vec::new();
    let squares: &[usize] = if opts.quick {
        &[256, 512]
    } else {
        &[256, 512, 1024]
    };
    for &s in squares {
        let r = square_gemm(on, s, timing)?;
        progress(&r);
        rows.push(r);
    }

    let mut rng = StdRng::seed_from_u64(15);
    let (model, step) = timed_model(opts.model)?;
    let mut exec = on.runtime.executor(
        &model.graph,
        model.optimizers(),
        RandomStreams { seed: 1 },
        Some(dataset(&mut rng)),
    )?;
    for (id, values) in model.graph.init_params(&mut rng) {
        exec.write(Buf::Value(id), &values)?;
    }
    let ctx = on.runtime.gpu()?;
    if let Some(ctx) = &ctx {
        ctx.take_sites();
    }
    let plan = exec.compile(&step)?;
    exec.run(plan, 0)?;
    // Timed before the single instructions, which leave the buffers as no step would.
    let steps = Sampling::of(opts, 5, 2.0);
    let mut step_row = train_step_row(exec.as_mut(), plan, &step, on, steps, &rows)?;
    if let Some(ctx) = &ctx {
        let tuned = tuned_sites(ctx, ctx.take_sites().into_keys());
        step_row.default_ms = with_defaults(ctx, &tuned, || {
            let defaults = exec.compile(&step)?;
            exec.run(defaults, 0)?;
            Ok(train_step_row(exec.as_mut(), defaults, &step, on, steps, &rows)?.median_ms)
        })?;
    }
    time_cases(
        exec.as_mut(),
        plan_cases(&model.graph, &step),
        on,
        timing,
        progress,
        &mut rows,
    )?;

    let sampling = lower::forward(&model.graph, &[model.sampler.image], &Default::default());
    let extra = untimed(plan_cases(&model.graph, &sampling), &rows);
    time_cases(exec.as_mut(), extra, on, timing, progress, &mut rows)?;

    let classifier = Classifier::new(CLASSIFIER_BATCH, true)?;
    let classifier_step = lower::training_step(&classifier.graph, &classifier.phases()?)?;
    let mut cexec = on.runtime.executor(
        &classifier.graph,
        vec![AdamConfig::default()],
        RandomStreams { seed: 2 },
        Some(dataset(&mut rng)),
    )?;
    for (id, values) in classifier.graph.init_params(&mut rng) {
        cexec.write(Buf::Value(id), &values)?;
    }
    let cplan = cexec.compile(&classifier_step)?;
    cexec.run(cplan, 0)?;
    // Only what the GAN's plans did not already time.
    let extra = untimed(plan_cases(&classifier.graph, &classifier_step), &rows);
    time_cases(cexec.as_mut(), extra, on, timing, progress, &mut rows)?;

    progress(&step_row);
    rows.push(step_row);
    Ok(rows)
}

/// The cases no row in `rows` has timed (same kernel and shape).
fn untimed(cases: Vec<Case>, rows: &[BenchRow]) -> Vec<Case> {
    cases
        .into_iter()
        .filter(|c| {
            !rows
                .iter()
                .any(|r| r.kernel == c.kernel && r.shape == c.shape)
        })
        .collect()
}

/// Runs the bench on the GPU runtime `gpu` (when given and asked for) and on the CPU
/// executor; `progress` sees each finished row.
pub fn run(
    gpu: Option<&Runtime>,
    opts: &BenchOptions,
    progress: &mut dyn FnMut(&BenchRow),
) -> Result<Vec<BenchRow>> {
    let mut rows = Vec::new();
    if let (Some(runtime), true) = (gpu, opts.gpu) {
        let ctx = runtime.require_gpu("bench --device gpu")?;
        let on = Target {
            runtime,
            executor: "gpu",
            adapter: ctx.info.name.clone(),
            kernels: Some(ctx.kernel_settings()),
        };
        rows.extend(bench_target(&on, opts, progress)?);
    }
    if opts.cpu {
        let cpu = Runtime::cpu();
        let on = Target {
            runtime: &cpu,
            executor: "cpu",
            adapter: CPU_NAME.into(),
            kernels: None,
        };
        // The limit is measured before the rows and again after them, and the better taken:
        // on a shared machine one short measurement can fall in a neighbour's burst, which
        // would make every fraction too large.
        let before = crate::cpu::peak::measure(PEAK_TRIALS, PEAK_ROUNDS);
        let cpu_rows = bench_target(&on, opts, &mut |_| {})?;
        let after = crate::cpu::peak::measure(PEAK_TRIALS, PEAK_ROUNDS);
        let peak = peak_row(
            &on,
            if after.gflops > before.gflops {
                after
            } else {
                before
            },
        );
        progress(&peak);
        let peak_gflops = peak.gflops;
        rows.push(peak);
        let mut of_peak = |mut r: BenchRow| {
            r.fraction_of_peak = peak_gflops.zip(r.gflops).map(|(p, g)| g / p);
            progress(&r);
            r
        };
        rows.extend(cpu_rows.into_iter().map(&mut of_peak));
    }
    Ok(rows)
}

/// The CPU executor's name in the rows.
const CPU_NAME: &str = "cpu executor (gemm crate)";

/// Trials of each measurement of the CPU's peak, and FMA rounds per trial (~2 ms).
const PEAK_TRIALS: usize = 20;
const PEAK_ROUNDS: usize = 1_000_000;

/// The row of the fp32 FMA peak of the executor's threads (`cpu::peak`), measured in the same
/// run as every CPU row it scales.
fn peak_row(on: &Target, p: crate::cpu::peak::Peak) -> BenchRow {
    let shape = format!(
        "{} threads, {} (~{:.2} GHz)",
        p.threads,
        p.isa,
        p.implied_ghz_at_two_fma_per_cycle()
    );
    row(
        "fp32 FMA peak",
        "",
        &shape,
        on,
        p.trial_ms,
        Work::Flops(p.trial_flops),
    )
}

/// One whole training iteration, wall clock with a device wait, median of `steps`.
fn train_step_row(
    exec: &mut dyn Executor,
    plan: usize,
    step: &[Instr],
    on: &Target,
    sampling: Sampling,
    rows: &[BenchRow],
) -> Result<BenchRow> {
    let flops: f64 = step.iter().map(|i| i.flops()).sum();
    exec.sync()?;
    let mut times = Vec::new();
    let mut timed_step = |it: u64, times: &mut Vec<f64>| -> Result<()> {
        let start = Instant::now();
        exec.run(plan, it)?;
        exec.sync()?;
        times.push(start.elapsed().as_secs_f64() * 1e3);
        Ok(())
    };
    timed_step(1, &mut times)?;
    let steps = sampling.runs_for(times[0]) as u64;
    for it in 2..=steps {
        timed_step(it, &mut times)?;
    }
    let ms = median(&mut times);
    let mut r = row(
        "train_step",
        "",
        &format!("batch {BATCH}, forward/backward/Adam"),
        on,
        ms,
        Work::Flops(flops),
    );
    r.images_per_s = Some(BATCH as f64 / (ms * 1e-3));
    r.dispatches_per_iteration = exec.dispatches_per_run(plan);
    let gemm512 = rows
        .iter()
        .find(|r| {
            r.kernel == "gemm" && r.executor == on.executor && r.shape.starts_with("512x512x512")
        })
        .and_then(|r| r.gflops);
    r.fraction_of_gemm512 = gemm512.zip(r.gflops).map(|(g, s)| s / g);
    Ok(r)
}

/// A table column as wide as its longest entry, and at least `least`.
fn column_width<'a>(entries: impl Iterator<Item = &'a str>, least: usize) -> usize {
    entries.map(|e| e.chars().count()).fold(least, usize::max)
}

/// The table printed by `gan-gpu bench`.
pub fn render(rows: &[BenchRow]) -> String {
    // Wide enough for the usual names; a longer one (cgan's embedding gradient) widens it.
    let layer = column_width(rows.iter().map(|r| r.layer.as_str()), 28);
    let mut out = format!(
        "{:<32} {:<layer$} {:<40} {:<4} {:>10} {:>10} {:>10}\n",
        "kernel", "layer", "shape", "exec", "median ms", "GFLOP/s", "GB/s"
    );
    for r in rows {
        let f = |x: Option<f64>| x.map(|v| format!("{v:.2}")).unwrap_or_default();
        out += &format!(
            "{:<32} {:<layer$} {:<40} {:<4} {:>10.3} {:>10} {:>10}",
            r.kernel,
            r.layer,
            r.shape,
            r.executor,
            r.median_ms,
            f(r.gflops),
            f(r.gbps)
        );
        if let (Some(ips), Some(frac)) = (r.images_per_s, r.fraction_of_gemm512) {
            out += &format!("  {ips:.0} images/s, {frac:.2} of GEMM 512³");
        }
        if let Some(d) = r.dispatches_per_iteration {
            out += &format!(", {d} dispatches");
        }
        if let Some(frac) = r.fraction_of_peak {
            out += &format!("  {frac:.2} of peak");
        }
        if let Some(ms) = r.default_ms {
            let speedup = ms / r.median_ms;
            out += &format!("  tuned; {ms:.3} ms with the defaults ({speedup:.2}x)");
        }
        out += "\n";
    }
    out
}

/// `gan-gpu bench`: runs it, printing each row as it finishes, then the table (or, with
/// `json`, the rows as JSON).
pub fn command(gpu: Option<&Runtime>, opts: &BenchOptions, json: bool) -> Result<()> {
    if let Some(runtime) = gpu {
        let ctx = runtime.require_gpu("bench")?;
        eprintln!("adapter: {} (timing: {:?})", ctx.describe(), ctx.clock());
    }
    let rows = run(gpu, opts, &mut |row| {
        if !json {
            eprintln!(
                "{}",
                render(std::slice::from_ref(row))
                    .lines()
                    .nth(1)
                    .unwrap_or_default()
            );
        }
    })?;
    if json {
        let text = serde_json::to_string_pretty(&rows)
            .map_err(|e| crate::Error::InvalidArgument(format!("cannot encode the rows: {e}")))?;
        println!("{text}");
    } else {
        print!("{}", render(&rows));
    }
    Ok(())
}
