//! The GEMM and bias-gradient kernels against their CPU twins (`cpu::gemm`).
//!
//! Whole-number inputs in -3..=3 make every product and partial sum exact in f32 (sums stay
//! far below 2^24), so those cases compare with `==` whatever the summation order; random
//! f32 inputs check the same paths with a tolerance. Outputs start as NaN, so an element a
//! kernel forgets shows up; accumulate cases start from known values instead.

mod common;
// Only the case reader is used here.
#[allow(dead_code)]
#[path = "common/golden.rs"]
mod golden;

use std::time::Instant;

use common::assert_close;
use gan_gpu::cpu;
use gan_gpu::gpu::testing::test_context;
use gan_gpu::gpu::{GpuContext, KernelSettings};
use gan_gpu::kernels::gemm::{GemmShape, GemmVariant, bias_grad, gemm, gemm_flops};
use proptest::prelude::*;
use rand::{RngExt, SeedableRng, rngs::StdRng};

const VARIANTS: [GemmVariant; 2] = [GemmVariant::Register, GemmVariant::Tiled];
/// (trans_a, trans_b): NN, NT, TN, TT.
const LAYOUTS: [(bool, bool); 4] = [(false, false), (false, true), (true, false), (true, true)];

fn integers(rng: &mut StdRng, len: usize) -> Vec<f32> {
    (0..len).map(|_| rng.random_range(-3..=3) as f32).collect()
}

fn uniform(rng: &mut StdRng, len: usize) -> Vec<f32> {
    (0..len).map(|_| rng.random_range(-1.0..1.0)).collect()
}

fn describe(shape: &GemmShape, bias: bool, variant: GemmVariant) -> String {
    format!(
        "{}x{}x{} {}{}{}{} {variant:?}",
        shape.m,
        shape.n,
        shape.k,
        if shape.trans_a { "T" } else { "N" },
        if shape.trans_b { "T" } else { "N" },
        if bias { " +bias" } else { "" },
        if shape.accumulate { " +=" } else { "" },
    )
}

/// Inputs of one case; `c0` is the initial C (NaN unless accumulating).
struct Case {
    shape: GemmShape,
    a: Vec<f32>,
    b: Vec<f32>,
    bias: Option<Vec<f32>>,
    c0: Vec<f32>,
}

impl Case {
    fn new(
        shape: GemmShape,
        bias: bool,
        rng: &mut StdRng,
        fill: fn(&mut StdRng, usize) -> Vec<f32>,
    ) -> Self {
        let GemmShape { m, n, k, .. } = shape;
        Case {
            shape,
            a: fill(rng, m * k),
            b: fill(rng, k * n),
            bias: bias.then(|| fill(rng, n)),
            c0: if shape.accumulate {
                fill(rng, m * n)
            } else {
                vec![f32::NAN; m * n]
            },
        }
    }

    fn cpu(&self) -> Vec<f32> {
        let s = &self.shape;
        let mut c = self.c0.clone();
        cpu::gemm::gemm(
            s.m,
            s.n,
            s.k,
            &self.a,
            s.trans_a,
            &self.b,
            s.trans_b,
            &mut c,
            s.accumulate,
        )
        .unwrap();
        if let Some(bias) = &self.bias {
            for row in c.chunks_exact_mut(s.n.max(1)) {
                for (x, b) in row.iter_mut().zip(bias) {
                    *x += b;
                }
            }
        }
        c
    }

    fn gpu(&self, ctx: &GpuContext, variant: GemmVariant) -> Vec<f32> {
        let a = ctx.upload("test A", &self.a);
        let b = ctx.upload("test B", &self.b);
        let bias = self.bias.as_ref().map(|x| ctx.upload("test bias", x));
        let c = ctx.upload("test C", &self.c0);
        let d = gemm(ctx, &self.shape, &a, &b, bias.as_ref(), &c, variant).unwrap();
        ctx.run(&[&d], "gemm test").unwrap();
        ctx.read(&c, self.c0.len()).unwrap()
    }

    /// Exact comparison (whole-number inputs).
    fn check_exact(&self, ctx: &GpuContext, variant: GemmVariant) {
        let desc = describe(&self.shape, self.bias.is_some(), variant);
        assert_close(
            "gemm",
            &desc,
            &self.gpu(ctx, variant),
            &self.cpu(),
            0.0,
            0.0,
        );
    }
}

fn shape(
    m: usize,
    n: usize,
    k: usize,
    (trans_a, trans_b): (bool, bool),
    accumulate: bool,
) -> GemmShape {
    GemmShape {
        m,
        n,
        k,
        trans_a,
        trans_b,
        accumulate,
    }
}

#[test]
fn gemm_is_exact_on_whole_numbers_for_awkward_shapes() {
    let Some(ctx) = test_context("gemm exact awkward shapes") else {
        return;
    };
    let mut rng = StdRng::seed_from_u64(1);
    let shapes = [
        (0, 5, 3),
        (5, 0, 3),
        (5, 3, 0),
        (1, 1, 1),
        (7, 17, 31),
        (17, 7, 5),
        (33, 65, 17),
        (64, 64, 64),
        (3, 129, 8),
        (130, 9, 12),
    ];
    let mut case_number = 0usize;
    for (m, n, k) in shapes {
        for layout in LAYOUTS {
            for variant in VARIANTS {
                // Cycle bias / accumulate so every shape and layout meets each combination.
                let bias = case_number % 2 == 1;
                let accumulate = (case_number / 2) % 2 == 1;
                case_number += 1;
                let case = Case::new(shape(m, n, k, layout, accumulate), bias, &mut rng, integers);
                case.check_exact(&ctx, variant);
            }
        }
    }
}

#[test]
fn gemm_with_k_zero_gives_bias_or_keeps_c() {
    let Some(ctx) = test_context("gemm k = 0") else {
        return;
    };
    let mut rng = StdRng::seed_from_u64(2);
    for variant in VARIANTS {
        for (bias, accumulate) in [(false, false), (true, false), (false, true), (true, true)] {
            let case = Case::new(
                shape(5, 3, 0, (false, false), accumulate),
                bias,
                &mut rng,
                integers,
            );
            let want = case.cpu();
            assert!(want.iter().all(|x| x.is_finite()));
            case.check_exact(&ctx, variant);
        }
    }
}

/// `gemm_dot` (one workgroup per output, k split over its invocations) on thin shapes:
/// empty, single, prime and not-a-multiple-of-64 sizes, every layout, with and without
/// bias and accumulation. It is what the real-GPU settings run for a thin product with a
/// long k, and any adapter can run it.
#[test]
fn gemm_dot_is_exact_on_thin_shapes() {
    let Some(ctx) = test_context("gemm_dot thin shapes") else {
        return;
    };
    let mut rng = StdRng::seed_from_u64(12);
    let shapes = [
        (0, 1, 300),
        (1, 0, 300),
        (1, 1, 0),
        (1, 1, 1),
        (2, 3, 64),
        (13, 2, 65),
        (3, 5, 257),
        (5, 7, 1031),
        (7, 1, 2304),
        (100, 1, 2304),
        (1, 100, 2304),
    ];
    let mut case_number = 0usize;
    for (m, n, k) in shapes {
        for layout in LAYOUTS {
            let bias = case_number % 2 == 1;
            let accumulate = (case_number / 2) % 2 == 1;
            case_number += 1;
            let case = Case::new(shape(m, n, k, layout, accumulate), bias, &mut rng, integers);
            case.check_exact(&ctx, GemmVariant::Dot);
        }
    }
    // The real-GPU settings choose it for the discriminator's Dense(1) forward only.
    if ctx.kernel_settings() == KernelSettings::Gpu {
        let buf = ctx.storage("thin", 2304 * 100 * 4);
        let entry = |m, n, k| {
            let s = shape(m, n, k, (false, false), false);
            gemm(&ctx, &s, &buf, &buf, None, &buf, GemmVariant::Auto)
                .unwrap()
                .kernel
                .entry
        };
        assert_eq!(entry(100, 1, 2304), "gemm_dot");
        assert_eq!(entry(100, 2304, 1), "gemm_tiled");
        assert_eq!(entry(2304, 1, 100), "gemm_tiled");
    }
}

#[test]
fn gemm_is_exact_on_dense_layer_shapes_at_batch_100() {
    let Some(ctx) = test_context("gemm dense shapes") else {
        return;
    };
    let mut rng = StdRng::seed_from_u64(3);
    let nn = (false, false);
    let nt = (false, true);
    let tn = (true, false);
    // (m, n, k, layout, bias, accumulate): generator dense 100 -> 6272 forward / dx / dW,
    // discriminator dense 2304 -> 1 forward / dx / dW (dW accumulated into a gradient).
    let cases = [
        (100, 6272, 100, nn, true, false),
        (100, 100, 6272, nt, false, false),
        (100, 6272, 100, tn, false, true),
        (100, 1, 2304, nn, true, false),
        (100, 2304, 1, nt, false, false),
        (2304, 1, 100, tn, false, true),
    ];
    for (m, n, k, layout, bias, accumulate) in cases {
        let case = Case::new(shape(m, n, k, layout, accumulate), bias, &mut rng, integers);
        for variant in VARIANTS {
            case.check_exact(&ctx, variant);
        }
    }
}

/// Two f32 summation orders differ by roughly eps·Σ|a·b| per element, which grows with k
/// for values in [-1, 1), and relative error is no help where C is near 0; so atol scales
/// with k (1e-5 up to k = 100). Measured worst excess over rtol·|cpu|: 2.7e-5 at k = 1005
/// (atol 1e-4), 6.8e-5 at k = 6272 (atol 6.3e-4); the fixed 1e-5 fails from k ≈ 250.
fn tolerance(k: usize) -> (f32, f32) {
    (1e-5 * (k as f32 / 100.0).max(1.0), 1e-4)
}

#[test]
fn gemm_matches_cpu_on_random_floats() {
    let Some(ctx) = test_context("gemm random floats") else {
        return;
    };
    let mut rng = StdRng::seed_from_u64(4);
    let shapes = [
        (7, 17, 31),
        (33, 65, 17),
        (129, 67, 257),
        (2, 300, 150),
        (65, 3, 500),
    ];
    for (i, (m, n, k)) in shapes.into_iter().enumerate() {
        for (j, layout) in LAYOUTS.into_iter().enumerate() {
            for variant in VARIANTS {
                let case = Case::new(
                    shape(m, n, k, layout, (i + j) % 2 == 0),
                    j % 2 == 1,
                    &mut rng,
                    uniform,
                );
                let (atol, rtol) = tolerance(k);
                let desc = describe(&case.shape, case.bias.is_some(), variant);
                assert_close(
                    "gemm",
                    &desc,
                    &case.gpu(&ctx, variant),
                    &case.cpu(),
                    atol,
                    rtol,
                );
            }
        }
    }
}

/// One large awkward product through both kernels (about 1 s each on llvmpipe).
#[test]
fn gemm_matches_cpu_on_a_large_awkward_product() {
    let Some(ctx) = test_context("gemm 1007x1023x1005") else {
        return;
    };
    let mut rng = StdRng::seed_from_u64(5);
    let case = Case::new(
        shape(1007, 1023, 1005, (false, false), false),
        true,
        &mut rng,
        uniform,
    );
    let want = case.cpu();
    let (atol, rtol) = tolerance(1005);
    for variant in VARIANTS {
        let desc = describe(&case.shape, true, variant);
        assert_close("gemm", &desc, &case.gpu(&ctx, variant), &want, atol, rtol);
    }
}

/// The GAN's two Dense layers on the GPU, as the executor lowers them, against TF-Keras:
/// y = x·W + b (NN with bias), dx = dy·Wᵀ (NT), dW = xᵀ·dy (TN) and db, with the variant
/// the context's kernel settings pick (`Auto`), at the README's tolerance (1e-4 + 1e-4).
#[test]
fn dense_layers_match_tf_keras_golden_vectors() {
    let Some(ctx) = test_context("gemm golden") else {
        return;
    };
    for name in ["dense_100_6272", "dense_2304_1"] {
        let case = golden::Case::load(name);
        let x = case.tensor("x");
        let (batch, in_f) = (x.dims[0], x.dims[1]);
        let w = case.tensor("w");
        let out_f = w.dims[1];
        let [xb, wb, bb, dyb] =
            ["x", "w", "b", "dy"].map(|t| ctx.upload(name, &case.tensor(t).data));
        let outputs = [batch * out_f, batch * in_f, in_f * out_f, out_f]
            .map(|len| ctx.nan_filled("golden output", len));
        let products = [
            (
                shape(batch, out_f, in_f, (false, false), false),
                &xb,
                &wb,
                Some(&bb),
                &outputs[0],
            ),
            (
                shape(batch, in_f, out_f, (false, true), false),
                &dyb,
                &wb,
                None,
                &outputs[1],
            ),
            (
                shape(in_f, out_f, batch, (true, false), false),
                &xb,
                &dyb,
                None,
                &outputs[2],
            ),
        ];
        let mut dispatches: Vec<_> = products
            .iter()
            .map(|(s, a, b, bias, c)| gemm(&ctx, s, a, b, *bias, c, GemmVariant::Auto).unwrap())
            .collect();
        dispatches.extend(bias_grad(&ctx, &dyb, batch, out_f, &outputs[3], false).unwrap());
        ctx.run(&dispatches.iter().collect::<Vec<_>>(), "gemm golden")
            .unwrap();
        for (tensor, out) in ["y", "dx", "dw", "db"].into_iter().zip(&outputs) {
            let want = case.tensor(tensor).data;
            let got: Vec<f32> = ctx.read(out, want.len()).unwrap();
            assert_close(tensor, name, &got, &want, 1e-4, 1e-4);
        }
    }
}

/// llvmpipe stops an invocation's loops after 65535 iterations in total; the register
/// kernels take k four steps per iteration, so k = 70001 must still be exact there. The
/// tiled kernel would pass the limit on a software adapter and must be refused instead.
#[test]
fn gemm_handles_very_long_reductions() {
    let Some(ctx) = test_context("gemm long k") else {
        return;
    };
    let mut rng = StdRng::seed_from_u64(9);
    for (m, n, k) in [(20, 16, 70001), (3, 10, 70001), (9, 2, 70000)] {
        let case = Case::new(
            shape(m, n, k, (false, false), false),
            true,
            &mut rng,
            integers,
        );
        for variant in VARIANTS {
            if variant == GemmVariant::Tiled && ctx.loop_limit().is_some() {
                let buf = ctx.storage("long k", (k * m.max(n) * 4) as u64);
                let err = gemm(&ctx, &case.shape, &buf, &buf, None, &buf, variant)
                    .err()
                    .expect("the tiled kernel must refuse this k on a software adapter");
                assert!(err.to_string().contains("limit"), "{err}");
            } else {
                case.check_exact(&ctx, variant);
            }
        }
    }
}

#[test]
fn gemm_rejects_short_buffers() {
    let Some(ctx) = test_context("gemm shape errors") else {
        return;
    };
    let small = ctx.upload("small", &[0f32; 5]);
    let big = ctx.upload("big", &[0f32; 64]);
    let s = shape(4, 4, 4, (false, false), false);
    for (a, b, bias, c) in [
        (&small, &big, None, &big),
        (&big, &small, None, &big),
        (&big, &big, None, &small),
        (&big, &big, Some(&ctx.upload("bias3", &[0f32; 3])), &big),
    ] {
        let err = gemm(&ctx, &s, a, b, bias, c, GemmVariant::Auto)
            .err()
            .expect("short buffer accepted");
        assert!(
            matches!(err, gan_gpu::Error::Shape { op: "gemm", .. }),
            "{err}"
        );
    }
    let err = bias_grad(&ctx, &small, 3, 2, &big, false)
        .err()
        .expect("short dy accepted");
    assert!(
        matches!(
            err,
            gan_gpu::Error::Shape {
                op: "bias_grad",
                ..
            }
        ),
        "{err}"
    );
}

fn run_bias_grad(
    ctx: &GpuContext,
    dy: &[f32],
    rows: usize,
    cols: usize,
    db0: Option<&[f32]>,
) -> Vec<f32> {
    let dy_buf = ctx.upload("test dy", dy);
    let db = match db0 {
        Some(init) => ctx.upload("test db", init),
        None => ctx.nan_filled("test db", cols),
    };
    let d = bias_grad(ctx, &dy_buf, rows, cols, &db, db0.is_some()).unwrap();
    ctx.run(&d.iter().collect::<Vec<_>>(), "bias_grad test")
        .unwrap();
    ctx.read(&db, cols).unwrap()
}

#[test]
fn bias_grad_is_exact_on_whole_numbers() {
    let Some(ctx) = test_context("bias_grad exact") else {
        return;
    };
    let mut rng = StdRng::seed_from_u64(6);
    // 19600 = 100·14·14 rows (a conv bias at batch 100); 78400 = 100·28·28 with one channel.
    // Odd positions accumulate: rows = 0 then leaves db as it was.
    let shapes = [
        (0, 7),
        (0, 64),
        (5, 0),
        (1, 1),
        (1, 7),
        (3, 64),
        (19600, 1),
        (19600, 7),
        (19600, 64),
        (78400, 1),
        (5, 65),
        (300, 17),
        (100, 6272),
        // The last rows of a short wide one (16-column workgroups), and the first of a long.
        (256, 1024),
        (257, 1024),
        // Two stages under either setting, with a short last chunk.
        (16900, 32),
        (4099, 3),
        (257, 1),
        (1031, 1031),
    ];
    for (i, (rows, cols)) in shapes.into_iter().enumerate() {
        let dy = integers(&mut rng, rows * cols);
        let mut want = cpu::gemm::bias_grad(&dy, rows, cols).unwrap();
        let db0 = (i % 2 == 1).then(|| integers(&mut rng, cols));
        if let Some(init) = &db0 {
            want.iter_mut().zip(init).for_each(|(w, x)| *w += x);
        }
        let got = run_bias_grad(&ctx, &dy, rows, cols, db0.as_deref());
        let desc = format!("{rows}x{cols}{}", if db0.is_some() { " +=" } else { "" });
        assert_close("bias_grad", &desc, &got, &want, 0.0, 0.0);
    }
}

#[test]
fn long_bias_grads_spread_over_many_workgroups_in_two_stages() {
    let Some(ctx) = test_context("bias_grad stages") else {
        return;
    };
    let wanted = match ctx.kernel_settings() {
        KernelSettings::Gpu => 128,
        KernelSettings::Software => 16,
    };
    // The GAN's conv bias gradients.
    for (rows, cols) in [(16900, 32), (19600, 64), (78400, 1)] {
        let dy = ctx.storage("stage dy", (rows * cols * 4) as u64);
        let db = ctx.storage("stage db", (cols * 4) as u64);
        let d = bias_grad(&ctx, &dy, rows, cols, &db, false).unwrap();
        assert_eq!(d.len(), 2, "{rows}x{cols}: partial sums, then their sum");
        assert!(
            d[0].workgroups() >= wanted,
            "{rows}x{cols}: {} workgroups",
            d[0].workgroups()
        );
        assert!(
            d.iter().all(|d| d.footprint.longest_loop <= 128),
            "{rows}x{cols}"
        );
    }
    // Its dense one (a batch of 100 rows) is one stage whose columns alone fill the device.
    let dy = ctx.storage("stage dy", 100 * 6272 * 4);
    let db = ctx.storage("stage db", 6272 * 4);
    let d = bias_grad(&ctx, &dy, 100, 6272, &db, false).unwrap();
    assert_eq!(d.len(), 1, "100x6272: one stage");
    assert!(
        d[0].workgroups() >= 128,
        "100x6272: {} workgroups",
        d[0].workgroups()
    );
    assert!(d[0].footprint.longest_loop <= 128, "100x6272");
    // A short one stays one dispatch.
    let dy = ctx.storage("stage dy", 4 * 7 * 4);
    let db = ctx.storage("stage db", 7 * 4);
    assert_eq!(bias_grad(&ctx, &dy, 4, 7, &db, true).unwrap().len(), 1);
}

#[test]
fn bias_grad_matches_cpu_on_random_floats() {
    let Some(ctx) = test_context("bias_grad random") else {
        return;
    };
    let mut rng = StdRng::seed_from_u64(7);
    for (rows, cols) in [(1, 7), (100, 64), (19600, 1), (19600, 64), (77, 33)] {
        let dy = uniform(&mut rng, rows * cols);
        let want = cpu::gemm::bias_grad(&dy, rows, cols).unwrap();
        let got = run_bias_grad(&ctx, &dy, rows, cols, None);
        // The CPU sums in f64; an f32 sum of `rows` terms in [-1, 1) drifts by about
        // eps·sqrt(rows)·(partial sums ~ sqrt(rows)), i.e. eps·rows: ~1e-3 at 19600 rows.
        let atol = 1e-5f32.max(rows as f32 * 6e-8);
        assert_close(
            "bias_grad",
            &format!("{rows}x{cols}"),
            &got,
            &want,
            atol,
            1e-4,
        );
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 16, ..ProptestConfig::default() })]

    #[test]
    fn gemm_is_exact_on_random_shapes(
        m in 0usize..70,
        n in 0usize..70,
        k in 0usize..70,
        trans_a: bool,
        trans_b: bool,
        accumulate: bool,
        bias: bool,
        tiled: bool,
        seed: u64,
    ) {
        let Some(ctx) = test_context("gemm proptest") else {
            return Ok(());
        };
        let mut rng = StdRng::seed_from_u64(seed);
        let case = Case::new(shape(m, n, k, (trans_a, trans_b), accumulate), bias, &mut rng, integers);
        let variant = if tiled { GemmVariant::Tiled } else { GemmVariant::Register };
        let got = case.gpu(&ctx, variant);
        let want = case.cpu();
        let same = got.iter().zip(&want).all(|(g, w)| g == w);
        prop_assert!(same, "{}: gpu {:?} cpu {:?}", describe(&case.shape, bias, variant), got, want);
    }
}

/// Informational: wall-clock GFLOP/s (2·m·n·k per product) of each variant at 256^3,
/// 512^3 and 1024^3 on this adapter; median of a few runs after a warm-up, each waiting
/// for the device. Never asserted. The tiled kernel is slow on software adapters (about
/// 2.4 GFLOP/s on llvmpipe, ~1 s per 1024^3 product), so it gets fewer runs and skips
/// 1024^3 there.
#[test]
fn gemm_throughput_report() {
    let Some(ctx) = test_context("gemm throughput") else {
        return;
    };
    eprintln!("gemm throughput on {}", ctx.describe());
    let mut rng = StdRng::seed_from_u64(8);
    for size in [256, 512, 1024] {
        let s = shape(size, size, size, (false, false), false);
        let a = ctx.upload("bench A", &uniform(&mut rng, size * size));
        let b = ctx.upload("bench B", &uniform(&mut rng, size * size));
        let c = ctx.storage("bench C", (size * size * 4) as u64);
        for variant in VARIANTS {
            let slow = variant == GemmVariant::Tiled && ctx.is_software();
            if slow && size > 512 {
                continue;
            }
            let d = gemm(&ctx, &s, &a, &b, None, &c, variant).unwrap();
            let mut times = Vec::new();
            for run in 0..if slow { 4 } else { 6 } {
                let start = Instant::now();
                ctx.run(&[&d], "gemm bench").unwrap();
                ctx.wait("gemm bench").unwrap();
                if run > 0 {
                    times.push(start.elapsed().as_secs_f64());
                }
            }
            times.sort_by(f64::total_cmp);
            let median = times[times.len() / 2];
            eprintln!(
                "gemm {size}^3 {variant:?}: {:.2} GFLOP/s (median of {} runs, {:.1} ms)",
                gemm_flops(&s) / median / 1e9,
                times.len(),
                median * 1e3
            );
        }
    }
}

/// A thin Dense layer's weight gradient with its bias gradient in one dispatch
/// (`gemm_weight_and_bias_grad`) against the CPU GEMM and bias gradient: small whole
/// numbers, so every sum is exact and the results must be equal; k and m around the
/// workgroup of 16, 0 and 1, the widths and batch at the limits, the discriminator's
/// 2,304 x 1 x 200, every accumulate flag; and the shapes and aliasing it refuses.
#[test]
fn thin_weight_and_bias_gradients_in_one_dispatch_match_the_cpu() {
    use gan_gpu::kernels::gemm_columns::{MAX_K, MAX_N, gemm_weight_and_bias_grad};
    let Some(ctx) = test_context("gemm weight + bias grad") else {
        return;
    };
    let mut rng = StdRng::seed_from_u64(61);
    for (m, n, k) in [
        (2304, 1, 200),
        (1, 1, 1),
        (7, 3, 5),
        (17, MAX_N, MAX_K),
        (0, 1, 3),
        (5, 2, 0),
        (33, 1, 16),
    ] {
        for (accumulate, bias_accumulate) in [(false, false), (true, true), (false, true)] {
            let shape = GemmShape {
                m,
                n,
                k,
                trans_a: true,
                trans_b: false,
                accumulate,
            };
            let (x, dy) = (integers(&mut rng, k * m), integers(&mut rng, k * n));
            let (c0, db0) = (integers(&mut rng, m * n), integers(&mut rng, n));
            let upload =
                |v: &[f32]| ctx.upload("operand", if v.is_empty() { &[0.0][..] } else { v });
            let prefill = |v: &[f32], keep: bool| match keep {
                true => upload(v),
                false => ctx.nan_filled("output", v.len().max(1)),
            };
            let (xb, dyb) = (upload(&x), upload(&dy));
            let (c, db) = (prefill(&c0, accumulate), prefill(&db0, bias_accumulate));
            let d = gemm_weight_and_bias_grad(&ctx, &shape, (&xb, &dyb, &c), &db, bias_accumulate)
                .unwrap();
            ctx.run(&[&d], "gemm weight + bias grad").unwrap();
            let mut want_c = c0.clone();
            cpu::gemm(m, n, k, &x, true, &dy, false, &mut want_c, accumulate).unwrap();
            let mut want_db = db0.clone();
            cpu::bias_grad_into(&dy, k, n, &mut want_db, bias_accumulate).unwrap();
            let what = format!("{m}x{n}x{k} TN, accumulate {accumulate}/{bias_accumulate}");
            assert_eq!(ctx.read::<f32>(&c, m * n).unwrap(), want_c, "dw {what}");
            assert_eq!(ctx.read::<f32>(&db, n).unwrap(), want_db, "db {what}");
        }
    }
    let buffer = |len: usize| ctx.storage("buffer", len as u64 * 4);
    let refusal = |shape: GemmShape, db: Option<&_>| {
        let (a, b, c) = (buffer(1024), buffer(1024), buffer(1024));
        let db = db.cloned().unwrap_or_else(|| buffer(8));
        match gemm_weight_and_bias_grad(&ctx, &shape, (&a, &b, &c), &db, false) {
            Ok(_) => panic!("{shape:?} was accepted"),
            Err(e) => e.to_string(),
        }
    };
    let shape = |n, k| GemmShape {
        m: 2,
        n,
        k,
        trans_a: true,
        trans_b: false,
        accumulate: false,
    };
    assert!(refusal(shape(MAX_N + 1, 4), None).contains("takes n up to"));
    assert!(refusal(shape(1, MAX_K + 1), None).contains("takes n up to"));
    let short = buffer(0);
    let db_short = refusal(shape(2, 4), Some(&short));
    assert!(db_short.contains("db holds"), "{db_short}");
}
