//! `sample --count N --out FILE.idx3-ubyte` streams: its peak memory does not grow with N.
//! (One test in its own binary: it reads the peak resident size of this process's
//! children, which other tests' children would disturb.)

mod common;

use std::path::Path;

use common::run_cli;

/// The largest peak resident size, in bytes, of any child waited for so far.
fn children_peak_rss() -> u64 {
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: getrusage fills the struct it is given.
    assert_eq!(
        unsafe { libc::getrusage(libc::RUSAGE_CHILDREN, &mut usage) },
        0
    );
    // Linux reports kilobytes.
    usage.ru_maxrss as u64 * 1024
}

fn sample(checkpoint: &Path, count: usize, out: &Path) -> u64 {
    let result = run_cli(&[
        "sample",
        "--device",
        "cpu",
        "--checkpoint",
        checkpoint.to_str().unwrap(),
        "--count",
        &count.to_string(),
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(
        result.status.success(),
        "{}",
        String::from_utf8_lossy(&result.stderr)
    );
    let (_, n, rows, cols) = gan_gpu::data::read_idx_images(out).unwrap();
    assert_eq!((n, rows, cols), (count, 28, 28));
    children_peak_rss()
}

/// A checkpoint of the default model's generator with freshly initialised weights.
fn write_random_generator(path: &Path) {
    use gan_gpu::io::checkpoint::{Checkpoint, FORMAT, NamedTensor, save_checkpoint};
    use rand::SeedableRng;
    let kind = gan_gpu::model::MODELS[0];
    let (graph, _) = kind.generator_graph(1, 100).unwrap();
    let mut rng = rand::rngs::StdRng::seed_from_u64(1);
    let tensors = graph
        .init_params(&mut rng)
        .into_iter()
        .map(|(id, data)| NamedTensor {
            name: graph.nodes[id].name.clone(),
            shape: graph.nodes[id].shape.clone(),
            data,
        })
        .collect();
    let metadata = [
        ("format", FORMAT),
        ("model", kind.name),
        ("noise_dim", "100"),
    ]
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .into();
    save_checkpoint(path, &Checkpoint { tensors, metadata }).unwrap();
}

#[test]
fn sampling_to_idx_runs_in_memory_that_does_not_grow_with_the_count() {
    let dir = tempfile::tempdir().unwrap();
    // Written here, not by `gan-gpu train`, whose peak (it loads MNIST) would count too.
    let checkpoint = dir.path().join("generator.safetensors");
    write_random_generator(&checkpoint);
    let small = sample(&checkpoint, 2_000, &dir.path().join("small.idx3-ubyte"));
    let large = sample(&checkpoint, 14_000, &dir.path().join("large.idx3-ubyte"));
    // Holding 12,000 more digits would take 12,000 x 784 x (4 + 1) bytes = 47 MB, plus
    // their noise; streaming takes the same few chunks either way.
    let growth = large.saturating_sub(small);
    assert!(
        growth < 12 << 20,
        "peak memory grew by {growth} bytes from 2,000 to 14,000 digits ({small} -> {large})"
    );
}
