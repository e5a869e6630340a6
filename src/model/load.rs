//! A checkpoint's generator, for everything that draws from one (`sample`, `eval`, the web
//! and ONNX exports): which model it is, its noise dimension and its weights (the moving
//! average `ema.generator.*` by default, the raw `generator.*` on request), checked against
//! the model's generator graph.

use std::path::Path;

use crate::error::{Error, Result};
use crate::graph::{Buf, Executor, Graph};
use crate::io::checkpoint::{Checkpoint, NamedTensor};
use crate::limits::MAX_DIMENSION;
use crate::model::{EMA_PREFIX, GeneratorNodes, ModelKind, kind, seed::SEED};

/// The metadata keys that name a checkpoint's model and its generator's noise dimension.
pub const MODEL_KEY: &str = "model";
pub const NOISE_DIM_KEY: &str = "noise_dim";
/// The metadata key of a generator-only file (the web export's) that says which of the
/// training checkpoint's weights its `generator.*` tensors are: `ema` or `raw`.
pub const WEIGHTS_KEY: &str = "weights";

/// Which of a checkpoint's generator weights to draw with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Weights {
    /// The moving average of the weights (`ema.generator.*`), the default.
    Ema,
    /// The weights as the last optimizer step left them (`generator.*`; `--raw`).
    Raw,
}

impl Weights {
    /// `--raw` given or not.
    pub fn from_raw_flag(raw: bool) -> Self {
        if raw { Weights::Raw } else { Weights::Ema }
    }

    /// The value of [`WEIGHTS_KEY`].
    pub fn key(self) -> &'static str {
        match self {
            Weights::Ema => "ema",
            Weights::Raw => "raw",
        }
    }
}

/// The weights asked for and the weights a [`StoredGenerator`] holds: a checkpoint
/// without a moving average (written before it existed, or trained with `--ema-decay 0`)
/// gives its raw weights when the average is asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WeightsUsed {
    pub wanted: Weights,
    pub used: Weights,
}

impl std::fmt::Display for WeightsUsed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match (self.wanted, self.used) {
            (_, Weights::Ema) => f.write_str("the moving average of the weights (EMA)"),
            (Weights::Raw, Weights::Raw) => f.write_str("the raw weights (--raw)"),
            (Weights::Ema, Weights::Raw) => f.write_str(
                "the raw weights: the checkpoint holds no moving average (written before \
                 gan-gpu kept one, or trained with --ema-decay 0)",
            ),
        }
    }
}

/// A generator read from a checkpoint.
#[derive(Debug, Clone)]
pub struct StoredGenerator {
    pub kind: &'static ModelKind,
    pub noise_dim: usize,
    /// The generator's weights and states (BatchNorm's running statistics) under their
    /// names in the generator's graph (`generator.*`), in its order: the moving average's
    /// or the raw ones, as [`StoredGenerator::weights`] says.
    pub tensors: Vec<NamedTensor>,
    pub weights: WeightsUsed,
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

/// The generator of a checkpoint with its moving-average weights when it holds them,
/// else its raw ones (see [`load_generator`]).
pub fn generator_from_checkpoint(path: &Path, ckpt: &Checkpoint) -> Result<StoredGenerator> {
    load_generator(path, ckpt, Weights::Ema)
}

/// Which weights `ckpt` gives for `wanted`, and the prefix of their names.
fn weights_in(path: &Path, ckpt: &Checkpoint, wanted: Weights) -> Result<(Weights, &'static str)> {
    let has_average = ckpt.tensors.iter().any(|t| t.name.starts_with(EMA_PREFIX));
    // A generator-only file says which weights its `generator.*` tensors are.
    let file_holds = match ckpt.metadata.get(WEIGHTS_KEY).map(String::as_str) {
        None | Some("raw") => Weights::Raw,
        Some("ema") => Weights::Ema,
        Some(other) => {
            return Err(problem(
                path,
                format!("metadata {WEIGHTS_KEY} is {other:?}, expected \"ema\" or \"raw\""),
            ));
        }
    };
    match (wanted, has_average, file_holds) {
        (Weights::Ema, true, _) => Ok((Weights::Ema, EMA_PREFIX)),
        (Weights::Ema, false, held) => Ok((held, "")),
        (Weights::Raw, _, Weights::Raw) => Ok((Weights::Raw, "")),
        (Weights::Raw, _, Weights::Ema) => Err(problem(
            path,
            "--raw: this file holds only the moving average of a generator's weights (an \
             export); give the training checkpoint for the raw ones"
                .into(),
        )),
    }
}

/// The generator of a checkpoint, `wanted`'s weights (or the raw ones where it has no
/// moving average), every tensor checked against the model's generator: its weights and
/// its states, such as BatchNorm's running statistics. Generator-only files from before
/// the states existed hold none, and their models have none.
pub fn load_generator(path: &Path, ckpt: &Checkpoint, wanted: Weights) -> Result<StoredGenerator> {
    let kind = checkpoint_kind(path, ckpt)?;
    let noise_dim = noise_dim(path, ckpt)?;
    let (used, prefix) = weights_in(path, ckpt, wanted)?;
    let (graph, nodes) = kind.generator_graph(1, noise_dim)?;
    let mut tensors = Vec::new();
    for id in nodes.tensors() {
        let (name, shape) = (&graph.nodes[id].name, &graph.nodes[id].shape);
        let stored_name = format!("{prefix}{name}");
        let t = ckpt.tensor(&stored_name).ok_or_else(|| {
            problem(
                path,
                format!(
                    "missing tensor {stored_name}: not a generator of the {} model with noise \
                     dimension {noise_dim}",
                    kind.name
                ),
            )
        })?;
        if &t.shape != shape {
            return Err(problem(
                path,
                format!(
                    "tensor {stored_name} has shape {:?}, this generator needs {shape:?}",
                    t.shape
                ),
            ));
        }
        tensors.push(NamedTensor {
            name: name.clone(),
            shape: t.shape.clone(),
            data: t.data.clone(),
        });
    }
    let iteration = ckpt.metadata.get("iteration").and_then(|i| i.parse().ok());
    Ok(StoredGenerator {
        kind,
        noise_dim,
        tensors,
        weights: WeightsUsed { wanted, used },
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
