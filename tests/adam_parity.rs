//! Adam on the GPU against the CPU reference (three steps, one shared step uniform) and
//! the TF-Keras golden trajectory.

mod common;
#[path = "common/golden.rs"]
#[allow(dead_code)] // this file reads tensors only
mod golden;

use common::assert_close;
use gan_gpu::cpu::{AdamConfig, adam_step};
use gan_gpu::gpu::testing::test_context;
use gan_gpu::gpu::{Dispatch, GpuBuffer, GpuContext};
use gan_gpu::kernels::adam::{AdamParams, AdamStep, adam_ema_update, adam_update};
use gan_gpu::kernels::ema::{EmaStep, ema_update};
use rand::{RngExt, SeedableRng, rngs::StdRng};

/// Around the vec4 width, primes, and the first GAN layers' parameter counts
/// (Dense 100->6272 kernel, ConvT 5x5x64x128 kernel).
const LENGTHS: [usize; 11] = [0, 1, 3, 4, 5, 7, 17, 31, 1000, 627_200, 204_800 + 3];

/// Gradients of every scale, with exact zeros and the golden case's specials.
fn grads(len: usize, seed: u64) -> Vec<f32> {
    const EDGES: [f32; 8] = [0.0, 1e-7, -1e-8, 100.0, -100.0, 1e-3, -20.0, 1e-20];
    let mut rng = StdRng::seed_from_u64(seed);
    (0..len)
        .map(|i| {
            if i % 6 == 1 {
                EDGES[(i / 6) % EDGES.len()]
            } else {
                rng.random_range(-1.0f32..1.0) * 10f32.powi(rng.random_range(-4..2))
            }
        })
        .collect()
}

/// p, m, v after each step: sqrt and the division may differ by an ulp or two on a GPU
/// (WGSL allows 2.5 ulp for division), and a GPU may fuse the moment updates into FMAs.
fn check_state(ctx: &GpuContext, shape: &str, bufs: &[GpuBuffer; 3], want: [&[f32]; 3]) {
    for ((name, buf), want) in ["p", "m", "v"].iter().zip(bufs).zip(want) {
        let got: Vec<f32> = ctx.read(buf, want.len()).unwrap();
        assert_close(&format!("adam {name}"), shape, &got, want, 1e-7, 1e-5);
    }
}

#[test]
fn three_steps_match_cpu_on_awkward_lengths() {
    let Some(ctx) = test_context("adam parity") else {
        return;
    };
    let cfg = AdamConfig::default();
    let step = AdamStep::new(&ctx, cfg).unwrap();
    for (k, len) in LENGTHS.into_iter().enumerate() {
        let mut rng = StdRng::seed_from_u64(k as u64);
        let mut p: Vec<f32> = (0..len).map(|_| rng.random_range(-1.0f32..1.0)).collect();
        let (mut m, mut v) = (vec![0.0f32; len], vec![0.0f32; len]);
        let bufs = [
            ctx.upload("p", &p),
            ctx.upload("m", &m),
            ctx.upload("v", &v),
        ];
        let g_buf = ctx.storage("g", len as u64 * 4);
        let d = adam_update(&ctx, &step, &bufs[0], &g_buf, &bufs[1], &bufs[2], len).unwrap();
        for t in 1..=3 {
            let g = grads(len, 10 * k as u64 + t as u64);
            adam_step(&cfg, t, &mut p, &g, &mut m, &mut v).unwrap();
            ctx.write(&g_buf, &g);
            step.set_step(&ctx, t).unwrap();
            ctx.run(&[&d], "adam step").unwrap();
            check_state(&ctx, &format!("len {len} step {t}"), &bufs, [&p, &m, &v]);
        }
    }
}

/// `adam_ema_update` writes the bits that `adam_update` followed by `ema_update` of the
/// updated parameters write (same formulas, same order), over three steps, on every length.
#[test]
fn adam_with_the_moving_average_matches_the_two_passes() {
    let Some(ctx) = test_context("adam + ema parity") else {
        return;
    };
    let cfg = AdamConfig::default();
    let (adam, ema) = (AdamStep::new(&ctx, cfg).unwrap(), EmaStep::new(&ctx, 0.999));
    let bits = |b: &GpuBuffer, len: usize| -> Vec<u32> {
        let v: Vec<f32> = ctx.read(b, len).unwrap();
        v.iter().map(|f| f.to_bits()).collect()
    };
    for (k, len) in LENGTHS.into_iter().enumerate() {
        let mut rng = StdRng::seed_from_u64(100 + k as u64);
        let p: Vec<f32> = (0..len).map(|_| rng.random_range(-1.0f32..1.0)).collect();
        let start: Vec<f32> = (0..len).map(|_| rng.random_range(-1.0f32..1.0)).collect();
        let zeros = vec![0.0f32; len];
        let state = |_| [&p, &zeros, &zeros, &start].map(|v| ctx.upload("state", v));
        let ([p1, m1, v1, a1], [p2, m2, v2, a2]) = (state(1), state(2));
        let g = ctx.storage("g", len as u64 * 4);
        let separate = [
            adam_update(&ctx, &adam, &p1, &g, &m1, &v1, len).unwrap(),
            ema_update(&ctx, &ema, &p1, &a1, len).unwrap(),
        ];
        let fused = adam_ema_update(&ctx, &adam, &p2, &g, &m2, &v2, (&ema, &a2), len).unwrap();
        for t in 1..=3u32 {
            ctx.write(&g, &grads(len, 30 * k as u64 + t as u64));
            adam.set_step(&ctx, t).unwrap();
            ema.set_step(&ctx, u64::from(t) - 1);
            ctx.run(&[&separate[0], &separate[1]], "adam, then ema")
                .unwrap();
            ctx.run(&[&fused], "adam + ema").unwrap();
            for (what, one, two) in [
                ("p", &p1, &p2),
                ("m", &m1, &m2),
                ("v", &v1, &v2),
                ("average", &a1, &a2),
            ] {
                assert_eq!(
                    bits(two, len),
                    bits(one, len),
                    "{what}, len {len}, step {t}"
                );
            }
        }
    }
    let (p, g) = (ctx.storage("p", 16), ctx.storage("g", 16));
    let (m, v) = (ctx.storage("m", 16), ctx.storage("v", 16));
    let Err(err) = adam_ema_update(&ctx, &adam, &p, &g, &m, &v, (&ema, &p), 4) else {
        panic!("an average in the parameters' buffer was accepted");
    };
    assert!(err.to_string().contains("average and p"), "{err}");
}

#[test]
fn one_step_uniform_serves_several_tensors() {
    let Some(ctx) = test_context("adam shared step") else {
        return;
    };
    let cfg = AdamConfig {
        lr: 1e-3,
        beta1: 0.9,
        beta2: 0.99,
        epsilon: 1e-8,
    };
    let step = AdamStep::new(&ctx, cfg).unwrap();
    let lens = [13usize, 64];
    let mut cpu: Vec<[Vec<f32>; 3]> = lens
        .iter()
        .map(|&n| {
            [
                (0..n).map(|i| i as f32 * 0.1).collect(),
                vec![0.0; n],
                vec![0.0; n],
            ]
        })
        .collect();
    let bufs: Vec<[GpuBuffer; 3]> = cpu
        .iter()
        .map(|[p, m, v]| [ctx.upload("p", p), ctx.upload("m", m), ctx.upload("v", v)])
        .collect();
    let gs: Vec<Vec<f32>> = lens.iter().map(|&n| grads(n, n as u64)).collect();
    let g_bufs: Vec<GpuBuffer> = gs.iter().map(|g| ctx.upload("g", g)).collect();
    let dispatches: Vec<Dispatch> = (0..lens.len())
        .map(|i| {
            let [p, m, v] = &bufs[i];
            adam_update(&ctx, &step, p, &g_bufs[i], m, v, lens[i]).unwrap()
        })
        .collect();
    // Steps 1..4 and then a late step: recorded once, replayed with a new uniform.
    for t in [1, 2, 3, 4, 1000] {
        step.set_step(&ctx, t).unwrap();
        ctx.run(&dispatches.iter().collect::<Vec<_>>(), "adam tensors")
            .unwrap();
        for (i, [p, m, v]) in cpu.iter_mut().enumerate() {
            adam_step(&cfg, t, p, &gs[i], m, v).unwrap();
            let shape = format!("tensor {i} len {} step {t}", lens[i]);
            check_state(&ctx, &shape, &bufs[i], [p, m, v]);
        }
    }
}

#[test]
fn matches_tf_keras_golden_trajectory() {
    let Some(ctx) = test_context("adam golden") else {
        return;
    };
    let case = golden::Case::load("adam_steps");
    let p0 = case.tensor("p0").data;
    let len = p0.len();
    let cfg = AdamConfig::default(); // the golden case's lr 2e-4, 0.5, 0.999, 1e-7
    let step = AdamStep::new(&ctx, cfg).unwrap();
    let (p, m, v) = (
        ctx.upload("p", &p0),
        ctx.upload("m", &vec![0.0f32; len]),
        ctx.upload("v", &vec![0.0f32; len]),
    );
    let g = ctx.storage("g", len as u64 * 4);
    let d = adam_update(&ctx, &step, &p, &g, &m, &v, len).unwrap();
    for t in 1..=3u32 {
        ctx.write(&g, &case.tensor(&format!("g{t}")).data);
        step.set_step(&ctx, t).unwrap();
        ctx.run(&[&d], "adam golden").unwrap();
        for (name, buf) in [("p", &p), ("m", &m), ("v", &v)] {
            let want = case.tensor(&format!("{name}{t}")).data;
            let got: Vec<f32> = ctx.read(buf, len).unwrap();
            // The README's tolerance for Adam; a misplaced epsilon shows as 1e-4.
            assert_close(&format!("golden {name}{t}"), "64", &got, &want, 1e-6, 0.0);
        }
    }
}

#[test]
fn step_zero_and_bad_buffers_are_errors() {
    let Some(ctx) = test_context("adam errors") else {
        return;
    };
    assert!(AdamParams::for_step(&AdamConfig::default(), 0).is_err());
    let step = AdamStep::new(&ctx, AdamConfig::default()).unwrap();
    assert!(step.set_step(&ctx, 0).is_err());
    let (a, b, c, short) = (
        ctx.storage("a", 40),
        ctx.storage("b", 40),
        ctx.storage("c", 40),
        ctx.storage("short", 36),
    );
    let err = adam_update(&ctx, &step, &a, &b, &c, &short, 10)
        .err()
        .unwrap();
    assert!(err.to_string().contains("v holds 36 bytes"), "{err}");
    let err = adam_update(&ctx, &step, &a, &b, &a, &c, 10).err().unwrap();
    assert!(err.to_string().contains("same buffer"), "{err}");
}

#[test]
fn throughput_at_generator_size() {
    let Some(ctx) = test_context("adam throughput") else {
        return;
    };
    // ~1.1M parameters; reads p, g, m, v and writes p, m, v: 28 bytes per parameter.
    let len = 1_100_000;
    let step = AdamStep::new(&ctx, AdamConfig::default()).unwrap();
    let g = ctx.upload("g", &grads(len, 1));
    let p = ctx.upload("p", &vec![0.5f32; len]);
    let (m, v) = (
        ctx.storage("m", len as u64 * 4),
        ctx.storage("v", len as u64 * 4),
    );
    let d = adam_update(&ctx, &step, &p, &g, &m, &v, len).unwrap();
    ctx.run(&[&d], "warm-up").unwrap();
    ctx.wait("warm-up").unwrap();
    let reps = 20;
    let start = std::time::Instant::now();
    ctx.run(&vec![&d; reps], "timing").unwrap();
    ctx.wait("timing").unwrap();
    let s = start.elapsed().as_secs_f64() / reps as f64;
    eprintln!(
        "adapter: {}\nadam on {len} params: {:.1} us, {:.2} GB/s",
        ctx.describe(),
        s * 1e6,
        (len * 28) as f64 / s / 1e9
    );
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(16))]
    #[test]
    fn random_lengths_and_steps_match_cpu(len in 0usize..700, t in 1u32..5000, seed in 0u64..1000) {
        if let Some(ctx) = test_context("adam proptest") {
            let cfg = AdamConfig::default();
            let step = AdamStep::new(&ctx, cfg).unwrap();
            let g = grads(len, seed);
            let mut p = grads(len, seed + 1);
            let mut m = grads(len, seed + 2);
            let mut v: Vec<f32> = grads(len, seed + 3).iter().map(|x| x * x).collect();
            let bufs = [ctx.upload("p", &p), ctx.upload("m", &m), ctx.upload("v", &v)];
            let g_buf = ctx.upload("g", &g);
            let d = adam_update(&ctx, &step, &bufs[0], &g_buf, &bufs[1], &bufs[2], len).unwrap();
            step.set_step(&ctx, t).unwrap();
            ctx.run(&[&d], "adam proptest").unwrap();
            adam_step(&cfg, t, &mut p, &g, &mut m, &mut v).unwrap();
            check_state(&ctx, &format!("len {len} step {t}"), &bufs, [&p, &m, &v]);
        }
    }
}
