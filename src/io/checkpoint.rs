//! Training checkpoints: named f32 tensors plus string metadata in one safetensors file, so
//! PyTorch users can read them with `safetensors.torch.load_file` and
//! `safe_open(...).metadata()`.
//!
//! Files are written under a temporary name in the same directory, synced and renamed into
//! place, so a crash or failed write never leaves a half-written checkpoint where a good one
//! was.

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use safetensors::tensor::{Dtype, SafeTensors, View};

use crate::error::{Error, Result};
use crate::io::atomic::write_atomically;

/// The value of the `format` metadata key that marks a file as ours.
pub const FORMAT: &str = "gan-gpu-checkpoint-v1";
/// The metadata key holding [`FORMAT`].
pub const FORMAT_KEY: &str = "format";
/// safetensors keeps file metadata under this key in the header, beside the tensors, so no
/// tensor may be named so.
const RESERVED_NAME: &str = "__metadata__";
/// A safetensors file opens with the header's length as a little-endian u64.
const HEADER_SIZE_BYTES: usize = 8;

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
pub fn load_checkpoint(path: &Path) -> Result<Checkpoint> {
    let bytes = fs::read(path).map_err(|e| match e.kind() {
        io::ErrorKind::NotFound => checkpoint_error(
            path,
            format!("file not found (looked for {})", absolute(path).display()),
        ),
        _ => Error::io(path, e),
    })?;
    // Validates the header against the file length too, so a truncated file fails here.
    let (header_len, header) = SafeTensors::read_metadata(&bytes).map_err(|e| {
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

/// `path` made absolute for messages, so "looked for" says where relative paths pointed.
fn absolute(path: &Path) -> PathBuf {
    std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf())
}
