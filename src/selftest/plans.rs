//! The plans the selftest checks: the trainer's own (the GAN's training step and the
//! classifier's, whose instructions carry the exact shapes every kernel runs at), and a
//! few small graphs at awkward shapes (tiles that do not divide, odd strides and
//! paddings, unequal H and W, batches of 3).

use std::sync::Arc;

use rand::{RngExt, SeedableRng, rngs::StdRng};

use crate::cpu::{Activation, AdamConfig};
use crate::error::Result;
use crate::eval::classifier::ClassifierConfig;
use crate::geometry::{Conv2dGeometry, ConvTranspose2dGeometry};
use crate::graph::{Dataset, Graph, InputSource, Instr, NodeId, Padding, Phase, lower};
use crate::model::classifier::{CLASSES, Classifier};
use crate::model::{MODELS, ModelConfig, PIXELS};

/// A graph, its training step, and what running it needs.
pub struct Plan {
    pub name: &'static str,
    pub batch: usize,
    pub graph: Graph,
    pub instrs: Vec<Instr>,
    /// Indexed by the optimizer group of each `Instr::Adam`.
    pub optimizers: Vec<AdamConfig>,
    pub dataset: Arc<Dataset>,
    /// Every trained parameter, and the loss nodes ([loss, statistic] each).
    pub params: Vec<NodeId>,
    pub losses: Vec<NodeId>,
}

/// Rows of seeded random bytes (and labels below `classes`) standing in for MNIST: the
/// selftest needs no data files, and parity does not care what the pixels show.
fn synthetic_dataset(row_len: usize, classes: usize) -> Arc<Dataset> {
    let rows = 1000;
    let mut rng = StdRng::seed_from_u64(0x5e1f);
    Arc::new(Dataset {
        bytes: (0..rows * row_len).map(|_| rng.random()).collect(),
        rows,
        row_len,
        labels: Some(
            (0..rows)
                .map(|_| rng.random_range(0..classes as u8))
                .collect(),
        ),
    })
}

/// Every model's training step at `batch`, as `gan-gpu train` runs it.
pub fn model_steps(batch: usize, noise_dim: usize) -> Result<Vec<Plan>> {
    MODELS
        .iter()
        .map(|kind| {
            let model = kind.build(&ModelConfig::new(batch, noise_dim))?;
            Ok(Plan {
                name: kind.name,
                batch,
                instrs: model.train_step()?,
                params: model.params(),
                losses: model.logged_nodes(),
                optimizers: model.optimizers(),
                graph: model.graph,
                dataset: synthetic_dataset(PIXELS, CLASSES),
            })
        })
        .collect()
}

/// The classifier's training step at its default batch, with its Adam settings.
pub fn classifier_step() -> Result<Plan> {
    let cfg = ClassifierConfig::default();
    let model = Classifier::new(cfg.batch_size, true)?;
    Ok(Plan {
        name: "classifier step",
        batch: cfg.batch_size,
        instrs: lower::training_step(&model.graph, &model.phases()?)?,
        optimizers: vec![AdamConfig {
            lr: cfg.lr,
            beta1: 0.9,
            beta2: 0.999,
            epsilon: 1e-7,
        }],
        params: model.params,
        losses: model.loss.into_iter().collect(),
        graph: model.graph,
        dataset: synthetic_dataset(PIXELS, CLASSES),
    })
}

/// Noise [3, 9, 7, 5] -> Conv(17, 3x4, strides 2x1, pads 2/0/1/3) -> ReLU -> Conv(7,
/// 2x3, strides 1x2, valid) -> ReLU -> ConvTranspose(6, 4x3, strides 3x2, 'same', output
/// padding (1, 0)) -> Tanh -> Flatten -> Dense(1) -> BCE: odd sizes, unequal H and W
/// everywhere, channels off every tile, and every convolution direction.
fn awkward_conv() -> Result<Plan> {
    let mut g = Graph::default();
    let batch = 3;
    let x = g.input("x", InputSource::Noise { slot: 0 }, vec![batch, 9, 7, 5]);
    let conv1 = Conv2dGeometry {
        batch,
        in_h: 9,
        in_w: 7,
        in_c: 5,
        out_c: 17,
        k_h: 3,
        k_w: 4,
        stride_h: 2,
        stride_w: 1,
        pad_top: 2,
        pad_bottom: 0,
        pad_left: 1,
        pad_right: 3,
    };
    let loss = g.scoped("awkward", "awkward", |g| {
        let h = g.conv2d_with("conv1", x, conv1)?;
        let h = g.activation("relu1", h, Activation::Relu);
        let conv2 = Conv2dGeometry::valid(batch, conv1.out_h(), conv1.out_w(), 17, 7, 2, 3, 1, 2);
        let h = g.conv2d_with("conv2", h, conv2)?;
        let h = g.activation("relu2", h, Activation::Relu);
        let (h_h, h_w) = (conv2.out_h(), conv2.out_w());
        let convt =
            ConvTranspose2dGeometry::keras_same(batch, h_h, h_w, 7, 6, 4, 3, 3, 2, Some((1, 0)));
        let h = g.conv_transpose2d_with("deconv", h, convt)?;
        let h = g.activation("tanh", h, Activation::Tanh);
        let h = g.flatten("flatten", h)?;
        let logits = g.dense("dense", h, 1)?;
        g.bce_with_logits("loss", logits, 1.0)
    })?;
    plan(
        "awkward conv",
        batch,
        g,
        loss,
        synthetic_dataset(1, CLASSES),
    )
}

/// Noise [67, 45] -> Dense(131) -> LeakyReLU(0.2) -> Dense(13) -> softmax cross-entropy
/// against 67 dataset labels: GEMMs of no tile's multiple, a thin product, 13 classes.
fn awkward_dense() -> Result<Plan> {
    let mut g = Graph::default();
    let batch = 67;
    let x = g.input("x", InputSource::Noise { slot: 0 }, vec![batch, 45]);
    let labels = g.input("labels", InputSource::DataLabels, vec![batch]);
    let loss = g.scoped("awkward", "awkward", |g| {
        let h = g.dense("dense1", x, 131)?;
        let h = g.activation("leaky", h, Activation::LeakyRelu(0.2));
        let logits = g.dense("dense2", h, 13)?;
        g.softmax_cross_entropy("loss", logits, labels)
    })?;
    plan("awkward dense", batch, g, loss, synthetic_dataset(1, 13))
}

/// Noise [37, 30, 30, 1] -> Conv(8, 3x3, valid) -> Sigmoid -> Flatten -> Dense(1) -> BCE:
/// a weight gradient summed over 29,008 pixels, split into many slices.
fn long_reduction() -> Result<Plan> {
    let mut g = Graph::default();
    let batch = 37;
    let x = g.input("x", InputSource::Noise { slot: 0 }, vec![batch, 30, 30, 1]);
    let loss = g.scoped("long", "long", |g| {
        let h = g.conv2d("conv", x, 8, (3, 3), (1, 1), Padding::Valid)?;
        let h = g.activation("sigmoid", h, Activation::Sigmoid);
        let h = g.flatten("flatten", h)?;
        let logits = g.dense("dense", h, 1)?;
        g.bce_with_logits("loss", logits, 0.0)
    })?;
    plan(
        "long reduction",
        batch,
        g,
        loss,
        synthetic_dataset(1, CLASSES),
    )
}

fn plan(
    name: &'static str,
    batch: usize,
    graph: Graph,
    loss: NodeId,
    dataset: Arc<Dataset>,
) -> Result<Plan> {
    let params = graph.params();
    Ok(Plan {
        name,
        batch,
        instrs: lower::training_step(
            &graph,
            &[Phase {
                losses: vec![loss],
                params: params.clone(),
                group: 0,
            }],
        )?,
        optimizers: vec![AdamConfig::default()],
        params,
        losses: vec![loss],
        graph,
        dataset,
    })
}

/// The awkward-shape plans.
pub fn awkward() -> Result<Vec<Plan>> {
    Ok(vec![awkward_conv()?, awkward_dense()?, long_reduction()?])
}
