//! The plans the selftest checks: the trainer's own (the GAN's training step and the
//! classifier's, whose instructions carry the exact shapes every kernel runs at), and a
//! few small graphs at awkward shapes (tiles that do not divide, odd strides and
//! paddings, unequal H and W, batches of 3).

use std::sync::Arc;

use rand::{RngExt, SeedableRng, rngs::StdRng};

use crate::cpu::{Activation, AdamConfig};
use crate::error::Result;
use crate::geometry::{Conv2dGeometry, ConvTranspose2dGeometry};
use crate::graph::{Dataset, Graph, Init, InputSource, Instr, NodeId, lower};
use crate::model::classifier::{CLASSES, Classifier, ClassifierConfig};
use crate::model::gan::{Gan, PIXELS};

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

/// The GAN's training step, as `gan-gpu train` runs it.
pub fn gan_step(batch: usize, noise_dim: usize) -> Result<Plan> {
    let gan = Gan::new(batch, noise_dim)?;
    // `train`'s defaults (lr 2e-4, beta1 0.5) for both networks.
    let optimizers = vec![AdamConfig::default(); 2];
    Ok(Plan {
        name: "GAN step",
        batch,
        instrs: gan.train_step()?,
        params: gan.params(),
        losses: vec![gan.d_loss_real, gan.d_loss_fake, gan.g_loss],
        graph: gan.graph,
        optimizers,
        dataset: synthetic_dataset(PIXELS, CLASSES),
    })
}

/// The instructions of one training step of `graph`: forward to `loss`, backward to
/// `params`, one Adam step of optimizer group 0.
fn step_instrs(graph: &Graph, loss: NodeId, params: &[NodeId]) -> Result<Vec<Instr>> {
    let mut instrs = lower::forward(graph, &[loss], &Default::default());
    instrs.extend(lower::backward(graph, &[loss], params)?);
    instrs.extend(lower::adam(graph, params, 0));
    Ok(instrs)
}

/// The classifier's training step at its default batch, with its Adam settings.
pub fn classifier_step() -> Result<Plan> {
    let cfg = ClassifierConfig::default();
    let model = Classifier::new(cfg.batch_size, true)?;
    let loss = model.loss.expect("a training classifier has a loss");
    Ok(Plan {
        name: "classifier step",
        batch: cfg.batch_size,
        instrs: step_instrs(&model.graph, loss, &model.params)?,
        optimizers: vec![AdamConfig {
            lr: cfg.lr,
            beta1: 0.9,
            beta2: 0.999,
            epsilon: 1e-7,
        }],
        params: model.params,
        losses: vec![loss],
        graph: model.graph,
        dataset: synthetic_dataset(PIXELS, CLASSES),
    })
}

fn glorot(g: &mut Graph, name: &str, shape: Vec<usize>) -> NodeId {
    let (fan_in, fan_out) = (
        shape[..shape.len() - 1].iter().product(),
        shape[shape.len() - 1],
    );
    g.param(name, Init::GlorotUniform { fan_in, fan_out }, shape)
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
    let w1 = glorot(&mut g, "awkward.conv1.kernel", vec![3, 4, 5, 17]);
    let b1 = g.param("awkward.conv1.bias", Init::Zeros, vec![17]);
    let h = g.conv2d("awkward.conv1", x, w1, b1, conv1)?;
    let h = g.activation("awkward.relu1", h, Activation::Relu);
    let conv2 = Conv2dGeometry::valid(batch, conv1.out_h(), conv1.out_w(), 17, 7, 2, 3, 1, 2);
    let w2 = glorot(&mut g, "awkward.conv2.kernel", vec![2, 3, 17, 7]);
    let b2 = g.param("awkward.conv2.bias", Init::Zeros, vec![7]);
    let h = g.conv2d("awkward.conv2", h, w2, b2, conv2)?;
    let h = g.activation("awkward.relu2", h, Activation::Relu);
    let (h_h, h_w) = (conv2.out_h(), conv2.out_w());
    let convt =
        ConvTranspose2dGeometry::keras_same(batch, h_h, h_w, 7, 6, 4, 3, 3, 2, Some((1, 0)));
    let w3 = glorot(&mut g, "awkward.deconv.kernel", vec![4, 3, 6, 7]);
    let b3 = g.param("awkward.deconv.bias", Init::Zeros, vec![6]);
    let h = g.conv_transpose2d("awkward.deconv", h, w3, b3, convt)?;
    let h = g.activation("awkward.tanh", h, Activation::Tanh);
    let flat = convt.out_h * convt.out_w * 6;
    let h = g.reshape("awkward.flatten", h, vec![batch, flat])?;
    let w4 = glorot(&mut g, "awkward.dense.kernel", vec![flat, 1]);
    let b4 = g.param("awkward.dense.bias", Init::Zeros, vec![1]);
    let logits = g.dense("awkward.dense", h, w4, b4)?;
    let loss = g.bce_with_logits("awkward.loss", logits, 1.0)?;
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
    let w1 = glorot(&mut g, "awkward.dense1.kernel", vec![45, 131]);
    let b1 = g.param("awkward.dense1.bias", Init::Zeros, vec![131]);
    let h = g.dense("awkward.dense1", x, w1, b1)?;
    let h = g.activation("awkward.leaky", h, Activation::LeakyRelu(0.2));
    let w2 = glorot(&mut g, "awkward.dense2.kernel", vec![131, 13]);
    let b2 = g.param("awkward.dense2.bias", Init::Zeros, vec![13]);
    let logits = g.dense("awkward.dense2", h, w2, b2)?;
    let labels = g.input("labels", InputSource::DataLabels, vec![batch]);
    let loss = g.softmax_cross_entropy("awkward.loss", logits, labels)?;
    plan("awkward dense", batch, g, loss, synthetic_dataset(1, 13))
}

/// Noise [37, 30, 30, 1] -> Conv(8, 3x3, valid) -> Sigmoid -> Flatten -> Dense(1) -> BCE:
/// a weight gradient summed over 29,008 pixels, split into many slices.
fn long_reduction() -> Result<Plan> {
    let mut g = Graph::default();
    let batch = 37;
    let x = g.input("x", InputSource::Noise { slot: 0 }, vec![batch, 30, 30, 1]);
    let geom = Conv2dGeometry::valid(batch, 30, 30, 1, 8, 3, 3, 1, 1);
    let w1 = glorot(&mut g, "long.conv.kernel", vec![3, 3, 1, 8]);
    let b1 = g.param("long.conv.bias", Init::Zeros, vec![8]);
    let h = g.conv2d("long.conv", x, w1, b1, geom)?;
    let h = g.activation("long.sigmoid", h, Activation::Sigmoid);
    let flat = 28 * 28 * 8;
    let h = g.reshape("long.flatten", h, vec![batch, flat])?;
    let w2 = glorot(&mut g, "long.dense.kernel", vec![flat, 1]);
    let b2 = g.param("long.dense.bias", Init::Zeros, vec![1]);
    let logits = g.dense("long.dense", h, w2, b2)?;
    let loss = g.bce_with_logits("long.loss", logits, 0.0)?;
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
        instrs: step_instrs(&graph, loss, &params)?,
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
