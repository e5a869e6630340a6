//! Backward runs of a discriminator's thin heads that the wgpu executor records as one
//! dispatch: the gradient a Dense layer of a few units (and a projection's row dot
//! product, when the lowering has put its gradient beside the Dense one) sends into the
//! features, with the activation gradient that follows (`head_grad`); such a layer's
//! weight gradient with its bias gradient (`gemm_columns_bias`); and the projection's
//! gradient into its label embedding with the table gradient that reads it
//! (`embedding_backward_row_dot`).

use std::sync::Arc;

use super::{GpuExecutor, Plan};
use crate::cpu::Activation;
use crate::error::Result;
use crate::graph::{Buf, Instr};
use crate::kernels::embedding::embedding_backward_row_dot;
use crate::kernels::gemm::GemmShape;
use crate::kernels::gemm_columns::{self, gemm_weight_and_bias_grad};
use crate::kernels::head_grad::{HeadGrad, MAX_K, RowDotTerm, head_grad};

/// The parts of a fusable head-gradient run: the optional row dot term `(dy, other)`,
/// the product's operands, its shape, the features' gradient and its flag, then the
/// activation gradient's instruction.
struct HeadRun<'a> {
    row_dot: Option<(Buf, Buf)>,
    u: Buf,
    w: Buf,
    shape: (usize, usize, usize),
    h: Buf,
    accumulate: bool,
    act: &'a Instr,
    len: usize,
}

/// `instrs`' head-gradient run, if it starts with one: [a row dot gradient into h,] an
/// NT GEMM with k ≤ [`MAX_K`] into h (adding, after a row dot gradient), and the gradient
/// through the activation whose output h is the gradient of.
fn head_run(instrs: &[Instr]) -> Option<HeadRun<'_>> {
    let (row_dot, rest) = match instrs {
        [
            Instr::RowDotGrad {
                dy,
                other,
                dx,
                rows,
                cols,
                accumulate,
            },
            rest @ ..,
        ] => (Some((*dy, *other, *dx, *rows, *cols, *accumulate)), rest),
        _ => (None, instrs),
    };
    let [
        Instr::Gemm {
            a,
            b,
            c,
            bias: None,
            m,
            n,
            k,
            trans_a: false,
            trans_b: true,
            accumulate,
        },
        act @ Instr::ActivationGrad { dy, dx, len, .. },
        ..,
    ] = rest
    else {
        return None;
    };
    if *k > MAX_K || dy != c || dx == c || *len != m * n {
        return None;
    }
    let (row_dot, accumulate) = match row_dot {
        None => (None, *accumulate),
        Some((dy, other, h, rows, cols, row_accumulate)) => {
            if h != *c || (rows, cols) != (*m, *n) || !*accumulate {
                return None;
            }
            (Some((dy, other)), row_accumulate)
        }
    };
    Some(HeadRun {
        row_dot,
        u: *a,
        w: *b,
        shape: (*m, *n, *k),
        h: *c,
        accumulate,
        act,
        len: 2 + instrs.len() - rest.len(),
    })
}

/// A thin Dense layer's weight gradient (TN, n ≤ [`gemm_columns::MAX_N`] units, k ≤
/// [`gemm_columns::MAX_K`] rows) followed by its bias gradient over the same dy: the GEMM's
/// shape and operands, and the bias gradient's target and flag.
fn thin_weight_grad(instrs: &[Instr]) -> Option<(GemmShape, [Buf; 3], Buf, bool)> {
    let [
        Instr::Gemm {
            a,
            b,
            c,
            bias: None,
            m,
            n,
            k,
            trans_a: true,
            trans_b: false,
            accumulate,
        },
        Instr::BiasGrad {
            dy,
            db,
            rows,
            cols,
            accumulate: bias_accumulate,
        },
        ..,
    ] = *instrs
    else {
        return None;
    };
    let fits = n <= gemm_columns::MAX_N && k <= gemm_columns::MAX_K;
    let distinct = ![a, b, c].contains(&db);
    (fits && distinct && dy == b && (rows, cols) == (k, n)).then_some((
        GemmShape {
            m,
            n,
            k,
            trans_a: true,
            trans_b: false,
            accumulate,
        },
        [a, b, c],
        db,
        bias_accumulate,
    ))
}

/// A row dot gradient into a label embedding's output followed by the embedding's table
/// gradient over it: `((dy, features), (row_grad, its flag), labels, (dtable, its flag),
/// (batch, classes, dim))`.
type EmbeddingHead = (
    (Buf, Buf),
    (Buf, bool),
    Buf,
    (Buf, bool),
    (usize, usize, usize),
);

fn embedding_head(instrs: &[Instr]) -> Option<EmbeddingHead> {
    let [
        Instr::RowDotGrad {
            dy,
            other,
            dx,
            rows,
            cols,
            accumulate: row_accumulate,
        },
        Instr::EmbeddingGrad {
            dy: table_dy,
            labels,
            dtable,
            batch,
            classes,
            dim,
            accumulate,
        },
        ..,
    ] = *instrs
    else {
        return None;
    };
    let distinct = dtable != dx && ![dy, other, labels].contains(&dtable);
    (table_dy == dx && (rows, cols) == (batch, dim) && distinct).then_some((
        (dy, other),
        (dx, row_accumulate),
        labels,
        (dtable, accumulate),
        (batch, classes, dim),
    ))
}

/// How many instructions from the start of `instrs` the wgpu executor records as one
/// head dispatch (0: none).
pub fn head_run_len(instrs: &[Instr]) -> usize {
    if thin_weight_grad(instrs).is_some() || embedding_head(instrs).is_some() {
        return 2;
    }
    head_run(instrs).map_or(0, |run| run.len)
}

impl GpuExecutor {
    /// Records the head-gradient run `instrs` starts with, if any, and says how many
    /// instructions it covers.
    pub(super) fn compile_fused_head(
        &mut self,
        instrs: &[Instr],
        plan: &mut Plan,
    ) -> Result<Option<usize>> {
        if let Some((shape, [a, b, c], db, bias_accumulate)) = thin_weight_grad(instrs) {
            let [a, b, c, db] = [a, b, c, db].map(|buf| self.buffer(buf));
            plan.dispatches.push(gemm_weight_and_bias_grad(
                &self.ctx,
                &shape,
                (&a, &b, &c),
                &db,
                bias_accumulate,
            )?);
            return Ok(Some(2));
        }
        if let Some((
            (dy, features),
            (row_grad, row_accumulate),
            labels,
            (dtable, accumulate),
            shape,
        )) = embedding_head(instrs)
        {
            let [dy, features, row_grad, labels, dtable] =
                [dy, features, row_grad, labels, dtable].map(|buf| self.buffer(buf));
            plan.dispatches.push(embedding_backward_row_dot(
                &self.ctx,
                (&dy, &features),
                (&row_grad, row_accumulate),
                &labels,
                &dtable,
                shape,
                accumulate,
            )?);
            return Ok(Some(2));
        }
        let Some(run) = head_run(instrs) else {
            return Ok(None);
        };
        let Instr::ActivationGrad {
            act,
            x,
            y,
            dx,
            accumulate: act_accumulate,
            ..
        } = *run.act
        else {
            unreachable!("head_run matched an activation gradient");
        };
        // The activation's gradient reads its input for relu and leaky relu, its output
        // for tanh and sigmoid.
        let saved = match act {
            Activation::Relu | Activation::LeakyRelu(_) => x,
            Activation::Tanh | Activation::Sigmoid => y,
        };
        let ctx = Arc::clone(&self.ctx);
        let [u, w, h, saved, dx] = [run.u, run.w, run.h, saved, dx].map(|b| self.buffer(b));
        let row_dot = run
            .row_dot
            .map(|(dy, other)| (self.buffer(dy), self.buffer(other)));
        let term = row_dot.as_ref().map(|(dy, other)| RowDotTerm { dy, other });
        let out = HeadGrad {
            h: &h,
            accumulate: run.accumulate,
            act,
            saved: &saved,
            dx: &dx,
            act_accumulate,
        };
        plan.dispatches
            .push(head_grad(&ctx, term, (&u, &w), run.shape, out)?);
        Ok(Some(run.len))
    }
}
