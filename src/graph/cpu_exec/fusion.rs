//! What the CPU executor runs together: an activation with the layer before it, an
//! activation gradient with the input gradient before it, and a transposed convolution's
//! weight and input gradients of one dy (found when a plan is compiled), and an Adam step with
//! the moving average of its parameter (moved beside it when a plan is compiled; run in
//! `CpuExecutor::exec`).

use std::mem::take;

use super::CpuExecutor;
use crate::cpu;
use crate::error::Result;
use crate::geometry::ConvTranspose2dGeometry;
use crate::graph::schedule::{averages_beside_their_updates, independent, shared_im2col_partner};
use crate::graph::{Buf, Instr};

/// A compiled plan: its instructions, and at each transposed convolution's weight gradient
/// whose input gradient runs with it, the two together.
#[derive(Default)]
pub(super) struct Plan {
    instrs: Vec<Instr>,
    together: Vec<Option<TransposeGrads>>,
}

/// A transposed convolution's weight and input gradients of one dy, computed together
/// ([`cpu::conv_transpose2d_backward_into`]): the input gradient's index, whether the
/// activation gradient after it is fused too, and their operands.
#[derive(Clone, Copy)]
pub(super) struct TransposeGrads {
    input_grad: usize,
    fuse_next: bool,
    geom: ConvTranspose2dGeometry,
    x: Buf,
    dy: Buf,
    w: Buf,
    dw: Buf,
    accumulate_dw: bool,
    dx: Buf,
    accumulate_dx: bool,
}

impl Plan {
    pub(super) fn new(instrs: &[Instr]) -> Self {
        let mut owned = instrs.to_vec();
        averages_beside_their_updates(&mut owned);
        let instrs = &owned[..];
        let together = (0..instrs.len())
            .map(|i| {
                let j = shared_im2col_partner(instrs, i)?;
                let (
                    &Instr::ConvTranspose2dWeightGrad {
                        geom,
                        x,
                        dy,
                        dw,
                        accumulate: accumulate_dw,
                    },
                    &Instr::ConvTranspose2dInputGrad {
                        w,
                        dx,
                        accumulate: accumulate_dx,
                        ..
                    },
                ) = (&instrs[i], &instrs[j])
                else {
                    return None;
                };
                // The fused activation gradient moves up past the instructions between too.
                let fuse_next = instrs.get(j + 1).is_some_and(|next| {
                    fusable_activation_grad(&instrs[j], Some(next)).is_some()
                        && instrs[i..j].iter().all(|before| independent(before, next))
                });
                Some(TransposeGrads {
                    input_grad: j,
                    fuse_next,
                    geom,
                    x,
                    dy,
                    w,
                    dw,
                    accumulate_dw,
                    dx,
                    accumulate_dx,
                })
            })
            .collect();
        Plan {
            instrs: owned,
            together,
        }
    }
}

/// The activation instruction that may be fused into the instruction before it: it must read
/// exactly that instruction's output value.
pub(super) fn fusable_activation(
    producer: &Instr,
    next: Option<&Instr>,
) -> Option<(cpu::Activation, Buf)> {
    let out = match *producer {
        Instr::Conv2d { y, .. } | Instr::ConvTranspose2d { y, .. } => y,
        Instr::Gemm {
            c,
            bias: Some(_),
            accumulate: false,
            ..
        } => c,
        _ => return None,
    };
    match next {
        Some(&Instr::Activation { act, x, y, .. }) if x == out && y != out => Some((act, y)),
        _ => None,
    }
}

/// The activation gradient that may be fused into the input gradient before it: it must read
/// exactly that instruction's result as its `dy`, and write elsewhere.
pub(super) struct FusableGrad {
    act: cpu::Activation,
    x: Buf,
    y: Buf,
    /// Where the fused gradient writes (lent out of the executor while it runs).
    pub(super) dx: Buf,
    accumulate: bool,
}

pub(super) fn fusable_activation_grad(
    producer: &Instr,
    next: Option<&Instr>,
) -> Option<FusableGrad> {
    let out = match *producer {
        Instr::Conv2dInputGrad { dx, .. } | Instr::ConvTranspose2dInputGrad { dx, .. } => dx,
        _ => return None,
    };
    match next {
        Some(&Instr::ActivationGrad {
            act,
            x,
            y,
            dy,
            dx,
            accumulate,
            ..
        }) if dy == out && ![x, y, dx].contains(&out) => Some(FusableGrad {
            act,
            x,
            y,
            dx,
            accumulate,
        }),
        _ => None,
    }
}

/// The fused gradient's arguments: its x and y read from the executor while its dx is lent.
pub(super) fn fused_grad_args<'a>(
    fused: Option<&FusableGrad>,
    exec: &'a CpuExecutor,
    dx: Option<&'a mut [f32]>,
) -> Option<cpu::FusedActivationGrad<'a>> {
    fused.zip(dx).map(|(f, dx)| cpu::FusedActivationGrad {
        act: f.act,
        x: exec.get(f.x),
        y: exec.get(f.y),
        dx,
        accumulate: f.accumulate,
    })
}

impl CpuExecutor {
    /// Runs a compiled plan: instruction by instruction, with the fusions it allows.
    pub(super) fn run_plan(&mut self, plan: &Plan, iteration: u64) -> Result<()> {
        let instrs = &plan.instrs;
        let mut i = 0;
        while i < instrs.len() {
            if let Some(t) = plan.together[i] {
                let next = t.fuse_next.then(|| &instrs[t.input_grad + 1]);
                self.exec_transpose_grads(&t, next)?;
                // Independent of the two (checked when compiled), so they may run after.
                for between in &instrs[i + 1..t.input_grad] {
                    self.exec(between, None, iteration)?;
                }
                i = t.input_grad + 1 + usize::from(t.fuse_next);
            } else {
                let fused = self.exec(&instrs[i], instrs.get(i + 1), iteration)?;
                i += 1 + usize::from(fused);
            }
        }
        Ok(())
    }

    /// A transposed convolution's weight and input gradients together, with the activation
    /// gradient `next` fused when given. Their outputs are lent out of the executor meanwhile.
    pub(super) fn exec_transpose_grads(
        &mut self,
        t: &TransposeGrads,
        next: Option<&Instr>,
    ) -> Result<()> {
        let input_grad = Instr::ConvTranspose2dInputGrad {
            geom: t.geom,
            dy: t.dy,
            w: t.w,
            dx: t.dx,
            accumulate: t.accumulate_dx,
        };
        let fused = next.and_then(|next| fusable_activation_grad(&input_grad, Some(next)));
        let mut dw = take(self.slot(t.dw));
        let mut dx = take(self.slot(t.dx));
        let mut act_dx = fused.as_ref().map(|f| take(self.slot(f.dx)));
        let mut ws = take(&mut self.workspace);
        let result = cpu::conv_transpose2d_backward_into(
            &t.geom,
            self.get(t.x),
            self.get(t.dy),
            self.get(t.w),
            (&mut dw, t.accumulate_dw),
            (&mut dx, t.accumulate_dx),
            fused_grad_args(fused.as_ref(), self, act_dx.as_deref_mut()),
            &mut ws,
        );
        self.workspace = ws;
        if let (Some(f), Some(v)) = (&fused, act_dx) {
            *self.slot(f.dx) = v;
        }
        *self.slot(t.dx) = dx;
        *self.slot(t.dw) = dw;
        result
    }
}
