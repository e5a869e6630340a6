//! `--model dcgan`: the DCGAN of TensorFlow's tutorial for MNIST
//! (<https://www.tensorflow.org/tutorials/generative/dcgan>), layer for layer, trained
//! with this project's loop and hyper-parameters (see the README for what was measured).
//!
//! Generator: Dense(7·7·256, no bias) -> BatchNorm -> LeakyReLU(0.3) -> reshape (7, 7,
//! 256) -> ConvTranspose(128, 5x5, s1, same, no bias) -> BatchNorm -> LeakyReLU ->
//! ConvTranspose(64, 5x5, s2, same, no bias) -> BatchNorm -> LeakyReLU -> ConvTranspose(1,
//! 5x5, s2, same, no bias) -> tanh. Discriminator: Conv(64, 5x5, s2, same) -> LeakyReLU ->
//! Dropout(0.3) -> Conv(128, 5x5, s2, same) -> LeakyReLU -> Dropout(0.3) -> Flatten ->
//! Dense(1), a logit. Keras's LeakyReLU slope is 0.3 and its BatchNorm momentum 0.99,
//! epsilon 1e-3.

use crate::cpu::Activation;
use crate::error::Result;
use crate::graph::{Graph, InputSource, NodeId, Padding};
use crate::model::seed::{gan_groups, gan_step, params_under, states_under};
use crate::model::{GeneratorNodes, IMAGE_SIDE, Model, ModelConfig, ModelKind};

pub static DCGAN: ModelKind = ModelKind {
    name: "dcgan",
    about: "TensorFlow's DCGAN tutorial: BatchNorm and LeakyReLU in G, dropout in D",
    classes: None,
    training,
    generator: external_generator,
    default_iterations: 10_000,
};

/// Keras's LeakyReLU default slope, which the tutorial keeps.
const LEAK: Activation = Activation::LeakyRelu(0.3);
const DROPOUT: f32 = 0.3;
/// The first feature map: a quarter of the image's side, 256 channels.
const SIDE: usize = IMAGE_SIDE / 4;
const CHANNELS: usize = 256;

/// The generator; `training` normalises with batch statistics (and moves the running ones),
/// otherwise with the running ones.
fn generator(g: &mut Graph, z: NodeId, training: bool) -> Result<NodeId> {
    let h = g.dense_no_bias("dense", z, SIDE * SIDE * CHANNELS)?;
    let h = g.batch_norm("bn0", h, training)?;
    let h = g.activation("leaky0", h, LEAK);
    let h = g.unflatten("reshape", h, (SIDE, SIDE, CHANNELS))?;
    let mut h = h;
    for (layer, filters, stride) in [(1, 128, 1), (2, 64, 2)] {
        h = g.conv_transpose2d_no_bias(
            &format!("deconv{layer}"),
            h,
            filters,
            (5, 5),
            (stride, stride),
            Padding::Same,
        )?;
        h = g.batch_norm(&format!("bn{layer}"), h, training)?;
        h = g.activation(&format!("leaky{layer}"), h, LEAK);
    }
    let h = g.conv_transpose2d_no_bias("deconv3", h, 1, (5, 5), (2, 2), Padding::Same)?;
    Ok(g.activation("tanh", h, Activation::Tanh))
}

/// The discriminator; its two dropout masks come from noise slots `slots`.
fn discriminator(g: &mut Graph, x: NodeId, slots: [u32; 2]) -> Result<NodeId> {
    let mut h = x;
    for (layer, (filters, slot)) in [(64, slots[0]), (128, slots[1])].into_iter().enumerate() {
        let layer = layer + 1;
        h = g.conv2d(
            &format!("conv{layer}"),
            h,
            filters,
            (5, 5),
            (2, 2),
            Padding::Same,
        )?;
        h = g.activation(&format!("leaky{layer}"), h, LEAK);
        h = g.dropout(&format!("dropout{layer}"), h, DROPOUT, slot)?;
    }
    let h = g.flatten("flatten", h)?;
    g.dense("dense", h, 1)
}

/// The generator in inference mode, fed by caller-written noise, under node scope `nodes`.
fn external_generator(
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
    let image = g.scoped("generator", nodes, |g| generator(g, z, false))?;
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

/// G(z) in training mode, D(real) and D(G(z)) with their own dropout masks (noise slots
/// 1-2 and 3-4; z is slot 0), the seed's losses and phases, and a sampler in inference
/// mode sharing G's weights and running statistics.
fn training(kind: &'static ModelKind, config: &ModelConfig) -> Result<Model> {
    let mut g = Graph::default();
    let (batch, noise_dim) = (config.batch, config.noise_dim);
    let z = g.input("z", InputSource::Noise { slot: 0 }, vec![batch, noise_dim]);
    let fake = g.scoped("generator", "generator", |g| generator(g, z, true))?;
    let real = g.input(
        "real",
        InputSource::DataBatch,
        vec![batch, IMAGE_SIDE, IMAGE_SIDE, 1],
    );
    let real_logits = g.scoped("discriminator", "discriminator.real", |g| {
        discriminator(g, real, [1, 2])
    })?;
    let fake_logits = g.scoped("discriminator", "discriminator.fake", |g| {
        discriminator(g, fake, [3, 4])
    })?;
    let (phases, logged) = gan_step(&mut g, real_logits, fake_logits)?;
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
