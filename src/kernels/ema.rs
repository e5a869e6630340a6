//! Launcher for `shaders/ema.wgsl`: one step of the moving average of a network's weights,
//! the twin of `cpu::ema`.
//!
//! As for Adam ([`super::adam`]), an [`EmaStep`] owns the one uniform of per-step scalars
//! (d and 1 - d of step t) shared by every tensor of the average; [`ema_update`] records
//! one dispatch over a flat range against it (one tensor, or every tensor of a packed
//! group), and each training step calls [`EmaStep::set_step`] once.

use bytemuck::{Pod, Zeroable};

use crate::cpu::ema_weights;
use crate::error::{Error, Result};
use crate::gpu::pipeline::grid_1d;
use crate::gpu::{Binding, Dispatch, Footprint, GpuBuffer, GpuContext, KernelSpec, Shader};
use Binding::{Read, ReadWrite, Uniform};

/// Twin of `Step` in `shaders/ema.wgsl`.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Pod, Zeroable)]
pub struct EmaStepParams {
    pub d: f32,
    pub rest: f32,
    pub _pad: [u32; 2],
}

/// Twin of `Tensor` in `shaders/ema.wgsl`.
#[repr(C)]
#[derive(Debug, Clone, Copy, Pod, Zeroable)]
pub struct EmaTensor {
    pub len: u32,
    pub _pad: [u32; 3],
}

pub const PARAMS_TWINS: &[super::ParamsTwin] = &[
    (Shader::Ema, "Step", std::mem::size_of::<EmaStepParams>()),
    (Shader::Ema, "Tensor", std::mem::size_of::<EmaTensor>()),
];

const WORKGROUP: u32 = 256;

impl EmaStepParams {
    /// The uniform of 0-based step t, from the CPU twin's own rounding.
    pub fn for_step(decay: f32, t: u64) -> Self {
        let (d, rest) = ema_weights(decay, t);
        EmaStepParams {
            d,
            rest,
            _pad: [0; 2],
        }
    }
}

/// The per-step uniform of one moving average.
pub struct EmaStep {
    pub decay: f32,
    uniform: GpuBuffer,
}

impl EmaStep {
    /// A step uniform holding step 0.
    pub fn new(ctx: &GpuContext, decay: f32) -> Self {
        let uniform = ctx.uniform("ema step params", &EmaStepParams::for_step(decay, 0));
        EmaStep { decay, uniform }
    }

    /// Makes the next submitted dispatches run step t (0-based).
    pub fn set_step(&self, ctx: &GpuContext, t: u64) {
        let params = EmaStepParams::for_step(self.decay, t);
        ctx.write(&self.uniform, std::slice::from_ref(&params));
    }

    pub fn uniform(&self) -> &GpuBuffer {
        &self.uniform
    }
}

/// average = d·average + (1 - d)·source over `len` elements, at the step `step` holds.
pub fn ema_update(
    ctx: &GpuContext,
    step: &EmaStep,
    source: &GpuBuffer,
    average: &GpuBuffer,
    len: usize,
) -> Result<Dispatch> {
    let shape_error = |message: String| Error::Shape { op: "ema", message };
    let len32 =
        u32::try_from(len).map_err(|_| shape_error(format!("{len} elements overflow u32")))?;
    for (name, buffer) in [("source", source), ("average", average)] {
        if buffer.size() < len as u64 * 4 {
            return Err(shape_error(format!(
                "{name} holds {} bytes, {len} f32 need {}",
                buffer.size(),
                len * 4
            )));
        }
    }
    if source == average {
        return Err(shape_error("source and average are the same buffer".into()));
    }
    let kernel = ctx.kernel(&KernelSpec {
        shader: Shader::Ema,
        entry: "ema",
        bindings: &[Uniform, Uniform, Read, ReadWrite],
        constants: &[("WG", WORKGROUP as f64)],
    })?;
    let tensor = ctx.uniform(
        "ema tensor",
        &EmaTensor {
            len: len32,
            _pad: [0; 3],
        },
    );
    let bind_group = ctx.bind(&kernel, &[&step.uniform, &tensor, source, average]);
    let (x, y) = grid_1d(ctx, len32.div_ceil(WORKGROUP));
    Ok(Dispatch {
        kernel,
        bind_group,
        groups: [x, y, 1],
        // avg += (1 - decay)·(w - avg): read both, write the average.
        footprint: Footprint::linear(WORKGROUP, 0, 3.0 * len as f64, 12.0 * len as f64),
    })
}
