//! The generator's moving average: the warm-up schedule, the CPU step against f64, and the
//! WGSL kernel against the CPU twin on awkward lengths.

mod common;

use common::assert_close;
use gan_gpu::cpu::{ema_step, ema_weights};
use gan_gpu::gpu::testing::test_context;
use gan_gpu::kernels::ema::{EmaStep, ema_update};
use rand::{RngExt, SeedableRng, rngs::StdRng};

fn data(n: usize, seed: u64) -> Vec<f32> {
    let mut rng = StdRng::seed_from_u64(seed);
    (0..n).map(|_| rng.random_range(-1.0f32..1.0)).collect()
}

#[test]
fn warm_up_follows_min_decay_and_one_plus_t_over_ten_plus_t() {
    let decay = f64::from(0.999f32);
    for (t, want) in [
        (0u64, 0.1f64),
        (1, 2.0 / 11.0),
        (8, 0.5),
        (990, 0.991),
        (10_000, decay),
    ] {
        let (d, rest) = ema_weights(0.999, t);
        assert!(
            (f64::from(d) - want).abs() < 1e-7,
            "t {t}: d {d}, want {want}"
        );
        // 1 - d is rounded from f64, not computed in f32.
        assert_eq!(rest, (1.0 - want) as f32, "t {t}");
    }
    // Past the warm-up the decay is the asked-for one; 0.5 is reached at t = 8.
    assert_eq!(ema_weights(0.5, 100).0, 0.5);
}

#[test]
fn cpu_step_matches_f64_and_a_constant_weight_stays_put() {
    let source = data(1000, 1);
    let mut average = data(1000, 2);
    let before = average.clone();
    ema_step(0.999, 10_000, &source, &mut average).unwrap();
    let decay = f64::from(0.999f32);
    for i in 0..1000 {
        let want = decay * f64::from(before[i]) + (1.0 - decay) * f64::from(source[i]);
        // Two f32 products and a sum of numbers below 1: a few 2^-24.
        assert!(
            (f64::from(average[i]) - want).abs() < 2e-7,
            "{i}: {} vs {want}",
            average[i]
        );
    }
    let constant = vec![0.25f32; 17];
    let mut avg = constant.clone();
    for t in 0..50 {
        ema_step(0.999, t, &constant, &mut avg).unwrap();
    }
    assert!(avg.iter().all(|&a| (a - 0.25).abs() < 1e-7), "{avg:?}");
    assert!(ema_step(0.9, 0, &constant, &mut avg[..3]).is_err());
}

#[test]
fn kernel_matches_the_cpu_twin() {
    let Some(ctx) = test_context("ema parity") else {
        return;
    };
    // Empty, one, primes, off the workgroup of 256, the dcgan's dense kernel.
    for (i, &n) in [0usize, 1, 7, 255, 257, 1009, 100 * 12544]
        .iter()
        .enumerate()
    {
        let source = data(n, 10 + i as u64);
        let start = data(n, 20 + i as u64);
        let step = EmaStep::new(&ctx, 0.999);
        let (sb, ab) = (ctx.upload("source", &source), ctx.upload("average", &start));
        let d = ema_update(&ctx, &step, &sb, &ab, n).unwrap();
        let mut want = start.clone();
        for t in [0u64, 1, 7000] {
            step.set_step(&ctx, t);
            ctx.run(&[&d], "ema").unwrap();
            ema_step(0.999, t, &source, &mut want).unwrap();
        }
        let got: Vec<f32> = ctx.read(&ab, n).unwrap();
        assert_close("ema", &format!("len {n}"), &got, &want, 1e-7, 1e-6);
    }
}
