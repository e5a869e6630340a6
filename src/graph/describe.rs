//! What an instruction is, in words and numbers: its kernel and shape (equal pairs run
//! the same kernel at the same shape), the buffer that names the layer it serves, and
//! the bytes an element-wise one must move. The bench, the selftest and the plan report
//! all describe instructions this one way.

use crate::graph::{Buf, Graph, Instr, NodeId};

fn node(buf: Buf) -> NodeId {
    match buf {
        Buf::Value(id) | Buf::Grad(id) => id,
    }
}

/// (what, shape) of an instruction, e.g. ("conv2d weight grad", "100x13x13x32 k3x3
/// s2x2 -> 6x6x64"); equal pairs run the same kernel at the same shape.
pub fn describe(graph: &Graph, instr: &Instr) -> (String, String) {
    let acc = |what: &str, accumulate: bool| {
        if accumulate {
            format!("{what} (accumulate)")
        } else {
            what.to_string()
        }
    };
    let t = |x: bool| if x { "T" } else { "N" };
    let conv = |b, h, w, c, kh, kw, sh, sw, oh, ow, oc| {
        format!("{b}x{h}x{w}x{c} k{kh}x{kw} s{sh}x{sw} -> {oh}x{ow}x{oc}")
    };
    match *instr {
        Instr::Noise { len, .. } => ("normal noise".into(), format!("{len}")),
        Instr::DataBatch { out, batch } => (
            "batch gather".into(),
            format!("{batch}x{}", graph.nodes[node(out)].len() / batch.max(1)),
        ),
        Instr::DataLabels { batch, .. } => ("label gather".into(), format!("{batch}")),
        Instr::Gemm {
            m,
            n,
            k,
            trans_a,
            trans_b,
            bias,
            accumulate,
            ..
        } => (
            acc(
                if bias.is_some() {
                    "gemm + bias"
                } else {
                    "gemm"
                },
                accumulate,
            ),
            format!("{m}x{n}x{k} {}{}", t(trans_a), t(trans_b)),
        ),
        Instr::BiasGrad {
            rows,
            cols,
            accumulate,
            ..
        } => (acc("bias grad", accumulate), format!("{rows}x{cols}")),
        Instr::Conv2d { geom: g, .. }
        | Instr::Conv2dInputGrad { geom: g, .. }
        | Instr::Conv2dWeightGrad { geom: g, .. } => {
            let what = match *instr {
                Instr::Conv2d { .. } => "conv2d forward".to_string(),
                Instr::Conv2dInputGrad { accumulate, .. } => acc("conv2d input grad", accumulate),
                Instr::Conv2dWeightGrad { accumulate, .. } => acc("conv2d weight grad", accumulate),
                _ => unreachable!("matched above"),
            };
            let shape = conv(
                g.batch,
                g.in_h,
                g.in_w,
                g.in_c,
                g.k_h,
                g.k_w,
                g.stride_h,
                g.stride_w,
                g.out_h(),
                g.out_w(),
                g.out_c,
            );
            (what, shape)
        }
        Instr::ConvTranspose2d { geom: g, .. }
        | Instr::ConvTranspose2dInputGrad { geom: g, .. }
        | Instr::ConvTranspose2dWeightGrad { geom: g, .. } => {
            let what = match *instr {
                Instr::ConvTranspose2d { .. } => "conv_transpose2d forward".to_string(),
                Instr::ConvTranspose2dInputGrad { accumulate, .. } => {
                    acc("conv_transpose2d input grad", accumulate)
                }
                Instr::ConvTranspose2dWeightGrad { accumulate, .. } => {
                    acc("conv_transpose2d weight grad", accumulate)
                }
                _ => unreachable!("matched above"),
            };
            let shape = conv(
                g.batch, g.in_h, g.in_w, g.in_c, g.k_h, g.k_w, g.stride_h, g.stride_w, g.out_h,
                g.out_w, g.out_c,
            );
            (what, shape)
        }
        Instr::Activation { act, len, .. } => (format!("{act:?} forward"), format!("{len}")),
        Instr::ActivationGrad {
            act,
            len,
            accumulate,
            ..
        } => (
            acc(&format!("{act:?} backward"), accumulate),
            format!("{len}"),
        ),
        Instr::BceLoss {
            first, len, label, ..
        } => ("bce loss".into(), bce_rows(first, len, None, label)),
        Instr::BceGrad {
            first,
            len,
            total,
            label,
            accumulate,
            ..
        } => (
            acc("bce grad", accumulate),
            bce_rows(first, len, Some(total), label),
        ),
        Instr::SoftmaxCeLoss { batch, classes, .. } => {
            ("softmax ce loss".into(), format!("{batch}x{classes}"))
        }
        Instr::SoftmaxCeGrad {
            batch,
            classes,
            accumulate,
            ..
        } => (
            acc("softmax ce grad", accumulate),
            format!("{batch}x{classes}"),
        ),
        Instr::Adam { len, .. } => ("adam".into(), format!("{len}")),
        Instr::RandomLabels { batch, classes, .. } => {
            ("random labels".into(), format!("{batch} of {classes}"))
        }
        Instr::Embedding {
            batch,
            classes,
            dim,
            ..
        } => (
            "embedding forward".into(),
            format!("{batch} of {classes}x{dim}"),
        ),
        Instr::EmbeddingGrad {
            batch,
            classes,
            dim,
            accumulate,
            ..
        } => (
            acc("embedding grad", accumulate),
            format!("{batch} of {classes}x{dim}"),
        ),
        Instr::Add { len, .. } => ("add".into(), format!("{len}")),
        Instr::Accumulate {
            offset,
            len,
            accumulate,
            ..
        } => (
            if accumulate { "accumulate" } else { "copy" }.into(),
            match offset {
                0 => format!("{len}"),
                _ => format!("{len} from {offset}"),
            },
        ),
        Instr::Concat { len_a, len_b, .. } => ("concat".into(), format!("{len_a} + {len_b}")),
        Instr::RowDot { rows, cols, .. } => ("row dot".into(), format!("{rows}x{cols}")),
        Instr::RowDotGrad {
            rows,
            cols,
            accumulate,
            ..
        } => (acc("row dot grad", accumulate), format!("{rows}x{cols}")),
        Instr::BatchNorm {
            rows,
            channels,
            momentum,
            ..
        } => (
            match momentum {
                Some(_) => "batch norm (training)",
                None => "batch norm (inference)",
            }
            .into(),
            format!("{rows}x{channels}"),
        ),
        Instr::BatchNormGrad {
            rows,
            channels,
            dx,
            dgamma,
            dbeta,
            ..
        } => {
            let mut parts: Vec<String> = Vec::new();
            for (name, out) in [("dx", dx), ("dgamma", dgamma), ("dbeta", dbeta)] {
                match out {
                    Some((_, true)) => parts.push(format!("{name}+")),
                    Some((_, false)) => parts.push(name.into()),
                    None => {}
                }
            }
            (
                format!("batch norm grad ({})", parts.join(" ")),
                format!("{rows}x{channels}"),
            )
        }
        Instr::Dropout { len, rate, .. } => ("dropout".into(), format!("{len}, rate {rate}")),
        Instr::DropoutGrad {
            len,
            rate,
            accumulate,
            ..
        } => (
            acc("dropout grad", accumulate),
            format!("{len}, rate {rate}"),
        ),
        Instr::Ema { len, .. } => ("ema".into(), format!("{len}")),
    }
}

/// A BCE's rows: `100, label 1`, or `100 of 200 from 100, label 0` for part of a batch.
fn bce_rows(first: usize, len: usize, total: Option<usize>, label: f32) -> String {
    match (first, total) {
        (0, None) => format!("{len}, label {label}"),
        (0, Some(total)) if total == len => format!("{len}, label {label}"),
        (_, None) => format!("{len} from {first}, label {label}"),
        (_, Some(total)) => format!("{len} of {total} from {first}, label {label}"),
    }
}

/// The buffer an instruction writes, whose node names the layer it serves.
pub fn output(instr: &Instr) -> Buf {
    match *instr {
        Instr::Noise { out, .. }
        | Instr::DataBatch { out, .. }
        | Instr::DataLabels { out, .. }
        | Instr::RandomLabels { out, .. }
        | Instr::Embedding { out, .. } => out,
        Instr::Gemm { c, .. } => c,
        Instr::BiasGrad { db, .. } => db,
        Instr::Conv2d { y, .. }
        | Instr::ConvTranspose2d { y, .. }
        | Instr::Activation { y, .. }
        | Instr::Add { y, .. }
        | Instr::Concat { y, .. }
        | Instr::RowDot { y, .. } => y,
        Instr::Conv2dInputGrad { dx, .. }
        | Instr::ConvTranspose2dInputGrad { dx, .. }
        | Instr::ActivationGrad { dx, .. }
        | Instr::RowDotGrad { dx, .. } => dx,
        Instr::Conv2dWeightGrad { dw, .. } | Instr::ConvTranspose2dWeightGrad { dw, .. } => dw,
        Instr::BceLoss { stats, .. } | Instr::SoftmaxCeLoss { stats, .. } => stats,
        Instr::BceGrad { dlogits, .. } | Instr::SoftmaxCeGrad { dlogits, .. } => dlogits,
        Instr::EmbeddingGrad { dtable, .. } => dtable,
        Instr::Accumulate { dst, .. } => dst,
        Instr::Adam { param, .. } => Buf::Value(param),
        Instr::BatchNorm { y, .. } | Instr::Dropout { y, .. } => y,
        Instr::DropoutGrad { dx, .. } => dx,
        Instr::BatchNormGrad {
            dx, dgamma, dbeta, ..
        } => dx
            .or(dgamma)
            .or(dbeta)
            .map(|(b, _)| b)
            .unwrap_or(Buf::Value(0)),
        Instr::Ema { average, .. } => Buf::Value(average),
    }
}

/// Bytes an element-wise instruction must read and write (f32 = 4 bytes, dataset bytes 1).
pub fn bytes(graph: &Graph, instr: &Instr) -> f64 {
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
        Instr::BceGrad { len, total, .. } => 4 * len + 4 * total,
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
        Instr::Concat { len_a, len_b, .. } => 8 * (len_a + len_b),
        // Training reads x twice (statistics, then the normalisation); the statistics
        // vectors are negligible.
        Instr::BatchNorm {
            rows,
            channels,
            momentum,
            ..
        } => 4 * rows * channels * (2 + usize::from(momentum.is_some())),
        // x read twice and dy twice (statistics and sums, then dx), dx written.
        Instr::BatchNormGrad {
            rows, channels, dx, ..
        } => 4 * rows * channels * (if dx.is_some() { 5 } else { 3 }),
        Instr::Dropout { len, .. } | Instr::DropoutGrad { len, .. } => 8 * len,
        // The average read and written, the source read.
        Instr::Ema { len, .. } => 12 * len,
        _ => 0,
    };
    n as f64
}

/// The layer an instruction serves: the node it writes, or `∂node` when it writes the
/// loss's gradient with respect to that node (a gradient kernel is named by what it
/// differentiates, not by the layer whose backward pass it belongs to).
pub fn layer_label(graph: &Graph, instr: &Instr) -> String {
    match output(instr) {
        Buf::Value(id) => graph.nodes[id].name.clone(),
        Buf::Grad(id) => format!("∂{}", graph.nodes[id].name),
    }
}
