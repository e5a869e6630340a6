//! The model graph: an `Op` per node, built in topological order.
//!
//! A graph knows shapes and data flow, nothing about GANs or devices. [`lower`] turns
//! forward passes and reverse-mode autodiff into a flat list of [`Instr`]uctions over
//! named buffers, and each executor ([`cpu_exec`], [`gpu_exec`]) runs those.

pub mod build;
pub mod cpu_exec;
pub mod describe;
pub mod gpu_exec;
pub mod lower;
pub mod runtime;
pub mod schedule;

use rand::{Rng, RngExt};

use crate::cpu::Activation;
use crate::error::Result;
use crate::geometry::{Conv2dGeometry, ConvTranspose2dGeometry};

pub use build::{BATCH_NORM_EPSILON, BATCH_NORM_MOMENTUM, Padding};
pub use lower::{Buf, Instr, Phase};

pub type NodeId = usize;

/// Where an input node's values come from each step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InputSource {
    /// N(0, 1) noise from the counter-based generator; `slot` separates streams drawn in
    /// the same step.
    Noise { slot: u32 },
    /// A batch of dataset rows at random indices, scaled to [-1, 1].
    DataBatch,
    /// The class labels of the same rows as `DataBatch` in the same step, as u32 bit
    /// patterns in the f32 buffer.
    DataLabels,
    /// Uniform class labels in 0..classes (u32 bit patterns) from the counter-based
    /// generator, on noise stream `slot`: a class-conditional generator's fake labels.
    RandomLabels { slot: u32, classes: usize },
    /// Written by the caller (tests, sampling from given noise).
    External,
}

/// Parameter initialisers, Keras's defaults.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Init {
    /// Uniform in ±sqrt(6 / (fan_in + fan_out)).
    GlorotUniform {
        fan_in: usize,
        fan_out: usize,
    },
    Zeros,
    Ones,
    /// Uniform in ±limit (Keras's `Embedding` default is 0.05).
    Uniform {
        limit: f32,
    },
    /// The initial value of node `of` (a moving average starts where its source starts).
    CopyOf {
        of: NodeId,
    },
}

/// What a BatchNorm normalises with.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum BatchNormMode {
    /// The batch's own mean and (biased) variance; the running statistics move towards them:
    /// running = running·momentum + batch·(1 - momentum) (Keras's `training=True`).
    Training { momentum: f32 },
    /// The running statistics, unchanged (Keras's `training=False`, for sampling).
    Inference,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Op {
    Input(InputSource),
    /// A trained weight: in checkpoints, stepped by an optimizer.
    Param(Init),
    /// Values kept across steps that no optimizer trains: BatchNorm's running statistics
    /// (updated by the BatchNorm that owns them) and moving averages of weights (updated by
    /// `Instr::Ema`). In checkpoints, like parameters.
    State(Init),
    /// x [batch, in] · w [in, out] (+ b \[out\])
    Dense {
        x: NodeId,
        w: NodeId,
        b: Option<NodeId>,
    },
    /// x NHWC, w HWIO, b \[cout\]
    Conv2d {
        x: NodeId,
        w: NodeId,
        b: Option<NodeId>,
        geom: Conv2dGeometry,
    },
    /// x NHWC, w HWOI, b \[cout\], Keras semantics
    ConvTranspose2d {
        x: NodeId,
        w: NodeId,
        b: Option<NodeId>,
        geom: ConvTranspose2dGeometry,
    },
    /// Keras BatchNormalization over the last axis of x (features, or NHWC channels):
    /// y = (x - mean)/sqrt(var + epsilon)·gamma + beta, with the batch's statistics or the
    /// running ones (`mean`, `var`: State nodes) as `mode` says.
    BatchNorm {
        x: NodeId,
        gamma: NodeId,
        beta: NodeId,
        mean: NodeId,
        var: NodeId,
        epsilon: f32,
        mode: BatchNormMode,
    },
    /// Keras Dropout in training: each element kept with probability 1 - rate and scaled by
    /// 1/(1 - rate), else 0. The mask is a counter-based draw on noise stream `slot` of the
    /// step, so every executor drops the same elements, and a recomputation in a later
    /// phase of the step reuses the mask.
    Dropout {
        x: NodeId,
        rate: f32,
        slot: u32,
    },
    Activation {
        x: NodeId,
        act: Activation,
    },
    /// Same data, new shape (NHWC flatten and its inverse are free).
    Reshape {
        x: NodeId,
    },
    /// Mean binary cross-entropy of the logits [batch, 1] in rows `first..first + count`
    /// against a constant label. Its value is `[loss, mean sigmoid(those logits)]`.
    BceWithLogits {
        logits: NodeId,
        label: f32,
        first: usize,
        count: usize,
    },
    /// Mean softmax cross-entropy of logits [batch, classes] against class labels (a
    /// `DataLabels` input). Its value is `[loss, accuracy]`.
    SoftmaxCrossEntropy {
        logits: NodeId,
        labels: NodeId,
    },
    /// `table [classes, dim]` rows at `labels [batch]` (u32 bits): `[batch, dim]`
    Embedding {
        table: NodeId,
        labels: NodeId,
    },
    /// a + b, element-wise, same shapes
    Add {
        a: NodeId,
        b: NodeId,
    },
    /// Row-wise dot product of a and b [batch, n]: [batch, 1]
    RowDot {
        a: NodeId,
        b: NodeId,
    },
    /// a's rows then b's, along the first axis (the other axes equal): [batch_a + batch_b, ...]
    Concat {
        a: NodeId,
        b: NodeId,
    },
}

impl Op {
    /// The nodes this op reads.
    pub fn inputs(&self) -> Vec<NodeId> {
        match *self {
            Op::Input(_) | Op::Param(_) | Op::State(_) => vec![],
            Op::Dense { x, w, b }
            | Op::Conv2d { x, w, b, .. }
            | Op::ConvTranspose2d { x, w, b, .. } => [x, w].into_iter().chain(b).collect(),
            Op::BatchNorm {
                x,
                gamma,
                beta,
                mean,
                var,
                ..
            } => vec![x, gamma, beta, mean, var],
            Op::Activation { x, .. } | Op::Reshape { x } | Op::Dropout { x, .. } => vec![x],
            Op::BceWithLogits { logits, .. } => vec![logits],
            Op::SoftmaxCrossEntropy { logits, labels } => vec![logits, labels],
            Op::Embedding { table, labels } => vec![table, labels],
            Op::Add { a, b } | Op::RowDot { a, b } | Op::Concat { a, b } => vec![a, b],
        }
    }
}

#[derive(Debug, Clone)]
pub struct Node {
    pub name: String,
    pub op: Op,
    pub shape: Vec<usize>,
}

impl Node {
    pub fn len(&self) -> usize {
        self.shape.iter().product()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[derive(Debug, Clone, Default)]
pub struct Graph {
    pub nodes: Vec<Node>,
    /// Name prefixes of the builders in [`build`]: parameters, and op nodes.
    param_scope: String,
    node_scope: String,
    /// Under [`Graph::shadowed`]: (source prefix, shadow prefix, pairs used so far).
    shadow: Option<Shadowing>,
}

/// (source prefix, shadow prefix, the (source, shadow) pairs used so far).
type Shadowing = (String, String, Vec<(NodeId, NodeId)>);

impl Graph {
    fn push(&mut self, name: impl Into<String>, op: Op, shape: Vec<usize>) -> NodeId {
        self.nodes.push(Node {
            name: name.into(),
            op,
            shape,
        });
        self.nodes.len() - 1
    }

    pub fn shape(&self, id: NodeId) -> &[usize] {
        &self.nodes[id].shape
    }

    pub fn find(&self, name: &str) -> Option<NodeId> {
        self.nodes.iter().position(|n| n.name == name)
    }

    pub fn input(&mut self, name: &str, source: InputSource, shape: Vec<usize>) -> NodeId {
        self.push(name, Op::Input(source), shape)
    }

    pub fn param(&mut self, name: &str, init: Init, shape: Vec<usize>) -> NodeId {
        self.push(name, Op::Param(init), shape)
    }

    /// Every parameter node, in creation order.
    pub fn params(&self) -> Vec<NodeId> {
        (0..self.nodes.len())
            .filter(|&i| matches!(self.nodes[i].op, Op::Param(_)))
            .collect()
    }

    /// Every state node (see [`Op::State`]), in creation order.
    pub fn states(&self) -> Vec<NodeId> {
        (0..self.nodes.len())
            .filter(|&i| matches!(self.nodes[i].op, Op::State(_)))
            .collect()
    }

    /// The node whose buffer holds `id`'s data: reshapes share their input's storage.
    pub fn storage(&self, mut id: NodeId) -> NodeId {
        while let Op::Reshape { x } = self.nodes[id].op {
            id = x;
        }
        id
    }

    /// Initial values for every parameter and state node. Parameters draw from `rng` in
    /// creation order; states draw nothing (so adding them changes no parameter's value).
    pub fn init_params(&self, rng: &mut impl Rng) -> Vec<(NodeId, Vec<f32>)> {
        let mut values: Vec<(NodeId, Vec<f32>)> = Vec::new();
        for id in 0..self.nodes.len() {
            let n = self.nodes[id].len();
            let v = match self.nodes[id].op {
                Op::Param(Init::GlorotUniform { fan_in, fan_out }) => {
                    let limit = (6.0 / (fan_in + fan_out) as f64).sqrt() as f32;
                    (0..n).map(|_| rng.random_range(-limit..=limit)).collect()
                }
                Op::Param(Init::Uniform { limit }) => {
                    (0..n).map(|_| rng.random_range(-limit..=limit)).collect()
                }
                Op::Param(Init::Ones) | Op::State(Init::Ones) => vec![1.0; n],
                Op::Param(_) | Op::State(_) => vec![0.0; n],
                _ => continue,
            };
            values.push((id, v));
        }
        // Copies last: their sources are drawn above, whatever the creation order.
        for i in 0..values.len() {
            let id = values[i].0;
            if let Op::Param(Init::CopyOf { of }) | Op::State(Init::CopyOf { of }) =
                self.nodes[id].op
                && let Some((_, source)) = values.iter().find(|(s, _)| *s == of)
            {
                values[i].1 = source.clone();
            }
        }
        values
    }
}

/// A u8 dataset held by an executor for `DataBatch` inputs: `rows` rows of `row_len`,
/// and for `DataLabels` inputs one class label per row.
#[derive(Debug, Clone)]
pub struct Dataset {
    pub bytes: Vec<u8>,
    pub rows: usize,
    pub row_len: usize,
    pub labels: Option<Vec<u8>>,
}

/// How a run's seed becomes per-step random numbers, identically on every executor:
/// Philox stream `16·iteration + slot` for noise slot `slot` (< 15), and stream
/// `16·iteration + 15` for the batch's row indices.
#[derive(Debug, Clone, Copy)]
pub struct RandomStreams {
    pub seed: u64,
}

impl RandomStreams {
    pub const MAX_NOISE_SLOTS: u32 = 15;

    pub fn noise_stream(iteration: u64, slot: u32) -> u64 {
        debug_assert!(slot < Self::MAX_NOISE_SLOTS);
        iteration * 16 + u64::from(slot)
    }

    pub fn batch_stream(iteration: u64) -> u64 {
        iteration * 16 + 15
    }

    /// The dataset rows of `iteration`'s batch.
    pub fn batch_indices(&self, iteration: u64, batch: usize, rows: usize) -> Vec<u32> {
        crate::cpu::uniform_u32(self.seed, Self::batch_stream(iteration), batch)
            .into_iter()
            .map(|word| crate::cpu::uniform_index(word, rows as u32))
            .collect()
    }
}

/// Buffers copied back at one point of training, in the order they were asked for.
#[derive(Debug, Clone, PartialEq)]
pub struct Snapshot {
    pub tag: u64,
    pub values: Vec<Vec<f32>>,
}

/// What both executors offer: compile an instruction list once, run it every step.
pub trait Executor {
    /// Prepares `instrs` (on the GPU: pipelines, bind groups, uniforms) and returns a
    /// handle for [`Executor::run`].
    fn compile(&mut self, instrs: &[Instr]) -> Result<usize>;
    /// Runs a compiled plan for training step `iteration` (which picks the noise, the
    /// batch and Adam's step number).
    fn run(&mut self, plan: usize, iteration: u64) -> Result<()>;
    fn read(&mut self, buf: Buf) -> Result<Vec<f32>>;
    fn write(&mut self, buf: Buf, data: &[f32]) -> Result<()>;
    /// Adam's first and second moments of a parameter.
    fn read_adam(&mut self, param: NodeId) -> Result<(Vec<f32>, Vec<f32>)>;
    fn write_adam(&mut self, param: NodeId, m: &[f32], v: &[f32]) -> Result<()>;
    /// Starts copying `bufs` to the host without waiting for the GPU; the values come
    /// back from [`Executor::take_snapshots`] tagged with `tag`.
    fn snapshot(&mut self, tag: u64, bufs: &[Buf]) -> Result<()>;
    /// The snapshots that have arrived, oldest first (all pending ones when `wait`).
    fn take_snapshots(&mut self, wait: bool) -> Result<Vec<Snapshot>>;
    /// Waits until all submitted work has finished (for timing).
    fn sync(&mut self) -> Result<()>;
    fn graph(&self) -> &Graph;
    /// Changes optimizer group `group`'s learning rate from the next step on (a schedule's
    /// phases run on one executor, keeping its buffers and Adam state).
    fn set_learning_rate(&mut self, group: usize, lr: f32) -> Result<()>;
    /// Device dispatches one run of `plan` issues (`None` on the CPU executor, which has
    /// no dispatches).
    fn dispatches_per_run(&self, _plan: usize) -> Option<usize> {
        None
    }
    /// Median milliseconds of one run of `plan` over `samples` runs after a warm-up: the
    /// wall clock with a device wait, or the device's own timestamps where it has them.
    fn time_plan(&mut self, plan: usize, samples: usize) -> Result<f64> {
        self.run(plan, 0)?;
        self.sync()?;
        let mut times = Vec::with_capacity(samples);
        for _ in 0..samples {
            let start = std::time::Instant::now();
            self.run(plan, 0)?;
            self.sync()?;
            times.push(start.elapsed().as_secs_f64() * 1e3);
        }
        Ok(crate::gpu::timer::median(&mut times))
    }
}
