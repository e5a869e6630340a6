//! A whole training iteration of a plan on both executors, from the same weights, noise
//! and batch: every parameter gradient, every Adam update and every loss.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use rand::{SeedableRng, rngs::StdRng};

use crate::cpu::adam_step;
use crate::error::Result;
use crate::gpu::GpuContext;
use crate::graph::cpu_exec::CpuExecutor;
use crate::graph::gpu_exec::GpuExecutor;
use crate::graph::{Buf, Executor, Instr, NodeId, RandomStreams};
use crate::selftest::Check;
use crate::selftest::compare::{Tolerance, compare, relative_l2};
use crate::selftest::plans::Plan;

/// Gradients are compared by relative L2 norm, not per element: where a ReLU input lies
/// within rounding of 0 the executors may take different sides (measured: one element
/// of 540,800 in the GAN at batch 100), and that one term then spreads through every
/// generator gradient (relative L2 up to 2.6e-3). A wiring or kernel bug is O(1).
const GRADIENT_L2: f64 = 1e-2;

/// Values after the first iteration: both checks of one run.
struct Run {
    gpu_ms: f64,
    initial: HashMap<NodeId, Vec<f32>>,
    grads: Vec<(String, Vec<f32>, Vec<f32>)>,
    updated: Vec<(String, Vec<f32>)>,
    losses: Vec<(String, Vec<f32>, Vec<f32>)>,
}

fn run(ctx: &Arc<GpuContext>, plan: &Plan) -> Result<Run> {
    let streams = RandomStreams { seed: 7 };
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
    let mut rng = StdRng::seed_from_u64(11);
    let mut initial = HashMap::new();
    for (id, values) in plan.graph.init_params(&mut rng) {
        gpu.write(Buf::Value(id), &values)?;
        cpu.write(Buf::Value(id), &values)?;
        initial.insert(id, values);
    }
    let (g, c) = (gpu.compile(&plan.instrs)?, cpu.compile(&plan.instrs)?);
    gpu.sync()?;
    let start = Instant::now();
    gpu.run(g, 0)?;
    gpu.sync()?;
    let gpu_ms = start.elapsed().as_secs_f64() * 1e3;
    cpu.run(c, 0)?;
    let name = |id: NodeId| plan.graph.nodes[id].name.clone();
    let mut out = Run {
        gpu_ms,
        initial,
        grads: Vec::new(),
        updated: Vec::new(),
        losses: Vec::new(),
    };
    for &id in &plan.params {
        let grad = Buf::Grad(id);
        out.grads.push((name(id), gpu.read(grad)?, cpu.read(grad)?));
        out.updated.push((name(id), gpu.read(Buf::Value(id))?));
    }
    for &id in &plan.losses {
        let v = Buf::Value(id);
        out.losses.push((name(id), gpu.read(v)?, cpu.read(v)?));
    }
    Ok(out)
}

/// Three checks of one iteration of `plan`: gradients, Adam updates, losses.
pub fn check(ctx: &Arc<GpuContext>, plan: &Plan) -> Vec<Check> {
    let shape = format!("batch {}, {} parameters", plan.batch, plan.params.len());
    let checks = [
        ("iteration: gradients", Tolerance::new(GRADIENT_L2, 0.0)),
        ("iteration: adam updates", Tolerance::new(1e-7, 1e-5)),
        ("iteration: losses", Tolerance::new(2e-3, 2e-3)),
    ];
    let mut out: Vec<Check> = checks
        .iter()
        .map(|&(what, tol)| Check::new(plan.name, what.into(), shape.clone(), tol))
        .collect();
    let run = match run(ctx, plan) {
        Ok(run) => run,
        Err(e) => {
            for c in &mut out {
                c.fail(format!("did not run: {e}"));
            }
            return out;
        }
    };
    for c in &mut out {
        c.ms = run.gpu_ms;
    }

    // Gradients: the worst relative L2 error names its parameter.
    let errors: Vec<(String, f64)> = run
        .grads
        .iter()
        .map(|(name, g, c)| (name.clone(), relative_l2(g, c)))
        .collect();
    let (worst_name, worst) = errors
        .iter()
        .max_by(|a, b| a.1.total_cmp(&b.1))
        .cloned()
        .unwrap_or_default();
    out[0].max_error = worst;
    out[0].error_ratio = worst / GRADIENT_L2;
    out[0].tolerance = format!("relative L2 {GRADIENT_L2:.0e}");
    let bad: Vec<String> = errors
        .iter()
        .filter(|(_, e)| e.is_nan() || *e > GRADIENT_L2)
        .map(|(n, e)| format!("gradient of {n}: relative L2 {e:.2e}"))
        .collect();
    if bad.is_empty() {
        out[0].detail = Some(format!("worst: gradient of {worst_name}"));
    } else {
        out[0].fail(bad.join("; "));
    }

    // Adam updates: the GPU's new weights must be Adam's step from its own gradient (the
    // first step is about lr·sign(g), too sensitive to compare across executors).
    let groups: HashMap<NodeId, usize> = plan
        .instrs
        .iter()
        .filter_map(|i| match *i {
            Instr::Adam { param, group, .. } => Some((param, group)),
            _ => None,
        })
        .collect();
    let mut failures = Vec::new();
    for ((&id, (name, updated)), (_, grad, _)) in
        plan.params.iter().zip(&run.updated).zip(&run.grads)
    {
        let mut expected = run.initial[&id].clone();
        let (mut m, mut v) = (vec![0.0; grad.len()], vec![0.0; grad.len()]);
        let cfg = plan.optimizers[groups.get(&id).copied().unwrap_or(0)];
        if let Err(e) = adam_step(&cfg, 1, &mut expected, grad, &mut m, &mut v) {
            failures.push(format!("{name}: {e}"));
            continue;
        }
        let cmp = compare(updated, &expected, out[1].tolerance_value);
        if cmp.ratio > out[1].error_ratio || cmp.ratio.is_nan() {
            out[1].record(&cmp);
        }
        if let Some(f) = cmp.failure() {
            failures.push(format!("updated {name}: {f}"));
        }
    }
    if !failures.is_empty() {
        out[1].fail(failures.join("; "));
    }

    // Losses and their statistics (mean D output, accuracy).
    let mut failures = Vec::new();
    for (name, g, c) in &run.losses {
        let cmp = compare(g, c, out[2].tolerance_value);
        if cmp.ratio > out[2].error_ratio || cmp.ratio.is_nan() {
            out[2].record(&cmp);
        }
        if cmp.failure().is_some() {
            failures.push(format!("{name}: gpu {g:?} cpu {c:?}"));
        }
    }
    if !failures.is_empty() {
        out[2].fail(failures.join("; "));
    }
    out
}
