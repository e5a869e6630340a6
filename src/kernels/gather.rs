//! Launcher for `shaders/gather.wgsl`: dataset rows to a normalized f32 batch, and their
//! u8 class labels to u32 labels.

use bytemuck::{Pod, Zeroable};

use crate::error::{Error, Result};
use crate::gpu::pipeline::grid_1d;
use crate::gpu::{Binding, Dispatch, Footprint, GpuBuffer, GpuContext, KernelSpec, Shader};

/// Twin of `Params` in `shaders/gather.wgsl`.
#[repr(C)]
#[derive(Debug, Clone, Copy, Pod, Zeroable)]
pub struct GatherParams {
    pub row_len: u32,
    pub batch: u32,
    pub rows: u32,
    pub _pad: u32,
}

pub const PARAMS_TWINS: &[super::ParamsTwin] = &[(
    Shader::Gather,
    "Params",
    std::mem::size_of::<GatherParams>(),
)];

const WORKGROUP: u32 = 256;

const SPEC: KernelSpec<'static> = KernelSpec {
    shader: Shader::Gather,
    entry: "gather_rows",
    bindings: &[
        Binding::Uniform,
        Binding::Read,
        Binding::Read,
        Binding::ReadWrite,
    ],
    constants: &[("WG", WORKGROUP as f64)],
};

/// Gathers `batch` rows (numbers in `indices`) of a u8 dataset of `rows` rows of
/// `row_len` bytes, uploaded with [`GpuContext::upload`], into `out` as
/// `[batch, row_len]` f32 in [-1, 1].
pub fn gather_rows(
    ctx: &GpuContext,
    dataset: &GpuBuffer,
    rows: usize,
    row_len: usize,
    indices: &GpuBuffer,
    batch: usize,
    out: &GpuBuffer,
) -> Result<Dispatch> {
    let shape_error = |message: String| Error::Shape {
        op: "gather_rows",
        message,
    };
    let elements = batch
        .checked_mul(row_len)
        .filter(|&n| n <= u32::MAX as usize && rows * row_len <= u32::MAX as usize)
        .ok_or_else(|| shape_error(format!("{batch}x{row_len} from {rows} rows overflows u32")))?;
    if rows == 0 && batch > 0 {
        return Err(shape_error("cannot gather from an empty dataset".into()));
    }
    if dataset.size() < (rows * row_len) as u64 {
        return Err(shape_error(format!(
            "dataset buffer holds {} bytes, {rows} rows of {row_len} need {}",
            dataset.size(),
            rows * row_len
        )));
    }
    if indices.size() < (batch * 4) as u64 || out.size() < (elements * 4) as u64 {
        return Err(shape_error(format!(
            "index buffer ({} bytes) or output buffer ({} bytes) too small for batch {batch} of {row_len}",
            indices.size(),
            out.size()
        )));
    }
    let params = GatherParams {
        row_len: row_len as u32,
        batch: batch as u32,
        rows: rows as u32,
        _pad: 0,
    };
    let kernel = ctx.kernel(&SPEC)?;
    let uniform = ctx.uniform("gather_rows params", &params);
    let bind_group = ctx.bind(&kernel, &[&uniform, dataset, indices, out]);
    let (x, y) = grid_1d(ctx, (elements as u32).div_ceil(WORKGROUP));
    // A byte in and an f32 out per element, and the row numbers.
    let bytes = 5 * elements + 4 * batch;
    Ok(Dispatch {
        kernel,
        bind_group,
        groups: [x, y, 1],
        footprint: Footprint::linear(WORKGROUP, 0, 0.0, bytes as f64),
    })
}

const LABELS_SPEC: KernelSpec<'static> = KernelSpec {
    entry: "gather_labels",
    ..SPEC
};

/// Gathers the labels of `batch` rows (numbers in `indices`) from `rows` u8 class labels,
/// uploaded with [`GpuContext::upload`], into `out` as `[batch]` u32.
pub fn gather_labels(
    ctx: &GpuContext,
    labels: &GpuBuffer,
    rows: usize,
    indices: &GpuBuffer,
    batch: usize,
    out: &GpuBuffer,
) -> Result<Dispatch> {
    let shape_error = |message: String| Error::Shape {
        op: "gather_labels",
        message,
    };
    let (Ok(batch32), Ok(rows32)) = (u32::try_from(batch), u32::try_from(rows)) else {
        return Err(shape_error(format!(
            "batch {batch} or {rows} rows overflow u32"
        )));
    };
    if rows == 0 && batch > 0 {
        return Err(shape_error("cannot gather from an empty label set".into()));
    }
    if labels.size() < rows as u64 {
        return Err(shape_error(format!(
            "label buffer holds {} bytes, {rows} u8 labels need {rows}",
            labels.size()
        )));
    }
    if indices.size() < batch as u64 * 4 || out.size() < batch as u64 * 4 {
        return Err(shape_error(format!(
            "index buffer ({} bytes) or output buffer ({} bytes) too small for batch {batch} u32",
            indices.size(),
            out.size()
        )));
    }
    let params = GatherParams {
        row_len: 1,
        batch: batch32,
        rows: rows32,
        _pad: 0,
    };
    let kernel = ctx.kernel(&LABELS_SPEC)?;
    let uniform = ctx.uniform("gather_labels params", &params);
    let bind_group = ctx.bind(&kernel, &[&uniform, labels, indices, out]);
    let (x, y) = grid_1d(ctx, batch32.div_ceil(WORKGROUP));
    // A row number and a label byte in, a u32 out.
    let bytes = 9 * batch;
    Ok(Dispatch {
        kernel,
        bind_group,
        groups: [x, y, 1],
        footprint: Footprint::linear(WORKGROUP, 0, 0.0, bytes as f64),
    })
}
