//! `--model cgan`: a class-conditional GAN on the seed's networks. The generator's dense
//! output is offset by a learned embedding of the class (the same as appending a one-hot
//! label to the noise before the dense layer); the discriminator is a projection
//! discriminator (Miyato & Koyama, 2018): its logit is the seed's Dense(1) of the features
//! plus the inner product of the features with an embedding of the class, so it judges
//! "a real digit of this class", and the generator must draw the class it is given.

use crate::error::Result;
use crate::graph::{Graph, InputSource, NodeId};
use crate::model::seed::{
    SEED_UNITS, discriminator_features, gan_groups, gan_step_on_both, generator_head, params_under,
    states_under,
};
use crate::model::{GeneratorNodes, IMAGE_SIDE, Model, ModelConfig, ModelKind};

pub static CGAN: ModelKind = ModelKind {
    name: "cgan",
    about: "a class-conditional GAN: class embedding in G, projection discriminator",
    classes: Some(CLASSES),
    training,
    generator: external_generator,
    default_iterations: 50_000,
};

pub const CLASSES: usize = 10;

/// Dense(z) + Embedding(label) -> the seed generator's head.
fn generator(g: &mut Graph, z: NodeId, labels: NodeId) -> Result<NodeId> {
    let h = g.dense("dense", z, SEED_UNITS)?;
    let class = g.embedding("class_embedding", labels, CLASSES, SEED_UNITS)?;
    let h = g.add("conditioned", h, class)?;
    generator_head(g, h)
}

/// Dense(1)(φ(x)) + <φ(x), Embedding(label)>, φ the seed discriminator's features.
fn discriminator(g: &mut Graph, x: NodeId, labels: NodeId) -> Result<NodeId> {
    let features = discriminator_features(g, x)?;
    let logit = g.dense("dense", features, 1)?;
    let width = g.shape(features)[1];
    let class = g.embedding("class_embedding", labels, CLASSES, width)?;
    let projection = g.row_dot("projection", features, class)?;
    g.add("logit", logit, projection)
}

/// The generator fed by caller-written noise and labels, under node scope `nodes`.
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
    let labels = g.input(
        &format!("{nodes}.labels"),
        InputSource::External,
        vec![batch],
    );
    let image = g.scoped("generator", nodes, |g| generator(g, z, labels))?;
    Ok(GeneratorNodes {
        z,
        labels: Some(labels),
        image,
        params: params_under(g, "generator"),
        states: states_under(g, "generator"),
        batch,
        noise_dim,
    })
}

/// G(z, y) on random labels, D on [real; G(z, y)] with their labels, D(G(z, y), y), the
/// seed's three losses.
fn training(kind: &'static ModelKind, config: &ModelConfig) -> Result<Model> {
    let mut g = Graph::default();
    let (batch, noise_dim) = (config.batch, config.noise_dim);
    let z = g.input("z", InputSource::Noise { slot: 0 }, vec![batch, noise_dim]);
    let fake_labels = g.input(
        "fake_labels",
        InputSource::RandomLabels {
            slot: 1,
            classes: CLASSES,
        },
        vec![batch],
    );
    let fake = g.scoped("generator", "generator", |g| generator(g, z, fake_labels))?;
    let real = g.input(
        "real",
        InputSource::DataBatch,
        vec![batch, IMAGE_SIDE, IMAGE_SIDE, 1],
    );
    let real_labels = g.input("real_labels", InputSource::DataLabels, vec![batch]);
    let both = g.concat("real_and_fake", real, fake)?;
    let both_labels = g.concat("real_and_fake_labels", real_labels, fake_labels)?;
    let both_logits = g.scoped("discriminator", "discriminator.both", |g| {
        discriminator(g, both, both_labels)
    })?;
    let fake_logits = g.scoped("discriminator", "discriminator.fake", |g| {
        discriminator(g, fake, fake_labels)
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
