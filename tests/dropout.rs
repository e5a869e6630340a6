//! Dropout with counter-based masks: the CPU twin keeps each element with probability
//! 1 - rate (a binomial check), scales kept ones by 1/(1 - rate) exactly as one f32 product,
//! draws the same mask for the gradient, and a new one per stream; the WGSL kernel is
//! bit-exact with it on awkward lengths (0, 1, primes, off the workgroup and the Philox
//! block of 4, the dcgan's layers), with NaN-prefilled outputs and accumulation.

mod common;

use gan_gpu::cpu::{DropoutMask, dropout_backward_into, dropout_into};
use gan_gpu::gpu::testing::test_context;
use gan_gpu::kernels::noise::dropout;
use rand::{RngExt, SeedableRng, rngs::StdRng};

fn data(n: usize, seed: u64) -> Vec<f32> {
    let mut rng = StdRng::seed_from_u64(seed);
    (0..n).map(|_| rng.random_range(-2.0f32..2.0)).collect()
}

#[test]
fn cpu_keeps_one_minus_rate_scaled_and_the_gradient_uses_the_same_mask() {
    let n = 200_003;
    let x: Vec<f32> = (0..n).map(|i| 1.0 + (i % 7) as f32).collect();
    for rate in [0.0f32, 0.3, 0.5, 0.9] {
        let mask = DropoutMask::new(rate).unwrap();
        let mut y = vec![f32::NAN; n];
        dropout_into(7, 3, rate, &x, &mut y).unwrap();
        let kept = y.iter().filter(|&&v| v != 0.0).count();
        // Binomial: within 5 standard deviations of n·(1 - rate).
        let p = 1.0 - f64::from(rate);
        let sd = (n as f64 * p * (1.0 - p)).sqrt();
        assert!(
            (kept as f64 - n as f64 * p).abs() <= 5.0 * sd + 1.0,
            "rate {rate}: kept {kept} of {n}"
        );
        for (&v, &xi) in y.iter().zip(&x) {
            assert!(
                v == 0.0 || v == xi * mask.scale,
                "rate {rate}: {v} from {xi}"
            );
        }
        // The gradient drops exactly the same elements.
        let dy: Vec<f32> = vec![1.0; n];
        let mut dx = vec![f32::NAN; n];
        dropout_backward_into(7, 3, rate, &dy, &mut dx, false).unwrap();
        for (&g, &v) in dx.iter().zip(&y) {
            assert_eq!(
                g != 0.0,
                v != 0.0,
                "rate {rate}: the gradient's mask differs"
            );
        }
    }
    assert_eq!(DropoutMask::new(0.3).unwrap().scale, (1.0f64 / 0.7) as f32);
    assert!(DropoutMask::new(1.0).is_err() && DropoutMask::new(-0.1).is_err());
    // Another stream (step or slot), another mask.
    let (mut a, mut b) = (vec![0.0; 1000], vec![0.0; 1000]);
    let ones = vec![1.0; 1000];
    dropout_into(7, 3, 0.5, &ones, &mut a).unwrap();
    dropout_into(7, 4, 0.5, &ones, &mut b).unwrap();
    assert_ne!(a, b, "two streams drew the same mask");
}

/// Lengths: empty, one, a partial Philox block, primes, off the workgroup of 64 blocks,
/// and the dcgan discriminator's two dropout layers at batch 100.
const LENGTHS: [usize; 9] = [
    0,
    1,
    3,
    5,
    257,
    1021,
    4099,
    100 * 14 * 14 * 64,
    100 * 7 * 7 * 128,
];

#[test]
fn kernel_is_bit_exact_with_the_cpu_twin() {
    let Some(ctx) = test_context("dropout parity") else {
        return;
    };
    for (i, &n) in LENGTHS.iter().enumerate() {
        let (seed, stream) = (0x5eed + i as u64, 16 * 9 + 3);
        let x = data(n, i as u64);
        for accumulate in [false, true] {
            let rate = 0.3;
            let prior = if accumulate {
                data(n, 99)
            } else {
                vec![f32::NAN; n]
            };
            let mut want = prior.clone();
            if accumulate {
                dropout_backward_into(seed, stream, rate, &x, &mut want, true).unwrap();
            } else {
                dropout_into(seed, stream, rate, &x, &mut want).unwrap();
            }
            let xb = ctx.upload("x", &x);
            let yb = ctx.upload("y", &prior);
            let mask = DropoutMask::new(rate).unwrap();
            let (d, _) = dropout(&ctx, mask, seed, stream, &xb, &yb, n, accumulate).unwrap();
            ctx.run(&[&d], "dropout").unwrap();
            let got: Vec<f32> = ctx.read(&yb, n).unwrap();
            let differ = got
                .iter()
                .zip(&want)
                .position(|(g, w)| g.to_bits() != w.to_bits());
            assert!(
                differ.is_none(),
                "dropout len {n} accumulate {accumulate}: first difference at {differ:?}"
            );
        }
    }
}
