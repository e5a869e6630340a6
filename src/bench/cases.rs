//! What the bench times: the distinct instructions of a model's training step (and the
//! classifier's), each named by the layer it first serves, with the work it does.
//!
//! FLOPs count a multiply-add as 2: GEMM 2·m·n·k; convolutions 2·(output pixels)·cout·
//! kh·kw·cin (conv2d) or 2·(input pixels)·cin·kh·kw·cout (transposed), each gradient the
//! same as its forward. Element-wise instructions report the bytes they must move.

use super::plan::describe_run;
use crate::graph::describe::bytes;
use crate::graph::gpu_exec::head_run_len;
use crate::graph::{Graph, Instr};

/// The amount of work in one call.
#[derive(Debug, Clone, Copy)]
pub enum Work {
    Flops(f64),
    Bytes(f64),
}

/// One instruction to time, or a run of neighbours that the wgpu executor records as one
/// (see [`fused_len`]).
pub struct Case {
    /// What the kernel computes, e.g. `conv2d weight grad`.
    pub kernel: String,
    /// The layer (graph node) it first serves in the plan
    /// ([`layer_label`](crate::graph::describe::layer_label)).
    pub layer: String,
    /// Its shape, which also tells cases apart.
    pub shape: String,
    pub work: Work,
    pub instrs: Vec<Instr>,
}

/// The distinct instructions of `plan`, in first-use order, and before each one that
/// starts a fused run, the run too; after an Adam step whose parameter has a moving
/// average, the two steps as one case.
pub fn plan_cases(graph: &Graph, plan: &[Instr]) -> Vec<Case> {
    let mut cases: Vec<Case> = Vec::new();
    for at in 0..plan.len() {
        let run = &plan[at..at + fused_len(&plan[at..])];
        let with_average = with_its_average(plan, &plan[at]);
        for run in [run, &run[..1], &with_average] {
            if run.is_empty() {
                continue;
            }
            let (kernel, shape, layer) = describe_run(graph, run);
            if cases.iter().any(|c| c.kernel == kernel && c.shape == shape) {
                continue;
            }
            let flops: f64 = run.iter().map(Instr::flops).sum();
            cases.push(Case {
                kernel,
                layer,
                shape,
                work: if flops > 0.0 {
                    Work::Flops(flops)
                } else {
                    Work::Bytes(run.iter().map(|i| bytes(graph, i)).sum())
                },
                instrs: run.to_vec(),
            });
        }
    }
    cases
}

/// An Adam step and the moving-average step of the same parameter, which the wgpu executor
/// records as one dispatch (as it does an optimizer group's packed steps and their average);
/// empty for any other instruction.
fn with_its_average(plan: &[Instr], instr: &Instr) -> Vec<Instr> {
    let Instr::Adam { param, .. } = *instr else {
        return Vec::new();
    };
    plan.iter()
        .find(|i| matches!(i, Instr::Ema { source, .. } if *source == param))
        .map_or(Vec::new(), |ema| vec![instr.clone(), ema.clone()])
}

/// How many instructions from the start of `instrs` the wgpu executor records as one
/// fused run (1: none): a convolution and its activation, a weight gradient and its
/// bias gradient, an input gradient and the gradient through the activation before it, a
/// BCE loss and its gradient (two such pairs of one batch together), a label embedding and the add, or row dot product and add,
/// that consume it, a thin head's input gradient with the activation gradient after it
/// ([`head_run_len`]), noise with the random labels drawn beside it, a batch with its
/// labels, and two neighbouring concats.
pub fn fused_len(instrs: &[Instr]) -> usize {
    let head = head_run_len(instrs);
    if head > 0 {
        return head;
    }
    match *instrs {
        [
            Instr::Embedding { out, .. },
            Instr::RowDot { a, b, .. },
            Instr::Add { .. },
            ..,
        ] if a == out || b == out => 3,
        [
            Instr::Conv2d { y, .. } | Instr::ConvTranspose2d { y, .. },
            Instr::Activation { x, .. },
            ..,
        ] if x == y => 2,
        [
            Instr::Conv2dWeightGrad { dy, .. } | Instr::ConvTranspose2dWeightGrad { dy, .. },
            Instr::BiasGrad { dy: bias_dy, .. },
            ..,
        ] if dy == bias_dy => 2,
        [
            Instr::Conv2dInputGrad { dx, .. } | Instr::ConvTranspose2dInputGrad { dx, .. },
            Instr::ActivationGrad { dy, .. },
            ..,
        ] if dx == dy => 2,
        [
            Instr::BceLoss { logits, .. },
            Instr::BceGrad {
                logits: grad_logits,
                dlogits,
                ..
            },
            Instr::BceLoss {
                logits: second_logits,
                ..
            },
            Instr::BceGrad {
                logits: second_grad_logits,
                dlogits: second_dlogits,
                ..
            },
            ..,
        ] if [grad_logits, second_logits, second_grad_logits] == [logits; 3]
            && dlogits == second_dlogits =>
        {
            4
        }
        [
            Instr::BceLoss { logits, .. },
            Instr::BceGrad {
                logits: grad_logits,
                ..
            },
            ..,
        ] if logits == grad_logits => 2,
        [Instr::Embedding { out, .. }, Instr::Add { a, b, .. }, ..] if a == out || b == out => 2,
        [Instr::Noise { .. }, Instr::RandomLabels { .. }, ..] => 2,
        [
            Instr::Concat { y, .. },
            Instr::Concat { a, b, y: y2, .. },
            ..,
        ] if ![a, b, y2].contains(&y) => 2,
        [
            Instr::DataBatch { batch, .. },
            Instr::DataLabels {
                batch: labels_batch,
                ..
            },
            ..,
        ] if batch == labels_batch => 2,
        _ => 1,
    }
}
