//! The runtime: which executor runs a graph, and the one GPU device of a process.
//!
//! Everything above the graph (training, evaluation, the classifier, sampling, the bench,
//! the web export) asks a [`Runtime`] for executors instead of creating devices. The
//! runtime decides once between the wgpu adapter and the CPU executor, creates the
//! `GpuContext` at most once, and hands every executor the same one.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};

use serde::Serialize;

use crate::cpu::AdamConfig;
use crate::error::{Error, Result};
use crate::gpu::{AdapterRequest, GpuContext, KernelChoice};
use crate::graph::cpu_exec::CpuExecutor;
use crate::graph::gpu_exec::GpuExecutor;
use crate::graph::{Dataset, Executor, Graph, RandomStreams};

/// Which executor runs the graphs, as chosen with `--device`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum DeviceChoice {
    /// The wgpu adapter when it is a real GPU, else the CPU executor
    #[default]
    Auto,
    Gpu,
    Cpu,
}

/// What the runtime settled on.
enum Resolved {
    Cpu { why: String },
    Gpu(Arc<GpuContext>),
}

/// GPU devices created in this process, for the test that there is only one.
static DEVICES_CREATED: AtomicUsize = AtomicUsize::new(0);

/// Checks a GPU context before any executor runs on it (the first-use selftest); set by
/// the layers above, which the runtime cannot name.
pub type Guard = fn(&Arc<GpuContext>) -> Result<()>;

pub struct Runtime {
    device: DeviceChoice,
    adapter: AdapterRequest,
    /// Plan kernels for a browser (see [`GpuContext::targeting_browser`]).
    for_browser: bool,
    /// Kernel settings forced over `GAN_GPU_KERNELS` and the adapter's type.
    kernels: Option<KernelChoice>,
    guard: Option<Guard>,
    resolved: OnceLock<Resolved>,
}

impl Runtime {
    pub fn new(device: DeviceChoice, adapter: AdapterRequest) -> Self {
        Runtime {
            device,
            adapter,
            for_browser: false,
            kernels: None,
            guard: None,
            resolved: OnceLock::new(),
        }
    }

    /// Forces the launchers' kernel settings (`--kernels`).
    pub fn with_kernels(mut self, kernels: Option<KernelChoice>) -> Self {
        self.kernels = kernels;
        self
    }

    /// Runs `guard` on the GPU context once, before the first executor uses it; an error
    /// refuses the GPU (it is not a fallback to the CPU).
    pub fn guarded(mut self, guard: Guard) -> Self {
        self.guard = Some(guard);
        self
    }

    /// A runtime that only ever uses the CPU executor and never looks for an adapter.
    pub fn cpu() -> Self {
        Self::new(DeviceChoice::Cpu, AdapterRequest::default())
    }

    /// A GPU runtime whose launchers plan for a browser's WebGPU (the web export).
    pub fn for_browser(adapter: AdapterRequest) -> Self {
        Runtime {
            for_browser: true,
            ..Self::new(DeviceChoice::Gpu, adapter)
        }
    }

    /// GPU devices created by runtimes in this process so far.
    pub fn devices_created() -> usize {
        DEVICES_CREATED.load(Ordering::SeqCst)
    }

    fn create_context(&self) -> Result<Arc<GpuContext>> {
        let mut ctx = GpuContext::new(&self.adapter)?;
        DEVICES_CREATED.fetch_add(1, Ordering::SeqCst);
        if let Some(kernels) = self.kernels {
            ctx = ctx.with_kernels(kernels);
        }
        Ok(Arc::new(if self.for_browser {
            ctx.targeting_browser()
        } else {
            ctx.load_tuning();
            ctx
        }))
    }

    fn resolved(&self) -> Result<&Resolved> {
        if let Some(r) = self.resolved.get() {
            return Ok(r);
        }
        let resolved = match self.device {
            DeviceChoice::Cpu => Resolved::Cpu {
                why: "--device cpu".into(),
            },
            DeviceChoice::Gpu => Resolved::Gpu(self.create_context()?),
            DeviceChoice::Auto => match self.create_context() {
                Err(e) => Resolved::Cpu {
                    why: format!("no usable GPU adapter: {e}"),
                },
                Ok(ctx) if ctx.is_software() => Resolved::Cpu {
                    why: format!(
                        "the only adapter, {}, is a software rasterizer, far slower than the \
                         CPU executor; --device gpu forces it",
                        ctx.info.name
                    ),
                },
                Ok(ctx) => Resolved::Gpu(ctx),
            },
        };
        if let (Resolved::Gpu(ctx), Some(guard)) = (&resolved, self.guard) {
            guard(ctx)?;
        }
        Ok(self.resolved.get_or_init(|| resolved))
    }

    /// The GPU context executors run on, or `None` when the runtime chose the CPU.
    pub fn gpu(&self) -> Result<Option<Arc<GpuContext>>> {
        Ok(match self.resolved()? {
            Resolved::Gpu(ctx) => Some(Arc::clone(ctx)),
            Resolved::Cpu { .. } => None,
        })
    }

    /// The GPU context, or an error saying that this runtime has none.
    pub fn require_gpu(&self, what: &str) -> Result<Arc<GpuContext>> {
        self.gpu()?.ok_or_else(|| {
            Error::InvalidArgument(format!(
                "{what} needs a wgpu adapter; this runtime uses the CPU"
            ))
        })
    }

    /// One line naming the executor and why it was chosen.
    pub fn describe(&self) -> Result<String> {
        Ok(match self.resolved()? {
            Resolved::Cpu { why } => format!("executor: cpu ({why})"),
            Resolved::Gpu(ctx) => format!("executor: gpu on {}", ctx.describe()),
        })
    }

    /// An executor for `graph`; `optimizers[g]` configures optimizer group `g`.
    pub fn executor(
        &self,
        graph: &Graph,
        optimizers: Vec<AdamConfig>,
        streams: RandomStreams,
        dataset: Option<Arc<Dataset>>,
    ) -> Result<Box<dyn Executor>> {
        Ok(match self.resolved()? {
            Resolved::Cpu { .. } => Box::new(CpuExecutor::new(graph, optimizers, dataset, streams)),
            Resolved::Gpu(ctx) => Box::new(GpuExecutor::new(
                Arc::clone(ctx),
                graph,
                optimizers,
                dataset,
                streams,
            )?),
        })
    }

    /// A wgpu executor on this runtime's device, for callers that need its buffers and
    /// recorded dispatches (the web export).
    pub fn gpu_executor(
        &self,
        graph: &Graph,
        optimizers: Vec<AdamConfig>,
        streams: RandomStreams,
        dataset: Option<Arc<Dataset>>,
    ) -> Result<GpuExecutor> {
        let ctx = self.require_gpu("a wgpu executor")?;
        GpuExecutor::new(ctx, graph, optimizers, dataset, streams)
    }
}
