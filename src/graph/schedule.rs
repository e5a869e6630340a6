//! Reorderings of a lowered instruction list that change no value: each moves an
//! instruction past neighbours that neither read what it writes nor write what it reads
//! or writes, so that instructions one kernel can compute together end up side by side.
//! Both executors run the reordered list; only the wgpu executor fuses.

use std::collections::HashSet;

use crate::graph::{Buf, Graph, Instr, NodeId};

/// The buffers an instruction reads and the ones it writes. A buffer it adds into is in
/// both; Adam's moments and BatchNorm's running statistics, which no other instruction
/// touches, are left out.
pub fn accesses(instr: &Instr) -> (Vec<Buf>, Vec<Buf>) {
    let added = |dst: Buf, accumulate: bool| if accumulate { vec![dst] } else { vec![] };
    let with = |mut reads: Vec<Buf>, extra: Vec<Buf>| {
        reads.extend(extra);
        reads
    };
    match *instr {
        Instr::Noise { out, .. }
        | Instr::DataBatch { out, .. }
        | Instr::DataLabels { out, .. }
        | Instr::RandomLabels { out, .. } => (vec![], vec![out]),
        Instr::Gemm {
            a,
            b,
            c,
            bias,
            accumulate,
            ..
        } => (
            with(
                with(vec![a, b], bias.into_iter().collect()),
                added(c, accumulate),
            ),
            vec![c],
        ),
        Instr::BiasGrad {
            dy, db, accumulate, ..
        } => (with(vec![dy], added(db, accumulate)), vec![db]),
        Instr::Conv2d { x, w, b, y, .. } | Instr::ConvTranspose2d { x, w, b, y, .. } => {
            (with(vec![x, w], b.into_iter().collect()), vec![y])
        }
        Instr::Conv2dInputGrad {
            dy,
            w,
            dx,
            accumulate,
            ..
        }
        | Instr::ConvTranspose2dInputGrad {
            dy,
            w,
            dx,
            accumulate,
            ..
        } => (with(vec![dy, w], added(dx, accumulate)), vec![dx]),
        Instr::Conv2dWeightGrad {
            x,
            dy,
            dw,
            accumulate,
            ..
        }
        | Instr::ConvTranspose2dWeightGrad {
            x,
            dy,
            dw,
            accumulate,
            ..
        } => (with(vec![x, dy], added(dw, accumulate)), vec![dw]),
        Instr::Activation { x, y, .. } => (vec![x], vec![y]),
        Instr::ActivationGrad {
            x,
            y,
            dy,
            dx,
            accumulate,
            ..
        } => (with(vec![x, y, dy], added(dx, accumulate)), vec![dx]),
        Instr::BceLoss { logits, stats, .. } => (vec![logits], vec![stats]),
        Instr::BceGrad {
            logits,
            dlogits,
            accumulate,
            ..
        } => (
            with(vec![logits], added(dlogits, accumulate)),
            vec![dlogits],
        ),
        Instr::SoftmaxCeLoss {
            logits,
            labels,
            stats,
            ..
        } => (vec![logits, labels], vec![stats]),
        Instr::SoftmaxCeGrad {
            logits,
            labels,
            dlogits,
            accumulate,
            ..
        } => (
            with(vec![logits, labels], added(dlogits, accumulate)),
            vec![dlogits],
        ),
        Instr::Embedding {
            table, labels, out, ..
        } => (vec![table, labels], vec![out]),
        Instr::EmbeddingGrad {
            dy,
            labels,
            dtable,
            accumulate,
            ..
        } => (
            with(vec![dy, labels], added(dtable, accumulate)),
            vec![dtable],
        ),
        Instr::Add { a, b, y, .. } => (vec![a, b], vec![y]),
        Instr::Accumulate {
            src,
            dst,
            accumulate,
            ..
        } => (with(vec![src], added(dst, accumulate)), vec![dst]),
        Instr::Concat { a, b, y, .. } => (vec![a, b], vec![y]),
        Instr::RowDot { a, b, y, .. } => (vec![a, b], vec![y]),
        Instr::RowDotGrad {
            dy,
            other,
            dx,
            accumulate,
            ..
        } => (with(vec![dy, other], added(dx, accumulate)), vec![dx]),
        Instr::Adam { param, .. } => (
            vec![Buf::Grad(param), Buf::Value(param)],
            vec![Buf::Value(param)],
        ),
        Instr::BatchNorm {
            x, gamma, beta, y, ..
        } => (vec![x, gamma, beta], vec![y]),
        Instr::BatchNormGrad {
            x,
            gamma,
            dy,
            dx,
            dgamma,
            dbeta,
            ..
        } => {
            let targets = [dx, dgamma, dbeta].into_iter().flatten();
            let reads = targets
                .clone()
                .filter(|&(_, accumulate)| accumulate)
                .map(|(buf, _)| buf);
            (
                vec![x, gamma, dy].into_iter().chain(reads).collect(),
                targets.map(|(buf, _)| buf).collect(),
            )
        }
        Instr::Dropout { x, y, .. } => (vec![x], vec![y]),
        Instr::DropoutGrad {
            dy, dx, accumulate, ..
        } => (with(vec![dy], added(dx, accumulate)), vec![dx]),
        Instr::Ema {
            source, average, ..
        } => (
            vec![Buf::Value(source), Buf::Value(average)],
            vec![Buf::Value(average)],
        ),
    }
}

/// Whether `a` and `b` may run in either order: neither writes what the other reads or
/// writes.
pub fn independent(a: &Instr, b: &Instr) -> bool {
    let ((a_reads, a_writes), (b_reads, b_writes)) = (accesses(a), accesses(b));
    let disjoint = |x: &[Buf], y: &[Buf]| x.iter().all(|buf| !y.contains(buf));
    disjoint(&a_writes, &b_reads) && disjoint(&a_writes, &b_writes) && disjoint(&b_writes, &a_reads)
}

/// Moves each row dot product's gradient down to just before the next instruction that
/// adds into the same gradient (a Dense layer's input gradient, which the lowering emits
/// after the layer's weight gradients), when every instruction it passes is independent
/// of it: a projection head's two contributions to the features' gradient then sit side
/// by side, and an executor can compute them, and the activation gradient that follows,
/// in one pass.
pub fn contributions_together(instrs: &mut Vec<Instr>) {
    let mut k = 0;
    while k < instrs.len() {
        let Instr::RowDotGrad { dx, .. } = instrs[k] else {
            k += 1;
            continue;
        };
        let next = (k + 1..instrs.len()).find(|&j| {
            let (reads, writes) = accesses(&instrs[j]);
            reads.contains(&dx) || writes.contains(&dx)
        });
        let adds_in =
            |j: usize| matches!(instrs[j], Instr::Gemm { c, accumulate: true, .. } if c == dx);
        match next {
            Some(j)
                if j > k + 1
                    && adds_in(j)
                    && (k + 1..j).all(|i| independent(&instrs[k], &instrs[i])) =>
            {
                let moved = instrs.remove(k);
                instrs.insert(j - 1, moved);
                // The instruction now at k was behind it: look at it next.
            }
            _ => k += 1,
        }
    }
}

/// Moves each moving-average step up to just after the Adam step of its source, when every
/// instruction it passes is independent of it (the other parameters' steps and averages
/// are), so that the CPU executor updates a parameter and its average in one pass. The
/// average reads only its source and itself, so no value changes.
pub fn averages_beside_their_updates(instrs: &mut [Instr]) {
    for i in 0..instrs.len() {
        let Instr::Ema { source, .. } = instrs[i] else {
            continue;
        };
        let update = instrs[..i]
            .iter()
            .rposition(|instr| matches!(*instr, Instr::Adam { param, .. } if param == source));
        if let Some(j) = update
            && (j + 1..i).all(|k| independent(&instrs[k], &instrs[i]))
        {
            instrs[j + 1..=i].rotate_right(1);
        }
    }
}

/// Moves each BCE loss that nothing reads from the forward pass to just before the
/// gradient of the same logits and rows in the backward pass, so that an executor can
/// compute the two in one pass over the logits. The loss reads only forward values, and
/// nothing between its old and new places reads what it writes, so the results are
/// unchanged; the gradients keep their order (the first one writing the logits' gradient
/// overwrites it).
pub fn losses_beside_their_gradients(
    graph: &Graph,
    forward: &mut Vec<Instr>,
    backward: &mut Vec<Instr>,
) {
    let read: HashSet<NodeId> = graph.nodes.iter().flat_map(|n| n.op.inputs()).collect();
    let mut k = 0;
    while k < backward.len() {
        if let Instr::BceGrad {
            logits,
            label,
            first,
            len,
            ..
        } = backward[k]
        {
            let loss = forward.iter().position(|instr| {
                matches!(*instr, Instr::BceLoss { logits: l, label: b, stats: Buf::Value(node), first: f, len: n }
                    if l == logits && b == label && f == first && n == len && !read.contains(&node))
            });
            if let Some(p) = loss {
                backward.insert(k, forward.remove(p));
                k += 1;
            }
        }
        k += 1;
    }
}

/// How far after a transposed convolution's weight gradient its input gradient is looked for
/// (the lowering puts the bias gradient between them).
const PARTNER_REACH: usize = 3;

/// The transposed convolution's input gradient that can run together with the weight
/// gradient at `i` (the same geometry and dy, so one im2col of dy serves both): the first
/// within `PARTNER_REACH` (3) instructions, if every instruction from `i` to it is independent
/// of it (it moves up to run with the weight gradient).
pub fn shared_im2col_partner(instrs: &[Instr], i: usize) -> Option<usize> {
    let Instr::ConvTranspose2dWeightGrad { geom, dy, .. } = instrs[i] else {
        return None;
    };
    let reach = instrs.len().min(i + 1 + PARTNER_REACH);
    let j = (i + 1..reach).find(|&j| {
        matches!(instrs[j], Instr::ConvTranspose2dInputGrad { geom: g, dy: d, .. }
            if g == geom && d == dy)
    })?;
    instrs[i..j]
        .iter()
        .all(|before| independent(before, &instrs[j]))
        .then_some(j)
}
