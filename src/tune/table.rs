//! Writing the tuning file: `tune` merges what it measured into the table of its adapter.

use std::path::Path;

use crate::error::{Error, Result};
use crate::gpu::tuning::{Tuning, TuningKey, read_file};
use crate::io::atomic::write_atomically;

/// Merges `tuning`'s sites into the table kept for `key` at `path` (its sites replace
/// the same sites there; every other site, and every other adapter's table, stays), and
/// returns the merged table. Written atomically, so a crash leaves the old file whole.
pub fn store(path: &Path, key: &TuningKey, tuning: &Tuning) -> Result<Tuning> {
    let mut file = read_file(path)?;
    let mut merged = match file.tables.iter().position(|(k, _)| k == key) {
        Some(at) => file.tables.remove(at).1,
        None => Tuning::default(),
    };
    merged.sites.extend(tuning.sites.clone());
    file.tables.push((key.clone(), merged.clone()));
    file.tables.sort_by(|a, b| a.0.cmp(&b.0));
    let json = serde_json::to_vec_pretty(&file)
        .map_err(|e| Error::InvalidArgument(format!("tuning table: {e}")))?;
    write_atomically(path, &[&json])?;
    Ok(merged)
}
