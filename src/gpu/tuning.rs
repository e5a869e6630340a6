//! Kernel settings chosen by measurement on this adapter (`gan-gpu tune`), per kernel
//! and shape, kept in the cache folder and used by the launchers when they match.
//!
//! A launcher names each tunable launch by a *site*: its kernel and shape as a string,
//! with the candidate [`Knobs`] it can run with. It asks the context for the site's
//! knobs ([`crate::gpu::GpuContext::knobs`]), which are the tuned ones where the table
//! has them and the built-in defaults (every knob unset) otherwise. Knobs are override
//! constants or launch shapes only, so tuning never generates shader text.
//!
//! A table is only valid for the adapter, driver, kernel settings and shader sources it
//! was measured with ([`TuningKey`]); anything else falls back to the defaults, and says
//! so.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::gpu::pipeline::Shader;

/// What a launcher may change at one site. `None` is the launcher's built-in default.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
pub struct Knobs {
    /// Invocations per workgroup (the shader's `WG` override).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workgroup: Option<u32>,
    /// Output rows per invocation of a register-tiled GEMM (`REG_TM`: 4, 8 or 16).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tile_rows: Option<u32>,
    /// K steps per workgroup-memory stage of a tiled GEMM (`TILED_BK`: 8, 16 or 32).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub k_step: Option<u32>,
    /// The invocations a split reduction aims to fill (a convolution's weight-gradient
    /// slices).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub split_target: Option<u32>,
}

impl Knobs {
    /// `default` for the built-in settings, else each set knob, e.g. `wg 64, split 1024`.
    pub fn describe(&self) -> String {
        let mut parts = Vec::new();
        if let Some(v) = self.workgroup {
            parts.push(format!("wg {v}"));
        }
        if let Some(v) = self.tile_rows {
            parts.push(format!("rows {v}"));
        }
        if let Some(v) = self.k_step {
            parts.push(format!("k step {v}"));
        }
        if let Some(v) = self.split_target {
            parts.push(format!("split {v}"));
        }
        if parts.is_empty() {
            "default".into()
        } else {
            parts.join(", ")
        }
    }
}

/// One tuned site: the knobs kept, and the times that chose them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TunedSite {
    pub knobs: Knobs,
    pub default_ms: f64,
    pub tuned_ms: f64,
}

/// What a table holds for: the adapter, its driver, the kernel settings and the shaders.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct TuningKey {
    pub adapter: String,
    pub backend: String,
    pub driver: String,
    pub kernels: String,
    /// CRC-32 of every WGSL source, in [`Shader::ALL`] order.
    pub shaders: String,
}

impl TuningKey {
    pub fn describe(&self) -> String {
        format!(
            "{} ({}, driver {}; kernels {}; shaders {})",
            self.adapter, self.backend, self.driver, self.kernels, self.shaders
        )
    }
}

/// The checksum of the shader sources, which any kernel change changes.
pub fn shader_hash() -> String {
    let mut crc = crc32fast::Hasher::new();
    for shader in Shader::ALL {
        crc.update(shader.source().as_bytes());
    }
    format!("{:08x}", crc.finalize())
}

/// The tuned sites of one adapter, by site name.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Tuning {
    pub sites: BTreeMap<String, TunedSite>,
}

impl Tuning {
    /// Sites whose kept knobs differ from the defaults.
    pub fn changed(&self) -> usize {
        self.sites
            .values()
            .filter(|s| s.knobs != Knobs::default())
            .count()
    }
}

/// The cache file: one table per [`TuningKey`]. Read here; written only by `tune`
/// (`crate::tune::table`), above the files layer.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct TuningFile {
    pub tables: Vec<(TuningKey, Tuning)>,
}

/// Where `tune` keeps its tables: `GAN_GPU_TUNING` when set (tests and CI use a
/// temporary one), else `tuning.json` in the cache folder.
pub fn tuning_path() -> PathBuf {
    if let Some(path) = std::env::var_os("GAN_GPU_TUNING").filter(|p| !p.is_empty()) {
        return PathBuf::from(path);
    }
    dirs::cache_dir()
        .unwrap_or_else(std::env::temp_dir)
        .join("gan-gpu")
        .join("tuning.json")
}

/// The file at `path`; a missing one holds no table.
pub fn read_file(path: &std::path::Path) -> Result<TuningFile> {
    match std::fs::read(path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(TuningFile::default()),
        Err(e) => Err(Error::io(path, e)),
        Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| {
            Error::InvalidArgument(format!(
                "{}: not a gan-gpu tuning file ({e}); delete it or run `gan-gpu tune` again",
                path.display()
            ))
        }),
    }
}

/// The table kept for `key` at `path`, if any. A file that exists but cannot be read is
/// an error naming it (it would otherwise be silently overwritten by the next `tune`).
pub fn load(path: &std::path::Path, key: &TuningKey) -> Result<Option<Tuning>> {
    Ok(read_file(path)?
        .tables
        .into_iter()
        .find(|(k, _)| k == key)
        .map(|(_, t)| t))
}

/// How the context's knobs came about, for logs and headers.
#[derive(Debug, Clone, PartialEq)]
pub enum TuningSource {
    /// No table matched; the reason is shown.
    Defaults(String),
    /// Loaded from the cache file: `sites` tuned, `changed` of them off their defaults.
    Cache {
        path: PathBuf,
        sites: usize,
        changed: usize,
    },
    /// Being measured by `tune`.
    Measuring,
}

impl TuningSource {
    pub fn describe(&self) -> String {
        match self {
            TuningSource::Defaults(why) => format!("tuning: built-in defaults ({why})"),
            TuningSource::Cache {
                path,
                sites,
                changed,
            } => format!(
                "tuning: {sites} kernels tuned ({changed} off their defaults) from {}",
                path.display()
            ),
            TuningSource::Measuring => "tuning: being measured".into(),
        }
    }
}
