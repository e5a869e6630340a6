//! Neighbouring instructions the wgpu executor records as fewer dispatches than one
//! each: a convolution and the activation of its output (one dispatch writing both), a
//! weight gradient and the bias gradient of the same layer (the bias sums ride in the
//! weight gradient's two dispatches instead of taking two of their own), a BCE loss and
//! its gradient (one pass over the logits writes both; the lowering puts them side by
//! side; two such pairs of one batch's halves together), a convolution's input gradient
//! and the gradient through the activation before it (the lowering emits a layer's input
//! gradient last, next to it), and a label embedding with the sum or the row dot product
//! and sum that consume it.

use std::sync::Arc;

use super::{GpuExecutor, Plan};
use crate::cpu::Activation;
use crate::error::Result;
use crate::graph::{Buf, Instr};
use crate::kernels::bce::{BceOptions, ConstantLoss, Labels, bce_constant_pair, bce_with_logits};
use crate::kernels::{conv, embedding};

impl GpuExecutor {
    /// Records the fused pair `instrs` starts with, if any, and says how many
    /// instructions it covers.
    pub(super) fn compile_fused(
        &mut self,
        instrs: &[Instr],
        plan: &mut Plan,
    ) -> Result<Option<usize>> {
        if let Some(run) = self.compile_fused_embedding(instrs, plan)? {
            return Ok(Some(run));
        }
        if let Some(run) = self.compile_fused_head(instrs, plan)? {
            return Ok(Some(run));
        }
        if let Some(run) = self.compile_fused_inputs(instrs, plan)? {
            return Ok(Some(run));
        }
        if let Some(run) = self.compile_fused_bce(instrs, plan)? {
            return Ok(Some(run));
        }
        if self.compile_fused_activation(instrs, plan)?
            || self.compile_fused_bias(instrs, plan)?
            || self.compile_fused_activation_grad(instrs, plan)?
        {
            return Ok(Some(2));
        }
        Ok(None)
    }

    /// A convolution (or transposed one) followed by an activation of its output, as one
    /// dispatch that writes both; says whether `instrs` starts with such a pair.
    fn compile_fused_activation(&mut self, instrs: &[Instr], plan: &mut Plan) -> Result<bool> {
        let [conv, Instr::Activation { act, x, y: out, .. }, ..] = instrs else {
            return Ok(false);
        };
        let (input, w, b, y) = match *conv {
            Instr::Conv2d {
                x: input, w, b, y, ..
            }
            | Instr::ConvTranspose2d {
                x: input, w, b, y, ..
            } if y == *x => (input, w, b, y),
            _ => return Ok(false),
        };
        let ctx = Arc::clone(&self.ctx);
        let [input, w, y, out] = [input, w, y, *out].map(|buf| self.buffer(buf));
        let b = b.map(|b| self.buffer(b));
        let e = conv::Epilogue {
            act: *act,
            out: &out,
            gradient: None,
        };
        let dispatches = match conv {
            Instr::Conv2d { geom, .. } => {
                conv::conv2d_forward_activated(&ctx, geom, &input, &w, b.as_ref(), &y, e)?
            }
            Instr::ConvTranspose2d { geom, .. } => {
                conv::conv_transpose2d_forward_activated(&ctx, geom, &input, &w, b.as_ref(), &y, e)?
            }
            _ => unreachable!("matched above"),
        };
        plan.dispatches.extend(dispatches);
        Ok(true)
    }

    /// A weight gradient followed by the bias gradient of the same layer (its bias summed
    /// over the same dy), as the weight gradient's dispatches computing both.
    fn compile_fused_bias(&mut self, instrs: &[Instr], plan: &mut Plan) -> Result<bool> {
        let [
            weight_grad,
            Instr::BiasGrad {
                dy: bias_dy,
                db,
                rows,
                cols,
                accumulate: bias_accumulate,
            },
            ..,
        ] = instrs
        else {
            return Ok(false);
        };
        let (x, dy, dw, accumulate) = match *weight_grad {
            Instr::Conv2dWeightGrad {
                geom,
                x,
                dy,
                dw,
                accumulate,
            } if dy == *bias_dy
                && *rows == geom.batch * geom.out_h() * geom.out_w()
                && *cols == geom.out_c =>
            {
                (x, dy, dw, accumulate)
            }
            Instr::ConvTranspose2dWeightGrad {
                geom,
                x,
                dy,
                dw,
                accumulate,
            } if dy == *bias_dy
                && *rows == geom.batch * geom.out_h * geom.out_w
                && *cols == geom.out_c =>
            {
                (x, dy, dw, accumulate)
            }
            _ => return Ok(false),
        };
        let ctx = Arc::clone(&self.ctx);
        let [x, dy, dw, db] = [x, dy, dw, *db].map(|buf| self.buffer(buf));
        let bias = conv::BiasGrad {
            db: &db,
            accumulate: *bias_accumulate,
        };
        let dispatches = match weight_grad {
            Instr::Conv2dWeightGrad { geom, .. } => {
                conv::conv2d_backward_weight_and_bias(&ctx, geom, &x, &dy, &dw, accumulate, bias)?
            }
            Instr::ConvTranspose2dWeightGrad { geom, .. } => {
                conv::conv_transpose2d_backward_weight_and_bias(
                    &ctx, geom, &x, &dy, &dw, accumulate, bias,
                )?
            }
            _ => unreachable!("matched above"),
        };
        plan.dispatches.extend(dispatches);
        Ok(true)
    }

    /// A BCE loss followed by its gradient (same logits, label and rows), as the one
    /// dispatch that writes both; and two such pairs over the same logits and gradient
    /// (the real and the fake half of a batch) as one dispatch too. Says how many
    /// instructions it covers.
    fn compile_fused_bce(&mut self, instrs: &[Instr], plan: &mut Plan) -> Result<Option<usize>> {
        let Some(first) = loss_and_grad(instrs) else {
            return Ok(None);
        };
        let second = loss_and_grad(&instrs[2..])
            .filter(|b| {
                (b.logits, b.dlogits, b.total) == (first.logits, first.dlogits, first.total)
            })
            .filter(|b| b.stats != first.stats);
        let [logits, dlogits] = [first.logits, first.dlogits].map(|buf| self.buffer(buf));
        let Some(second) = second else {
            let stats = self.buffer(first.stats);
            let labels = Labels::Constant(first.label);
            let dispatch = bce_with_logits(
                &self.ctx,
                &logits,
                labels,
                first.len,
                &dlogits,
                &stats,
                first.options(),
            )?;
            plan.dispatches.push(dispatch);
            return Ok(Some(2));
        };
        let [stats, stats_b] = [first.stats, second.stats].map(|buf| self.buffer(buf));
        let loss = |pair: &LossAndGrad, stats| ConstantLoss {
            label: pair.label,
            count: pair.len,
            stats,
            options: pair.options(),
        };
        plan.dispatches.push(bce_constant_pair(
            &self.ctx,
            &logits,
            &dlogits,
            loss(&first, &stats),
            loss(&second, &stats_b),
        )?);
        Ok(Some(4))
    }

    /// A convolution's input gradient followed by the gradient through the activation
    /// whose output that is, as one dispatch writing both.
    fn compile_fused_activation_grad(&mut self, instrs: &[Instr], plan: &mut Plan) -> Result<bool> {
        let [
            input_grad,
            Instr::ActivationGrad {
                act,
                x,
                y,
                dy,
                dx: out,
                accumulate: out_accumulate,
                ..
            },
            ..,
        ] = instrs
        else {
            return Ok(false);
        };
        let (grad, w, dx, accumulate) = match *input_grad {
            Instr::Conv2dInputGrad {
                dy: grad,
                w,
                dx,
                accumulate,
                ..
            }
            | Instr::ConvTranspose2dInputGrad {
                dy: grad,
                w,
                dx,
                accumulate,
                ..
            } if dx == *dy => (grad, w, dx, accumulate),
            _ => return Ok(false),
        };
        // The activation's gradient reads its input for relu and leaky relu, its output
        // for tanh and sigmoid.
        let saved = match act {
            Activation::Relu | Activation::LeakyRelu(_) => *x,
            Activation::Tanh | Activation::Sigmoid => *y,
        };
        let ctx = Arc::clone(&self.ctx);
        let [grad, w, dx, out, saved] = [grad, w, dx, *out, saved].map(|buf| self.buffer(buf));
        let e = conv::Epilogue {
            act: *act,
            out: &out,
            gradient: Some(conv::EpilogueGradient {
                saved: &saved,
                accumulate: *out_accumulate,
            }),
        };
        let dispatches = match input_grad {
            Instr::Conv2dInputGrad { geom, .. } => {
                conv::conv2d_backward_input_activated(&ctx, geom, &grad, &w, &dx, accumulate, e)?
            }
            Instr::ConvTranspose2dInputGrad { geom, .. } => {
                conv::conv_transpose2d_backward_input_activated(
                    &ctx, geom, &grad, &w, &dx, accumulate, e,
                )?
            }
            _ => unreachable!("matched above"),
        };
        plan.dispatches.extend(dispatches);
        Ok(true)
    }

    /// A label embedding followed by the row dot product of it with another tensor and
    /// the sum of that with a third (a projection discriminator's head), or by a sum of
    /// it with another tensor, as one dispatch; says how many instructions it covers.
    fn compile_fused_embedding(
        &mut self,
        instrs: &[Instr],
        plan: &mut Plan,
    ) -> Result<Option<usize>> {
        let Some(&Instr::Embedding {
            table,
            labels,
            out,
            batch,
            classes,
            dim,
        }) = instrs.first()
        else {
            return Ok(None);
        };
        // The operand of a two-input instruction that is not `used`, when one of them is
        // and the other differs (a kernel must not read a buffer it writes).
        let partner = |a: Buf, b: Buf, used: Buf| match (a == used, b == used) {
            (true, false) => Some(b),
            (false, true) => Some(a),
            _ => None,
        };
        let shape = (batch, classes, dim);
        let run = match instrs.get(1..3) {
            Some(
                &[
                    Instr::RowDot {
                        a,
                        b,
                        y: dot,
                        rows,
                        cols,
                    },
                    Instr::Add {
                        a: add_a,
                        b: add_b,
                        y: logit,
                        len,
                    },
                ],
            ) if rows == batch && cols == dim && len == rows => {
                match (partner(a, b, out), partner(add_a, add_b, dot)) {
                    (Some(x), Some(addend)) if addend != out && addend != logit => {
                        let [table, labels, out, x, dot, addend, logit] =
                            [table, labels, out, x, dot, addend, logit].map(|b| self.buffer(b));
                        plan.dispatches.push(embedding::embedding_row_dot(
                            &self.ctx, &table, &labels, &out, &x, &dot, &addend, &logit, shape,
                        )?);
                        Some(3)
                    }
                    _ => None,
                }
            }
            _ => None,
        };
        if run.is_some() {
            return Ok(run);
        }
        let Some(&Instr::Add { a, b, y, len }) = instrs.get(1) else {
            return Ok(None);
        };
        match partner(a, b, out) {
            Some(addend) if len == batch * dim && addend != y => {
                let [table, labels, out, addend, y] =
                    [table, labels, out, addend, y].map(|b| self.buffer(b));
                plan.dispatches.push(embedding::embedding_add(
                    &self.ctx, &table, &labels, &out, &addend, &y, shape,
                )?);
                Ok(Some(2))
            }
            _ => Ok(None),
        }
    }
}

/// A BCE loss and its gradient over the same logits, label and rows.
struct LossAndGrad {
    logits: Buf,
    label: f32,
    stats: Buf,
    dlogits: Buf,
    first: usize,
    len: usize,
    total: usize,
    accumulate: bool,
}

impl LossAndGrad {
    fn options(&self) -> BceOptions {
        BceOptions {
            accumulate: self.accumulate,
            first: self.first,
            total: Some(self.total),
            ..BceOptions::default()
        }
    }
}

/// The loss-and-gradient pair `instrs` starts with, if any.
fn loss_and_grad(instrs: &[Instr]) -> Option<LossAndGrad> {
    let [
        Instr::BceLoss {
            logits,
            label,
            stats,
            first,
            len,
        },
        Instr::BceGrad {
            logits: grad_logits,
            label: grad_label,
            dlogits,
            first: grad_first,
            len: grad_len,
            total,
            accumulate,
        },
        ..,
    ] = *instrs
    else {
        return None;
    };
    ((grad_logits, grad_label, grad_first, grad_len) == (logits, label, first, len)).then_some(
        LossAndGrad {
            logits,
            label,
            stats,
            dlogits,
            first,
            len,
            total,
            accumulate,
        },
    )
}
