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

pub mod table;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rand::SeedableRng;
use rand::rngs::StdRng;
use serde::Serialize;

use crate::bench::cases::plan_cases;
use crate::bench::{BenchOptions, Sampling, dataset, timed_model};
use crate::error::Result;
use crate::gpu::GpuContext;
use crate::gpu::timer::median;
use crate::gpu::tuning::{self, Knobs, TunedSite, Tuning, TuningSource};
use crate::graph::Instr;
use crate::graph::cpu_exec::CpuExecutor;
use crate::graph::gpu_exec::GpuExecutor;
use crate::graph::runtime::Runtime;
use crate::graph::{Buf, Executor, RandomStreams};
use crate::model::{Model, ModelKind};
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
    /// Sites left at their defaults because the run's time was up.
    pub unreached: usize,
}

/// Which sites a run tunes, and for how long.
#[derive(Debug, Clone, Copy, Default)]
pub struct TuneScope {
    /// One timing per candidate instead of a median.
    pub quick: bool,
    /// Sites not started by then keep their defaults (and are tuned by a later run).
    pub deadline: Option<Instant>,
    /// Leave the sites the kept table already has alone.
    pub only_missing: bool,
}

/// Tunes the training step of `model` (built at `bench`'s shapes, `train`'s defaults)
/// on `runtime`'s adapter and stores the table; `progress` sees each site as it is done.
pub fn tune(
    runtime: &Runtime,
    model: &'static ModelKind,
    quick: bool,
    progress: &mut dyn FnMut(&SiteReport, usize, usize),
) -> Result<TuneReport> {
    let (built, step) = timed_model(model)?;
    let scope = TuneScope {
        quick,
        ..TuneScope::default()
    };
    tune_model(runtime, &built, &step, scope, progress)
}

/// Tunes the sites of `step` (a training step of `built`) within `scope`, merges them into
/// the kept table and stores it.
pub fn tune_model(
    runtime: &Runtime,
    built: &Model,
    step: &[Instr],
    scope: TuneScope,
    progress: &mut dyn FnMut(&SiteReport, usize, usize),
) -> Result<TuneReport> {
    let ctx = runtime.require_gpu("tune")?;
    let (kept, kept_source) = (ctx.kept_tuning(), ctx.tuning_source());
    // Every default is timed as the launchers' own, whatever a kept table says.
    ctx.use_tuning(Tuning::default(), TuningSource::Measuring);
    let result = measure(runtime, &ctx, built, step, scope, &kept, progress);
    // Nothing measured (an error, or every site already kept): as it was.
    if result.as_ref().is_ok_and(|r| r.sites.is_empty()) || result.is_err() {
        ctx.use_tuning(kept, kept_source);
    }
    result
}

fn measure(
    runtime: &Runtime,
    ctx: &Arc<GpuContext>,
    built: &Model,
    step: &[Instr],
    scope: TuneScope,
    kept: &Tuning,
    progress: &mut dyn FnMut(&SiteReport, usize, usize),
) -> Result<TuneReport> {
    let opts = BenchOptions {
        quick: scope.quick,
        gpu: true,
        cpu: false,
        model: built.kind,
    };
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
    let plan = gpu.compile(step)?;
    gpu.run(plan, 0)?;

    let sampling = Sampling::of(&opts, 7, 0.25);
    let cases = plan_cases(&built.graph, step);
    let mut work = Vec::new();
    let mut seen = BTreeSet::new();
    for case in cases {
        ctx.take_sites();
        gpu.compile(&case.instrs)?;
        for (site, candidates) in ctx.take_sites() {
            let known = scope.only_missing && kept.sites.contains_key(&site);
            if !known && seen.insert(site.clone()) {
                work.push((site, candidates, case.instrs.clone()));
            }
        }
    }

    let key = ctx.tuning_key();
    let path = tuning::tuning_path();
    if work.is_empty() {
        return Ok(TuneReport {
            adapter: ctx.info.name.clone(),
            key: key.describe(),
            path: path.display().to_string(),
            sites: Vec::new(),
            unreached: 0,
        });
    }
    let mut table = Tuning::default();
    let mut sites = Vec::new();
    let total = work.len();
    for (done, (site, candidates, instrs)) in work.into_iter().enumerate() {
        let Some(report) = tune_site(
            ctx,
            (&mut gpu, &mut cpu),
            &site,
            &candidates,
            &instrs,
            (sampling, scope.deadline),
        )?
        else {
            break;
        };
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
    let merged = table::store(&path, &key, &table)?;
    let source = TuningSource::Cache {
        path: path.clone(),
        sites: merged.sites.len(),
        changed: merged.changed(),
    };
    ctx.use_tuning(merged, source);
    Ok(TuneReport {
        adapter: ctx.info.name.clone(),
        key: key.describe(),
        path: path.display().to_string(),
        unreached: total - sites.len(),
        sites,
    })
}

/// Times `instrs` (one case of the step) with each candidate at `site`, after checking
/// it; leaves the context with the knobs kept. `None` (the defaults left in place) when
/// `deadline` passes first.
fn tune_site(
    ctx: &GpuContext,
    (gpu, cpu): (&mut GpuExecutor, &mut CpuExecutor),
    site: &str,
    candidates: &[Knobs],
    instrs: &[Instr],
    (sampling, deadline): (Sampling, Option<Instant>),
) -> Result<Option<SiteReport>> {
    let late = || deadline.is_some_and(|d| Instant::now() >= d);
    if late() {
        return Ok(None);
    }
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
        if late() {
            ctx.set_knobs(site, Knobs::default());
            return Ok(None);
        }
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
    let (mut knobs, mut default_ms, mut tuned_ms) = (Knobs::default(), default_ms, default_ms);
    if best.0 != Knobs::default() && best.1 < default_ms * (1.0 - MARGIN) {
        // The second look: rounds of both, interleaved so that both see the same
        // neighbours, compared by their medians.
        let (mut defaults, mut bests) = (Vec::new(), Vec::new());
        for _ in 0..SECOND_LOOK_ROUNDS {
            defaults.push(time_with(Knobs::default(), gpu)?);
            bests.push(time_with(best.0, gpu)?);
        }
        let (again_default, again_best) = (median(&mut defaults), median(&mut bests));
        // Reported from the second look, where both were timed alike.
        if again_best < again_default * (1.0 - MARGIN) {
            (knobs, default_ms, tuned_ms) = (best.0, again_default, again_best);
        }
    }
    ctx.set_knobs(site, knobs);
    Ok(Some(SiteReport {
        site: site.to_string(),
        knobs,
        default_ms,
        tuned_ms,
        tried,
        rejected,
    }))
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

/// When `train` tunes before its first step.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum TuneWhen {
    /// On a real GPU, when the kept table lacks a kernel of this run
    #[default]
    Auto,
    /// Also on a software adapter (slow there: minutes)
    Always,
    /// Never: the kept table, or the defaults
    Never,
}

/// `train`'s first use of an adapter: with `when` allowing it, tunes the sites of `step`
/// that the kept table lacks, for at most `seconds` (sites not reached keep their
/// defaults and are tuned by the next run), with a progress bar unless `quiet`. Tuning
/// never stops a run: a failure is reported and training goes on with what was kept.
pub fn before_training(
    runtime: &Runtime,
    built: &Model,
    step: &[Instr],
    when: TuneWhen,
    seconds: u64,
    quiet: bool,
) -> Result<()> {
    let Some(ctx) = runtime.gpu()? else {
        return Ok(());
    };
    if when == TuneWhen::Never || (when == TuneWhen::Auto && ctx.is_software()) {
        return Ok(());
    }
    let started = Instant::now();
    let scope = TuneScope {
        quick: false,
        deadline: Some(started + Duration::from_secs(seconds)),
        only_missing: when == TuneWhen::Auto,
    };
    let bar = if quiet {
        indicatif::ProgressBar::hidden()
    } else {
        crate::io::progress::step_bar("tuning kernels")
    };
    let result = tune_model(runtime, built, step, scope, &mut |site, done, total| {
        bar.set_length(total as u64);
        bar.set_position(done as u64);
        bar.set_message(format!("tuning {}", site.site));
    });
    bar.finish_and_clear();
    if quiet {
        return Ok(());
    }
    match result {
        Ok(report) if report.sites.is_empty() && report.unreached == 0 => {}
        Ok(report) => eprintln!(
            "tuning: {} of {} kernels measured in {:.0} s ({} off their defaults{}); kept in {}",
            report.sites.len(),
            report.sites.len() + report.unreached,
            started.elapsed().as_secs_f64(),
            report
                .sites
                .iter()
                .filter(|s| s.knobs != Knobs::default())
                .count(),
            if report.unreached > 0 {
                "; the rest at their defaults until a later run, see --tune-seconds"
            } else {
                ""
            },
            report.path
        ),
        Err(e) => eprintln!(
            "tuning stopped ({e}); training with {}",
            ctx.describe_tuning()
        ),
    }
    Ok(())
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
