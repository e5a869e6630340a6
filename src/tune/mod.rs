//! `gan-gpu tune`: times the candidate knobs of every tunable kernel at every shape of a
//! model's training step on this adapter, keeps the fastest whose results match the CPU
//! reference, and stores them in the tuning file for `train`, `bench` and `selftest`.
//!
//! The sites and their candidates come from the launchers themselves
//! ([`GpuContext::knobs`]): each case of the step is compiled once to learn which sites it
//! consults. A candidate is checked first (the instruction on both executors from the
//! same seeded inputs, as `selftest` does) and timed only if it matches; it replaces the
//! default only when it is still faster in the median of three more interleaved timings
//! of the two, so that a noisy first sample cannot keep a slower setting.

use std::collections::BTreeSet;
use std::sync::Arc;

use rand::SeedableRng;
use rand::rngs::StdRng;
use serde::Serialize;

use crate::bench::cases::plan_cases;
use crate::bench::{BenchOptions, Sampling, dataset, timed_model};
use crate::error::Result;
use crate::gpu::GpuContext;
use crate::gpu::timer::median;
use crate::gpu::tuning::{self, Knobs, TunedSite, Tuning, TuningSource};
use crate::graph::cpu_exec::CpuExecutor;
use crate::graph::gpu_exec::GpuExecutor;
use crate::graph::runtime::Runtime;
use crate::graph::{Buf, Executor, RandomStreams};
use crate::model::ModelKind;
use crate::selftest::plans::Plan;
use crate::selftest::{Check, instr};

/// A candidate must beat the default by this fraction in both timings to replace it.
const MARGIN: f64 = 0.03;
/// Interleaved timings of the default and the best candidate before the candidate is kept.
const SECOND_LOOK_ROUNDS: usize = 3;
/// The seed of the inputs a candidate is checked on.
const CHECK_SEED: u64 = 41;

/// What `tune` found at one site.
#[derive(Debug, Clone, Serialize)]
pub struct SiteReport {
    pub site: String,
    pub knobs: Knobs,
    pub default_ms: f64,
    pub tuned_ms: f64,
    /// Candidates timed (the default not counted).
    pub tried: usize,
    /// Candidates whose results did not match the CPU reference, with why.
    pub rejected: Vec<String>,
}

/// The whole run: where the table went and each site.
#[derive(Debug, Clone, Serialize)]
pub struct TuneReport {
    pub adapter: String,
    pub key: String,
    pub path: String,
    pub sites: Vec<SiteReport>,
}

/// Tunes `model`'s training step on `runtime`'s adapter and stores the table; `progress`
/// sees each site as it is done.
pub fn tune(
    runtime: &Runtime,
    model: &'static ModelKind,
    quick: bool,
    progress: &mut dyn FnMut(&SiteReport, usize, usize),
) -> Result<TuneReport> {
    let ctx = runtime.require_gpu("tune")?;
    // Every default is timed as the launchers' own, whatever a kept table says.
    ctx.use_tuning(Tuning::default(), TuningSource::Measuring);
    let opts = BenchOptions {
        quick,
        gpu: true,
        cpu: false,
        model,
    };
    let (built, step) = timed_model(model)?;
    let mut rng = StdRng::seed_from_u64(15);
    let data = dataset(&mut rng);
    let streams = RandomStreams { seed: 1 };
    let mut gpu = runtime.gpu_executor(
        &built.graph,
        built.optimizers(),
        streams,
        Some(Arc::clone(&data)),
    )?;
    let mut cpu = CpuExecutor::new(&built.graph, built.optimizers(), Some(data), streams);
    for (id, values) in built.graph.init_params(&mut rng) {
        gpu.write(Buf::Value(id), &values)?;
    }
    let plan = gpu.compile(&step)?;
    gpu.run(plan, 0)?;

    let sampling = Sampling::of(&opts, 7, 0.25);
    let cases = plan_cases(&built.graph, &step);
    let mut work = Vec::new();
    let mut seen = BTreeSet::new();
    for case in cases {
        ctx.take_sites();
        gpu.compile(&case.instrs)?;
        for (site, candidates) in ctx.take_sites() {
            if seen.insert(site.clone()) {
                work.push((site, candidates, case.instrs.clone()));
            }
        }
    }

    let mut table = Tuning::default();
    let mut sites = Vec::new();
    let total = work.len();
    for (done, (site, candidates, instrs)) in work.into_iter().enumerate() {
        let report = tune_site(
            &ctx,
            &mut gpu,
            &mut cpu,
            &site,
            &candidates,
            &instrs,
            sampling,
        )?;
        table.sites.insert(
            site,
            TunedSite {
                knobs: report.knobs,
                default_ms: report.default_ms,
                tuned_ms: report.tuned_ms,
            },
        );
        progress(&report, done + 1, total);
        sites.push(report);
    }
    let key = ctx.tuning_key();
    let path = tuning::tuning_path();
    tuning::store(&path, &key, &table)?;
    let source = TuningSource::Cache {
        path: path.clone(),
        sites: table.sites.len(),
        changed: table.changed(),
    };
    ctx.use_tuning(table, source);
    Ok(TuneReport {
        adapter: ctx.info.name.clone(),
        key: key.describe(),
        path: path.display().to_string(),
        sites,
    })
}

/// Times `instrs` (one case of the step) with each candidate at `site`, after checking
/// it; leaves the context with the knobs kept.
#[allow(clippy::too_many_arguments)]
fn tune_site(
    ctx: &GpuContext,
    gpu: &mut GpuExecutor,
    cpu: &mut CpuExecutor,
    site: &str,
    candidates: &[Knobs],
    instrs: &[crate::graph::Instr],
    sampling: Sampling,
) -> Result<SiteReport> {
    let time_with = |knobs: Knobs, gpu: &mut GpuExecutor| -> Result<f64> {
        ctx.set_knobs(site, knobs);
        let plan = gpu.compile(instrs)?;
        sampling.time(gpu, plan)
    };
    let default_ms = time_with(Knobs::default(), gpu)?;
    let mut best = (Knobs::default(), default_ms);
    let mut rejected = Vec::new();
    let mut tried = 0;
    for &knobs in candidates {
        ctx.set_knobs(site, knobs);
        let failures: Vec<String> = instrs
            .iter()
            .map(|i| instr::check("tune", gpu, cpu, i, CHECK_SEED))
            .filter(|check| !check.passed)
            .map(|check| check.detail.clone().unwrap_or_else(|| check.name()))
            .collect();
        if !failures.is_empty() {
            rejected.push(format!("{}: {}", knobs.describe(), failures.join("; ")));
            continue;
        }
        tried += 1;
        let ms = time_with(knobs, gpu)?;
        if ms < best.1 {
            best = (knobs, ms);
        }
    }
    let (mut knobs, mut tuned_ms) = (Knobs::default(), default_ms);
    if best.0 != Knobs::default() && best.1 < default_ms * (1.0 - MARGIN) {
        // The second look: rounds of both, interleaved so that both see the same
        // neighbours, compared by their medians.
        let (mut defaults, mut bests) = (Vec::new(), Vec::new());
        for _ in 0..SECOND_LOOK_ROUNDS {
            defaults.push(time_with(Knobs::default(), gpu)?);
            bests.push(time_with(best.0, gpu)?);
        }
        let (again_default, again_best) = (median(&mut defaults), median(&mut bests));
        if again_best < again_default * (1.0 - MARGIN) {
            knobs = best.0;
            tuned_ms = best.1.max(again_best);
        }
    }
    ctx.set_knobs(site, knobs);
    Ok(SiteReport {
        site: site.to_string(),
        knobs,
        default_ms,
        tuned_ms,
        tried,
        rejected,
    })
}

/// Checks every candidate of every site that `plan`'s instructions consult against the
/// CPU reference (each site once, its other sites at their defaults); returns a check per
/// (site, candidate). CI runs this over awkward shapes and the models' own under both
/// kernel settings, so every setting `tune` may keep on some adapter has passed there.
pub fn check_candidates(ctx: &Arc<GpuContext>, plan: &Plan) -> Result<Vec<(String, Knobs, Check)>> {
    let streams = RandomStreams { seed: 3 };
    let data = Some(Arc::clone(&plan.dataset));
    let mut gpu = GpuExecutor::new(
        Arc::clone(ctx),
        &plan.graph,
        plan.optimizers.clone(),
        data.clone(),
        streams,
    )?;
    let mut cpu = CpuExecutor::new(&plan.graph, plan.optimizers.clone(), data, streams);
    let mut seen = BTreeSet::new();
    let mut out = Vec::new();
    for (i, instr) in plan.instrs.iter().enumerate() {
        ctx.take_sites();
        gpu.compile(std::slice::from_ref(instr))?;
        for (site, candidates) in ctx.take_sites() {
            if !seen.insert(site.clone()) {
                continue;
            }
            for knobs in candidates {
                ctx.set_knobs(&site, knobs);
                let check = instr::check(plan.name, &mut gpu, &mut cpu, instr, i as u64);
                out.push((site.clone(), knobs, check));
            }
            ctx.set_knobs(&site, Knobs::default());
        }
    }
    Ok(out)
}

/// `gan-gpu tune`: tunes, then prints each site (or one JSON report).
pub fn command(
    runtime: &Runtime,
    model: &'static ModelKind,
    quick: bool,
    json: bool,
) -> Result<()> {
    let ctx = runtime.require_gpu("tune")?;
    eprintln!("adapter: {}", ctx.describe());
    let bar = crate::io::progress::step_bar("tuning");
    let report = tune(runtime, model, quick, &mut |site, done, total| {
        bar.set_length(total as u64);
        bar.set_position(done as u64);
        bar.set_message(site.site.clone());
    })?;
    bar.finish_and_clear();
    if json {
        let text = serde_json::to_string_pretty(&report)
            .map_err(|e| crate::Error::InvalidArgument(format!("cannot encode the report: {e}")))?;
        println!("{text}");
        return Ok(());
    }
    let width = report.sites.iter().map(|s| s.site.len()).max().unwrap_or(4);
    println!(
        "{:<width$}  {:>11}  {:>9}  {:>7}  knobs",
        "site", "default ms", "tuned ms", "speedup"
    );
    for s in &report.sites {
        println!(
            "{:<width$}  {:>11.3}  {:>9.3}  {:>6.2}x  {}{}",
            s.site,
            s.default_ms,
            s.tuned_ms,
            s.default_ms / s.tuned_ms,
            s.knobs.describe(),
            if s.rejected.is_empty() {
                String::new()
            } else {
                format!(" ({} candidates did not match the CPU)", s.rejected.len())
            }
        );
    }
    let (before, after) = report
        .sites
        .iter()
        .fold((0.0, 0.0), |(b, a), s| (b + s.default_ms, a + s.tuned_ms));
    println!(
        "{} sites, {:.1} ms -> {:.1} ms in all ({:.2}x); kept in {} for {}",
        report.sites.len(),
        before,
        after,
        before / after.max(1e-9),
        report.path,
        report.key
    );
    Ok(())
}
