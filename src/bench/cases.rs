//! What the bench times: the distinct instructions of a model's training step (and the
//! classifier's), each named by the layer it first serves, with the work it does.
//!
//! FLOPs count a multiply-add as 2: GEMM 2·m·n·k; convolutions 2·(output pixels)·cout·
//! kh·kw·cin (conv2d) or 2·(input pixels)·cin·kh·kw·cout (transposed), each gradient the
//! same as its forward. Element-wise instructions report the bytes they must move.

use crate::cpu::Activation;
use crate::graph::describe::{bytes, describe, layer_label};
use crate::graph::{Graph, Instr};

/// The amount of work in one call.
#[derive(Debug, Clone, Copy)]
pub enum Work {
    Flops(f64),
    Bytes(f64),
}

/// One instruction to time, or a convolution with the activation that follows it (which
/// the wgpu executor runs as one dispatch).
pub struct Case {
    /// What the kernel computes, e.g. `conv2d weight grad`.
    pub kernel: String,
    /// The layer (graph node) it first serves in the plan ([`layer_label`]).
    pub layer: String,
    /// Its shape, which also tells cases apart.
    pub shape: String,
    pub work: Work,
    pub instrs: Vec<Instr>,
}

/// The distinct instructions of `plan`, in first-use order, each convolution that an
/// activation follows also with it.
pub fn plan_cases(graph: &Graph, plan: &[Instr]) -> Vec<Case> {
    let mut cases: Vec<Case> = Vec::new();
    for (at, instr) in plan.iter().enumerate() {
        let (kernel, shape) = describe(graph, instr);
        if let Some(act) = fused_activation(instr, plan.get(at + 1)) {
            let fused = format!("{kernel} + {act:?}");
            if !cases.iter().any(|c| c.kernel == fused && c.shape == shape) {
                cases.push(Case {
                    kernel: fused,
                    layer: layer_label(graph, instr),
                    shape: shape.clone(),
                    work: Work::Flops(instr.flops()),
                    instrs: plan[at..at + 2].to_vec(),
                });
            }
        }
        if cases.iter().any(|c| c.kernel == kernel && c.shape == shape) {
            continue;
        }
        let layer = layer_label(graph, instr);
        let flops = instr.flops();
        cases.push(Case {
            kernel,
            layer,
            shape,
            work: if flops > 0.0 {
                Work::Flops(flops)
            } else {
                Work::Bytes(bytes(graph, instr))
            },
            instrs: vec![instr.clone()],
        });
    }
    cases
}

/// The activation that `next` applies to `instr`'s output, when `instr` is a convolution.
fn fused_activation(instr: &Instr, next: Option<&Instr>) -> Option<Activation> {
    let (Instr::Conv2d { y, .. } | Instr::ConvTranspose2d { y, .. }) = instr else {
        return None;
    };
    match next {
        Some(Instr::Activation { act, x, .. }) if x == y => Some(*act),
        _ => None,
    }
}
