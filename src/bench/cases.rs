//! What the bench times: the distinct instructions of a model's training step (and the
//! classifier's), each named by the layer it first serves, with the work it does.
//!
//! FLOPs count a multiply-add as 2: GEMM 2·m·n·k; convolutions 2·(output pixels)·cout·
//! kh·kw·cin (conv2d) or 2·(input pixels)·cin·kh·kw·cout (transposed), each gradient the
//! same as its forward. Element-wise instructions report the bytes they must move.

use crate::cpu::Activation;
use crate::graph::{Buf, Graph, Instr};

/// The amount of work in one call.
#[derive(Debug, Clone, Copy)]
pub enum Work {
    Flops(f64),
    Bytes(f64),
}

/// One instruction to time.
pub struct Case {
    /// What the kernel computes, e.g. `conv2d weight grad`.
    pub kernel: String,
    /// The layer (graph node) it first serves in the plan.
    pub layer: String,
    /// Its shape, which also tells cases apart.
    pub shape: String,
    pub work: Work,
    pub instr: Instr,
}

fn flag(on: bool, text: &str) -> &str {
    if on { text } else { "" }
}

fn tn(t: bool) -> char {
    if t { 'T' } else { 'N' }
}

/// (kernel, shape, the buffer whose node names the layer) of an instruction.
fn describe(instr: &Instr) -> (&'static str, String, Buf) {
    match *instr {
        Instr::Noise { out, len, .. } => ("normal noise", format!("{len}"), out),
        Instr::DataBatch { out, batch } => ("batch gather", format!("{batch} rows"), out),
        Instr::DataLabels { out, batch } => ("label gather", format!("{batch} rows"), out),
        Instr::Gemm {
            c,
            m,
            n,
            k,
            trans_a,
            trans_b,
            bias,
            accumulate,
            ..
        } => (
            "gemm",
            format!(
                "{m}x{n}x{k} {}{}{}{}",
                tn(trans_a),
                tn(trans_b),
                flag(bias.is_some(), " +bias"),
                flag(accumulate, " +="),
            ),
            c,
        ),
        Instr::BiasGrad {
            db,
            rows,
            cols,
            accumulate,
            ..
        } => (
            "bias grad",
            format!("{rows}x{cols}{}", flag(accumulate, " +=")),
            db,
        ),
        Instr::Conv2d { geom: g, y, .. } => ("conv2d forward", conv_shape(&g), y),
        Instr::Conv2dInputGrad {
            geom: g,
            dx,
            accumulate,
            ..
        } => (
            "conv2d input grad",
            conv_shape(&g) + flag(accumulate, " +="),
            dx,
        ),
        Instr::Conv2dWeightGrad {
            geom: g,
            dw,
            accumulate,
            ..
        } => (
            "conv2d weight grad",
            conv_shape(&g) + flag(accumulate, " +="),
            dw,
        ),
        Instr::ConvTranspose2d { geom: g, y, .. } => ("convT forward", deconv_shape(&g), y),
        Instr::ConvTranspose2dInputGrad {
            geom: g,
            dx,
            accumulate,
            ..
        } => (
            "convT input grad",
            deconv_shape(&g) + flag(accumulate, " +="),
            dx,
        ),
        Instr::ConvTranspose2dWeightGrad {
            geom: g,
            dw,
            accumulate,
            ..
        } => (
            "convT weight grad",
            deconv_shape(&g) + flag(accumulate, " +="),
            dw,
        ),
        Instr::Activation { act, y, len, .. } => (names(act).0, format!("{len}"), y),
        Instr::ActivationGrad {
            act,
            dx,
            len,
            accumulate,
            ..
        } => (
            names(act).1,
            format!("{len}{}", flag(accumulate, " +=")),
            dx,
        ),
        Instr::BceLoss { stats, len, .. } => ("bce loss", format!("{len}"), stats),
        Instr::BceGrad {
            dlogits,
            len,
            accumulate,
            ..
        } => (
            "bce grad",
            format!("{len}{}", flag(accumulate, " +=")),
            dlogits,
        ),
        Instr::SoftmaxCeLoss {
            stats,
            batch,
            classes,
            ..
        } => ("softmax ce loss", format!("{batch}x{classes}"), stats),
        Instr::SoftmaxCeGrad {
            dlogits,
            batch,
            classes,
            accumulate,
            ..
        } => (
            "softmax ce grad",
            format!("{batch}x{classes}{}", flag(accumulate, " +=")),
            dlogits,
        ),
        Instr::Adam { param, len, .. } => ("adam", format!("{len}"), Buf::Value(param)),
        Instr::RandomLabels {
            out,
            batch,
            classes,
            ..
        } => ("random labels", format!("{batch} of {classes}"), out),
        Instr::Embedding {
            out,
            batch,
            classes,
            dim,
            ..
        } => (
            "embedding forward",
            format!("{batch} of {classes}x{dim}"),
            out,
        ),
        Instr::EmbeddingGrad {
            dtable,
            batch,
            classes,
            dim,
            accumulate,
            ..
        } => (
            "embedding grad",
            format!("{batch} of {classes}x{dim}{}", flag(accumulate, " +=")),
            dtable,
        ),
        Instr::Add { y, len, .. } => ("add", format!("{len}"), y),
        Instr::Accumulate {
            dst,
            len,
            accumulate,
            ..
        } => (
            if accumulate { "accumulate" } else { "copy" },
            format!("{len}"),
            dst,
        ),
        Instr::RowDot { y, rows, cols, .. } => ("row dot", format!("{rows}x{cols}"), y),
        Instr::RowDotGrad {
            dx,
            rows,
            cols,
            accumulate,
            ..
        } => (
            "row dot grad",
            format!("{rows}x{cols}{}", flag(accumulate, " +=")),
            dx,
        ),
    }
}

/// An activation's forward and backward kernel names.
fn names(act: Activation) -> (&'static str, &'static str) {
    match act {
        Activation::Relu => ("relu forward", "relu backward"),
        Activation::LeakyRelu(_) => ("leaky relu forward", "leaky relu backward"),
        Activation::Tanh => ("tanh forward", "tanh backward"),
        Activation::Sigmoid => ("sigmoid forward", "sigmoid backward"),
    }
}

fn conv_shape(g: &crate::geometry::Conv2dGeometry) -> String {
    format!(
        "{}x{}x{}x{} k{}x{} s{} -> {}x{}x{}",
        g.batch,
        g.in_h,
        g.in_w,
        g.in_c,
        g.k_h,
        g.k_w,
        g.stride_h,
        g.out_h(),
        g.out_w(),
        g.out_c
    )
}

fn deconv_shape(g: &crate::geometry::ConvTranspose2dGeometry) -> String {
    format!(
        "{}x{}x{}x{} k{}x{} s{} -> {}x{}x{}",
        g.batch, g.in_h, g.in_w, g.in_c, g.k_h, g.k_w, g.stride_h, g.out_h, g.out_w, g.out_c
    )
}

/// Bytes an element-wise instruction must read and write (f32 = 4 bytes, dataset bytes 1).
fn bytes(graph: &Graph, instr: &Instr) -> f64 {
    let len_of = |b: Buf| match b {
        Buf::Value(id) | Buf::Grad(id) => graph.nodes[id].len(),
    };
    let n = match *instr {
        Instr::Noise { len, .. } => 4 * len,
        // One byte in and one f32 out per pixel, plus the row indices.
        Instr::DataBatch { out, batch } => 5 * len_of(out) + 4 * batch,
        Instr::DataLabels { batch, .. } => 9 * batch,
        Instr::BiasGrad { rows, cols, .. } => 4 * (rows * cols + cols),
        Instr::Activation { len, .. } => 8 * len,
        Instr::ActivationGrad { len, .. } => 12 * len,
        Instr::BceLoss { len, .. } => 4 * len + 8,
        Instr::BceGrad { len, .. } => 8 * len,
        Instr::SoftmaxCeLoss { batch, classes, .. } => 4 * batch * classes + 4 * batch + 8,
        Instr::SoftmaxCeGrad { batch, classes, .. } => 8 * batch * classes + 4 * batch,
        // p, m, v read and written, g read.
        Instr::Adam { len, .. } => 28 * len,
        Instr::RandomLabels { batch, .. } => 4 * batch,
        // The table rows read, the output written, and the labels.
        Instr::Embedding { batch, dim, .. } => 8 * batch * dim + 4 * batch,
        Instr::EmbeddingGrad {
            batch,
            classes,
            dim,
            ..
        } => 4 * (batch * dim + classes * dim + batch),
        Instr::Add { len, .. } => 12 * len,
        Instr::Accumulate { len, .. } => 8 * len,
        _ => 0,
    };
    n as f64
}

/// The distinct instructions of `plan`, in first-use order.
pub fn plan_cases(graph: &Graph, plan: &[Instr]) -> Vec<Case> {
    let mut cases: Vec<Case> = Vec::new();
    for instr in plan {
        let (kernel, shape, named) = describe(instr);
        if cases.iter().any(|c| c.kernel == kernel && c.shape == shape) {
            continue;
        }
        let layer = match named {
            Buf::Value(id) | Buf::Grad(id) => graph.nodes[id].name.clone(),
        };
        let flops = instr.flops();
        cases.push(Case {
            kernel: kernel.to_string(),
            layer,
            shape,
            work: if flops > 0.0 {
                Work::Flops(flops)
            } else {
                Work::Bytes(bytes(graph, instr))
            },
            instr: instr.clone(),
        });
    }
    cases
}
