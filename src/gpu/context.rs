//! The one wgpu context of a process: instance, adapter, device and queue, built once.
//!
//! wgpu reports validation errors and device loss through callbacks; we collect them in
//! a shared sink and turn them into `Error`s at the next synchronisation point, so a bad
//! dispatch surfaces as an error naming what we were doing, never as a panic or a hang.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::thread::ThreadId;

use crate::error::{Error, Result};
use crate::gpu::pipeline::PipelineCache;
use crate::gpu::settings::{self, KernelChoice, KernelSettings};
use crate::gpu::tuning::{self, Knobs, Tuning, TuningKey, TuningSource};

/// wgpu's power preference, as chosen with `--adapter`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum PowerPreference {
    #[default]
    HighPerformance,
    LowPower,
}

impl PowerPreference {
    pub fn to_wgpu(self) -> wgpu::PowerPreference {
        match self {
            PowerPreference::HighPerformance => wgpu::PowerPreference::HighPerformance,
            PowerPreference::LowPower => wgpu::PowerPreference::LowPower,
        }
    }
}

/// A backend restriction, as chosen with `--backend`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum BackendChoice {
    Vulkan,
    Metal,
    Dx12,
    Gl,
}

impl BackendChoice {
    pub fn to_wgpu(self) -> wgpu::Backends {
        match self {
            BackendChoice::Vulkan => wgpu::Backends::VULKAN,
            BackendChoice::Metal => wgpu::Backends::METAL,
            BackendChoice::Dx12 => wgpu::Backends::DX12,
            BackendChoice::Gl => wgpu::Backends::GL,
        }
    }
}

/// How to pick an adapter. `WGPU_BACKEND` and `WGPU_ADAPTER_NAME` are honoured; an
/// explicit `--backend` wins over `WGPU_BACKEND`.
#[derive(Debug, Clone, Copy, Default)]
pub struct AdapterRequest {
    pub power: PowerPreference,
    pub backend: Option<BackendChoice>,
}

impl AdapterRequest {
    pub fn instance(&self) -> wgpu::Instance {
        let mut desc = wgpu::InstanceDescriptor::new_without_display_handle_from_env();
        if let Some(backend) = self.backend {
            desc.backends = backend.to_wgpu();
        }
        wgpu::Instance::new(desc)
    }

    /// The backends this request may use.
    pub fn backends(&self) -> wgpu::Backends {
        match self.backend {
            Some(b) => b.to_wgpu(),
            None => wgpu::Backends::from_env().unwrap_or(wgpu::Backends::all()),
        }
    }

    /// A human description of the filter, for the "no adapter" error.
    fn filter_description(&self) -> String {
        let mut parts = Vec::new();
        if let Some(b) = self.backend {
            parts.push(format!("backend {b:?}"));
        } else if let Ok(b) = std::env::var("WGPU_BACKEND") {
            parts.push(format!("WGPU_BACKEND={b}"));
        }
        if let Ok(name) = std::env::var("WGPU_ADAPTER_NAME") {
            parts.push(format!("WGPU_ADAPTER_NAME={name}"));
        }
        if parts.is_empty() {
            String::new()
        } else {
            format!(" (filter: {})", parts.join(", "))
        }
    }

    /// Picks the adapter: by `WGPU_ADAPTER_NAME` substring when set, else by wgpu's
    /// own power-preference ranking.
    pub fn pick(&self, instance: &wgpu::Instance) -> Result<wgpu::Adapter> {
        if let Ok(wanted) = std::env::var("WGPU_ADAPTER_NAME") {
            let wanted_lower = wanted.to_lowercase();
            let adapters = pollster::block_on(instance.enumerate_adapters(self.backends()));
            let names: Vec<String> = adapters.iter().map(|a| a.get_info().name).collect();
            return adapters
                .into_iter()
                .find(|a| a.get_info().name.to_lowercase().contains(&wanted_lower))
                .ok_or_else(|| Error::NoAdapter {
                    filter: format!(
                        " named like WGPU_ADAPTER_NAME={wanted:?} (adapters found: {})",
                        if names.is_empty() {
                            "none".to_string()
                        } else {
                            names.join(", ")
                        }
                    ),
                });
        }
        let options = wgpu::RequestAdapterOptions {
            power_preference: self.power.to_wgpu(),
            force_fallback_adapter: false,
            compatible_surface: None,
            apply_limit_buckets: false,
        };
        pollster::block_on(instance.request_adapter(&options)).map_err(|_| Error::NoAdapter {
            filter: self.filter_description(),
        })
    }
}

/// Errors reported by wgpu callbacks, drained at synchronisation points.
#[derive(Default)]
struct ErrorSink {
    errors: Vec<String>,
    lost: Option<(String, String)>,
}

pub struct GpuContext {
    pub instance: wgpu::Instance,
    pub adapter: wgpu::Adapter,
    pub device: wgpu::Device,
    pub queue: wgpu::Queue,
    pub info: wgpu::AdapterInfo,
    /// The limits launchers plan within: the device's own, or WebGPU's defaults when
    /// targeting a browser.
    pub limits: wgpu::Limits,
    pub pipelines: PipelineCache,
    /// What the launchers plan for, and how it was chosen.
    kernels: KernelSettings,
    kernel_choice: KernelChoice,
    /// The adapter's own loop cut-off, whatever the kernel settings.
    loop_limit: Option<usize>,
    sink: Arc<Mutex<ErrorSink>>,
    tuning: Mutex<TuningState>,
}

/// The knobs launchers get, where they came from, and the sites consulted since
/// [`GpuContext::take_sites`] last ran.
struct TuningState {
    /// The table last put in use, as loaded or measured.
    table: Tuning,
    active: BTreeMap<String, Knobs>,
    source: TuningSource,
    /// By thread: plans are recorded on the caller's thread, and two threads (tests)
    /// may record on one context at once.
    consulted: HashMap<ThreadId, BTreeMap<String, Vec<Knobs>>>,
}

impl GpuContext {
    /// The adapter `request` picks, with the kernel settings `GAN_GPU_KERNELS` asks for
    /// (`auto` when unset).
    pub fn new(request: &AdapterRequest) -> Result<Self> {
        let kernel_choice = KernelChoice::from_env()?;
        let instance = request.instance();
        let adapter = request.pick(&instance)?;
        let info = adapter.get_info();
        let required_limits = wanted_limits(&adapter.limits());
        // Timestamp queries make benchmarks exact where the adapter has them.
        let required_features = adapter.features() & wgpu::Features::TIMESTAMP_QUERY;
        let (device, queue) = pollster::block_on(adapter.request_device(&wgpu::DeviceDescriptor {
            label: Some("gan-gpu device"),
            required_features,
            required_limits,
            experimental_features: wgpu::ExperimentalFeatures::disabled(),
            memory_hints: wgpu::MemoryHints::Performance,
            trace: wgpu::Trace::Off,
        }))
        .map_err(|e| Error::RequestDevice {
            adapter: info.name.clone(),
            reason: e.to_string(),
        })?;

        let sink = Arc::new(Mutex::new(ErrorSink::default()));
        let errors = Arc::clone(&sink);
        device.on_uncaptured_error(Arc::new(move |e: wgpu::Error| {
            errors.lock().unwrap().errors.push(e.to_string());
        }));
        let lost = Arc::clone(&sink);
        device.set_device_lost_callback(move |reason, message| {
            lost.lock().unwrap().lost = Some((format!("{reason:?}"), message));
        });

        let limits = device.limits();
        Ok(GpuContext {
            instance,
            adapter,
            device,
            queue,
            limits,
            pipelines: PipelineCache::default(),
            kernels: kernel_choice.resolve(info.device_type),
            kernel_choice,
            loop_limit: settings::loop_limit(info.device_type),
            info,
            sink,
            tuning: Mutex::new(TuningState {
                table: Tuning::default(),
                active: BTreeMap::new(),
                source: TuningSource::Defaults("none loaded".into()),
                consulted: HashMap::new(),
            }),
        })
    }

    /// Makes launchers plan with the kernel settings `choice` gives for this adapter
    /// (the library call behind `GAN_GPU_KERNELS` and `--kernels`). Only plans built
    /// afterwards use them.
    pub fn with_kernels(mut self, choice: KernelChoice) -> Self {
        self.kernel_choice = choice;
        self.kernels = choice.resolve(self.info.device_type);
        self
    }

    /// Makes launchers plan for a browser instead of this adapter: real-GPU kernel
    /// variants, within WebGPU's default limits (what a page gets without asking). Plans
    /// recorded on such a context are for export, and still valid to run here.
    pub fn targeting_browser(mut self) -> Self {
        self.kernel_choice = KernelChoice::Gpu;
        self.kernels = KernelSettings::Gpu;
        self.limits = wgpu::Limits::default();
        self.use_tuning(
            Tuning::default(),
            TuningSource::Defaults("planned for a browser".into()),
        );
        self
    }

    /// What a tuning table of this adapter is valid for.
    pub fn tuning_key(&self) -> TuningKey {
        TuningKey {
            adapter: self.info.name.clone(),
            backend: format!("{:?}", self.info.backend),
            driver: format!("{} {}", self.info.driver, self.info.driver_info),
            kernels: self.kernels.name().into(),
            shaders: tuning::shader_hash(),
        }
    }

    /// Uses the table kept for this adapter in the tuning file, where there is one
    /// (`GAN_GPU_TUNING=off` keeps the defaults). A file that cannot be read leaves the
    /// defaults too, with the reason in [`GpuContext::describe_tuning`]: a cache is never
    /// worth failing a run for.
    pub fn load_tuning(&self) {
        if std::env::var_os("GAN_GPU_TUNING").is_some_and(|v| v == "off") {
            let why = TuningSource::Defaults("GAN_GPU_TUNING=off".into());
            return self.use_tuning(Tuning::default(), why);
        }
        let path = tuning::tuning_path();
        match tuning::load(&path, &self.tuning_key()) {
            Ok(Some(table)) => {
                let sites = table.sites.len();
                let changed = table.changed();
                let source = TuningSource::Cache {
                    path,
                    sites,
                    changed,
                };
                self.use_tuning(table, source);
            }
            Ok(None) => self.use_tuning(
                Tuning::default(),
                TuningSource::Defaults(format!(
                    "{} holds no table for this adapter, driver and build; `gan-gpu tune` \
                     measures one",
                    path.display()
                )),
            ),
            Err(e) => self.use_tuning(Tuning::default(), TuningSource::Defaults(e.to_string())),
        }
    }

    /// Makes launchers use `table`'s knobs in plans built from now on.
    pub fn use_tuning(&self, table: Tuning, source: TuningSource) {
        let mut state = self.tuning.lock().unwrap();
        state.active = table
            .sites
            .iter()
            .map(|(k, s)| (k.clone(), s.knobs))
            .collect();
        state.table = table;
        state.source = source;
    }

    /// Where the knobs in use came from.
    pub fn tuning_source(&self) -> TuningSource {
        self.tuning.lock().unwrap().source.clone()
    }

    /// The table last put in use ([`GpuContext::use_tuning`]), whatever trials changed
    /// since.
    pub fn kept_tuning(&self) -> Tuning {
        self.tuning.lock().unwrap().table.clone()
    }

    /// Sets one site's knobs (the tuner's trials); `Knobs::default()` restores the
    /// launcher's defaults there.
    pub fn set_knobs(&self, site: &str, knobs: Knobs) {
        let mut state = self.tuning.lock().unwrap();
        if knobs == Knobs::default() {
            state.active.remove(site);
        } else {
            state.active.insert(site.to_string(), knobs);
        }
    }

    /// The knobs a launcher uses at `site` (its kernel and shape): the tuned ones, or
    /// the defaults. `candidates` lists what else it could run with; the site and its
    /// candidates are kept for [`GpuContext::take_sites`].
    pub fn knobs(&self, site: &str, candidates: impl FnOnce() -> Vec<Knobs>) -> Knobs {
        let mut state = self.tuning.lock().unwrap();
        let consulted = state
            .consulted
            .entry(std::thread::current().id())
            .or_default();
        if !consulted.contains_key(site) {
            consulted.insert(site.to_string(), candidates());
        }
        state.active.get(site).copied().unwrap_or_default()
    }

    /// The knobs in use at `site` (the defaults, all unset, where none are tuned).
    pub fn tuned(&self, site: &str) -> Knobs {
        let state = self.tuning.lock().unwrap();
        state.active.get(site).copied().unwrap_or_default()
    }

    /// The sites launchers consulted on this thread since its last call, with their
    /// candidates.
    pub fn take_sites(&self) -> BTreeMap<String, Vec<Knobs>> {
        let mut state = self.tuning.lock().unwrap();
        let thread = std::thread::current().id();
        state.consulted.remove(&thread).unwrap_or_default()
    }

    /// Where the launchers' knobs come from, e.g. `tuning: 12 kernels tuned (3 off their
    /// defaults) from ...`.
    pub fn describe_tuning(&self) -> String {
        self.tuning.lock().unwrap().source.describe()
    }

    pub fn has_timestamps(&self) -> bool {
        self.device
            .features()
            .contains(wgpu::Features::TIMESTAMP_QUERY)
    }

    /// One line naming the adapter, the kernel settings and their tuning, for logs and
    /// benchmark headers.
    pub fn describe(&self) -> String {
        format!(
            "{} ({:?}, {:?}, driver {} {}; {}; {})",
            self.info.name,
            self.info.backend,
            self.info.device_type,
            self.info.driver,
            self.info.driver_info,
            self.describe_kernels(),
            self.describe_tuning()
        )
    }

    /// The kernel settings and how they were chosen, e.g. `kernels gpu (auto)`.
    pub fn describe_kernels(&self) -> String {
        format!(
            "kernels {} ({})",
            self.kernels.name(),
            self.kernel_choice.provenance()
        )
    }

    /// Whether the adapter is a software rasterizer (llvmpipe, SwiftShader, WARP), far
    /// slower than the CPU executor. Says nothing about the kernel settings.
    pub fn is_software(&self) -> bool {
        self.info.device_type == wgpu::DeviceType::Cpu
    }

    /// The kernel settings launchers plan for.
    pub fn kernel_settings(&self) -> KernelSettings {
        self.kernels
    }

    /// How the kernel settings were chosen.
    pub fn kernel_choice(&self) -> KernelChoice {
        self.kernel_choice
    }

    /// The most loop iterations one invocation may run on this adapter, where it has a
    /// limit (llvmpipe's), whatever the kernel settings.
    pub fn loop_limit(&self) -> Option<usize> {
        self.loop_limit
    }

    /// The message for a launch whose invocations would each run `iterations` loop
    /// iterations, when that passes this adapter's loop limit.
    pub fn loop_limit_exceeded(&self, iterations: usize) -> Option<String> {
        self.loop_limit
            .filter(|&limit| iterations > limit)
            .map(|limit| settings::loop_limit_message(iterations, limit))
    }

    /// Turns any error wgpu reported since the last check into an `Error` naming
    /// `context` (what the caller was doing).
    pub fn check(&self, context: &str) -> Result<()> {
        let mut sink = self.sink.lock().unwrap();
        if let Some((reason, message)) = sink.lost.take() {
            return Err(Error::DeviceLost { reason, message });
        }
        if sink.errors.is_empty() {
            return Ok(());
        }
        let message = std::mem::take(&mut sink.errors).join("; ");
        Err(Error::Gpu {
            context: context.to_string(),
            message,
        })
    }

    /// Submits `encoder` and reports errors raised while recording it.
    pub fn submit(&self, encoder: wgpu::CommandEncoder, context: &str) -> Result<()> {
        self.queue.submit(Some(encoder.finish()));
        self.check(context)
    }

    /// Blocks until all submitted work has finished.
    pub fn wait(&self, context: &str) -> Result<()> {
        self.device
            .poll(wgpu::PollType::wait_indefinitely())
            .map_err(|e| Error::Gpu {
                context: context.to_string(),
                message: e.to_string(),
            })?;
        self.check(context)
    }
}

/// wgpu's default limits are far below what real GPUs allow (128 MiB storage bindings,
/// 256 MiB buffers); ask for everything the adapter offers so large layers and the
/// uploaded dataset fit in one binding.
pub fn wanted_limits(adapter: &wgpu::Limits) -> wgpu::Limits {
    adapter.clone()
}
