//! Launcher for `gemm_columns_bias` in `shaders/gemm.wgsl`: the weight gradient of a thin
//! Dense layer (a few units) and its bias gradient in one dispatch. The tiled kernels would
//! spread a 2,304 x 1 output over 36 workgroups, each walking the whole batch, and the bias
//! gradient would take a dispatch of its own; here every output is one short serial sum
//! (k = the batch), with the bias sums in a workgroup after them.

use crate::error::{Error, Result};
use crate::gpu::pipeline::grid_1d;
use crate::gpu::{Binding, Dispatch, Footprint, GpuBuffer, GpuContext, KernelSpec, Shader};
use crate::kernels::gemm::{GemmShape, checked_params, gemm_flops};

/// The widest layer (n) and the longest batch (k) the pass takes: each invocation walks k,
/// and with many outputs per row a GEMM kernel shares the loads better.
pub const MAX_N: usize = 4;
pub const MAX_K: usize = 512;

/// Invocations per workgroup: small, so that a 2,304-output gradient spreads over 144
/// workgroups.
const WORKGROUP: u32 = 16;

/// Records `C (+)= op(A)·op(B)` for `shape` and `db (+)= Σ_p op(B)[p, :]` (`n` values, added
/// with `bias_accumulate`): a Dense layer's weight gradient x^T·dy (TN) with its bias
/// gradient. Needs n ≤ [`MAX_N`] and k ≤ [`MAX_K`].
pub fn gemm_weight_and_bias_grad(
    ctx: &GpuContext,
    shape: &GemmShape,
    (a, b, c): (&GpuBuffer, &GpuBuffer, &GpuBuffer),
    db: &GpuBuffer,
    bias_accumulate: bool,
) -> Result<Dispatch> {
    let &GemmShape { m, n, k, .. } = shape;
    let shape_error = |message: String| Error::Shape {
        op: "gemm_weight_and_bias_grad",
        message: format!("{m}x{n}x{k}: {message}"),
    };
    if n > MAX_N || k > MAX_K {
        return Err(shape_error(format!(
            "takes n up to {MAX_N} and k up to {MAX_K}; use gemm and bias_grad"
        )));
    }
    let params = checked_params(ctx, shape, (a, b, None, c)).map_err(shape_error)?;
    if db.size() < n as u64 * 4 {
        return Err(shape_error(format!(
            "db holds {} bytes, {n} f32 need {}",
            db.size(),
            n * 4
        )));
    }
    if [a, b].contains(&db) || c == db {
        return Err(shape_error("db must differ from A, B and C".into()));
    }
    let kernel = ctx.kernel(&KernelSpec {
        shader: Shader::Gemm,
        entry: "gemm_columns_bias",
        bindings: WITH_DB,
        constants: &[
            ("COL_WG", WORKGROUP as f64),
            ("BIAS_ACCUMULATE", bias_accumulate as u32 as f64),
        ],
    })?;
    let uniform = ctx.uniform("gemm params", &params);
    // The entry reads neither the bias nor the vec4 views: A stands in (a vec4 view needs
    // 16 bytes, which a short A lacks).
    let placeholder = (a.size() < 16).then(|| ctx.storage("gemm vec4 placeholder", 16));
    let view = placeholder.as_ref().unwrap_or(a);
    let bind_group = ctx.bind(&kernel, &[&uniform, a, b, a, c, view, view, db]);
    let outputs = (m * n).div_ceil(WORKGROUP as usize) + n.div_ceil(WORKGROUP as usize);
    let (x, y) = grid_1d(ctx, outputs as u32);
    let c_passes = 1 + shape.accumulate as usize;
    Ok(Dispatch {
        kernel,
        bind_group,
        groups: [x, y, 1],
        footprint: Footprint::linear(
            WORKGROUP,
            k,
            // The bias sums are counted as bytes, as bias_grad's are.
            gemm_flops(shape),
            (4 * (m * k + k * n + c_passes * m * n + 2 * n)) as f64,
        ),
    })
}

/// The GEMM kernels' seven bindings and the bias gradient's (binding 7).
const WITH_DB: &[Binding] = &[
    Binding::Uniform,
    Binding::Read,
    Binding::Read,
    Binding::Read,
    Binding::ReadWrite,
    Binding::Read,
    Binding::Read,
    Binding::ReadWrite,
];
