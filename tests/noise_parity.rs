//! Philox noise on the GPU against `cpu::noise`: raw words and batch indices bit for bit,
//! normals to 1e-5 (they go through log, sqrt, cos and sin, whose last bits are the
//! platform's), per-step stream changes through the uniform, and the moments of 2^20
//! GPU normals; the fused draws (noise with class labels, a whole training batch) against
//! the CPU twins of the separate draws and gathers.

mod common;

use common::assert_close;
use gan_gpu::cpu::gather::{gather_labels, gather_rows};
use gan_gpu::cpu::{normal_noise, uniform_index, uniform_u32};
use gan_gpu::gpu::GpuContext;
use gan_gpu::gpu::testing::test_context;
use gan_gpu::kernels::noise::{
    DatasetRows, DrawnBatch, NoiseKind, draw_batch, noise, normal_and_indices,
};

/// Seeds and streams whose high words matter (above 2^32) as well as small ones.
const SEEDS: [u64; 4] = [0, 42, 0x1_0000_0001, u64::MAX];
const STREAMS: [u64; 3] = [0, 7, (1 << 40) + 5];
/// A partial block, one block and a bit, and several workgroups with a partial block.
const COUNTS: [usize; 5] = [0, 1, 5, 64, 4096 + 3];

fn draw(ctx: &GpuContext, kind: NoiseKind, seed: u64, stream: u64, n: usize) -> Vec<u32> {
    let out = ctx.upload("noise out", &vec![f32::NAN.to_bits(); n]);
    let (d, _) = noise(ctx, kind, seed, stream, &out, n).unwrap();
    ctx.run(&[&d], "noise").unwrap();
    ctx.read(&out, n).unwrap()
}

/// Bit-for-bit equality, naming the first differing element and how many differ.
fn assert_same_words(op: &str, shape: &str, got: &[u32], want: &[u32]) {
    assert_eq!(got.len(), want.len(), "{op} {shape}: length");
    let differing: Vec<usize> = (0..got.len()).filter(|&i| got[i] != want[i]).collect();
    if let Some(&i) = differing.first() {
        panic!(
            "{op} {shape}: {} of {} words differ; first at {i}: gpu {:#010x} cpu {:#010x}",
            differing.len(),
            got.len(),
            got[i],
            want[i]
        );
    }
}

fn as_f32(words: &[u32]) -> Vec<f32> {
    words.iter().map(|&w| f32::from_bits(w)).collect()
}

/// The normals' transcendental functions differ by a few ulps between platforms; with
/// |z| < 6 that is ~1e-6 absolute. 1e-5 leaves room for weaker GPU sin/cos.
const NORMAL_ATOL: f32 = 1e-5;

#[test]
fn uniform_words_are_bit_exact() {
    let Some(ctx) = test_context("noise uniform") else {
        return;
    };
    for seed in SEEDS {
        for stream in STREAMS {
            for n in COUNTS {
                let got = draw(&ctx, NoiseKind::UniformU32, seed, stream, n);
                let shape = format!("seed {seed:#x} stream {stream:#x} n {n}");
                assert_same_words("uniform_u32", &shape, &got, &uniform_u32(seed, stream, n));
            }
        }
    }
}

#[test]
fn batch_indices_are_bit_exact_and_in_range() {
    let Some(ctx) = test_context("noise indices") else {
        return;
    };
    for bound in [1u32, 7, 60_000, u32::MAX] {
        for (seed, stream) in [(0u64, 0u64), (42, 3), (u64::MAX, 1 << 33)] {
            let n = 4096 + 3;
            let got = draw(&ctx, NoiseKind::BatchIndices { bound }, seed, stream, n);
            let want: Vec<u32> = uniform_u32(seed, stream, n)
                .into_iter()
                .map(|w| uniform_index(w, bound))
                .collect();
            let shape = format!("bound {bound} seed {seed} stream {stream}");
            assert_same_words("batch_indices", &shape, &got, &want);
            assert!(got.iter().all(|&i| i < bound), "index out of [0, {bound})");
        }
    }
}

#[test]
fn normals_match_cpu() {
    let Some(ctx) = test_context("noise normal") else {
        return;
    };
    for seed in SEEDS {
        for stream in STREAMS {
            for n in COUNTS {
                let got = as_f32(&draw(&ctx, NoiseKind::Normal, seed, stream, n));
                let want = normal_noise(seed, stream, n);
                let shape = format!("seed {seed:#x} stream {stream:#x} n {n}");
                assert_close("normal", &shape, &got, &want, NORMAL_ATOL, 0.0);
            }
        }
    }
}

#[test]
fn stream_is_set_per_step_without_rebuilding() {
    let Some(ctx) = test_context("noise set_stream") else {
        return;
    };
    let (seed, n) = (1234u64, 100 * 100);
    let out = ctx.storage("noise out", n as u64 * 4);
    let (d, stream) = noise(&ctx, NoiseKind::Normal, seed, 0, &out, n).unwrap();
    for step in [0u64, 1, 2, 1 << 35] {
        stream.set_stream(&ctx, step);
        ctx.run(&[&d], "noise step").unwrap();
        let got: Vec<f32> = ctx.read(&out, n).unwrap();
        let shape = format!("step {step}");
        assert_close(
            "normal",
            &shape,
            &got,
            &normal_noise(seed, step, n),
            NORMAL_ATOL,
            0.0,
        );
    }
    let rows = ctx.storage("rows", 400);
    let (d, stream) = noise(
        &ctx,
        NoiseKind::BatchIndices { bound: 60_000 },
        9,
        0,
        &rows,
        100,
    )
    .unwrap();
    stream.set_stream(&ctx, 77);
    ctx.run(&[&d], "indices step").unwrap();
    let got: Vec<u32> = ctx.read(&rows, 100).unwrap();
    let want: Vec<u32> = uniform_u32(9, 77, 100)
        .into_iter()
        .map(|w| uniform_index(w, 60_000))
        .collect();
    assert_same_words("batch_indices", "stream 77", &got, &want);
}

#[test]
fn gpu_normals_have_unit_moments() {
    let Some(ctx) = test_context("noise moments") else {
        return;
    };
    let n = 1 << 20;
    let z = as_f32(&draw(&ctx, NoiseKind::Normal, 2024, 5, n));
    let mean = z.iter().map(|&v| f64::from(v)).sum::<f64>() / n as f64;
    let var = z
        .iter()
        .map(|&v| (f64::from(v) - mean).powi(2))
        .sum::<f64>()
        / n as f64;
    let fourth = z.iter().map(|&v| f64::from(v).powi(4)).sum::<f64>() / n as f64;
    // Standard errors at 2^20 samples: mean 1e-3, variance 1.4e-3, 4th moment ~1e-2;
    // the bounds are about 5 of them.
    assert!(mean.abs() < 5e-3, "mean {mean}");
    assert!((var - 1.0).abs() < 7e-3, "variance {var}");
    assert!((fourth - 3.0).abs() < 0.05, "fourth moment {fourth}");
    assert!(z.iter().all(|v| v.is_finite() && v.abs() < 6.0));
}

#[test]
fn rejects_short_output_and_empty_bound() {
    let Some(ctx) = test_context("noise errors") else {
        return;
    };
    let out = ctx.storage("out", 16);
    let err = noise(&ctx, NoiseKind::Normal, 0, 0, &out, 5).err().unwrap();
    assert!(err.to_string().contains("5 elements need 20"), "{err}");
    let err = noise(&ctx, NoiseKind::BatchIndices { bound: 0 }, 0, 0, &out, 4)
        .err()
        .unwrap();
    assert!(err.to_string().contains("bound > 0"), "{err}");
}

#[test]
fn throughput_at_gan_sizes() {
    let Some(ctx) = test_context("noise throughput") else {
        return;
    };
    eprintln!("adapter: {}", ctx.describe());
    for (kind, n) in [
        (NoiseKind::Normal, 100 * 100),
        (NoiseKind::Normal, 1 << 20),
        (NoiseKind::BatchIndices { bound: 60_000 }, 100),
    ] {
        let out = ctx.storage("out", n as u64 * 4);
        let (d, _) = noise(&ctx, kind, 1, 2, &out, n).unwrap();
        ctx.run(&[&d], "warm-up").unwrap();
        ctx.wait("warm-up").unwrap();
        let reps = 20;
        let start = std::time::Instant::now();
        ctx.run(&vec![&d; reps], "timing").unwrap();
        ctx.wait("timing").unwrap();
        let s = start.elapsed().as_secs_f64() / reps as f64;
        eprintln!(
            "noise {kind:?} n {n}: {:.1} us, {:.2} GB/s written, {:.0} Msamples/s",
            s * 1e6,
            (n * 4) as f64 / s / 1e9,
            n as f64 / s / 1e6
        );
    }
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(16))]
    #[test]
    fn random_seeds_streams_and_counts_are_bit_exact(seed: u64, stream: u64, n in 0usize..700) {
        if let Some(ctx) = test_context("noise proptest") {
            let got = draw(&ctx, NoiseKind::UniformU32, seed, stream, n);
            let shape = format!("seed {seed:#x} stream {stream:#x} n {n}");
            assert_same_words("uniform_u32", &shape, &got, &uniform_u32(seed, stream, n));
        }
    }
}

/// `normal_and_indices` writes what `normal` and `batch_indices` write for their own
/// streams: the normals bit for bit against the separate kernel (same code on the same
/// device) and close to the CPU, the indices bit for bit against the CPU; counts on
/// either side of each other and of a block.
#[test]
fn noise_and_labels_in_one_dispatch_match_the_separate_draws() {
    let Some(ctx) = test_context("noise and labels") else {
        return;
    };
    let seed = 0x1_0000_0001;
    for (n, n_b, bound) in [
        (0, 0, 1),
        (1, 5, 10),
        (5, 1, 3),
        (10_000, 100, 10),
        (7, 4099, 60_000),
    ] {
        let out = ctx.upload("normals", &vec![f32::NAN.to_bits(); n.max(1)]);
        let out_b = ctx.upload("labels", &vec![f32::NAN.to_bits(); n_b.max(1)]);
        let (stream, stream_b) = (3u64, (1 << 40) + 1);
        let (d, _, _) = normal_and_indices(
            &ctx,
            seed,
            (stream, &out, n),
            (stream_b, &out_b, n_b, bound),
        )
        .unwrap();
        ctx.run(&[&d], "normal and indices").unwrap();
        let shape = format!("n {n}, n_b {n_b}, bound {bound}");
        let normals: Vec<u32> = ctx.read(&out, n).unwrap();
        let separate = draw(&ctx, NoiseKind::Normal, seed, stream, n);
        assert_same_words("normal_and_indices: normals", &shape, &normals, &separate);
        let want = normal_noise(seed, stream, n);
        assert_close(
            "normal_and_indices",
            &shape,
            &as_f32(&normals),
            &want,
            NORMAL_ATOL,
            0.0,
        );
        let indices: Vec<u32> = ctx.read(&out_b, n_b).unwrap();
        let want: Vec<u32> = uniform_u32(seed, stream_b, n_b)
            .into_iter()
            .map(|w| uniform_index(w, bound))
            .collect();
        assert_same_words("normal_and_indices: indices", &shape, &indices, &want);
    }
    let out = ctx.storage("out", 16);
    let Err(err) = normal_and_indices(&ctx, 0, (0, &out, 4), (1, &out, 4, 10)) else {
        panic!("two draws into one buffer were accepted");
    };
    assert!(err.to_string().contains("same buffer"), "{err}");
    let Err(err) = normal_and_indices(&ctx, 0, (0, &out, 4), (1, &ctx.storage("b", 16), 4, 0))
    else {
        panic!("a bound of 0 was accepted");
    };
    assert!(err.to_string().contains("bound > 0"), "{err}");
}

/// `draw_batch` writes the row numbers `batch_indices` draws (bound = the dataset's rows),
/// the rows `gather_rows` gathers for them and the labels `gather_labels` gathers, on
/// rows shorter and longer than a workgroup, across u32 word boundaries, batch 0 and 1.
#[test]
fn a_batch_in_one_dispatch_matches_the_separate_draw_and_gathers() {
    let Some(ctx) = test_context("draw batch") else {
        return;
    };
    let (seed, stream) = (42u64, 9u64);
    for (rows, row_len, batch) in [
        (1, 1, 1),
        (7, 3, 5),
        (17, 31, 17),
        (5, 7, 0),
        (3, 1027, 2),
        (1000, 784, 100),
    ] {
        let mut word = 0x9e37_79b9u32;
        let mut next = || {
            word ^= word << 13;
            word ^= word >> 17;
            word ^= word << 5;
            word
        };
        let dataset: Vec<u8> = (0..rows * row_len).map(|_| next() as u8).collect();
        let label_bytes: Vec<u8> = (0..rows).map(|_| (next() % 10) as u8).collect();
        let padded = |b: &[u8]| {
            let mut b = b.to_vec();
            b.resize(b.len().div_ceil(4).max(1) * 4, 0);
            ctx.upload("bytes", &b)
        };
        let (bytes, labels) = (padded(&dataset), padded(&label_bytes));
        let want_indices: Vec<u32> = uniform_u32(seed, stream, batch)
            .into_iter()
            .map(|w| uniform_index(w, rows as u32))
            .collect();
        let shape = format!("{rows} rows of {row_len}, batch {batch}");
        for labelled in [false, true] {
            let indices = ctx.upload("indices", &vec![u32::MAX; batch.max(1)]);
            let out = ctx.nan_filled("rows", (batch * row_len).max(1));
            let labels_out = ctx.upload("labels out", &vec![u32::MAX; batch.max(1)]);
            let data = DatasetRows {
                bytes: &bytes,
                rows,
                row_len,
                labels: labelled.then_some(&labels),
            };
            let drawn = DrawnBatch {
                indices: &indices,
                rows: &out,
                labels: labelled.then_some(&labels_out),
            };
            let (d, _) = draw_batch(&ctx, seed, stream, &data, batch, drawn).unwrap();
            ctx.run(&[&d], "draw batch").unwrap();
            let got: Vec<u32> = ctx.read(&indices, batch).unwrap();
            assert_same_words("draw_batch: indices", &shape, &got, &want_indices);
            let got: Vec<f32> = ctx.read(&out, batch * row_len).unwrap();
            let want = gather_rows(&dataset, row_len, &want_indices);
            assert_eq!(got, want, "draw_batch rows, {shape}");
            if labelled {
                let got: Vec<u32> = ctx.read(&labels_out, batch).unwrap();
                assert_eq!(got, gather_labels(&label_bytes, &want_indices), "{shape}");
            }
        }
    }
    let bytes = ctx.upload("bytes", &[0u8; 8]);
    let (indices, out) = (ctx.storage("indices", 8), ctx.storage("rows", 8));
    let data = DatasetRows {
        bytes: &bytes,
        rows: 2,
        row_len: 4,
        labels: None,
    };
    let drawn = |labels| DrawnBatch {
        indices: &indices,
        rows: &out,
        labels,
    };
    let refusal = |batch, labels| match draw_batch(&ctx, 0, 0, &data, batch, drawn(labels)) {
        Ok(_) => panic!("batch {batch} was accepted"),
        Err(err) => err.to_string(),
    };
    let short = refusal(3, None);
    assert!(short.contains("indices buffer holds 8 bytes"), "{short}");
    let unlabelled = refusal(2, Some(&out));
    assert!(unlabelled.contains("labelled dataset"), "{unlabelled}");
}
