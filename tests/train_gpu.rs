//! The wgpu executor against the CPU executor on whole GAN training iterations: every
//! parameter gradient and updated weight after one iteration, then a 5-iteration loss
//! trajectory, and same-seed reproducibility on the GPU.

use std::sync::Arc;

use gan_gpu::cpu::AdamConfig;
use gan_gpu::data::{Split, default_data_dir, load_mnist};
use gan_gpu::gpu::testing::test_context;
use gan_gpu::graph::cpu_exec::CpuExecutor;
use gan_gpu::graph::gpu_exec::GpuExecutor;
use gan_gpu::graph::{Buf, Dataset, Executor, RandomStreams};
use gan_gpu::model::gan::{Gan, PIXELS};
use rand::{SeedableRng, rngs::StdRng};

const BATCH: usize = 16;

fn dataset() -> Arc<Dataset> {
    let mnist = load_mnist(&default_data_dir(), Split::Test).unwrap();
    Arc::new(Dataset {
        bytes: mnist.images,
        rows: mnist.count,
        row_len: PIXELS,
    })
}

/// A GPU and a CPU executor holding the same initial weights, and the compiled step.
fn pair(gan: &Gan) -> Option<(GpuExecutor, CpuExecutor, usize)> {
    let ctx = test_context("GPU training step vs CPU")?;
    let data = dataset();
    let streams = RandomStreams { seed: 9 };
    let adams = vec![AdamConfig::default(); 2];
    let mut gpu =
        GpuExecutor::new(ctx, &gan.graph, adams.clone(), Some(data.clone()), streams).unwrap();
    let mut cpu = CpuExecutor::new(&gan.graph, adams, Some(data), streams);
    let mut rng = StdRng::seed_from_u64(1);
    for (id, values) in gan.graph.init_params(&mut rng) {
        gpu.write(Buf::Value(id), &values).unwrap();
        cpu.write(Buf::Value(id), &values).unwrap();
    }
    let step = gan.train_step().unwrap();
    let plan = gpu.compile(&step).unwrap();
    assert_eq!(cpu.compile(&step).unwrap(), plan);
    Some((gpu, cpu, plan))
}

fn max_abs(v: &[f32]) -> f32 {
    v.iter().fold(0.0f32, |m, x| m.max(x.abs()))
}

#[test]
fn one_iteration_matches_the_cpu_executor() {
    let gan = Gan::new(BATCH, 100).unwrap();
    let Some((mut gpu, mut cpu, plan)) = pair(&gan) else {
        return;
    };
    gpu.run(plan, 0).unwrap();
    cpu.run(plan, 0).unwrap();
    let mut failures = Vec::new();
    for id in gan.params() {
        let name = &gan.graph.nodes[id].name;
        let (g_gpu, g_cpu) = (
            gpu.read(Buf::Grad(id)).unwrap(),
            cpu.read(Buf::Grad(id)).unwrap(),
        );
        // Relative to the tensor's scale: long f32 reductions in another order.
        let scale = max_abs(&g_cpu);
        let bad = (0..g_cpu.len())
            .filter(|&i| {
                let diff = (g_gpu[i] - g_cpu[i]).abs();
                diff.is_nan() || diff > 1e-4 * scale + 1e-3 * g_cpu[i].abs()
            })
            .count();
        if bad > 0 {
            failures.push(format!(
                "gradient of {name}: {bad} of {} elements differ",
                g_cpu.len()
            ));
        }
        // Adam's first step moves every weight by about lr·sign(g); where g is near 0
        // its sign (and so the step) may legitimately differ between executors.
        let (w_gpu, w_cpu) = (
            gpu.read(Buf::Value(id)).unwrap(),
            cpu.read(Buf::Value(id)).unwrap(),
        );
        let bad = (0..w_cpu.len())
            .filter(|&i| {
                let stable = g_cpu[i].abs() > 1e-2 * scale;
                let tol = if stable {
                    1e-6
                } else {
                    2.1 * AdamConfig::default().lr
                };
                let diff = (w_gpu[i] - w_cpu[i]).abs();
                diff.is_nan() || diff > tol
            })
            .count();
        if bad > 0 {
            failures.push(format!(
                "updated {name}: {bad} of {} elements differ",
                w_cpu.len()
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn a_five_iteration_loss_trajectory_tracks_the_cpu_executor() {
    let gan = Gan::new(BATCH, 100).unwrap();
    let Some((mut gpu, mut cpu, plan)) = pair(&gan) else {
        return;
    };
    for iteration in 0..5 {
        gpu.run(plan, iteration).unwrap();
        cpu.run(plan, iteration).unwrap();
        for loss in [gan.d_loss_real, gan.d_loss_fake, gan.g_loss] {
            let (a, b) = (
                gpu.read(Buf::Value(loss)).unwrap(),
                cpu.read(Buf::Value(loss)).unwrap(),
            );
            for k in 0..2 {
                assert!(
                    (a[k] - b[k]).abs() <= 2e-3 + 2e-3 * b[k].abs(),
                    "iteration {iteration}, {}[{k}]: gpu {} cpu {}",
                    gan.graph.nodes[loss].name,
                    a[k],
                    b[k]
                );
            }
        }
    }
}

#[test]
fn the_same_seed_gives_identical_gpu_losses() {
    let gan = Gan::new(BATCH, 100).unwrap();
    let run = || -> Option<Vec<f32>> {
        let (mut gpu, _, plan) = pair(&gan)?;
        let mut out = Vec::new();
        for iteration in 0..3 {
            gpu.run(plan, iteration).unwrap();
            out.extend(gpu.read(Buf::Value(gan.g_loss)).unwrap());
        }
        Some(out)
    };
    if let (Some(a), Some(b)) = (run(), run()) {
        assert_eq!(a, b);
    }
}

#[test]
fn a_resumed_gpu_run_continues_exactly() {
    use gan_gpu::gpu::AdapterRequest;
    use gan_gpu::model::train::{DeviceChoice, TrainConfig, TrainOptions, train};
    use std::sync::atomic::AtomicBool;
    if test_context("GPU resume").is_none() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let options = |out: &str, iterations: u64, resume: bool| TrainOptions {
        config: TrainConfig {
            iterations,
            batch_size: 8,
            log_every: 1,
            ..TrainConfig::default()
        },
        device: DeviceChoice::Gpu,
        adapter: AdapterRequest::default(),
        data_dir: default_data_dir(),
        out: dir.path().join(out),
        resume,
        stop: Arc::new(AtomicBool::new(false)),
        quiet: true,
    };
    let whole = train(&options("whole", 4, false)).unwrap();
    assert!(whole.executor.contains("gpu"), "{}", whole.executor);
    let mut split = train(&options("split", 2, false)).unwrap().rows;
    split.extend(train(&options("split", 4, true)).unwrap().rows);
    let key =
        |r: &gan_gpu::model::train::LossRow| (r.iteration, r.d_loss_real, r.d_loss_fake, r.g_loss);
    assert_eq!(
        split.iter().map(key).collect::<Vec<_>>(),
        whole.rows.iter().map(key).collect::<Vec<_>>()
    );
}
