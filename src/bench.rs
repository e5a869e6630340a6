//! `gan-gpu bench`: every kernel at the GAN's real shapes (batch 100) and square GEMMs,
//! on the wgpu adapter and on the CPU reference, plus one whole training iteration.
//!
//! FLOPs count a multiply-add as 2: GEMM 2·m·n·k; convolutions 2·(output pixels)·cout·
//! kh·kw·cin (conv2d) or 2·(input pixels)·cin·kh·kw·cout (transposed), and each gradient
//! the same as its forward. Element-wise kernels report GB/s of the bytes they must
//! read and write. GPU times are the median over samples after a warm-up, measured with
//! timestamp queries where the adapter has them, else the wall clock with a device wait.

use std::sync::Arc;
use std::time::Instant;

use rand::{RngExt, SeedableRng, rngs::StdRng};
use serde::Serialize;

use crate::cpu::{self, Activation, AdamConfig};
use crate::error::Result;
use crate::geometry::{Conv2dGeometry, ConvTranspose2dGeometry};
use crate::gpu::timer::median;
use crate::gpu::{Dispatch, GpuContext};
use crate::graph::cpu_exec::CpuExecutor;
use crate::graph::gpu_exec::GpuExecutor;
use crate::graph::{Buf, Dataset, Executor, RandomStreams};
use crate::kernels::adam::{AdamStep, adam_update};
use crate::kernels::bce::{BceOptions, Labels, bce_with_logits};
use crate::kernels::gemm::{GemmShape, GemmVariant};
use crate::kernels::noise::{NoiseKind, noise};
use crate::kernels::softmax_ce::{SoftmaxCeOptions, softmax_cross_entropy};
use crate::kernels::{conv, elementwise, gather, gemm};
use crate::model::gan::{Gan, PIXELS};

/// The amount of work in one call.
#[derive(Debug, Clone, Copy)]
enum Work {
    Flops(f64),
    Bytes(f64),
}

#[derive(Debug, Clone, Serialize)]
pub struct BenchRow {
    pub kernel: String,
    pub shape: String,
    pub executor: &'static str,
    pub adapter: String,
    pub median_ms: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gflops: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gbps: Option<f64>,
    /// Training step only: images per second and GFLOP/s as a fraction of this
    /// executor's GEMM 512³ rate in the same run.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub images_per_s: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fraction_of_gemm512: Option<f64>,
    /// CPU rows with GFLOP/s: the rate as a fraction of the fp32 FMA peak measured in the same
    /// run on the executor's threads (the `fp32 FMA peak` row).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fraction_of_peak: Option<f64>,
}

pub struct BenchOptions {
    /// Fewer samples and no 1024³ GEMM: a smoke run.
    pub quick: bool,
    pub gpu: bool,
    pub cpu: bool,
}

/// Builds the GPU dispatches of one call, over buffers of seeded random data.
type GpuCall = Box<dyn Fn(&GpuContext) -> Result<Vec<Dispatch>>>;

struct Case {
    kernel: &'static str,
    shape: String,
    work: Work,
    gpu: GpuCall,
    /// The CPU reference doing the same call.
    cpu: Box<dyn FnMut() -> Result<()>>,
}

fn random(n: usize, seed: u64) -> Vec<f32> {
    let mut rng = StdRng::seed_from_u64(seed);
    (0..n).map(|_| rng.random_range(-1.0..1.0)).collect()
}

fn gemm_case(kernel: &'static str, shape: GemmShape, with_bias: bool) -> Case {
    let GemmShape {
        m,
        n,
        k,
        trans_a,
        trans_b,
        ..
    } = shape;
    let (a, b) = (random(m * k, 1), random(k * n, 2));
    let bias = random(n, 3);
    let (a2, b2) = (a.clone(), b.clone());
    let mut c = vec![0.0; m * n];
    let t = |x: bool| if x { "T" } else { "N" };
    Case {
        kernel,
        shape: format!("{m}x{n}x{k} {}{}", t(trans_a), t(trans_b)),
        work: Work::Flops(2.0 * (m * n * k) as f64),
        gpu: Box::new(move |ctx| {
            let (ab, bb, cb) = (
                ctx.upload("a", &a),
                ctx.upload("b", &b),
                ctx.storage("c", (m * n * 4) as u64),
            );
            let biasb = ctx.upload("bias", &bias);
            Ok(vec![gemm::gemm(
                ctx,
                &shape,
                &ab,
                &bb,
                with_bias.then_some(&biasb),
                &cb,
                GemmVariant::Auto,
            )?])
        }),
        cpu: Box::new(move || cpu::gemm(m, n, k, &a2, trans_a, &b2, trans_b, &mut c, false)),
    }
}

fn nn(m: usize, n: usize, k: usize) -> GemmShape {
    GemmShape {
        m,
        n,
        k,
        trans_a: false,
        trans_b: false,
        accumulate: false,
    }
}

fn conv_cases(name: &'static str, g: Conv2dGeometry) -> Vec<Case> {
    let (x, w, b) = (
        random(g.input_len(), 4),
        random(g.weight_len(), 5),
        random(g.out_c, 6),
    );
    let dy = random(g.output_len(), 7);
    let shape = format!(
        "{}x{}x{}x{} k{} s{} -> {}x{}",
        g.batch,
        g.in_h,
        g.in_w,
        g.in_c,
        g.k_h,
        g.stride_h,
        g.out_h(),
        g.out_c
    );
    let work = Work::Flops(g.flops() as f64);
    let up = move |ctx: &GpuContext, len: usize, data: &[f32]| {
        (
            ctx.upload("input", data),
            ctx.storage("output", (len * 4) as u64),
        )
    };
    let (x1, w1, b1, dy1) = (x.clone(), w.clone(), b.clone(), dy.clone());
    let (x2, w2, dy2) = (x.clone(), w.clone(), dy.clone());
    let (x3, w3, dy3) = (x.clone(), w.clone(), dy.clone());
    vec![
        Case {
            kernel: leak(format!("{name} forward")),
            shape: shape.clone(),
            work,
            gpu: Box::new(move |ctx| {
                let (xb, yb) = up(ctx, g.output_len(), &x);
                let (wb, bb) = (ctx.upload("w", &w), ctx.upload("b", &b));
                conv::conv2d_forward(ctx, &g, &xb, &wb, Some(&bb), &yb, false)
            }),
            cpu: into(g.output_len(), move |y, ws| {
                cpu::conv2d_forward_into(&g, &x1, &w1, &b1, y, None, ws)
            }),
        },
        Case {
            kernel: leak(format!("{name} input grad")),
            shape: shape.clone(),
            work,
            gpu: Box::new(move |ctx| {
                let (dyb, dxb) = up(ctx, g.input_len(), &dy1);
                conv::conv2d_backward_input(ctx, &g, &dyb, &ctx.upload("w", &w2), &dxb, false)
            }),
            cpu: into(g.input_len(), move |dx, ws| {
                cpu::conv2d_backward_input_into(&g, &dy2, &w3, dx, false, ws)
            }),
        },
        Case {
            kernel: leak(format!("{name} weight grad")),
            shape,
            work,
            gpu: Box::new(move |ctx| {
                let (xb, dwb) = up(ctx, g.weight_len(), &x2);
                conv::conv2d_backward_weight(ctx, &g, &xb, &ctx.upload("dy", &dy), &dwb, false)
            }),
            cpu: into(g.weight_len(), move |dw, ws| {
                cpu::conv2d_backward_weight_into(&g, &x3, &dy3, dw, false, ws)
            }),
        },
    ]
}

fn conv_transpose_cases(name: &'static str, g: ConvTranspose2dGeometry) -> Vec<Case> {
    let (x, w, b) = (
        random(g.input_len(), 4),
        random(g.weight_len(), 5),
        random(g.out_c, 6),
    );
    let dy = random(g.output_len(), 7);
    let shape = format!(
        "{}x{}x{}x{} k{} s{} -> {}x{}x{}",
        g.batch, g.in_h, g.in_w, g.in_c, g.k_h, g.stride_h, g.out_h, g.out_w, g.out_c
    );
    let work = Work::Flops(g.flops() as f64);
    let (x1, w1, b1, dy1) = (x.clone(), w.clone(), b.clone(), dy.clone());
    let (x2, w2, dy2) = (x.clone(), w.clone(), dy.clone());
    let (x3, w3, dy3) = (x.clone(), w.clone(), dy.clone());
    vec![
        Case {
            kernel: leak(format!("{name} forward")),
            shape: shape.clone(),
            work,
            gpu: Box::new(move |ctx| {
                let (xb, wb, bb) = (
                    ctx.upload("x", &x),
                    ctx.upload("w", &w),
                    ctx.upload("b", &b),
                );
                let yb = ctx.storage("y", (g.output_len() * 4) as u64);
                conv::conv_transpose2d_forward(ctx, &g, &xb, &wb, Some(&bb), &yb, false)
            }),
            cpu: into(g.output_len(), move |y, ws| {
                cpu::conv_transpose2d_forward_into(&g, &x1, &w1, &b1, y, None, ws)
            }),
        },
        Case {
            kernel: leak(format!("{name} input grad")),
            shape: shape.clone(),
            work,
            gpu: Box::new(move |ctx| {
                let (dyb, wb) = (ctx.upload("dy", &dy1), ctx.upload("w", &w2));
                let dxb = ctx.storage("dx", (g.input_len() * 4) as u64);
                conv::conv_transpose2d_backward_input(ctx, &g, &dyb, &wb, &dxb, false)
            }),
            cpu: into(g.input_len(), move |dx, ws| {
                cpu::conv_transpose2d_backward_input_into(&g, &dy2, &w3, dx, false, ws)
            }),
        },
        Case {
            kernel: leak(format!("{name} weight grad")),
            shape,
            work,
            gpu: Box::new(move |ctx| {
                let (xb, dyb) = (ctx.upload("x", &x2), ctx.upload("dy", &dy));
                let dwb = ctx.storage("dw", (g.weight_len() * 4) as u64);
                conv::conv_transpose2d_backward_weight(ctx, &g, &xb, &dyb, &dwb, false)
            }),
            cpu: into(g.weight_len(), move |dw, ws| {
                cpu::conv_transpose2d_backward_weight_into(&g, &x3, &dy3, dw, false, ws)
            }),
        },
    ]
}

/// A CPU call that writes into an output buffer (and conv scratch) made once, as the CPU
/// executor's ops do, so the timing holds no allocation or page faults.
fn into(
    len: usize,
    mut op: impl FnMut(&mut [f32], &mut cpu::Workspace) -> Result<()> + 'static,
) -> Box<dyn FnMut() -> Result<()>> {
    let (mut out, mut ws) = (vec![0.0; len], cpu::Workspace::default());
    Box::new(move || op(&mut out, &mut ws))
}

/// Kernel names live for the whole run; a handful of short strings.
fn leak(s: String) -> &'static str {
    Box::leak(s.into_boxed_str())
}

fn activation_cases(act: Activation, label: &'static str, len: usize, shape: &str) -> Vec<Case> {
    let x = random(len, 8);
    let y = cpu::activation_forward(act, &x);
    let dy = random(len, 9);
    let (x1, x2, x3, y2, dy2) = (x.clone(), x.clone(), x.clone(), y.clone(), dy.clone());
    vec![
        Case {
            kernel: leak(format!("{label} forward")),
            shape: shape.to_string(),
            work: Work::Bytes(8.0 * len as f64),
            gpu: Box::new(move |ctx| {
                let (xb, yb) = (ctx.upload("x", &x), ctx.storage("y", (len * 4) as u64));
                Ok(vec![elementwise::activation_forward(
                    ctx, act, &xb, &yb, len,
                )?])
            }),
            cpu: into(len, move |y, _| cpu::activation_forward_into(act, &x1, y)),
        },
        Case {
            kernel: leak(format!("{label} backward")),
            shape: shape.to_string(),
            work: Work::Bytes(12.0 * len as f64),
            gpu: Box::new(move |ctx| {
                let (xb, yb, dyb) = (
                    ctx.upload("x", &x2),
                    ctx.upload("y", &y),
                    ctx.upload("dy", &dy),
                );
                let dxb = ctx.storage("dx", (len * 4) as u64);
                Ok(vec![elementwise::activation_backward(
                    ctx, act, &xb, &yb, &dyb, &dxb, len, false,
                )?])
            }),
            cpu: into(len, move |dx, _| {
                cpu::activation_backward_into(act, &x3, &y2, &dy2, dx, false)
            }),
        },
    ]
}

fn cases(quick: bool) -> Vec<Case> {
    let batch = 100;
    let mut out = Vec::new();
    let squares: &[usize] = if quick {
        &[256, 512]
    } else {
        &[256, 512, 1024]
    };
    for &s in squares {
        out.push(gemm_case("gemm", nn(s, s, s), false));
    }
    out.push(gemm_case("G dense forward", nn(batch, 6272, 100), true));
    out.push(gemm_case(
        "G dense weight grad",
        GemmShape {
            trans_a: true,
            ..nn(100, 6272, batch)
        },
        false,
    ));
    out.push(gemm_case("D dense forward", nn(batch, 1, 2304), true));
    out.push(gemm_case(
        "D dense input grad",
        GemmShape {
            trans_b: true,
            ..nn(batch, 2304, 1)
        },
        false,
    ));
    out.push(gemm_case(
        "D dense weight grad",
        GemmShape {
            trans_a: true,
            ..nn(2304, 1, batch)
        },
        false,
    ));
    let (rows, cols) = (batch * 14 * 14, 64);
    let dy = random(rows * cols, 10);
    let dy2 = dy.clone();
    out.push(Case {
        kernel: "bias grad",
        shape: format!("{rows}x{cols}"),
        work: Work::Bytes(4.0 * (rows * cols) as f64),
        gpu: Box::new(move |ctx| {
            let (dyb, dbb) = (ctx.upload("dy", &dy), ctx.storage("db", (cols * 4) as u64));
            Ok(vec![gemm::bias_grad(ctx, &dyb, rows, cols, &dbb, false)?])
        }),
        cpu: into(cols, move |db, _| {
            cpu::bias_grad_into(&dy2, rows, cols, db, false)
        }),
    });
    out.extend(conv_cases(
        "D conv1",
        Conv2dGeometry::valid(batch, 28, 28, 1, 32, 3, 3, 2, 2),
    ));
    out.extend(conv_cases(
        "D conv2",
        Conv2dGeometry::valid(batch, 13, 13, 32, 64, 3, 3, 2, 2),
    ));
    out.extend(conv_transpose_cases(
        "G deconv1",
        ConvTranspose2dGeometry::keras_same(batch, 7, 7, 128, 64, 5, 5, 2, 2, None),
    ));
    out.extend(conv_transpose_cases(
        "G deconv2",
        ConvTranspose2dGeometry::keras_same(batch, 14, 14, 64, 1, 5, 5, 2, 2, None),
    ));
    out.extend(activation_cases(
        Activation::Relu,
        "relu",
        batch * 14 * 14 * 64,
        "100x14x14x64",
    ));
    out.extend(activation_cases(
        Activation::Tanh,
        "tanh",
        batch * PIXELS,
        "100x28x28x1",
    ));
    out.extend(activation_cases(
        Activation::Sigmoid,
        "sigmoid",
        batch * PIXELS,
        "100x28x28x1",
    ));
    out.extend(activation_cases(
        Activation::LeakyRelu(0.2),
        "leaky relu",
        batch * 14 * 14 * 64,
        "100x14x14x64",
    ));
    out.push(bce_case(batch));
    out.push(softmax_ce_case(128, 10));
    out.push(adam_case(
        100 * 6272 + 6272 + 5 * 5 * 64 * 128 + 64 + 5 * 5 * 64 + 1,
    ));
    out.push(noise_case(batch * 100));
    out.push(gather_case(batch));
    out
}

fn bce_case(batch: usize) -> Case {
    let logits = random(batch, 11);
    let l2 = logits.clone();
    Case {
        kernel: "bce with logits",
        shape: format!("{batch}x1"),
        work: Work::Bytes(8.0 * batch as f64),
        gpu: Box::new(move |ctx| {
            let lb = ctx.upload("logits", &logits);
            let (db, sb) = (
                ctx.storage("dlogits", (batch * 4) as u64),
                ctx.storage("stats", 8),
            );
            Ok(vec![bce_with_logits(
                ctx,
                &lb,
                Labels::Constant(1.0),
                batch,
                &db,
                &sb,
                BceOptions::default(),
            )?])
        }),
        cpu: Box::new(move || cpu::bce_with_logits(&l2, &vec![1.0; batch]).map(drop)),
    }
}

/// Reads logits and labels, writes dlogits and the two statistics.
fn softmax_ce_case(batch: usize, classes: usize) -> Case {
    let logits = random(batch * classes, 16);
    let labels: Vec<u32> = (0..batch).map(|i| (i * 7 % classes) as u32).collect();
    let (l2, labels2) = (logits.clone(), labels.clone());
    Case {
        kernel: "softmax ce",
        shape: format!("{batch}x{classes}"),
        work: Work::Bytes((8 * batch * classes + 4 * batch + 8) as f64),
        gpu: Box::new(move |ctx| {
            let (lb, yb) = (ctx.upload("logits", &logits), ctx.upload("labels", &labels));
            let (db, sb) = (
                ctx.storage("dlogits", (batch * classes * 4) as u64),
                ctx.storage("stats", 8),
            );
            Ok(vec![softmax_cross_entropy(
                ctx,
                &lb,
                &yb,
                batch,
                classes,
                &db,
                &sb,
                SoftmaxCeOptions::default(),
            )?])
        }),
        cpu: Box::new(move || cpu::softmax_cross_entropy(&l2, &labels2, classes).map(drop)),
    }
}

fn adam_case(len: usize) -> Case {
    let p = random(len, 12);
    let g = random(len, 13);
    let (mut p2, g2, mut m2, mut v2) = (p.clone(), g.clone(), vec![0.0; len], vec![0.0; len]);
    Case {
        kernel: "adam",
        shape: format!("{len} (generator)"),
        work: Work::Bytes(28.0 * len as f64),
        gpu: Box::new(move |ctx| {
            let step = AdamStep::new(ctx, AdamConfig::default())?;
            let (pb, gb) = (ctx.upload("p", &p), ctx.upload("g", &g));
            let (mb, vb) = (
                ctx.storage("m", (len * 4) as u64),
                ctx.storage("v", (len * 4) as u64),
            );
            Ok(vec![adam_update(ctx, &step, &pb, &gb, &mb, &vb, len)?])
        }),
        cpu: Box::new(move || {
            cpu::adam_step(&AdamConfig::default(), 1, &mut p2, &g2, &mut m2, &mut v2)
        }),
    }
}

fn noise_case(n: usize) -> Case {
    Case {
        kernel: "normal noise",
        shape: format!("{n}"),
        work: Work::Bytes(4.0 * n as f64),
        gpu: Box::new(move |ctx| {
            let out = ctx.storage("noise", (n * 4) as u64);
            Ok(vec![noise(ctx, NoiseKind::Normal, 1, 2, &out, n)?.0])
        }),
        cpu: Box::new(move || {
            cpu::normal_noise(1, 2, n);
            Ok(())
        }),
    }
}

fn gather_case(batch: usize) -> Case {
    let rows = 60_000;
    let mut rng = StdRng::seed_from_u64(14);
    let data: Vec<u8> = (0..rows * PIXELS).map(|_| rng.random()).collect();
    let indices: Vec<u32> = (0..batch)
        .map(|_| rng.random_range(0..rows as u32))
        .collect();
    let (data2, indices2) = (data.clone(), indices.clone());
    Case {
        kernel: "batch gather",
        shape: format!("{batch}x{PIXELS} of {rows}"),
        work: Work::Bytes(5.0 * (batch * PIXELS) as f64),
        gpu: Box::new(move |ctx| {
            let (db, ib) = (
                ctx.upload("dataset", &data),
                ctx.upload("indices", &indices),
            );
            let out = ctx.storage("batch", (batch * PIXELS * 4) as u64);
            Ok(vec![gather::gather_rows(
                ctx, &db, rows, PIXELS, &ib, batch, &out,
            )?])
        }),
        cpu: Box::new(move || {
            cpu::gather::gather_rows(&data2, PIXELS, &indices2);
            Ok(())
        }),
    }
}

fn time_cpu(f: &mut dyn FnMut() -> Result<()>, samples: usize) -> Result<f64> {
    f()?;
    let mut times = Vec::new();
    for _ in 0..samples {
        let start = Instant::now();
        f()?;
        times.push(start.elapsed().as_secs_f64() * 1e3);
    }
    Ok(median(&mut times))
}

fn row(
    kernel: &str,
    shape: &str,
    executor: &'static str,
    adapter: &str,
    ms: f64,
    work: Work,
) -> BenchRow {
    let per_s = |x: f64| x / (ms * 1e-3) / 1e9;
    BenchRow {
        kernel: kernel.to_string(),
        shape: shape.to_string(),
        executor,
        adapter: adapter.to_string(),
        median_ms: ms,
        gflops: match work {
            Work::Flops(f) => Some(per_s(f)),
            Work::Bytes(_) => None,
        },
        gbps: match work {
            Work::Bytes(b) => Some(per_s(b)),
            Work::Flops(_) => None,
        },
        images_per_s: None,
        fraction_of_gemm512: None,
        fraction_of_peak: None,
    }
}

/// Runs every case on the chosen executors; `progress` sees each finished row.
pub fn run(
    ctx: Option<&Arc<GpuContext>>,
    opts: &BenchOptions,
    progress: &mut dyn FnMut(&BenchRow),
) -> Result<Vec<BenchRow>> {
    let samples = if opts.quick { 2 } else { 7 };
    let mut rows = Vec::new();
    let cpu_name = CPU_NAME;
    // --- fraction of the CPU's fp32 peak (issue 12) ---
    let peak = opts.cpu.then(|| peak_row(cpu_name));
    if let Some(r) = &peak {
        progress(r);
        rows.push(r.clone());
    }
    let peak_gflops = peak.and_then(|r| r.gflops);
    let of_peak = |mut r: BenchRow| {
        r.fraction_of_peak = peak_gflops.zip(r.gflops).map(|(p, g)| g / p);
        r
    };
    // --- end fraction of peak ---
    for mut case in cases(opts.quick) {
        if let (Some(ctx), true) = (ctx, opts.gpu) {
            let dispatches = (case.gpu)(ctx)?;
            let refs: Vec<&Dispatch> = dispatches.iter().collect();
            let ms = ctx.time_dispatches(&refs, if opts.quick { 1 } else { 3 }, samples as u32)?;
            let r = row(
                case.kernel,
                &case.shape,
                "gpu",
                &ctx.info.name,
                ms,
                case.work,
            );
            progress(&r);
            rows.push(r);
        }
        if opts.cpu {
            let ms = time_cpu(&mut case.cpu, samples)?;
            let r = of_peak(row(
                case.kernel,
                &case.shape,
                "cpu",
                cpu_name,
                ms,
                case.work,
            ));
            progress(&r);
            rows.push(r);
        }
    }
    let steps = if opts.quick { 2 } else { 5 };
    if let (Some(ctx), true) = (ctx, opts.gpu) {
        let r = train_step_row(Some(ctx), steps, &rows)?;
        progress(&r);
        rows.push(r);
    }
    if opts.cpu {
        let r = of_peak(train_step_row(None, steps, &rows)?);
        progress(&r);
        rows.push(r);
    }
    Ok(rows)
}

/// The CPU executor's name in the rows.
const CPU_NAME: &str = "cpu reference (gemm crate)";

/// The fp32 FMA peak of the executor's threads (`cpu::peak`): the best of 20 short trials.
fn peak_row(cpu_name: &str) -> BenchRow {
    let p = cpu::peak::measure(20, 1_000_000);
    let shape = format!(
        "{} threads, {} (~{:.2} GHz)",
        p.threads,
        p.isa,
        p.implied_ghz_at_two_fma_per_cycle()
    );
    let work = Work::Flops(p.trial_flops);
    row("fp32 FMA peak", &shape, "cpu", cpu_name, p.trial_ms, work)
}

/// One whole training iteration at batch 100 on synthetic data.
fn train_step_row(
    ctx: Option<&Arc<GpuContext>>,
    steps: u64,
    rows: &[BenchRow],
) -> Result<BenchRow> {
    let batch = 100;
    let gan = Gan::new(batch, 100)?;
    let plan_instrs = gan.train_step()?;
    let flops: f64 = plan_instrs.iter().map(|i| i.flops()).sum();
    let mut rng = StdRng::seed_from_u64(15);
    let dataset = Arc::new(Dataset {
        bytes: (0..1000 * PIXELS).map(|_| rng.random()).collect(),
        rows: 1000,
        row_len: PIXELS,
        labels: None,
    });
    let adams = vec![AdamConfig::default(); 2];
    let streams = RandomStreams { seed: 1 };
    let (mut exec, executor, adapter): (Box<dyn Executor>, &'static str, String) = match ctx {
        Some(ctx) => (
            Box::new(GpuExecutor::new(
                Arc::clone(ctx),
                &gan.graph,
                adams,
                Some(dataset),
                streams,
            )?),
            "gpu",
            ctx.info.name.clone(),
        ),
        None => (
            Box::new(CpuExecutor::new(&gan.graph, adams, Some(dataset), streams)),
            "cpu",
            CPU_NAME.into(),
        ),
    };
    for (id, values) in gan.graph.init_params(&mut rng) {
        exec.write(Buf::Value(id), &values)?;
    }
    let plan = exec.compile(&plan_instrs)?;
    exec.run(plan, 0)?;
    exec.sync()?;
    let mut times = Vec::new();
    for it in 1..=steps {
        let start = Instant::now();
        exec.run(plan, it)?;
        exec.sync()?;
        times.push(start.elapsed().as_secs_f64() * 1e3);
    }
    let ms = median(&mut times);
    let mut r = row(
        "train_step",
        "batch 100, G+D forward/backward/Adam",
        executor,
        &adapter,
        ms,
        Work::Flops(flops),
    );
    r.images_per_s = Some(batch as f64 / (ms * 1e-3));
    let gemm512 = rows
        .iter()
        .find(|r| {
            r.kernel == "gemm" && r.executor == executor && r.shape.starts_with("512x512x512")
        })
        .and_then(|r| r.gflops);
    r.fraction_of_gemm512 = gemm512.zip(r.gflops).map(|(g, s)| s / g);
    Ok(r)
}

/// The table printed by `gan-gpu bench`.
pub fn render(rows: &[BenchRow]) -> String {
    let mut out = format!(
        "{:<24} {:<34} {:<4} {:>10} {:>10} {:>10}\n",
        "kernel", "shape", "exec", "median ms", "GFLOP/s", "GB/s"
    );
    for r in rows {
        let f = |x: Option<f64>| x.map(|v| format!("{v:.2}")).unwrap_or_default();
        out += &format!(
            "{:<24} {:<34} {:<4} {:>10.3} {:>10} {:>10}",
            r.kernel,
            r.shape,
            r.executor,
            r.median_ms,
            f(r.gflops),
            f(r.gbps)
        );
        if let Some(frac) = r.fraction_of_peak {
            out += &format!("  {frac:.2} of peak");
        }
        if let (Some(ips), Some(frac)) = (r.images_per_s, r.fraction_of_gemm512) {
            out += &format!("  {ips:.0} images/s, {frac:.2} of GEMM 512³");
        }
        out += "\n";
    }
    out
}
