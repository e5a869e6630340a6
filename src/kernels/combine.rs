//! Launchers for `shaders/combine.wgsl`: element-wise sum, copy-or-add, and the row-wise
//! dot product with its gradient. Inputs and the output must be distinct buffers.

use bytemuck::{Pod, Zeroable};

use crate::error::{Error, Result};
use crate::gpu::pipeline::grid_1d;
use crate::gpu::{Binding, Dispatch, Footprint, GpuBuffer, GpuContext, KernelSpec, Shader};
use Binding::{Read, ReadWrite, Uniform};

/// Twin of `Params` in `shaders/combine.wgsl`.
#[repr(C)]
#[derive(Debug, Clone, Copy, Pod, Zeroable)]
pub struct CombineParams {
    pub len: u32,
    pub cols: u32,
    pub accumulate: u32,
    pub offset: u32,
}

pub const PARAMS_TWINS: &[super::ParamsTwin] = &[(
    Shader::Combine,
    "Params",
    std::mem::size_of::<CombineParams>(),
)];

/// A power of two (row_dot's reduction tree halves it); 64 is two warps or one wavefront.
const WORKGROUP: u32 = 64;

/// How the grid maps to the work.
enum Grid {
    /// One invocation per element of `n`.
    Elements(usize),
    /// One workgroup per row.
    Rows(usize),
}

#[allow(clippy::too_many_arguments)]
fn launch(
    ctx: &GpuContext,
    entry: &'static str,
    y: (&str, &GpuBuffer, usize),
    inputs: &[(&str, &GpuBuffer, usize)],
    len: usize,
    cols: usize,
    grid: Grid,
    accumulate: bool,
    offset: u32,
) -> Result<Dispatch> {
    let shape_error = |message: String| Error::Shape { op: entry, message };
    let (Ok(len32), Ok(cols32)) = (u32::try_from(len), u32::try_from(cols)) else {
        return Err(shape_error(format!(
            "{len}x{cols} does not fit u32 indices"
        )));
    };
    let all: Vec<(&str, &GpuBuffer, usize)> =
        std::iter::once(y).chain(inputs.iter().copied()).collect();
    for (i, &(name, buffer, n)) in all.iter().enumerate() {
        if n > u32::MAX as usize || buffer.size() < n as u64 * 4 {
            return Err(shape_error(format!(
                "{name} holds {} bytes, {n} f32 need {}",
                buffer.size(),
                n * 4
            )));
        }
        if let Some((other, _, _)) = all[..i].iter().find(|(_, b, _)| *b == buffer) {
            return Err(shape_error(format!(
                "{name} and {other} are the same buffer; they must differ"
            )));
        }
    }
    let bindings: &'static [Binding] = match inputs.len() {
        1 => &[Uniform, ReadWrite, Read],
        _ => &[Uniform, ReadWrite, Read, Read],
    };
    let kernel = ctx.kernel(&KernelSpec {
        shader: Shader::Combine,
        entry,
        bindings,
        constants: &[("WG", WORKGROUP as f64)],
    })?;
    let params = CombineParams {
        len: len32,
        cols: cols32,
        accumulate: accumulate as u32,
        offset,
    };
    let uniform = ctx.uniform(&format!("{entry} params"), &params);
    let mut bound = vec![&uniform, y.1];
    bound.extend(inputs.iter().map(|(_, b, _)| *b));
    let bind_group = ctx.bind(&kernel, &bound);
    let groups = match grid {
        Grid::Elements(n) => (n as u32).div_ceil(WORKGROUP),
        Grid::Rows(rows) => rows as u32,
    };
    let (x, y) = grid_1d(ctx, groups);
    let (trips, flops) = match grid {
        Grid::Elements(n) => (0, n),
        // Each invocation strides over the row, then the workgroup halves the sums.
        Grid::Rows(rows) => (
            cols.div_ceil(WORKGROUP as usize)
                .max(WORKGROUP.ilog2() as usize),
            2 * rows * cols,
        ),
    };
    let read: usize = inputs.iter().map(|&(_, _, n)| n).sum();
    let bytes = 4 * (read + all[0].2 * (1 + accumulate as usize));
    Ok(Dispatch {
        kernel,
        bind_group,
        groups: [x, y, 1],
        footprint: Footprint::linear(WORKGROUP, trips, flops as f64, bytes as f64),
    })
}

/// y = a + b over `len` elements.
pub fn add(
    ctx: &GpuContext,
    a: &GpuBuffer,
    b: &GpuBuffer,
    y: &GpuBuffer,
    len: usize,
) -> Result<Dispatch> {
    let inputs = [("a", a, len), ("b", b, len)];
    launch(
        ctx,
        "add",
        ("y", y, len),
        &inputs,
        len,
        0,
        Grid::Elements(len),
        false,
        0,
    )
}

/// dst = src[offset..offset + len], or dst += it with `accumulate`.
pub fn accumulate(
    ctx: &GpuContext,
    src: &GpuBuffer,
    offset: usize,
    dst: &GpuBuffer,
    len: usize,
    accumulate: bool,
) -> Result<Dispatch> {
    let end = offset.saturating_add(len);
    let offset32 = u32::try_from(offset)
        .ok()
        .filter(|_| u32::try_from(end).is_ok())
        .ok_or_else(|| Error::Shape {
            op: "accumulate",
            message: format!("elements {offset}..{end} do not fit u32 indices"),
        })?;
    let inputs = [("src", src, end)];
    launch(
        ctx,
        "accumulate",
        ("dst", dst, len),
        &inputs,
        len,
        0,
        Grid::Elements(len),
        accumulate,
        offset32,
    )
}

/// y = a (`len_a` elements) followed by b (`len_b`), copied bit for bit.
pub fn concat(
    ctx: &GpuContext,
    a: &GpuBuffer,
    len_a: usize,
    b: &GpuBuffer,
    len_b: usize,
    y: &GpuBuffer,
) -> Result<Dispatch> {
    let len = len_a.saturating_add(len_b);
    let inputs = [("a", a, len_a), ("b", b, len_b)];
    launch(
        ctx,
        "concat",
        ("y", y, len),
        &inputs,
        len,
        len_a,
        Grid::Elements(len),
        false,
        0,
    )
}

/// One concat of a [`concat_pair`]: `a` (`len_a` elements) then `b` (`len_b`) into `y`.
pub struct Concat<'a> {
    pub a: &'a GpuBuffer,
    pub len_a: usize,
    pub b: &'a GpuBuffer,
    pub len_b: usize,
    pub y: &'a GpuBuffer,
}

/// Two [`concat()`]s in one dispatch (a batch's rows and its labels), each copied bit for
/// bit; no buffer written may be read or written by the other concat.
pub fn concat_pair(ctx: &GpuContext, first: Concat, second: Concat) -> Result<Dispatch> {
    let shape_error = |message: String| Error::Shape {
        op: "concat_pair",
        message,
    };
    let mut params = Vec::new();
    for c in [&first, &second] {
        let len = c.len_a.saturating_add(c.len_b);
        let (Ok(len32), Ok(cols32)) = (u32::try_from(len), u32::try_from(c.len_a)) else {
            return Err(shape_error(format!(
                "{len} elements do not fit u32 indices"
            )));
        };
        for (name, buffer, n) in [("a", c.a, c.len_a), ("b", c.b, c.len_b), ("y", c.y, len)] {
            if buffer.size() < n as u64 * 4 {
                return Err(shape_error(format!(
                    "{name} holds {} bytes, {n} words need {}",
                    buffer.size(),
                    n * 4
                )));
            }
        }
        params.push(CombineParams {
            len: len32,
            cols: cols32,
            accumulate: 0,
            offset: 0,
        });
    }
    let all = [first.y, first.a, first.b, second.y, second.a, second.b];
    let written = |buffer: &GpuBuffer| buffer == first.y || buffer == second.y;
    for (i, buffer) in all.iter().enumerate() {
        if all[..i].contains(buffer) && written(buffer) {
            return Err(shape_error(
                "an output is also another operand; the two concats must not overlap".into(),
            ));
        }
    }
    let kernel = ctx.kernel(&KernelSpec {
        shader: Shader::Combine,
        entry: "concat_pair",
        bindings: &[
            Uniform, ReadWrite, Read, Read, Uniform, ReadWrite, Read, Read,
        ],
        constants: &[("WG", WORKGROUP as f64)],
    })?;
    let uniform = ctx.uniform("concat_pair params", &params[0]);
    let uniform_b = ctx.uniform("concat_pair params (second)", &params[1]);
    let bind_group = ctx.bind(
        &kernel,
        &[
            &uniform, first.y, first.a, first.b, &uniform_b, second.y, second.a, second.b,
        ],
    );
    let len = params[0].len.max(params[1].len);
    let (x, y) = grid_1d(ctx, len.div_ceil(WORKGROUP));
    let moved = 8 * (params[0].len + params[1].len) as usize;
    Ok(Dispatch {
        kernel,
        bind_group,
        groups: [x, y, 1],
        footprint: Footprint::linear(WORKGROUP, 0, 0.0, moved as f64),
    })
}

/// `y [rows]` = the row-wise dot products of a and b `[rows, cols]`.
pub fn row_dot(
    ctx: &GpuContext,
    a: &GpuBuffer,
    b: &GpuBuffer,
    y: &GpuBuffer,
    rows: usize,
    cols: usize,
) -> Result<Dispatch> {
    let n = rows * cols;
    let inputs = [("a", a, n), ("b", b, n)];
    launch(
        ctx,
        "row_dot",
        ("y", y, rows),
        &inputs,
        rows,
        cols,
        Grid::Rows(rows),
        false,
        0,
    )
}

/// `dx [rows, cols]` = `dy [rows]` times `other [rows, cols]` row by row, or dx += .
#[allow(clippy::too_many_arguments)]
pub fn row_dot_grad(
    ctx: &GpuContext,
    dy: &GpuBuffer,
    other: &GpuBuffer,
    dx: &GpuBuffer,
    rows: usize,
    cols: usize,
    accumulate: bool,
) -> Result<Dispatch> {
    let n = rows * cols;
    let inputs = [("dy", dy, rows), ("other", other, n)];
    launch(
        ctx,
        "row_dot_grad",
        ("dx", dx, n),
        &inputs,
        rows,
        cols,
        Grid::Elements(n),
        accumulate,
        0,
    )
}
