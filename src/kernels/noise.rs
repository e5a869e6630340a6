//! Launcher for `shaders/noise.wgsl`: Philox4x32-10 counter-based noise on the GPU, the
//! twin of `cpu::noise` (same counter/key layout and element order).
//!
//! [`noise`] returns the dispatch and a [`NoiseStream`] handle on its uniform: a training
//! loop records the dispatch once and calls [`NoiseStream::set_stream`] each step (e.g.
//! with the step number) to draw fresh numbers without rebuilding anything.

use bytemuck::{Pod, Zeroable};

use crate::cpu::DropoutMask;
use crate::error::{Error, Result};
use crate::gpu::pipeline::grid_1d;
use crate::gpu::{Binding, Dispatch, Footprint, GpuBuffer, GpuContext, KernelSpec, Shader};
use Binding::{Read, ReadWrite, Uniform};

/// Twin of `Params` in `shaders/noise.wgsl`.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Pod, Zeroable)]
pub struct NoiseParams {
    pub seed_lo: u32,
    pub seed_hi: u32,
    pub stream_lo: u32,
    pub stream_hi: u32,
    pub n: u32,
    pub bound: u32,
    /// Dropout's factor for kept values.
    pub scale: f32,
    /// Dropout: 1 adds into y.
    pub accumulate: u32,
}

/// Twin of `Rows` in `shaders/noise.wgsl`: a drawn batch's row length in bytes.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Pod, Zeroable)]
pub struct DrawRows {
    pub row_len: u32,
    pub _pad: [u32; 3],
}

pub const PARAMS_TWINS: &[super::ParamsTwin] = &[
    (Shader::Noise, "Params", std::mem::size_of::<NoiseParams>()),
    (Shader::Noise, "Rows", std::mem::size_of::<DrawRows>()),
];

/// Each invocation runs a whole Philox block (10 rounds); 64 keeps enough workgroups in
/// flight for small n.
const WORKGROUP: u32 = 64;

/// What to draw into the output buffer (n elements of 4 bytes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NoiseKind {
    /// f32 N(0, 1) samples, `cpu::noise::normal_noise` to about 1e-6.
    Normal,
    /// Raw u32 words, bit-exact with `cpu::noise::uniform_u32`.
    UniformU32,
    /// u32 indices in [0, bound), bound > 0, bit-exact with `cpu::noise::uniform_index`
    /// applied to `uniform_u32` (the rows of a training batch).
    BatchIndices { bound: u32 },
}

impl NoiseParams {
    pub fn new(seed: u64, stream: u64, n: u32, bound: u32) -> Self {
        NoiseParams {
            seed_lo: seed as u32,
            seed_hi: (seed >> 32) as u32,
            stream_lo: stream as u32,
            stream_hi: (stream >> 32) as u32,
            n,
            bound,
            scale: 1.0,
            accumulate: 0,
        }
    }

    pub fn with_stream(self, stream: u64) -> Self {
        NoiseParams {
            stream_lo: stream as u32,
            stream_hi: (stream >> 32) as u32,
            ..self
        }
    }
}

/// The uniform of one noise dispatch.
pub struct NoiseStream {
    params: NoiseParams,
    uniform: GpuBuffer,
}

impl NoiseStream {
    /// Makes the next submitted runs of the dispatch draw stream `stream` (same seed).
    pub fn set_stream(&self, ctx: &GpuContext, stream: u64) {
        let params = self.params.with_stream(stream);
        ctx.write(&self.uniform, std::slice::from_ref(&params));
    }

    /// The parameters it was created with.
    pub fn params(&self) -> NoiseParams {
        self.params
    }
}

/// Draws n elements of `kind` for (seed, stream) into `out` (n f32 or u32).
pub fn noise(
    ctx: &GpuContext,
    kind: NoiseKind,
    seed: u64,
    stream: u64,
    out: &GpuBuffer,
    n: usize,
) -> Result<(Dispatch, NoiseStream)> {
    let shape_error = |message: String| Error::Shape {
        op: "noise",
        message,
    };
    let n32 =
        u32::try_from(n).map_err(|_| shape_error(format!("{n} elements do not fit a u32")))?;
    if out.size() < n as u64 * 4 {
        return Err(shape_error(format!(
            "out holds {} bytes, {n} elements need {}",
            out.size(),
            n * 4
        )));
    }
    let (entry, bound) = match kind {
        NoiseKind::Normal => ("normal", 0),
        NoiseKind::UniformU32 => ("uniform_u32", 0),
        NoiseKind::BatchIndices { bound: 0 } if n > 0 => {
            return Err(shape_error("batch indices need bound > 0 rows".into()));
        }
        NoiseKind::BatchIndices { bound } => ("batch_indices", bound),
    };
    let kernel = ctx.kernel(&KernelSpec {
        shader: Shader::Noise,
        entry,
        bindings: &[Binding::Uniform, Binding::ReadWrite],
        constants: &[("WG", WORKGROUP as f64)],
    })?;
    let params = NoiseParams::new(seed, stream, n32, bound);
    let uniform = ctx.uniform("noise params", &params);
    let bind_group = ctx.bind(&kernel, &[&uniform, out]);
    let blocks = n32.div_ceil(4);
    let (x, y) = grid_1d(ctx, blocks.div_ceil(WORKGROUP));
    Ok((
        Dispatch {
            kernel,
            bind_group,
            groups: [x, y, 1],
            // The 10 Philox rounds of one block of 4 values.
            footprint: Footprint::linear(WORKGROUP, 10, 0.0, 4.0 * n as f64),
        },
        NoiseStream { params, uniform },
    ))
}

/// Dropout of n elements with the mask of (seed, stream): y = mask·x·scale, or y += that
/// with `accumulate` (the gradient: x = dy, y = dx). Bit-exact with `cpu::dropout`, whose
/// [`DropoutMask`] gives the threshold and scale. x and y must be distinct buffers.
#[allow(clippy::too_many_arguments)]
pub fn dropout(
    ctx: &GpuContext,
    mask: DropoutMask,
    seed: u64,
    stream: u64,
    x: &GpuBuffer,
    y: &GpuBuffer,
    n: usize,
    accumulate: bool,
) -> Result<(Dispatch, NoiseStream)> {
    let shape_error = |message: String| Error::Shape {
        op: "dropout",
        message,
    };
    let n32 =
        u32::try_from(n).map_err(|_| shape_error(format!("{n} elements do not fit a u32")))?;
    for (name, buffer) in [("x", x), ("y", y)] {
        if buffer.size() < n as u64 * 4 {
            return Err(shape_error(format!(
                "{name} holds {} bytes, {n} elements need {}",
                buffer.size(),
                n * 4
            )));
        }
    }
    if x == y {
        return Err(shape_error(
            "x and y are the same buffer; they must differ".into(),
        ));
    }
    let kernel = ctx.kernel(&KernelSpec {
        shader: Shader::Noise,
        entry: "dropout",
        bindings: &[Binding::Uniform, Binding::ReadWrite, Binding::Read],
        constants: &[("WG", WORKGROUP as f64)],
    })?;
    let params = NoiseParams {
        scale: mask.scale,
        accumulate: u32::from(accumulate),
        ..NoiseParams::new(seed, stream, n32, mask.threshold)
    };
    let uniform = ctx.uniform("dropout params", &params);
    let bind_group = ctx.bind(&kernel, &[&uniform, y, x]);
    let (gx, gy) = grid_1d(ctx, n32.div_ceil(4).div_ceil(WORKGROUP));
    Ok((
        Dispatch {
            kernel,
            bind_group,
            groups: [gx, gy, 1],
            // Four elements per invocation, each a Philox draw (10 rounds) and a multiply.
            footprint: Footprint::linear(
                WORKGROUP,
                10,
                n as f64,
                (if accumulate { 12.0 } else { 8.0 }) * n as f64,
            ),
        },
        NoiseStream { params, uniform },
    ))
}

/// `n` N(0, 1) samples for (seed, `stream`) into `out`, and `n_b` indices below `bound`
/// for (seed, `stream_b`) into `out_b`, in one dispatch: what [`noise`] draws for
/// [`NoiseKind::Normal`] and [`NoiseKind::BatchIndices`], element for element (a
/// conditional generator's noise and class labels). Returns the two streams' handles.
pub fn normal_and_indices(
    ctx: &GpuContext,
    seed: u64,
    (stream, out, n): (u64, &GpuBuffer, usize),
    (stream_b, out_b, n_b, bound): (u64, &GpuBuffer, usize, u32),
) -> Result<(Dispatch, NoiseStream, NoiseStream)> {
    let shape_error = |message: String| Error::Shape {
        op: "normal_and_indices",
        message,
    };
    let (Ok(n32), Ok(n_b32)) = (u32::try_from(n), u32::try_from(n_b)) else {
        return Err(shape_error(format!(
            "{n} or {n_b} elements do not fit a u32"
        )));
    };
    if bound == 0 && n_b > 0 {
        return Err(shape_error("indices need bound > 0".into()));
    }
    for (name, buffer, len) in [("out", out, n), ("out_b", out_b, n_b)] {
        if buffer.size() < len as u64 * 4 {
            return Err(shape_error(format!(
                "{name} holds {} bytes, {len} elements need {}",
                buffer.size(),
                len * 4
            )));
        }
    }
    if out == out_b {
        return Err(shape_error("the two draws write the same buffer".into()));
    }
    let kernel = ctx.kernel(&KernelSpec {
        shader: Shader::Noise,
        entry: "normal_and_indices",
        bindings: &[Uniform, ReadWrite, Uniform, ReadWrite],
        constants: &[("WG", WORKGROUP as f64)],
    })?;
    let params = NoiseParams::new(seed, stream, n32, 0);
    let params_b = NoiseParams::new(seed, stream_b, n_b32, bound);
    let uniform = ctx.uniform("noise params", &params);
    let uniform_b = ctx.uniform("noise params (second draw)", &params_b);
    let bind_group = ctx.bind(&kernel, &[&uniform, out, &uniform_b, out_b]);
    let blocks = n32.max(n_b32).div_ceil(4);
    let (x, y) = grid_1d(ctx, blocks.div_ceil(WORKGROUP));
    Ok((
        Dispatch {
            kernel,
            bind_group,
            groups: [x, y, 1],
            // Up to two blocks of 10 Philox rounds per invocation.
            footprint: Footprint::linear(WORKGROUP, 20, 0.0, 4.0 * (n + n_b) as f64),
        },
        NoiseStream { params, uniform },
        NoiseStream {
            params: params_b,
            uniform: uniform_b,
        },
    ))
}

/// The dataset a batch is drawn from, as the executor uploads it: `rows` rows of
/// `row_len` u8 packed 4 per u32, and optionally one u8 label per row, packed alike.
pub struct DatasetRows<'a> {
    pub bytes: &'a GpuBuffer,
    pub rows: usize,
    pub row_len: usize,
    pub labels: Option<&'a GpuBuffer>,
}

/// Where a drawn batch goes: its row numbers (u32), its rows in [-1, 1] (f32), and,
/// with a labelled dataset, their labels (u32).
pub struct DrawnBatch<'a> {
    pub indices: &'a GpuBuffer,
    pub rows: &'a GpuBuffer,
    pub labels: Option<&'a GpuBuffer>,
}

/// A training batch in one dispatch: `batch` row numbers for (seed, `stream`), as
/// [`noise`] draws [`NoiseKind::BatchIndices`] with the dataset's rows as the bound, and
/// the rows they name (and their labels) gathered as `kernels::gather` does.
pub fn draw_batch(
    ctx: &GpuContext,
    seed: u64,
    stream: u64,
    data: &DatasetRows,
    batch: usize,
    out: DrawnBatch,
) -> Result<(Dispatch, NoiseStream)> {
    let shape_error = |message: String| Error::Shape {
        op: "draw_batch",
        message,
    };
    let &DatasetRows {
        bytes,
        rows,
        row_len,
        labels,
    } = data;
    let elements = batch
        .checked_mul(row_len)
        .filter(|&n| n <= u32::MAX as usize && rows.saturating_mul(row_len) <= u32::MAX as usize)
        .ok_or_else(|| shape_error(format!("{batch}x{row_len} from {rows} rows overflows u32")))?;
    if rows == 0 && batch > 0 {
        return Err(shape_error("cannot draw from an empty dataset".into()));
    }
    if labels.is_some() != out.labels.is_some() {
        return Err(shape_error(
            "labels are drawn from a labelled dataset into a label buffer, or not at all".into(),
        ));
    }
    let mut sizes = vec![
        ("dataset", bytes, (rows * row_len) as u64),
        ("indices", out.indices, 4 * batch as u64),
        ("rows", out.rows, 4 * elements as u64),
    ];
    if let (Some(labels), Some(labels_out)) = (labels, out.labels) {
        sizes.push(("labels", labels, rows as u64));
        sizes.push(("labels out", labels_out, 4 * batch as u64));
    }
    for (name, buffer, need) in sizes {
        if buffer.size() < need {
            return Err(shape_error(format!(
                "{name} buffer holds {} bytes, batch {batch} of {row_len} from {rows} rows needs {need}",
                buffer.size()
            )));
        }
    }
    let written = [Some(out.indices), Some(out.rows), out.labels];
    let written: Vec<&GpuBuffer> = written.into_iter().flatten().collect();
    if (1..written.len()).any(|i| written[..i].contains(&written[i])) {
        return Err(shape_error(
            "the indices, rows and labels must be distinct buffers".into(),
        ));
    }
    let batch32 = batch as u32;
    let kernel = ctx.kernel(&KernelSpec {
        shader: Shader::Noise,
        entry: if labels.is_some() {
            "draw_batch_labels"
        } else {
            "draw_batch"
        },
        bindings: if labels.is_some() {
            &[
                Uniform, ReadWrite, Uniform, Read, ReadWrite, Read, ReadWrite,
            ]
        } else {
            &[Uniform, ReadWrite, Uniform, Read, ReadWrite]
        },
        constants: &[("WG", WORKGROUP as f64)],
    })?;
    let params = NoiseParams::new(seed, stream, batch32, rows as u32);
    let uniform = ctx.uniform("draw_batch params", &params);
    let row_params = ctx.uniform(
        "draw_batch rows",
        &DrawRows {
            row_len: row_len as u32,
            _pad: [0; 3],
        },
    );
    let mut bound: Vec<&GpuBuffer> = vec![&uniform, out.indices, &row_params, bytes, out.rows];
    bound.extend(labels.into_iter().chain(out.labels));
    let bind_group = ctx.bind(&kernel, &bound);
    let (x, y) = grid_1d(ctx, batch32);
    let trips = row_len.div_ceil(WORKGROUP as usize);
    let label_bytes = if labels.is_some() { 5 * batch } else { 0 };
    Ok((
        Dispatch {
            kernel,
            bind_group,
            groups: [x, y, 1],
            // A byte read and an f32 written per element, the row number per row.
            footprint: Footprint::linear(
                WORKGROUP,
                trips.max(10),
                0.0,
                (5 * elements + 4 * batch + label_bytes) as f64,
            ),
        },
        NoiseStream { params, uniform },
    ))
}
