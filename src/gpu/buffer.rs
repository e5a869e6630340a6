//! Buffers: creation with labels, upload, and readback.
//!
//! wgpu cannot bind a zero-sized buffer, so every buffer holds at least one word; the
//! launchers skip dispatches whose output is empty.

use bytemuck::Pod;
use wgpu::util::DeviceExt;

use crate::error::{Error, Result};
use crate::gpu::GpuContext;

const STORAGE: wgpu::BufferUsages = wgpu::BufferUsages::STORAGE
    .union(wgpu::BufferUsages::COPY_SRC)
    .union(wgpu::BufferUsages::COPY_DST);

/// Rounds a byte size up to a bindable, copyable size (non-zero, multiple of 4).
fn padded(bytes: u64) -> u64 {
    bytes.max(4).next_multiple_of(4)
}

impl GpuContext {
    /// A storage buffer holding `data`.
    pub fn upload<T: Pod>(&self, label: &str, data: &[T]) -> wgpu::Buffer {
        let bytes: &[u8] = bytemuck::cast_slice(data);
        if bytes.len() as u64 == padded(bytes.len() as u64) {
            self.device
                .create_buffer_init(&wgpu::util::BufferInitDescriptor {
                    label: Some(label),
                    contents: bytes,
                    usage: STORAGE,
                })
        } else {
            let mut padded_bytes = bytes.to_vec();
            padded_bytes.resize(padded(bytes.len() as u64) as usize, 0);
            self.device
                .create_buffer_init(&wgpu::util::BufferInitDescriptor {
                    label: Some(label),
                    contents: &padded_bytes,
                    usage: STORAGE,
                })
        }
    }

    /// A zero-filled storage buffer of `bytes` bytes.
    pub fn storage(&self, label: &str, bytes: u64) -> wgpu::Buffer {
        self.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some(label),
            size: padded(bytes),
            usage: STORAGE,
            mapped_at_creation: false,
        })
    }

    /// A storage buffer of `len` f32 filled with NaN, so that any element a kernel
    /// fails to write shows up in a comparison.
    pub fn nan_filled(&self, label: &str, len: usize) -> wgpu::Buffer {
        self.upload(label, &vec![f32::NAN; len])
    }

    /// A uniform buffer holding one `Params` struct (copyable, so a recorded plan can be
    /// read back and exported).
    pub fn uniform<T: Pod>(&self, label: &str, value: &T) -> wgpu::Buffer {
        self.device
            .create_buffer_init(&wgpu::util::BufferInitDescriptor {
                label: Some(label),
                contents: bytemuck::bytes_of(value),
                usage: wgpu::BufferUsages::UNIFORM
                    | wgpu::BufferUsages::COPY_DST
                    | wgpu::BufferUsages::COPY_SRC,
            })
    }

    /// Copies the first `len` elements of `buffer` back to the host, waiting for all
    /// submitted work first.
    pub fn read<T: Pod>(&self, buffer: &wgpu::Buffer, len: usize) -> Result<Vec<T>> {
        let bytes = (len * std::mem::size_of::<T>()) as u64;
        if bytes == 0 {
            return Ok(Vec::new());
        }
        let staging = self.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("readback staging"),
            size: padded(bytes),
            usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        let mut encoder = self
            .device
            .create_command_encoder(&wgpu::CommandEncoderDescriptor {
                label: Some("readback"),
            });
        encoder.copy_buffer_to_buffer(buffer, 0, &staging, 0, padded(bytes));
        self.submit(encoder, "copying a buffer for readback")?;
        let slice = staging.slice(..);
        let (tx, rx) = std::sync::mpsc::channel();
        slice.map_async(wgpu::MapMode::Read, move |r| {
            let _ = tx.send(r);
        });
        self.wait("reading a buffer back")?;
        let map_error = |message: String| Error::Gpu {
            context: "mapping a readback buffer".into(),
            message,
        };
        rx.recv()
            .map_err(|e| map_error(e.to_string()))?
            .map_err(|e| map_error(e.to_string()))?;
        let view = slice
            .get_mapped_range()
            .map_err(|e| map_error(e.to_string()))?;
        let out = bytemuck::cast_slice::<u8, T>(&view[..bytes as usize]).to_vec();
        drop(view);
        staging.unmap();
        Ok(out)
    }

    /// Writes `data` into the start of `buffer`.
    pub fn write<T: Pod>(&self, buffer: &wgpu::Buffer, data: &[T]) {
        let bytes: &[u8] = bytemuck::cast_slice(data);
        if !bytes.is_empty() {
            self.queue.write_buffer(buffer, 0, bytes);
        }
    }
}
