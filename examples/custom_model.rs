//! A model gan-gpu does not ship, written with the public API alone: a small
//! fully-connected GAN on MNIST (a two-layer generator and discriminator, LeakyReLU),
//! trained a few steps on the CPU executor and on the wgpu executor, printing the losses.
//!
//! ```sh
//! cargo run --release --example custom_model
//! ```
//! The builders infer every shape from the input's; autodiff, the optimizer steps and both
//! executors come from the runtime. Nothing here is GAN-specific to gan-gpu except the
//! choice of losses (`gan_step`, the seed model's BCE losses and two-phase iteration).

use std::sync::Arc;

use gan_gpu::cpu::{Activation, AdamConfig};
use gan_gpu::data::{Split, default_data_dir, load_mnist};
use gan_gpu::gpu::AdapterRequest;
use gan_gpu::graph::runtime::{DeviceChoice, Runtime};
use gan_gpu::graph::{Buf, Dataset, Graph, InputSource, NodeId, RandomStreams, lower};
use gan_gpu::model::seed::gan_step;
use gan_gpu::model::{IMAGE_SIDE, PIXELS};
use rand::SeedableRng;

const BATCH: usize = 64;
const NOISE: usize = 32;

fn generator(g: &mut Graph, z: NodeId) -> gan_gpu::Result<NodeId> {
    let h = g.dense("hidden", z, 256)?;
    let h = g.activation("leaky", h, Activation::LeakyRelu(0.2));
    let h = g.dense("pixels", h, PIXELS)?;
    let h = g.activation("tanh", h, Activation::Tanh);
    g.unflatten("image", h, (IMAGE_SIDE, IMAGE_SIDE, 1))
}

fn discriminator(g: &mut Graph, x: NodeId) -> gan_gpu::Result<NodeId> {
    let h = g.flatten("flatten", x)?;
    let h = g.dense("hidden", h, 256)?;
    let h = g.activation("leaky", h, Activation::LeakyRelu(0.2));
    g.dense("logit", h, 1)
}

fn main() -> gan_gpu::Result<()> {
    let mut g = Graph::default();
    let z = g.input("z", InputSource::Noise { slot: 0 }, vec![BATCH, NOISE]);
    let fake = g.scoped("generator", "generator", |g| generator(g, z))?;
    let real = g.input(
        "real",
        InputSource::DataBatch,
        vec![BATCH, IMAGE_SIDE, IMAGE_SIDE, 1],
    );
    // One set of discriminator weights (named `discriminator.*`), applied twice.
    let real_logit = g.scoped("discriminator", "discriminator.real", |g| {
        discriminator(g, real)
    })?;
    let fake_logit = g.scoped("discriminator", "discriminator.fake", |g| {
        discriminator(g, fake)
    })?;
    let (phases, logged) = gan_step(&mut g, real_logit, fake_logit)?;
    let step = lower::training_step(&g, &phases)?;
    println!(
        "{} nodes, {} parameters, {} instructions per iteration",
        g.nodes.len(),
        g.params().len(),
        step.len()
    );

    let mnist = load_mnist(&default_data_dir(), Split::Train)?;
    let dataset = Arc::new(Dataset {
        bytes: mnist.images,
        rows: mnist.count,
        row_len: PIXELS,
        labels: None,
    });
    let runtimes = [
        Runtime::cpu(),
        Runtime::new(DeviceChoice::Gpu, AdapterRequest::default()),
    ];
    for runtime in &runtimes {
        let line = match runtime.describe() {
            Ok(line) => line,
            Err(e) => {
                println!("skipping the wgpu executor: {e}");
                continue;
            }
        };
        println!("{line}");
        // Two optimizer groups, as `gan_step`'s phases number them.
        let adams = vec![AdamConfig::default(); 2];
        let mut exec =
            runtime.executor(&g, adams, RandomStreams { seed: 1 }, Some(dataset.clone()))?;
        let mut rng = rand::rngs::StdRng::seed_from_u64(1);
        for (id, values) in g.init_params(&mut rng) {
            exec.write(Buf::Value(id), &values)?;
        }
        let plan = exec.compile(&step)?;
        for iteration in 0..5 {
            exec.run(plan, iteration)?;
            let values: Vec<String> = logged
                .iter()
                .map(|l| {
                    let v = exec.read(Buf::Value(l.node))?[l.index];
                    Ok(format!("{} {v:.4}", l.column))
                })
                .collect::<gan_gpu::Result<_>>()?;
            println!("  iteration {}: {}", iteration + 1, values.join("  "));
        }
    }
    Ok(())
}
