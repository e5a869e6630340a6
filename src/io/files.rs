//! Opening the files users name: only regular files are read, and a file is read whole
//! only when its length is known and within a limit, so `/dev/zero`, a FIFO or a
//! mistyped path to something huge is refused instead of read until memory runs out.

use std::fs::{File, FileType};
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::limits::human_bytes;

/// What a file that is not a regular one is, for messages: "a directory", "a FIFO".
pub fn kind_of(file_type: FileType) -> &'static str {
    #[cfg(unix)]
    {
        use std::os::unix::fs::FileTypeExt;
        if file_type.is_char_device() {
            return "a character device";
        }
        if file_type.is_block_device() {
            return "a block device";
        }
        if file_type.is_fifo() {
            return "a FIFO";
        }
        if file_type.is_socket() {
            return "a socket";
        }
    }
    if file_type.is_dir() {
        "a directory"
    } else if file_type.is_symlink() {
        "a symlink"
    } else if file_type.is_file() {
        "a regular file"
    } else {
        "a special file"
    }
}

/// Opens `path` for reading if it is (or a symlink resolves to) a regular file, and
/// returns it with its length. The type is checked on the open file, so nothing can swap
/// the path between the check and the read. `missing` builds the error for a path that
/// does not exist (callers say where they looked).
pub fn open_regular(path: &Path, missing: impl FnOnce() -> Error) -> Result<(File, u64)> {
    // Opening a FIFO for reading blocks until a writer appears; look before opening.
    match std::fs::metadata(path) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Err(missing()),
        Err(e) => return Err(Error::io(path, e)),
        Ok(meta) if !meta.is_file() => {
            return Err(not_regular(path, meta.file_type(), String::new()));
        }
        Ok(_) => {}
    }
    let file = File::open(path).map_err(|e| Error::io(path, e))?;
    let meta = file.metadata().map_err(|e| Error::io(path, e))?;
    if !meta.is_file() {
        return Err(not_regular(path, meta.file_type(), String::new()));
    }
    Ok((file, meta.len()))
}

pub fn not_regular(path: &Path, file_type: FileType, hint: String) -> Error {
    Error::NotARegularFile {
        path: path.to_path_buf(),
        kind: kind_of(file_type),
        hint,
    }
}

/// The whole of the regular file `path` (a `what`, for messages) if it is at most `limit`
/// bytes long.
pub fn read_bounded(path: &Path, what: &str, limit: u64) -> Result<Vec<u8>> {
    let (file, len) = open_regular(path, || {
        Error::io(
            path,
            io::Error::new(
                io::ErrorKind::NotFound,
                format!("no such file (looked for {})", absolute(path).display()),
            ),
        )
    })?;
    if len > limit {
        return Err(Error::TooLarge {
            what: path.display().to_string(),
            problem: format!(
                "{} long; a {what} is read whole, and at most {} is accepted",
                human_bytes(len),
                human_bytes(limit)
            ),
        });
    }
    let mut bytes = Vec::with_capacity(len as usize);
    // `take`: a file that grows while it is read still stops at the limit.
    file.take(limit + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| Error::io(path, e))?;
    if bytes.len() as u64 > limit {
        return Err(Error::TooLarge {
            what: path.display().to_string(),
            problem: format!("grew past {} while being read", human_bytes(limit)),
        });
    }
    Ok(bytes)
}

/// `path` made absolute for messages, so "looked for" says where relative paths pointed.
pub fn absolute(path: &Path) -> PathBuf {
    std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf())
}
