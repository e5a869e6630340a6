//! A training executor's state <-> a checkpoint: every parameter and its Adam moments by
//! name, and in the metadata what resuming needs (model, iteration, config).

use std::collections::BTreeMap;
use std::path::Path;

use crate::error::{Error, Result};
use crate::graph::{Buf, Executor};
use crate::io::checkpoint::{Checkpoint, FORMAT, FORMAT_KEY, NamedTensor, check_tensors};
use crate::model::Model;
use crate::model::load::{MODEL_KEY, NOISE_DIM_KEY, checkpoint_kind};
use crate::train::config::TrainConfig;

const MOMENTS: [&str; 2] = ["adam_m.", "adam_v."];

/// Parameters and Adam moments by name, plus what resuming needs in the metadata.
pub fn checkpoint_of(
    exec: &mut dyn Executor,
    model: &Model,
    cfg: &TrainConfig,
    next_iteration: u64,
) -> Result<Checkpoint> {
    let mut tensors = Vec::new();
    for id in model.params() {
        let node = &model.graph.nodes[id];
        let (m, v) = exec.read_adam(id)?;
        let data = exec.read(Buf::Value(id))?;
        // Never replace a good checkpoint with diverged weights.
        if let Some(bad) = data.iter().find(|x| !x.is_finite()) {
            return Err(Error::NonFinite {
                iteration: next_iteration - 1,
                what: format!("a weight of {}", node.name),
                value: *bad,
            });
        }
        for (prefix, data) in [("", data), (MOMENTS[0], m), (MOMENTS[1], v)] {
            tensors.push(NamedTensor {
                name: format!("{prefix}{}", node.name),
                shape: node.shape.clone(),
                data,
            });
        }
    }
    let mut metadata = BTreeMap::new();
    metadata.insert(FORMAT_KEY.into(), FORMAT.into());
    metadata.insert(MODEL_KEY.into(), model.kind.name.into());
    metadata.insert(NOISE_DIM_KEY.into(), cfg.noise_dim.to_string());
    metadata.insert("iteration".into(), next_iteration.to_string());
    metadata.insert("seed".into(), cfg.seed.to_string());
    metadata.insert(
        "config".into(),
        serde_json::to_string(cfg).unwrap_or_default(),
    );
    metadata.insert(
        "layout".into(),
        "Keras layouts: dense kernels (in, out); conv kernels HWIO; transposed-conv kernels \
         HWOI; images NHWC in [-1, 1]. Random state: Philox streams of (seed, iteration)."
            .into(),
    );
    Ok(Checkpoint { tensors, metadata })
}

/// The names and shapes a checkpoint of `model` holds.
pub fn expected_tensors(model: &Model) -> Vec<(String, Vec<usize>)> {
    let mut out = Vec::new();
    for id in model.params() {
        let node = &model.graph.nodes[id];
        for prefix in ["", MOMENTS[0], MOMENTS[1]] {
            out.push((format!("{prefix}{}", node.name), node.shape.clone()));
        }
    }
    out
}

/// The training config a checkpoint was written with.
pub fn saved_config(path: &Path, ckpt: &Checkpoint) -> Result<TrainConfig> {
    serde_json::from_str(ckpt.metadata_value(path, "config")?).map_err(|e| Error::Checkpoint {
        path: path.to_path_buf(),
        problem: format!("config metadata is not a gan-gpu training config: {e}"),
    })
}

/// Checks that `ckpt` is a training checkpoint of `model`: its model, and every tensor's
/// name and shape.
pub fn check_resumable(model: &Model, path: &Path, ckpt: &Checkpoint) -> Result<()> {
    let kind = checkpoint_kind(path, ckpt)?;
    if kind.name != model.kind.name {
        return Err(Error::Checkpoint {
            path: path.to_path_buf(),
            problem: format!(
                "a checkpoint of the {} model, not of {}",
                kind.name, model.kind.name
            ),
        });
    }
    check_tensors(path, ckpt, &expected_tensors(model))
}

/// Loads a checkpoint that [`check_resumable`] accepted into `exec` and returns the next
/// iteration.
pub fn restore(
    exec: &mut dyn Executor,
    model: &Model,
    path: &Path,
    ckpt: &Checkpoint,
) -> Result<u64> {
    for id in model.params() {
        let name = &model.graph.nodes[id].name;
        let get = |n: String| {
            ckpt.tensor(&n)
                .map(|t| t.data.as_slice())
                .unwrap_or_default()
        };
        exec.write(Buf::Value(id), get(name.clone()))?;
        exec.write_adam(
            id,
            get(format!("{}{name}", MOMENTS[0])),
            get(format!("{}{name}", MOMENTS[1])),
        )?;
    }
    checkpoint_iteration(path, ckpt)
}

/// The iteration a training checkpoint was written after (the next one to run).
pub fn checkpoint_iteration(path: &Path, ckpt: &Checkpoint) -> Result<u64> {
    ckpt.metadata_value(path, "iteration")?
        .parse()
        .map_err(|e| Error::Checkpoint {
            path: path.to_path_buf(),
            problem: format!("iteration metadata is not a number: {e}"),
        })
}
