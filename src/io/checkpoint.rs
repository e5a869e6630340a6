//! Training checkpoints: named f32 tensors plus string metadata in one safetensors file, so
//! PyTorch users can read them with `safetensors.torch.load_file` and
//! `safe_open(...).metadata()`.
//!
//! Files are written under a temporary name in the same directory, synced and renamed into
//! place, so a crash or failed write never leaves a half-written checkpoint where a good one
//! was.

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::Path;

use safetensors::tensor::{Dtype, Metadata, SafeTensors, View};

use crate::error::{Error, Result};
use crate::io::atomic::write_atomically;
use crate::io::files::{absolute, open_regular};
use crate::limits::check_memory;

/// The value of the `format` metadata key that marks a file as ours.
pub const FORMAT: &str = "gan-gpu-checkpoint-v1";
/// The metadata key holding [`FORMAT`].
pub const FORMAT_KEY: &str = "format";
/// safetensors keeps file metadata under this key in the header, beside the tensors, so no
/// tensor may be named so.
const RESERVED_NAME: &str = "__metadata__";
/// A safetensors file opens with the header's length as a little-endian u64.
const HEADER_SIZE_BYTES: usize = 8;
/// safetensors' own cap on the JSON header (ours are a few kB).
const MAX_HEADER_BYTES: u64 = 100_000_000;

/// One tensor: row-major f32 data of `shape` (a scalar has shape `[]` and one element).
#[derive(Debug, Clone, PartialEq)]
pub struct NamedTensor {
    pub name: String,
    pub shape: Vec<usize>,
    pub data: Vec<f32>,
}

/// Everything a checkpoint file holds. Tensors are weights (`generator.dense.kernel`) and
/// optimizer state (`adam_m.<param>`, `adam_v.<param>`); metadata carries `format`
/// (must be [`FORMAT`] when loading), and whatever else the trainer records, such as the
/// iteration and the config as JSON.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Checkpoint {
    pub tensors: Vec<NamedTensor>,
    pub metadata: BTreeMap<String, String>,
}

impl Checkpoint {
    pub fn tensor(&self, name: &str) -> Option<&NamedTensor> {
        self.tensors.iter().find(|t| t.name == name)
    }

    /// The metadata value under `key`, or an error naming the key and `path`, the file this
    /// checkpoint came from.
    pub fn metadata_value(&self, path: &Path, key: &str) -> Result<&str> {
        self.metadata
            .get(key)
            .map(String::as_str)
            .ok_or_else(|| checkpoint_error(path, format!("metadata has no {key:?} entry")))
    }
}

/// Lets safetensors serialize a tensor straight from its f32 data, without a byte copy on
/// little-endian machines.
impl View for &NamedTensor {
    fn dtype(&self) -> Dtype {
        Dtype::F32
    }

    fn shape(&self) -> &[usize] {
        &self.shape
    }

    fn data(&self) -> Cow<'_, [u8]> {
        if cfg!(target_endian = "little") {
            Cow::Borrowed(bytemuck::cast_slice(&self.data))
        } else {
            Cow::Owned(self.data.iter().flat_map(|x| x.to_le_bytes()).collect())
        }
    }

    fn data_len(&self) -> usize {
        self.data.len() * size_of::<f32>()
    }
}

/// Writes `ckpt` to `path` atomically, creating the parent directory if needed. The
/// checkpoint is validated first (each tensor's data matches its shape, names are unique),
/// so an invalid one never touches the disk.
pub fn save_checkpoint(path: &Path, ckpt: &Checkpoint) -> Result<()> {
    let mut names = HashSet::new();
    for t in &ckpt.tensors {
        if t.name == RESERVED_NAME {
            return Err(checkpoint_error(
                path,
                format!("tensor name {RESERVED_NAME:?} is reserved by safetensors"),
            ));
        }
        if !names.insert(t.name.as_str()) {
            return Err(checkpoint_error(
                path,
                format!("tensor {:?} appears twice", t.name),
            ));
        }
        let elements = t.shape.iter().try_fold(1usize, |n, &d| n.checked_mul(d));
        if elements != Some(t.data.len()) {
            return Err(checkpoint_error(
                path,
                format!(
                    "tensor {:?} has shape {:?} but {} values",
                    t.name,
                    t.shape,
                    t.data.len()
                ),
            ));
        }
    }
    let metadata: HashMap<String, String> = ckpt.metadata.clone().into_iter().collect();
    let bytes = safetensors::serialize(
        ckpt.tensors.iter().map(|t| (t.name.as_str(), t)),
        Some(metadata),
    )
    .map_err(|e| checkpoint_error(path, format!("cannot serialize: {e}")))?;
    write_atomically(path, &[&bytes])
}

/// Reads a checkpoint written by [`save_checkpoint`]. Tensors come back sorted by name (the
/// order safetensors stores them in), whatever order they were saved in.
///
/// Before reading the file whole, checks that it is a regular file, that its header
/// accounts for exactly its length, and that it fits in memory: `/dev/zero`, a FIFO or a
/// file with gigabytes appended is refused from its first bytes.
pub fn load_checkpoint(path: &Path) -> Result<Checkpoint> {
    let (mut file, len) = open_regular(path, || {
        checkpoint_error(
            path,
            format!("file not found (looked for {})", absolute(path).display()),
        )
    })?;
    let header_len = read_header_len(path, &mut file, len)?;
    let mut header = vec![0; header_len];
    file.read_exact(&mut header)
        .map_err(|e| Error::io(path, e))?;
    let metadata: Metadata = serde_json::from_slice(&header).map_err(|e| {
        checkpoint_error(
            path,
            format!("not a valid safetensors file (corrupt header?): {e}"),
        )
    })?;
    let expected = (HEADER_SIZE_BYTES + header_len) as u64 + metadata.data_len() as u64;
    if expected != len {
        return Err(checkpoint_error(
            path,
            format!(
                "not a valid safetensors file (truncated, or something appended?): the \
                 header accounts for {expected} bytes, the file is {len} bytes long"
            ),
        ));
    }
    check_memory(
        || format!("checkpoint {}", path.display()),
        "loading it",
        Some(len),
    )?;
    let mut bytes = Vec::with_capacity(len as usize);
    file.seek(SeekFrom::Start(0))
        .and_then(|_| file.take(len).read_to_end(&mut bytes))
        .map_err(|e| Error::io(path, e))?;
    checkpoint_from_bytes(path, &bytes)
}

/// The length of the JSON header, from the file's first 8 bytes, if the file can hold it.
fn read_header_len(path: &Path, file: &mut File, len: u64) -> Result<usize> {
    let mut prefix = [0; HEADER_SIZE_BYTES];
    if len < HEADER_SIZE_BYTES as u64 {
        return Err(checkpoint_error(
            path,
            format!(
                "not a valid safetensors file (truncated or corrupt?): {len} bytes, shorter \
                 than the {HEADER_SIZE_BYTES}-byte header length"
            ),
        ));
    }
    file.read_exact(&mut prefix)
        .map_err(|e| Error::io(path, e))?;
    let header_len = u64::from_le_bytes(prefix);
    if header_len > MAX_HEADER_BYTES || header_len > len - HEADER_SIZE_BYTES as u64 {
        return Err(checkpoint_error(
            path,
            format!(
                "not a valid safetensors file (truncated or corrupt?): a header of \
                 {header_len} bytes in a file of {len} (at most {MAX_HEADER_BYTES} accepted)"
            ),
        ));
    }
    Ok(header_len as usize)
}

/// Parses the bytes of a checkpoint file; `path` names it in errors. Everything
/// [`load_checkpoint`] checks, except the file's type and size.
pub fn checkpoint_from_bytes(path: &Path, bytes: &[u8]) -> Result<Checkpoint> {
    // Validates the header against the length too, so a truncated file fails here.
    let (header_len, header) = SafeTensors::read_metadata(bytes).map_err(|e| {
        checkpoint_error(
            path,
            format!("not a valid safetensors file (truncated or corrupt?): {e}"),
        )
    })?;
    let data = &bytes[HEADER_SIZE_BYTES + header_len..];

    let metadata: BTreeMap<String, String> = header
        .metadata()
        .clone()
        .unwrap_or_default()
        .into_iter()
        .collect();
    match metadata.get(FORMAT_KEY) {
        Some(format) if format == FORMAT => {}
        Some(other) => {
            return Err(checkpoint_error(
                path,
                format!("not a gan-gpu checkpoint: format is {other:?}, expected {FORMAT:?}"),
            ));
        }
        None => {
            return Err(checkpoint_error(
                path,
                format!("not a gan-gpu checkpoint: no {FORMAT_KEY:?} metadata"),
            ));
        }
    }

    let mut tensors = Vec::new();
    for name in header.offset_keys() {
        let info = header
            .info(&name)
            .expect("offset_keys lists the header's tensors");
        if info.dtype != Dtype::F32 {
            return Err(checkpoint_error(
                path,
                format!("tensor {name:?} is {:?}; only F32 is supported", info.dtype),
            ));
        }
        let (start, end) = info.data_offsets;
        // The data section need not be 4-byte aligned in memory, so decode rather than cast.
        let values = data[start..end]
            .chunks_exact(size_of::<f32>())
            .map(|b| f32::from_le_bytes(b.try_into().expect("chunks of 4 bytes")))
            .collect();
        tensors.push(NamedTensor {
            name,
            shape: info.shape.clone(),
            data: values,
        });
    }
    tensors.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(Checkpoint { tensors, metadata })
}

/// Checks that `ckpt` holds exactly the `expected` tensors (name and shape), so a checkpoint
/// from a differently configured model is refused with a message saying what differs. The
/// error names the first missing or mismatched tensor in `expected` order, else the first
/// unexpected one.
pub fn check_tensors(
    path: &Path,
    ckpt: &Checkpoint,
    expected: &[(String, Vec<usize>)],
) -> Result<()> {
    const HINT: &str = "(was it saved with a different model configuration?)";
    for (name, shape) in expected {
        match ckpt.tensor(name) {
            None => {
                return Err(checkpoint_error(
                    path,
                    format!("missing tensor {name:?} (expected shape {shape:?}) {HINT}"),
                ));
            }
            Some(t) if &t.shape != shape => {
                return Err(checkpoint_error(
                    path,
                    format!(
                        "tensor {name:?} has shape {:?}, expected {shape:?} {HINT}",
                        t.shape
                    ),
                ));
            }
            Some(_) => {}
        }
    }
    let wanted: HashSet<&str> = expected.iter().map(|(n, _)| n.as_str()).collect();
    if let Some(extra) = ckpt
        .tensors
        .iter()
        .find(|t| !wanted.contains(t.name.as_str()))
    {
        return Err(checkpoint_error(
            path,
            format!(
                "unexpected tensor {:?} with shape {:?} {HINT}",
                extra.name, extra.shape
            ),
        ));
    }
    Ok(())
}

fn checkpoint_error(path: &Path, problem: String) -> Error {
    Error::Checkpoint {
        path: path.to_path_buf(),
        problem,
    }
}
