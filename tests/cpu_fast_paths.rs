//! The CPU executor's fast paths pinned against slow, obviously correct versions: the
//! polynomial exp/tanh/sigmoid against f64 libm, the `_into` forms (accumulate, fused
//! activation, reused workspace) against the allocating forms and plain sums, the GEMM crate
//! against f64 loops on the plan's shapes, and results that do not depend on the thread count.

use std::sync::Arc;

use gan_gpu::cpu::activation::{exp, sigmoid, tanh};
use gan_gpu::cpu::{
    self, Activation, AdamConfig, Workspace, activation_forward, conv_transpose2d_forward,
    conv2d_forward, gemm,
};
use gan_gpu::geometry::{Conv2dGeometry, ConvTranspose2dGeometry};
use gan_gpu::graph::cpu_exec::CpuExecutor;
use gan_gpu::graph::{Buf, Dataset, Executor, RandomStreams};
use gan_gpu::model::seed::SEED;
use gan_gpu::model::{ModelConfig, PIXELS};
use rand::{RngExt, SeedableRng, rngs::StdRng};

fn uniform(seed: u64, n: usize) -> Vec<f32> {
    let mut rng = StdRng::seed_from_u64(seed);
    (0..n).map(|_| rng.random_range(-1.0f32..1.0)).collect()
}

/// The spacing of f32 values at |v|.
fn ulp(v: f64) -> f64 {
    let v = (v.abs() as f32).max(f32::MIN_POSITIVE);
    f64::from(f32::from_bits(v.to_bits() + 1) - v)
}

/// Checks `f` against `reference` on a dense sweep of [lo, hi] plus `extra` points, within
/// `ulps` f32 ulps of the f64 value; reports the worst point.
fn check_ulps(
    what: &str,
    f: fn(f32) -> f32,
    reference: fn(f64) -> f64,
    lo: f32,
    hi: f32,
    ulps: f64,
) {
    let steps = 200_000;
    let sweep = (0..=steps).map(|i| lo + (hi - lo) * i as f32 / steps as f32);
    let extra = [
        0.0,
        -0.0,
        1e-30,
        -1e-30,
        1e-7,
        0.624_999_9,
        0.625,
        0.625_000_1,
        -0.625,
    ];
    let mut worst = (0.0f64, 0.0f32);
    for x in sweep.chain(extra.into_iter().filter(|x| (lo..=hi).contains(x))) {
        let (got, want) = (f64::from(f(x)), reference(f64::from(x)));
        let err = (got - want).abs() / ulp(want);
        // NaN counts as the worst.
        if err.is_nan() || err > worst.0 {
            worst = (err, x);
        }
    }
    assert!(
        worst.0 <= ulps,
        "{what}: {:.2} ulps at x = {} (got {}, want {})",
        worst.0,
        worst.1,
        f(worst.1),
        reference(f64::from(worst.1))
    );
}

#[test]
fn polynomial_exp_tanh_sigmoid_match_f64_libm() {
    check_ulps("exp", exp, f64::exp, -87.3, 88.3, 2.0);
    check_ulps("tanh", tanh, f64::tanh, -16.0, 16.0, 2.0);
    check_ulps(
        "sigmoid",
        sigmoid,
        |x| 1.0 / (1.0 + (-x).exp()),
        -87.0,
        88.0,
        3.0,
    );
    // Beyond the clamps: saturated and finite, NaN stays NaN.
    assert_eq!((tanh(1e30), tanh(-1e30), tanh(f32::MAX)), (1.0, -1.0, 1.0));
    assert_eq!((sigmoid(1e30), sigmoid(100.0)), (1.0, 1.0));
    assert!((0.0..=1.2e-38).contains(&sigmoid(-1e30)));
    assert!(tanh(f32::NAN).is_nan() && sigmoid(f32::NAN).is_nan() && exp(f32::NAN).is_nan());
}

#[test]
fn threaded_activations_match_the_scalar_definition() {
    // Longer than the serial threshold, not a multiple of the chunk.
    let n = (1 << 16) + 13;
    let x = uniform(1, n);
    let dy = uniform(2, n);
    for act in [
        Activation::Relu,
        Activation::LeakyRelu(0.2),
        Activation::LeakyRelu(1.5),
        Activation::Tanh,
        Activation::Sigmoid,
    ] {
        let y = activation_forward(act, &x);
        let want: Vec<f32> = x.iter().map(|&v| act.apply(v)).collect();
        assert_eq!(y, want, "{act:?} forward");
        let mut dx = uniform(3, n);
        let prior = dx.clone();
        cpu::activation_backward_into(act, &x, &y, &dy, &mut dx, true).unwrap();
        for i in 0..n {
            assert_eq!(
                dx[i],
                prior[i] + act.grad(x[i], y[i], dy[i]),
                "{act:?} at {i}"
            );
        }
    }
}

/// f64 GEMM with the same conventions as `cpu::gemm`.
#[allow(clippy::too_many_arguments)]
fn gemm_f64(m: usize, n: usize, k: usize, a: &[f32], ta: bool, b: &[f32], tb: bool) -> Vec<f64> {
    let at = |i: usize, p: usize| f64::from(if ta { a[p * m + i] } else { a[i * k + p] });
    let bt = |p: usize, j: usize| f64::from(if tb { b[j * k + p] } else { b[p * n + j] });
    let mut c = vec![0.0; m * n];
    for i in 0..m {
        for j in 0..n {
            c[i * n + j] = (0..k).map(|p| at(i, p) * bt(p, j)).sum();
        }
    }
    c
}

/// The shapes the GAN's plan gives the GEMM (batch cut to 10 to keep the f64 loops quick),
/// transposed, tall-skinny and k-heavy, plus odd sizes around the kernels' tiles.
const PLAN_SHAPES: [(usize, usize, usize, bool, bool); 12] = [
    (10, 6272, 100, false, false),
    (100, 6272, 10, true, false),
    (490, 1600, 128, false, true),
    (490, 128, 1600, false, false),
    (1600, 128, 490, true, false),
    (360, 64, 288, false, false),
    (288, 64, 360, true, false),
    (1960, 25, 64, false, true),
    (25, 64, 1960, true, false),
    (10, 1, 2304, false, false),
    (23, 17, 29, true, true),
    (1, 1, 1, false, false),
];

#[test]
fn gemm_matches_f64_on_the_plan_shapes_and_accumulates() {
    for (s, &(m, n, k, ta, tb)) in PLAN_SHAPES.iter().enumerate() {
        let (a, b) = (uniform(10 + s as u64, m * k), uniform(40 + s as u64, k * n));
        let prior = uniform(70 + s as u64, m * n);
        let want = gemm_f64(m, n, k, &a, ta, &b, tb);
        let mut c = vec![f32::NAN; m * n];
        gemm(m, n, k, &a, ta, &b, tb, &mut c, false).unwrap();
        let mut acc = prior.clone();
        gemm(m, n, k, &a, ta, &b, tb, &mut acc, true).unwrap();
        // f32 sums of k products of magnitude < 1: error ~ sqrt(k)·2^-24·sqrt(k).
        let tol = 1e-6 * k as f64;
        for i in 0..m * n {
            let shape = format!("{m}x{n}x{k} ta={ta} tb={tb} at {i}");
            assert!(
                (f64::from(c[i]) - want[i]).abs() <= tol,
                "{shape}: {} vs {}",
                c[i],
                want[i]
            );
            let want_acc = want[i] + f64::from(prior[i]);
            assert!(
                (f64::from(acc[i]) - want_acc).abs() <= tol,
                "{shape} accumulate"
            );
        }
    }
}

fn pool(threads: usize) -> rayon::ThreadPool {
    rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .unwrap()
}

#[test]
fn gemm_bits_do_not_depend_on_the_thread_count() {
    for (s, &(m, n, k, ta, tb)) in PLAN_SHAPES.iter().enumerate() {
        let (a, b) = (
            uniform(100 + s as u64, m * k),
            uniform(200 + s as u64, k * n),
        );
        let run = |threads| {
            let mut c = vec![0.0; m * n];
            pool(threads).install(|| gemm(m, n, k, &a, ta, &b, tb, &mut c, false).unwrap());
            c
        };
        let one = run(1);
        for threads in [2, 3] {
            assert!(
                one.iter()
                    .zip(run(threads))
                    .all(|(x, y)| x.to_bits() == y.to_bits()),
                "{m}x{n}x{k}: {threads} threads differ from 1"
            );
        }
    }
}

#[test]
fn in_place_convolutions_accumulate_fuse_and_reuse_the_workspace() {
    // The GAN's deconv1 and D conv2 at batch 30: several chunks, a workspace grown by the first
    // layer and reused by the second.
    let gt = ConvTranspose2dGeometry::keras_same(30, 7, 7, 128, 64, 5, 5, 2, 2, None);
    let gc = Conv2dGeometry::valid(30, 13, 13, 32, 64, 3, 3, 2, 2);
    let mut ws = Workspace::default();
    let (x, w, b) = (
        uniform(1, gt.input_len()),
        uniform(2, gt.weight_len()),
        uniform(3, 64),
    );
    let want = conv_transpose2d_forward(&gt, &x, &w, &b).unwrap();
    let (mut y, mut relu) = (vec![f32::NAN; want.len()], vec![f32::NAN; want.len()]);
    let fused = Some((Activation::Relu, relu.as_mut_slice()));
    cpu::conv_transpose2d_forward_into(&gt, &x, &w, Some(&b), &mut y, fused, &mut ws).unwrap();
    assert_eq!(y, want);
    assert_eq!(relu, activation_forward(Activation::Relu, &want));

    let (xc, wc, bc) = (
        uniform(4, gc.input_len()),
        uniform(5, gc.weight_len()),
        uniform(6, 64),
    );
    let want = conv2d_forward(&gc, &xc, &wc, &bc).unwrap();
    let mut yc = vec![f32::NAN; want.len()];
    cpu::conv2d_forward_into(&gc, &xc, &wc, Some(&bc), &mut yc, None, &mut ws).unwrap();
    assert_eq!(yc, want);

    // Gradients: accumulate adds the plain result onto what was there (to f32 rounding).
    let dy = uniform(7, gt.output_len());
    let dyc = uniform(8, gc.output_len());
    type Accumulate<'a> = Box<dyn Fn(&mut [f32], &mut Workspace) + 'a>;
    let grads: [(&str, Vec<f32>, Accumulate); 4] = [
        (
            "convT dx",
            cpu::conv_transpose2d_backward_input(&gt, &dy, &w).unwrap(),
            Box::new(|o, ws| {
                cpu::conv_transpose2d_backward_input_into(&gt, &dy, &w, o, true, None, ws).unwrap()
            }),
        ),
        (
            "convT dw",
            cpu::conv_transpose2d_backward_weight(&gt, &x, &dy).unwrap(),
            Box::new(|o, ws| {
                cpu::conv_transpose2d_backward_weight_into(&gt, &x, &dy, o, true, ws).unwrap()
            }),
        ),
        (
            "conv dx",
            cpu::conv2d_backward_input(&gc, &dyc, &wc).unwrap(),
            Box::new(|o, ws| {
                cpu::conv2d_backward_input_into(&gc, &dyc, &wc, o, true, None, ws).unwrap()
            }),
        ),
        (
            "conv dw",
            cpu::conv2d_backward_weight(&gc, &xc, &dyc).unwrap(),
            Box::new(|o, ws| {
                cpu::conv2d_backward_weight_into(&gc, &xc, &dyc, o, true, ws).unwrap()
            }),
        ),
    ];
    for (what, plain, accumulate) in grads {
        let prior = uniform(9, plain.len());
        let mut out = prior.clone();
        accumulate(&mut out, &mut ws);
        for i in 0..out.len() {
            let want = prior[i] + plain[i];
            assert!(
                (out[i] - want).abs() <= 1e-5 * (1.0 + want.abs()),
                "{what} at {i}: {} vs {want}",
                out[i]
            );
        }
    }
}

#[test]
fn bias_grad_matches_an_f64_sum_in_blocks_of_columns() {
    // 150 columns: three passes of the 64-column stack block, the last one partial; then a
    // tall layer whose row blocks run in parallel, and a wide one whose column blocks do.
    for (rows, cols) in [(37, 150), (3001, 40), (120, 1000)] {
        let dy = uniform(11, rows * cols);
        let mut db = uniform(12, cols);
        let prior = db.clone();
        cpu::bias_grad_into(&dy, rows, cols, &mut db, true).unwrap();
        for c in 0..cols {
            let sum: f64 = (0..rows).map(|r| f64::from(dy[r * cols + c])).sum();
            assert_eq!(db[c], prior[c] + sum as f32, "{rows}x{cols}, column {c}");
        }
    }
}

/// An input gradient with the backward of the activation before it fused in writes the bits
/// of the two run one after the other (the executor fuses them), accumulating or not.
#[test]
fn input_gradients_with_a_fused_activation_gradient_match_the_two_apart() {
    // Several chunks per slice for the transposed conv; an odd batch for the conv.
    let gt = ConvTranspose2dGeometry::keras_same(30, 7, 7, 128, 64, 5, 5, 2, 2, None);
    let gc = Conv2dGeometry::valid(13, 13, 13, 32, 64, 3, 3, 2, 2);
    let mut ws = Workspace::default();
    type InputGrad<'a> =
        Box<dyn Fn(&mut [f32], bool, Option<cpu::FusedActivationGrad<'_>>, &mut Workspace) + 'a>;
    let (wt, dyt) = (uniform(20, gt.weight_len()), uniform(21, gt.output_len()));
    let (wc, dyc) = (uniform(22, gc.weight_len()), uniform(23, gc.output_len()));
    let cases: [(&str, usize, InputGrad); 2] = [
        (
            "convT",
            gt.input_len(),
            Box::new(|o, acc, f, ws| {
                cpu::conv_transpose2d_backward_input_into(&gt, &dyt, &wt, o, acc, f, ws).unwrap()
            }),
        ),
        (
            "conv",
            gc.input_len(),
            Box::new(|o, acc, f, ws| {
                cpu::conv2d_backward_input_into(&gc, &dyc, &wc, o, acc, f, ws).unwrap()
            }),
        ),
    ];
    for (what, len, input_grad) in cases {
        let (x, prior, prior_dx) = (uniform(24, len), uniform(25, len), uniform(26, len));
        for act in [Activation::Relu, Activation::Tanh] {
            let y = activation_forward(act, &x);
            for (accumulate, act_accumulate) in [(false, false), (true, true), (false, true)] {
                let mut apart = prior.clone();
                input_grad(&mut apart, accumulate, None, &mut ws);
                let mut apart_dx = prior_dx.clone();
                cpu::activation_backward_into(act, &x, &y, &apart, &mut apart_dx, act_accumulate)
                    .unwrap();

                let (mut out, mut dx) = (prior.clone(), prior_dx.clone());
                let fused = cpu::FusedActivationGrad {
                    act,
                    x: &x,
                    y: &y,
                    dx: &mut dx,
                    accumulate: act_accumulate,
                };
                input_grad(&mut out, accumulate, Some(fused), &mut ws);
                let case = format!("{what} {act:?} accumulate {accumulate}/{act_accumulate}");
                assert_eq!(out, apart, "{case}: the layer's gradient");
                assert_eq!(dx, apart_dx, "{case}: the activation's input gradient");
            }
        }
    }
    // A fused gradient of the wrong length is refused, naming it.
    let (mut out, mut dx) = (vec![0.0; gc.input_len()], vec![0.0; 3]);
    let x = vec![0.0; gc.input_len()];
    let fused = cpu::FusedActivationGrad {
        act: Activation::Relu,
        x: &x,
        y: &x,
        dx: &mut dx,
        accumulate: false,
    };
    let err =
        cpu::conv2d_backward_input_into(&gc, &dyc, &wc, &mut out, false, Some(fused), &mut ws)
            .unwrap_err();
    assert!(
        err.to_string().contains("activation input gradient"),
        "{err}"
    );
}

/// Three CPU training steps of the GAN (batch 16) on `threads` threads: every parameter and
/// every moving average after. With `apart`, each instruction is a plan of its own, so the
/// executor fuses nothing.
fn train(threads: usize, apart: bool) -> Vec<Vec<f32>> {
    pool(threads).install(|| {
        let gan = SEED.build(&ModelConfig::new(16, 100)).unwrap();
        let plan_instrs = gan.train_step().unwrap();
        let mut rng = StdRng::seed_from_u64(5);
        let dataset = Arc::new(Dataset {
            bytes: (0..64 * PIXELS).map(|_| rng.random()).collect(),
            rows: 64,
            row_len: PIXELS,
            labels: None,
        });
        let adams = vec![AdamConfig::default(); 2];
        let streams = RandomStreams { seed: 9 };
        let mut exec = CpuExecutor::new(&gan.graph, adams, Some(dataset), streams);
        for (id, values) in gan.graph.init_params(&mut rng) {
            exec.write(Buf::Value(id), &values).unwrap();
        }
        let plans: Vec<usize> = if apart {
            plan_instrs
                .iter()
                .map(|instr| exec.compile(std::slice::from_ref(instr)).unwrap())
                .collect()
        } else {
            vec![exec.compile(&plan_instrs).unwrap()]
        };
        for it in 0..3 {
            for &plan in &plans {
                exec.run(plan, it).unwrap();
            }
        }
        let averages = gan
            .ema
            .as_ref()
            .expect("the default moving average")
            .pairs
            .iter();
        gan.params()
            .into_iter()
            .chain(averages.map(|&(_, average)| average))
            .map(|p| exec.read(Buf::Value(p)).unwrap())
            .collect()
    })
}

#[test]
fn cpu_training_is_bit_identical_on_one_and_two_threads() {
    let one = train(1, false);
    let two = train(2, false);
    assert_eq!(one.len(), two.len());
    for (p, (a, b)) in one.iter().zip(&two).enumerate() {
        assert!(
            a.iter().zip(b).all(|(x, y)| x.to_bits() == y.to_bits()),
            "parameter {p} differs between 1 and 2 threads"
        );
    }
}

/// The executor's fusions (activations into the layers before them, activation gradients
/// into input gradients, a transposed convolution's two gradients sharing one im2col, Adam
/// with the moving average) change no bit of training.
#[test]
fn cpu_training_is_bit_identical_with_and_without_fusion() {
    let fused = train(2, false);
    let apart = train(2, true);
    for (p, (a, b)) in fused.iter().zip(&apart).enumerate() {
        assert!(
            a.iter().zip(b).all(|(x, y)| x.to_bits() == y.to_bits()),
            "parameter {p} differs with and without the executor's fusions"
        );
    }
}

/// A transposed convolution's weight and input gradients computed together equal the two
/// apart, bit for bit, with and without accumulation and a fused activation gradient.
#[test]
fn transposed_convolution_gradients_together_match_the_two_apart() {
    let g = ConvTranspose2dGeometry::keras_same(30, 7, 7, 128, 64, 5, 5, 2, 2, None);
    let mut ws = Workspace::default();
    let (x, w, dy) = (
        uniform(30, g.input_len()),
        uniform(31, g.weight_len()),
        uniform(32, g.output_len()),
    );
    let (prior_dw, prior_dx) = (uniform(33, g.weight_len()), uniform(34, g.input_len()));
    let y = activation_forward(Activation::Relu, &x);
    for (accumulate, fuse) in [(false, false), (true, false), (false, true), (true, true)] {
        let mut dw = prior_dw.clone();
        cpu::conv_transpose2d_backward_weight_into(&g, &x, &dy, &mut dw, accumulate, &mut ws)
            .unwrap();
        let mut dx = prior_dx.clone();
        cpu::conv_transpose2d_backward_input_into(&g, &dy, &w, &mut dx, accumulate, None, &mut ws)
            .unwrap();
        let mut act_dx = vec![f32::NAN; dx.len()];
        cpu::activation_backward_into(Activation::Relu, &x, &y, &dx, &mut act_dx, false).unwrap();

        let (mut dw2, mut dx2) = (prior_dw.clone(), prior_dx.clone());
        let mut act_dx2 = vec![f32::NAN; dx.len()];
        let fused = fuse.then(|| cpu::FusedActivationGrad {
            act: Activation::Relu,
            x: &x,
            y: &y,
            dx: &mut act_dx2,
            accumulate: false,
        });
        cpu::conv_transpose2d_backward_into(
            &g,
            &x,
            &dy,
            &w,
            (&mut dw2, accumulate),
            (&mut dx2, accumulate),
            fused,
            &mut ws,
        )
        .unwrap();
        assert_eq!(
            dw2, dw,
            "weight gradient, accumulate {accumulate}, fused {fuse}"
        );
        assert_eq!(
            dx2, dx,
            "input gradient, accumulate {accumulate}, fused {fuse}"
        );
        if fuse {
            assert_eq!(
                act_dx2, act_dx,
                "activation gradient, accumulate {accumulate}"
            );
        }
    }
}

/// Adam with the moving average of its parameter in the same pass equals the two steps one
/// after the other, bit for bit, below and above the size that splits the work.
#[test]
fn adam_with_the_moving_average_matches_the_two_steps_apart() {
    for n in [1, 1000, 100_003] {
        let (p, g, m) = (uniform(1, n), uniform(2, n), uniform(3, n));
        let v: Vec<f32> = uniform(4, n).iter().map(|x| x.abs()).collect();
        let average = uniform(5, n);
        let cfg = AdamConfig::default();
        let (t, decay, step) = (7, 0.999, 6);

        let (mut p1, mut m1, mut v1, mut avg1) = (p.clone(), m.clone(), v.clone(), average.clone());
        cpu::adam_step(&cfg, t, &mut p1, &g, &mut m1, &mut v1).unwrap();
        cpu::ema_step(decay, step, &p1, &mut avg1).unwrap();

        let (mut p2, mut m2, mut v2, mut avg2) = (p.clone(), m.clone(), v.clone(), average.clone());
        let ema = Some((decay, step, &mut avg2[..]));
        cpu::adam_ema_step(&cfg, t, &mut p2, &g, &mut m2, &mut v2, ema).unwrap();

        for (what, a, b) in [
            ("p", &p1, &p2),
            ("m", &m1, &m2),
            ("v", &v1, &v2),
            ("average", &avg1, &avg2),
        ] {
            assert!(
                a.iter().zip(b).all(|(x, y)| x.to_bits() == y.to_bits()),
                "{what} differs at n = {n}"
            );
        }
        let short = &mut avg2[..n - 1];
        let err = cpu::adam_ema_step(
            &cfg,
            t,
            &mut p2,
            &g,
            &mut m2,
            &mut v2,
            Some((decay, step, short)),
        );
        assert!(err.unwrap_err().to_string().contains("average"), "n = {n}");
    }
}
