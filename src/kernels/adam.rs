//! Launcher for `shaders/adam.wgsl`: Keras's Adam, in place on (p, m, v) given g.
//!
//! Design: an [`AdamStep`] owns the one uniform of per-step scalars (alpha for step t,
//! 1 - beta1, 1 - beta2, epsilon) shared by every parameter tensor of an optimizer.
//! [`adam_update`] records one dispatch over a flat range against it (plus a small
//! constant uniform with the range's length): one tensor, or a whole optimizer group whose
//! tensors share packed buffers. Each training step calls [`AdamStep::set_step`] once (a
//! queue write, ordered before the next submit) and replays the same dispatches.
//! [`adam_ema_update`] also steps a moving average of the updated parameters in the same
//! pass (a generator's weights and their average, packed alike).

use bytemuck::{Pod, Zeroable};

use crate::cpu::adam::AdamConfig;
use crate::error::{Error, Result};
use crate::gpu::pipeline::grid_1d;
use crate::gpu::settings::spread_workgroup;
use crate::gpu::{Binding, Dispatch, Footprint, GpuBuffer, GpuContext, KernelSpec, Shader};
use crate::kernels::ema::{EmaStep, EmaStepParams};
use Binding::{Read, ReadWrite, Uniform};

/// Twin of `Params` in `shaders/adam.wgsl`: the per-step scalars.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Pod, Zeroable)]
pub struct AdamParams {
    pub alpha: f32,
    pub one_minus_beta1: f32,
    pub one_minus_beta2: f32,
    pub epsilon: f32,
}

/// Twin of `Tensor` in `shaders/adam.wgsl`: one parameter tensor's length.
#[repr(C)]
#[derive(Debug, Clone, Copy, Pod, Zeroable)]
pub struct AdamTensor {
    pub len: u32,
    pub _pad: [u32; 3],
}

pub const PARAMS_TWINS: &[super::ParamsTwin] = &[
    (Shader::Adam, "Params", std::mem::size_of::<AdamParams>()),
    (Shader::Adam, "Tensor", std::mem::size_of::<AdamTensor>()),
    (
        Shader::Adam,
        "EmaStep",
        std::mem::size_of::<EmaStepParams>(),
    ),
];

const WORKGROUP: u32 = 256;
const BINDINGS: &[Binding] = &[Uniform, Uniform, Read, ReadWrite, ReadWrite, ReadWrite];
const EMA_BINDINGS: &[Binding] = &[
    Uniform, Uniform, Read, ReadWrite, ReadWrite, ReadWrite, Uniform, ReadWrite,
];

impl AdamParams {
    /// The uniform of step t (1-based). alpha and 1 - beta come from the CPU twin's own
    /// functions (`AdamConfig::alpha`, `one_minus_beta1/2`: Keras rounds 1 - beta from
    /// f64), so only the per-element arithmetic can differ between CPU and GPU.
    pub fn for_step(cfg: &AdamConfig, t: u32) -> Result<Self> {
        if t == 0 {
            return Err(Error::InvalidArgument(
                "adam: the step t is 1-based (t = 0 divides by 1 - beta1^0 = 0)".into(),
            ));
        }
        Ok(AdamParams {
            alpha: cfg.alpha(t),
            one_minus_beta1: cfg.one_minus_beta1(),
            one_minus_beta2: cfg.one_minus_beta2(),
            epsilon: cfg.epsilon,
        })
    }
}

/// The per-step uniform of one optimizer, shared by all its [`adam_update`] dispatches.
pub struct AdamStep {
    pub config: AdamConfig,
    uniform: GpuBuffer,
}

impl AdamStep {
    /// A step uniform holding step t = 1.
    pub fn new(ctx: &GpuContext, config: AdamConfig) -> Result<Self> {
        let uniform = ctx.uniform("adam step params", &AdamParams::for_step(&config, 1)?);
        Ok(AdamStep { config, uniform })
    }

    /// Makes the next submitted dispatches run step t (1-based).
    pub fn set_step(&self, ctx: &GpuContext, t: u32) -> Result<()> {
        let params = AdamParams::for_step(&self.config, t)?;
        ctx.write(&self.uniform, std::slice::from_ref(&params));
        Ok(())
    }

    pub fn uniform(&self) -> &GpuBuffer {
        &self.uniform
    }
}

/// One Adam step on `len` elements of p, m, v (in place) with gradient g, at whatever
/// step `step` holds when the dispatch runs.
pub fn adam_update(
    ctx: &GpuContext,
    step: &AdamStep,
    p: &GpuBuffer,
    g: &GpuBuffer,
    m: &GpuBuffer,
    v: &GpuBuffer,
    len: usize,
) -> Result<Dispatch> {
    launch(ctx, step, [p, g, m, v], None, len)
}

/// [`adam_update`], then one step of the moving average `average` of the updated
/// parameters (`average = d·average + (1 - d)·p`, as [`crate::kernels::ema::ema_update`]
/// computes it, at whatever step `ema` holds), in the same dispatch.
#[allow(clippy::too_many_arguments)]
pub fn adam_ema_update(
    ctx: &GpuContext,
    step: &AdamStep,
    p: &GpuBuffer,
    g: &GpuBuffer,
    m: &GpuBuffer,
    v: &GpuBuffer,
    (ema, average): (&EmaStep, &GpuBuffer),
    len: usize,
) -> Result<Dispatch> {
    launch(ctx, step, [p, g, m, v], Some((ema, average)), len)
}

fn launch(
    ctx: &GpuContext,
    step: &AdamStep,
    [p, g, m, v]: [&GpuBuffer; 4],
    average: Option<(&EmaStep, &GpuBuffer)>,
    len: usize,
) -> Result<Dispatch> {
    let op = if average.is_some() {
        "adam_ema_update"
    } else {
        "adam_update"
    };
    let shape_error = |message: String| Error::Shape { op, message };
    let len32 = u32::try_from(len)
        .map_err(|_| shape_error(format!("{len} elements do not fit a u32 index")))?;
    let mut buffers = vec![("g", g), ("p", p), ("m", m), ("v", v)];
    buffers.extend(average.map(|(_, a)| ("average", a)));
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
    let invocations = if vectorized { len32 / 4 } else { len32 };
    // A small group (a discriminator's 44,161 weights) in narrower workgroups, so that it
    // still reaches most of a GPU's cores.
    let wg = spread_workgroup(ctx.kernel_settings(), invocations as usize, WORKGROUP, 64);
    let entry = match (vectorized, average.is_some()) {
        (true, false) => "adam4",
        (false, false) => "adam",
        (true, true) => "adam4_ema",
        (false, true) => "adam_ema",
    };
    let kernel = ctx.kernel(&KernelSpec {
        shader: Shader::Adam,
        entry,
        bindings: if average.is_some() {
            EMA_BINDINGS
        } else {
            BINDINGS
        },
        constants: &[("WG", WORKGROUP as f64)],
    })?;
    let tensor = ctx.uniform(
        "adam tensor params",
        &AdamTensor {
            len: len32,
            _pad: [0; 3],
        },
    );
    let mut bound = vec![&step.uniform, &tensor, g, p, m, v];
    if let Some((ema, average)) = average {
        bound.extend([ema.uniform(), average]);
    }
    let bind_group = ctx.bind(&kernel, &bound);
    let (x, y) = grid_1d(ctx, invocations.div_ceil(wg));
    // p, m, v read and written, g read, about 12 operations an element; the average read
    // and written, 3 more.
    let (flops, bytes) = match average {
        None => (12.0, 28.0),
        Some(_) => (15.0, 36.0),
    };
    Ok(Dispatch {
        kernel,
        bind_group,
        groups: [x, y, 1],
        footprint: Footprint::linear(wg, 0, flops * len as f64, bytes * len as f64),
    })
}
