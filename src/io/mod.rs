//! Files: atomic writes, reading only regular files of bounded size, checkpoints
//! (safetensors) and images (PNG grids), and the cache folder. MNIST's IDX files have their own module, `data`.

pub mod atomic;
pub mod checkpoint;
pub mod files;
pub mod images;
pub mod progress;

use std::path::PathBuf;

/// gan-gpu's folder in the user's cache (`$XDG_CACHE_HOME/gan-gpu` on Linux): the
/// classifier, and other results computed once per machine.
pub fn cache_dir() -> PathBuf {
    dirs::cache_dir()
        .unwrap_or_else(std::env::temp_dir)
        .join("gan-gpu")
}
