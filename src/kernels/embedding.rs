//! Launchers for `shaders/embedding.wgsl`: embedding lookup and the table's gradient.

use bytemuck::{Pod, Zeroable};

use crate::error::{Error, Result};
use crate::gpu::pipeline::grid_1d;
use crate::gpu::{Binding, Dispatch, Footprint, GpuBuffer, GpuContext, KernelSpec, Shader};
use Binding::{Read, ReadWrite, Uniform};

/// Twin of `Params` in `shaders/embedding.wgsl`.
#[repr(C)]
#[derive(Debug, Clone, Copy, Pod, Zeroable)]
pub struct EmbeddingParams {
    pub batch: u32,
    pub dim: u32,
    pub classes: u32,
    pub accumulate: u32,
}

pub const PARAMS_TWINS: &[super::ParamsTwin] = &[(
    Shader::Embedding,
    "Params",
    std::mem::size_of::<EmbeddingParams>(),
)];

const WORKGROUP: u32 = 256;
const BINDINGS: &[Binding] = &[Uniform, Read, Read, ReadWrite];

/// The table is [classes, dim], labels [batch] u32; `table_or_dy` and `out` are the
/// second and third buffers of `entry`.
#[allow(clippy::too_many_arguments)]
fn launch(
    ctx: &GpuContext,
    entry: &'static str,
    labels: &GpuBuffer,
    input: (&str, &GpuBuffer, usize),
    output: (&str, &GpuBuffer, usize),
    (batch, classes, dim): (usize, usize, usize),
    accumulate: bool,
) -> Result<Dispatch> {
    let shape_error = |message: String| Error::Shape { op: entry, message };
    let fits = |n: usize| u32::try_from(n).ok();
    let (Some(b), Some(c), Some(d), Some(outputs)) = (
        fits(batch),
        fits(classes),
        fits(dim),
        fits(output.2).filter(|_| fits(input.2).is_some()),
    ) else {
        return Err(shape_error(format!(
            "batch {batch}, {classes} classes of {dim} overflow u32 indices"
        )));
    };
    if classes == 0 && batch > 0 {
        return Err(shape_error("an embedding needs at least one class".into()));
    }
    for (name, buffer, len) in [("labels", labels, batch), input, output] {
        if buffer.size() < len as u64 * 4 {
            return Err(shape_error(format!(
                "{name} holds {} bytes, {len} 32-bit values need {}",
                buffer.size(),
                len * 4
            )));
        }
    }
    let kernel = ctx.kernel(&KernelSpec {
        shader: Shader::Embedding,
        entry,
        bindings: BINDINGS,
        constants: &[("WG", WORKGROUP as f64)],
    })?;
    let params = EmbeddingParams {
        batch: b,
        dim: d,
        classes: c,
        accumulate: accumulate as u32,
    };
    let uniform = ctx.uniform(&format!("{entry} params"), &params);
    let bind_group = ctx.bind(&kernel, &[&uniform, labels, input.1, output.1]);
    let (x, y) = grid_1d(ctx, outputs.div_ceil(WORKGROUP));
    // The backward pass has one invocation per table entry, walking the whole batch.
    let backward = entry == "embedding_backward";
    let trips = if backward { batch } else { 0 };
    let flops = if backward { batch * dim } else { 0 };
    let bytes = 4 * (batch + input.2.min(batch * dim) + output.2 * (1 + accumulate as usize));
    Ok(Dispatch {
        kernel,
        bind_group,
        groups: [x, y, 1],
        footprint: Footprint::linear(WORKGROUP, trips, flops as f64, bytes as f64),
    })
}

/// `out [batch, dim]` = the rows of `table [classes, dim]` at `labels [batch]` (u32), or
/// out += them.
pub fn embedding_forward(
    ctx: &GpuContext,
    table: &GpuBuffer,
    labels: &GpuBuffer,
    out: &GpuBuffer,
    (batch, classes, dim): (usize, usize, usize),
    accumulate: bool,
) -> Result<Dispatch> {
    launch(
        ctx,
        "embedding_forward",
        labels,
        ("table", table, classes * dim),
        ("out", out, batch * dim),
        (batch, classes, dim),
        accumulate,
    )
}

/// dtable [classes, dim] = Σ over the batch of dy [batch, dim] rows by label, or dtable += .
pub fn embedding_backward(
    ctx: &GpuContext,
    dy: &GpuBuffer,
    labels: &GpuBuffer,
    dtable: &GpuBuffer,
    (batch, classes, dim): (usize, usize, usize),
    accumulate: bool,
) -> Result<Dispatch> {
    launch(
        ctx,
        "embedding_backward",
        labels,
        ("dy", dy, batch * dim),
        ("dtable", dtable, classes * dim),
        (batch, classes, dim),
        accumulate,
    )
}
