//! The shader home and the pipeline cache.
//!
//! Every `shaders/*.wgsl` file is compiled into the binary with `include_str!`, valid
//! WGSL as written; tunables are `override` constants set at pipeline creation. A
//! pipeline is built once per (shader, entry point, constants) and cached, with an
//! explicit bind-group layout that binds inputs read-only and outputs read-write.

use std::cmp::Ordering;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use crate::error::{Error, Result};
use crate::gpu::{GpuBuffer, GpuContext};

/// One WGSL kernel family (one file in `shaders/`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Shader {
    Gather,
    Gemm,
    Conv,
    Elementwise,
    Bce,
    Adam,
    Noise,
    SoftmaxCe,
    Embedding,
    Combine,
    BatchNorm,
    Ema,
    HeadGrad,
}

impl Shader {
    pub const ALL: &'static [Shader] = &[
        Shader::Gather,
        Shader::Gemm,
        Shader::Conv,
        Shader::Elementwise,
        Shader::Bce,
        Shader::Adam,
        Shader::Noise,
        Shader::SoftmaxCe,
        Shader::Embedding,
        Shader::Combine,
        Shader::BatchNorm,
        Shader::Ema,
        Shader::HeadGrad,
    ];

    pub fn file_name(self) -> &'static str {
        match self {
            Shader::Gather => "gather.wgsl",
            Shader::Gemm => "gemm.wgsl",
            Shader::Conv => "conv.wgsl",
            Shader::Elementwise => "elementwise.wgsl",
            Shader::Bce => "bce.wgsl",
            Shader::Adam => "adam.wgsl",
            Shader::Noise => "noise.wgsl",
            Shader::SoftmaxCe => "softmax_ce.wgsl",
            Shader::Embedding => "embedding.wgsl",
            Shader::Combine => "combine.wgsl",
            Shader::BatchNorm => "batchnorm.wgsl",
            Shader::Ema => "ema.wgsl",
            Shader::HeadGrad => "head_grad.wgsl",
        }
    }

    pub fn source(self) -> &'static str {
        match self {
            Shader::Gather => include_str!("../../shaders/gather.wgsl"),
            Shader::Gemm => include_str!("../../shaders/gemm.wgsl"),
            Shader::Conv => include_str!("../../shaders/conv.wgsl"),
            Shader::Elementwise => include_str!("../../shaders/elementwise.wgsl"),
            Shader::Bce => include_str!("../../shaders/bce.wgsl"),
            Shader::Adam => include_str!("../../shaders/adam.wgsl"),
            Shader::Noise => include_str!("../../shaders/noise.wgsl"),
            Shader::SoftmaxCe => include_str!("../../shaders/softmax_ce.wgsl"),
            Shader::Embedding => include_str!("../../shaders/embedding.wgsl"),
            Shader::Combine => include_str!("../../shaders/combine.wgsl"),
            Shader::BatchNorm => include_str!("../../shaders/batchnorm.wgsl"),
            Shader::Ema => include_str!("../../shaders/ema.wgsl"),
            Shader::HeadGrad => include_str!("../../shaders/head_grad.wgsl"),
        }
    }
}

/// How a kernel sees one binding, in binding order within group 0.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Binding {
    Uniform,
    Read,
    ReadWrite,
}

/// Everything that identifies one compiled pipeline.
#[derive(Debug, Clone)]
pub struct KernelSpec<'a> {
    pub shader: Shader,
    pub entry: &'static str,
    pub bindings: &'static [Binding],
    /// Values for the shader's `override` constants, by name.
    pub constants: &'a [(&'static str, f64)],
}

/// A compiled compute pipeline and the layout its bind groups must follow.
pub struct Kernel {
    pub label: String,
    pub pipeline: wgpu::ComputePipeline,
    pub layout: wgpu::BindGroupLayout,
    /// What it was built from, kept so a recorded plan can be rebuilt elsewhere (the
    /// browser export).
    pub shader: Shader,
    pub entry: &'static str,
    pub bindings: &'static [Binding],
    pub constants: Vec<(&'static str, f64)>,
}

/// A bind group with the buffers it binds, in binding order.
pub struct BoundBuffers {
    pub group: wgpu::BindGroup,
    pub buffers: Vec<GpuBuffer>,
}

type CacheKey = (Shader, &'static str, Vec<(&'static str, u64)>);

#[derive(Default)]
pub struct PipelineCache {
    modules: Mutex<HashMap<Shader, wgpu::ShaderModule>>,
    kernels: Mutex<HashMap<CacheKey, Arc<Kernel>>>,
}

impl PipelineCache {
    /// Every pipeline compiled so far, ordered by label, then constants.
    pub fn compiled(&self) -> Vec<Arc<Kernel>> {
        let mut kernels: Vec<Arc<Kernel>> =
            self.kernels.lock().unwrap().values().cloned().collect();
        kernels.sort_by(|a, b| {
            a.label.cmp(&b.label).then_with(|| {
                a.constants
                    .partial_cmp(&b.constants)
                    .unwrap_or(Ordering::Equal)
            })
        });
        kernels
    }
}

impl GpuContext {
    /// The pipeline for `spec`, compiled on first use.
    pub fn kernel(&self, spec: &KernelSpec<'_>) -> Result<Arc<Kernel>> {
        let key: CacheKey = (
            spec.shader,
            spec.entry,
            spec.constants
                .iter()
                .map(|&(name, v)| (name, v.to_bits()))
                .collect(),
        );
        if let Some(kernel) = self.pipelines.kernels.lock().unwrap().get(&key) {
            return Ok(Arc::clone(kernel));
        }
        let kernel = Arc::new(self.build_kernel(spec)?);
        self.pipelines
            .kernels
            .lock()
            .unwrap()
            .insert(key, Arc::clone(&kernel));
        Ok(kernel)
    }

    fn build_kernel(&self, spec: &KernelSpec<'_>) -> Result<Kernel> {
        let label = format!("{}::{}", spec.shader.file_name(), spec.entry);
        let scope = self.device.push_error_scope(wgpu::ErrorFilter::Validation);
        let module = self
            .pipelines
            .modules
            .lock()
            .unwrap()
            .entry(spec.shader)
            .or_insert_with(|| {
                self.device
                    .create_shader_module(wgpu::ShaderModuleDescriptor {
                        label: Some(spec.shader.file_name()),
                        source: wgpu::ShaderSource::Wgsl(spec.shader.source().into()),
                    })
            })
            .clone();
        let entries: Vec<wgpu::BindGroupLayoutEntry> = spec
            .bindings
            .iter()
            .enumerate()
            .map(|(i, binding)| wgpu::BindGroupLayoutEntry {
                binding: i as u32,
                visibility: wgpu::ShaderStages::COMPUTE,
                ty: match binding {
                    Binding::Uniform => wgpu::BindingType::Buffer {
                        ty: wgpu::BufferBindingType::Uniform,
                        has_dynamic_offset: false,
                        min_binding_size: None,
                    },
                    Binding::Read | Binding::ReadWrite => wgpu::BindingType::Buffer {
                        ty: wgpu::BufferBindingType::Storage {
                            read_only: *binding == Binding::Read,
                        },
                        has_dynamic_offset: false,
                        min_binding_size: None,
                    },
                },
                count: None,
            })
            .collect();
        let layout = self
            .device
            .create_bind_group_layout(&wgpu::BindGroupLayoutDescriptor {
                label: Some(&label),
                entries: &entries,
            });
        let pipeline_layout = self
            .device
            .create_pipeline_layout(&wgpu::PipelineLayoutDescriptor {
                label: Some(&label),
                bind_group_layouts: &[Some(&layout)],
                immediate_size: 0,
            });
        let pipeline = self
            .device
            .create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
                label: Some(&label),
                layout: Some(&pipeline_layout),
                module: &module,
                entry_point: Some(spec.entry),
                compilation_options: wgpu::PipelineCompilationOptions {
                    constants: spec.constants,
                    zero_initialize_workgroup_memory: true,
                },
                cache: None,
            });
        if let Some(e) = pollster::block_on(scope.pop()) {
            return Err(Error::Gpu {
                context: format!("building pipeline {label}"),
                message: e.to_string(),
            });
        }
        Ok(Kernel {
            label,
            pipeline,
            layout,
            shader: spec.shader,
            entry: spec.entry,
            bindings: spec.bindings,
            constants: spec.constants.to_vec(),
        })
    }

    /// A bind group for `kernel` binding `buffers` in order.
    pub fn bind(&self, kernel: &Kernel, buffers: &[&GpuBuffer]) -> BoundBuffers {
        let entries: Vec<wgpu::BindGroupEntry> = buffers
            .iter()
            .enumerate()
            .map(|(i, buffer)| wgpu::BindGroupEntry {
                binding: i as u32,
                resource: buffer.binding(),
            })
            .collect();
        let group = self.device.create_bind_group(&wgpu::BindGroupDescriptor {
            label: Some(&kernel.label),
            layout: &kernel.layout,
            entries: &entries,
        });
        BoundBuffers {
            group,
            buffers: buffers.iter().map(|&b| b.clone()).collect(),
        }
    }
}

/// Splits `groups` workgroups over x and y so no dimension exceeds the device limit;
/// shaders rebuild the linear index as `gid.x + gid.y * num_workgroups.x * size`.
pub fn grid_1d(ctx: &GpuContext, groups: u32) -> (u32, u32) {
    let max = ctx.limits.max_compute_workgroups_per_dimension.max(1);
    if groups <= max {
        (groups, 1)
    } else {
        (max, groups.div_ceil(max))
    }
}
