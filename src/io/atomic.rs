//! Atomic file writes: checkpoints, sample images, IDX files and charts never exist
//! half-written, and writing never destroys what was at the path unless it was a file.
//!
//! What is at the output path decides what happens:
//! - nothing: the file is created (and its parent folder, if missing);
//! - a regular file: it is replaced, keeping its permissions;
//! - a symlink: it is followed, and the file it points to is replaced in its own folder,
//!   so the link stays a link (a dangling link is refused: nothing is created through it);
//! - anything else (a directory, a device such as `/dev/null`, a FIFO, a socket): refused
//!   with an error, and left as it was.
//!
//! Data goes to a temporary file `.<name>.tmp-<pid>-<n>` beside the target, is synced, and
//! renamed over the target. A process killed mid-write leaves its temporary file behind;
//! [`remove_stale_temporaries`] removes those whose process is gone.

use std::ffi::{OsStr, OsString};
use std::fs::{self, File};
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use crate::error::{Error, Result};
use crate::io::files::not_regular;

const TEMP_MARK: &str = ".tmp-";

/// The file a write to `path` replaces: `path` itself, or the target of the symlink at
/// `path`. Refuses what is neither a regular file nor absent (see the module docs).
pub fn resolve_output(path: &Path) -> Result<PathBuf> {
    if path.file_name().is_none() {
        return Err(Error::InvalidArgument(format!(
            "{} does not name a file",
            path.display()
        )));
    }
    let refuse = |file_type| {
        not_regular(
            path,
            file_type,
            "; refusing to replace it (give the path of a file)".into(),
        )
    };
    let meta = match fs::symlink_metadata(path) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(path.to_path_buf()),
        Err(e) => return Err(Error::io(path, e)),
        Ok(meta) => meta,
    };
    if meta.is_file() {
        return Ok(path.to_path_buf());
    }
    if !meta.file_type().is_symlink() {
        return Err(refuse(meta.file_type()));
    }
    let target = match fs::canonicalize(path) {
        Ok(target) => target,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            let points_to = fs::read_link(path).unwrap_or_default();
            return Err(Error::io(
                path,
                io::Error::new(
                    io::ErrorKind::NotFound,
                    format!(
                        "a symlink to {}, which does not exist (nothing is created through a \
                         dangling symlink)",
                        points_to.display()
                    ),
                ),
            ));
        }
        Err(e) => return Err(Error::io(path, e)),
    };
    let target_meta = fs::metadata(&target).map_err(|e| Error::io(&target, e))?;
    if !target_meta.is_file() {
        return Err(not_regular(
            path,
            target_meta.file_type(),
            format!(
                " (through the symlink to {}); refusing to replace it",
                target.display()
            ),
        ));
    }
    Ok(target)
}

/// A file being written atomically: created by [`AtomicFile::create`], filled with
/// [`AtomicFile::write_all`], put in place by [`AtomicFile::commit`]. Dropped without a
/// commit (an error on the way), it removes its temporary file and leaves the target as
/// it was.
pub struct AtomicFile {
    /// The path the user gave, for messages.
    path: PathBuf,
    target: PathBuf,
    temp: PathBuf,
    file: BufWriter<File>,
    committed: bool,
}

impl AtomicFile {
    pub fn create(path: &Path) -> Result<Self> {
        let target = resolve_output(path)?;
        let file_name = target.file_name().unwrap_or_default().to_os_string();
        let dir = target
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        // Best effort: a leftover from a killed writer of this same file goes first.
        let _ = remove_stale(dir, Some(&file_name));

        // Unique per process and call, so concurrent writers never share a temporary file.
        static NEXT_TEMP: AtomicU64 = AtomicU64::new(0);
        let mut temp_name = OsString::from(".");
        temp_name.push(&file_name);
        temp_name.push(format!(
            "{TEMP_MARK}{}-{}",
            std::process::id(),
            NEXT_TEMP.fetch_add(1, Ordering::Relaxed)
        ));
        let temp = dir.join(temp_name);
        let file = File::options()
            .write(true)
            .create_new(true)
            .open(&temp)
            .map_err(|e| Error::io(path, e))?;
        if let Ok(old) = fs::metadata(&target) {
            // Replacing a file keeps who may read it; failing to is not worth an error.
            let _ = file.set_permissions(old.permissions());
        }
        Ok(AtomicFile {
            path: path.to_path_buf(),
            target,
            temp,
            file: BufWriter::with_capacity(1 << 20, file),
            committed: false,
        })
    }

    pub fn write_all(&mut self, bytes: &[u8]) -> Result<()> {
        self.file
            .write_all(bytes)
            .map_err(|e| Error::io(&self.path, e))
    }

    /// Syncs the data to disk, then renames it over the target.
    pub fn commit(mut self) -> Result<()> {
        let io_error = |e| Error::io(&self.path, e);
        self.file.flush().map_err(io_error)?;
        // On disk before the rename, so a crash cannot leave the final name on an empty file.
        self.file.get_ref().sync_all().map_err(io_error)?;
        fs::rename(&self.temp, &self.target).map_err(io_error)?;
        self.committed = true;
        Ok(())
    }
}

impl Drop for AtomicFile {
    fn drop(&mut self) {
        if !self.committed {
            // Best-effort cleanup; the error that got us here is the one worth reporting.
            let _ = fs::remove_file(&self.temp);
        }
    }
}

/// Writes the concatenation of `parts` to `path` atomically (see the module docs).
pub fn write_atomically(path: &Path, parts: &[&[u8]]) -> Result<()> {
    let mut file = AtomicFile::create(path)?;
    for part in parts {
        file.write_all(part)?;
    }
    file.commit()
}

/// Removes the temporary files in `dir` whose writing process no longer runs (killed
/// during a write) and returns their paths. Files of live processes are left alone.
pub fn remove_stale_temporaries(dir: &Path) -> Result<Vec<PathBuf>> {
    remove_stale(dir, None)
}

fn remove_stale(dir: &Path, only: Option<&OsStr>) -> Result<Vec<PathBuf>> {
    let mut removed = Vec::new();
    let entries = match fs::read_dir(dir) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(removed),
        other => other.map_err(|e| Error::io(dir, e))?,
    };
    for entry in entries {
        let entry = entry.map_err(|e| Error::io(dir, e))?;
        let name = entry.file_name();
        let Some((target, pid)) = temporary_owner(&name) else {
            continue;
        };
        if only.is_some_and(|only| only != target)
            || pid == std::process::id()
            || process_alive(pid)
        {
            continue;
        }
        let path = entry.path();
        if fs::symlink_metadata(&path).is_ok_and(|m| m.is_file()) {
            fs::remove_file(&path).map_err(|e| Error::io(&path, e))?;
            removed.push(path);
        }
    }
    Ok(removed)
}

/// For a temporary file's name `.<target>.tmp-<pid>-<n>`: the target's name and the pid.
fn temporary_owner(name: &OsStr) -> Option<(&OsStr, u32)> {
    let name = name.to_str()?;
    let rest = name.strip_prefix('.')?;
    let mark = rest.rfind(TEMP_MARK)?;
    let (pid, n) = rest[mark + TEMP_MARK.len()..].split_once('-')?;
    n.parse::<u64>().ok()?;
    Some((OsStr::new(&rest[..mark]), pid.parse().ok()?))
}

#[cfg(unix)]
fn process_alive(pid: u32) -> bool {
    // kill(0 or negative) would address process groups: such a pid is no process of ours.
    let Ok(pid) = libc::pid_t::try_from(pid) else {
        return true;
    };
    if pid <= 0 {
        return true;
    }
    // SAFETY: signal 0 only checks that the process exists and may be signalled.
    if unsafe { libc::kill(pid, 0) } == 0 {
        return true;
    }
    // EPERM: it exists but belongs to someone else.
    io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
}

#[cfg(not(unix))]
fn process_alive(_pid: u32) -> bool {
    // Without a way to ask, every temporary file is presumed in use.
    true
}
