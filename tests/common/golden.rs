//! Reader for the TF-Keras golden vectors in `tests/golden/<case>/` (see its README.md):
//! `case.txt` lines `op NAME`, `param NAME VALUES...`, `tensor NAME FILE LAYOUT DIMS...`, and
//! one raw little-endian f32 file per tensor.
//!
//! Include with `#[path = "common/golden.rs"] mod golden;`.

use std::collections::HashMap;
use std::path::PathBuf;

pub fn golden_dir() -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/golden"))
}

pub struct Tensor {
    pub layout: String,
    pub dims: Vec<usize>,
    pub data: Vec<f32>,
}

pub struct Case {
    pub name: String,
    pub op: String,
    dir: PathBuf,
    params: HashMap<String, Vec<String>>,
    /// name -> (file, layout, dims)
    tensors: HashMap<String, (String, String, Vec<usize>)>,
}

impl Case {
    /// Parses `case.txt`; panics with the path on a missing or malformed file.
    pub fn load(name: &str) -> Case {
        let dir = golden_dir().join(name);
        let path = dir.join("case.txt");
        let text =
            std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let mut case = Case {
            name: name.to_string(),
            op: String::new(),
            dir,
            params: HashMap::new(),
            tensors: HashMap::new(),
        };
        for line in text.lines() {
            let words: Vec<&str> = line.split_whitespace().collect();
            match words.as_slice() {
                ["op", op] => case.op = op.to_string(),
                ["param", name, values @ ..] => {
                    let values = values.iter().map(|v| v.to_string()).collect();
                    case.params.insert(name.to_string(), values);
                }
                ["tensor", name, file, layout, dims @ ..] => {
                    let dims = dims
                        .iter()
                        .map(|d| d.parse().unwrap_or_else(|_| panic!("{line:?}: bad dim")))
                        .collect();
                    let entry = (file.to_string(), layout.to_string(), dims);
                    case.tensors.insert(name.to_string(), entry);
                }
                [] => {}
                _ => panic!("{}: unexpected line {line:?}", path.display()),
            }
        }
        case
    }

    /// The values of `param NAME ...`.
    pub fn param(&self, name: &str) -> &[String] {
        self.params
            .get(name)
            .unwrap_or_else(|| panic!("case {}: no param {name}", self.name))
    }

    /// A param of whole numbers, e.g. `strides 2 2`.
    pub fn param_usizes(&self, name: &str) -> Vec<usize> {
        self.param(name)
            .iter()
            .map(|v| {
                v.parse()
                    .unwrap_or_else(|_| panic!("case {}: param {name} = {v:?}", self.name))
            })
            .collect()
    }

    /// Reads a tensor and checks its element count against its dims.
    pub fn tensor(&self, name: &str) -> Tensor {
        let (file, layout, dims) = self
            .tensors
            .get(name)
            .unwrap_or_else(|| panic!("case {}: no tensor {name}", self.name));
        let path = self.dir.join(file);
        let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let data: Vec<f32> = bytes
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes(b.try_into().unwrap()))
            .collect();
        let count: usize = dims.iter().product();
        assert_eq!(
            (bytes.len(), data.len()),
            (count * 4, count),
            "{}: size does not match dims {dims:?}",
            path.display()
        );
        Tensor {
            layout: layout.clone(),
            dims: dims.clone(),
            data,
        }
    }
}
