//! A recorded kernel invocation: pipeline, bind group and grid, built once and
//! replayed into any compute pass (the training step records hundreds of them).

use std::sync::Arc;

use crate::error::Result;
use crate::gpu::pipeline::BoundBuffers;
use crate::gpu::{GpuContext, Kernel};

pub struct Dispatch {
    pub kernel: Arc<Kernel>,
    pub bind_group: BoundBuffers,
    /// Workgroup counts; a zero count means there is nothing to compute.
    pub groups: [u32; 3],
    /// What the launcher planned this dispatch to do (read by `gan-gpu plan`).
    pub footprint: Footprint,
}

/// How wide and how long a dispatch is, as its launcher planned it. Each launcher fills
/// it from the same numbers it picks the grid and checks the loop limit with, so it
/// cannot drift from what runs.
#[derive(Debug, Clone, Copy, PartialEq, Default, serde::Serialize)]
pub struct Footprint {
    /// Invocations per workgroup (x, y, z), the shader's `@workgroup_size` as launched.
    pub workgroup_size: [u32; 3],
    /// Trips of the longest loop one invocation runs (0: none). Inner loops over a fixed
    /// register or K tile are part of one trip; an inner loop that scales with the shape
    /// multiplies (a convolution's taps × channel vec4s).
    pub longest_loop: u64,
    /// Floating-point operations, a multiply-add counting 2 (a GEMM's 2·m·n·k).
    pub flops: f64,
    /// Bytes the dispatch must read and write at least (each input read once, each
    /// output written once, read too where it accumulates).
    pub bytes: f64,
}

impl Footprint {
    /// A 1-D launch of `workgroup` invocations per group.
    pub fn linear(workgroup: u32, longest_loop: usize, flops: f64, bytes: f64) -> Self {
        Footprint {
            workgroup_size: [workgroup, 1, 1],
            longest_loop: longest_loop as u64,
            flops,
            bytes,
        }
    }
}

impl Dispatch {
    /// Workgroups launched (0 when there is nothing to compute).
    pub fn workgroups(&self) -> u64 {
        self.groups.iter().map(|&g| g as u64).product()
    }

    pub fn record(&self, pass: &mut wgpu::ComputePass<'_>) {
        if self.groups.contains(&0) {
            return;
        }
        pass.set_pipeline(&self.kernel.pipeline);
        pass.set_bind_group(0, &self.bind_group.group, &[]);
        pass.dispatch_workgroups(self.groups[0], self.groups[1], self.groups[2]);
    }
}

/// Compute passes and queue submissions of one [`GpuContext::run`].
pub const PASSES_PER_RUN: usize = 1;
pub const SUBMISSIONS_PER_RUN: usize = 1;

impl GpuContext {
    /// Records `dispatches` in order into one compute pass and submits it
    /// ([`PASSES_PER_RUN`], [`SUBMISSIONS_PER_RUN`]). Storage
    /// writes are visible to later dispatches of the same pass (WebGPU orders them).
    pub fn run(&self, dispatches: &[&Dispatch], context: &str) -> Result<()> {
        let mut encoder = self
            .device
            .create_command_encoder(&wgpu::CommandEncoderDescriptor {
                label: Some(context),
            });
        {
            let mut pass = encoder.begin_compute_pass(&wgpu::ComputePassDescriptor {
                label: Some(context),
                timestamp_writes: None,
            });
            for d in dispatches {
                d.record(&mut pass);
            }
        }
        self.submit(encoder, context)
    }
}
