//! The element-wise kernels (activations forward/backward, fill, add, scale) against the
//! CPU reference and the TF-Keras golden vectors, on awkward lengths and extreme values.

mod common;
#[path = "common/golden.rs"]
#[allow(dead_code)] // this file reads tensors only
mod golden;

use common::assert_close;
use gan_gpu::cpu::{Activation, activation_backward, activation_forward};
use gan_gpu::gpu::testing::test_context;
use gan_gpu::gpu::{Dispatch, GpuContext};
use gan_gpu::kernels::elementwise;
use proptest::prelude::*;
use rand::{RngExt, SeedableRng, rngs::StdRng};

const ACTIVATIONS: [Activation; 4] = [
    Activation::Relu,
    Activation::LeakyRelu(0.2),
    Activation::Tanh,
    Activation::Sigmoid,
];

/// Lengths below, at and around the vec4 width, primes, and the GAN's largest activation.
const LENGTHS: [usize; 11] = [0, 1, 3, 4, 5, 7, 17, 31, 1000, 1003, 100 * 14 * 14 * 64];

/// Values of mixed scale; every eighth is one of the edge values of the golden vectors
/// (the kinks at 0, the saturated tails, the tanh clamp).
fn data(len: usize, seed: u64) -> Vec<f32> {
    const EDGES: [f32; 14] = [
        0.0, 100.0, -100.0, 20.0, -20.0, 15.0, -15.0, 16.0, 1e-3, -1e-3, 1.0, -1.0, 89.0, -89.0,
    ];
    let mut rng = StdRng::seed_from_u64(seed);
    (0..len)
        .map(|i| {
            if i % 8 == 3 {
                EDGES[(i / 8) % EDGES.len()]
            } else {
                rng.random_range(-6.0f32..6.0)
            }
        })
        .collect()
}

fn run(ctx: &GpuContext, d: &Dispatch, what: &str) {
    ctx.run(&[d], what).unwrap();
}

/// tanh and sigmoid go through exp on the GPU (a few ulps); relu/leaky are exact.
const ATOL: f32 = 1e-6;
const RTOL: f32 = 1e-5;

fn check_activation(ctx: &GpuContext, act: Activation, len: usize, seed: u64) {
    let shape = format!("{act:?} len {len}");
    let x = data(len, seed);
    let dy = data(len, seed + 1);
    let y_cpu = activation_forward(act, &x);
    let dx_cpu = activation_backward(act, &x, &y_cpu, &dy).unwrap();

    let x_buf = ctx.upload("x", &x);
    let y_buf = ctx.nan_filled("y", len);
    let d = elementwise::activation_forward(ctx, act, &x_buf, &y_buf, len).unwrap();
    run(ctx, &d, "activation forward");
    let y_gpu: Vec<f32> = ctx.read(&y_buf, len).unwrap();
    assert_close("activation_forward", &shape, &y_gpu, &y_cpu, ATOL, RTOL);

    // Backward from the CPU's y, so the comparison isolates the backward kernel.
    let y_in = ctx.upload("y in", &y_cpu);
    let dy_buf = ctx.upload("dy", &dy);
    let dx_buf = ctx.nan_filled("dx", len);
    let d = elementwise::activation_backward(ctx, act, &x_buf, &y_in, &dy_buf, &dx_buf, len, false)
        .unwrap();
    run(ctx, &d, "activation backward");
    let dx_gpu: Vec<f32> = ctx.read(&dx_buf, len).unwrap();
    assert_close("activation_backward", &shape, &dx_gpu, &dx_cpu, ATOL, RTOL);

    // Accumulate adds onto what is there.
    let prior = data(len, seed + 2);
    let acc_buf = ctx.upload("dx acc", &prior);
    let d = elementwise::activation_backward(ctx, act, &x_buf, &y_in, &dy_buf, &acc_buf, len, true)
        .unwrap();
    run(ctx, &d, "activation backward accumulate");
    let acc_gpu: Vec<f32> = ctx.read(&acc_buf, len).unwrap();
    let acc_cpu: Vec<f32> = prior.iter().zip(&dx_cpu).map(|(p, d)| p + d).collect();
    assert_close(
        "activation_backward accumulate",
        &shape,
        &acc_gpu,
        &acc_cpu,
        ATOL,
        RTOL,
    );
}

#[test]
fn activations_match_cpu_on_awkward_lengths() {
    let Some(ctx) = test_context("activation parity") else {
        return;
    };
    for act in ACTIVATIONS {
        for (k, len) in LENGTHS.into_iter().enumerate() {
            check_activation(&ctx, act, len, 100 + k as u64);
        }
    }
}

#[test]
fn activations_are_finite_and_saturated_at_extremes() {
    let Some(ctx) = test_context("activation extremes") else {
        return;
    };
    let x = [
        -1e30f32,
        -1000.0,
        -89.0,
        89.0,
        1000.0,
        1e30,
        f32::MIN,
        f32::MAX,
    ];
    let x_buf = ctx.upload("x", &x);
    for act in [Activation::Tanh, Activation::Sigmoid] {
        let y_buf = ctx.nan_filled("y", x.len());
        let d = elementwise::activation_forward(&ctx, act, &x_buf, &y_buf, x.len()).unwrap();
        run(&ctx, &d, "extremes");
        let y: Vec<f32> = ctx.read(&y_buf, x.len()).unwrap();
        let low = if act == Activation::Tanh { -1.0 } else { 0.0 };
        let want: Vec<f32> = x.iter().map(|&v| if v < 0.0 { low } else { 1.0 }).collect();
        assert_close(
            "activation extremes",
            &format!("{act:?}"),
            &y,
            &want,
            0.0,
            0.0,
        );
    }
}

#[test]
fn activations_match_tf_keras_golden() {
    let Some(ctx) = test_context("activation golden") else {
        return;
    };
    let case = golden::Case::load("activations");
    let x = case.tensor("x").data;
    let dy = case.tensor("dy").data;
    let len = x.len();
    let x_buf = ctx.upload("x", &x);
    let dy_buf = ctx.upload("dy", &dy);
    for (act, name) in [
        (Activation::Relu, "relu"),
        (Activation::LeakyRelu(0.2), "leaky_relu"),
        (Activation::Tanh, "tanh"),
        (Activation::Sigmoid, "sigmoid"),
    ] {
        let y_buf = ctx.nan_filled("y", len);
        let dx_buf = ctx.nan_filled("dx", len);
        let fwd = elementwise::activation_forward(&ctx, act, &x_buf, &y_buf, len).unwrap();
        let bwd = elementwise::activation_backward(
            &ctx, act, &x_buf, &y_buf, &dy_buf, &dx_buf, len, false,
        )
        .unwrap();
        // Both in one pass: the backward reads the GPU's own forward output.
        ctx.run(&[&fwd, &bwd], "golden activations").unwrap();
        let y: Vec<f32> = ctx.read(&y_buf, len).unwrap();
        let dx: Vec<f32> = ctx.read(&dx_buf, len).unwrap();
        // The README's tolerance for element-wise ops.
        let shape = format!("golden {len}");
        assert_close(
            &format!("y_{name}"),
            &shape,
            &y,
            &case.tensor(&format!("y_{name}")).data,
            1e-6,
            0.0,
        );
        assert_close(
            &format!("dx_{name}"),
            &shape,
            &dx,
            &case.tensor(&format!("dx_{name}")).data,
            1e-6,
            0.0,
        );
    }
}

#[test]
fn helpers_match_cpu_on_awkward_lengths() {
    let Some(ctx) = test_context("elementwise helpers") else {
        return;
    };
    for (k, len) in LENGTHS.into_iter().enumerate() {
        let shape = format!("len {len}");
        let a = data(len, 7 + k as u64);
        let b = data(len, 70 + k as u64);

        let buf = ctx.nan_filled("fill", len);
        run(
            &ctx,
            &elementwise::fill(&ctx, &buf, len, 0.0).unwrap(),
            "fill",
        );
        let got: Vec<f32> = ctx.read(&buf, len).unwrap();
        assert_close("fill 0", &shape, &got, &vec![0.0; len], 0.0, 0.0);
        run(
            &ctx,
            &elementwise::fill(&ctx, &buf, len, -2.5).unwrap(),
            "fill",
        );
        let got: Vec<f32> = ctx.read(&buf, len).unwrap();
        assert_close("fill -2.5", &shape, &got, &vec![-2.5; len], 0.0, 0.0);

        // Sums and products of f32 are correctly rounded on both sides: exact equality.
        let src = ctx.upload("src", &a);
        let dst = ctx.upload("dst", &b);
        run(
            &ctx,
            &elementwise::add_into(&ctx, &src, &dst, len).unwrap(),
            "add",
        );
        let got: Vec<f32> = ctx.read(&dst, len).unwrap();
        let sum: Vec<f32> = a.iter().zip(&b).map(|(a, b)| a + b).collect();
        assert_close("add_into", &shape, &got, &sum, 0.0, 0.0);

        run(
            &ctx,
            &elementwise::scale(&ctx, &dst, len, -0.75).unwrap(),
            "scale",
        );
        let got: Vec<f32> = ctx.read(&dst, len).unwrap();
        let scaled: Vec<f32> = sum.iter().map(|v| v * -0.75).collect();
        assert_close("scale", &shape, &got, &scaled, 0.0, 0.0);

        // s·a + dst may be fused into one rounding on a GPU: allow an ulp or two.
        let d = elementwise::add_scaled_into(&ctx, &src, &dst, len, 0.5).unwrap();
        run(&ctx, &d, "add scaled");
        let got: Vec<f32> = ctx.read(&dst, len).unwrap();
        let want: Vec<f32> = scaled.iter().zip(&a).map(|(d, a)| d + 0.5 * a).collect();
        assert_close("add_scaled_into", &shape, &got, &want, 1e-6, 1e-6);
    }
}

#[test]
fn large_lengths() {
    let Some(ctx) = test_context("elementwise large") else {
        return;
    };
    // 2^20 + 3 is odd: the scalar entry points over 4097 workgroups.
    check_activation(&ctx, Activation::LeakyRelu(0.2), (1 << 20) + 3, 5);
    // More workgroups than one grid dimension allows (65535 on lavapipe): grid_1d splits
    // the grid over y, and the shader must rebuild the linear index.
    let len = 65535 * 256 + 5;
    let buf = ctx.nan_filled("large", len);
    let fill = elementwise::fill(&ctx, &buf, len, 3.0).unwrap();
    assert!(fill.groups[1] > 1, "grid {:?} not split", fill.groups);
    let scale = elementwise::scale(&ctx, &buf, len, 0.5).unwrap();
    ctx.run(&[&fill, &scale], "large").unwrap();
    let got: Vec<f32> = ctx.read(&buf, len).unwrap();
    assert_close(
        "fill+scale",
        &format!("len {len}"),
        &got,
        &vec![1.5; len],
        0.0,
        0.0,
    );
}

#[test]
fn launchers_reject_bad_buffers() {
    let Some(ctx) = test_context("elementwise errors") else {
        return;
    };
    let small = ctx.storage("small", 16);
    let big = ctx.storage("big", 64);
    let err = elementwise::activation_forward(&ctx, Activation::Relu, &big, &small, 16)
        .err()
        .expect("short output accepted");
    assert!(err.to_string().contains("y holds 16 bytes"), "{err}");
    let err = elementwise::activation_forward(&ctx, Activation::Relu, &big, &big, 16)
        .err()
        .expect("aliased buffers accepted");
    assert!(err.to_string().contains("same buffer"), "{err}");
    let err = elementwise::add_into(&ctx, &big, &big, 4)
        .err()
        .expect("aliased buffers accepted");
    assert!(err.to_string().contains("same buffer"), "{err}");
}

/// Seconds per dispatch: `reps` copies in one pass after a warm-up run.
fn seconds_per_dispatch(ctx: &GpuContext, d: &Dispatch, reps: usize) -> f64 {
    ctx.run(&[d], "warm-up").unwrap();
    ctx.wait("warm-up").unwrap();
    let start = std::time::Instant::now();
    ctx.run(&vec![d; reps], "timing").unwrap();
    ctx.wait("timing").unwrap();
    start.elapsed().as_secs_f64() / reps as f64
}

#[test]
fn throughput_at_gan_sizes() {
    let Some(ctx) = test_context("elementwise throughput") else {
        return;
    };
    let len = 100 * 14 * 14 * 64;
    let x = ctx.upload("x", &data(len, 1));
    let y = ctx.storage("y", len as u64 * 4);
    let dy = ctx.upload("dy", &data(len, 2));
    let dx = ctx.storage("dx", len as u64 * 4);
    eprintln!("adapter: {}", ctx.describe());
    let report = |what: &str, d: &Dispatch, bytes_per_element: usize| {
        let s = seconds_per_dispatch(&ctx, d, 20);
        eprintln!(
            "{what} on {len} f32: {:.1} us, {:.2} GB/s",
            s * 1e6,
            (len * bytes_per_element) as f64 / s / 1e9
        );
    };
    for act in ACTIVATIONS {
        let d = elementwise::activation_forward(&ctx, act, &x, &y, len).unwrap();
        report(&format!("{act:?} forward"), &d, 8);
        let d = elementwise::activation_backward(&ctx, act, &x, &y, &dy, &dx, len, false).unwrap();
        report(&format!("{act:?} backward"), &d, 12);
    }
    report("fill", &elementwise::fill(&ctx, &dx, len, 0.0).unwrap(), 4);
    report(
        "add_into",
        &elementwise::add_into(&ctx, &dy, &dx, len).unwrap(),
        12,
    );
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(16))]
    #[test]
    fn activations_match_cpu_on_random_lengths(
        act in 0usize..4,
        len in 0usize..600,
        seed in 0u64..1000,
    ) {
        if let Some(ctx) = test_context("activation proptest") {
            check_activation(&ctx, ACTIVATIONS[act], len, seed);
        }
    }
}
