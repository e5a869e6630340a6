//! Models as data: a [`Model`] is a graph plus what the trainer, the sampler, the bench,
//! the evaluation and the exports need to know about it. Nothing above this layer names a
//! particular network; a new model is one file with a [`ModelKind`], listed in [`MODELS`].

pub mod cgan;
pub mod classifier;
pub mod dcgan;
pub mod load;
pub mod sample;
pub mod seed;

use crate::cpu::AdamConfig;
use crate::error::{Error, Result};
use crate::graph::{Graph, Instr, NodeId, Phase, lower};

/// MNIST's images: 28x28, one channel.
pub const IMAGE_SIDE: usize = 28;
pub const PIXELS: usize = IMAGE_SIDE * IMAGE_SIDE;

/// `--ema-decay`'s default: an average over the last ~1,000 steps.
pub const DEFAULT_EMA_DECAY: f32 = 0.999;

/// The numbers `train`'s flags set for any GAN model.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ModelConfig {
    pub batch: usize,
    pub noise_dim: usize,
    /// Both networks' optimizer.
    pub adam: AdamConfig,
    /// Images per forward pass of the in-graph sampler (sample grids, evaluation).
    pub sample_batch: usize,
    /// Decay of the moving average of the generator's weights (0: none).
    pub ema_decay: f32,
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
            ema_decay: DEFAULT_EMA_DECAY,
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
/// 1] in [-1, 1], and the weights (shared by name with the training generator).
#[derive(Debug, Clone)]
pub struct GeneratorNodes {
    pub z: NodeId,
    /// Class labels (u32 bit patterns), for class-conditional models.
    pub labels: Option<NodeId>,
    pub image: NodeId,
    /// Its trained weights.
    pub params: Vec<NodeId>,
    /// Its untrained state: BatchNorm's running statistics.
    pub states: Vec<NodeId>,
    pub batch: usize,
    pub noise_dim: usize,
}

impl GeneratorNodes {
    /// Every tensor a checkpoint of this generator holds: weights, then states.
    pub fn tensors(&self) -> Vec<NodeId> {
        self.params.iter().chain(&self.states).copied().collect()
    }
}

/// The moving average of a generator's weights: the average of each of its weights and
/// states under the `ema.` prefix, and a sampler that draws with them.
#[derive(Debug, Clone)]
pub struct Ema {
    pub decay: f32,
    /// (weight or state, its average), every one of the generator's.
    pub pairs: Vec<(NodeId, NodeId)>,
    pub sampler: GeneratorNodes,
}

/// The prefix of the moving averages' names: `ema.generator.dense.kernel` averages
/// `generator.dense.kernel`.
pub const EMA_PREFIX: &str = "ema.";

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
    /// The moving average of the generator's weights, with `--ema-decay` above 0.
    pub ema: Option<Ema>,
}

impl Model {
    /// One training iteration as an instruction list: the phases, then the moving
    /// average's step (so it averages the weights after this iteration's update).
    pub fn train_step(&self) -> Result<Vec<Instr>> {
        let mut step = lower::training_step(&self.graph, &self.phases)?;
        if let Some(ema) = &self.ema {
            step.extend(lower::ema(&self.graph, &ema.pairs, ema.decay));
        }
        Ok(step)
    }

    /// Adds the moving average of the generator's weights: the model's own generator
    /// builder run again with every `generator.*` weight and state shadowed by an
    /// `ema.generator.*` state that starts as its copy.
    fn add_ema(&mut self, decay: f32) -> Result<()> {
        let (batch, noise_dim) = (self.sampler.batch, self.sampler.noise_dim);
        let build = self.kind.generator;
        let (mut sampler, pairs) =
            self.graph
                .shadowed("generator", &format!("{EMA_PREFIX}generator"), |g| {
                    build(g, "ema_sample", batch, noise_dim)
                })?;
        let shadows_of = |sources: &[NodeId]| -> Vec<NodeId> {
            pairs
                .iter()
                .filter(|(source, _)| sources.contains(source))
                .map(|&(_, shadow)| shadow)
                .collect()
        };
        sampler.params = shadows_of(&sampler.params);
        sampler.states = shadows_of(&sampler.states);
        self.ema = Some(Ema {
            decay,
            pairs,
            sampler,
        });
        Ok(())
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
    /// The training graph (without the moving average, which [`ModelKind::build`] adds).
    pub training: fn(&'static ModelKind, &ModelConfig) -> Result<Model>,
    /// The generator in inference mode in `graph`, its inputs (written by the caller)
    /// named under node scope `nodes`, its weights `generator.*`: the in-graph samplers,
    /// and alone in a graph for sampling from checkpoints and the exports.
    pub generator: fn(
        graph: &mut Graph,
        nodes: &str,
        batch: usize,
        noise_dim: usize,
    ) -> Result<GeneratorNodes>,
    /// Iterations of `train`'s default run.
    pub default_iterations: u64,
}

impl ModelKind {
    /// The training graph, with the generator's moving average when `config.ema_decay` is
    /// above 0.
    pub fn build(&'static self, config: &ModelConfig) -> Result<Model> {
        let mut model = (self.training)(self, config)?;
        if config.ema_decay > 0.0 {
            model.add_ema(config.ema_decay)?;
        }
        Ok(model)
    }

    /// The generator alone in a graph, its nodes under `generator`.
    pub fn generator_graph(
        &self,
        batch: usize,
        noise_dim: usize,
    ) -> Result<(Graph, GeneratorNodes)> {
        let mut graph = Graph::default();
        let nodes = (self.generator)(&mut graph, "generator", batch, noise_dim)?;
        Ok((graph, nodes))
    }
}

impl std::fmt::Debug for ModelKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name)
    }
}

/// Every model, the default first: `cgan`, whose default run draws digits a person reads
/// (the README's quality section has the measurements that chose it).
pub const MODELS: &[&ModelKind] = &[&cgan::CGAN, &seed::SEED, &dcgan::DCGAN];

/// The model `train`, `bench` and `plan` use without `--model`.
pub const DEFAULT_MODEL: &ModelKind = MODELS[0];

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
