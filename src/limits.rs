//! The sizes a flag or a file can set, checked before anything that size is allocated.
//!
//! Two kinds of limit: [`MAX_DIMENSION`] keeps every product of sizes (shapes, element
//! counts, bytes) far inside 64 bits, so no size computation can overflow; and
//! [`memory_limit`], this machine's physical memory, bounds what one operation may hold at
//! once. A request over either is an [`Error::TooLarge`] naming the flag (or file), what it
//! would need and the limit, instead of an abort in the allocator.

use crate::error::{Error, Result};
use crate::graph::Graph;

/// The largest batch size or noise dimension accepted anywhere: 2^24. Products of a few
/// such sizes with an image's pixels stay below 2^63.
pub const MAX_DIMENSION: usize = 1 << 24;

/// Bytes of physical memory, the most one operation may hold at once (16 GiB where the
/// platform does not say).
pub fn memory_limit() -> u64 {
    physical_memory().unwrap_or(16 << 30)
}

#[cfg(unix)]
fn physical_memory() -> Option<u64> {
    // SAFETY: sysconf only reads system configuration.
    let (pages, page_size) = unsafe {
        (
            libc::sysconf(libc::_SC_PHYS_PAGES),
            libc::sysconf(libc::_SC_PAGESIZE),
        )
    };
    let pages = u64::try_from(pages).ok().filter(|&p| p > 0)?;
    let page_size = u64::try_from(page_size).ok().filter(|&p| p > 0)?;
    pages.checked_mul(page_size)
}

#[cfg(not(unix))]
fn physical_memory() -> Option<u64> {
    None
}

/// `bytes` for messages: "23.4 GB", "512 kB".
pub fn human_bytes(bytes: u64) -> String {
    const UNITS: [&str; 6] = ["bytes", "kB", "MB", "GB", "TB", "PB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1000.0 && unit + 1 < UNITS.len() {
        value /= 1000.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} bytes")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

/// Refuses `flag value` (e.g. `--batch-size 0`) unless `value` is at most [`MAX_DIMENSION`].
pub fn check_dimension(flag: &str, value: usize) -> Result<()> {
    if value > MAX_DIMENSION {
        return Err(Error::TooLarge {
            what: format!("{flag} {value}"),
            problem: format!("at most {MAX_DIMENSION} is supported"),
        });
    }
    Ok(())
}

/// Refuses `what` (the flag and its value, or a file) when `needed` bytes (`None`: more
/// than 64 bits can count) exceed [`memory_limit`]; `doing` says what needs them.
pub fn check_memory(what: impl FnOnce() -> String, doing: &str, needed: Option<u64>) -> Result<()> {
    let limit = memory_limit();
    match needed {
        Some(bytes) if bytes <= limit => Ok(()),
        _ => Err(Error::TooLarge {
            what: what(),
            problem: format!(
                "{doing} would need {}, more than this machine's {} of memory",
                needed.map_or_else(|| "more than 2^64 bytes".to_string(), human_bytes),
                human_bytes(limit)
            ),
        }),
    }
}

/// `count` items of `each` bytes, or `None` when that overflows.
pub fn bytes_for(count: u64, each: u64) -> Option<u64> {
    count.checked_mul(each)
}

/// The bytes an executor allocates for `graph`: `copies` f32 buffers per node (the CPU
/// executor keeps values, gradients and two Adam moments for each), or `None` when the
/// sum overflows.
pub fn graph_bytes(graph: &Graph, copies: u64) -> Option<u64> {
    graph.nodes.iter().try_fold(0u64, |total, node| {
        let elements = node
            .shape
            .iter()
            .try_fold(1u64, |n, &d| n.checked_mul(d as u64))?;
        total.checked_add(elements.checked_mul(4 * copies)?)
    })
}
