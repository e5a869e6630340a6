//! Training on the CPU executor: reproducibility, exact resume, a discriminator that
//! learns, and diverging runs that stop with a clear error.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use gan_gpu::data::default_data_dir;
use gan_gpu::gpu::AdapterRequest;
use gan_gpu::model::checkpoint::load_checkpoint;
use gan_gpu::model::train::{DeviceChoice, LossRow, TrainConfig, TrainOptions, train};

fn options(out: &Path, config: TrainConfig) -> TrainOptions {
    TrainOptions {
        config,
        device: DeviceChoice::Cpu,
        adapter: AdapterRequest::default(),
        data_dir: default_data_dir(),
        out: out.to_path_buf(),
        resume: false,
        stop: Arc::new(AtomicBool::new(false)),
        quiet: true,
        eval: None,
    }
}

fn small(iterations: u64) -> TrainConfig {
    TrainConfig {
        iterations,
        batch_size: 16,
        seed: 5,
        log_every: 1,
        sample_every: 1000,
        checkpoint_every: 1000,
        ..TrainConfig::default()
    }
}

fn losses(rows: &[LossRow]) -> Vec<[f32; 5]> {
    rows.iter()
        .map(|r| {
            [
                r.d_loss_real,
                r.d_loss_fake,
                r.g_loss,
                r.d_real_mean,
                r.d_fake_mean,
            ]
        })
        .collect()
}

#[test]
fn same_seed_gives_identical_losses() {
    let dir = tempfile::tempdir().unwrap();
    let a = train(&options(&dir.path().join("a"), small(4))).unwrap();
    let b = train(&options(&dir.path().join("b"), small(4))).unwrap();
    assert_eq!(losses(&a.rows), losses(&b.rows));
    let c = train(&options(
        &dir.path().join("c"),
        TrainConfig {
            seed: 6,
            ..small(4)
        },
    ))
    .unwrap();
    assert_ne!(
        losses(&a.rows),
        losses(&c.rows),
        "another seed should differ"
    );
}

#[test]
fn a_resumed_run_continues_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let whole = train(&options(&dir.path().join("whole"), small(6))).unwrap();

    let split = dir.path().join("split");
    let first = train(&options(&split, small(3))).unwrap();
    assert_eq!(first.last_iteration, 3);
    let mut resume = options(&split, small(6));
    resume.resume = true;
    let second = train(&resume).unwrap();
    assert_eq!(second.iterations_run, 3);

    let mut stitched = losses(&first.rows);
    stitched.extend(losses(&second.rows));
    assert_eq!(stitched, losses(&whole.rows));
    let a = load_checkpoint(&dir.path().join("whole/checkpoint.safetensors")).unwrap();
    let b = load_checkpoint(&split.join("checkpoint.safetensors")).unwrap();
    for t in &a.tensors {
        assert_eq!(
            Some(&t.data),
            b.tensor(&t.name).map(|u| &u.data),
            "{}",
            t.name
        );
    }
    let csv = std::fs::read_to_string(split.join("loss.csv")).unwrap();
    assert_eq!(
        csv.lines().count(),
        1 + 6,
        "header plus one row per iteration:\n{csv}"
    );
}

#[test]
fn the_discriminator_learns_to_separate_real_from_fake() {
    let dir = tempfile::tempdir().unwrap();
    let config = TrainConfig {
        log_every: 10,
        sample_every: 60,
        ..small(60)
    };
    let report = train(&options(dir.path(), config)).unwrap();
    let last = report.rows.last().unwrap();
    for r in &report.rows {
        for x in [r.d_loss_real, r.d_loss_fake, r.g_loss] {
            assert!(x.is_finite(), "{r:?}");
        }
    }
    // Early in training D tells real from fake: D(x) well above D(G(z)).
    assert!(
        last.d_real_mean > last.d_fake_mean + 0.1,
        "D(x) {} vs D(G(z)) {}",
        last.d_real_mean,
        last.d_fake_mean
    );
    assert!(dir.path().join("samples/iter_000060.png").exists());
    assert!(dir.path().join("config.json").exists());
}

#[test]
fn a_diverging_run_stops_with_the_iteration_and_the_loss() {
    let dir = tempfile::tempdir().unwrap();
    // A learning rate this large drives the logits to infinity within a few steps.
    let config = TrainConfig {
        lr: 1e30,
        ..small(50)
    };
    let err = train(&options(dir.path(), config)).unwrap_err().to_string();
    assert!(err.contains("training stopped at iteration"), "{err}");
}

#[test]
fn resuming_without_a_checkpoint_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let mut opts = options(dir.path(), small(2));
    opts.resume = true;
    let err = train(&opts).unwrap_err().to_string();
    assert!(err.contains("checkpoint.safetensors"), "{err}");
}
