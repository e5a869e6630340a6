//! What the bench times: the distinct instructions of a model's training step (and the
//! classifier's), each named by the layer it first serves, with the work it does.
//!
//! FLOPs count a multiply-add as 2: GEMM 2·m·n·k; convolutions 2·(output pixels)·cout·
//! kh·kw·cin (conv2d) or 2·(input pixels)·cin·kh·kw·cout (transposed), each gradient the
//! same as its forward. Element-wise instructions report the bytes they must move.

use crate::graph::describe::{bytes, describe, layer_label};
use crate::graph::{Graph, Instr};

/// The amount of work in one call.
#[derive(Debug, Clone, Copy)]
pub enum Work {
    Flops(f64),
    Bytes(f64),
}

/// One instruction to time.
pub struct Case {
    /// What the kernel computes, e.g. `conv2d weight grad`.
    pub kernel: String,
    /// The layer (graph node) it first serves in the plan ([`layer_label`]).
    pub layer: String,
    /// Its shape, which also tells cases apart.
    pub shape: String,
    pub work: Work,
    pub instr: Instr,
}

/// The distinct instructions of `plan`, in first-use order.
pub fn plan_cases(graph: &Graph, plan: &[Instr]) -> Vec<Case> {
    let mut cases: Vec<Case> = Vec::new();
    for instr in plan {
        let (kernel, shape) = describe(graph, instr);
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
            instr: instr.clone(),
        });
    }
    cases
}
