//! Buffers: creation with labels, upload, and readback.
//!
//! A [`GpuBuffer`] is a range of a wgpu buffer: the whole of it, or one tensor of a
//! packed group ([`GpuContext::packed`]), so that one dispatch can update every tensor of
//! the group while each kernel still binds only its own tensor.
//!
//! wgpu cannot bind a zero-sized buffer, so every buffer holds at least one word; the
//! launchers skip dispatches whose output is empty.

use std::ops::Range;

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

/// A bindable range of a wgpu buffer. Two views are equal when they are the same range of
/// the same buffer; views of one packed buffer never overlap.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct GpuBuffer {
    buffer: wgpu::Buffer,
    offset: u64,
    size: u64,
}

impl GpuBuffer {
    pub(crate) fn whole(buffer: wgpu::Buffer) -> Self {
        let size = buffer.size();
        GpuBuffer {
            buffer,
            offset: 0,
            size,
        }
    }

    /// Bytes in the view.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Where the view starts in its wgpu buffer, in bytes.
    pub fn offset(&self) -> u64 {
        self.offset
    }

    /// The wgpu buffer the view lies in.
    pub fn raw(&self) -> &wgpu::Buffer {
        &self.buffer
    }

    /// The bytes `[offset, offset + size)` of this view, as a view of its own; `offset`
    /// must keep the device's storage-binding alignment.
    pub fn range(&self, offset: u64, size: u64) -> GpuBuffer {
        assert!(
            offset + size <= self.size,
            "a view of {size} bytes at {offset} overruns its {} bytes",
            self.size
        );
        GpuBuffer {
            buffer: self.buffer.clone(),
            offset: self.offset + offset,
            size,
        }
    }

    pub fn binding(&self) -> wgpu::BindingResource<'_> {
        wgpu::BindingResource::Buffer(wgpu::BufferBinding {
            buffer: &self.buffer,
            offset: self.offset,
            size: std::num::NonZeroU64::new(self.size),
        })
    }
}

/// Where each tensor of a packed group lies, in f32 elements from the start of the pack.
#[derive(Debug, Clone, PartialEq)]
pub struct PackLayout {
    pub offsets: Vec<usize>,
    pub lens: Vec<usize>,
    /// f32 elements of the whole pack.
    pub len: usize,
}

impl PackLayout {
    /// The elements from tensor `first`'s start to tensor `last`'s end (the padding
    /// between them included), rounded up to whole vec4s, which the padding always holds.
    pub fn span(&self, first: usize, last: usize) -> Range<usize> {
        let start = self.offsets[first];
        start..start + (self.offsets[last] + self.lens[last] - start).next_multiple_of(4)
    }

    /// Tensors of `lens` elements one after another, each starting at a multiple of
    /// `align_bytes` (the device's storage-binding offset alignment).
    pub fn new(lens: &[usize], align_bytes: u64) -> Self {
        let align = (align_bytes.max(16) / 4) as usize;
        let mut offsets = Vec::with_capacity(lens.len());
        let mut at = 0;
        for &len in lens {
            offsets.push(at);
            at = (at + len.max(1)).next_multiple_of(align);
        }
        PackLayout {
            offsets,
            lens: lens.to_vec(),
            len: at,
        }
    }
}

impl GpuContext {
    /// A storage buffer holding `data`.
    pub fn upload<T: Pod>(&self, label: &str, data: &[T]) -> GpuBuffer {
        let bytes: &[u8] = bytemuck::cast_slice(data);
        GpuBuffer::whole(if bytes.len() as u64 == padded(bytes.len() as u64) {
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
        })
    }

    /// A zero-filled storage buffer of `bytes` bytes.
    pub fn storage(&self, label: &str, bytes: u64) -> GpuBuffer {
        GpuBuffer::whole(self.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some(label),
            size: padded(bytes),
            usage: STORAGE,
            mapped_at_creation: false,
        }))
    }

    /// One zero-filled storage buffer laid out as `layout`, and a view of each tensor.
    pub fn packed(&self, label: &str, layout: &PackLayout) -> (GpuBuffer, Vec<GpuBuffer>) {
        let pack = self.storage(label, layout.len as u64 * 4);
        let views = layout
            .offsets
            .iter()
            .zip(&layout.lens)
            .map(|(&offset, &len)| pack.range(offset as u64 * 4, padded(len as u64 * 4)))
            .collect();
        (pack, views)
    }

    /// A storage buffer of `len` f32 filled with NaN, so that any element a kernel
    /// fails to write shows up in a comparison.
    pub fn nan_filled(&self, label: &str, len: usize) -> GpuBuffer {
        self.upload(label, &vec![f32::NAN; len])
    }

    /// A uniform buffer holding one `Params` struct (copyable, so a recorded plan can be
    /// read back and exported).
    pub fn uniform<T: Pod>(&self, label: &str, value: &T) -> GpuBuffer {
        GpuBuffer::whole(
            self.device
                .create_buffer_init(&wgpu::util::BufferInitDescriptor {
                    label: Some(label),
                    contents: bytemuck::bytes_of(value),
                    usage: wgpu::BufferUsages::UNIFORM
                        | wgpu::BufferUsages::COPY_DST
                        | wgpu::BufferUsages::COPY_SRC,
                }),
        )
    }

    /// Copies the first `len` elements of `buffer` back to the host, waiting for all
    /// submitted work first.
    pub fn read<T: Pod>(&self, buffer: &GpuBuffer, len: usize) -> Result<Vec<T>> {
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
        encoder.copy_buffer_to_buffer(&buffer.buffer, buffer.offset, &staging, 0, padded(bytes));
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
    pub fn write<T: Pod>(&self, buffer: &GpuBuffer, data: &[T]) {
        let bytes: &[u8] = bytemuck::cast_slice(data);
        if !bytes.is_empty() {
            self.queue
                .write_buffer(&buffer.buffer, buffer.offset, bytes);
        }
    }
}
