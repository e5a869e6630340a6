//! A training executor's state <-> a checkpoint: every parameter and its Adam moments by
//! name, every state (BatchNorm's running statistics, the generator's moving average
//! under `ema.`) by name, and in the metadata what resuming needs (model, iteration,
//! config).

use std::collections::BTreeMap;
use std::path::Path;

use crate::error::{Error, Result};
use crate::graph::{Buf, Executor, Init, NodeId, Op};
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
    let finite = |name: &str, data: &[f32]| match data.iter().find(|x| !x.is_finite()) {
        // Never replace a good checkpoint with diverged weights.
        Some(bad) => Err(Error::NonFinite {
            iteration: next_iteration - 1,
            what: format!("a value of {name}"),
            value: *bad,
        }),
        None => Ok(()),
    };
    for id in model.params() {
        let node = &model.graph.nodes[id];
        let (m, v) = exec.read_adam(id)?;
        let data = exec.read(Buf::Value(id))?;
        finite(&node.name, &data)?;
        for (prefix, data) in [("", data), (MOMENTS[0], m), (MOMENTS[1], v)] {
            tensors.push(NamedTensor {
                name: format!("{prefix}{}", node.name),
                shape: node.shape.clone(),
                data,
            });
        }
    }
    for id in model.graph.states() {
        let node = &model.graph.nodes[id];
        let data = exec.read(Buf::Value(id))?;
        finite(&node.name, &data)?;
        tensors.push(NamedTensor {
            name: node.name.clone(),
            shape: node.shape.clone(),
            data,
        });
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
    for id in model.graph.states() {
        let node = &model.graph.nodes[id];
        out.push((node.name.clone(), node.shape.clone()));
    }
    out
}

/// The moving averages of `model`, when `ckpt` holds none of them: a run from before they
/// existed, which resumes with each average starting at its weight's current value.
fn averages_to_start(model: &Model, ckpt: &Checkpoint) -> Vec<NodeId> {
    let averages: Vec<NodeId> = model
        .ema
        .iter()
        .flat_map(|e| e.pairs.iter().map(|&(_, average)| average))
        .collect();
    let held = averages
        .iter()
        .any(|&id| ckpt.tensor(&model.graph.nodes[id].name).is_some());
    if held { Vec::new() } else { averages }
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
    let missing = averages_to_start(model, ckpt);
    let expected: Vec<(String, Vec<usize>)> = expected_tensors(model)
        .into_iter()
        .filter(|(name, _)| {
            !missing
                .iter()
                .any(|&id| &model.graph.nodes[id].name == name)
        })
        .collect();
    check_tensors(path, ckpt, &expected)
}

/// What [`restore`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Restored {
    pub next_iteration: u64,
    /// The checkpoint had no moving average; it starts at the restored weights.
    pub ema_started: bool,
}

/// Loads a checkpoint that [`check_resumable`] accepted into `exec`.
pub fn restore(
    exec: &mut dyn Executor,
    model: &Model,
    path: &Path,
    ckpt: &Checkpoint,
) -> Result<Restored> {
    let get = |n: &str| {
        ckpt.tensor(n)
            .map(|t| t.data.as_slice())
            .unwrap_or_default()
    };
    for id in model.params() {
        let name = &model.graph.nodes[id].name;
        exec.write(Buf::Value(id), get(name))?;
        exec.write_adam(
            id,
            get(&format!("{}{name}", MOMENTS[0])),
            get(&format!("{}{name}", MOMENTS[1])),
        )?;
    }
    let started = averages_to_start(model, ckpt);
    for id in model.graph.states() {
        if !started.contains(&id) {
            exec.write(Buf::Value(id), get(&model.graph.nodes[id].name))?;
        }
    }
    for &id in &started {
        if let Op::State(Init::CopyOf { of }) = model.graph.nodes[id].op {
            let source = exec.read(Buf::Value(of))?;
            exec.write(Buf::Value(id), &source)?;
        }
    }
    Ok(Restored {
        next_iteration: checkpoint_iteration(path, ckpt)?,
        ema_started: !started.is_empty(),
    })
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
