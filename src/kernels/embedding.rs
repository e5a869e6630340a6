//! Launchers for `shaders/embedding.wgsl`: embedding lookup and the table's gradient, and
//! the lookup fused with the add or the row dot product and add that consume it.

use bytemuck::{Pod, Zeroable};

use crate::error::{Error, Result};
use crate::gpu::pipeline::grid_1d;
use crate::gpu::settings::spread_workgroup;
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
/// `embedding_row_dot`'s workgroup: `combine::row_dot`'s, so that it sums in the same order.
const ROW_WORKGROUP: u32 = 64;
const BINDINGS: &[Binding] = &[Uniform, Read, Read, ReadWrite];

/// The shader's parameters for `entry` on labels [batch] and `buffers` (name, buffer,
/// 32-bit values it must hold), after checking that the sizes fit u32 indices and the
/// buffers hold them.
fn checked_params(
    entry: &'static str,
    buffers: &[(&str, &GpuBuffer, usize)],
    (batch, classes, dim): (usize, usize, usize),
    accumulate: bool,
) -> Result<EmbeddingParams> {
    let shape_error = |message: String| Error::Shape { op: entry, message };
    let fits = |n: usize| u32::try_from(n).ok();
    let (Some(b), Some(c), Some(d), true) = (
        fits(batch),
        fits(classes),
        fits(dim),
        buffers.iter().all(|&(_, _, len)| fits(len).is_some()),
    ) else {
        return Err(shape_error(format!(
            "batch {batch}, {classes} classes of {dim} overflow u32 indices"
        )));
    };
    if classes == 0 && batch > 0 {
        return Err(shape_error("an embedding needs at least one class".into()));
    }
    for &(name, buffer, len) in buffers {
        if buffer.size() < len as u64 * 4 {
            return Err(shape_error(format!(
                "{name} holds {} bytes, {len} 32-bit values need {}",
                buffer.size(),
                len * 4
            )));
        }
    }
    Ok(EmbeddingParams {
        batch: b,
        dim: d,
        classes: c,
        accumulate: accumulate as u32,
    })
}

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
    let buffers = [("labels", labels, batch), input, output];
    let params = checked_params(entry, &buffers, (batch, classes, dim), accumulate)?;
    let outputs = output.2 as u32;
    // Each invocation writes its own output: a narrower workgroup changes no result.
    let wg = spread_workgroup(ctx.kernel_settings(), output.2, WORKGROUP, 64);
    let kernel = ctx.kernel(&KernelSpec {
        shader: Shader::Embedding,
        entry,
        bindings: BINDINGS,
        constants: &[("WG", wg as f64)],
    })?;
    let uniform = ctx.uniform(&format!("{entry} params"), &params);
    let bind_group = ctx.bind(&kernel, &[&uniform, labels, input.1, output.1]);
    let (x, y) = grid_1d(ctx, outputs.div_ceil(wg));
    // The backward pass has one invocation per table entry, walking the whole batch.
    let backward = entry == "embedding_backward";
    let trips = if backward { batch } else { 0 };
    let flops = if backward { batch * dim } else { 0 };
    let bytes = 4 * (batch + input.2.min(batch * dim) + output.2 * (1 + accumulate as usize));
    Ok(Dispatch {
        kernel,
        bind_group,
        groups: [x, y, 1],
        footprint: Footprint::linear(wg, trips, flops as f64, bytes as f64),
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

/// `row_grad [batch, dim]` = `dy [batch]`·`features [batch, dim]` row by row (or += with
/// `row_accumulate`: `combine::row_dot_grad`), and [`embedding_backward`] of it into
/// `dtable`, in one dispatch: a projection head's gradient into its label embedding.
#[allow(clippy::too_many_arguments)]
pub fn embedding_backward_row_dot(
    ctx: &GpuContext,
    (dy, features): (&GpuBuffer, &GpuBuffer),
    (row_grad, row_accumulate): (&GpuBuffer, bool),
    labels: &GpuBuffer,
    dtable: &GpuBuffer,
    (batch, classes, dim): (usize, usize, usize),
    accumulate: bool,
) -> Result<Dispatch> {
    let entry = "embedding_backward_row_dot";
    let n = batch * dim;
    let buffers = [
        ("labels", labels, batch),
        ("dy", dy, batch),
        ("dtable", dtable, classes * dim),
        ("features", features, n),
        ("row_grad", row_grad, n),
    ];
    let params = checked_params(entry, &buffers, (batch, classes, dim), accumulate)?;
    let written = [dtable, row_grad];
    if dtable == row_grad || [labels, dy, features].iter().any(|b| written.contains(b)) {
        return Err(Error::Shape {
            op: entry,
            message: "dtable and row_grad must differ from each other and from the inputs".into(),
        });
    }
    let outputs = classes * dim;
    let wg = spread_workgroup(ctx.kernel_settings(), outputs, WORKGROUP, 64);
    let kernel = ctx.kernel(&KernelSpec {
        shader: Shader::Embedding,
        entry,
        bindings: &[Uniform, Read, Read, ReadWrite, Read, ReadWrite],
        constants: &[
            ("WG", wg as f64),
            ("ROW_ACCUMULATE", row_accumulate as u32 as f64),
        ],
    })?;
    let uniform = ctx.uniform("embedding_backward_row_dot params", &params);
    let bind_group = ctx.bind(&kernel, &[&uniform, labels, dy, dtable, features, row_grad]);
    let (x, y) = grid_1d(ctx, (outputs as u32).div_ceil(wg));
    // Every invocation walks the batch; each row element is read (features, and row_grad
    // when adding) and written once, the table once.
    let bytes = 4
        * (batch * (1 + classes)
            + n * (2 + row_accumulate as usize)
            + outputs * (1 + accumulate as usize));
    Ok(Dispatch {
        kernel,
        bind_group,
        groups: [x, y, 1],
        footprint: Footprint::linear(wg, batch, 2.0 * n as f64, bytes as f64),
    })
}

/// [`embedding_forward`] (overwriting out) and `sum [batch, dim]` = `addend` + out, in one
/// dispatch.
pub fn embedding_add(
    ctx: &GpuContext,
    table: &GpuBuffer,
    labels: &GpuBuffer,
    out: &GpuBuffer,
    addend: &GpuBuffer,
    sum: &GpuBuffer,
    (batch, classes, dim): (usize, usize, usize),
) -> Result<Dispatch> {
    let entry = "embedding_add";
    let n = batch * dim;
    let buffers = [
        ("labels", labels, batch),
        ("table", table, classes * dim),
        ("out", out, n),
        ("addend", addend, n),
        ("sum", sum, n),
    ];
    let params = checked_params(entry, &buffers, (batch, classes, dim), false)?;
    let kernel = ctx.kernel(&KernelSpec {
        shader: Shader::Embedding,
        entry,
        bindings: &[Uniform, Read, Read, ReadWrite, Read, ReadWrite],
        constants: &[("WG", WORKGROUP as f64)],
    })?;
    let uniform = ctx.uniform("embedding_add params", &params);
    let bind_group = ctx.bind(&kernel, &[&uniform, labels, table, out, addend, sum]);
    let (x, y) = grid_1d(ctx, (n as u32).div_ceil(WORKGROUP));
    Ok(Dispatch {
        kernel,
        bind_group,
        groups: [x, y, 1],
        footprint: Footprint::linear(WORKGROUP, 0, n as f64, (4 * (batch + 4 * n)) as f64),
    })
}

/// `out [batch, dim]` = the rows of `table` at `labels`, `dot [batch]` = the row-wise dot
/// product of `x [batch, dim]` and out (as `combine::row_dot`, bit for bit), and
/// `logit [batch]` = `addend` + dot: a projection discriminator's head in one dispatch.
#[allow(clippy::too_many_arguments)]
pub fn embedding_row_dot(
    ctx: &GpuContext,
    table: &GpuBuffer,
    labels: &GpuBuffer,
    out: &GpuBuffer,
    x: &GpuBuffer,
    dot: &GpuBuffer,
    addend: &GpuBuffer,
    logit: &GpuBuffer,
    (batch, classes, dim): (usize, usize, usize),
) -> Result<Dispatch> {
    let entry = "embedding_row_dot";
    let n = batch * dim;
    let buffers = [
        ("labels", labels, batch),
        ("table", table, classes * dim),
        ("out", out, n),
        ("x", x, n),
        ("dot", dot, batch),
        ("addend", addend, batch),
        ("logit", logit, batch),
    ];
    let params = checked_params(entry, &buffers, (batch, classes, dim), false)?;
    let kernel = ctx.kernel(&KernelSpec {
        shader: Shader::Embedding,
        entry,
        bindings: &[
            Uniform, Read, Read, ReadWrite, Read, ReadWrite, Read, ReadWrite,
        ],
        constants: &[("WG", ROW_WORKGROUP as f64)],
    })?;
    let uniform = ctx.uniform("embedding_row_dot params", &params);
    let bind_group = ctx.bind(
        &kernel,
        &[&uniform, labels, table, out, x, dot, addend, logit],
    );
    let (gx, gy) = grid_1d(ctx, batch as u32);
    // Each invocation strides over its row, then the workgroup halves the sums.
    let trips = dim
        .div_ceil(ROW_WORKGROUP as usize)
        .max(ROW_WORKGROUP.ilog2() as usize);
    Ok(Dispatch {
        kernel,
        bind_group,
        groups: [gx, gy, 1],
        footprint: Footprint::linear(
            ROW_WORKGROUP,
            trips,
            (2 * n + batch) as f64,
            (4 * (2 * batch + 3 * n + 2 * batch)) as f64,
        ),
    })
}
