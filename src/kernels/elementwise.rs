//! Launchers for `shaders/elementwise.wgsl`: activations forward and backward, and the
//! buffer helpers of a graph executor (fill, add into, scale).
//!
//! All take a length in f32 elements, accept any length including 0 (an empty dispatch),
//! and pick the vec4 entry point when the length is a multiple of 4. Each activation is
//! its own pipeline (the shader's `ACT` override constant), compiled on first use.
//! Inputs and the output must be distinct buffers (WebGPU forbids binding one buffer both
//! read-only and read-write in a dispatch); `scale` and `fill` work in place by design.

use bytemuck::{Pod, Zeroable};

use crate::cpu::activation::Activation;
use crate::error::{Error, Result};
use crate::gpu::pipeline::grid_1d;
use crate::gpu::{Binding, Dispatch, Footprint, GpuBuffer, GpuContext, KernelSpec, Shader};
use Binding::{Read, ReadWrite, Uniform};

/// Twin of `Params` in `shaders/elementwise.wgsl`.
#[repr(C)]
#[derive(Debug, Clone, Copy, Pod, Zeroable)]
pub struct ElementwiseParams {
    pub len: u32,
    /// LeakyReLU's alpha, or the value of fill / the factor of add_scaled and scale.
    pub value: f32,
    pub accumulate: u32,
    pub _pad: u32,
}

pub const PARAMS_TWINS: &[super::ParamsTwin] = &[(
    Shader::Elementwise,
    "Params",
    std::mem::size_of::<ElementwiseParams>(),
)];

const WORKGROUP: u32 = 256;

/// One kernel of the family: its scalar and vec4 entry points share the binding list.
struct Op {
    name: &'static str,
    scalar: &'static str,
    vec4: &'static str,
    bindings: &'static [Binding],
    /// f32 read or written per element (backward binds x and y, reads one).
    moved: usize,
}

const FORWARD: Op = Op {
    name: "activation_forward",
    scalar: "act_forward",
    vec4: "act_forward4",
    bindings: &[Uniform, ReadWrite, Read],
    moved: 2,
};
const BACKWARD: Op = Op {
    name: "activation_backward",
    scalar: "act_backward",
    vec4: "act_backward4",
    bindings: &[Uniform, ReadWrite, Read, Read, Read],
    moved: 3,
};
const FILL: Op = Op {
    name: "fill",
    scalar: "fill",
    vec4: "fill4",
    bindings: &[Uniform, ReadWrite],
    moved: 1,
};
const ADD_SCALED: Op = Op {
    name: "add_scaled_into",
    scalar: "add_scaled",
    vec4: "add_scaled4",
    bindings: &[Uniform, ReadWrite, Read],
    moved: 3,
};
const SCALE: Op = Op {
    name: "scale",
    scalar: "scale",
    vec4: "scale4",
    bindings: &[Uniform, ReadWrite],
    moved: 2,
};

/// The shader's `ACT` constant and its parameter (alpha) for `act`.
pub(crate) fn act_code(act: Activation) -> (Option<u32>, f32) {
    match act {
        Activation::Relu => (Some(0), 0.0),
        Activation::LeakyRelu(alpha) => (Some(1), alpha),
        Activation::Tanh => (Some(2), 0.0),
        Activation::Sigmoid => (Some(3), 0.0),
    }
}

/// Checks sizes and aliasing, then builds the dispatch of `op` over `len` elements with
/// `buffers` in binding order (output first); `act` selects the activation pipeline.
fn launch(
    ctx: &GpuContext,
    op: &Op,
    buffers: &[(&str, &GpuBuffer)],
    len: usize,
    act: Option<u32>,
    value: f32,
    accumulate: bool,
) -> Result<Dispatch> {
    let shape_error = |message: String| Error::Shape {
        op: op.name,
        message,
    };
    let len32 = u32::try_from(len)
        .map_err(|_| shape_error(format!("{len} elements do not fit a u32 index")))?;
    for (i, (name, buffer)) in buffers.iter().enumerate() {
        if buffer.size() < len as u64 * 4 {
            return Err(shape_error(format!(
                "{name} holds {} bytes, {len} f32 need {}",
                buffer.size(),
                len * 4
            )));
        }
        if let Some((other, _)) = buffers[..i].iter().find(|(_, b)| b == buffer) {
            return Err(shape_error(format!(
                "{name} and {other} are the same buffer; they must differ"
            )));
        }
    }
    let vectorized = len > 0 && len.is_multiple_of(4);
    let mut constants = vec![("WG", WORKGROUP as f64)];
    constants.extend(act.map(|code| ("ACT", code as f64)));
    let kernel = ctx.kernel(&KernelSpec {
        shader: Shader::Elementwise,
        entry: if vectorized { op.vec4 } else { op.scalar },
        bindings: op.bindings,
        constants: &constants,
    })?;
    let params = ElementwiseParams {
        len: len32,
        value,
        accumulate: accumulate as u32,
        _pad: 0,
    };
    let uniform = ctx.uniform(&format!("{} params", op.name), &params);
    let mut bound: Vec<&GpuBuffer> = vec![&uniform];
    bound.extend(buffers.iter().map(|(_, b)| *b));
    let bind_group = ctx.bind(&kernel, &bound);
    let invocations = if vectorized { len32 / 4 } else { len32 };
    let (x, y) = grid_1d(ctx, invocations.div_ceil(WORKGROUP));
    let bytes = 4 * len * (op.moved + accumulate as usize);
    Ok(Dispatch {
        kernel,
        bind_group,
        groups: [x, y, 1],
        footprint: Footprint::linear(WORKGROUP, 0, len as f64, bytes as f64),
    })
}

/// y = f(x) over `len` elements.
pub fn activation_forward(
    ctx: &GpuContext,
    act: Activation,
    x: &GpuBuffer,
    y: &GpuBuffer,
    len: usize,
) -> Result<Dispatch> {
    let (code, alpha) = act_code(act);
    launch(
        ctx,
        &FORWARD,
        &[("y", y), ("x", x)],
        len,
        code,
        alpha,
        false,
    )
}

/// dx = f'·dy over `len` elements (dx += f'·dy when `accumulate`). ReLU and LeakyReLU
/// read x, tanh and sigmoid read the forward output y; both are bound either way.
#[allow(clippy::too_many_arguments)] // one buffer per tensor of the rule, plus its length
pub fn activation_backward(
    ctx: &GpuContext,
    act: Activation,
    x: &GpuBuffer,
    y: &GpuBuffer,
    dy: &GpuBuffer,
    dx: &GpuBuffer,
    len: usize,
    accumulate: bool,
) -> Result<Dispatch> {
    let (code, alpha) = act_code(act);
    let buffers = [("dx", dx), ("x", x), ("y", y), ("dy", dy)];
    launch(ctx, &BACKWARD, &buffers, len, code, alpha, accumulate)
}

/// buf[..len] = value (zeroing gradient accumulators, constant label vectors).
pub fn fill(ctx: &GpuContext, buf: &GpuBuffer, len: usize, value: f32) -> Result<Dispatch> {
    launch(ctx, &FILL, &[("buf", buf)], len, None, value, false)
}

/// dst[..len] += src[..len].
pub fn add_into(
    ctx: &GpuContext,
    src: &GpuBuffer,
    dst: &GpuBuffer,
    len: usize,
) -> Result<Dispatch> {
    add_scaled_into(ctx, src, dst, len, 1.0)
}

/// dst[..len] += s·src[..len] (with s = 1 exactly dst + src).
pub fn add_scaled_into(
    ctx: &GpuContext,
    src: &GpuBuffer,
    dst: &GpuBuffer,
    len: usize,
    s: f32,
) -> Result<Dispatch> {
    launch(
        ctx,
        &ADD_SCALED,
        &[("dst", dst), ("src", src)],
        len,
        None,
        s,
        false,
    )
}

/// buf[..len] *= s.
pub fn scale(ctx: &GpuContext, buf: &GpuBuffer, len: usize, s: f32) -> Result<Dispatch> {
    launch(ctx, &SCALE, &[("buf", buf)], len, None, s, false)
}
