//! The MNIST GAN (the classic Keras example, corrected) as a graph, and its training step
//! as one instruction list.

use std::collections::HashSet;

use crate::cpu::Activation;
use crate::error::Result;
use crate::geometry::{Conv2dGeometry, ConvTranspose2dGeometry};
use crate::graph::{Graph, Init, InputSource, Instr, NodeId, Op, lower};

pub const IMAGE_SIDE: usize = 28;
pub const PIXELS: usize = IMAGE_SIDE * IMAGE_SIDE;
/// Optimizer groups in `Instr::Adam`.
pub const D_OPTIMIZER: usize = 0;
pub const G_OPTIMIZER: usize = 1;

/// The generator's parameters, by name and shape, in graph order. Names are stable: they
/// key checkpoints.
pub struct Generator {
    pub z: NodeId,
    pub image: NodeId,
    pub params: Vec<NodeId>,
}

fn glorot(
    graph: &mut Graph,
    name: &str,
    shape: Vec<usize>,
    fan_in: usize,
    fan_out: usize,
) -> NodeId {
    graph.param(name, Init::GlorotUniform { fan_in, fan_out }, shape)
}

/// Dense(noise -> 7·7·128) -> reshape (7,7,128) -> ConvTranspose(64, 5x5, s2, same)
/// -> ReLU -> ConvTranspose(1, 5x5, s2, same) -> tanh: [batch, 28, 28, 1] in [-1, 1].
pub fn generator(
    graph: &mut Graph,
    z: NodeId,
    batch: usize,
    noise_dim: usize,
) -> Result<Generator> {
    let seed_c = 128;
    let dense_w = glorot(
        graph,
        "generator.dense.kernel",
        vec![noise_dim, 7 * 7 * seed_c],
        noise_dim,
        7 * 7 * seed_c,
    );
    let dense_b = graph.param("generator.dense.bias", Init::Zeros, vec![7 * 7 * seed_c]);
    // Keras's fans for a (kh, kw, a, b) kernel are kh·kw·a and kh·kw·b.
    let t1_w = glorot(
        graph,
        "generator.deconv1.kernel",
        vec![5, 5, 64, seed_c],
        25 * 64,
        25 * seed_c,
    );
    let t1_b = graph.param("generator.deconv1.bias", Init::Zeros, vec![64]);
    let t2_w = glorot(
        graph,
        "generator.deconv2.kernel",
        vec![5, 5, 1, 64],
        25,
        25 * 64,
    );
    let t2_b = graph.param("generator.deconv2.bias", Init::Zeros, vec![1]);

    let h = graph.dense("generator.dense", z, dense_w, dense_b)?;
    let h = graph.reshape("generator.reshape", h, vec![batch, 7, 7, seed_c])?;
    let g1 = ConvTranspose2dGeometry::keras_same(batch, 7, 7, seed_c, 64, 5, 5, 2, 2, None);
    let h = graph.conv_transpose2d("generator.deconv1", h, t1_w, t1_b, g1)?;
    let h = graph.activation("generator.relu1", h, Activation::Relu);
    let g2 = ConvTranspose2dGeometry::keras_same(batch, 14, 14, 64, 1, 5, 5, 2, 2, None);
    let h = graph.conv_transpose2d("generator.deconv2", h, t2_w, t2_b, g2)?;
    let image = graph.activation("generator.tanh", h, Activation::Tanh);
    Ok(Generator {
        z,
        image,
        params: vec![dense_w, dense_b, t1_w, t1_b, t2_w, t2_b],
    })
}

/// The discriminator's parameters, created once and applied to several inputs.
pub struct Discriminator {
    pub params: Vec<NodeId>,
}

impl Discriminator {
    pub fn new(graph: &mut Graph) -> Self {
        let c1_w = glorot(
            graph,
            "discriminator.conv1.kernel",
            vec![3, 3, 1, 32],
            9,
            9 * 32,
        );
        let c1_b = graph.param("discriminator.conv1.bias", Init::Zeros, vec![32]);
        let c2_w = glorot(
            graph,
            "discriminator.conv2.kernel",
            vec![3, 3, 32, 64],
            9 * 32,
            9 * 64,
        );
        let c2_b = graph.param("discriminator.conv2.bias", Init::Zeros, vec![64]);
        let d_w = glorot(
            graph,
            "discriminator.dense.kernel",
            vec![6 * 6 * 64, 1],
            6 * 6 * 64,
            1,
        );
        let d_b = graph.param("discriminator.dense.bias", Init::Zeros, vec![1]);
        Discriminator {
            params: vec![c1_w, c1_b, c2_w, c2_b, d_w, d_b],
        }
    }

    /// Conv(32, 3x3, s2, valid) -> ReLU -> Conv(64, 3x3, s2, valid) -> ReLU -> Flatten
    /// -> Dense(1): a logit per image [batch, 1] (the sigmoid lives in the loss).
    pub fn apply(&self, graph: &mut Graph, tag: &str, x: NodeId, batch: usize) -> Result<NodeId> {
        let &[c1_w, c1_b, c2_w, c2_b, d_w, d_b] = self.params.as_slice() else {
            unreachable!("Discriminator::new creates six parameters")
        };
        let g1 = Conv2dGeometry::valid(batch, 28, 28, 1, 32, 3, 3, 2, 2);
        let h = graph.conv2d(&format!("discriminator.{tag}.conv1"), x, c1_w, c1_b, g1)?;
        let h = graph.activation(&format!("discriminator.{tag}.relu1"), h, Activation::Relu);
        let g2 = Conv2dGeometry::valid(batch, 13, 13, 32, 64, 3, 3, 2, 2);
        let h = graph.conv2d(&format!("discriminator.{tag}.conv2"), h, c2_w, c2_b, g2)?;
        let h = graph.activation(&format!("discriminator.{tag}.relu2"), h, Activation::Relu);
        let h = graph.reshape(
            &format!("discriminator.{tag}.flatten"),
            h,
            vec![batch, 6 * 6 * 64],
        )?;
        graph.dense(&format!("discriminator.{tag}.dense"), h, d_w, d_b)
    }
}

/// The whole training graph: G(z), D(real), D(G(z)) and the three losses.
pub struct Gan {
    pub graph: Graph,
    pub batch: usize,
    pub noise_dim: usize,
    pub generator: Generator,
    pub discriminator: Discriminator,
    pub real: NodeId,
    /// BCE(D(real), 1), BCE(D(G(z)), 0): the discriminator's two losses.
    pub d_loss_real: NodeId,
    pub d_loss_fake: NodeId,
    /// BCE(D(G(z)), 1): the generator's non-saturating loss.
    pub g_loss: NodeId,
}

impl Gan {
    pub fn new(batch: usize, noise_dim: usize) -> Result<Self> {
        let mut graph = Graph::default();
        let z = graph.input("z", InputSource::Noise { slot: 0 }, vec![batch, noise_dim]);
        let generator = generator(&mut graph, z, batch, noise_dim)?;
        let discriminator = Discriminator::new(&mut graph);
        let real = graph.input(
            "real",
            InputSource::DataBatch,
            vec![batch, IMAGE_SIDE, IMAGE_SIDE, 1],
        );
        let real_logits = discriminator.apply(&mut graph, "real", real, batch)?;
        let fake_logits = discriminator.apply(&mut graph, "fake", generator.image, batch)?;
        let d_loss_real = graph.bce_with_logits("d_loss_real", real_logits, 1.0)?;
        let d_loss_fake = graph.bce_with_logits("d_loss_fake", fake_logits, 0.0)?;
        let g_loss = graph.bce_with_logits("g_loss", fake_logits, 1.0)?;
        Ok(Gan {
            graph,
            batch,
            noise_dim,
            generator,
            discriminator,
            real,
            d_loss_real,
            d_loss_fake,
            g_loss,
        })
    }

    /// One iteration: a discriminator step on the sum of its real and fake losses (the
    /// fake batch is a constant for it), then a generator step through the updated
    /// discriminator on the same fake batch with label 1.
    pub fn train_step(&self) -> Result<Vec<Instr>> {
        let g = &self.graph;
        let d_params = &self.discriminator.params;
        let d_losses = [self.d_loss_real, self.d_loss_fake];
        let mut plan = lower::forward(g, &d_losses, &HashSet::new());
        plan.extend(lower::backward(g, &d_losses, d_params)?);
        plan.extend(lower::adam(g, d_params, D_OPTIMIZER));
        // Only what depends on the discriminator changed; G(z) is reused as it is.
        let unchanged: HashSet<NodeId> = (0..g.nodes.len())
            .filter(|&id| !depends_on(g, id, d_params))
            .collect();
        plan.extend(lower::forward(g, &[self.g_loss], &unchanged));
        plan.extend(lower::backward(g, &[self.g_loss], &self.generator.params)?);
        plan.extend(lower::adam(g, &self.generator.params, G_OPTIMIZER));
        Ok(plan)
    }

    /// All parameters, generator first, in a stable order.
    pub fn params(&self) -> Vec<NodeId> {
        let mut all = self.generator.params.clone();
        all.extend(&self.discriminator.params);
        all
    }
}

/// Whether `id` is one of `sources` or computed from one.
fn depends_on(graph: &Graph, id: NodeId, sources: &[NodeId]) -> bool {
    sources.contains(&id)
        || match graph.nodes[id].op {
            Op::Input(_) | Op::Param(_) => false,
            ref op => op.inputs().iter().any(|&i| depends_on(graph, i, sources)),
        }
}

/// A generator alone, fed by an external noise input, for sampling from a checkpoint.
pub fn sampler(batch: usize, noise_dim: usize) -> Result<(Graph, Generator)> {
    let mut graph = Graph::default();
    let z = graph.input("z", InputSource::External, vec![batch, noise_dim]);
    let generator = generator(&mut graph, z, batch, noise_dim)?;
    Ok((graph, generator))
}
