//! `--model dcgan` end to end on the CPU executor: its checkpoint keeps BatchNorm's
//! running statistics (raw and averaged), a resumed run continues exactly, and drawing
//! from a checkpoint normalises with the running statistics (inference mode), not with
//! the batch's own. GPU-vs-CPU parity of its training step is in tests/train_gpu.rs, its
//! ONNX export in tests/onnx_export.rs, its web page in tests/web_export.rs.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use gan_gpu::cpu::normal_noise;
use gan_gpu::data::default_data_dir;
use gan_gpu::graph::runtime::Runtime;
use gan_gpu::io::checkpoint::load_checkpoint;
use gan_gpu::model::load::{Weights, load_generator};
use gan_gpu::model::sample::generate_stored;
use gan_gpu::train::{ConfigFlags, LossRow, Start, TrainConfig, TrainOptions, TrainReport};
use gan_gpu::tune::TuneWhen;

fn options(out: &Path, start: Start) -> TrainOptions {
    TrainOptions {
        start,
        data_dir: default_data_dir(),
        out: out.to_path_buf(),
        stop: Arc::new(AtomicBool::new(false)),
        quiet: true,
        tune: (TuneWhen::Never, 0),
    }
}

fn tiny(iterations: u64) -> Start {
    Start::new(TrainConfig {
        iterations,
        batch_size: 4,
        seed: 3,
        log_every: 1,
        sample_every: 1000,
        checkpoint_every: 1000,
        model: "dcgan".into(),
        ..TrainConfig::default()
    })
}

fn train(out: &Path, start: Start) -> TrainReport {
    gan_gpu::train::train(&Runtime::cpu(), &options(out, start), None).unwrap()
}

fn losses(rows: &[LossRow]) -> Vec<Vec<f32>> {
    rows.iter().map(|r| r.values.clone()).collect()
}

#[test]
fn the_checkpoint_keeps_the_running_statistics_and_a_resumed_run_continues_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let whole = train(&dir.path().join("whole"), tiny(4));
    let again = train(&dir.path().join("again"), tiny(4));
    assert_eq!(
        losses(&whole.rows),
        losses(&again.rows),
        "same seed, same losses"
    );

    let split = dir.path().join("split");
    let first = train(&split, tiny(2));
    let second = train(
        &split,
        Start::Resume(ConfigFlags {
            iterations: Some(4),
            ..ConfigFlags::default()
        }),
    );
    let mut stitched = losses(&first.rows);
    stitched.extend(losses(&second.rows));
    assert_eq!(stitched, losses(&whole.rows));

    let a = load_checkpoint(&dir.path().join("whole/checkpoint.safetensors")).unwrap();
    let b = load_checkpoint(&split.join("checkpoint.safetensors")).unwrap();
    let statistics: Vec<&str> = a
        .tensors
        .iter()
        .map(|t| t.name.as_str())
        .filter(|n| n.contains(".moving_"))
        .collect();
    // Three BatchNorm layers, mean and variance, raw and averaged.
    assert_eq!(statistics.len(), 12, "{statistics:?}");
    for name in &statistics {
        let data = &a.tensor(name).unwrap().data;
        let start = if name.ends_with("moving_mean") {
            0.0
        } else {
            1.0
        };
        assert!(
            data.iter().any(|&v| v != start),
            "{name} never moved from its initial {start}"
        );
    }
    for t in &a.tensors {
        assert_eq!(
            Some(&t.data),
            b.tensor(&t.name).map(|u| &u.data),
            "{}",
            t.name
        );
    }
}

/// In inference mode an image depends on its own noise only: drawn alone or in a batch
/// it is the same (batch statistics would make it depend on the others), and changing
/// the stored running mean changes it.
#[test]
fn drawing_normalises_with_the_running_statistics() {
    let dir = tempfile::tempdir().unwrap();
    train(dir.path(), tiny(3));
    let path = dir.path().join("checkpoint.safetensors");
    let ckpt = load_checkpoint(&path).unwrap();
    let runtime = Runtime::cpu();
    for weights in [Weights::Ema, Weights::Raw] {
        let mut stored = load_generator(&path, &ckpt, weights).unwrap();
        assert_eq!(stored.weights.used, weights);
        let dim = stored.noise_dim;
        let noise = normal_noise(5, 0, 3 * dim);
        let batch = generate_stored(&runtime, &stored, &noise, None).unwrap();
        let alone = generate_stored(&runtime, &stored, &noise[..dim], None).unwrap();
        let first = &batch[..alone.len()];
        let worst = first
            .iter()
            .zip(&alone)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0f32, f32::max);
        assert!(worst <= 1e-5, "{weights:?}: alone vs in a batch: {worst}");

        let mean = stored
            .tensors
            .iter_mut()
            .find(|t| t.name.ends_with("moving_mean"))
            .unwrap();
        mean.data.iter_mut().for_each(|v| *v += 1.0);
        let shifted = generate_stored(&runtime, &stored, &noise[..dim], None).unwrap();
        assert_ne!(shifted, alone, "{weights:?}: the running mean is not used");
    }
}
