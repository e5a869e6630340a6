//! `gan-gpu adapters`: what wgpu can see on this machine.

use serde::Serialize;

use crate::gpu::context::{AdapterRequest, PowerPreference};

/// The limits that decide which of our kernels and buffers fit.
#[derive(Debug, Clone, Serialize)]
pub struct KernelLimits {
    pub max_storage_buffer_binding_size: u64,
    pub max_buffer_size: u64,
    pub max_compute_workgroup_storage_size: u32,
    pub max_compute_invocations_per_workgroup: u32,
    pub max_compute_workgroups_per_dimension: u32,
}

impl From<&wgpu::Limits> for KernelLimits {
    fn from(l: &wgpu::Limits) -> Self {
        KernelLimits {
            max_storage_buffer_binding_size: l.max_storage_buffer_binding_size,
            max_buffer_size: l.max_buffer_size,
            max_compute_workgroup_storage_size: l.max_compute_workgroup_storage_size,
            max_compute_invocations_per_workgroup: l.max_compute_invocations_per_workgroup,
            max_compute_workgroups_per_dimension: l.max_compute_workgroups_per_dimension,
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct AdapterReport {
    pub index: usize,
    pub name: String,
    pub backend: String,
    pub device_type: String,
    pub driver: String,
    pub driver_info: String,
    pub limits: KernelLimits,
    pub timestamp_queries: bool,
    /// The `--adapter` preferences that would pick this adapter.
    pub picked_by: Vec<PowerPreference>,
}

pub fn device_type_name(t: wgpu::DeviceType) -> &'static str {
    match t {
        wgpu::DeviceType::DiscreteGpu => "discrete",
        wgpu::DeviceType::IntegratedGpu => "integrated",
        wgpu::DeviceType::VirtualGpu => "virtual",
        wgpu::DeviceType::Cpu => "cpu",
        wgpu::DeviceType::Other => "other",
    }
}

/// Every adapter the instance finds under `backend` restrictions, each marked with the
/// `--adapter` choices that would select it.
pub fn list_adapters(request: &AdapterRequest) -> Vec<AdapterReport> {
    let instance = request.instance();
    let adapters = pollster::block_on(instance.enumerate_adapters(request.backends()));
    let pick_key = |power: PowerPreference| {
        AdapterRequest {
            power,
            backend: request.backend,
        }
        .pick(&instance)
        .ok()
        .map(|a| {
            let i = a.get_info();
            (i.name, i.backend, i.device, i.vendor)
        })
    };
    let picks = [
        (
            PowerPreference::HighPerformance,
            pick_key(PowerPreference::HighPerformance),
        ),
        (
            PowerPreference::LowPower,
            pick_key(PowerPreference::LowPower),
        ),
    ];
    adapters
        .iter()
        .enumerate()
        .map(|(index, adapter)| {
            let info = adapter.get_info();
            let key = (info.name.clone(), info.backend, info.device, info.vendor);
            AdapterReport {
                index,
                name: info.name.clone(),
                backend: format!("{:?}", info.backend).to_lowercase(),
                device_type: device_type_name(info.device_type).to_string(),
                driver: info.driver.clone(),
                driver_info: info.driver_info.clone(),
                limits: KernelLimits::from(&adapter.limits()),
                timestamp_queries: adapter.features().contains(wgpu::Features::TIMESTAMP_QUERY),
                picked_by: picks
                    .iter()
                    .filter(|(_, k)| k.as_ref() == Some(&key))
                    .map(|(p, _)| *p)
                    .collect(),
            }
        })
        .collect()
}

fn mib(bytes: u64) -> String {
    format!("{} MiB", bytes / (1024 * 1024))
}

/// The human-readable listing.
pub fn render_table(reports: &[AdapterReport]) -> String {
    if reports.is_empty() {
        return "no wgpu adapters found. Install a GPU driver, or Mesa's software Vulkan \
                driver (`apt-get install mesa-vulkan-drivers`); `--device cpu` runs without one.\n"
            .to_string();
    }
    let mut out = String::new();
    for r in reports {
        let picks: Vec<String> = r
            .picked_by
            .iter()
            .map(|p| match p {
                PowerPreference::HighPerformance => "--adapter high-performance".to_string(),
                PowerPreference::LowPower => "--adapter low-power".to_string(),
            })
            .collect();
        out += &format!(
            "[{}] {}\n    backend {}, type {}, driver {} ({})\n",
            r.index, r.name, r.backend, r.device_type, r.driver, r.driver_info
        );
        out += &format!(
            "    max storage binding {}, max buffer {}, workgroup storage {} KiB, \
             {} invocations/workgroup, {} workgroups/dimension, timestamp queries {}\n",
            mib(r.limits.max_storage_buffer_binding_size),
            mib(r.limits.max_buffer_size),
            r.limits.max_compute_workgroup_storage_size / 1024,
            r.limits.max_compute_invocations_per_workgroup,
            r.limits.max_compute_workgroups_per_dimension,
            if r.timestamp_queries { "yes" } else { "no" },
        );
        if !picks.is_empty() {
            out += &format!("    picked by: {}\n", picks.join(", "));
        }
    }
    out
}
