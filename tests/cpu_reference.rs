//! The CPU reference checked from independent angles: every backward against central finite
//! differences of an f64 forward, the im2col/GEMM convolutions against plain nested loops (fixed
//! shapes and proptest), GEMM exactly on whole numbers, hand-computed examples that pin the
//! semantics, the geometry tables, Philox known answers and noise statistics.

use gan_gpu::cpu::noise::mulhilo32;
use gan_gpu::cpu::{
    Activation, AdamConfig, activation_backward, activation_forward, adam_step, bce_with_logits,
    bias_grad, conv_transpose2d_backward_input, conv_transpose2d_backward_weight,
    conv_transpose2d_forward, conv2d_backward_input, conv2d_backward_weight, conv2d_forward,
    dense_backward, dense_forward, gemm, normal_noise, philox4x32_10, uniform_index, uniform_u32,
};
use gan_gpu::error::Error;
use gan_gpu::geometry::{Conv2dGeometry, ConvTranspose2dGeometry};
use proptest::prelude::*;
use rand::{RngExt, SeedableRng, rngs::StdRng};

/// Library (f32) against an f64 reference: |got - want| <= TOL·(1 + |want|). The sums here run
/// over at most ~25k products of magnitude <= 1; in f32 their rounding error grows roughly like
/// sqrt(terms)·2^-24·|sum| and stays well below 1e-4, while an indexing mistake (wrong tap,
/// padding on the wrong side) is off by O(0.1..1).
const TOL: f64 = 1e-4;

fn uniform(rng: &mut StdRng, n: usize) -> Vec<f32> {
    (0..n).map(|_| rng.random_range(-1.0f32..1.0)).collect()
}

fn widen(v: &[f32]) -> Vec<f64> {
    v.iter().map(|&x| f64::from(x)).collect()
}

fn assert_close(what: &str, got: &[f32], want: &[f64], tol: f64) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    let excess = |i: usize| (f64::from(got[i]) - want[i]).abs() - tol * (1.0 + want[i].abs());
    let failing: Vec<usize> = (0..got.len()).filter(|&i| fails(excess(i))).collect();
    if let Some(&i) = failing
        .iter()
        .max_by(|&&a, &&b| excess(a).total_cmp(&excess(b)))
    {
        panic!(
            "{what}: {} of {} elements off; worst at {i}: got {} want {}",
            failing.len(),
            got.len(),
            got[i],
            want[i]
        );
    }
}

/// A positive excess over the tolerance, or NaN.
fn fails(excess: f64) -> bool {
    excess > 0.0 || excess.is_nan()
}

/// Position `pos` of a padded (or uncropped) axis as an index into [0, len), if inside.
fn inside(pos: usize, offset: usize, len: usize) -> Option<usize> {
    pos.checked_sub(offset).filter(|&i| i < len)
}

/// The three linear layers, with their definitions as plain loops for reference.
#[derive(Clone, Copy, Debug)]
enum Layer {
    Dense {
        batch: usize,
        in_f: usize,
        out_f: usize,
    },
    Conv(Conv2dGeometry),
    ConvT(ConvTranspose2dGeometry),
}

impl Layer {
    /// Lengths of x, w, y, and b (= output channels, the fastest axis of y).
    fn lens(&self) -> [usize; 4] {
        match *self {
            Layer::Dense { batch, in_f, out_f } => {
                [batch * in_f, in_f * out_f, batch * out_f, out_f]
            }
            Layer::Conv(g) => [g.input_len(), g.weight_len(), g.output_len(), g.out_c],
            Layer::ConvT(g) => [g.input_len(), g.weight_len(), g.output_len(), g.out_c],
        }
    }

    /// Calls f(y index, x index, w index) once for every product x·w that enters y.
    fn taps(&self, f: &mut dyn FnMut(usize, usize, usize)) {
        match *self {
            Layer::Dense { batch, in_f, out_f } => {
                for n in 0..batch {
                    for i in 0..in_f {
                        for o in 0..out_f {
                            f(n * out_f + o, n * in_f + i, i * out_f + o);
                        }
                    }
                }
            }
            // y[n, oy, ox, o] += x[n, oy·s + a - pad, ox·s + c - pad, i] · w[a, c, i, o]
            Layer::Conv(g) => {
                let (oh, ow) = (g.out_h(), g.out_w());
                for (n, oy, ox, a, c) in grid5(g.batch, oh, ow, g.k_h, g.k_w) {
                    let iy = inside(oy * g.stride_h + a, g.pad_top, g.in_h);
                    let ix = inside(ox * g.stride_w + c, g.pad_left, g.in_w);
                    let (Some(iy), Some(ix)) = (iy, ix) else {
                        continue;
                    };
                    for i in 0..g.in_c {
                        for o in 0..g.out_c {
                            let yi = ((n * oh + oy) * ow + ox) * g.out_c + o;
                            let xi = ((n * g.in_h + iy) * g.in_w + ix) * g.in_c + i;
                            f(yi, xi, ((a * g.k_w + c) * g.in_c + i) * g.out_c + o);
                        }
                    }
                }
            }
            // full[n, i·s + a, j·s + c, o] += x[n, i, j, ci] · w[a, c, o, ci]; y = full cropped.
            Layer::ConvT(g) => {
                for (n, i, j, a, c) in grid5(g.batch, g.in_h, g.in_w, g.k_h, g.k_w) {
                    let p = inside(i * g.stride_h + a, g.crop_top, g.out_h);
                    let q = inside(j * g.stride_w + c, g.crop_left, g.out_w);
                    let (Some(p), Some(q)) = (p, q) else { continue };
                    for o in 0..g.out_c {
                        for ci in 0..g.in_c {
                            let yi = ((n * g.out_h + p) * g.out_w + q) * g.out_c + o;
                            let xi = ((n * g.in_h + i) * g.in_w + j) * g.in_c + ci;
                            f(yi, xi, ((a * g.k_w + c) * g.out_c + o) * g.in_c + ci);
                        }
                    }
                }
            }
        }
    }

    fn naive_forward(&self, x: &[f64], w: &[f64], b: &[f64]) -> Vec<f64> {
        let [_, _, y_len, channels] = self.lens();
        let mut y: Vec<f64> = (0..y_len).map(|i| b[i % channels]).collect();
        self.taps(&mut |yi, xi, wi| y[yi] += x[xi] * w[wi]);
        y
    }

    /// (dx, dw, db) of L = Σ y·dy, by the product rule on every tap.
    fn naive_backward(&self, x: &[f64], w: &[f64], dy: &[f64]) -> [Vec<f64>; 3] {
        let [x_len, w_len, _, channels] = self.lens();
        let (mut dx, mut dw) = (vec![0.0; x_len], vec![0.0; w_len]);
        self.taps(&mut |yi, xi, wi| {
            dx[xi] += dy[yi] * w[wi];
            dw[wi] += dy[yi] * x[xi];
        });
        let mut db = vec![0.0; channels];
        for (i, d) in dy.iter().enumerate() {
            db[i % channels] += d;
        }
        [dx, dw, db]
    }

    fn forward(&self, x: &[f32], w: &[f32], b: &[f32]) -> Vec<f32> {
        match self {
            Layer::Dense { batch, in_f, out_f } => dense_forward(x, w, b, *batch, *in_f, *out_f),
            Layer::Conv(g) => conv2d_forward(g, x, w, b),
            Layer::ConvT(g) => conv_transpose2d_forward(g, x, w, b),
        }
        .unwrap()
    }

    fn backward(&self, x: &[f32], w: &[f32], dy: &[f32]) -> [Vec<f32>; 3] {
        match self {
            Layer::Dense { batch, in_f, out_f } => {
                let (dx, dw, db) = dense_backward(x, w, dy, *batch, *in_f, *out_f).unwrap();
                [dx, dw, db]
            }
            Layer::Conv(g) => [
                conv2d_backward_input(g, dy, w).unwrap(),
                conv2d_backward_weight(g, x, dy).unwrap(),
                bias_grad(dy, g.batch * g.out_h() * g.out_w(), g.out_c).unwrap(),
            ],
            Layer::ConvT(g) => [
                conv_transpose2d_backward_input(g, dy, w).unwrap(),
                conv_transpose2d_backward_weight(g, x, dy).unwrap(),
                bias_grad(dy, g.batch * g.out_h * g.out_w, g.out_c).unwrap(),
            ],
        }
    }

    /// Random x, w, b, dy in [-1, 1].
    fn random_data(&self, seed: u64) -> [Vec<f32>; 4] {
        let mut rng = StdRng::seed_from_u64(seed);
        let [x, w, y, b] = self.lens();
        [
            uniform(&mut rng, x),
            uniform(&mut rng, w),
            uniform(&mut rng, b),
            uniform(&mut rng, y),
        ]
    }

    /// The library's forward, dx, dw and db against the nested loops.
    fn check_against_naive(&self, seed: u64) {
        let [x, w, b, dy] = self.random_data(seed);
        let what = format!("{self:?}");
        let y = self.naive_forward(&widen(&x), &widen(&w), &widen(&b));
        assert_close(&format!("{what} y"), &self.forward(&x, &w, &b), &y, TOL);
        let want = self.naive_backward(&widen(&x), &widen(&w), &widen(&dy));
        for ((name, got), want) in ["dx", "dw", "db"]
            .iter()
            .zip(self.backward(&x, &w, &dy))
            .zip(want)
        {
            assert_close(&format!("{what} {name}"), &got, &want, TOL);
        }
    }

    /// The library's dx, dw, db against central differences of L(x, w, b) = Σ y·dy, with y from
    /// the f64 nested loops (so FD error is f64 rounding only: the layer is linear in each).
    fn check_finite_differences(&self, seed: u64) {
        let [x, w, b, dy] = self.random_data(seed);
        let [grad_x, grad_w, grad_b] = self.backward(&x, &w, &dy);
        let (x, w, b, dy) = (widen(&x), widen(&w), widen(&b), widen(&dy));
        let loss = |x: &[f64], w: &[f64], b: &[f64]| dot(&self.naive_forward(x, w, b), &dy);
        let what = format!("{self:?}");
        check_fd(&format!("{what} dx"), &x, &grad_x, |x| loss(x, &w, &b));
        check_fd(&format!("{what} dw"), &w, &grad_w, |w| loss(&x, w, &b));
        check_fd(&format!("{what} db"), &b, &grad_b, |b| loss(&x, &w, b));
    }
}

fn grid5(
    a: usize,
    b: usize,
    c: usize,
    d: usize,
    e: usize,
) -> impl Iterator<Item = (usize, usize, usize, usize, usize)> {
    (0..a).flat_map(move |i| {
        (0..b).flat_map(move |j| {
            (0..c).flat_map(move |k| (0..d).flat_map(move |l| (0..e).map(move |m| (i, j, k, l, m))))
        })
    })
}

fn dot(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(a, b)| a * b).sum()
}

/// Step of the central differences. The layers are linear in each argument, so any step is exact
/// up to f64 rounding; for the smooth activations and BCE the O(h²) error is ~1e-9.
const FD_STEP: f64 = 1e-4;

/// Directional-derivative check along every coordinate e_i: analytic[i] against
/// (L(at + h e_i) - L(at - h e_i))/2h, within TOL·(1 + |fd|).
fn check_fd(what: &str, at: &[f64], analytic: &[f32], loss: impl Fn(&[f64]) -> f64) {
    let mut point = at.to_vec();
    let fd: Vec<f64> = (0..at.len())
        .map(|i| {
            point[i] = at[i] + FD_STEP;
            let plus = loss(&point);
            point[i] = at[i] - FD_STEP;
            let minus = loss(&point);
            point[i] = at[i];
            (plus - minus) / (2.0 * FD_STEP)
        })
        .collect();
    assert_close(what, analytic, &fd, TOL);
}

// Builders: spatial sizes, (in_c, out_c), kernel and stride as (height, width) pairs.

fn conv(
    batch: usize,
    (h, w): (usize, usize),
    (in_c, out_c): (usize, usize),
    (k_h, k_w): (usize, usize),
    (s_h, s_w): (usize, usize),
    [pad_top, pad_bottom, pad_left, pad_right]: [usize; 4],
) -> Layer {
    Layer::Conv(Conv2dGeometry {
        pad_top,
        pad_bottom,
        pad_left,
        pad_right,
        ..Conv2dGeometry::valid(batch, h, w, in_c, out_c, k_h, k_w, s_h, s_w)
    })
}

fn conv_same(
    batch: usize,
    (h, w): (usize, usize),
    (in_c, out_c): (usize, usize),
    (k_h, k_w): (usize, usize),
    (s_h, s_w): (usize, usize),
) -> Layer {
    Layer::Conv(Conv2dGeometry::same(
        batch, h, w, in_c, out_c, k_h, k_w, s_h, s_w,
    ))
}

fn convt(
    same: bool,
    batch: usize,
    (h, w): (usize, usize),
    (in_c, out_c): (usize, usize),
    (k_h, k_w): (usize, usize),
    (s_h, s_w): (usize, usize),
    output_padding: Option<(usize, usize)>,
) -> Layer {
    let make = if same {
        ConvTranspose2dGeometry::keras_same
    } else {
        ConvTranspose2dGeometry::keras_valid
    };
    Layer::ConvT(make(
        batch,
        h,
        w,
        in_c,
        out_c,
        k_h,
        k_w,
        s_h,
        s_w,
        output_padding,
    ))
}

/// Tiny layers for finite differences: asymmetric padding, stride 1, unequal strides, crops.
fn tiny_layers() -> Vec<Layer> {
    vec![
        Layer::Dense {
            batch: 2,
            in_f: 5,
            out_f: 3,
        },
        conv(2, (5, 6), (2, 3), (3, 3), (2, 2), [1, 0, 0, 2]),
        conv_same(2, (5, 6), (2, 2), (3, 3), (1, 1)),
        conv(2, (5, 6), (3, 2), (3, 2), (2, 1), [0, 0, 0, 0]),
        convt(true, 2, (3, 4), (2, 3), (3, 3), (2, 2), None),
        convt(true, 2, (3, 3), (2, 2), (4, 4), (2, 2), None),
        convt(false, 2, (3, 3), (2, 2), (3, 2), (2, 3), None),
        convt(true, 2, (3, 2), (2, 2), (3, 5), (2, 3), Some((1, 0))),
        convt(true, 1, (3, 3), (2, 8), (3, 3), (2, 2), None), // by output phases
    ]
}

#[test]
fn layer_gradients_match_finite_differences() {
    for (seed, layer) in tiny_layers().into_iter().enumerate() {
        layer.check_finite_differences(seed as u64);
    }
}

#[test]
fn layers_match_nested_loops() {
    let layers = [
        // MNIST discriminator's first layer: 28 -> 13 ('valid' k3 s2), batch 1 and 3.
        conv(1, (28, 28), (1, 4), (3, 3), (2, 2), [0; 4]),
        conv(3, (28, 28), (2, 3), (3, 3), (2, 2), [0; 4]),
        conv_same(2, (9, 8), (3, 2), (5, 5), (2, 2)), // kernel larger than stride
        conv(2, (10, 11), (2, 3), (2, 2), (3, 3), [0; 4]), // stride larger than kernel
        conv(1, (7, 9), (2, 2), (1, 1), (2, 2), [0; 4]),
        conv_same(3, (7, 5), (3, 4), (3, 3), (2, 2)), // odd sizes
        conv(2, (6, 7), (2, 2), (3, 2), (1, 3), [2, 0, 0, 1]),
        conv(0, (5, 5), (2, 3), (3, 3), (2, 2), [0; 4]), // zero batch
        conv(2, (5, 5), (0, 3), (3, 3), (1, 1), [1; 4]), // no input channels: bias only
        convt(true, 1, (7, 7), (4, 3), (5, 5), (2, 2), None), // the generator's 7 -> 14
        convt(true, 3, (7, 7), (2, 2), (5, 5), (2, 2), None),
        convt(true, 2, (5, 3), (2, 3), (3, 3), (2, 2), None),
        convt(true, 2, (5, 5), (3, 2), (4, 4), (2, 2), None),
        convt(true, 2, (5, 4), (2, 2), (5, 4), (3, 3), None),
        convt(false, 2, (4, 5), (2, 2), (2, 1), (3, 2), None), // stride larger than kernel
        convt(false, 1, (3, 3), (2, 2), (5, 5), (2, 2), Some((1, 1))),
        convt(true, 2, (4, 4), (2, 2), (5, 3), (2, 2), Some((0, 1))),
        convt(true, 0, (7, 7), (2, 2), (5, 5), (2, 2), None), // zero batch
        // 8 output channels and more run by output phases (the others by scatter).
        convt(true, 3, (7, 7), (5, 8), (5, 5), (2, 2), None),
        convt(true, 2, (5, 4), (3, 9), (5, 4), (3, 3), None),
        convt(false, 2, (4, 5), (2, 8), (2, 1), (3, 2), None), // phases without taps
        convt(false, 1, (3, 3), (2, 11), (5, 5), (2, 2), Some((1, 1))),
        convt(true, 2, (4, 4), (3, 8), (5, 3), (2, 2), Some((0, 1))),
        convt(true, 2, (6, 5), (1, 8), (4, 4), (1, 1), None), // stride 1: one phase
        Layer::Dense {
            batch: 3,
            in_f: 17,
            out_f: 9,
        },
        Layer::Dense {
            batch: 0,
            in_f: 4,
            out_f: 2,
        },
    ];
    for (seed, layer) in layers.into_iter().enumerate() {
        layer.check_against_naive(seed as u64);
    }
}

/// Sizes whose im2col buffer exceeds the 64 MiB (16M floats) bound, so the batch goes in chunks:
/// per image 64·64 windows x 5·5·32 columns = 3.3M floats, 5 images per chunk, chunks 5 + 1.
#[test]
fn chunked_batches_match_nested_loops() {
    conv_same(6, (64, 64), (32, 2), (5, 5), (1, 1)).check_against_naive(1);
    convt(true, 6, (64, 64), (2, 32), (5, 5), (1, 1), None).check_against_naive(2);
}

fn conv_geometry() -> impl Strategy<Value = Layer> {
    (
        (0..3usize, 1..10usize, 1..10usize, 1..4usize, 1..4usize),
        (1..5usize, 1..5usize, 1..4usize, 1..4usize),
        [0..3usize, 0..3, 0..3, 0..3],
    )
        .prop_map(|((batch, h, w, in_c, out_c), (k_h, k_w, s_h, s_w), pads)| {
            conv(batch, (h, w), (in_c, out_c), (k_h, k_w), (s_h, s_w), pads)
        })
        .prop_filter(
            "padded input at least the kernel",
            |l| matches!(l, Layer::Conv(g) if g.validate().is_ok()),
        )
}

fn conv_transpose_geometry() -> impl Strategy<Value = Layer> {
    // Output channels on both sides of the forward pass's switch to output phases (8).
    let out_c = prop_oneof![1..4usize, 8..11usize];
    (
        (0..3usize, 1..7usize, 1..7usize, 1..4usize, out_c),
        (1..6usize, 1..6usize, 1..4usize, 1..4usize),
        any::<bool>(),
        prop::option::of((0..3usize, 0..3usize)),
    )
        .prop_map(
            |((batch, h, w, in_c, out_c), (k_h, k_w, s_h, s_w), same, op)| {
                // Keras requires output_padding < stride.
                let op = op.map(|(a, b)| (a % s_h, b % s_w));
                convt(
                    same,
                    batch,
                    (h, w),
                    (in_c, out_c),
                    (k_h, k_w),
                    (s_h, s_w),
                    op,
                )
            },
        )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn random_convs_match_nested_loops(layer in conv_geometry(), seed in any::<u64>()) {
        layer.check_against_naive(seed);
    }

    #[test]
    fn random_conv_transposes_match_nested_loops(layer in conv_transpose_geometry(), seed in any::<u64>()) {
        layer.check_against_naive(seed);
    }

    /// The transposed conv's input gradient is the conv of `adjoint_conv` with the same kernel
    /// memory (HWOI read as HWIO), which is how a GPU may compute it.
    #[test]
    fn conv_transpose_input_gradient_is_its_adjoint_conv(layer in conv_transpose_geometry(), seed in any::<u64>()) {
        let Layer::ConvT(g) = layer else { unreachable!() };
        let adjoint = g.adjoint_conv();
        prop_assert_eq!((adjoint.out_h(), adjoint.out_w()), (g.in_h, g.in_w));
        let [_, w, _, dy] = layer.random_data(seed);
        let dx = conv_transpose2d_backward_input(&g, &dy, &w).unwrap();
        let via_conv = conv2d_forward(&adjoint, &dy, &w, &vec![0.0; g.in_c]).unwrap();
        assert_close("adjoint", &dx, &widen(&via_conv), 1e-6);
    }
}

/// f64 versions of the activations, for finite differences.
fn activation_f64(act: Activation, x: f64) -> f64 {
    match act {
        Activation::Relu => x.max(0.0),
        Activation::LeakyRelu(alpha) => {
            if x >= 0.0 {
                x
            } else {
                f64::from(alpha) * x
            }
        }
        Activation::Tanh => x.tanh(),
        Activation::Sigmoid => 1.0 / (1.0 + (-x).exp()),
    }
}

#[test]
fn activation_gradients_match_finite_differences() {
    let mut rng = StdRng::seed_from_u64(7);
    // Random points kept 0.01 away from relu's kink, plus saturated tails.
    let mut x: Vec<f32> = uniform(&mut rng, 60)
        .into_iter()
        .map(|v| 4.0 * v + 0.01f32.copysign(v))
        .collect();
    x.extend([-20.0, 20.0, -9.0, 9.0]);
    let dy = uniform(&mut rng, x.len());
    for act in [
        Activation::Relu,
        Activation::LeakyRelu(0.2),
        Activation::Tanh,
        Activation::Sigmoid,
    ] {
        let y = activation_forward(act, &x);
        let dx = activation_backward(act, &x, &y, &dy).unwrap();
        let dy64 = widen(&dy);
        let loss = |x: &[f64]| {
            x.iter()
                .zip(&dy64)
                .map(|(&x, d)| activation_f64(act, x) * d)
                .sum()
        };
        check_fd(&format!("{act:?}"), &widen(&x), &dx, loss);
    }
}

#[test]
fn bce_gradient_matches_finite_differences() {
    let mut rng = StdRng::seed_from_u64(8);
    let logits: Vec<f32> = uniform(&mut rng, 24).into_iter().map(|v| 6.0 * v).collect();
    // Hard labels and a few soft ones (the formula holds for any z in [0, 1]).
    let labels: Vec<f32> = (0..24).map(|i| [0.0, 1.0, 0.3][i % 3]).collect();
    let out = bce_with_logits(&logits, &labels).unwrap();
    let z = widen(&labels);
    let loss = |x: &[f64]| {
        let sum: f64 = x
            .iter()
            .zip(&z)
            .map(|(&x, &z)| x.max(0.0) - x * z + (-x.abs()).exp().ln_1p())
            .sum();
        sum / x.len() as f64
    };
    assert!((f64::from(out.loss) - loss(&widen(&logits))).abs() < 1e-6);
    check_fd("bce dlogits", &widen(&logits), &out.dlogits, loss);
}

/// Small whole numbers: every product and sum is exact in f32, so results compare with ==.
fn whole(rng: &mut StdRng, n: usize) -> Vec<f32> {
    (0..n).map(|_| rng.random_range(-4i32..=4) as f32).collect()
}

fn check_gemm(
    rng: &mut StdRng,
    m: usize,
    n: usize,
    k: usize,
    trans_a: bool,
    trans_b: bool,
    accumulate: bool,
) {
    let (a, b) = (whole(rng, m * k), whole(rng, k * n));
    // op(A)[i][p] and op(B)[p][j] read from the stored (possibly transposed) layouts.
    let op_a = |i: usize, p: usize| if trans_a { a[p * m + i] } else { a[i * k + p] };
    let op_b = |p: usize, j: usize| if trans_b { b[j * k + p] } else { b[p * n + j] };
    let start = if accumulate {
        whole(rng, m * n)
    } else {
        vec![f32::NAN; m * n]
    };
    let mut want = vec![0.0f32; m * n];
    for i in 0..m {
        for j in 0..n {
            let base = if accumulate { start[i * n + j] } else { 0.0 };
            want[i * n + j] = base + (0..k).map(|p| op_a(i, p) * op_b(p, j)).sum::<f32>();
        }
    }
    let mut c = start;
    gemm(m, n, k, &a, trans_a, &b, trans_b, &mut c, accumulate).unwrap();
    assert_eq!(
        c, want,
        "m={m} n={n} k={k} trans_a={trans_a} trans_b={trans_b} accumulate={accumulate}"
    );
}

#[test]
fn gemm_is_exact_on_whole_numbers() {
    let mut rng = StdRng::seed_from_u64(9);
    let sizes = [0, 1, 2, 5, 17];
    for (m, n, k, bits, _) in grid5(5, 5, 5, 8, 1) {
        let (ta, tb, acc) = (bits & 1 != 0, bits & 2 != 0, bits & 4 != 0);
        check_gemm(&mut rng, sizes[m], sizes[n], sizes[k], ta, tb, acc);
    }
    // Past matrixmultiply's block sizes, so C is written once and then accumulated per k-block.
    for (ta, tb) in [(false, false), (false, true), (true, false), (true, true)] {
        check_gemm(&mut rng, 70, 45, 300, ta, tb, false);
        check_gemm(&mut rng, 130, 9, 600, ta, tb, true);
    }
}

#[test]
fn mismatched_lengths_are_shape_errors() {
    let is_shape = |r: Result<(), Error>, op: &str| match r {
        Err(Error::Shape { op: got, .. }) => assert_eq!(got, op),
        other => panic!("{op}: expected a shape error, got {other:?}"),
    };
    let mut c = vec![0.0; 6];
    is_shape(
        gemm(2, 3, 4, &[0.0; 7], false, &[0.0; 12], false, &mut c, false),
        "gemm",
    );
    is_shape(
        dense_forward(&[0.0; 5], &[0.0; 6], &[0.0; 2], 2, 3, 2).map(drop),
        "dense_forward",
    );
    let g = Conv2dGeometry::valid(1, 5, 5, 2, 3, 3, 3, 1, 1);
    let w = vec![0.0; g.weight_len()];
    is_shape(
        conv2d_forward(&g, &vec![0.0; g.input_len() - 1], &w, &[0.0; 3]).map(drop),
        "conv2d_forward",
    );
    is_shape(
        conv2d_backward_weight(&g, &vec![0.0; g.input_len()], &[0.0; 3]).map(drop),
        "conv2d_backward_weight",
    );
    let t = ConvTranspose2dGeometry::keras_same(1, 3, 3, 2, 2, 3, 3, 2, 2, None);
    is_shape(
        conv_transpose2d_backward_input(&t, &[0.0; 5], &vec![0.0; t.weight_len()]).map(drop),
        "conv_transpose2d_backward_input",
    );
    is_shape(
        activation_backward(Activation::Tanh, &[0.0; 3], &[0.0; 3], &[0.0; 2]).map(drop),
        "activation_backward",
    );
    is_shape(
        bce_with_logits(&[0.0; 3], &[0.0; 2]).map(drop),
        "bce_with_logits",
    );
    is_shape(bce_with_logits(&[], &[]).map(drop), "bce_with_logits");
    let cfg = AdamConfig::default();
    is_shape(
        adam_step(
            &cfg,
            1,
            &mut [0.0; 3],
            &[0.0; 3],
            &mut [0.0; 2],
            &mut [0.0; 3],
        ),
        "adam_step",
    );
    assert!(matches!(
        adam_step(&cfg, 0, &mut [0.0], &[0.0], &mut [0.0], &mut [0.0]),
        Err(Error::InvalidArgument(_))
    ));
    // A geometry that cannot work is a shape error too, not a panic.
    let bad = Conv2dGeometry { stride_h: 0, ..g };
    is_shape(
        conv2d_forward(&bad, &vec![0.0; g.input_len()], &w, &[0.0; 3]).map(drop),
        "geometry",
    );
}

/// 'same' k3 s2 transposed conv of a 2x2 input: out 4x4, crop floor((3-2)/2) = 0, and the full
/// 5x5 result loses its last row and column. Powers of ten keep each input's share readable:
/// y[p][q] = Σ x[i][j]·w[p-2i][q-2j].
#[test]
fn conv_transpose_same_stride2_by_hand() {
    let g = ConvTranspose2dGeometry::keras_same(1, 2, 2, 1, 1, 3, 3, 2, 2, None);
    assert_eq!((g.out_h, g.out_w, g.crop_top, g.crop_left), (4, 4, 0, 0));
    let x = [1.0, 10.0, 100.0, 1000.0];
    let w = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0];
    let y = conv_transpose2d_forward(&g, &x, &w, &[0.0]).unwrap();
    #[rustfmt::skip]
    let want = [
        1.0,   2.0,   3.0 + 10.0,                  20.0,
        4.0,   5.0,   6.0 + 40.0,                  50.0,
        7.0 + 100.0, 8.0 + 200.0, 9.0 + 70.0 + 300.0 + 1000.0, 80.0 + 2000.0,
        400.0, 500.0, 600.0 + 4000.0,              5000.0,
    ];
    assert_eq!(y, want);
}

/// 'same' k3 s2 conv of a 4x4 input: P = 1, and TF puts it at the bottom/right (pads 0/1), so
/// the first window starts at row/column 0. With w = 1 each output is its window's sum.
#[test]
fn conv_same_odd_padding_goes_after_by_hand() {
    let g = Conv2dGeometry::same(1, 4, 4, 1, 1, 3, 3, 2, 2);
    assert_eq!(
        (g.pad_top, g.pad_bottom, g.pad_left, g.pad_right),
        (0, 1, 0, 1)
    );
    let x: Vec<f32> = (1..=16).map(|v| v as f32).collect(); // x[r][c] = 4r + c + 1
    let y = conv2d_forward(&g, &x, &[1.0; 9], &[0.0]).unwrap();
    let want = [
        1.0 + 2.0 + 3.0 + 5.0 + 6.0 + 7.0 + 9.0 + 10.0 + 11.0,
        3.0 + 4.0 + 7.0 + 8.0 + 11.0 + 12.0,
        9.0 + 10.0 + 11.0 + 13.0 + 14.0 + 15.0,
        11.0 + 12.0 + 15.0 + 16.0,
    ];
    assert_eq!(y, want);
}

/// 'valid' k3 s2 on 28x28 gives 13x13; windows start at 0, 2, ..., 24 and end at 26, so input
/// row 27 and column 27 are never read and their dx is exactly 0.
#[test]
fn conv_valid_28_by_hand() {
    let g = Conv2dGeometry::valid(1, 28, 28, 1, 2, 3, 3, 2, 2);
    assert_eq!((g.out_h(), g.out_w()), (13, 13));
    let mut rng = StdRng::seed_from_u64(10);
    let (x, w, dy) = (
        uniform(&mut rng, 784),
        uniform(&mut rng, 18),
        uniform(&mut rng, 338),
    );
    let y = conv2d_forward(&g, &x, &w, &[0.5, -0.5]).unwrap();
    // y at output (1, 2), channel 1: the window at rows 2..5, columns 4..7.
    let window: f32 = grid5(1, 1, 1, 3, 3)
        .map(|(_, _, _, a, c)| x[(2 + a) * 28 + 4 + c] * w[(a * 3 + c) * 2 + 1])
        .sum();
    assert!((y[(13 + 2) * 2 + 1] - (window - 0.5)).abs() < 1e-6);
    let dx = conv2d_backward_input(&g, &dy, &w).unwrap();
    for i in 0..28 {
        assert_eq!(
            (dx[27 * 28 + i], dx[i * 28 + 27]),
            (0.0, 0.0),
            "row/column 27 at {i}"
        );
    }
    assert!(dx[26 * 28 + 26] != 0.0);
}

#[test]
fn bce_at_extreme_logits() {
    let out = bce_with_logits(&[50.0, 50.0, -50.0, -50.0], &[1.0, 0.0, 1.0, 0.0]).unwrap();
    // ln(1 + e^-50) = 1.9e-22: the confident-and-right cases cost nothing, the wrong ones 50.
    assert_eq!(out.loss, 25.0);
    assert_eq!(out.mean_prob, 0.5);
    // (σ(x) - z)/4 with σ(50) = 1 in f32 and σ(-50) = e^-50 = 1.9e-22 (a normal f32).
    assert_eq!(out.dlogits[..3], [0.0, 0.25, -0.25]);
    assert_eq!(out.dlogits[3], (-50.0f32).exp() / 4.0);
}

/// Keras adds epsilon to sqrt(v) after the bias correction moved into alpha, which matters when
/// sqrt(v) is near epsilon: g = 1e-7 at step 1 moves p by 6.13e-6 in Keras, 1e-4 in PyTorch.
#[test]
fn adam_epsilon_placement() {
    let cfg = AdamConfig::default();
    let (mut p, mut m, mut v) = ([0.0f32, 1.0], [0.0f32; 2], [0.0f32; 2]);
    adam_step(&cfg, 1, &mut p, &[1e-7, 0.0], &mut m, &mut v).unwrap();
    let (lr, g) = (2e-4f64, 1e-7f64);
    let (m1, v1) = (0.5 * g, 0.001 * g * g);
    let keras = lr * (0.001f64).sqrt() / 0.5 * m1 / (v1.sqrt() + 1e-7);
    assert!((keras - 6.1307e-6).abs() < 1e-9);
    // Within 1e-5 relative: alpha's f32 1 - 0.999f32 = 0.0009999871 is Keras's own rounding.
    assert!(
        (f64::from(-p[0]) - keras).abs() < 1e-5 * keras,
        "update {}",
        -p[0]
    );
    assert_eq!(p[1], 1.0, "a zero gradient leaves the parameter alone");
    assert_eq!(
        cfg.one_minus_beta2(),
        0.001,
        "1 - beta2 rounded from f64, as in Keras"
    );
}

#[test]
fn keras_transpose_sizes_and_crops() {
    // (n, k, s) -> (out, crop_before) for 'same' without output_padding (README table).
    for (n, k, s, out, crop) in [
        (7, 5, 2, 14, 1),
        (14, 5, 2, 28, 1),
        (7, 3, 2, 14, 0),
        (7, 4, 2, 14, 1),
        (7, 5, 3, 21, 1),
        (7, 4, 3, 21, 0),
    ] {
        let g = ConvTranspose2dGeometry::keras_same(1, n, n, 1, 1, k, k, s, s, None);
        assert_eq!(
            (g.out_h, g.out_w, g.crop_top, g.crop_left),
            (out, out, crop, crop),
            "same n={n} k={k} s={s}"
        );
        assert_eq!(g.full_h(), (n - 1) * s + k);
    }
    // 'valid': (n-1)s + max(k, s), never cropped.
    for (n, k, s, out) in [(7, 5, 2, 17), (7, 2, 3, 21), (7, 1, 2, 14), (1, 3, 2, 3)] {
        let g = ConvTranspose2dGeometry::keras_valid(1, n, n, 1, 1, k, k, s, s, None);
        assert_eq!((g.out_h, g.crop_top), (out, 0), "valid n={n} k={k} s={s}");
    }
    // output_padding: out = (n-1)s + k - 2(k/2) + op, crop by TF's rule floor((full - out)/2).
    let g = ConvTranspose2dGeometry::keras_same(1, 7, 7, 1, 1, 5, 3, 2, 2, Some((1, 0)));
    assert_eq!((g.out_h, g.crop_top, g.out_w, g.crop_left), (14, 1, 13, 1));
    let g = ConvTranspose2dGeometry::keras_valid(1, 7, 7, 1, 1, 3, 3, 2, 2, Some((1, 0)));
    assert_eq!((g.out_h, g.out_w, g.crop_top), (16, 15, 0));
    let g = ConvTranspose2dGeometry::keras_same(100, 7, 7, 128, 64, 5, 5, 2, 2, None);
    assert_eq!(g.flops(), 2 * 100 * 49 * 128 * 25 * 64);
    assert_eq!(
        (g.input_len(), g.output_len(), g.weight_len()),
        (100 * 49 * 128, 100 * 196 * 64, 25 * 64 * 128)
    );
}

#[test]
fn keras_conv_sizes_and_pads() {
    // (n, k, s) -> (pad_before, pad_after, out) for 'same'.
    for (n, k, s, before, after, out) in [
        (28, 5, 2, 1, 2, 14),
        (28, 3, 2, 0, 1, 14),
        (9, 3, 2, 1, 1, 5),
        (14, 4, 2, 1, 1, 7),
        (10, 3, 3, 1, 1, 4),
        (5, 7, 1, 3, 3, 5),
    ] {
        let g = Conv2dGeometry::same(1, n, n, 1, 1, k, k, s, s);
        assert_eq!(
            (g.pad_top, g.pad_bottom, g.out_h()),
            (before, after, out),
            "same n={n} k={k} s={s}"
        );
        assert_eq!((g.pad_left, g.pad_right, g.out_w()), (before, after, out));
    }
    for (n, k, s, out) in [(28, 3, 2, 13), (13, 3, 2, 6), (5, 5, 1, 1), (10, 2, 3, 3)] {
        assert_eq!(
            Conv2dGeometry::valid(1, n, n, 1, 1, k, k, s, s).out_h(),
            out,
            "valid n={n} k={k} s={s}"
        );
    }
    let g = Conv2dGeometry::valid(100, 28, 28, 1, 32, 3, 3, 2, 2);
    assert_eq!(g.flops(), 2 * 100 * 169 * 32 * 9);
    assert_eq!(
        (g.input_len(), g.output_len(), g.weight_len()),
        (78_400, 100 * 169 * 32, 288)
    );
}

#[test]
fn geometry_validation() {
    let g = Conv2dGeometry::valid(2, 5, 5, 1, 1, 3, 3, 2, 2);
    assert!(g.validate().is_ok());
    assert!(Conv2dGeometry { batch: 0, ..g }.validate().is_ok());
    assert!(
        Conv2dGeometry { in_h: 0, ..g }.validate().is_ok(),
        "an empty input gives an empty output"
    );
    assert!(Conv2dGeometry { k_w: 0, ..g }.validate().is_err());
    assert!(Conv2dGeometry { stride_h: 0, ..g }.validate().is_err());
    assert!(
        Conv2dGeometry { k_h: 6, ..g }.validate().is_err(),
        "kernel taller than the input"
    );
    assert!(
        Conv2dGeometry {
            k_h: 6,
            pad_bottom: 1,
            ..g
        }
        .validate()
        .is_ok()
    );
    assert!(
        Conv2dGeometry {
            in_c: usize::MAX / 2,
            ..g
        }
        .validate()
        .is_err(),
        "overflowing size"
    );
    let t = ConvTranspose2dGeometry::keras_same(2, 3, 3, 1, 1, 3, 3, 2, 2, None);
    assert!(t.validate().is_ok());
    assert!(
        ConvTranspose2dGeometry { stride_w: 0, ..t }
            .validate()
            .is_err()
    );
    assert!(
        ConvTranspose2dGeometry {
            batch: usize::MAX,
            ..t
        }
        .validate()
        .is_err()
    );
}

#[test]
fn philox_known_answers() {
    // Random123's kat_vectors for philox4x32_10.
    assert_eq!(
        philox4x32_10([0; 4], [0; 2]),
        [0x6627e8d5, 0xe169c58d, 0xbc57ac4c, 0x9b00dbd8]
    );
    assert_eq!(
        philox4x32_10([u32::MAX; 4], [u32::MAX; 2]),
        [0x408f276d, 0x41c83b0e, 0xa20bc7c6, 0x6d5451fd]
    );
    assert_eq!(
        philox4x32_10(
            [0x243f6a88, 0x85a308d3, 0x13198a2e, 0x03707344],
            [0xa4093822, 0x299f31d0]
        ),
        [0xd16cfe09, 0x94fdcceb, 0x5001e420, 0x24126ea1]
    );
}

#[test]
fn limb_mulhilo_equals_u64_product() {
    let check = |a: u32, b: u32| {
        let product = u64::from(a) * u64::from(b);
        assert_eq!(
            mulhilo32(a, b),
            ((product >> 32) as u32, product as u32),
            "{a:#x} * {b:#x}"
        );
    };
    let edges = [
        0,
        1,
        2,
        0xffff,
        0x1_0000,
        0x1_0001,
        0x7fff_ffff,
        0x8000_0000,
        0xffff_0000,
        0xffff_ffff,
        0xd251_1f53,
        0xcd9e_8d57,
    ];
    for a in edges {
        for b in edges {
            check(a, b);
        }
    }
    let mut rng = StdRng::seed_from_u64(11);
    for _ in 0..100_000 {
        check(rng.random(), rng.random());
    }
}

#[test]
fn noise_layout_and_determinism() {
    let (seed, stream) = (0x0123_4567_89ab_cdef_u64, 0xfeed_0000_0000_0042_u64);
    let words = uniform_u32(seed, stream, 10);
    // Word i is word i % 4 of block i / 4; counter (block, stream), key seed, low words first.
    let key = [seed as u32, (seed >> 32) as u32];
    let block1 = philox4x32_10([1, 0, stream as u32, (stream >> 32) as u32], key);
    assert_eq!(words[4..8], block1);
    // Box-Muller on (r0, r1) and (r2, r3), u1 = ((r >> 8) + 1)/2^24, u2 = (r >> 8)/2^24.
    let z = normal_noise(seed, stream, 10);
    for (i, pair) in words[..8].chunks(2).enumerate() {
        let u1 = (f64::from(pair[0] >> 8) + 1.0) / 16_777_216.0;
        let u2 = f64::from(pair[1] >> 8) / 16_777_216.0;
        let (radius, theta) = ((-2.0 * u1.ln()).sqrt(), std::f64::consts::TAU * u2);
        assert!((f64::from(z[2 * i]) - radius * theta.cos()).abs() < 1e-5);
        assert!((f64::from(z[2 * i + 1]) - radius * theta.sin()).abs() < 1e-5);
    }
    // Every element depends only on (seed, stream, index).
    assert_eq!(normal_noise(seed, stream, 10), z);
    assert_eq!(normal_noise(seed, stream, 7), z[..7]);
    assert_eq!(uniform_u32(seed, stream, 3), words[..3]);
    assert_ne!(normal_noise(seed, stream + 1, 10), z, "streams differ");
    assert_ne!(
        normal_noise(seed ^ (1 << 40), stream, 10),
        z,
        "seeds differ in their high word"
    );
    assert!(normal_noise(seed, stream, 0).is_empty());
}

#[test]
fn noise_is_standard_normal() {
    let z = normal_noise(42, 0, 100_000);
    assert!(z.iter().all(|v| v.is_finite()));
    let n = z.len() as f64;
    let mean = z.iter().map(|&v| f64::from(v)).sum::<f64>() / n;
    let var = z
        .iter()
        .map(|&v| (f64::from(v) - mean).powi(2))
        .sum::<f64>()
        / n;
    let within_one = z.iter().filter(|v| v.abs() < 1.0).count() as f64 / n;
    // Standard errors at n = 1e5: mean 0.003, variance 0.0045, P(|z| < 1) 0.0015; ~6 sigma.
    assert!(mean.abs() < 0.02, "mean {mean}");
    assert!((var - 1.0).abs() < 0.03, "variance {var}");
    assert!(
        (within_one - 0.6827).abs() < 0.01,
        "P(|z| < 1) = {within_one}"
    );
}

#[test]
fn uniform_index_is_multiply_shift() {
    for bound in [1, 2, 10, 60_000, u32::MAX] {
        assert_eq!(uniform_index(0, bound), 0);
        assert_eq!(uniform_index(u32::MAX, bound), bound - 1);
    }
    let words = uniform_u32(5, 1, 60_000);
    let mut counts = [0u32; 10];
    for &w in &words {
        let i = uniform_index(w, 10);
        assert_eq!(i, mulhilo32(w, 10).0, "the GPU's form");
        counts[i as usize] += 1;
    }
    assert!(counts.iter().all(|&c| c.abs_diff(6000) < 400), "{counts:?}");
}
