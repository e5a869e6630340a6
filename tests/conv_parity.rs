//! The convolution kernels against their CPU twins (cpu::conv, cpu::conv_transpose) and the
//! TF-Keras golden vectors: forward, input gradient and weight gradient of conv2d and
//! conv_transpose2d on awkward shapes, the GAN's layers, accumulation, and random shapes.

mod common;
// Only the case reader is used here.
#[allow(dead_code)]
#[path = "common/golden.rs"]
mod golden;

use std::time::Instant;

use common::assert_close;
use gan_gpu::cpu;
use gan_gpu::geometry::{Conv2dGeometry, ConvTranspose2dGeometry};
use gan_gpu::gpu::testing::test_context;
use gan_gpu::gpu::{Dispatch, GpuBuffer, GpuContext};
use gan_gpu::graph::Op;
use gan_gpu::kernels::conv;
use gan_gpu::kernels::gemm::{self, GemmShape, GemmVariant, gemm_flops};
use gan_gpu::model::{MODELS, ModelConfig};
use proptest::prelude::*;
use rand::{RngExt, SeedableRng, rngs::StdRng};

#[derive(Debug, Clone, Copy, PartialEq)]
enum Layer {
    Conv(Conv2dGeometry),
    ConvT(ConvTranspose2dGeometry),
}

/// Tensor lengths (x, w, y, bias) and the reduction lengths of (y, dx, dw).
struct Lens {
    x: usize,
    w: usize,
    y: usize,
    b: usize,
    k: [usize; 3],
}

impl Layer {
    fn lens(&self) -> Lens {
        match self {
            Layer::Conv(g) => Lens {
                x: g.input_len(),
                w: g.weight_len(),
                y: g.output_len(),
                b: g.out_c,
                k: [
                    g.k_h * g.k_w * g.in_c,
                    g.k_h * g.k_w * g.out_c,
                    g.batch * g.out_h() * g.out_w(),
                ],
            },
            Layer::ConvT(g) => Lens {
                x: g.input_len(),
                w: g.weight_len(),
                y: g.output_len(),
                b: g.out_c,
                k: [
                    g.k_h * g.k_w * g.in_c,
                    g.k_h * g.k_w * g.out_c,
                    g.batch * g.in_h * g.in_w,
                ],
            },
        }
    }

    /// Forward, input gradient, weight gradient, and the weight and bias gradients the
    /// fused launcher computes together.
    fn cpu(&self, x: &[f32], w: &[f32], b: &[f32], dy: &[f32]) -> [Vec<f32>; 5] {
        let [y, dx, dw] = match self {
            Layer::Conv(g) => [
                cpu::conv2d_forward(g, x, w, b).unwrap(),
                cpu::conv2d_backward_input(g, dy, w).unwrap(),
                cpu::conv2d_backward_weight(g, x, dy).unwrap(),
            ],
            Layer::ConvT(g) => [
                cpu::conv_transpose2d_forward(g, x, w, b).unwrap(),
                cpu::conv_transpose2d_backward_input(g, dy, w).unwrap(),
                cpu::conv_transpose2d_backward_weight(g, x, dy).unwrap(),
            ],
        };
        // The bias gradient: dy summed over its pixels, per channel.
        let mut db = vec![0.0f32; b.len()];
        for (i, v) in dy.iter().enumerate() {
            db[i % b.len()] += v;
        }
        [y, dx, dw.clone(), dw, db]
    }

    /// The forward, input-gradient and weight-gradient dispatches, and those of the
    /// weight and bias gradients together.
    #[allow(clippy::too_many_arguments)]
    fn gpu(
        &self,
        ctx: &GpuContext,
        [x, w, b, dy]: [&GpuBuffer; 4],
        [y, dx, dw, fused_dw, db]: [&GpuBuffer; 5],
        accumulate: bool,
    ) -> gan_gpu::Result<[Vec<Dispatch>; 4]> {
        let bias = conv::BiasGrad { db, accumulate };
        Ok(match self {
            Layer::Conv(g) => [
                conv::conv2d_forward(ctx, g, x, w, Some(b), y, accumulate)?,
                conv::conv2d_backward_input(ctx, g, dy, w, dx, accumulate)?,
                conv::conv2d_backward_weight(ctx, g, x, dy, dw, accumulate)?,
                conv::conv2d_backward_weight_and_bias(ctx, g, x, dy, fused_dw, accumulate, bias)?,
            ],
            Layer::ConvT(g) => [
                conv::conv_transpose2d_forward(ctx, g, x, w, Some(b), y, accumulate)?,
                conv::conv_transpose2d_backward_input(ctx, g, dy, w, dx, accumulate)?,
                conv::conv_transpose2d_backward_weight(ctx, g, x, dy, dw, accumulate)?,
                conv::conv_transpose2d_backward_weight_and_bias(
                    ctx, g, x, dy, fused_dw, accumulate, bias,
                )?,
            ],
        })
    }
}

fn random(rng: &mut StdRng, n: usize) -> Vec<f32> {
    (0..n).map(|_| rng.random_range(-1.0..1.0)).collect()
}

/// (atol, rtol) for a sum of `k` products of numbers in [-1, 1]: the GPU adds in another
/// order than the CPU, and the absolute error of that grows like sqrt(k) times the size of
/// the terms, so atol starts at 1e-5 and scales with sqrt(k).
fn tolerance(k: usize) -> (f32, f32) {
    (1e-5 * (k.max(1) as f32).sqrt(), 1e-4)
}

/// Runs forward, input gradient and weight gradient of `layer`, and the weight and bias
/// gradients fused, on random data in one submission and compares each with the CPU. Outputs start as NaN, or as random values
/// that the kernels must add to when `accumulate`.
fn check(ctx: &GpuContext, layer: Layer, accumulate: bool, seed: u64) {
    let mut rng = StdRng::seed_from_u64(seed);
    let n = layer.lens();
    let (x, w, b, dy) = (
        random(&mut rng, n.x),
        random(&mut rng, n.w),
        random(&mut rng, n.b),
        random(&mut rng, n.y),
    );
    let mut want = layer.cpu(&x, &w, &b, &dy);
    let out_lens = [n.y, n.x, n.w, n.w, n.b];
    let outputs: Vec<GpuBuffer> = (0..5)
        .map(|i| {
            if accumulate {
                let base = random(&mut rng, out_lens[i]);
                want[i].iter_mut().zip(&base).for_each(|(v, b)| *v += b);
                ctx.upload("conv test output", &base)
            } else {
                ctx.nan_filled("conv test output", out_lens[i])
            }
        })
        .collect();
    let inputs = [&x, &w, &b, &dy].map(|v| ctx.upload("conv test input", v));
    let dispatches = layer
        .gpu(
            ctx,
            [&inputs[0], &inputs[1], &inputs[2], &inputs[3]],
            [
                &outputs[0],
                &outputs[1],
                &outputs[2],
                &outputs[3],
                &outputs[4],
            ],
            accumulate,
        )
        .unwrap_or_else(|e| panic!("{layer:?}: {e}"));
    let all: Vec<&Dispatch> = dispatches.iter().flatten().collect();
    ctx.run(&all, "conv parity").unwrap();
    let desc = format!("{layer:?} accumulate={accumulate}");
    let bias_k = n.y / n.b.max(1);
    let names = [
        "forward",
        "input grad",
        "weight grad",
        "weight grad with the bias",
        "bias grad",
    ];
    for (i, name) in names.into_iter().enumerate() {
        let got: Vec<f32> = ctx.read(&outputs[i], out_lens[i]).unwrap();
        let (atol, rtol) = tolerance([n.k[0], n.k[1], n.k[2], n.k[2], bias_k][i]);
        assert_close(name, &desc, &got, &want[i], atol, rtol);
    }
}

fn conv_geometry(
    (batch, in_h, in_w, in_c, out_c): (usize, usize, usize, usize, usize),
    (k_h, k_w, stride_h, stride_w): (usize, usize, usize, usize),
    [pad_top, pad_bottom, pad_left, pad_right]: [usize; 4],
) -> Conv2dGeometry {
    Conv2dGeometry {
        batch,
        in_h,
        in_w,
        in_c,
        out_c,
        k_h,
        k_w,
        stride_h,
        stride_w,
        pad_top,
        pad_bottom,
        pad_left,
        pad_right,
    }
}

/// Every distinct convolution of every model's training graph at `batch`, named by the
/// first node that uses it: taken from the models themselves, so a changed model is
/// tested at its new shapes.
fn gan_layers(batch: usize) -> Vec<(String, Layer)> {
    let mut layers: Vec<(String, Layer)> = Vec::new();
    for kind in MODELS {
        let model = kind.build(&ModelConfig::new(batch, 100)).unwrap();
        for node in &model.graph.nodes {
            let layer = match node.op {
                Op::Conv2d { geom, .. } => Layer::Conv(geom),
                Op::ConvTranspose2d { geom, .. } => Layer::ConvT(geom),
                _ => continue,
            };
            if !layers.iter().any(|(_, l)| *l == layer) {
                layers.push((format!("{}: {}", kind.name, node.name), layer));
            }
        }
    }
    layers
}

#[test]
fn conv2d_matches_cpu_on_awkward_shapes() {
    let Some(ctx) = test_context("conv2d parity") else {
        return;
    };
    let cases = [
        // 1x1 image, 1 channel; and 'same' padding around a 1x1 image
        conv_geometry((1, 1, 1, 1, 1), (1, 1, 1, 1), [0; 4]),
        Conv2dGeometry::same(2, 1, 1, 3, 7, 3, 3, 1, 1),
        // kernel bigger than the image, made valid by padding
        Conv2dGeometry::same(1, 2, 3, 3, 5, 5, 5, 1, 1),
        // strides 1, 2, 3; odd sizes with stride 2
        Conv2dGeometry::valid(3, 9, 11, 3, 7, 3, 3, 1, 1),
        Conv2dGeometry::valid(2, 9, 7, 7, 17, 3, 3, 2, 2),
        Conv2dGeometry::same(2, 9, 7, 17, 3, 4, 4, 2, 2),
        Conv2dGeometry::same(1, 10, 8, 4, 8, 5, 5, 3, 3),
        // unequal strides and paddings in H and W, pads larger than the stride
        conv_geometry((2, 8, 11, 3, 5), (3, 4, 1, 3), [2, 0, 1, 3]),
        conv_geometry((3, 13, 6, 8, 12), (5, 2, 3, 2), [4, 1, 0, 1]),
        conv_geometry((1, 7, 7, 32, 32), (4, 3, 2, 1), [0, 3, 2, 2]),
        // channels 1 and 32 through the vec4 paths; tiles that do not divide
        Conv2dGeometry::same(2, 6, 5, 32, 17, 3, 3, 1, 1),
        Conv2dGeometry::valid(1, 5, 5, 17, 32, 1, 1, 1, 1),
        Conv2dGeometry::same(3, 4, 4, 4, 4, 4, 4, 2, 2),
        // empty batch, and an empty image: outputs empty, weight gradient zero
        Conv2dGeometry::valid(0, 5, 5, 3, 4, 3, 3, 1, 1),
        conv_geometry((2, 0, 4, 3, 4), (3, 3, 1, 1), [0; 4]),
        // no input channels (y is the bias), no output channels (dx is zero)
        Conv2dGeometry::same(2, 3, 3, 0, 4, 3, 3, 1, 1),
        Conv2dGeometry::same(2, 3, 3, 4, 0, 3, 3, 1, 1),
    ];
    for (i, g) in cases.into_iter().enumerate() {
        check(&ctx, Layer::Conv(g), false, i as u64);
    }
}

#[test]
fn conv_transpose2d_matches_cpu_on_awkward_shapes() {
    let Some(ctx) = test_context("conv_transpose2d parity") else {
        return;
    };
    let same = ConvTranspose2dGeometry::keras_same;
    let valid = ConvTranspose2dGeometry::keras_valid;
    let mut cases = vec![
        same(1, 1, 1, 1, 1, 1, 1, 1, 1, None),
        valid(2, 1, 1, 3, 2, 5, 5, 2, 2, None),
        same(2, 3, 4, 7, 5, 3, 3, 2, 2, None),
        same(1, 5, 3, 4, 8, 4, 4, 2, 2, None),
        same(3, 4, 5, 17, 3, 5, 5, 3, 3, None),
        same(2, 3, 3, 8, 4, 4, 4, 3, 3, None),
        valid(2, 4, 3, 3, 7, 3, 3, 1, 1, None),
        // k < s: the last s - k rows and columns hold only the bias
        valid(2, 3, 4, 5, 4, 2, 2, 3, 3, None),
        valid(1, 4, 4, 4, 4, 1, 1, 2, 2, None),
        // unequal strides and kernels in H and W, output padding
        same(2, 5, 4, 3, 6, 5, 3, 2, 3, Some((1, 2))),
        valid(1, 3, 5, 32, 17, 4, 2, 3, 1, Some((2, 0))),
        // channels that exercise the scalar and vec4 paths and partial tiles
        same(2, 4, 4, 32, 1, 5, 5, 2, 2, None),
        same(1, 3, 3, 1, 32, 3, 3, 2, 2, None),
        // empty batch
        same(0, 3, 3, 4, 4, 3, 3, 2, 2, None),
    ];
    // An arbitrary crop and an output larger than the full result.
    cases.push(ConvTranspose2dGeometry {
        crop_top: 3,
        crop_left: 0,
        out_h: 6,
        out_w: 12,
        ..valid(2, 3, 4, 5, 6, 3, 2, 2, 2, None)
    });
    for (i, g) in cases.into_iter().enumerate() {
        check(&ctx, Layer::ConvT(g), false, 100 + i as u64);
    }
}

#[test]
fn accumulate_adds_to_the_outputs() {
    let Some(ctx) = test_context("conv accumulate") else {
        return;
    };
    check(
        &ctx,
        Layer::Conv(Conv2dGeometry::same(2, 7, 6, 4, 5, 3, 3, 2, 2)),
        true,
        7,
    );
    check(
        &ctx,
        Layer::Conv(Conv2dGeometry::valid(2, 5, 5, 3, 8, 3, 3, 1, 1)),
        true,
        8,
    );
    let gt = ConvTranspose2dGeometry::keras_same(2, 4, 3, 8, 3, 5, 5, 2, 2, None);
    check(&ctx, Layer::ConvT(gt), true, 9);
    // The GAN's convT2 at batch 40 splits the weight gradient, so the accumulation
    // happens in the reduction pass.
    let (_, gan) = gan_layers(40)
        .into_iter()
        .find(|(_, l)| matches!(l, Layer::ConvT(g) if g.out_c == 1))
        .expect("a transposed convolution to one channel");
    check(&ctx, gan, true, 10);
}

/// The fused weight and bias gradients, accumulating, submitted twice: each run adds its
/// gradients once more (the partial sums of one run must not leak into the next), with
/// one slice and with several.
#[test]
fn fused_bias_gradients_accumulate_once_per_run() {
    let Some(ctx) = test_context("conv fused bias accumulate") else {
        return;
    };
    let same = ConvTranspose2dGeometry::keras_same;
    // One quad row (out_h 1, at most 4 images) is one slice.
    let cases = [
        Layer::Conv(Conv2dGeometry::valid(3, 3, 5, 4, 8, 3, 3, 1, 1)),
        Layer::Conv(Conv2dGeometry::valid(61, 29, 29, 3, 5, 3, 3, 1, 1)),
        Layer::ConvT(same(2, 1, 3, 8, 3, 3, 3, 2, 2, None)),
        Layer::ConvT(same(23, 7, 7, 8, 1, 5, 5, 2, 2, None)),
    ];
    for (i, layer) in cases.into_iter().enumerate() {
        let mut rng = StdRng::seed_from_u64(500 + i as u64);
        let n = layer.lens();
        let [x, w, b, dy] = [n.x, n.w, n.b, n.y].map(|len| random(&mut rng, len));
        let [.., dw, db] = layer.cpu(&x, &w, &b, &dy);
        let (dw_base, db_base) = (random(&mut rng, n.w), random(&mut rng, n.b));
        let inputs = [&x, &w, &b, &dy].map(|v| ctx.upload("conv test input", v));
        let (dw_out, db_out) = (ctx.upload("dw", &dw_base), ctx.upload("db", &db_base));
        let scratch = [n.y, n.x, n.w].map(|len| ctx.storage("unused output", len as u64 * 4));
        let dispatches = layer
            .gpu(
                &ctx,
                [&inputs[0], &inputs[1], &inputs[2], &inputs[3]],
                [&scratch[0], &scratch[1], &scratch[2], &dw_out, &db_out],
                true,
            )
            .unwrap();
        let fused: Vec<&Dispatch> = dispatches[3].iter().collect();
        for _ in 0..2 {
            ctx.run(&fused, "fused bias accumulate").unwrap();
        }
        let twice = |base: &[f32], grad: &[f32]| -> Vec<f32> {
            base.iter().zip(grad).map(|(a, g)| a + 2.0 * g).collect()
        };
        let desc = format!("{layer:?}");
        let (atol, rtol) = tolerance(n.k[2]);
        let got = ctx.read(&dw_out, n.w).unwrap();
        assert_close(
            "weight grad, two runs",
            &desc,
            &got,
            &twice(&dw_base, &dw),
            atol,
            rtol,
        );
        let (atol, rtol) = tolerance(n.y / n.b.max(1));
        let got = ctx.read(&db_out, n.b).unwrap();
        assert_close(
            "bias grad, two runs",
            &desc,
            &got,
            &twice(&db_base, &db),
            atol,
            rtol,
        );
    }
}

/// Weight gradients split into many slices, summed by 1, 2 and 16 lanes per weight
/// under the real-GPU settings (one under the software ones), at weight counts that do
/// not fill the reduction's workgroups, overwriting and accumulating.
#[test]
fn many_slice_weight_gradients_match_cpu() {
    let Some(ctx) = test_context("conv wide slice reduction") else {
        return;
    };
    let cases = [
        // 432 quad rows, 135 weights: 16 lanes.
        Conv2dGeometry::valid(61, 29, 29, 3, 5, 3, 3, 1, 1),
        // 55 quad rows: 2 lanes.
        Conv2dGeometry::valid(20, 13, 13, 2, 3, 3, 3, 1, 1),
        // 27 quad rows: 1 lane.
        Conv2dGeometry::valid(9, 11, 11, 2, 7, 3, 3, 1, 1),
    ];
    for (i, g) in cases.into_iter().enumerate() {
        check(&ctx, Layer::Conv(g), i % 2 == 1, 400 + i as u64);
        check(&ctx, Layer::Conv(g), i % 2 == 0, 410 + i as u64);
    }
}

#[test]
fn gan_layers_match_cpu_at_batch_2() {
    let Some(ctx) = test_context("conv GAN layers") else {
        return;
    };
    for (i, (_, layer)) in gan_layers(2).into_iter().enumerate() {
        check(&ctx, layer, false, 200 + i as u64);
    }
}

/// At the batch training runs, not a smaller one: the weight gradients' split into
/// slices (10-350 of them under the real-GPU settings, 1-55 under the software ones) and
/// every grid follow the batch, so only batch 100 runs the very plans `train` runs. The
/// other tests here stay small for CI.
#[test]
fn gan_layers_match_cpu_at_batch_100() {
    let Some(ctx) = test_context("conv GAN layers batch 100") else {
        return;
    };
    for (i, (_, layer)) in gan_layers(100).into_iter().enumerate() {
        check(&ctx, layer, false, 300 + i as u64);
    }
}

#[test]
fn kernel_bigger_than_unpadded_input_is_a_shape_error() {
    let Some(ctx) = test_context("conv kernel bigger than input") else {
        return;
    };
    // Keras refuses a 'valid' conv whose kernel exceeds the image; so do the CPU and GPU.
    let g = Conv2dGeometry::valid(1, 2, 3, 1, 1, 3, 3, 1, 1);
    assert!(cpu::conv2d_forward(&g, &[0.0; 6], &[0.0; 9], &[0.0]).is_err());
    let buf = ctx.upload("conv tiny", &[0.0f32; 16]);
    let err = conv::conv2d_forward(&ctx, &g, &buf, &buf, None, &buf, false);
    assert!(matches!(err, Err(gan_gpu::Error::Shape { .. })));
    assert!(conv::conv2d_backward_input(&ctx, &g, &buf, &buf, &buf, false).is_err());
    assert!(conv::conv2d_backward_weight(&ctx, &g, &buf, &buf, &buf, false).is_err());
}

#[test]
fn short_buffers_are_shape_errors() {
    let Some(ctx) = test_context("conv short buffers") else {
        return;
    };
    let g = Conv2dGeometry::valid(2, 5, 5, 3, 4, 3, 3, 1, 1);
    let short = ctx.upload("conv short", &[0.0f32; 10]);
    let x = ctx.upload("conv x", &vec![0.0f32; g.input_len()]);
    let w = ctx.upload("conv w", &vec![0.0f32; g.weight_len()]);
    match conv::conv2d_forward(&ctx, &g, &x, &w, None, &short, false) {
        Err(gan_gpu::Error::Shape { op, message }) => {
            assert_eq!(op, "conv2d_forward");
            assert!(message.contains("output"), "{message}");
        }
        other => panic!("expected a shape error, got {:?}", other.map(|d| d.len())),
    }
    assert!(conv::conv2d_forward(&ctx, &g, &x, &w, Some(&short), &x, false).is_ok());
    let tiny_bias = ctx.upload("conv bias", &[0.0f32; 2]);
    assert!(conv::conv2d_forward(&ctx, &g, &x, &w, Some(&tiny_bias), &x, false).is_err());
}

/// dw[a, c, 0, o] for a 1-channel conv, summed directly (the CPU reference's im2col of
/// this shape would take 300 MB).
fn weight_grad_direct(g: &Conv2dGeometry, x: &[f32], dy: &[f32]) -> Vec<f32> {
    let (oh, ow) = (g.out_h(), g.out_w());
    let mut dw = vec![0.0f64; g.weight_len()];
    for b in 0..g.batch {
        for oy in 0..oh {
            for ox in 0..ow {
                let d = &dy[((b * oh + oy) * ow + ox) * g.out_c..][..g.out_c];
                for a in 0..g.k_h {
                    for c in 0..g.k_w {
                        let xv =
                            x[(b * g.in_h + oy * g.stride_h + a) * g.in_w + ox * g.stride_w + c];
                        let row = &mut dw[(a * g.k_w + c) * g.out_c..][..g.out_c];
                        row.iter_mut()
                            .zip(d)
                            .for_each(|(r, &d)| *r += (xv * d) as f64);
                    }
                }
            }
        }
    }
    dw.into_iter().map(|v| v as f32).collect()
}

#[test]
fn long_weight_grad_reductions_stay_under_the_software_loop_limit() {
    let Some(ctx) = test_context("conv loop limit") else {
        return;
    };
    // 1056 weight rows fill the device without splitting, but one invocation would run
    // 2 x 40001 loop iterations over the 2 x 40000 output pixels, more than llvmpipe
    // allows (65535), so the reduction must still be split.
    let g = Conv2dGeometry::valid(1, 34, 40031, 1, 4, 33, 32, 1, 1);
    let mut rng = StdRng::seed_from_u64(5);
    let (x, dy) = (
        random(&mut rng, g.input_len()),
        random(&mut rng, g.output_len()),
    );
    let want = weight_grad_direct(&g, &x, &dy);
    let (xb, dyb) = (ctx.upload("loop x", &x), ctx.upload("loop dy", &dy));
    let dw = ctx.nan_filled("loop dw", g.weight_len());
    let d = conv::conv2d_backward_weight(&ctx, &g, &xb, &dyb, &dw, false).unwrap();
    ctx.run(&d.iter().collect::<Vec<_>>(), "conv loop limit")
        .unwrap();
    let got: Vec<f32> = ctx.read(&dw, g.weight_len()).unwrap();
    let (atol, rtol) = tolerance(g.out_h() * g.out_w());
    assert_close("weight grad", &format!("{g:?}"), &got, &want, atol, rtol);

    // A single output row longer than the limit cannot be split on llvmpipe.
    let g = Conv2dGeometry::valid(1, 1, 70_000, 1, 4, 1, 1, 1, 1);
    let x = ctx.upload("wide x", &vec![0.0f32; g.input_len()]);
    let dy = ctx.upload("wide dy", &vec![0.0f32; g.output_len()]);
    let dw = ctx.storage("wide dw", 16);
    let result = conv::conv2d_backward_weight(&ctx, &g, &x, &dy, &dw, false);
    assert_eq!(
        result.is_err(),
        ctx.loop_limit().is_some(),
        "{:?}",
        result.map(|d| d.len())
    );
}

/// The golden case's tensors, checked at the README's tolerance (abs 1e-4 + rel 1e-4).
fn check_golden(ctx: &GpuContext, name: &str, layer: Layer) {
    let case = golden::Case::load(name);
    let [x, w, b, dy] = ["x", "w", "b", "dy"].map(|t| case.tensor(t).data);
    let n = layer.lens();
    let outputs = [n.y, n.x, n.w, n.w, n.b].map(|len| ctx.nan_filled("conv golden output", len));
    let inputs = [&x, &w, &b, &dy].map(|v| ctx.upload("conv golden input", v));
    let dispatches = layer
        .gpu(
            ctx,
            [&inputs[0], &inputs[1], &inputs[2], &inputs[3]],
            [
                &outputs[0],
                &outputs[1],
                &outputs[2],
                &outputs[3],
                &outputs[4],
            ],
            false,
        )
        .unwrap();
    let all: Vec<&Dispatch> = dispatches.iter().flatten().collect();
    ctx.run(&all, "conv golden").unwrap();
    // The weight gradient twice: alone, and computed with the bias gradient.
    for (i, tensor) in ["y", "dx", "dw", "dw"].into_iter().enumerate() {
        let want = case.tensor(tensor).data;
        let got: Vec<f32> = ctx.read(&outputs[i], want.len()).unwrap();
        assert_close(tensor, name, &got, &want, 1e-4, 1e-4);
    }
}

#[test]
fn gan_layers_match_tf_keras_golden_vectors() {
    let Some(ctx) = test_context("conv golden") else {
        return;
    };
    let cases = [
        "conv_28to13_k3s2_valid_1to32",
        "conv_13to6_k3s2_valid_32to64",
    ]
    .into_iter()
    .chain([
        "convT_7to14_k5s2_same_128to64",
        "convT_14to28_k5s2_same_64to1",
    ]);
    // Each golden case was computed by TF-Keras for one of the seed model's layers at
    // batch 2: find that layer among the models' own.
    let layers = gan_layers(2);
    for name in cases {
        let case = golden::Case::load(name);
        let len = |t: &str| case.tensor(t).data.len();
        let transposed = name.starts_with("convT");
        let (_, layer) = layers
            .iter()
            .find(|(_, l)| {
                let n = l.lens();
                matches!(l, Layer::ConvT(_)) == transposed
                    && (n.x, n.w, n.y) == (len("x"), len("w"), len("y"))
            })
            .unwrap_or_else(|| panic!("no model layer has the shapes of golden case {name}"));
        check_golden(&ctx, name, *layer);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(16))]

    #[test]
    fn random_small_geometries_match_cpu(
        batch in 0usize..3, h in 1usize..9, w in 1usize..9, cin in 1usize..10,
        cout in 1usize..10, k_h in 1usize..6, k_w in 1usize..6, s_h in 1usize..4,
        s_w in 1usize..4, transposed in any::<bool>(), same in any::<bool>(),
        accumulate in any::<bool>(), seed in any::<u64>(),
    ) {
        let Some(ctx) = test_context("conv proptest") else {
            return Ok(());
        };
        let layer = match (transposed, same) {
            (true, true) => Layer::ConvT(ConvTranspose2dGeometry::keras_same(
                batch, h, w, cin, cout, k_h, k_w, s_h, s_w, None)),
            (true, false) => Layer::ConvT(ConvTranspose2dGeometry::keras_valid(
                batch, h, w, cin, cout, k_h, k_w, s_h, s_w, None)),
            (false, true) => Layer::Conv(Conv2dGeometry::same(
                batch, h, w, cin, cout, k_h, k_w, s_h, s_w)),
            (false, false) => Layer::Conv(Conv2dGeometry::valid(
                batch, h.max(k_h), w.max(k_w), cin, cout, k_h, k_w, s_h, s_w)),
        };
        check(&ctx, layer, accumulate, seed);
    }
}

/// Median wall time of `dispatches` over `runs` submissions after one warm-up (which
/// includes llvmpipe's shader compile), each waited for before the clock stops.
fn median_seconds(ctx: &GpuContext, dispatches: &[&Dispatch], runs: usize) -> f64 {
    ctx.run(dispatches, "conv bench warm-up").unwrap();
    ctx.wait("conv bench warm-up").unwrap();
    let mut times: Vec<f64> = (0..runs)
        .map(|_| {
            let start = Instant::now();
            ctx.run(dispatches, "conv bench").unwrap();
            ctx.wait("conv bench").unwrap();
            start.elapsed().as_secs_f64()
        })
        .collect();
    times.sort_by(f64::total_cmp);
    times[runs / 2]
}

/// Informational, never asserted: GFLOP/s of each GAN layer and direction at batch 100,
/// and of the WGSL GEMM at 512^3 for scale. FLOPs count a multiply-add as 2:
/// 2·batch·out_h·out_w·out_c·k_h·k_w·in_c for conv2d, 2·batch·in_h·in_w·in_c·k_h·k_w·out_c
/// for convT, the same count for each gradient, 2·m·n·k for the GEMM. Run with
/// `--nocapture` to see it.
#[test]
fn gan_layer_throughput() {
    let Some(ctx) = test_context("conv throughput") else {
        return;
    };
    const RUNS: usize = 5;
    eprintln!(
        "conv throughput on {} (median of {RUNS} runs)",
        ctx.describe()
    );
    let mut rng = StdRng::seed_from_u64(1);
    let size = 512;
    let shape = GemmShape {
        m: size,
        n: size,
        k: size,
        trans_a: false,
        trans_b: false,
        accumulate: false,
    };
    let [a, b] = [0, 1].map(|_| ctx.upload("bench gemm", &random(&mut rng, size * size)));
    let c = ctx.storage("bench gemm out", (size * size * 4) as u64);
    let d = gemm::gemm(&ctx, &shape, &a, &b, None, &c, GemmVariant::Auto).unwrap();
    let t = median_seconds(&ctx, &[&d], RUNS);
    eprintln!(
        "{:30} {:7.2} GFLOP/s ({:6.1} ms)",
        "gemm 512^3 (Auto)",
        gemm_flops(&shape) / t / 1e9,
        t * 1e3
    );
    for (name, layer) in gan_layers(100) {
        let flops = match layer {
            Layer::Conv(g) => g.flops(),
            Layer::ConvT(g) => g.flops(),
        } as f64;
        let n = layer.lens();
        let inputs = [n.x, n.w, n.b, n.y].map(|len| ctx.upload("bench in", &random(&mut rng, len)));
        let outputs = [n.y, n.x, n.w, n.w, n.b].map(|len| ctx.storage("bench out", len as u64 * 4));
        let dispatches = layer
            .gpu(
                &ctx,
                [&inputs[0], &inputs[1], &inputs[2], &inputs[3]],
                [
                    &outputs[0],
                    &outputs[1],
                    &outputs[2],
                    &outputs[3],
                    &outputs[4],
                ],
                false,
            )
            .unwrap();
        let rates: Vec<String> = dispatches
            .iter()
            .map(|d| {
                let t = median_seconds(&ctx, &d.iter().collect::<Vec<_>>(), RUNS);
                format!("{:6.2} GFLOP/s ({:6.1} ms)", flops / t / 1e9, t * 1e3)
            })
            .collect();
        eprintln!(
            "{name:30} forward {} | input grad {} | weight grad {} | with bias {}",
            rates[0], rates[1], rates[2], rates[3]
        );
    }
}

/// A fused activation writes exactly what the separate pass would: the layer's output is
/// the unfused kernel's, bit for bit, and the activation output is the element-wise
/// kernel's on it, bit for bit, for every activation and every forward entry point (vec4,
/// scalar-x, scalar, narrow; tiles that do not divide).
#[test]
fn fused_activations_match_the_separate_pass() {
    let Some(ctx) = test_context("fused activation parity") else {
        return;
    };
    let same = ConvTranspose2dGeometry::keras_same;
    let layers = [
        Layer::Conv(Conv2dGeometry::same(2, 6, 5, 32, 17, 3, 3, 1, 1)),
        Layer::Conv(Conv2dGeometry::valid(2, 9, 7, 7, 17, 3, 3, 2, 2)),
        Layer::Conv(Conv2dGeometry::valid(3, 9, 9, 1, 32, 3, 3, 2, 2)),
        Layer::Conv(Conv2dGeometry::valid(2, 7, 5, 8, 12, 3, 3, 2, 2)),
        Layer::ConvT(same(2, 3, 4, 12, 8, 5, 5, 2, 2, None)),
        Layer::ConvT(same(2, 4, 4, 32, 1, 5, 5, 2, 2, None)),
        Layer::ConvT(same(3, 4, 5, 17, 3, 5, 5, 3, 3, None)),
        Layer::ConvT(same(2, 3, 3, 4, 7, 3, 3, 2, 2, None)),
        Layer::ConvT(same(0, 3, 3, 4, 4, 3, 3, 2, 2, None)),
    ];
    let acts = [
        cpu::Activation::Relu,
        cpu::Activation::LeakyRelu(0.2),
        cpu::Activation::Tanh,
        cpu::Activation::Sigmoid,
    ];
    for (i, layer) in layers.into_iter().enumerate() {
        let mut rng = StdRng::seed_from_u64(500 + i as u64);
        let n = layer.lens();
        // Scaled so that tanh and sigmoid see their saturated ends too.
        let scaled = |rng: &mut StdRng, len| random(rng, len).iter().map(|v| 4.0 * v).collect();
        let (x, w, b): (Vec<f32>, Vec<f32>, Vec<f32>) = (
            scaled(&mut rng, n.x),
            random(&mut rng, n.w),
            random(&mut rng, n.b),
        );
        let [x, w, b] = [&x, &w, &b].map(|v| ctx.upload("fused test input", v));
        for act in acts {
            let [y, fused_y, fused_out, separate_out] =
                [(); 4].map(|_| ctx.nan_filled("fused test output", n.y));
            let e = conv::Epilogue {
                act,
                out: &fused_out,
                gradient: None,
            };
            let (mut dispatches, fused) = match layer {
                Layer::Conv(g) => (
                    conv::conv2d_forward(&ctx, &g, &x, &w, Some(&b), &y, false).unwrap(),
                    conv::conv2d_forward_activated(&ctx, &g, &x, &w, Some(&b), &fused_y, e),
                ),
                Layer::ConvT(g) => (
                    conv::conv_transpose2d_forward(&ctx, &g, &x, &w, Some(&b), &y, false).unwrap(),
                    conv::conv_transpose2d_forward_activated(
                        &ctx,
                        &g,
                        &x,
                        &w,
                        Some(&b),
                        &fused_y,
                        e,
                    ),
                ),
            };
            dispatches.extend(fused.unwrap());
            dispatches.push(
                gan_gpu::kernels::elementwise::activation_forward(
                    &ctx,
                    act,
                    &y,
                    &separate_out,
                    n.y,
                )
                .unwrap(),
            );
            let all: Vec<&Dispatch> = dispatches.iter().collect();
            ctx.run(&all, "fused activation parity").unwrap();
            let read = |buf: &GpuBuffer| ctx.read::<f32>(buf, n.y).unwrap();
            let bits = |v: Vec<f32>| v.iter().map(|f| f.to_bits()).collect::<Vec<_>>();
            let desc = format!("{layer:?} {act:?}");
            assert_eq!(bits(read(&fused_y)), bits(read(&y)), "{desc}: output");
            assert_eq!(
                bits(read(&fused_out)),
                bits(read(&separate_out)),
                "{desc}: activation"
            );
        }
    }
}

/// The input gradients with the gradient through the preceding activation fused write the
/// same bits as the input gradient followed by `elementwise::activation_backward`, into a
/// fresh output and adding to one.
#[test]
fn fused_activation_gradients_match_the_separate_pass() {
    let Some(ctx) = test_context("conv fused activation gradients") else {
        return;
    };
    let same = ConvTranspose2dGeometry::keras_same;
    let layers = [
        Layer::Conv(Conv2dGeometry::same(2, 6, 5, 32, 17, 3, 3, 1, 1)),
        Layer::Conv(Conv2dGeometry::valid(2, 9, 7, 7, 16, 3, 3, 2, 2)),
        Layer::Conv(Conv2dGeometry::valid(3, 9, 9, 1, 32, 3, 3, 2, 2)),
        Layer::Conv(Conv2dGeometry::valid(2, 7, 5, 8, 12, 3, 3, 2, 2)),
        Layer::ConvT(same(2, 3, 4, 12, 8, 5, 5, 2, 2, None)),
        Layer::ConvT(same(2, 4, 4, 32, 1, 5, 5, 2, 2, None)),
        Layer::ConvT(same(3, 4, 5, 17, 3, 5, 5, 3, 3, None)),
        Layer::ConvT(same(0, 3, 3, 4, 4, 3, 3, 2, 2, None)),
    ];
    let acts = [
        cpu::Activation::Relu,
        cpu::Activation::LeakyRelu(0.2),
        cpu::Activation::Tanh,
        cpu::Activation::Sigmoid,
    ];
    for (i, layer) in layers.into_iter().enumerate() {
        let mut rng = StdRng::seed_from_u64(600 + i as u64);
        let n = layer.lens();
        let (dy, w) = (random(&mut rng, n.y), random(&mut rng, n.w));
        // The activation before the layer: its input (scaled to reach the saturated ends
        // of tanh and sigmoid) and output, both the size of the layer's input.
        let act_in: Vec<f32> = random(&mut rng, n.x).iter().map(|v| 4.0 * v).collect();
        let [dy, w] = [&dy, &w].map(|v| ctx.upload("fused grad input", v));
        for act in acts {
            let act_out: Vec<f32> = act_in.iter().map(|&v| act.apply(v)).collect();
            let [act_in, act_out] = [&act_in, &act_out].map(|v| ctx.upload("saved", v));
            let saved = match act {
                cpu::Activation::Relu | cpu::Activation::LeakyRelu(_) => &act_in,
                _ => &act_out,
            };
            for accumulate in [false, true] {
                let base = random(&mut rng, n.x);
                let [dx, fused_dx] = [(); 2].map(|_| ctx.nan_filled("dx", n.x));
                let [fused_out, separate_out] = [(); 2].map(|_| ctx.upload("out", &base));
                let e = conv::Epilogue {
                    act,
                    out: &fused_out,
                    gradient: Some(conv::EpilogueGradient { saved, accumulate }),
                };
                let (mut dispatches, fused) = match layer {
                    Layer::Conv(g) => (
                        conv::conv2d_backward_input(&ctx, &g, &dy, &w, &dx, false).unwrap(),
                        conv::conv2d_backward_input_activated(
                            &ctx, &g, &dy, &w, &fused_dx, false, e,
                        ),
                    ),
                    Layer::ConvT(g) => (
                        conv::conv_transpose2d_backward_input(&ctx, &g, &dy, &w, &dx, false)
                            .unwrap(),
                        conv::conv_transpose2d_backward_input_activated(
                            &ctx, &g, &dy, &w, &fused_dx, false, e,
                        ),
                    ),
                };
                dispatches.extend(fused.unwrap());
                dispatches.push(
                    gan_gpu::kernels::elementwise::activation_backward(
                        &ctx,
                        act,
                        &act_in,
                        &act_out,
                        &dx,
                        &separate_out,
                        n.x,
                        accumulate,
                    )
                    .unwrap(),
                );
                let all: Vec<&Dispatch> = dispatches.iter().collect();
                ctx.run(&all, "fused activation gradient parity").unwrap();
                let read = |buf: &GpuBuffer| ctx.read::<f32>(buf, n.x).unwrap();
                let bits = |v: Vec<f32>| v.iter().map(|f| f.to_bits()).collect::<Vec<_>>();
                let desc = format!("{layer:?} {act:?} accumulate={accumulate}");
                assert_eq!(bits(read(&fused_dx)), bits(read(&dx)), "{desc}: input grad");
                assert_eq!(
                    bits(read(&fused_out)),
                    bits(read(&separate_out)),
                    "{desc}: activation grad"
                );
            }
        }
    }
}
