//! `--model seed`: the classic Keras MNIST GAN, corrected (see the README for the four
//! fixes). Every size below the input comes from the layer builders.

use crate::cpu::Activation;
use crate::error::Result;
use crate::graph::{Graph, InputSource, NodeId, Padding, Phase};
use crate::model::{GeneratorNodes, IMAGE_SIDE, Logged, Model, ModelConfig, ModelKind, ParamGroup};

pub static SEED: ModelKind = ModelKind {
    name: "seed",
    about: "the classic Keras MNIST GAN, corrected",
    classes: None,
    training,
    generator: external_generator,
    default_iterations: 50_000,
};

/// Channels of the generator's first feature map, which is a quarter of the image's side
/// (two stride-2 transposed convolutions follow).
const SEED_CHANNELS: usize = 128;

/// Dense(noise -> 7·7·128) -> reshape (7, 7, 128) -> ConvTranspose(64, 5x5, s2, same)
/// -> ReLU -> ConvTranspose(1, 5x5, s2, same) -> tanh: [batch, 28, 28, 1] in [-1, 1].
pub fn generator(g: &mut Graph, z: NodeId) -> Result<NodeId> {
    let h = g.dense("dense", z, SEED_UNITS)?;
    generator_head(g, h)
}

/// Side of the generator's first feature map and the units of its dense layer.
const SEED_SIDE: usize = IMAGE_SIDE / 4;
pub const SEED_UNITS: usize = SEED_SIDE * SEED_SIDE * SEED_CHANNELS;

/// The generator after its dense layer: [batch, 7·7·128] -> the image.
pub fn generator_head(g: &mut Graph, h: NodeId) -> Result<NodeId> {
    let side = SEED_SIDE;
    let h = g.unflatten("reshape", h, (side, side, SEED_CHANNELS))?;
    let h = g.conv_transpose2d("deconv1", h, 64, (5, 5), (2, 2), Padding::Same)?;
    let h = g.activation("relu1", h, Activation::Relu);
    let h = g.conv_transpose2d("deconv2", h, 1, (5, 5), (2, 2), Padding::Same)?;
    Ok(g.activation("tanh", h, Activation::Tanh))
}

/// Conv(32, 3x3, s2, valid) -> ReLU -> Conv(64, 3x3, s2, valid) -> ReLU -> Flatten
/// -> Dense(1): a logit per image [batch, 1] (the sigmoid lives in the loss).
pub fn discriminator(g: &mut Graph, x: NodeId) -> Result<NodeId> {
    let h = discriminator_features(g, x)?;
    g.dense("dense", h, 1)
}

/// The discriminator up to its dense layer: flattened features [batch, 6·6·64].
pub fn discriminator_features(g: &mut Graph, x: NodeId) -> Result<NodeId> {
    let h = g.conv2d("conv1", x, 32, (3, 3), (2, 2), Padding::Valid)?;
    let h = g.activation("relu1", h, Activation::Relu);
    let h = g.conv2d("conv2", h, 64, (3, 3), (2, 2), Padding::Valid)?;
    let h = g.activation("relu2", h, Activation::Relu);
    g.flatten("flatten", h)
}

/// The parameters whose names start with `prefix.`, in creation order.
pub fn params_under(g: &Graph, prefix: &str) -> Vec<NodeId> {
    let prefix = format!("{prefix}.");
    g.params()
        .into_iter()
        .filter(|&id| g.nodes[id].name.starts_with(&prefix))
        .collect()
}

/// The state nodes whose names start with `prefix.`, in creation order.
pub fn states_under(g: &Graph, prefix: &str) -> Vec<NodeId> {
    let prefix = format!("{prefix}.");
    g.states()
        .into_iter()
        .filter(|&id| g.nodes[id].name.starts_with(&prefix))
        .collect()
}

/// The generator fed by caller-written noise `[batch, noise_dim]`, under node scope
/// `nodes` (its parameters are always `generator.*`).
pub fn external_generator(
    g: &mut Graph,
    nodes: &str,
    batch: usize,
    noise_dim: usize,
) -> Result<GeneratorNodes> {
    let z = g.input(
        &format!("{nodes}.z"),
        InputSource::External,
        vec![batch, noise_dim],
    );
    let image = g.scoped("generator", nodes, |g| generator(g, z))?;
    Ok(GeneratorNodes {
        z,
        labels: None,
        image,
        params: params_under(g, "generator"),
        states: states_under(g, "generator"),
        batch,
        noise_dim,
    })
}

/// Optimizer groups, in the order of `Instr::Adam`'s `group`.
pub const D_GROUP: usize = 0;
pub const G_GROUP: usize = 1;

/// The losses of a GAN's iteration: a discriminator step on the sum of its real and fake
/// losses (the fake batch is a constant for it), then a generator step through the updated
/// discriminator on the same fake batch with label 1 (the non-saturating loss). Logged as
/// loss.csv's `d_loss_real,d_loss_fake,g_loss,d_real_mean,d_fake_mean`.
pub fn gan_step(
    g: &mut Graph,
    real_logits: NodeId,
    fake_logits: NodeId,
) -> Result<(Vec<Phase>, Vec<Logged>)> {
    let d_loss_real = g.bce_with_logits("d_loss_real", real_logits, 1.0)?;
    let d_loss_fake = g.bce_with_logits("d_loss_fake", fake_logits, 0.0)?;
    let g_loss = g.bce_with_logits("g_loss", fake_logits, 1.0)?;
    Ok(gan_phases(g, [d_loss_real, d_loss_fake, g_loss]))
}

/// [`gan_step`] with the discriminator's step on `both_logits`, its logits of
/// [real; fake] (`Graph::concat`) as one batch of 2·`batch`, and the generator's on
/// `fake_logits`, the discriminator applied to the fake batch alone.
///
/// One batch of 2·batch does the same maths as two when no layer of the discriminator
/// mixes samples (no BatchNorm), with half the launches and wider ones, and its weight
/// gradients sum the two batches' in one pass. The generator's step goes through the
/// updated discriminator, so it needs a pass of its own, on the fake batch only.
pub fn gan_step_on_both(
    g: &mut Graph,
    both_logits: NodeId,
    batch: usize,
    fake_logits: NodeId,
) -> Result<(Vec<Phase>, Vec<Logged>)> {
    let d_loss_real = g.bce_with_logits_rows("d_loss_real", both_logits, 1.0, 0..batch)?;
    let fake_rows = batch..2 * batch;
    let d_loss_fake = g.bce_with_logits_rows("d_loss_fake", both_logits, 0.0, fake_rows)?;
    let g_loss = g.bce_with_logits("g_loss", fake_logits, 1.0)?;
    Ok(gan_phases(g, [d_loss_real, d_loss_fake, g_loss]))
}

/// The two phases and the logged columns of a GAN's iteration, from its three losses.
fn gan_phases(
    g: &Graph,
    [d_loss_real, d_loss_fake, g_loss]: [NodeId; 3],
) -> (Vec<Phase>, Vec<Logged>) {
    let phases = vec![
        Phase {
            losses: vec![d_loss_real, d_loss_fake],
            params: params_under(g, "discriminator"),
            group: D_GROUP,
        },
        Phase {
            losses: vec![g_loss],
            params: params_under(g, "generator"),
            group: G_GROUP,
        },
    ];
    let logged = |column, label, node, index| Logged {
        column,
        label,
        node,
        index,
    };
    let logged = vec![
        logged("d_loss_real", "D loss real", d_loss_real, 0),
        logged("d_loss_fake", "fake", d_loss_fake, 0),
        logged("g_loss", "G loss", g_loss, 0),
        logged("d_real_mean", "D(x)", d_loss_real, 1),
        logged("d_fake_mean", "D(G(z))", d_loss_fake, 1),
    ];
    (phases, logged)
}

/// The optimizer groups of a GAN whose parameters are `discriminator.*` and `generator.*`,
/// indexed by [`D_GROUP`] and [`G_GROUP`].
pub fn gan_groups(g: &Graph, config: &ModelConfig) -> Vec<ParamGroup> {
    vec![
        ParamGroup {
            name: "discriminator",
            params: params_under(g, "discriminator"),
            adam: config.adam,
        },
        ParamGroup {
            name: "generator",
            params: params_under(g, "generator"),
            adam: config.adam,
        },
    ]
}

/// G(z), D([real; G(z)]), D(G(z)), the three losses, and a sampler sharing G's weights.
fn training(kind: &'static ModelKind, config: &ModelConfig) -> Result<Model> {
    let mut g = Graph::default();
    let (batch, noise_dim) = (config.batch, config.noise_dim);
    let z = g.input("z", InputSource::Noise { slot: 0 }, vec![batch, noise_dim]);
    let fake = g.scoped("generator", "generator", |g| generator(g, z))?;
    let real = g.input(
        "real",
        InputSource::DataBatch,
        vec![batch, IMAGE_SIDE, IMAGE_SIDE, 1],
    );
    let both = g.concat("real_and_fake", real, fake)?;
    let both_logits = g.scoped("discriminator", "discriminator.both", |g| {
        discriminator(g, both)
    })?;
    let fake_logits = g.scoped("discriminator", "discriminator.fake", |g| {
        discriminator(g, fake)
    })?;
    let (phases, logged) = gan_step_on_both(&mut g, both_logits, batch, fake_logits)?;
    let sampler = external_generator(&mut g, "sample", config.sample_batch, noise_dim)?;
    Ok(Model {
        kind,
        groups: gan_groups(&g, config),
        graph: g,
        config: *config,
        phases,
        logged,
        sampler,
        ema: None,
    })
}
