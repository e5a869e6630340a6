//! One GPU device per process: a GPU training run with `--eval-every` and no cached
//! classifier trains the classifier, measures quality and trains the GAN on the single
//! device its runtime created. (Its own test binary: the device count is per process.)

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use gan_gpu::data::{Split, default_data_dir, load_mnist, write_idx_images};
use gan_gpu::eval::classifier::ClassifierConfig;
use gan_gpu::gpu::AdapterRequest;
use gan_gpu::gpu::testing::test_context;
use gan_gpu::graph::runtime::{DeviceChoice, Runtime};
use gan_gpu::train::{InTrainingEval, Start, TrainConfig, TrainOptions, train};
use gan_gpu::tune::TuneWhen;

/// The bundled training set beside a 200-image test set, so that the classifier's test
/// accuracy and the FID reference stay quick on a software adapter.
fn small_test_split(dir: &Path) {
    for name in ["train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"] {
        std::os::unix::fs::symlink(default_data_dir().join(name), dir.join(name)).unwrap();
    }
    let test = load_mnist(&default_data_dir(), Split::Test).unwrap();
    let n = 200;
    write_idx_images(
        &dir.join("t10k-images-idx3-ubyte"),
        &test.images[..n * 784],
        n,
        28,
        28,
    )
    .unwrap();
    let mut labels = vec![0, 0, 8, 1];
    labels.extend((n as u32).to_be_bytes());
    labels.extend(&test.labels[..n]);
    std::fs::write(dir.join("t10k-labels-idx1-ubyte"), labels).unwrap();
}

#[test]
fn gpu_training_with_eval_and_a_new_classifier_creates_one_device() {
    // The shared test context is made outside any runtime, so it is not counted.
    if test_context("one device per process").is_none() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("mnist");
    std::fs::create_dir(&data).unwrap();
    small_test_split(&data);
    let runtime = Runtime::new(DeviceChoice::Gpu, AdapterRequest::default());
    let classifier = dir.path().join("classifier.safetensors");
    let config = ClassifierConfig {
        iterations: 4,
        batch_size: 16,
        ..ClassifierConfig::default()
    };
    let (mut eval, trained) = InTrainingEval::prepare(
        &runtime,
        &classifier,
        &data,
        &config,
        (2, 64),
        &mut |_, _| {},
    )
    .unwrap();
    assert!(
        trained.is_some() && classifier.exists(),
        "no classifier was trained"
    );
    let opts = TrainOptions {
        start: Start::new(TrainConfig {
            iterations: 2,
            batch_size: 8,
            log_every: 1,
            ..TrainConfig::default()
        }),
        data_dir: data,
        out: dir.path().join("run"),

        stop: Arc::new(AtomicBool::new(false)),
        quiet: true,
        tune: (TuneWhen::Never, 0),
    };
    let report = train(&runtime, &opts, Some(&mut eval)).unwrap();
    assert!(report.executor.contains("gpu"), "{}", report.executor);
    assert!(
        report.rows.iter().any(|r| r.quality.is_some()),
        "no evaluation ran: {:?}",
        report.rows
    );
    assert_eq!(Runtime::devices_created(), 1);
}
