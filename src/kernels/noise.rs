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

pub const PARAMS_TWINS: &[super::ParamsTwin] =
    &[(Shader::Noise, "Params", std::mem::size_of::<NoiseParams>())];

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
