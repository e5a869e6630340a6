//! The MNIST classifier that `gan-gpu eval` scores with: trained by our own runtime, it
//! must reach 99% on MNIST's test set; and its training step runs the same on the GPU.

use std::sync::Arc;

use gan_gpu::cpu::AdamConfig;
use gan_gpu::data::{Split, default_data_dir, load_mnist};
use gan_gpu::eval::classifier::{ClassifierConfig, ClassifierRunner, train_classifier};
use gan_gpu::gpu::testing::test_context;
use gan_gpu::graph::cpu_exec::CpuExecutor;
use gan_gpu::graph::gpu_exec::GpuExecutor;
use gan_gpu::graph::runtime::Runtime;
use gan_gpu::graph::{Buf, Dataset, Executor, RandomStreams, lower};
use gan_gpu::io::checkpoint::{Checkpoint, FORMAT, save_checkpoint};
use gan_gpu::model::PIXELS;
use gan_gpu::model::classifier::{Classifier, load_classifier, save_classifier};
use rand::{SeedableRng, rngs::StdRng};

#[test]
fn the_classifier_reaches_99_percent_on_the_test_set() {
    let runtime = Runtime::cpu();
    let weights = train_classifier(
        &runtime,
        &default_data_dir(),
        &ClassifierConfig::default(),
        &mut |_, _| {},
    )
    .unwrap();
    let test = load_mnist(&default_data_dir(), Split::Test).unwrap();
    let acc = ClassifierRunner::new(&runtime, &weights)
        .unwrap()
        .accuracy(&test, test.count)
        .unwrap();
    eprintln!("test accuracy {acc:.4}");
    assert!(acc >= 0.99, "test accuracy {acc:.4}");

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("classifier.safetensors");
    save_classifier(&path, &weights, acc).unwrap();
    let loaded = load_classifier(&path).unwrap();
    assert_eq!(loaded.0, weights.0);
}

#[test]
fn a_gan_checkpoint_is_not_a_classifier() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("x.safetensors");
    let ckpt = Checkpoint {
        tensors: vec![],
        metadata: [("format".to_string(), FORMAT.to_string())].into(),
    };
    save_checkpoint(&path, &ckpt).unwrap();
    let err = load_classifier(&path).unwrap_err().to_string();
    assert!(err.contains("not a gan-gpu MNIST classifier"), "{err}");
}

#[test]
fn a_training_step_tracks_the_cpu_executor_on_the_gpu() {
    let Some(ctx) = test_context("classifier step on the GPU") else {
        return;
    };
    let mnist = load_mnist(&default_data_dir(), Split::Test).unwrap();
    let data = Arc::new(Dataset {
        bytes: mnist.images,
        rows: mnist.count,
        row_len: PIXELS,
        labels: Some(mnist.labels),
    });
    let model = Classifier::new(32, true).unwrap();
    let loss = model.loss.unwrap();
    let plan = lower::training_step(&model.graph, &model.phases().unwrap()).unwrap();
    let adams = vec![AdamConfig {
        lr: 1e-3,
        beta1: 0.9,
        ..AdamConfig::default()
    }];
    let streams = RandomStreams { seed: 4 };
    let mut gpu = GpuExecutor::new(
        ctx,
        &model.graph,
        adams.clone(),
        Some(data.clone()),
        streams,
    )
    .unwrap();
    let mut cpu = CpuExecutor::new(&model.graph, adams, Some(data), streams);
    let mut rng = StdRng::seed_from_u64(2);
    for (id, values) in model.graph.init_params(&mut rng) {
        gpu.write(Buf::Value(id), &values).unwrap();
        cpu.write(Buf::Value(id), &values).unwrap();
    }
    let (pg, pc) = (gpu.compile(&plan).unwrap(), cpu.compile(&plan).unwrap());
    for iteration in 0..3 {
        gpu.run(pg, iteration).unwrap();
        cpu.run(pc, iteration).unwrap();
        let labels = model.labels.unwrap();
        assert_eq!(
            gpu.read(Buf::Value(labels)).unwrap(),
            cpu.read(Buf::Value(labels)).unwrap()
        );
        let (a, b) = (
            gpu.read(Buf::Value(loss)).unwrap(),
            cpu.read(Buf::Value(loss)).unwrap(),
        );
        assert!(
            (a[0] - b[0]).abs() < 1e-3 * b[0].abs().max(1.0),
            "iteration {iteration}: loss gpu {} cpu {}",
            a[0],
            b[0]
        );
        assert_eq!(a[1], b[1], "iteration {iteration}: accuracy");
    }
}
