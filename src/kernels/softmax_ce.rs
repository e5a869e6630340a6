//! Launcher for `shaders/softmax_ce.wgsl`: softmax cross-entropy on logits with integer
//! labels, mean over the batch, writing dlogits and the statistics [loss, accuracy] in one
//! dispatch; and the row softmax (class probabilities) for evaluation.

use bytemuck::{Pod, Zeroable};

use crate::error::{Error, Result};
use crate::gpu::pipeline::grid_1d;
use crate::gpu::{Binding, Dispatch, Footprint, GpuBuffer, GpuContext, KernelSpec, Shader};
use Binding::{Read, ReadWrite, Uniform};

/// Twin of `Params` in `shaders/softmax_ce.wgsl`.
#[repr(C)]
#[derive(Debug, Clone, Copy, Pod, Zeroable)]
pub struct SoftmaxCeParams {
    pub batch: u32,
    pub classes: u32,
    pub scale: f32,
    pub accumulate: u32,
}

pub const PARAMS_TWINS: &[super::ParamsTwin] = &[(
    Shader::SoftmaxCe,
    "Params",
    std::mem::size_of::<SoftmaxCeParams>(),
)];

/// `softmax_ce`'s single workgroup; a power of two (the tree reduction halves it).
const CE_WORKGROUP: u32 = 256;
/// `softmax`: one row per invocation, so small groups spread a batch of ~100 rows over
/// several workgroups (CPU threads on a software adapter).
const SOFTMAX_WORKGROUP: u32 = 64;

/// How the results are written.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SoftmaxCeOptions {
    /// dlogits = scale·(softmax(x) - onehot(label))/batch.
    pub scale: f32,
    /// Add into dlogits instead of overwriting it.
    pub accumulate: bool,
}

impl Default for SoftmaxCeOptions {
    fn default() -> Self {
        SoftmaxCeOptions {
            scale: 1.0,
            accumulate: false,
        }
    }
}

/// Shape checks shared by both entry points; returns (batch, classes) as u32.
fn check_shape(
    ctx: &GpuContext,
    op: &'static str,
    batch: usize,
    classes: usize,
    rows_per_invocation: usize,
) -> Result<(u32, u32)> {
    let shape_error = |message: String| Error::Shape {
        op,
        message: format!("{batch}x{classes}: {message}"),
    };
    if classes == 0 {
        return Err(shape_error("no classes to normalise over".into()));
    }
    let fits = |n: usize| u32::try_from(n).ok();
    let (Some(batch32), Some(classes32), Some(_)) = (
        fits(batch),
        fits(classes),
        batch.checked_mul(classes).and_then(fits),
    ) else {
        return Err(shape_error("logits do not fit u32 indexing".into()));
    };
    // Per row: the max pass (classes - 1), the exp-sum pass and the write pass; plus the
    // row loop and the 8 halvings of the reduction.
    let loop_iterations = rows_per_invocation * (3 * classes) + 9;
    // llvmpipe silently stops an invocation's loops past its limit: refused instead.
    if let Some(message) = ctx.loop_limit_exceeded(loop_iterations) {
        return Err(shape_error(message));
    }
    Ok((batch32, classes32))
}

fn check_buffer(
    op: &'static str,
    name: &str,
    buffer: &GpuBuffer,
    len: usize,
    what: &str,
) -> Result<()> {
    if buffer.size() < len as u64 * 4 {
        return Err(Error::Shape {
            op,
            message: format!(
                "{name} holds {} bytes, {len} {what} need {}",
                buffer.size(),
                len * 4
            ),
        });
    }
    Ok(())
}

/// Mean softmax cross-entropy of `batch` rows (batch > 0) of `classes` logits against
/// `labels` (batch u32, each < classes; a larger one adds loss 0, counts as wrong and gets
/// gradient softmax·scale/batch, since the shader cannot report it): writes dlogits
/// (batch·classes f32) = d loss/d logits · scale and stats[0..2] = [mean loss, accuracy].
/// Matches `cpu::softmax_ce::softmax_cross_entropy`.
#[allow(clippy::too_many_arguments)]
pub fn softmax_cross_entropy(
    ctx: &GpuContext,
    logits: &GpuBuffer,
    labels: &GpuBuffer,
    batch: usize,
    classes: usize,
    dlogits: &GpuBuffer,
    stats: &GpuBuffer,
    options: SoftmaxCeOptions,
) -> Result<Dispatch> {
    const OP: &str = "softmax_cross_entropy";
    if batch == 0 {
        return Err(Error::Shape {
            op: OP,
            message: "no rows: the mean loss of an empty batch is undefined".into(),
        });
    }
    let rows_per_invocation = batch.div_ceil(CE_WORKGROUP as usize);
    let (batch32, classes32) = check_shape(ctx, OP, batch, classes, rows_per_invocation)?;
    check_buffer(OP, "logits", logits, batch * classes, "f32")?;
    check_buffer(OP, "dlogits", dlogits, batch * classes, "f32")?;
    check_buffer(OP, "labels", labels, batch, "u32")?;
    check_buffer(OP, "stats", stats, 2, "f32")?;
    let inputs = [logits, labels];
    if dlogits == stats || inputs.contains(&dlogits) || inputs.contains(&stats) {
        return Err(Error::Shape {
            op: OP,
            message: "dlogits and stats must differ from each other and from the inputs".into(),
        });
    }

    let params = SoftmaxCeParams {
        batch: batch32,
        classes: classes32,
        scale: options.scale,
        accumulate: options.accumulate as u32,
    };
    let kernel = ctx.kernel(&KernelSpec {
        shader: Shader::SoftmaxCe,
        entry: "softmax_ce",
        bindings: &[Uniform, Read, Read, ReadWrite, ReadWrite],
        constants: &[("WG", CE_WORKGROUP as f64)],
    })?;
    let uniform = ctx.uniform("softmax_cross_entropy params", &params);
    let bind_group = ctx.bind(&kernel, &[&uniform, logits, labels, dlogits, stats]);
    // One workgroup: each invocation walks its rows three times over the classes.
    let trips = rows_per_invocation * 3 * classes;
    let bytes = 4 * (batch * classes * (2 + options.accumulate as usize) + batch) + 8;
    Ok(Dispatch {
        kernel,
        bind_group,
        groups: [1, 1, 1],
        footprint: Footprint::linear(CE_WORKGROUP, trips, 0.0, bytes as f64),
    })
}

/// Row softmax: probs (batch·classes f32) = softmax of each of the `batch` rows of
/// `classes` logits. An empty batch records nothing. Matches `cpu::softmax_ce::softmax_rows`.
pub fn softmax(
    ctx: &GpuContext,
    logits: &GpuBuffer,
    batch: usize,
    classes: usize,
    probs: &GpuBuffer,
) -> Result<Dispatch> {
    const OP: &str = "softmax";
    let (batch32, classes32) = check_shape(ctx, OP, batch, classes, 1)?;
    check_buffer(OP, "logits", logits, batch * classes, "f32")?;
    check_buffer(OP, "probs", probs, batch * classes, "f32")?;
    if probs == logits {
        return Err(Error::Shape {
            op: OP,
            message: "probs must differ from logits".into(),
        });
    }
    let params = SoftmaxCeParams {
        batch: batch32,
        classes: classes32,
        scale: 1.0,
        accumulate: 0,
    };
    let kernel = ctx.kernel(&KernelSpec {
        shader: Shader::SoftmaxCe,
        entry: "softmax",
        bindings: &[Uniform, Read, ReadWrite],
        constants: &[("WG", SOFTMAX_WORKGROUP as f64)],
    })?;
    let uniform = ctx.uniform("softmax params", &params);
    let bind_group = ctx.bind(&kernel, &[&uniform, logits, probs]);
    let (x, y) = grid_1d(ctx, batch32.div_ceil(SOFTMAX_WORKGROUP));
    // One row per invocation, three passes over its classes.
    let footprint = Footprint::linear(
        SOFTMAX_WORKGROUP,
        3 * classes,
        0.0,
        8.0 * (batch * classes) as f64,
    );
    Ok(Dispatch {
        kernel,
        bind_group,
        groups: [x, y, 1],
        footprint,
    })
}
