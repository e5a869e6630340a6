//! A checkpoint's generator, for everything that draws from one (`sample`, `eval`, the web
//! and ONNX exports): which model it is, its noise dimension and its weights, checked
//! against the model's generator graph.

use std::path::Path;

use crate::error::{Error, Result};
use crate::graph::{Buf, Executor, Graph};
use crate::io::checkpoint::{Checkpoint, NamedTensor};
use crate::limits::MAX_DIMENSION;
use crate::model::{GeneratorNodes, ModelKind, kind, seed::SEED};

/// The metadata keys that name a checkpoint's model and its generator's noise dimension.
pub const MODEL_KEY: &str = "model";
pub const NOISE_DIM_KEY: &str = "noise_dim";

/// A generator read from a checkpoint.
#[derive(Debug, Clone)]
pub struct StoredGenerator {
    pub kind: &'static ModelKind,
    pub noise_dim: usize,
    /// The generator's parameters, by name, in its graph's order.
    pub tensors: Vec<NamedTensor>,
    /// The training iteration the checkpoint was written after, when it says.
    pub iteration: Option<u64>,
}

fn problem(path: &Path, problem: String) -> Error {
    Error::Checkpoint {
        path: path.to_path_buf(),
        problem,
    }
}

/// The model a checkpoint was written by; files from before models had names are `seed`.
pub fn checkpoint_kind(path: &Path, ckpt: &Checkpoint) -> Result<&'static ModelKind> {
    match ckpt.metadata.get(MODEL_KEY) {
        None => Ok(&SEED),
        Some(name) => kind(name).map_err(|e| problem(path, format!("metadata {MODEL_KEY}: {e}"))),
    }
}

/// The noise dimension from the metadata (`noise_dim`, or the training config's).
fn noise_dim(path: &Path, ckpt: &Checkpoint) -> Result<usize> {
    let text = match ckpt.metadata.get(NOISE_DIM_KEY) {
        Some(dim) => dim.clone(),
        None => {
            let config = ckpt.metadata_value(path, "config")?;
            let json: serde_json::Value = serde_json::from_str(config)
                .map_err(|e| problem(path, format!("config metadata is not JSON: {e}")))?;
            json.get("noise_dim")
                .map(|v| v.to_string())
                .ok_or_else(|| problem(path, "config metadata has no noise_dim".into()))?
        }
    };
    match text.parse::<usize>() {
        Ok(dim) if (1..=MAX_DIMENSION).contains(&dim) => Ok(dim),
        _ => Err(problem(
            path,
            format!("noise dimension {text:?}: expected a whole number from 1 to {MAX_DIMENSION}"),
        )),
    }
}

/// The generator of a checkpoint, every tensor checked against the model's generator.
pub fn generator_from_checkpoint(path: &Path, ckpt: &Checkpoint) -> Result<StoredGenerator> {
    let kind = checkpoint_kind(path, ckpt)?;
    let noise_dim = noise_dim(path, ckpt)?;
    let (graph, nodes) = kind.generator_graph(1, noise_dim)?;
    let mut tensors = Vec::new();
    for &id in &nodes.params {
        let (name, shape) = (&graph.nodes[id].name, &graph.nodes[id].shape);
        let t = ckpt.tensor(name).ok_or_else(|| {
            problem(
                path,
                format!(
                    "missing tensor {name}: not a generator of the {} model with noise dimension {noise_dim}",
                    kind.name
                ),
            )
        })?;
        if &t.shape != shape {
            return Err(problem(
                path,
                format!(
                    "tensor {name} has shape {:?}, this generator needs {shape:?}",
                    t.shape
                ),
            ));
        }
        tensors.push(t.clone());
    }
    let iteration = ckpt.metadata.get("iteration").and_then(|i| i.parse().ok());
    Ok(StoredGenerator {
        kind,
        noise_dim,
        tensors,
        iteration,
    })
}

impl StoredGenerator {
    /// The generator graph at `batch` images per pass.
    pub fn graph(&self, batch: usize) -> Result<(Graph, GeneratorNodes)> {
        self.kind.generator_graph(batch, self.noise_dim)
    }

    /// Writes the weights into an executor of a graph holding this generator.
    pub fn write_into(&self, exec: &mut dyn Executor) -> Result<()> {
        for t in &self.tensors {
            let id = exec.graph().find(&t.name).ok_or_else(|| {
                Error::InvalidArgument(format!("the executor's graph has no parameter {}", t.name))
            })?;
            exec.write(Buf::Value(id), &t.data)?;
        }
        Ok(())
    }
}
