//! BCE with logits on the GPU against the CPU reference and the TF-Keras golden vectors:
//! constant and per-sample labels, huge logits, counts over several workgroup chunks,
//! scale, accumulate, the stats offset, a loss over some rows of a batch, and two losses
//! in one dispatch against the two passes.

mod common;
#[path = "common/golden.rs"]
#[allow(dead_code)] // this file reads tensors only
mod golden;

use common::assert_close;
use gan_gpu::cpu::{bce_constant_label_rows, bce_with_logits};
use gan_gpu::gpu::testing::test_context;
use gan_gpu::gpu::{GpuBuffer, GpuContext};
use gan_gpu::kernels::bce::{self, BceOptions, Labels};
use rand::{RngExt, SeedableRng, rngs::StdRng};

/// Counts around the workgroup (256) and its multiples, primes, the GAN's batch.
const COUNTS: [usize; 12] = [1, 3, 4, 5, 7, 17, 31, 100, 255, 256, 257, 4099];

/// Logits of every scale; every fifth one is a huge or tiny edge value.
fn logits(count: usize, seed: u64) -> Vec<f32> {
    const EDGES: [f32; 12] = [
        100.0, -100.0, 50.0, -50.0, 20.0, -20.0, 0.0, 1e-3, -1e-3, 88.0, -88.0, 17.0,
    ];
    let mut rng = StdRng::seed_from_u64(seed);
    (0..count)
        .map(|i| {
            if i % 5 == 2 {
                EDGES[(i / 5) % EDGES.len()]
            } else {
                rng.random_range(-8.0f32..8.0)
            }
        })
        .collect()
}

/// (dlogits, [loss, mean_prob]) read back after one dispatch.
fn gpu_bce(
    ctx: &GpuContext,
    x: &[f32],
    labels: Option<&[f32]>,
    constant: f32,
    options: BceOptions,
    prior_dlogits: Option<&[f32]>,
) -> (Vec<f32>, Vec<f32>) {
    let count = x.len();
    let x_buf = ctx.upload("logits", x);
    let z_buf = labels.map(|z| ctx.upload("labels", z));
    let dx_buf = match prior_dlogits {
        Some(prior) => ctx.upload("dlogits", prior),
        None => ctx.nan_filled("dlogits", count),
    };
    let stats = ctx.nan_filled("stats", options.stats_offset + 2);
    let labels = match &z_buf {
        Some(buf) => Labels::Buffer(buf),
        None => Labels::Constant(constant),
    };
    let d = bce::bce_with_logits(ctx, &x_buf, labels, count, &dx_buf, &stats, options).unwrap();
    ctx.run(&[&d], "bce").unwrap();
    let stats: Vec<f32> = ctx.read(&stats, options.stats_offset + 2).unwrap();
    (
        ctx.read(&dx_buf, count).unwrap(),
        stats[options.stats_offset..].to_vec(),
    )
}

/// The CPU sums in f64, the GPU in f32 (per-invocation then a tree): relative 1e-5 on the
/// means covers the f32 rounding of a few thousand terms. dlogits is one rounding chain per
/// element (exp, divisions): abs 1e-7 is below 1/count of the smallest sensible loss.
fn compare(shape: &str, got: &(Vec<f32>, Vec<f32>), x: &[f32], z: &[f32], scale: f32) {
    let cpu = bce_with_logits(x, z).unwrap();
    let want: Vec<f32> = cpu.dlogits.iter().map(|g| g * scale).collect();
    assert_close("bce dlogits", shape, &got.0, &want, 1e-7, 1e-5);
    assert_close("bce loss", shape, &got.1[..1], &[cpu.loss], 1e-6, 1e-5);
    assert_close(
        "bce mean_prob",
        shape,
        &got.1[1..],
        &[cpu.mean_prob],
        1e-6,
        1e-5,
    );
}

#[test]
fn constant_labels_match_cpu() {
    let Some(ctx) = test_context("bce constant labels") else {
        return;
    };
    for (k, count) in COUNTS.into_iter().enumerate() {
        let x = logits(count, k as u64);
        for label in [1.0, 0.0] {
            let got = gpu_bce(&ctx, &x, None, label, BceOptions::default(), None);
            let shape = format!("count {count} label {label}");
            compare(&shape, &got, &x, &vec![label; count], 1.0);
        }
    }
}

#[test]
fn label_buffers_match_cpu() {
    let Some(ctx) = test_context("bce label buffer") else {
        return;
    };
    let mut rng = StdRng::seed_from_u64(3);
    for (k, count) in COUNTS.into_iter().enumerate() {
        let x = logits(count, 50 + k as u64);
        // Hard labels and soft ones (label smoothing uses values like 0.9).
        let z: Vec<f32> = (0..count)
            .map(|i| {
                if i % 2 == 0 {
                    (i % 4 == 0) as u32 as f32
                } else {
                    rng.random()
                }
            })
            .collect();
        let got = gpu_bce(&ctx, &x, Some(&z), 0.0, BceOptions::default(), None);
        compare(&format!("count {count} label buffer"), &got, &x, &z, 1.0);
    }
}

#[test]
fn scale_accumulate_and_stats_offset() {
    let Some(ctx) = test_context("bce options") else {
        return;
    };
    let x = logits(100, 9);
    let prior: Vec<f32> = (0..100).map(|i| i as f32 * 0.01 - 0.5).collect();
    let options = BceOptions {
        scale: 0.5,
        accumulate: true,
        stats_offset: 3,
        ..BceOptions::default()
    };
    let (dx, stats) = gpu_bce(&ctx, &x, None, 1.0, options, Some(&prior));
    let cpu = bce_with_logits(&x, &[1.0; 100]).unwrap();
    let want: Vec<f32> = prior
        .iter()
        .zip(&cpu.dlogits)
        .map(|(p, g)| p + 0.5 * g)
        .collect();
    assert_close("bce accumulate", "count 100", &dx, &want, 1e-7, 1e-5);
    assert_close(
        "bce stats",
        "offset 3",
        &stats,
        &[cpu.loss, cpu.mean_prob],
        1e-6,
        1e-5,
    );
}

#[test]
fn huge_logits_give_finite_exact_tails() {
    let Some(ctx) = test_context("bce huge logits") else {
        return;
    };
    // Correct labels at |x| = 100 cost ~e^-100 (0 in f32), wrong ones cost |x|.
    let x = [100.0f32, -100.0, 100.0, -100.0, 1e30, -1e30];
    let z = [1.0f32, 0.0, 0.0, 1.0, 1.0, 0.0];
    let (dx, stats) = gpu_bce(&ctx, &x, Some(&z), 0.0, BceOptions::default(), None);
    assert!(
        dx.iter().chain(&stats).all(|v| v.is_finite()),
        "{dx:?} {stats:?}"
    );
    assert_close(
        "bce huge loss",
        "6",
        &stats[..1],
        &[200.0 / 6.0],
        1e-5,
        1e-6,
    );
    let want = [0.0, 0.0, 1.0 / 6.0, -1.0 / 6.0, 0.0, 0.0];
    assert_close("bce huge dlogits", "6", &dx, &want, 1e-7, 0.0);
}

#[test]
fn matches_tf_keras_golden() {
    let Some(ctx) = test_context("bce golden") else {
        return;
    };
    let case = golden::Case::load("bce_logits");
    let x = case.tensor("x").data;
    let z = case.tensor("labels").data;
    let (dx, stats) = gpu_bce(&ctx, &x, Some(&z), 0.0, BceOptions::default(), None);
    // README tolerance for the loss and element-wise gradients: abs 1e-6 (dx includes 1/32).
    assert_close(
        "bce golden dx",
        "32",
        &dx,
        &case.tensor("dx").data,
        1e-6,
        0.0,
    );
    let loss = case.tensor("loss").data;
    // The loss is ~11: 1e-6 absolute is 1 ulp-ish; allow f32 summation-order rounding.
    assert_close("bce golden loss", "32", &stats[..1], &loss, 1e-6, 1e-6);
}

#[test]
fn rejects_empty_batches_and_short_buffers() {
    let Some(ctx) = test_context("bce errors") else {
        return;
    };
    let (a, b, s) = (
        ctx.storage("a", 400),
        ctx.storage("b", 400),
        ctx.storage("s", 8),
    );
    let run = |count, stats: &GpuBuffer, options| {
        bce::bce_with_logits(&ctx, &a, Labels::Constant(1.0), count, &b, stats, options)
            .err()
            .map(|e| e.to_string())
    };
    assert!(run(0, &s, BceOptions::default()).unwrap().contains("empty"));
    assert!(
        run(101, &s, BceOptions::default())
            .unwrap()
            .contains("101 f32")
    );
    let offset = BceOptions {
        stats_offset: 1,
        ..BceOptions::default()
    };
    assert!(run(100, &s, offset).unwrap().contains("offset 1"));
    assert!(run(100, &s, BceOptions::default()).is_none());
}

#[test]
fn timing_at_gan_batch() {
    let Some(ctx) = test_context("bce timing") else {
        return;
    };
    let count = 100;
    let x = ctx.upload("logits", &logits(count, 1));
    let dx = ctx.storage("dlogits", count as u64 * 4);
    let stats = ctx.storage("stats", 8);
    let d = bce::bce_with_logits(
        &ctx,
        &x,
        Labels::Constant(1.0),
        count,
        &dx,
        &stats,
        BceOptions::default(),
    )
    .unwrap();
    ctx.run(&[&d], "warm-up").unwrap();
    ctx.wait("warm-up").unwrap();
    let reps = 50;
    let start = std::time::Instant::now();
    ctx.run(&vec![&d; reps], "timing").unwrap();
    ctx.wait("timing").unwrap();
    let s = start.elapsed().as_secs_f64() / reps as f64;
    eprintln!(
        "adapter: {}\nbce on {count} logits: {:.1} us per dispatch ({:.3} GB/s; latency-bound)",
        ctx.describe(),
        s * 1e6,
        (count * 8) as f64 / s / 1e9
    );
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(16))]
    #[test]
    fn random_counts_match_cpu(count in 1usize..700, seed in 0u64..1000, buffer_labels: bool) {
        if let Some(ctx) = test_context("bce proptest") {
            let x = logits(count, seed);
            let z: Vec<f32> = (0..count)
                .map(|i| (i as u64 + seed).is_multiple_of(3) as u32 as f32)
                .collect();
            let (labels, constant) = if buffer_labels { (Some(&z[..]), 0.0) } else { (None, 1.0) };
            let got = gpu_bce(&ctx, &x, labels, constant, BceOptions::default(), None);
            let want_z = if buffer_labels { z.clone() } else { vec![1.0; count] };
            compare(&format!("count {count} seed {seed}"), &got, &x, &want_z, 1.0);
        }
    }
}

/// A loss over rows first..first + count of a batch of `total` (the discriminator's real
/// or fake half of [real; fake]): the statistics of those rows, their gradient, and 0 in
/// the other rows, or their prior values with accumulate; as the CPU twin does.
#[test]
fn a_loss_over_some_rows_matches_cpu() {
    let Some(ctx) = test_context("bce rows") else {
        return;
    };
    for (k, (first, count, total)) in [
        (0, 100, 200),
        (100, 100, 200),
        (3, 1, 7),
        (0, 256, 257),
        (1, 4097, 4099),
        (600, 5, 605),
    ]
    .into_iter()
    .enumerate()
    {
        let x = logits(total, 70 + k as u64);
        let prior: Vec<f32> = (0..total).map(|i| i as f32 * 0.01 - 0.5).collect();
        for (label, accumulate) in [(1.0, false), (0.0, true)] {
            let x_buf = ctx.upload("logits", &x);
            let dx_buf = match accumulate {
                true => ctx.upload("dlogits", &prior),
                false => ctx.nan_filled("dlogits", total),
            };
            let stats = ctx.nan_filled("stats", 2);
            let options = BceOptions {
                accumulate,
                first,
                total: Some(total),
                ..BceOptions::default()
            };
            let labels = Labels::Constant(label);
            let d = bce::bce_with_logits(&ctx, &x_buf, labels, count, &dx_buf, &stats, options)
                .unwrap();
            ctx.run(&[&d], "bce rows").unwrap();
            let mut want = prior.clone();
            let rows = first..first + count;
            let (loss, prob) =
                bce_constant_label_rows(&x, label, rows, Some((&mut want, accumulate))).unwrap();
            let shape = format!("rows {first}+{count} of {total}, label {label}, {accumulate}");
            let got: Vec<f32> = ctx.read(&dx_buf, total).unwrap();
            assert_close("bce rows dlogits", &shape, &got, &want, 1e-7, 1e-5);
            let got: Vec<f32> = ctx.read(&stats, 2).unwrap();
            assert_close("bce rows stats", &shape, &got, &[loss, prob], 1e-6, 1e-5);
            if !accumulate {
                let outside = got_outside(&ctx, &dx_buf, total, first, count);
                assert!(outside.iter().all(|&g| g == 0.0), "{shape}: {outside:?}");
            }
        }
    }
    let x = ctx.upload("logits", &[0.5f32; 8]);
    let options = BceOptions {
        first: 5,
        total: Some(8),
        ..BceOptions::default()
    };
    let err = bce::bce_with_logits(
        &ctx,
        &x,
        Labels::Constant(1.0),
        4,
        &ctx.nan_filled("d", 8),
        &ctx.nan_filled("s", 2),
        options,
    )
    .err()
    .expect("rows 5..9 of 8 were accepted")
    .to_string();
    assert!(err.contains("5..9 of 8"), "{err}");
}

/// The rows of dlogits outside first..first + count.
fn got_outside(
    ctx: &GpuContext,
    d: &GpuBuffer,
    total: usize,
    first: usize,
    count: usize,
) -> Vec<f32> {
    let all: Vec<f32> = ctx.read(d, total).unwrap();
    all.iter()
        .enumerate()
        .filter(|(i, _)| *i < first || *i >= first + count)
        .map(|(_, &g)| g)
        .collect()
}

/// `bce_constant_pair` writes the bits that `bce_with_logits` writes for the first loss
/// and then for the second: the [real; fake] halves of the discriminator's batch, one
/// loss inside the other, overlapping rows, the second overwriting, single rows, and more
/// rows than the workgroup.
#[test]
fn two_losses_in_one_dispatch_match_the_two_passes() {
    let Some(ctx) = test_context("bce pair") else {
        return;
    };
    let bits = |b: &GpuBuffer, len: usize| -> Vec<u32> {
        let v: Vec<f32> = ctx.read(b, len).unwrap();
        v.iter().map(|f| f.to_bits()).collect()
    };
    // (total, (first, count, label, accumulate) of each loss)
    type Rows = (usize, usize, f32, bool);
    let cases: [(usize, Rows, Rows); 6] = [
        (200, (100, 100, 0.0, false), (0, 100, 1.0, true)),
        (200, (0, 200, 1.0, false), (50, 50, 0.0, true)),
        (7, (0, 5, 1.0, true), (3, 4, 0.0, true)),
        (9, (2, 3, 0.0, false), (4, 5, 1.0, false)),
        (1, (0, 1, 1.0, false), (0, 1, 0.0, true)),
        (601, (0, 300, 0.0, false), (300, 301, 1.0, true)),
    ];
    for (k, &(total, a, b)) in cases.iter().enumerate() {
        let mut rng = StdRng::seed_from_u64(70 + k as u64);
        let logits: Vec<f32> = (0..total)
            .map(|_| rng.random_range(-30.0f32..30.0))
            .collect();
        let prior: Vec<f32> = (0..total).map(|_| rng.random_range(-1.0f32..1.0)).collect();
        let logits = ctx.upload("logits", &logits);
        let [d1, d2] = [(); 2].map(|_| ctx.upload("dlogits", &prior));
        let [s1, s2, t1, t2] = [(); 4].map(|_| ctx.nan_filled("stats", 2));
        let options = |(first, _, _, accumulate): Rows| BceOptions {
            accumulate,
            first,
            total: Some(total),
            ..BceOptions::default()
        };
        let separate = [(a, &s1), (b, &t1)].map(|(rows, stats)| {
            bce::bce_with_logits(
                &ctx,
                &logits,
                Labels::Constant(rows.2),
                rows.1,
                &d1,
                stats,
                options(rows),
            )
            .unwrap()
        });
        let loss = |rows: Rows, stats| bce::ConstantLoss {
            label: rows.2,
            count: rows.1,
            stats,
            options: options(rows),
        };
        let pair = bce::bce_constant_pair(&ctx, &logits, &d2, loss(a, &s2), loss(b, &t2)).unwrap();
        ctx.run(&[&separate[0], &separate[1]], "two bce passes")
            .unwrap();
        ctx.run(&[&pair], "bce pair").unwrap();
        let shape = format!("{total} rows, {a:?} then {b:?}");
        assert_eq!(bits(&d2, total), bits(&d1, total), "dlogits, {shape}");
        assert_eq!(bits(&s2, 2), bits(&s1, 2), "first stats, {shape}");
        assert_eq!(bits(&t2, 2), bits(&t1, 2), "second stats, {shape}");
    }
    let (logits, d) = (ctx.upload("logits", &[0.5f32; 4]), ctx.storage("d", 16));
    let stats = ctx.storage("stats", 8);
    let loss = |stats| bce::ConstantLoss {
        label: 1.0,
        count: 4,
        stats,
        options: BceOptions::default(),
    };
    let Err(err) = bce::bce_constant_pair(&ctx, &logits, &d, loss(&stats), loss(&stats)) else {
        panic!("two losses sharing a statistics buffer were accepted");
    };
    assert!(err.to_string().contains("different buffers"), "{err}");
}
