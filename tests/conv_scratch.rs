//! Temporary tuning harness (to be deleted).
use gan_gpu::geometry::{Conv2dGeometry, ConvTranspose2dGeometry};
use gan_gpu::gpu::Dispatch;
use gan_gpu::gpu::testing::test_context;
use gan_gpu::kernels::conv;
use std::time::Instant;

#[test]
#[ignore]
fn scratch() {
    let ctx = test_context("scratch").unwrap();
    let layers: Vec<usize> = std::env::var("L")
        .unwrap_or("0123".into())
        .chars()
        .map(|c| c as usize - '0' as usize)
        .collect();
    let dirs: Vec<usize> = std::env::var("D")
        .unwrap_or("012".into())
        .chars()
        .map(|c| c as usize - '0' as usize)
        .collect();
    let runs: usize = std::env::var("R").map(|s| s.parse().unwrap()).unwrap_or(5);
    let b = 100;
    for l in layers {
        let (lens, flops, name): ([usize; 4], f64, &str) = match l {
            0 => {
                let g = Conv2dGeometry::valid(b, 28, 28, 1, 32, 3, 3, 2, 2);
                (
                    [g.input_len(), g.weight_len(), g.output_len(), g.out_c],
                    g.flops() as f64,
                    "conv1",
                )
            }
            1 => {
                let g = Conv2dGeometry::valid(b, 13, 13, 32, 64, 3, 3, 2, 2);
                (
                    [g.input_len(), g.weight_len(), g.output_len(), g.out_c],
                    g.flops() as f64,
                    "conv2",
                )
            }
            2 => {
                let g = ConvTranspose2dGeometry::keras_same(b, 7, 7, 128, 64, 5, 5, 2, 2, None);
                (
                    [g.input_len(), g.weight_len(), g.output_len(), g.out_c],
                    g.flops() as f64,
                    "convT1",
                )
            }
            _ => {
                let g = ConvTranspose2dGeometry::keras_same(b, 14, 14, 64, 1, 5, 5, 2, 2, None);
                (
                    [g.input_len(), g.weight_len(), g.output_len(), g.out_c],
                    g.flops() as f64,
                    "convT2",
                )
            }
        };
        let x = ctx.upload("x", &vec![0.5f32; lens[0]]);
        let w = ctx.upload("w", &vec![0.25f32; lens[1]]);
        let y = ctx.upload("y", &vec![0.5f32; lens[2]]);
        let bias = ctx.upload("b", &vec![0.5f32; lens[3]]);
        let dx = ctx.storage("dx", lens[0] as u64 * 4);
        let yo = ctx.storage("yo", lens[2] as u64 * 4);
        let dw = ctx.storage("dw", lens[1] as u64 * 4);
        for &d in &dirs {
            let ds: Vec<Dispatch> = match (l, d) {
                (0, 0) | (1, 0) => {
                    let g = if l == 0 {
                        Conv2dGeometry::valid(b, 28, 28, 1, 32, 3, 3, 2, 2)
                    } else {
                        Conv2dGeometry::valid(b, 13, 13, 32, 64, 3, 3, 2, 2)
                    };
                    conv::conv2d_forward(&ctx, &g, &x, &w, Some(&bias), &yo, false).unwrap()
                }
                (0, 1) | (1, 1) => {
                    let g = if l == 0 {
                        Conv2dGeometry::valid(b, 28, 28, 1, 32, 3, 3, 2, 2)
                    } else {
                        Conv2dGeometry::valid(b, 13, 13, 32, 64, 3, 3, 2, 2)
                    };
                    conv::conv2d_backward_input(&ctx, &g, &y, &w, &dx, false).unwrap()
                }
                (0, 2) | (1, 2) => {
                    let g = if l == 0 {
                        Conv2dGeometry::valid(b, 28, 28, 1, 32, 3, 3, 2, 2)
                    } else {
                        Conv2dGeometry::valid(b, 13, 13, 32, 64, 3, 3, 2, 2)
                    };
                    conv::conv2d_backward_weight(&ctx, &g, &x, &y, &dw, false).unwrap()
                }
                (_, d) => {
                    let g = if l == 2 {
                        ConvTranspose2dGeometry::keras_same(b, 7, 7, 128, 64, 5, 5, 2, 2, None)
                    } else {
                        ConvTranspose2dGeometry::keras_same(b, 14, 14, 64, 1, 5, 5, 2, 2, None)
                    };
                    match d {
                        0 => conv::conv_transpose2d_forward(
                            &ctx,
                            &g,
                            &x,
                            &w,
                            Some(&bias),
                            &yo,
                            false,
                        )
                        .unwrap(),
                        1 => conv::conv_transpose2d_backward_input(&ctx, &g, &y, &w, &dx, false)
                            .unwrap(),
                        _ => conv::conv_transpose2d_backward_weight(&ctx, &g, &x, &y, &dw, false)
                            .unwrap(),
                    }
                }
            };
            let all: Vec<&Dispatch> = ds.iter().collect();
            let t0 = Instant::now();
            ctx.run(&all, "w").unwrap();
            ctx.wait("w").unwrap();
            let first = t0.elapsed().as_secs_f64();
            let mut ts: Vec<f64> = (0..runs)
                .map(|_| {
                    let t = Instant::now();
                    ctx.run(&all, "r").unwrap();
                    ctx.wait("r").unwrap();
                    t.elapsed().as_secs_f64()
                })
                .collect();
            ts.sort_by(f64::total_cmp);
            let t = ts[runs / 2];
            eprintln!(
                "{name:7} dir {d}: {:6.2} GFLOP/s {:8.1} ms  (first {:.2} s, min {:.1} ms)",
                flops / t / 1e9,
                t * 1e3,
                first,
                ts[0] * 1e3
            );
        }
    }
}
