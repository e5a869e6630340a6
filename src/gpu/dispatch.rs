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
}

impl Dispatch {
    pub fn record(&self, pass: &mut wgpu::ComputePass<'_>) {
        if self.groups.contains(&0) {
            return;
        }
        pass.set_pipeline(&self.kernel.pipeline);
        pass.set_bind_group(0, &self.bind_group.group, &[]);
        pass.dispatch_workgroups(self.groups[0], self.groups[1], self.groups[2]);
    }
}

impl GpuContext {
    /// Records `dispatches` in order into one compute pass and submits it. Storage
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
