//! `gan-gpu selftest`: every kernel on this adapter against the CPU reference.
//!
//! The checks come from the trainer's own plans: each distinct instruction of the GAN's
//! training step (batch 100) and of the classifier's runs alone on the GPU executor and
//! on the CPU executor from the same inputs (`instr.rs`), so each kernel is checked at the
//! exact shape, variant, grid and split that training uses under the context's kernel
//! settings; then whole training iterations of both models (`step.rs`). The full run adds
//! small graphs at awkward shapes ([`plans::awkward`]). [`first_use`] runs the quick set
//! before `train` first uses an adapter.

pub mod first_use;
pub mod plans;

mod compare;
pub mod instr;
mod step;

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Instant;

use serde::Serialize;

use crate::error::{Error, Result};
use crate::gpu::{GpuContext, KernelChoice, KernelSettings};
use crate::graph::RandomStreams;
use crate::graph::cpu_exec::CpuExecutor;
use crate::graph::gpu_exec::GpuExecutor;
use crate::graph::runtime::Runtime;
use compare::{Comparison, Tolerance};
use plans::Plan;

/// One line of the report: a kernel at one shape, or one part of a training iteration.
#[derive(Debug, Clone, Serialize)]
pub struct Check {
    /// The plan it comes from (a model's name, "classifier step", "awkward dense", ...).
    pub plan: &'static str,
    pub what: String,
    pub shape: String,
    /// The largest absolute difference from the CPU, in the output closest to failing
    /// (the worst relative L2 error for gradients).
    pub max_error: f64,
    pub tolerance: String,
    /// The worst element's error as a fraction of what it is allowed: at most 1 passes.
    pub error_ratio: f64,
    pub passed: bool,
    /// GPU milliseconds, submission to completion (a first use includes compiling the
    /// shader).
    pub ms: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    #[serde(skip)]
    tolerance_value: Tolerance,
}

impl Check {
    fn new(plan: &'static str, what: String, shape: String, tolerance: Tolerance) -> Check {
        Check {
            plan,
            what,
            shape,
            max_error: 0.0,
            tolerance: tolerance.describe(),
            error_ratio: 0.0,
            passed: true,
            ms: 0.0,
            detail: None,
            tolerance_value: tolerance,
        }
    }

    fn record(&mut self, cmp: &Comparison) {
        self.max_error = cmp.max_error;
        self.error_ratio = cmp.ratio;
    }

    fn fail(&mut self, detail: String) {
        self.passed = false;
        self.detail = Some(detail);
    }

    /// "conv2d weight grad 100x13x13x32 k3x3 s2x2 -> 6x6x64 (cgan)".
    pub fn name(&self) -> String {
        format!("{} {} ({})", self.what, self.shape, self.plan)
    }

    /// The report line: status, what, shape, max error, tolerance, time.
    pub fn render(&self) -> String {
        let mut line = format!(
            "{:<4}  {:<17} {:<34} {:<38} max err {:<9.2e} tol {:<24} {:>9.1} ms",
            if self.passed { "PASS" } else { "FAIL" },
            self.plan,
            self.what,
            self.shape,
            self.max_error,
            self.tolerance,
            self.ms
        );
        if let (false, Some(detail)) = (self.passed, &self.detail) {
            line += &format!("\n      {detail}");
        }
        line
    }
}

/// The adapter and the settings a report was made with.
#[derive(Debug, Clone, Serialize)]
pub struct Header {
    pub adapter: String,
    pub backend: String,
    pub device_type: String,
    pub driver: String,
    pub driver_info: String,
    pub kernels: KernelSettings,
    pub kernel_choice: KernelChoice,
    pub gan_gpu_version: &'static str,
}

impl Header {
    pub fn of(ctx: &GpuContext) -> Header {
        Header {
            adapter: ctx.info.name.clone(),
            backend: format!("{:?}", ctx.info.backend).to_lowercase(),
            device_type: crate::gpu::adapters::device_type_name(ctx.info.device_type).into(),
            driver: ctx.info.driver.clone(),
            driver_info: ctx.info.driver_info.clone(),
            kernels: ctx.kernel_settings(),
            kernel_choice: ctx.kernel_choice(),
            gan_gpu_version: env!("CARGO_PKG_VERSION"),
        }
    }

    /// The report's first line.
    pub fn render(&self) -> String {
        format!(
            "selftest on {} | backend {} ({}) | driver {} {} | kernels {} ({}) | gan-gpu {}",
            self.adapter,
            self.backend,
            self.device_type,
            self.driver,
            self.driver_info,
            self.kernels.name(),
            self.kernel_choice.provenance(),
            self.gan_gpu_version
        )
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub header: Header,
    pub quick: bool,
    pub passed: bool,
    pub seconds: f64,
    pub checks: Vec<Check>,
}

impl Report {
    pub fn failing(&self) -> Vec<&Check> {
        self.checks.iter().filter(|c| !c.passed).collect()
    }

    /// The closing line.
    pub fn summary(&self) -> String {
        let failing = self.failing();
        if failing.is_empty() {
            format!(
                "selftest passed: {} checks in {:.1} s",
                self.checks.len(),
                self.seconds
            )
        } else {
            format!(
                "selftest FAILED: {} of {} checks ({:.1} s)",
                failing.len(),
                self.checks.len(),
                self.seconds
            )
        }
    }
}

/// The GAN's shapes: `gan-gpu train`'s defaults.
const GAN_BATCH: usize = 100;
const GAN_NOISE: usize = 100;

/// Runs the checks on `ctx` with its kernel settings; `on_check` sees each as it
/// finishes. `quick` keeps the GAN's instructions and both whole iterations (what
/// `train` needs), leaving out the classifier's instructions and the awkward shapes.
pub fn run(ctx: &Arc<GpuContext>, quick: bool, on_check: &mut dyn FnMut(&Check)) -> Result<Report> {
    let start = Instant::now();
    let models = plans::model_steps(GAN_BATCH, GAN_NOISE)?;
    let classifier = plans::classifier_step()?;
    let mut instr_plans: Vec<&Plan> = models.iter().collect();
    let awkward = if quick { Vec::new() } else { plans::awkward()? };
    if !quick {
        instr_plans.push(&classifier);
        instr_plans.extend(&awkward);
    }
    let mut checks = Vec::new();
    let mut seen = HashSet::new();
    for plan in instr_plans {
        for check in instruction_checks(ctx, plan, &mut seen)? {
            on_check(&check);
            checks.push(check);
        }
    }
    for plan in models.iter().chain([&classifier]) {
        for check in step::check(ctx, plan) {
            on_check(&check);
            checks.push(check);
        }
    }
    Ok(Report {
        header: Header::of(ctx),
        quick,
        passed: checks.iter().all(|c| c.passed),
        seconds: start.elapsed().as_secs_f64(),
        checks,
    })
}

/// One check per distinct (kernel, shape) of `plan` not in `seen` yet.
fn instruction_checks(
    ctx: &Arc<GpuContext>,
    plan: &Plan,
    seen: &mut HashSet<(String, String)>,
) -> Result<Vec<Check>> {
    let streams = RandomStreams { seed: 3 };
    let data = Some(Arc::clone(&plan.dataset));
    let adams = plan.optimizers.clone();
    let mut gpu = GpuExecutor::new(
        Arc::clone(ctx),
        &plan.graph,
        adams.clone(),
        data.clone(),
        streams,
    )?;
    let mut cpu = CpuExecutor::new(&plan.graph, adams, data, streams);
    let mut out = Vec::new();
    for (i, instr) in plan.instrs.iter().enumerate() {
        if seen.insert(crate::graph::describe::describe(&plan.graph, instr)) {
            out.push(instr::check(plan.name, &mut gpu, &mut cpu, instr, i as u64));
        }
    }
    Ok(out)
}

/// `gan-gpu selftest` on `runtime`'s adapter and kernel settings (`--kernels`, else
/// `GAN_GPU_KERNELS`): prints the header and one line per check (or, with `json`, the
/// whole report as JSON), keeps the verdict for `train`, and fails naming every failing
/// check.
pub fn command(runtime: &Runtime, json: bool, quick: bool) -> Result<()> {
    let ctx = runtime.require_gpu("selftest")?;
    if !json {
        println!("{}", Header::of(&ctx).render());
    }
    let report = run(&ctx, quick, &mut |check| {
        if !json {
            println!("{}", check.render());
        }
    })?;
    if json {
        let text = serde_json::to_string_pretty(&report)
            .map_err(|e| Error::InvalidArgument(format!("cannot encode the report: {e}")))?;
        println!("{text}");
    } else {
        println!("{}", report.summary());
    }
    first_use::remember(&ctx, &report);
    if report.passed {
        Ok(())
    } else {
        Err(Error::Selftest {
            adapter: ctx.describe(),
            failing: report.failing().iter().map(|c| c.name()).collect(),
            advice: String::new(),
        })
    }
}
