//! Drawing digits from a generator: sample grids during training and `gan-gpu sample`.

use std::path::Path;

use crate::cpu::AdamConfig;
use crate::error::{Error, Result};
use crate::graph::cpu_exec::CpuExecutor;
use crate::graph::{Buf, Executor, RandomStreams, lower};
use crate::model::checkpoint::Checkpoint;
use crate::model::gan::{Gan, IMAGE_SIDE, PIXELS, sampler};

/// Digits in a training sample grid (8x8).
pub const SAMPLE_GRID: usize = 64;

/// Runs the generator on `noise` ([count, noise_dim]) with generator weights `weights`
/// (in `Gan::generator.params` order) on the CPU executor: [count, 28, 28, 1] in [-1, 1].
pub fn generate_with(weights: &[Vec<f32>], noise: &[f32], noise_dim: usize) -> Result<Vec<f32>> {
    let count = noise.len() / noise_dim.max(1);
    if count == 0 {
        return Ok(Vec::new());
    }
    let (graph, generator) = sampler(count, noise_dim)?;
    let mut exec = CpuExecutor::new(
        &graph,
        vec![AdamConfig::default()],
        None,
        RandomStreams { seed: 0 },
    );
    for (&id, w) in generator.params.iter().zip(weights) {
        exec.write(Buf::Value(id), w)?;
    }
    exec.write(Buf::Value(generator.z), noise)?;
    let plan = exec.compile(&lower::forward(
        &graph,
        &[generator.image],
        &Default::default(),
    ))?;
    exec.run(plan, 0)?;
    exec.read(Buf::Value(generator.image))
}

/// Samples from the generator currently held by a training executor.
pub fn generate(exec: &mut dyn Executor, gan: &Gan, noise: &[f32]) -> Result<Vec<f32>> {
    let weights = gan
        .generator
        .params
        .iter()
        .map(|&id| exec.read(Buf::Value(id)))
        .collect::<Result<Vec<_>>>()?;
    generate_with(&weights, noise, gan.noise_dim)
}

/// Generator weights and noise dimension from a checkpoint, checked against the
/// generator's architecture.
pub fn generator_from_checkpoint(path: &Path, ckpt: &Checkpoint) -> Result<(Vec<Vec<f32>>, usize)> {
    let dense = ckpt
        .tensor("generator.dense.kernel")
        .ok_or_else(|| Error::Checkpoint {
            path: path.to_path_buf(),
            problem: "no tensor generator.dense.kernel: not a gan-gpu GAN checkpoint".into(),
        })?;
    let noise_dim = dense.shape.first().copied().unwrap_or(0);
    let (graph, generator) = sampler(1, noise_dim)?;
    let expected: Vec<(String, Vec<usize>)> = generator
        .params
        .iter()
        .map(|&id| (graph.nodes[id].name.clone(), graph.nodes[id].shape.clone()))
        .collect();
    let mut weights = Vec::new();
    for (name, shape) in &expected {
        let t = ckpt.tensor(name).ok_or_else(|| Error::Checkpoint {
            path: path.to_path_buf(),
            problem: format!("missing tensor {name}: a checkpoint of another architecture"),
        })?;
        if &t.shape != shape {
            return Err(Error::Checkpoint {
                path: path.to_path_buf(),
                problem: format!(
                    "tensor {name} has shape {:?}, this generator needs {shape:?}",
                    t.shape
                ),
            });
        }
        weights.push(t.data.clone());
    }
    Ok((weights, noise_dim))
}

/// `count` digits from a checkpoint, with noise from `seed`.
pub fn sample_checkpoint(
    path: &Path,
    ckpt: &Checkpoint,
    count: usize,
    seed: u64,
) -> Result<Vec<f32>> {
    let (weights, noise_dim) = generator_from_checkpoint(path, ckpt)?;
    let noise = crate::cpu::normal_noise(seed, 0, count * noise_dim);
    let mut images = Vec::with_capacity(count * PIXELS);
    // Bounded memory for large counts: generate in chunks.
    for chunk in noise.chunks(1000 * noise_dim) {
        images.extend(generate_with(&weights, chunk, noise_dim)?);
    }
    debug_assert_eq!(images.len(), count * IMAGE_SIDE * IMAGE_SIDE);
    Ok(images)
}
