//! Which kernel settings the launchers plan for, kept apart from what the adapter is.
//!
//! Launchers tune for two kinds of adapter: real GPUs (workgroup-memory GEMM tiles,
//! workgroups of 64, weight-gradient reductions split into up to 16,384 slices) and
//! software rasterizers such as llvmpipe (register tiles without barriers, workgroups of
//! 16, few slices). `auto` picks by the adapter's device type; `GAN_GPU_KERNELS` or
//! `--kernels` forces either, so the real-GPU settings run on lavapipe in CI.
//!
//! What the settings never change are the adapter's own limits: the device limits, and
//! llvmpipe's loop cut-off ([`LOOP_LIMIT`]), which is planned around or refused whatever
//! the settings, because passing it silently leaves results unfinished.

use crate::error::{Error, Result};

/// The environment variable behind [`KernelChoice::from_env`].
pub const KERNELS_ENV: &str = "GAN_GPU_KERNELS";

/// llvmpipe ends an invocation's loops after 65,535 iterations counted over all of its
/// loops (gallivm's guard against endless loops), silently leaving the result unfinished.
/// Launches that could reach it on a CPU adapter are split or refused; 65,000 leaves
/// room for the few loops a count misses.
pub const LOOP_LIMIT: usize = 65_000;

/// The fewest workgroups a sizeable dispatch should have under the real-GPU settings, so
/// that it reaches most of a GPU's cores (the plan's width rule; an H100 has 132 SMs).
pub const MIN_WORKGROUPS: usize = 128;

/// A workgroup size for `invocations` independent invocations (a workgroup that only
/// groups them, so its size changes no result): `largest`, halved down to `smallest`
/// while that would leave fewer than [`MIN_WORKGROUPS`] workgroups under the real-GPU
/// settings; always `largest` under the software ones, whose few cores a handful of
/// workgroups fill.
pub fn spread_workgroup(
    settings: KernelSettings,
    invocations: usize,
    largest: u32,
    smallest: u32,
) -> u32 {
    let mut wg = largest;
    if settings == KernelSettings::Gpu {
        while wg / 2 >= smallest && invocations.div_ceil(wg as usize) < MIN_WORKGROUPS {
            wg /= 2;
        }
    }
    wg
}

/// The kernel settings launchers plan for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum KernelSettings {
    /// Real-GPU variants: tiled GEMM in workgroup memory, workgroups of 64, wide splits.
    Gpu,
    /// CPU-adapter variants: register-tiled GEMM, workgroups of 16, few splits.
    Software,
}

impl KernelSettings {
    pub fn name(self) -> &'static str {
        match self {
            KernelSettings::Gpu => "gpu",
            KernelSettings::Software => "software",
        }
    }
}

/// `auto|gpu|software`, as given by `--kernels` or `GAN_GPU_KERNELS`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum KernelChoice {
    /// By the adapter: software settings on CPU adapters, GPU settings otherwise
    #[default]
    Auto,
    /// The real-GPU settings on any adapter
    Gpu,
    /// The software-adapter settings on any adapter
    Software,
}

impl KernelChoice {
    /// `GAN_GPU_KERNELS`, `auto` when unset or empty; any other value is an error naming
    /// the variable and what it accepts.
    pub fn from_env() -> Result<Self> {
        match std::env::var(KERNELS_ENV) {
            Err(std::env::VarError::NotPresent) => Ok(KernelChoice::Auto),
            Err(std::env::VarError::NotUnicode(v)) => Err(bad_env(&v.to_string_lossy())),
            Ok(v) => Self::parse(&v).ok_or_else(|| bad_env(&v)),
        }
    }

    fn parse(value: &str) -> Option<Self> {
        match value.trim().to_ascii_lowercase().as_str() {
            "" | "auto" => Some(KernelChoice::Auto),
            "gpu" => Some(KernelChoice::Gpu),
            "software" => Some(KernelChoice::Software),
            _ => None,
        }
    }

    /// How settings from this choice came about: `auto`, or `forced`.
    pub fn provenance(self) -> &'static str {
        match self {
            KernelChoice::Auto => "auto",
            KernelChoice::Gpu | KernelChoice::Software => "forced",
        }
    }

    /// The settings for an adapter of `device_type`.
    pub fn resolve(self, device_type: wgpu::DeviceType) -> KernelSettings {
        match self {
            KernelChoice::Gpu => KernelSettings::Gpu,
            KernelChoice::Software => KernelSettings::Software,
            KernelChoice::Auto if device_type == wgpu::DeviceType::Cpu => KernelSettings::Software,
            KernelChoice::Auto => KernelSettings::Gpu,
        }
    }
}

fn bad_env(value: &str) -> Error {
    Error::InvalidArgument(format!(
        "{KERNELS_ENV}={value:?}: expected auto, gpu or software"
    ))
}

/// The loop limit of an adapter of `device_type`: llvmpipe's for every CPU adapter (we
/// have not measured SwiftShader's or WARP's, so they are planned for as llvmpipe).
pub fn loop_limit(device_type: wgpu::DeviceType) -> Option<usize> {
    (device_type == wgpu::DeviceType::Cpu).then_some(LOOP_LIMIT)
}

/// The message for a launch whose invocations would each run `iterations` loop
/// iterations, over `limit`.
pub fn loop_limit_message(iterations: usize, limit: usize) -> String {
    format!(
        "{iterations} loop iterations per invocation exceed this adapter's limit of {limit} \
         (llvmpipe silently stops longer loops)"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn choices_parse_and_resolve() {
        assert_eq!(KernelChoice::parse(" GPU "), Some(KernelChoice::Gpu));
        assert_eq!(KernelChoice::parse(""), Some(KernelChoice::Auto));
        assert_eq!(KernelChoice::parse("fast"), None);
        let cpu = wgpu::DeviceType::Cpu;
        let discrete = wgpu::DeviceType::DiscreteGpu;
        assert_eq!(KernelChoice::Auto.resolve(cpu), KernelSettings::Software);
        assert_eq!(KernelChoice::Auto.resolve(discrete), KernelSettings::Gpu);
        assert_eq!(KernelChoice::Gpu.resolve(cpu), KernelSettings::Gpu);
        assert_eq!(
            KernelChoice::Software.resolve(discrete),
            KernelSettings::Software
        );
        assert_eq!(loop_limit(cpu), Some(LOOP_LIMIT));
        assert_eq!(loop_limit(discrete), None);
        assert!(
            bad_env("fast")
                .to_string()
                .contains("GAN_GPU_KERNELS=\"fast\"")
        );
    }
}
