//! `head_grad` (a row dot gradient, a thin NT GEMM and an activation gradient in one pass)
//! against the CPU twins of the three instructions it replaces, run one after the other,
//! on awkward shapes (0, 1, primes, non-multiples of the workgroup, every k up to the
//! limit, the cgan discriminator's 200 x 2304 head), every activation, with and without
//! the row dot term and each accumulate flag, outputs NaN-prefilled where written; and
//! the shapes and aliasing it refuses.

mod common;

use common::assert_close;
use gan_gpu::cpu::{Activation, gemm, row_dot_backward_into};
use gan_gpu::gpu::testing::test_context;
use gan_gpu::gpu::{GpuBuffer, GpuContext};
use gan_gpu::kernels::head_grad::{HeadGrad, MAX_K, RowDotTerm, head_grad};
use rand::{RngExt, SeedableRng, rngs::StdRng};

fn data(n: usize, seed: u64) -> Vec<f32> {
    let mut rng = StdRng::seed_from_u64(seed);
    (0..n).map(|_| rng.random_range(-2.0f32..2.0)).collect()
}

/// (rows, cols, k).
const SHAPES: [(usize, usize, usize); 8] = [
    (0, 5, 1),
    (1, 1, 1),
    (3, 7, 2),
    (13, 63, 3),
    (5, 257, 8),
    (17, 1000, 1),
    (7, 0, 4),
    (200, 2304, 1),
];

const ACTIVATIONS: [Activation; 4] = [
    Activation::Relu,
    Activation::LeakyRelu(0.2),
    Activation::Tanh,
    Activation::Sigmoid,
];

fn upload(ctx: &GpuContext, what: &str, v: &[f32]) -> GpuBuffer {
    ctx.upload(what, if v.is_empty() { &[0.0] } else { v })
}

/// The three instructions on the CPU: returns (h, dx).
#[allow(clippy::too_many_arguments)]
fn cpu_reference(
    (rows, cols, k): (usize, usize, usize),
    row_dot: Option<(&[f32], &[f32])>,
    (u, w): (&[f32], &[f32]),
    (h0, accumulate): (&[f32], bool),
    act: Activation,
    saved: &[f32],
    (dx0, act_accumulate): (&[f32], bool),
) -> (Vec<f32>, Vec<f32>) {
    let mut h = h0.to_vec();
    let product_adds = match row_dot {
        Some((dy, other)) => {
            row_dot_backward_into(dy, other, cols, &mut h, accumulate).unwrap();
            true
        }
        None => accumulate,
    };
    gemm(rows, cols, k, u, false, w, true, &mut h, product_adds).unwrap();
    let dx: Vec<f32> = (0..rows * cols)
        .map(|i| {
            let g = act.grad(saved[i], saved[i], h[i]);
            if act_accumulate { dx0[i] + g } else { g }
        })
        .collect();
    (h, dx)
}

#[test]
fn head_grad_matches_the_separate_instructions() {
    let Some(ctx) = test_context("head_grad parity") else {
        return;
    };
    let mut checked = 0;
    for (i, &(rows, cols, k)) in SHAPES.iter().enumerate() {
        let n = rows * cols;
        let seed = 40 + 10 * i as u64;
        let (dy, other, u, w, saved, h0, dx0) = (
            data(rows, seed),
            data(n, seed + 1),
            data(rows * k, seed + 2),
            data(cols * k, seed + 3),
            // Sigmoid's saved output lies in (0, 1); the others take any sign.
            data(n, seed + 4),
            data(n, seed + 5),
            data(n, seed + 6),
        );
        let buffers = [&dy, &other, &u, &w, &saved].map(|v| upload(&ctx, "input", v));
        let [dyb, otherb, ub, wb, savedb] = &buffers;
        for act in ACTIVATIONS {
            for (with_row_dot, accumulate, act_accumulate) in [
                (true, false, false),
                (true, true, true),
                (false, false, false),
                (false, true, false),
                (false, false, true),
            ] {
                let what = format!(
                    "head_grad {act:?}, row dot {with_row_dot}, accumulate {accumulate}/{act_accumulate}"
                );
                let shape = format!("{rows}x{cols}, k {k}");
                let prefill = |v: &[f32], used: bool| {
                    if used {
                        upload(&ctx, "prior", v)
                    } else {
                        upload(&ctx, "nan", &vec![f32::NAN; n])
                    }
                };
                let h = prefill(&h0, accumulate);
                let dx = prefill(&dx0, act_accumulate);
                let term = with_row_dot.then_some(RowDotTerm {
                    dy: dyb,
                    other: otherb,
                });
                let out = HeadGrad {
                    h: &h,
                    accumulate,
                    act,
                    saved: savedb,
                    dx: &dx,
                    act_accumulate,
                };
                let d = head_grad(&ctx, term, (ub, wb), (rows, cols, k), out).unwrap();
                ctx.run(&[&d], &what).unwrap();
                let (want_h, want_dx) = cpu_reference(
                    (rows, cols, k),
                    with_row_dot.then_some((dy.as_slice(), other.as_slice())),
                    (&u, &w),
                    (&h0, accumulate),
                    act,
                    &saved,
                    (&dx0, act_accumulate),
                );
                // k products summed in order, as the CPU's GEMM may not: a few ulps of
                // values up to k·4 + 4 + 2.
                let atol = 1e-5 * (k as f32 + 2.0);
                assert_close(
                    &what,
                    &shape,
                    &ctx.read(&h, n).unwrap(),
                    &want_h,
                    atol,
                    1e-5,
                );
                assert_close(
                    &what,
                    &shape,
                    &ctx.read(&dx, n).unwrap(),
                    &want_dx,
                    2.0 * atol,
                    1e-5,
                );
                checked += 1;
            }
        }
    }
    assert_eq!(checked, SHAPES.len() * ACTIVATIONS.len() * 5);
}

#[test]
fn head_grad_refuses_wide_heads_short_buffers_and_aliasing() {
    let Some(ctx) = test_context("head_grad refusals") else {
        return;
    };
    let (rows, cols) = (3, 5);
    let buffer = |len: usize| upload(&ctx, "buffer", &vec![0.5; len]);
    let (u, w, saved, h, dx) = (
        buffer(rows * (MAX_K + 1)),
        buffer(cols * (MAX_K + 1)),
        buffer(rows * cols),
        buffer(rows * cols),
        buffer(rows * cols),
    );
    let out =
        |h: &'_ GpuBuffer, dx: &'_ GpuBuffer| -> (GpuBuffer, GpuBuffer) { (h.clone(), dx.clone()) };
    let attempt = |k: usize, (h, dx): (GpuBuffer, GpuBuffer), saved: &GpuBuffer| {
        let out = HeadGrad {
            h: &h,
            accumulate: false,
            act: Activation::Relu,
            saved,
            dx: &dx,
            act_accumulate: false,
        };
        head_grad(&ctx, None, (&u, &w), (rows, cols, k), out)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default()
    };
    let wide = attempt(MAX_K + 1, out(&h, &dx), &saved);
    assert!(wide.contains("k = 9"), "{wide}");
    let short = attempt(2, out(&buffer(rows * cols - 1), &dx), &saved);
    assert!(short.contains("h holds"), "{short}");
    let aliased = attempt(2, out(&h, &dx), &h);
    assert!(aliased.contains("same buffer"), "{aliased}");
    assert!(attempt(2, out(&h, &dx), &saved).is_empty());
}
