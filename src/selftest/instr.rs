//! One instruction of a plan on both executors: its inputs filled with the same seeded
//! values, its outputs pre-filled with NaN (or, where it accumulates, with the same
//! values), run alone, and every output compared. The instruction goes through the
//! executors' own dispatch, so the GPU side runs exactly the launcher, kernel variant,
//! grid and split that training runs.

use std::time::Instant;

use rand::{RngExt, SeedableRng, rngs::StdRng};

use crate::error::Result;
use crate::graph::cpu_exec::CpuExecutor;
use crate::graph::describe::describe;
use crate::graph::gpu_exec::GpuExecutor;
use crate::graph::{Buf, Executor, Instr, NodeId};
use crate::selftest::Check;
use crate::selftest::compare::{Comparison, Tolerance, compare};

/// The step number every instruction runs at: past Adam's first step, so its bias
/// corrections are not trivial, and away from stream 0 of the noise.
const ITERATION: u64 = 2;

/// How an input is filled.
#[derive(Debug, Clone, Copy)]
enum Fill {
    /// Uniform in [-scale, scale].
    Uniform(f32),
    /// Uniform in [0, 1] (Adam's second moment).
    NonNegative,
    /// Uniform in [offset - 1, offset + 1].
    Offset(f32),
    /// Class labels below `classes`, as u32 bits in the f32 buffer.
    Labels(usize),
}

/// What an instruction reads and writes, and how its outputs compare.
struct Operands {
    inputs: Vec<(Buf, Fill)>,
    outputs: Vec<Buf>,
    /// Outputs start with values the kernel must add to.
    accumulate: bool,
    /// Outputs that start with such values although `accumulate` is false (an
    /// instruction whose outputs each have their own flag).
    added_to: Vec<Buf>,
    /// An Adam step also reads and writes the parameter's moments.
    adam: Option<NodeId>,
    tolerance: Tolerance,
}

fn operands(instr: &Instr) -> Operands {
    let u = Fill::Uniform(1.0);
    let op = |inputs: Vec<(Buf, Fill)>, outputs: Vec<Buf>, accumulate, tolerance| Operands {
        inputs,
        outputs,
        accumulate,
        added_to: Vec::new(),
        adam: None,
        tolerance,
    };
    let activation = Tolerance::new(1e-6, 1e-5);
    match *instr {
        Instr::Noise { out, .. } => op(vec![], vec![out], false, Tolerance::new(1e-5, 0.0)),
        Instr::DataBatch { out, .. } | Instr::DataLabels { out, .. } => {
            op(vec![], vec![out], false, Tolerance::EXACT)
        }
        Instr::Gemm {
            a,
            b,
            c,
            bias,
            k,
            accumulate,
            ..
        } => {
            let mut inputs = vec![(a, u), (b, u)];
            inputs.extend(bias.map(|x| (x, u)));
            op(inputs, vec![c], accumulate, Tolerance::reduction(k))
        }
        Instr::BiasGrad {
            dy,
            db,
            rows,
            accumulate,
            ..
        } => op(
            vec![(dy, u)],
            vec![db],
            accumulate,
            Tolerance::reduction(rows),
        ),
        Instr::Conv2d { geom, x, w, b, y } => op(
            [(x, u), (w, u)]
                .into_iter()
                .chain(b.map(|b| (b, u)))
                .collect(),
            vec![y],
            false,
            Tolerance::reduction(geom.k_h * geom.k_w * geom.in_c),
        ),
        Instr::Conv2dInputGrad {
            geom,
            dy,
            w,
            dx,
            accumulate,
        } => op(
            vec![(dy, u), (w, u)],
            vec![dx],
            accumulate,
            Tolerance::reduction(geom.k_h * geom.k_w * geom.out_c),
        ),
        Instr::Conv2dWeightGrad {
            geom,
            x,
            dy,
            dw,
            accumulate,
        } => op(
            vec![(x, u), (dy, u)],
            vec![dw],
            accumulate,
            Tolerance::reduction(geom.batch * geom.out_h() * geom.out_w()),
        ),
        Instr::ConvTranspose2d { geom, x, w, b, y } => op(
            [(x, u), (w, u)]
                .into_iter()
                .chain(b.map(|b| (b, u)))
                .collect(),
            vec![y],
            false,
            Tolerance::reduction(geom.k_h * geom.k_w * geom.in_c),
        ),
        Instr::ConvTranspose2dInputGrad {
            geom,
            dy,
            w,
            dx,
            accumulate,
        } => op(
            vec![(dy, u), (w, u)],
            vec![dx],
            accumulate,
            Tolerance::reduction(geom.k_h * geom.k_w * geom.out_c),
        ),
        Instr::ConvTranspose2dWeightGrad {
            geom,
            x,
            dy,
            dw,
            accumulate,
        } => op(
            vec![(x, u), (dy, u)],
            vec![dw],
            accumulate,
            Tolerance::reduction(geom.batch * geom.in_h * geom.in_w),
        ),
        // Wide inputs reach tanh's and the sigmoid's saturated tails.
        Instr::Activation { x, y, .. } => {
            op(vec![(x, Fill::Uniform(8.0))], vec![y], false, activation)
        }
        Instr::ActivationGrad {
            x,
            y,
            dy,
            dx,
            accumulate,
            ..
        } => op(
            vec![(x, Fill::Uniform(8.0)), (y, u), (dy, u)],
            vec![dx],
            accumulate,
            activation,
        ),
        Instr::BceLoss { logits, stats, .. } => op(
            vec![(logits, Fill::Uniform(20.0))],
            vec![stats],
            false,
            Tolerance::new(1e-6, 1e-5),
        ),
        Instr::BceGrad {
            logits,
            dlogits,
            accumulate,
            ..
        } => op(
            vec![(logits, Fill::Uniform(20.0))],
            vec![dlogits],
            accumulate,
            Tolerance::new(1e-7, 1e-5),
        ),
        Instr::SoftmaxCeLoss {
            logits,
            labels,
            stats,
            classes,
            ..
        } => op(
            vec![
                (logits, Fill::Uniform(20.0)),
                (labels, Fill::Labels(classes)),
            ],
            vec![stats],
            false,
            Tolerance::new(1e-6, 1e-5),
        ),
        Instr::SoftmaxCeGrad {
            logits,
            labels,
            dlogits,
            classes,
            accumulate,
            ..
        } => op(
            vec![
                (logits, Fill::Uniform(20.0)),
                (labels, Fill::Labels(classes)),
            ],
            vec![dlogits],
            accumulate,
            Tolerance::new(1e-7, 1e-5),
        ),
        Instr::Adam { param, .. } => Operands {
            inputs: vec![(Buf::Value(param), u), (Buf::Grad(param), u)],
            outputs: vec![Buf::Value(param)],
            accumulate: false,
            added_to: Vec::new(),
            adam: Some(param),
            tolerance: Tolerance::new(1e-7, 1e-5),
        },
        // Off-centre inputs, so a variance formula that cancels would show; the GPU sums
        // rows in f32 (Chan's pairwise merge), the CPU in f64.
        Instr::BatchNorm {
            x,
            gamma,
            beta,
            mean,
            var,
            y,
            rows,
            momentum,
            ..
        } => {
            let mut outputs = vec![y];
            if momentum.is_some() {
                outputs.extend([mean, var]);
            }
            op(
                vec![
                    (x, Fill::Offset(3.0)),
                    (gamma, u),
                    (beta, u),
                    (mean, u),
                    (var, Fill::NonNegative),
                ],
                outputs,
                false,
                Tolerance::new(2e-6, 1e-4).widened(rows),
            )
        }
        Instr::BatchNormGrad {
            x,
            gamma,
            dy,
            dx,
            dgamma,
            dbeta,
            rows,
            ..
        } => {
            let wanted = [dx, dgamma, dbeta].into_iter().flatten();
            Operands {
                inputs: vec![(x, Fill::Offset(3.0)), (gamma, u), (dy, u)],
                outputs: wanted.clone().map(|(b, _)| b).collect(),
                accumulate: false,
                added_to: wanted.filter(|&(_, acc)| acc).map(|(b, _)| b).collect(),
                adam: None,
                tolerance: Tolerance::reduction(rows),
            }
        }
        // The masks are integer draws, bit-exact; kept values are one f32 product.
        Instr::Dropout { x, y, .. } => op(vec![(x, u)], vec![y], false, Tolerance::EXACT),
        Instr::DropoutGrad {
            dy, dx, accumulate, ..
        } => op(vec![(dy, u)], vec![dx], accumulate, Tolerance::EXACT),
        Instr::Ema {
            source, average, ..
        } => op(
            vec![(Buf::Value(source), u), (Buf::Value(average), u)],
            vec![Buf::Value(average)],
            false,
            Tolerance::new(1e-7, 1e-6),
        ),
        Instr::RandomLabels { out, .. } => op(vec![], vec![out], false, Tolerance::EXACT),
        Instr::Embedding {
            table,
            labels,
            out,
            classes,
            ..
        } => op(
            vec![(table, u), (labels, Fill::Labels(classes))],
            vec![out],
            false,
            Tolerance::EXACT,
        ),
        // Summed in batch order on both sides.
        Instr::EmbeddingGrad {
            dy,
            labels,
            dtable,
            classes,
            accumulate,
            ..
        } => op(
            vec![(dy, u), (labels, Fill::Labels(classes))],
            vec![dtable],
            accumulate,
            Tolerance::new(1e-6, 1e-6),
        ),
        Instr::Add { a, b, y, .. } => op(vec![(a, u), (b, u)], vec![y], false, Tolerance::EXACT),
        Instr::Accumulate {
            src,
            dst,
            accumulate,
            ..
        } => op(vec![(src, u)], vec![dst], accumulate, Tolerance::EXACT),
        // Bits copied on both sides.
        Instr::Concat { a, b, y, .. } => op(vec![(a, u), (b, u)], vec![y], false, Tolerance::EXACT),
        Instr::RowDot { a, b, y, cols, .. } => op(
            vec![(a, u), (b, u)],
            vec![y],
            false,
            Tolerance::reduction(cols),
        ),
        Instr::RowDotGrad {
            dy,
            other,
            dx,
            accumulate,
            ..
        } => op(
            vec![(dy, u), (other, u)],
            vec![dx],
            accumulate,
            Tolerance::new(1e-7, 1e-6),
        ),
    }
}

fn node(buf: Buf) -> NodeId {
    match buf {
        Buf::Value(id) | Buf::Grad(id) => id,
    }
}

fn fill(rng: &mut StdRng, len: usize, how: Fill) -> Vec<f32> {
    (0..len)
        .map(|_| match how {
            Fill::Uniform(scale) => rng.random_range(-scale..=scale),
            Fill::NonNegative => rng.random_range(0.0..=1.0),
            Fill::Offset(offset) => offset + rng.random_range(-1.0..=1.0),
            Fill::Labels(classes) => f32::from_bits(rng.random_range(0..classes.max(1) as u32)),
        })
        .collect()
}

/// The executors' results for every output of `instr`, by name.
struct Outputs(Vec<(String, Vec<f32>)>);

fn outputs(exec: &mut dyn Executor, ops: &Operands) -> Result<Outputs> {
    let mut out = Vec::new();
    for &buf in &ops.outputs {
        let name = exec.graph().nodes[node(buf)].name.clone();
        let label = match buf {
            Buf::Value(_) => name,
            Buf::Grad(_) => format!("gradient of {name}"),
        };
        out.push((label, exec.read(buf)?));
    }
    if let Some(param) = ops.adam {
        let (m, v) = exec.read_adam(param)?;
        out.push(("adam m".into(), m));
        out.push(("adam v".into(), v));
    }
    Ok(Outputs(out))
}

/// Runs `instr` alone on both executors from the same inputs (seeded by `seed`) and
/// compares what it wrote. An error on either side is a failed check naming it.
pub fn check(
    plan_name: &'static str,
    gpu: &mut GpuExecutor,
    cpu: &mut CpuExecutor,
    instr: &Instr,
    seed: u64,
) -> Check {
    let (what, shape) = describe(cpu.graph(), instr);
    let ops = operands(instr);
    let mut check = Check::new(plan_name, what, shape, ops.tolerance);
    match run_both(gpu, cpu, instr, &ops, seed) {
        Err(e) => check.fail(format!("did not run: {e}")),
        Ok((gpu_out, cpu_out, gpu_ms)) => {
            check.ms = gpu_ms;
            let mut worst: Option<(String, Comparison)> = None;
            for ((name, g), (_, c)) in gpu_out.0.iter().zip(&cpu_out.0) {
                let cmp = compare(g, c, ops.tolerance);
                if worst.as_ref().is_none_or(|(_, w)| cmp.ratio > w.ratio) {
                    worst = Some((name.clone(), cmp));
                }
            }
            if let Some((name, cmp)) = worst {
                check.record(&cmp);
                if let Some(failure) = cmp.failure() {
                    check.fail(format!("{name}: {failure}"));
                }
            }
        }
    }
    check
}

/// Fills, runs and reads back `instr` on both executors; also returns the milliseconds
/// from the GPU's submission to its completion (with a first use's shader compilation).
fn run_both(
    gpu: &mut GpuExecutor,
    cpu: &mut CpuExecutor,
    instr: &Instr,
    ops: &Operands,
    seed: u64,
) -> Result<(Outputs, Outputs, f64)> {
    let mut rng = StdRng::seed_from_u64(seed);
    let len = |buf: Buf| cpu.graph().nodes[node(buf)].len();
    let mut writes: Vec<(Buf, Vec<f32>)> = Vec::new();
    for &(buf, how) in &ops.inputs {
        writes.push((buf, fill(&mut rng, len(buf), how)));
    }
    for &buf in &ops.outputs {
        if !ops.inputs.iter().any(|&(b, _)| b == buf) {
            let values = if ops.accumulate || ops.added_to.contains(&buf) {
                fill(&mut rng, len(buf), Fill::Uniform(1.0))
            } else {
                vec![f32::NAN; len(buf)]
            };
            writes.push((buf, values));
        }
    }
    let moments = ops.adam.map(|param| {
        let n = len(Buf::Value(param));
        (
            param,
            fill(&mut rng, n, Fill::Uniform(0.1)),
            fill(&mut rng, n, Fill::NonNegative),
        )
    });
    let plan = [instr.clone()];
    let mut sides: Vec<&mut dyn Executor> = vec![gpu, cpu];
    let mut results = Vec::new();
    let mut times = Vec::new();
    for exec in sides.iter_mut() {
        for (buf, values) in &writes {
            exec.write(*buf, values)?;
        }
        if let Some((param, m, v)) = &moments {
            exec.write_adam(*param, m, v)?;
        }
        let compiled = exec.compile(&plan)?;
        exec.sync()?;
        let start = Instant::now();
        exec.run(compiled, ITERATION)?;
        exec.sync()?;
        times.push(start.elapsed().as_secs_f64() * 1e3);
        results.push(outputs(&mut **exec, ops)?);
    }
    let cpu_out = results.pop().expect("two sides");
    let gpu_out = results.pop().expect("two sides");
    Ok((gpu_out, cpu_out, times[0]))
}
