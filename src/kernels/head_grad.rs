//! Launcher for `shaders/head_grad.wgsl`: the gradient that thin heads (a Dense layer of
//! at most [`MAX_K`] units, and optionally a row dot product's projection) send back into
//! the features they read, and through the activation that produced those features, as
//! one element-wise pass. It replaces a row dot gradient, an NT GEMM with a tiny k and an
//! activation gradient, three dispatches whose inputs and outputs it reads and writes the
//! same way.

use bytemuck::{Pod, Zeroable};

use crate::cpu::Activation;
use crate::error::{Error, Result};
use crate::gpu::pipeline::grid_1d;
use crate::gpu::{Binding, Dispatch, Footprint, GpuBuffer, GpuContext, KernelSpec, Shader};
use crate::kernels::elementwise::act_code;
use Binding::{Read, ReadWrite, Uniform};

/// Twin of `Params` in `shaders/head_grad.wgsl`.
#[repr(C)]
#[derive(Debug, Clone, Copy, Pod, Zeroable)]
pub struct HeadGradParams {
    pub rows: u32,
    pub cols: u32,
    pub k: u32,
    pub accumulate: u32,
    pub act_accumulate: u32,
    pub _pad: [u32; 3],
}

pub const PARAMS_TWINS: &[super::ParamsTwin] = &[(
    Shader::HeadGrad,
    "Params",
    std::mem::size_of::<HeadGradParams>(),
)];

/// The widest head the pass takes: each invocation walks k, so a wider product belongs
/// in a GEMM kernel.
pub const MAX_K: usize = 8;

const WORKGROUP: u32 = 256;
const BINDINGS: &[Binding] = &[Uniform, ReadWrite, Read, Read, Read, Read, Read, ReadWrite];

/// The projection's row dot gradient that the features' gradient starts from:
/// `h[r, c] = dy[r]·other[r, c]`.
pub struct RowDotTerm<'a> {
    pub dy: &'a GpuBuffer,
    pub other: &'a GpuBuffer,
}

/// The features' gradient and where it goes next.
pub struct HeadGrad<'a> {
    /// `[rows, cols]`, written.
    pub h: &'a GpuBuffer,
    /// Whether h's old value is added to (the row dot gradient's flag, or without one,
    /// the product's).
    pub accumulate: bool,
    pub act: Activation,
    /// The activation's input for relu and leaky relu, its output for tanh and sigmoid.
    pub saved: &'a GpuBuffer,
    /// `[rows, cols]`: the gradient through the activation, written or added to.
    pub dx: &'a GpuBuffer,
    pub act_accumulate: bool,
}

/// Records `h = [dy·other (+ h)] + u·wᵀ (+ h without the row dot term)` and
/// `dx (+)= act'(saved)·h` over `[rows, cols]`, with u `[rows, k]` and w `[cols, k]`.
pub fn head_grad(
    ctx: &GpuContext,
    row_dot: Option<RowDotTerm>,
    (u, w): (&GpuBuffer, &GpuBuffer),
    (rows, cols, k): (usize, usize, usize),
    out: HeadGrad,
) -> Result<Dispatch> {
    let shape_error = |message: String| Error::Shape {
        op: "head_grad",
        message,
    };
    if k > MAX_K {
        return Err(shape_error(format!(
            "k = {k} is over the {MAX_K} a head gradient takes; use a GEMM"
        )));
    }
    let n = rows
        .checked_mul(cols)
        .filter(|&n| u32::try_from(n).is_ok())
        .ok_or_else(|| shape_error(format!("{rows}x{cols} does not fit u32 indices")))?;
    let mut operands = vec![
        ("h", out.h, n),
        ("u", u, rows * k),
        ("w", w, cols * k),
        ("saved", out.saved, n),
        ("dx", out.dx, n),
    ];
    if let Some(term) = &row_dot {
        operands.push(("dy", term.dy, rows));
        operands.push(("other", term.other, n));
    }
    for (i, &(name, buffer, len)) in operands.iter().enumerate() {
        if buffer.size() < len as u64 * 4 {
            return Err(shape_error(format!(
                "{name} holds {} bytes, {len} f32 need {}",
                buffer.size(),
                len * 4
            )));
        }
        let written = name == "h" || name == "dx";
        let clash = operands[..i]
            .iter()
            .find(|&&(other, b, _)| b == buffer && (written || other == "h" || other == "dx"));
        if let Some((other, _, _)) = clash {
            return Err(shape_error(format!(
                "{name} and {other} are the same buffer; what the pass writes must differ \
                 from everything else"
            )));
        }
    }
    let (act, alpha) = act_code(out.act);
    let kernel = ctx.kernel(&KernelSpec {
        shader: Shader::HeadGrad,
        entry: "head_grad",
        bindings: BINDINGS,
        constants: &[
            ("WG", WORKGROUP as f64),
            ("ROW_DOT", row_dot.is_some() as u32 as f64),
            ("ACT", act.unwrap_or(0) as f64),
            ("ALPHA", alpha as f64),
        ],
    })?;
    let params = HeadGradParams {
        rows: rows as u32,
        cols: cols as u32,
        k: k as u32,
        accumulate: out.accumulate as u32,
        act_accumulate: out.act_accumulate as u32,
        _pad: [0; 3],
    };
    let uniform = ctx.uniform("head_grad params", &params);
    // Without the row dot term, u stands in for its two read-only bindings.
    let (dy, other) = row_dot.as_ref().map_or((u, u), |t| (t.dy, t.other));
    let bind_group = ctx.bind(
        &kernel,
        &[&uniform, out.h, dy, other, u, w, out.saved, out.dx],
    );
    let (x, y) = grid_1d(ctx, (n as u32).div_ceil(WORKGROUP));
    // Read: saved, u·w's operands, the row dot term and the old values added to; written:
    // h and dx.
    let reads = n
        + rows * k
        + cols * k
        + row_dot.as_ref().map_or(0, |_| rows + n)
        + n * out.accumulate as usize
        + n * out.act_accumulate as usize;
    let flops = 2 * n * k + if row_dot.is_some() { n } else { 0 };
    Ok(Dispatch {
        kernel,
        bind_group,
        groups: [x, y, 1],
        footprint: Footprint::linear(WORKGROUP, k, flops as f64, (4 * (reads + 2 * n)) as f64),
    })
}
