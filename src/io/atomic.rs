//! Atomic file writes: checkpoints, sample images and IDX files never exist half-written.

use std::ffi::OsString;
use std::fs::{self, File};
use std::io::Write;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::error::{Error, Result};

/// Writes the concatenation of `parts` to `path` through a synced temporary file in the
/// same directory and a rename, creating the parent directory if missing. Readers see
/// the old file or the new one, never a partial one, and a failure removes the
/// temporary file.
pub fn write_atomically(path: &Path, parts: &[&[u8]]) -> Result<()> {
    let file_name = path.file_name().ok_or_else(|| {
        Error::InvalidArgument(format!("{} does not name a file", path.display()))
    })?;
    let parent = path.parent().filter(|p| !p.as_os_str().is_empty());
    if let Some(dir) = parent {
        fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    }
    // Unique per process and call, so concurrent writers never share a temporary file.
    static NEXT_TEMP: AtomicU64 = AtomicU64::new(0);
    let mut temp_name = OsString::from(".");
    temp_name.push(file_name);
    temp_name.push(format!(
        ".tmp-{}-{}",
        std::process::id(),
        NEXT_TEMP.fetch_add(1, Ordering::Relaxed)
    ));
    let temp = path.with_file_name(temp_name);

    let written = write_new_file(&temp, parts)
        .and_then(|()| fs::rename(&temp, path).map_err(|e| Error::io(path, e)));
    if written.is_err() {
        // Best-effort cleanup; the write error is the one worth reporting.
        let _ = fs::remove_file(&temp);
    }
    written
}

fn write_new_file(path: &Path, parts: &[&[u8]]) -> Result<()> {
    let io_error = |e| Error::io(path, e);
    let mut file = File::options()
        .write(true)
        .create_new(true)
        .open(path)
        .map_err(io_error)?;
    for part in parts {
        file.write_all(part).map_err(io_error)?;
    }
    // On disk before the rename, so a crash cannot leave the final name on an empty file.
    file.sync_all().map_err(io_error)
}
