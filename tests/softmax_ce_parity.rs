//! Softmax cross-entropy and row softmax on the GPU against the CPU reference; the CPU
//! gradient against central finite differences of an f64 reference. Batches across the
//! workgroup (256) and its multiples, 1 to 33 classes, huge logits, ties, scale and
//! accumulate, out-of-range labels.

mod common;

use common::assert_close;
use gan_gpu::cpu::{SoftmaxCeOutput, softmax_cross_entropy, softmax_rows};
use gan_gpu::gpu::testing::test_context;
use gan_gpu::gpu::{GpuBuffer, GpuContext};
use gan_gpu::kernels::softmax_ce::{self, SoftmaxCeOptions};
use rand::{RngExt, SeedableRng, rngs::StdRng};

const BATCHES: [usize; 5] = [1, 3, 17, 128, 1000];
const CLASSES: [usize; 4] = [1, 2, 10, 33];

/// Logits of every scale (every fifth one an edge value: ±100, ±1e4, ...) and labels that
/// are right about a third of the time. Every fourth row ties its first and last logits
/// at the row maximum, its label alternating between the two tied classes.
fn inputs(batch: usize, classes: usize, seed: u64) -> (Vec<f32>, Vec<u32>) {
    const EDGES: [f32; 10] = [
        100.0, -100.0, 1e4, -1e4, 0.0, 20.0, -20.0, 1e-3, 88.0, -88.0,
    ];
    let mut rng = StdRng::seed_from_u64(seed);
    let mut x: Vec<f32> = (0..batch * classes)
        .map(|i| {
            if i % 5 == 2 {
                EDGES[(i / 5) % EDGES.len()]
            } else {
                rng.random_range(-8.0f32..8.0)
            }
        })
        .collect();
    let labels = x
        .chunks_exact_mut(classes)
        .enumerate()
        .map(|(r, row)| {
            let argmax = first_argmax(row);
            if r % 4 == 1 && classes > 1 {
                let top = row[argmax] + 1.0;
                row[0] = top;
                row[classes - 1] = top;
                return if r % 8 == 1 { 0 } else { classes as u32 - 1 };
            }
            if r % 3 == 0 {
                argmax as u32
            } else {
                rng.random_range(0..classes as u32)
            }
        })
        .collect();
    (x, labels)
}

fn first_argmax(row: &[f32]) -> usize {
    (0..row.len()).fold(0, |a, j| if row[j] > row[a] { j } else { a })
}

/// (dlogits, [loss, accuracy]) read back after one dispatch.
fn gpu_ce(
    ctx: &GpuContext,
    x: &[f32],
    labels: &[u32],
    classes: usize,
    options: SoftmaxCeOptions,
    prior_dlogits: Option<&[f32]>,
) -> (Vec<f32>, Vec<f32>) {
    let batch = labels.len();
    let x_buf = ctx.upload("logits", x);
    let y_buf = ctx.upload("labels", labels);
    let dx_buf = match prior_dlogits {
        Some(prior) => ctx.upload("dlogits", prior),
        None => ctx.nan_filled("dlogits", x.len()),
    };
    let stats = ctx.nan_filled("stats", 2);
    let d = softmax_ce::softmax_cross_entropy(
        ctx, &x_buf, &y_buf, batch, classes, &dx_buf, &stats, options,
    )
    .unwrap();
    ctx.run(&[&d], "softmax_ce").unwrap();
    (
        ctx.read(&dx_buf, x.len()).unwrap(),
        ctx.read(&stats, 2).unwrap(),
    )
}

fn gpu_softmax(ctx: &GpuContext, x: &[f32], classes: usize) -> Vec<f32> {
    let x_buf = ctx.upload("logits", x);
    let p_buf = ctx.nan_filled("probs", x.len());
    let d = softmax_ce::softmax(ctx, &x_buf, x.len() / classes, classes, &p_buf).unwrap();
    ctx.run(&[&d], "softmax").unwrap();
    ctx.read(&p_buf, x.len()).unwrap()
}

/// The CPU works in f64, the GPU in f32 with WGSL's exp (3 + 2|x| ulp) and log (2^-21
/// absolute near 1): relative 1e-5 covers a few ulp per element plus f32 summation of a
/// thousand rows; absolute 1e-7 covers exp's looser bound on the tiny probabilities of
/// logits far below the row maximum. The accuracy is a count of rows over the batch: the
/// count must match exactly, the quotient to WGSL's division accuracy.
fn compare(shape: &str, got: &(Vec<f32>, Vec<f32>), cpu: &SoftmaxCeOutput, batch: usize) {
    assert_close(
        "softmax_ce dlogits",
        shape,
        &got.0,
        &cpu.dlogits,
        1e-7,
        1e-5,
    );
    assert_close(
        "softmax_ce loss",
        shape,
        &got.1[..1],
        &[cpu.loss],
        1e-6,
        1e-5,
    );
    assert_accuracy(shape, got.1[1], cpu.accuracy, batch);
}

fn assert_accuracy(shape: &str, gpu: f32, cpu: f32, batch: usize) {
    let count = |a: f32| (f64::from(a) * batch as f64).round();
    assert_eq!(
        count(gpu),
        count(cpu),
        "softmax_ce accuracy {shape}: {gpu} vs {cpu}"
    );
    assert_close("softmax_ce accuracy", shape, &[gpu], &[cpu], 0.0, 1e-6);
}

#[test]
fn hand_example_two_classes() {
    // softmax([0, ln 3]) = [1/4, 3/4]; the loss of label 1 is -ln(3/4).
    let x = [0.0, 3.0f32.ln()];
    let cpu = softmax_cross_entropy(&x, &[1], 2).unwrap();
    let loss = (4.0f32 / 3.0).ln();
    assert_close("hand loss", "1x2", &[cpu.loss], &[loss], 1e-7, 1e-6);
    assert_close(
        "hand dlogits",
        "1x2",
        &cpu.dlogits,
        &[0.25, -0.25],
        1e-7,
        1e-6,
    );
    assert_eq!(cpu.accuracy, 1.0);
    let Some(ctx) = test_context("softmax_ce hand example") else {
        return;
    };
    let (dx, stats) = gpu_ce(&ctx, &x, &[1], 2, SoftmaxCeOptions::default(), None);
    assert_close("hand gpu loss", "1x2", &stats[..1], &[loss], 1e-7, 1e-6);
    assert_close("hand gpu dlogits", "1x2", &dx, &[0.25, -0.25], 1e-7, 1e-6);
    assert_eq!(stats[1], 1.0);
    let probs = gpu_softmax(&ctx, &x, 2);
    assert_close("hand gpu softmax", "1x2", &probs, &[0.25, 0.75], 1e-7, 1e-6);
}

#[test]
fn matches_cpu_on_awkward_shapes() {
    let Some(ctx) = test_context("softmax_ce shapes") else {
        return;
    };
    for batch in BATCHES {
        for classes in CLASSES {
            let (x, labels) = inputs(batch, classes, (batch * 100 + classes) as u64);
            let shape = format!("{batch}x{classes}");
            let got = gpu_ce(
                &ctx,
                &x,
                &labels,
                classes,
                SoftmaxCeOptions::default(),
                None,
            );
            let cpu = softmax_cross_entropy(&x, &labels, classes).unwrap();
            compare(&shape, &got, &cpu, batch);
            assert!(got.0.iter().chain(&got.1).all(|v| v.is_finite()), "{shape}");
        }
    }
}

#[test]
fn softmax_matches_cpu_on_awkward_shapes() {
    let Some(ctx) = test_context("softmax shapes") else {
        return;
    };
    for batch in BATCHES {
        for classes in CLASSES {
            let (x, _) = inputs(batch, classes, (batch * 7 + classes) as u64);
            let got = gpu_softmax(&ctx, &x, classes);
            let want = softmax_rows(&x, classes);
            assert_close(
                "softmax",
                &format!("{batch}x{classes}"),
                &got,
                &want,
                1e-7,
                1e-5,
            );
        }
    }
}

#[test]
fn large_batch_and_classes() {
    let Some(ctx) = test_context("softmax_ce 1000x1000") else {
        return;
    };
    let (batch, classes) = (1000, 1000);
    let (x, labels) = inputs(batch, classes, 5);
    let got = gpu_ce(
        &ctx,
        &x,
        &labels,
        classes,
        SoftmaxCeOptions::default(),
        None,
    );
    let cpu = softmax_cross_entropy(&x, &labels, classes).unwrap();
    compare("1000x1000", &got, &cpu, batch);
    let probs = gpu_softmax(&ctx, &x, classes);
    assert_close(
        "softmax",
        "1000x1000",
        &probs,
        &softmax_rows(&x, classes),
        1e-7,
        1e-5,
    );
}

#[test]
fn scale_and_accumulate() {
    let Some(ctx) = test_context("softmax_ce options") else {
        return;
    };
    let (batch, classes) = (17, 10);
    let (x, labels) = inputs(batch, classes, 9);
    let prior: Vec<f32> = (0..batch * classes)
        .map(|i| i as f32 * 0.01 - 0.5)
        .collect();
    let cpu = softmax_cross_entropy(&x, &labels, classes).unwrap();
    for accumulate in [false, true] {
        let options = SoftmaxCeOptions {
            scale: 0.5,
            accumulate,
        };
        let (dx, stats) = gpu_ce(&ctx, &x, &labels, classes, options, Some(&prior));
        let want: Vec<f32> = prior
            .iter()
            .zip(&cpu.dlogits)
            .map(|(p, g)| if accumulate { p + 0.5 * g } else { 0.5 * g })
            .collect();
        let shape = format!("17x10 accumulate {accumulate}");
        assert_close("softmax_ce scaled dlogits", &shape, &dx, &want, 1e-7, 1e-5);
        // The statistics ignore the scale.
        assert_close(
            "softmax_ce loss",
            &shape,
            &stats[..1],
            &[cpu.loss],
            1e-6,
            1e-5,
        );
        assert_accuracy(&shape, stats[1], cpu.accuracy, batch);
    }
}

#[test]
fn huge_logits_give_finite_exact_tails() {
    let Some(ctx) = test_context("softmax_ce huge logits") else {
        return;
    };
    // Right at a 2e4 margin costs e^-2e4 (0 in f32); wrong costs the margin. A tie at
    // 1e4 costs ln 2 and predicts class 0, so its label 1 counts as wrong.
    let x = [1e4f32, -1e4, 1e4, -1e4, -1e4, 1e4, 1e4, 1e4];
    let labels = [0, 1, 0, 1];
    let (dx, stats) = gpu_ce(&ctx, &x, &labels, 2, SoftmaxCeOptions::default(), None);
    let loss = (2e4 + 2e4 + 2f64.ln()) / 4.0;
    assert_close("huge loss", "4x2", &stats[..1], &[loss as f32], 0.0, 1e-6);
    assert_eq!(stats[1], 0.25, "only row 0 is right");
    let want = [0.0, 0.0, 0.25, -0.25, -0.25, 0.25, 0.125, -0.125];
    assert_close("huge dlogits", "4x2", &dx, &want, 1e-9, 1e-6);
    let probs = gpu_softmax(&ctx, &x, 2);
    let want = [1.0, 0.0, 1.0, 0.0, 0.0, 1.0, 0.5, 0.5];
    assert_close("huge softmax", "4x2", &probs, &want, 0.0, 1e-6);
}

#[test]
fn confident_rows_keep_relative_precision() {
    // p_label - 1 ≈ -e^-12 and the loss ≈ e^-12: precise only if neither is formed by
    // subtracting from 1 in f32.
    let x = [12.0f32, 0.0, 0.0, 12.0];
    let labels = [0, 1];
    let cpu = softmax_cross_entropy(&x, &labels, 2).unwrap();
    let want_loss = (-12.0f64).exp().ln_1p();
    assert_close(
        "confident loss",
        "2x2",
        &[cpu.loss],
        &[want_loss as f32],
        0.0,
        1e-6,
    );
    let Some(ctx) = test_context("softmax_ce confident") else {
        return;
    };
    let (dx, stats) = gpu_ce(&ctx, &x, &labels, 2, SoftmaxCeOptions::default(), None);
    assert_close("confident gpu dlogits", "2x2", &dx, &cpu.dlogits, 0.0, 1e-5);
    assert_close(
        "confident gpu loss",
        "2x2",
        &stats[..1],
        &[cpu.loss],
        0.0,
        1e-5,
    );
}

#[test]
fn out_of_range_labels_stay_in_bounds() {
    let (batch, classes) = (3, 4);
    let (x, _) = inputs(batch, classes, 11);
    let labels = [2, 4, 99];
    let err = softmax_cross_entropy(&x, &labels, classes).unwrap_err();
    assert!(err.to_string().contains("label 4 of row 1"), "{err}");
    let Some(ctx) = test_context("softmax_ce bad labels") else {
        return;
    };
    // Row 0 as a batch of one, then rescaled to a batch of three; rows 1 and 2 add loss
    // 0, count as wrong and get softmax/3.
    let row0 = softmax_cross_entropy(&x[..classes], &labels[..1], classes).unwrap();
    let mut want: Vec<f32> = row0.dlogits.iter().map(|g| g / 3.0).collect();
    want.extend(softmax_rows(&x[classes..], classes).iter().map(|p| p / 3.0));
    let (dx, stats) = gpu_ce(
        &ctx,
        &x,
        &labels,
        classes,
        SoftmaxCeOptions::default(),
        None,
    );
    assert_close("bad label dlogits", "3x4", &dx, &want, 1e-7, 1e-5);
    assert_close(
        "bad label loss",
        "3x4",
        &stats[..1],
        &[row0.loss / 3.0],
        1e-6,
        1e-5,
    );
    assert_close(
        "bad label accuracy",
        "3x4",
        &stats[1..],
        &[row0.accuracy / 3.0],
        0.0,
        1e-6,
    );
}

/// Mean over rows of logsumexp(x) - x[label], in f64.
fn loss_f64(x: &[f64], labels: &[u32], classes: usize) -> f64 {
    let total: f64 = x
        .chunks_exact(classes)
        .zip(labels)
        .map(|(row, &label)| {
            let m = row.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            m + row.iter().map(|v| (v - m).exp()).sum::<f64>().ln() - row[label as usize]
        })
        .sum();
    total / labels.len() as f64
}

#[test]
fn cpu_gradient_matches_finite_differences() {
    let mut rng = StdRng::seed_from_u64(21);
    for (batch, classes) in [(1, 1), (1, 2), (3, 5), (4, 7)] {
        let mut x: Vec<f32> = (0..batch * classes)
            .map(|_| rng.random_range(-3.0f32..3.0))
            .collect();
        // One confidently right row, where the gradient is tiny.
        x[0] += 15.0;
        let labels: Vec<u32> = (0..batch)
            .map(|r| {
                if r == 0 {
                    0
                } else {
                    rng.random_range(0..classes as u32)
                }
            })
            .collect();
        let cpu = softmax_cross_entropy(&x, &labels, classes).unwrap();
        let x64: Vec<f64> = x.iter().map(|&v| f64::from(v)).collect();
        assert_close(
            "softmax_ce loss vs f64",
            &format!("{batch}x{classes}"),
            &[cpu.loss],
            &[loss_f64(&x64, &labels, classes) as f32],
            1e-7,
            1e-6,
        );
        let h = 1e-5;
        let fd: Vec<f32> = (0..x64.len())
            .map(|i| {
                let (mut plus, mut minus) = (x64.clone(), x64.clone());
                plus[i] += h;
                minus[i] -= h;
                let d = loss_f64(&plus, &labels, classes) - loss_f64(&minus, &labels, classes);
                (d / (2.0 * h)) as f32
            })
            .collect();
        // Central differences err by ~h²·f''' (1e-10) plus 1e-16/h of rounding (1e-11).
        let shape = format!("{batch}x{classes}");
        assert_close(
            "softmax_ce dlogits vs fd",
            &shape,
            &cpu.dlogits,
            &fd,
            1e-8,
            1e-5,
        );
    }
}

#[test]
fn cpu_rejects_bad_shapes() {
    let msg = |r: gan_gpu::Result<SoftmaxCeOutput>| r.unwrap_err().to_string();
    assert!(msg(softmax_cross_entropy(&[], &[], 3)).contains("empty"));
    assert!(msg(softmax_cross_entropy(&[0.0; 4], &[0, 1], 0)).contains("no classes"));
    assert!(msg(softmax_cross_entropy(&[0.0; 5], &[0, 1], 2)).contains("expected 4"));
    assert!(msg(softmax_cross_entropy(&[0.0; 4], &[0, 2], 2)).contains("label 2 of row 1"));
}

#[test]
fn gpu_rejects_bad_shapes() {
    let Some(ctx) = test_context("softmax_ce errors") else {
        return;
    };
    let (x, y, d, s) = (
        ctx.storage("x", 40),
        ctx.storage("y", 8),
        ctx.storage("d", 40),
        ctx.storage("s", 8),
    );
    let ce = |batch, classes, d: &GpuBuffer, s: &GpuBuffer| {
        let options = SoftmaxCeOptions::default();
        softmax_ce::softmax_cross_entropy(&ctx, &x, &y, batch, classes, d, s, options)
            .err()
            .map(|e| e.to_string())
    };
    assert!(ce(0, 5, &d, &s).unwrap().contains("empty"));
    assert!(ce(2, 0, &d, &s).unwrap().contains("no classes"));
    assert!(ce(2, 6, &d, &s).unwrap().contains("logits holds 40 bytes"));
    assert!(ce(3, 3, &d, &s).unwrap().contains("labels holds 8 bytes"));
    assert!(ce(2, 5, &d, &d).unwrap().contains("must differ"));
    assert!(
        ce(2, 5, &d, &ctx.storage("s", 4))
            .unwrap()
            .contains("stats")
    );
    assert!(ce(2, 5, &d, &s).is_none());
    let sm = |batch, classes| {
        softmax_ce::softmax(&ctx, &x, batch, classes, &d)
            .err()
            .map(|e| e.to_string())
    };
    assert!(sm(1, 0).unwrap().contains("no classes"));
    assert!(sm(3, 4).unwrap().contains("48"));
    // An empty batch is a valid softmax: nothing to record.
    let empty = softmax_ce::softmax(&ctx, &x, 0, 5, &d).unwrap();
    assert!(empty.groups.contains(&0));
    if ctx.loop_limit().is_some() {
        // 3 passes over 30000 classes per row would pass llvmpipe's loop cut-off.
        assert!(ce(1, 30_000, &d, &s).unwrap().contains("loop iterations"));
        assert!(sm(1, 30_000).unwrap().contains("loop iterations"));
    }
}

#[test]
fn timing() {
    let Some(ctx) = test_context("softmax_ce timing") else {
        return;
    };
    eprintln!("adapter: {}", ctx.describe());
    for (batch, classes) in [(128, 10), (1000, 1000)] {
        let (x, labels) = inputs(batch, classes, 1);
        let (xb, yb) = (ctx.upload("logits", &x), ctx.upload("labels", &labels));
        let db = ctx.storage("dlogits", (x.len() * 4) as u64);
        let sb = ctx.storage("stats", 8);
        let options = SoftmaxCeOptions::default();
        let d =
            softmax_ce::softmax_cross_entropy(&ctx, &xb, &yb, batch, classes, &db, &sb, options)
                .unwrap();
        let reps = 20;
        ctx.run(&[&d], "warm-up").unwrap();
        ctx.wait("warm-up").unwrap();
        let start = std::time::Instant::now();
        ctx.run(&vec![&d; reps], "timing").unwrap();
        ctx.wait("timing").unwrap();
        let s = start.elapsed().as_secs_f64() / reps as f64;
        // Logits read, dlogits written, labels read, two statistics written.
        let bytes = 8 * batch * classes + 4 * batch + 8;
        eprintln!(
            "softmax_ce {batch}x{classes}: {:.1} us per dispatch ({:.3} GB/s)",
            s * 1e6,
            bytes as f64 / s / 1e9
        );
    }
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(16))]
    #[test]
    fn random_shapes_match_cpu(batch in 1usize..300, classes in 1usize..40, seed in 0u64..1000) {
        if let Some(ctx) = test_context("softmax_ce proptest") {
            let (x, labels) = inputs(batch, classes, seed);
            let shape = format!("{batch}x{classes} seed {seed}");
            let got = gpu_ce(&ctx, &x, &labels, classes, SoftmaxCeOptions::default(), None);
            compare(&shape, &got, &softmax_cross_entropy(&x, &labels, classes).unwrap(), batch);
            let probs = gpu_softmax(&ctx, &x, classes);
            assert_close("softmax", &shape, &probs, &softmax_rows(&x, classes), 1e-7, 1e-5);
        }
    }
}
