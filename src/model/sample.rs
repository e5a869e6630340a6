//! Drawing digits from a generator on any executor: sample grids and evaluation during
//! training (on the training executor, with the model's in-graph sampler), `gan-gpu
//! sample` and `eval` (on a generator graph loaded from a checkpoint).

use std::collections::HashSet;

use crate::error::{Error, Result};
use crate::graph::runtime::Runtime;
use crate::graph::{Buf, Executor, Graph, RandomStreams, lower};
use crate::model::load::StoredGenerator;
use crate::model::{GeneratorNodes, PIXELS};

/// Digits in a training sample grid (8x8).
pub const SAMPLE_GRID: usize = 64;

/// A generator's forward pass compiled on an executor.
pub struct Sampler {
    pub nodes: GeneratorNodes,
    plan: usize,
}

impl Sampler {
    /// Compiles `nodes`' forward pass (of `graph`, the executor's graph) on `exec`.
    pub fn compile(exec: &mut dyn Executor, graph: &Graph, nodes: &GeneratorNodes) -> Result<Self> {
        let plan = exec.compile(&lower::forward(graph, &[nodes.image], &HashSet::new()))?;
        Ok(Sampler {
            nodes: nodes.clone(),
            plan,
        })
    }

    /// Images [count, 28, 28, 1] in [-1, 1] for `noise` [count, noise_dim] (and, for a
    /// class-conditional generator, `labels` [count]), a batch of the graph's size at a
    /// time; a short last batch is padded with zeros and cut off again.
    pub fn generate(
        &self,
        exec: &mut dyn Executor,
        noise: &[f32],
        labels: Option<&[u32]>,
    ) -> Result<Vec<f32>> {
        let (batch, dim) = (self.nodes.batch, self.nodes.noise_dim);
        if dim == 0 || !noise.len().is_multiple_of(dim) {
            return Err(Error::Shape {
                op: "generate",
                message: format!(
                    "{} noise values are not whole rows of the noise dimension {dim}",
                    noise.len()
                ),
            });
        }
        let count = noise.len() / dim;
        match (self.nodes.labels, labels) {
            (Some(_), Some(l)) if l.len() == count => {}
            (None, None) => {}
            (Some(_), _) => {
                return Err(Error::InvalidArgument(format!(
                    "this generator is class-conditional: it needs one label per image ({count})"
                )));
            }
            (None, Some(_)) => {
                return Err(Error::InvalidArgument(
                    "this generator is not class-conditional: it takes no labels".into(),
                ));
            }
        }
        let mut images = Vec::with_capacity(count * PIXELS);
        let mut z = vec![0.0; batch * dim];
        let mut y = vec![0.0; batch];
        for start in (0..count).step_by(batch.max(1)) {
            let n = batch.min(count - start);
            z[..n * dim].copy_from_slice(&noise[start * dim..(start + n) * dim]);
            z[n * dim..].fill(0.0);
            let root = exec.graph().storage(self.nodes.z);
            exec.write(Buf::Value(root), &z)?;
            if let (Some(node), Some(labels)) = (self.nodes.labels, labels) {
                for (slot, &label) in y.iter_mut().zip(&labels[start..start + n]) {
                    *slot = f32::from_bits(label);
                }
                y[n..].fill(f32::from_bits(0));
                let root = exec.graph().storage(node);
                exec.write(Buf::Value(root), &y)?;
            }
            exec.run(self.plan, 0)?;
            let root = exec.graph().storage(self.nodes.image);
            let out = exec.read(Buf::Value(root))?;
            images.extend_from_slice(&out[..n * PIXELS]);
        }
        Ok(images)
    }
}

/// Images per forward pass when sampling from a checkpoint.
const STORED_BATCH: usize = 1000;

/// `count` digits from a checkpoint's generator on `runtime`, with noise stream 0 of
/// `seed` (and, for a class-conditional generator, `labels`).
pub fn sample_stored(
    runtime: &Runtime,
    stored: &StoredGenerator,
    count: usize,
    seed: u64,
    labels: Option<&[u32]>,
) -> Result<Vec<f32>> {
    let noise = crate::cpu::normal_noise(seed, 0, count * stored.noise_dim);
    generate_stored(runtime, stored, &noise, labels)
}

/// Digits from a checkpoint's generator on `runtime` for the given `noise` [count,
/// noise_dim] (and `labels`).
pub fn generate_stored(
    runtime: &Runtime,
    stored: &StoredGenerator,
    noise: &[f32],
    labels: Option<&[u32]>,
) -> Result<Vec<f32>> {
    let count = noise.len() / stored.noise_dim.max(1);
    if count == 0 {
        return Ok(Vec::new());
    }
    let (graph, nodes) = stored.graph(count.min(STORED_BATCH))?;
    let mut exec = runtime.executor(&graph, vec![], RandomStreams { seed: 0 }, None)?;
    stored.write_into(exec.as_mut())?;
    let sampler = Sampler::compile(exec.as_mut(), &graph, &nodes)?;
    sampler.generate(exec.as_mut(), noise, labels)
}

/// The classes a class-conditional generator is asked to draw.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Digits {
    /// Every image of this class.
    One(u32),
    /// One row per class, in order: `count.div_ceil(classes)` images of each.
    All,
}

impl Digits {
    /// `--digit`'s value: a class number, or `all`.
    pub fn parse(text: &str) -> Result<Self> {
        if text == "all" {
            return Ok(Digits::All);
        }
        text.parse().map(Digits::One).map_err(|_| {
            Error::InvalidArgument(format!("--digit {text:?}: expected a digit 0-9 or \"all\""))
        })
    }

    /// The labels of `count` images, and the images per row of their grid, for a generator
    /// conditioned on `classes` classes.
    pub fn labels(self, count: usize, classes: usize) -> Result<(Vec<u32>, usize)> {
        match self {
            Digits::One(d) if d as usize >= classes => Err(Error::InvalidArgument(format!(
                "--digit {d}: this generator draws the digits 0-{}",
                classes - 1
            ))),
            Digits::One(d) => Ok((vec![d; count], count.clamp(1, 16))),
            Digits::All => {
                let columns = count.div_ceil(classes.max(1)).max(1);
                let labels = (0..count)
                    .map(|i| (i / columns).min(classes - 1) as u32)
                    .collect();
                Ok((labels, columns))
            }
        }
    }
}
