//! BatchNorm: the CPU twin against Keras's documented formula in f64 (forward in both
//! modes, the running statistics' update) and against central finite differences of that
//! formula (dx, dgamma, dbeta); both the CPU twin and the WGSL kernels against TF-Keras's
//! own outputs and gradients (tests/golden/batchnorm_*, from scripts/golden/batchnorm.py);
//! and the kernels against the CPU twin on awkward shapes (0 and 1 rows, primes, channels
//! off the workgroup, rows that need many slices, the dcgan's layers), with NaN-prefilled
//! outputs and every accumulate combination.

mod common;
#[path = "common/golden.rs"]
#[allow(dead_code)]
mod golden;

use common::assert_close;
use gan_gpu::cpu::{batch_norm_backward_into, batch_norm_forward_into};
use gan_gpu::gpu::GpuContext;
use gan_gpu::gpu::testing::test_context;
use gan_gpu::kernels::batchnorm::{BatchNormShape, batch_norm_backward, batch_norm_forward};
use rand::{RngExt, SeedableRng, rngs::StdRng};

const EPSILON: f32 = 1e-3;
const MOMENTUM: f32 = 0.99;

fn uniform(n: usize, lo: f32, hi: f32, seed: u64) -> Vec<f32> {
    let mut rng = StdRng::seed_from_u64(seed);
    (0..n).map(|_| rng.random_range(lo..hi)).collect()
}

/// x [rows, channels] off-centre per channel with unequal spreads (a variance formula that
/// cancels would show), gamma, beta, running mean and variance.
struct Inputs {
    x: Vec<f32>,
    gamma: Vec<f32>,
    beta: Vec<f32>,
    mean: Vec<f32>,
    var: Vec<f32>,
}

fn inputs(rows: usize, channels: usize, seed: u64) -> Inputs {
    let offset = uniform(channels, -3.0, 3.0, seed);
    let spread = uniform(channels, 0.1, 2.0, seed + 1);
    let noise = uniform(rows * channels, -1.0, 1.0, seed + 2);
    let x = noise
        .iter()
        .enumerate()
        .map(|(i, &n)| offset[i % channels] + spread[i % channels] * n)
        .collect();
    Inputs {
        x,
        gamma: uniform(channels, 0.5, 1.5, seed + 3),
        beta: uniform(channels, -1.0, 1.0, seed + 4),
        mean: uniform(channels, -1.0, 1.0, seed + 5),
        var: uniform(channels, 0.5, 1.5, seed + 6),
    }
}

/// Keras's formula in f64: per channel, y = gamma·(x - mean)/sqrt(var + eps) + beta with
/// the batch's mean and biased variance (`training`) or the given ones.
fn reference(
    x: &[f64],
    gamma: &[f64],
    beta: &[f64],
    stats: Option<(&[f64], &[f64])>,
    channels: usize,
) -> (Vec<f64>, Vec<f64>, Vec<f64>) {
    let rows = x.len() / channels;
    let (mean, var): (Vec<f64>, Vec<f64>) = match stats {
        Some((m, v)) => (m.to_vec(), v.to_vec()),
        None => (0..channels)
            .map(|c| {
                let col: Vec<f64> = (0..rows).map(|r| x[r * channels + c]).collect();
                let m = col.iter().sum::<f64>() / rows as f64;
                let v = col.iter().map(|v| (v - m) * (v - m)).sum::<f64>() / rows as f64;
                (m, v)
            })
            .unzip(),
    };
    let y = x
        .iter()
        .enumerate()
        .map(|(i, &v)| {
            let c = i % channels;
            gamma[c] * (v - mean[c]) / (var[c] + f64::from(EPSILON)).sqrt() + beta[c]
        })
        .collect();
    (y, mean, var)
}

fn f64s(v: &[f32]) -> Vec<f64> {
    v.iter().map(|&x| f64::from(x)).collect()
}

fn max_diff(a: &[f32], b: &[f64]) -> f64 {
    a.iter()
        .zip(b)
        .map(|(&x, &y)| (f64::from(x) - y).abs())
        .fold(0.0, f64::max)
}

/// The CPU twin's training-mode forward: y and the running statistics after it.
fn cpu_training(inp: &Inputs) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
    let (mut m, mut v) = (inp.mean.clone(), inp.var.clone());
    let mut y = vec![f32::NAN; inp.x.len()];
    let (x, g, b) = (&inp.x, &inp.gamma, &inp.beta);
    batch_norm_forward_into(x, g, b, &mut m, &mut v, EPSILON, Some(MOMENTUM), &mut y).unwrap();
    (y, m, v)
}

#[test]
fn cpu_forward_and_running_statistics_match_kerass_formula() {
    for (rows, channels) in [(1, 1), (2, 3), (7, 5), (64, 17), (3, 300)] {
        let what = format!("{rows}x{channels}");
        let inp = inputs(rows, channels, 11);
        let (x, gamma, beta) = (f64s(&inp.x), f64s(&inp.gamma), f64s(&inp.beta));
        // Training: the batch's statistics normalise, the running ones move.
        let (y, moved_mean, moved_var) = cpu_training(&inp);
        let (want, bm, bv) = reference(&x, &gamma, &beta, None, channels);
        assert!(
            max_diff(&y, &want) < 2e-5,
            "{what} training y: {}",
            max_diff(&y, &want)
        );
        let m = f64::from(MOMENTUM);
        let moved = |running: &[f32], batch: &[f64]| -> Vec<f64> {
            (0..channels)
                .map(|c| f64::from(running[c]) * m + batch[c] * (1.0 - m))
                .collect()
        };
        assert!(
            max_diff(&moved_mean, &moved(&inp.mean, &bm)) < 1e-6,
            "{what} moving mean"
        );
        assert!(
            max_diff(&moved_var, &moved(&inp.var, &bv)) < 1e-6,
            "{what} moving var"
        );
        // Inference: the running statistics normalise and stay as they were.
        let (mut rm, mut rv) = (inp.mean.clone(), inp.var.clone());
        let mut y = vec![f32::NAN; rows * channels];
        let (xs, g, b) = (&inp.x, &inp.gamma, &inp.beta);
        batch_norm_forward_into(xs, g, b, &mut rm, &mut rv, EPSILON, None, &mut y).unwrap();
        assert_eq!(
            (&rm, &rv),
            (&inp.mean, &inp.var),
            "{what}: inference moved the statistics"
        );
        let (m64, v64) = (f64s(&inp.mean), f64s(&inp.var));
        let (want, _, _) = reference(&x, &gamma, &beta, Some((&m64, &v64)), channels);
        assert!(
            max_diff(&y, &want) < 2e-5,
            "{what} inference y: {}",
            max_diff(&y, &want)
        );
    }
}

/// L = Σ y·w for a fixed w: the CPU backward (f32) against central differences of the f64
/// formula, for every element of x, gamma and beta, on shapes small enough to visit all.
#[test]
fn cpu_gradients_match_finite_differences_of_the_formula() {
    for (rows, channels) in [(2, 1), (5, 3), (9, 4)] {
        let inp = inputs(rows, channels, 21);
        let w = uniform(rows * channels, -1.0, 1.0, 22);
        let loss = |x: &[f64], gamma: &[f64], beta: &[f64]| -> f64 {
            let (y, _, _) = reference(x, gamma, beta, None, channels);
            y.iter().zip(&w).map(|(a, &b)| a * f64::from(b)).sum()
        };
        let mut dx = vec![f32::NAN; rows * channels];
        let mut dgamma = vec![f32::NAN; channels];
        let mut dbeta = vec![f32::NAN; channels];
        batch_norm_backward_into(
            &inp.x,
            &inp.gamma,
            &w,
            EPSILON,
            Some((&mut dx, false)),
            Some((&mut dgamma, false)),
            Some((&mut dbeta, false)),
        )
        .unwrap();
        let (x, gamma, beta) = (f64s(&inp.x), f64s(&inp.gamma), f64s(&inp.beta));
        let h = 1e-5;
        let central = |which: usize, i: usize| -> f64 {
            let mut args = [x.clone(), gamma.clone(), beta.clone()];
            args[which][i] += h;
            let up = loss(&args[0], &args[1], &args[2]);
            args[which][i] -= 2.0 * h;
            let down = loss(&args[0], &args[1], &args[2]);
            (up - down) / (2.0 * h)
        };
        for (which, name, grad) in [(0, "dx", &dx), (1, "dgamma", &dgamma), (2, "dbeta", &dbeta)] {
            for (i, &g) in grad.iter().enumerate() {
                let fd = central(which, i);
                assert!(
                    (fd - f64::from(g)).abs() <= 1e-4 + 1e-4 * fd.abs(),
                    "{rows}x{channels} {name}[{i}]: finite differences {fd}, backward {g}"
                );
            }
        }
    }
}

/// Gradients written only where asked, and added with their flags.
#[test]
fn cpu_backward_writes_only_what_is_asked_and_accumulates() {
    let inp = inputs(6, 4, 31);
    let dy = uniform(24, -1.0, 1.0, 32);
    let run = |dx: Option<bool>, dg: Option<bool>| {
        let (mut a, mut b) = (vec![1.0f32; 24], vec![1.0f32; 4]);
        batch_norm_backward_into(
            &inp.x,
            &inp.gamma,
            &dy,
            EPSILON,
            dx.map(|acc| (a.as_mut_slice(), acc)),
            dg.map(|acc| (b.as_mut_slice(), acc)),
            None,
        )
        .unwrap();
        (a, b)
    };
    let (dx, dg) = run(Some(false), Some(false));
    let (dx_acc, dg_acc) = run(Some(true), Some(true));
    for (plain, added) in dx.iter().zip(&dx_acc).chain(dg.iter().zip(&dg_acc)) {
        assert!(
            (added - (plain + 1.0)).abs() < 1e-6,
            "{added} vs {plain} + 1"
        );
    }
    let (untouched, _) = run(None, Some(false));
    assert!(
        untouched.iter().all(|&v| v == 1.0),
        "dx written though not asked for"
    );
    let err = batch_norm_backward_into(&inp.x[..23], &inp.gamma, &dy, EPSILON, None, None, None)
        .unwrap_err();
    assert!(err.to_string().contains("not whole rows"), "{err}");
}

/// Tolerances of the golden comparison: Keras sums in its own order (f32); dx is a
/// difference of terms of several times its size, so its absolute allowance is wider.
const GOLDEN: (f32, f32) = (2e-5, 1e-4);
const GOLDEN_DX: (f32, f32) = (1e-4, 1e-4);

fn golden_case(name: &str) -> (golden::Case, usize, Inputs) {
    let case = golden::Case::load(name);
    let x = case.tensor("x");
    let channels = *x.dims.last().unwrap();
    let inp = Inputs {
        x: x.data,
        gamma: case.tensor("gamma").data,
        beta: case.tensor("beta").data,
        mean: case.tensor("moving_mean0").data,
        var: case.tensor("moving_variance0").data,
    };
    (case, channels, inp)
}

const GOLDEN_CASES: [&str; 3] = [
    "batchnorm_dense_8x12544",
    "batchnorm_nhwc_4x7x7x128",
    "batchnorm_nhwc_4x14x14x64",
];

#[test]
fn cpu_matches_tf_keras_golden_vectors() {
    for name in GOLDEN_CASES {
        let (case, channels, inp) = golden_case(name);
        let want = |t: &str| case.tensor(t).data;
        let (y, m, v) = cpu_training(&inp);
        let (a, r) = GOLDEN;
        assert_close(name, "y (training)", &y, &want("y"), a, r);
        assert_close(name, "moving_mean", &m, &want("moving_mean1"), 1e-6, 1e-5);
        assert_close(
            name,
            "moving_variance",
            &v,
            &want("moving_variance1"),
            1e-6,
            1e-5,
        );
        let (mut rm, mut rv) = (inp.mean.clone(), inp.var.clone());
        let mut y = vec![f32::NAN; inp.x.len()];
        batch_norm_forward_into(
            &inp.x, &inp.gamma, &inp.beta, &mut rm, &mut rv, EPSILON, None, &mut y,
        )
        .unwrap();
        assert_close(name, "y (inference)", &y, &want("y_inference"), a, r);
        let dy = want("dy");
        let (mut dx, mut dg, mut db) = (
            vec![0.0; dy.len()],
            vec![0.0; channels],
            vec![0.0; channels],
        );
        batch_norm_backward_into(
            &inp.x,
            &inp.gamma,
            &dy,
            EPSILON,
            Some((&mut dx, false)),
            Some((&mut dg, false)),
            Some((&mut db, false)),
        )
        .unwrap();
        assert_close(name, "dx", &dx, &want("dx"), GOLDEN_DX.0, GOLDEN_DX.1);
        assert_close(name, "dgamma", &dg, &want("dgamma"), 1e-4, 1e-4);
        assert_close(name, "dbeta", &db, &want("dbeta"), 1e-4, 1e-4);
    }
}

/// The kernels' forward (both modes) and backward (every output) for `inp`, against the
/// CPU twin, outputs NaN-filled (or holding values to add to).
fn check_gpu(ctx: &GpuContext, what: &str, rows: usize, channels: usize, inp: &Inputs, dy: &[f32]) {
    let n = rows * channels;
    let shape = BatchNormShape {
        rows,
        channels,
        epsilon: EPSILON,
    };
    // Statistics summed over `rows`: the absolute allowance grows like its square root.
    let atol = 2e-6 * (rows.max(1) as f32).sqrt();
    let (x, gamma, beta) = (
        ctx.upload("x", &inp.x),
        ctx.upload("gamma", &inp.gamma),
        ctx.upload("beta", &inp.beta),
    );
    for momentum in [Some(MOMENTUM), None] {
        let (mean, var) = (ctx.upload("mean", &inp.mean), ctx.upload("var", &inp.var));
        let y = ctx.nan_filled("y", n);
        let ds =
            batch_norm_forward(ctx, shape, &x, &gamma, &beta, &mean, &var, &y, momentum).unwrap();
        ctx.run(&ds.iter().collect::<Vec<_>>(), "batch norm forward")
            .unwrap();
        let (mut cm, mut cv) = (inp.mean.clone(), inp.var.clone());
        let mut cy = vec![0.0; n];
        batch_norm_forward_into(
            &inp.x, &inp.gamma, &inp.beta, &mut cm, &mut cv, EPSILON, momentum, &mut cy,
        )
        .unwrap();
        let mode = if momentum.is_some() {
            "training"
        } else {
            "inference"
        };
        assert_close(
            what,
            &format!("y ({mode})"),
            &ctx.read(&y, n).unwrap(),
            &cy,
            atol,
            1e-4,
        );
        assert_close(
            what,
            &format!("moving mean ({mode})"),
            &ctx.read(&mean, channels).unwrap(),
            &cm,
            1e-6,
            1e-5,
        );
        assert_close(
            what,
            &format!("moving var ({mode})"),
            &ctx.read(&var, channels).unwrap(),
            &cv,
            1e-6,
            1e-5,
        );
    }
    let dy_buf = ctx.upload("dy", dy);
    let grad_atol = 1e-5 * (rows.max(1) as f32).sqrt();
    for (dx_acc, dg_acc, db_acc) in [
        (false, false, false),
        (true, true, true),
        (false, true, false),
    ] {
        let prior = |len: usize, seed: u64, acc: bool| {
            if acc {
                uniform(len, -1.0, 1.0, seed)
            } else {
                vec![f32::NAN; len]
            }
        };
        let (p_dx, p_dg, p_db) = (
            prior(n, 41, dx_acc),
            prior(channels, 42, dg_acc),
            prior(channels, 43, db_acc),
        );
        let (dx, dg, db) = (
            ctx.upload("dx", &p_dx),
            ctx.upload("dgamma", &p_dg),
            ctx.upload("dbeta", &p_db),
        );
        let ds = batch_norm_backward(
            ctx,
            shape,
            &x,
            &gamma,
            &dy_buf,
            Some((&dx, dx_acc)),
            Some((&dg, dg_acc)),
            Some((&db, db_acc)),
        )
        .unwrap();
        ctx.run(&ds.iter().collect::<Vec<_>>(), "batch norm backward")
            .unwrap();
        let (mut cdx, mut cdg, mut cdb) = (p_dx.clone(), p_dg.clone(), p_db.clone());
        batch_norm_backward_into(
            &inp.x,
            &inp.gamma,
            dy,
            EPSILON,
            Some((&mut cdx, dx_acc)),
            Some((&mut cdg, dg_acc)),
            Some((&mut cdb, db_acc)),
        )
        .unwrap();
        let flags = format!("accumulate {dx_acc}/{dg_acc}/{db_acc}");
        assert_close(
            what,
            &format!("dx {flags}"),
            &ctx.read(&dx, n).unwrap(),
            &cdx,
            grad_atol,
            1e-4,
        );
        assert_close(
            what,
            &format!("dgamma {flags}"),
            &ctx.read(&dg, channels).unwrap(),
            &cdg,
            grad_atol,
            1e-4,
        );
        assert_close(
            what,
            &format!("dbeta {flags}"),
            &ctx.read(&db, channels).unwrap(),
            &cdb,
            grad_atol,
            1e-4,
        );
    }
    // Only dgamma and dbeta (a BatchNorm on the network's input): dx is not touched.
    let (dg, db) = (
        ctx.nan_filled("dgamma", channels),
        ctx.nan_filled("dbeta", channels),
    );
    let ds = batch_norm_backward(
        ctx,
        shape,
        &x,
        &gamma,
        &dy_buf,
        None,
        Some((&dg, false)),
        Some((&db, false)),
    )
    .unwrap();
    ctx.run(
        &ds.iter().collect::<Vec<_>>(),
        "batch norm parameter gradients",
    )
    .unwrap();
    let mut want = vec![0.0f32; channels];
    batch_norm_backward_into(
        &inp.x,
        &inp.gamma,
        dy,
        EPSILON,
        None,
        Some((&mut want, false)),
        None,
    )
    .unwrap();
    let got: Vec<f32> = ctx.read(&dg, channels).unwrap();
    assert_close(what, "dgamma alone", &got, &want, grad_atol, 1e-4);
}

/// (rows, channels): no rows, one row, one channel, primes, channels off the workgroup of
/// 64 on both sides, rows that take many slices under either setting, and the dcgan's
/// three BatchNorms at batch 100.
const SHAPES: [(usize, usize); 11] = [
    (0, 5),
    (1, 1),
    (1, 7),
    (3, 1),
    (7, 13),
    (31, 65),
    (129, 63),
    (5003, 3),
    (100, 12544),
    (4900, 128),
    (19600, 64),
];

#[test]
fn kernels_match_the_cpu_twin_on_awkward_shapes() {
    let Some(ctx) = test_context("batch norm parity") else {
        return;
    };
    for (i, &(rows, channels)) in SHAPES.iter().enumerate() {
        let inp = inputs(rows, channels, 100 + i as u64);
        let dy = uniform(rows * channels, -1.0, 1.0, 200 + i as u64);
        check_gpu(
            &ctx,
            &format!("{rows}x{channels}"),
            rows,
            channels,
            &inp,
            &dy,
        );
    }
}

#[test]
fn kernels_match_tf_keras_golden_vectors() {
    let Some(ctx) = test_context("batch norm golden") else {
        return;
    };
    for name in GOLDEN_CASES {
        let (case, channels, inp) = golden_case(name);
        let n = inp.x.len();
        let shape = BatchNormShape {
            rows: n / channels,
            channels,
            epsilon: EPSILON,
        };
        let want = |t: &str| case.tensor(t).data;
        let (x, gamma, beta) = (
            ctx.upload("x", &inp.x),
            ctx.upload("gamma", &inp.gamma),
            ctx.upload("beta", &inp.beta),
        );
        let (mean, var) = (ctx.upload("mean", &inp.mean), ctx.upload("var", &inp.var));
        let y = ctx.nan_filled("y", n);
        let ds = batch_norm_forward(
            &ctx,
            shape,
            &x,
            &gamma,
            &beta,
            &mean,
            &var,
            &y,
            Some(MOMENTUM),
        )
        .unwrap();
        ctx.run(&ds.iter().collect::<Vec<_>>(), "golden forward")
            .unwrap();
        let (a, r) = GOLDEN;
        assert_close(
            name,
            "gpu y (training)",
            &ctx.read(&y, n).unwrap(),
            &want("y"),
            a,
            r,
        );
        assert_close(
            name,
            "gpu moving_mean",
            &ctx.read(&mean, channels).unwrap(),
            &want("moving_mean1"),
            1e-6,
            1e-5,
        );
        assert_close(
            name,
            "gpu moving_variance",
            &ctx.read(&var, channels).unwrap(),
            &want("moving_variance1"),
            1e-6,
            1e-5,
        );
        let (mean0, var0) = (ctx.upload("mean0", &inp.mean), ctx.upload("var0", &inp.var));
        let ds =
            batch_norm_forward(&ctx, shape, &x, &gamma, &beta, &mean0, &var0, &y, None).unwrap();
        ctx.run(&ds.iter().collect::<Vec<_>>(), "golden inference")
            .unwrap();
        assert_close(
            name,
            "gpu y (inference)",
            &ctx.read(&y, n).unwrap(),
            &want("y_inference"),
            a,
            r,
        );
        let dy = ctx.upload("dy", &want("dy"));
        let (dx, dg, db) = (
            ctx.nan_filled("dx", n),
            ctx.nan_filled("dg", channels),
            ctx.nan_filled("db", channels),
        );
        let ds = batch_norm_backward(
            &ctx,
            shape,
            &x,
            &gamma,
            &dy,
            Some((&dx, false)),
            Some((&dg, false)),
            Some((&db, false)),
        )
        .unwrap();
        ctx.run(&ds.iter().collect::<Vec<_>>(), "golden backward")
            .unwrap();
        assert_close(
            name,
            "gpu dx",
            &ctx.read(&dx, n).unwrap(),
            &want("dx"),
            GOLDEN_DX.0,
            GOLDEN_DX.1,
        );
        assert_close(
            name,
            "gpu dgamma",
            &ctx.read(&dg, channels).unwrap(),
            &want("dgamma"),
            1e-4,
            1e-4,
        );
        assert_close(
            name,
            "gpu dbeta",
            &ctx.read(&db, channels).unwrap(),
            &want("dbeta"),
            1e-4,
            1e-4,
        );
    }
}
