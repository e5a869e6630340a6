//! Timing recorded dispatches for benchmarks: GPU timestamps where the adapter has them
//! (exact device time), else the wall clock around a submission and a full wait.

use std::time::Instant;

use crate::error::{Error, Result};
use crate::gpu::{Dispatch, GpuContext};

/// How a time was measured, for the benchmark table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Clock {
    GpuTimestamps,
    WallClock,
}

impl GpuContext {
    pub fn clock(&self) -> Clock {
        if self.has_timestamps() {
            Clock::GpuTimestamps
        } else {
            Clock::WallClock
        }
    }

    /// Median milliseconds of one replay of `dispatches` (in one compute pass), over
    /// `samples` measurements of `reps` back-to-back replays each, after one warm-up
    /// sample (which also compiles the shaders).
    pub fn time_dispatches(
        &self,
        dispatches: &[&Dispatch],
        reps: u32,
        samples: u32,
    ) -> Result<f64> {
        let reps = reps.max(1);
        let mut times = Vec::new();
        for sample in 0..=samples.max(1) {
            let ms = if self.has_timestamps() {
                self.timestamp_sample(dispatches, reps)?
            } else {
                self.wall_sample(dispatches, reps)?
            };
            if sample > 0 {
                times.push(ms / f64::from(reps));
            }
        }
        Ok(median(&mut times))
    }

    fn record(
        &self,
        dispatches: &[&Dispatch],
        reps: u32,
        queries: Option<&wgpu::QuerySet>,
    ) -> wgpu::CommandEncoder {
        let mut encoder = self
            .device
            .create_command_encoder(&wgpu::CommandEncoderDescriptor {
                label: Some("benchmark"),
            });
        {
            let mut pass = encoder.begin_compute_pass(&wgpu::ComputePassDescriptor {
                label: Some("benchmark"),
                timestamp_writes: queries.map(|query_set| wgpu::ComputePassTimestampWrites {
                    query_set,
                    beginning_of_pass_write_index: Some(0),
                    end_of_pass_write_index: Some(1),
                }),
            });
            for _ in 0..reps {
                for d in dispatches {
                    d.record(&mut pass);
                }
            }
        }
        encoder
    }

    fn wall_sample(&self, dispatches: &[&Dispatch], reps: u32) -> Result<f64> {
        let encoder = self.record(dispatches, reps, None);
        let start = Instant::now();
        self.submit(encoder, "benchmark")?;
        self.wait("benchmark")?;
        Ok(start.elapsed().as_secs_f64() * 1e3)
    }

    fn timestamp_sample(&self, dispatches: &[&Dispatch], reps: u32) -> Result<f64> {
        let queries = self.device.create_query_set(&wgpu::QuerySetDescriptor {
            label: Some("benchmark timestamps"),
            ty: wgpu::QueryType::Timestamp,
            count: 2,
        });
        let resolved = self.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("benchmark timestamps"),
            size: 16,
            usage: wgpu::BufferUsages::QUERY_RESOLVE | wgpu::BufferUsages::COPY_SRC,
            mapped_at_creation: false,
        });
        let mut encoder = self.record(dispatches, reps, Some(&queries));
        encoder.resolve_query_set(&queries, 0..2, &resolved, 0);
        self.submit(encoder, "benchmark")?;
        let ticks: Vec<u64> = self.read(&crate::gpu::GpuBuffer::whole(resolved), 2)?;
        if ticks[1] < ticks[0] {
            return Err(Error::Gpu {
                context: "reading benchmark timestamps".into(),
                message: format!("end {} before start {}", ticks[1], ticks[0]),
            });
        }
        let ns = (ticks[1] - ticks[0]) as f64 * f64::from(self.queue.get_timestamp_period());
        Ok(ns / 1e6)
    }
}

/// The median of `values` (0 for none).
pub fn median(values: &mut [f64]) -> f64 {
    if values.is_empty() {
        return 0.0;
    }
    values.sort_by(f64::total_cmp);
    let mid = values.len() / 2;
    if values.len() % 2 == 1 {
        values[mid]
    } else {
        (values[mid - 1] + values[mid]) / 2.0
    }
}
