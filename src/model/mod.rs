//! Models as data: a [`Model`] is a graph plus what the trainer, the sampler, the bench,
//! the evaluation and the exports need to know about it. Nothing above this layer names a
//! particular network; a new model is one file with a [`ModelKind`], listed in [`MODELS`].

pub mod cgan;
pub mod classifier;
pub mod load;
pub mod sample;
pub mod seed;

use crate::cpu::AdamConfig;
use crate::error::{Error, Result};
use crate::graph::{Graph, Instr, NodeId, Phase, lower};

/// MNIST's images: 28x28, one channel.
pub const IMAGE_SIDE: usize = 28;
pub const PIXELS: usize = IMAGE_SIDE * IMAGE_SIDE;

/// The numbers `train`'s flags set for any GAN model.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ModelConfig {
    pub batch: usize,
    pub noise_dim: usize,
    /// Both networks' optimizer.
    pub adam: AdamConfig,
    /// Images per forward pass of the in-graph sampler (sample grids, evaluation).
    pub sample_batch: usize,
}

impl ModelConfig {
    /// `batch` and `noise_dim` with `train`'s other defaults (Adam lr 2e-4, beta1 0.5,
    /// one sample grid per sampler pass).
    pub fn new(batch: usize, noise_dim: usize) -> Self {
        ModelConfig {
            batch,
            noise_dim,
            adam: AdamConfig::default(),
            sample_batch: sample::SAMPLE_GRID,
        }
    }
}

/// Parameters stepped by one optimizer (one Adam state: step counter, hyper-parameters).
#[derive(Debug, Clone)]
pub struct ParamGroup {
    pub name: &'static str,
    pub params: Vec<NodeId>,
    pub adam: AdamConfig,
}

/// A value the trainer logs: column `column` of loss.csv is element `index` of `node`.
#[derive(Debug, Clone, Copy)]
pub struct Logged {
    pub column: &'static str,
    /// Its name on the progress line.
    pub label: &'static str,
    pub node: NodeId,
    pub index: usize,
}

/// A generator inside a graph: inputs the caller writes, the image output [batch, 28, 28,
/// 1] in [-1, 1], and the parameters (shared by name with the training generator).
#[derive(Debug, Clone)]
pub struct GeneratorNodes {
    pub z: NodeId,
    /// Class labels (u32 bit patterns), for class-conditional models.
    pub labels: Option<NodeId>,
    pub image: NodeId,
    pub params: Vec<NodeId>,
    pub batch: usize,
    pub noise_dim: usize,
}

/// A model's training graph and everything the runtime's consumers need about it.
pub struct Model {
    pub kind: &'static ModelKind,
    pub graph: Graph,
    pub config: ModelConfig,
    /// Optimizer groups; `Phase::group` and the executors' optimizer lists index them.
    pub groups: Vec<ParamGroup>,
    /// One training iteration, phase by phase.
    pub phases: Vec<Phase>,
    pub logged: Vec<Logged>,
    /// The generator applied to caller-written inputs, sharing the trained weights, so
    /// sample grids and evaluation run on the training executor.
    pub sampler: GeneratorNodes,
}

impl Model {
    /// One training iteration as an instruction list.
    pub fn train_step(&self) -> Result<Vec<Instr>> {
        lower::training_step(&self.graph, &self.phases)
    }

    /// Each optimizer group's Adam settings, indexed by group.
    pub fn optimizers(&self) -> Vec<AdamConfig> {
        self.groups.iter().map(|g| g.adam).collect()
    }

    /// Every parameter, in creation order: the checkpoint's tensors.
    pub fn params(&self) -> Vec<NodeId> {
        self.graph.params()
    }

    /// The distinct nodes behind [`Model::logged`], in first-use order.
    pub fn logged_nodes(&self) -> Vec<NodeId> {
        let mut nodes: Vec<NodeId> = Vec::new();
        for l in &self.logged {
            if !nodes.contains(&l.node) {
                nodes.push(l.node);
            }
        }
        nodes
    }
}

/// A model the CLI can name.
pub struct ModelKind {
    /// `--model` value, and the `model` entry of its checkpoints.
    pub name: &'static str,
    pub about: &'static str,
    /// Classes the generator is conditioned on (`None`: unconditional).
    pub classes: Option<usize>,
    /// The training graph.
    pub training: fn(&'static ModelKind, &ModelConfig) -> Result<Model>,
    /// The generator alone, fed by the caller, for sampling and the exports.
    pub generator: fn(batch: usize, noise_dim: usize) -> Result<(Graph, GeneratorNodes)>,
}

impl ModelKind {
    pub fn build(&'static self, config: &ModelConfig) -> Result<Model> {
        (self.training)(self, config)
    }

    pub fn generator_graph(
        &self,
        batch: usize,
        noise_dim: usize,
    ) -> Result<(Graph, GeneratorNodes)> {
        (self.generator)(batch, noise_dim)
    }
}

impl std::fmt::Debug for ModelKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name)
    }
}

/// Every model, the default first.
pub const MODELS: &[&ModelKind] = &[&seed::SEED, &cgan::CGAN];

/// The model called `name`, or an error listing the ones there are.
pub fn kind(name: &str) -> Result<&'static ModelKind> {
    MODELS
        .iter()
        .copied()
        .find(|k| k.name == name)
        .ok_or_else(|| {
            let names: Vec<&str> = MODELS.iter().map(|k| k.name).collect();
            Error::InvalidArgument(format!(
                "unknown model {name:?}; the models are {}",
                names.join(", ")
            ))
        })
}
