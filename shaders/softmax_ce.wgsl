// Softmax cross-entropy on logits with integer class labels (Keras
// SparseCategoricalCrossentropy(from_logits=True)), mean over the batch, with its gradient
// and logging statistics in one pass; and the plain row softmax for evaluation.
//
// logits:  [batch, classes] f32, row-major
// labels:  [batch] u32 class indices (softmax_ce only)
// dlogits: [batch, classes] f32 = scale·(softmax(x) - onehot(label))/batch, or += that
//          when accumulate != 0 (softmax_ce only)
// stats:   [2] f32 = [mean loss, accuracy] (softmax_ce only); accuracy is the fraction of
//          rows whose first (lowest-index) maximal logit is at the label
// probs:   [batch, classes] f32 = softmax(x) per row (softmax only)
//
// Per row, with m the row maximum and a its first index, rest = Σ_{j≠a} exp(x_j - m):
// softmax_j = exp(x_j - m)/(1 + rest), loss = ln(1 + rest) - (x_label - m). Every exponent
// is <= 0, so nothing overflows for any finite logits; keeping the max's own exp(0) = 1
// out of `rest` lets ln1p and the label's gradient keep full relative precision when the
// model is confidently right (rest near 0).
//
// A label >= classes cannot be rejected here (the host does not read buffer contents), so
// it is kept in bounds instead: its row adds 0 to the loss, counts as wrong, and gets
// gradient softmax(x)·scale/batch (a one-hot of no class). The CPU twin rejects it.
//
// softmax_ce: one workgroup of WG invocations (a power of two); invocation t handles rows
// t, t + WG, ... (three passes over the row's logits each), then a tree reduction in
// workgroup memory sums the per-invocation loss and correct-row count. Batches are small
// (hundreds), so one workgroup is plenty and needs no second pass.
// softmax: one invocation per row; the grid may be split over y when it exceeds the
// per-dimension workgroup limit (linear id = x + y * num_workgroups.x * WG).

struct Params {
    batch: u32,
    classes: u32,
    // Weight of dlogits, e.g. to combine several losses into one gradient.
    scale: f32,
    accumulate: u32,
}

override WG: u32 = 256u;

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> logits: array<f32>;
@group(0) @binding(2) var<storage, read> labels: array<u32>;
@group(0) @binding(3) var<storage, read_write> dlogits: array<f32>;
@group(0) @binding(4) var<storage, read_write> stats: array<f32>;
// The softmax entry's output; no entry point uses both it and `labels`.
@group(0) @binding(2) var<storage, read_write> probs: array<f32>;

var<workgroup> sums: array<vec2<f32>, WG>;

// ln(1 + u) for u >= 0. WGSL has no log1p, and log near 1 is only specified to an
// absolute 2^-21, so small u uses the series (truncation error < u^7/7, 3e-9 at 1/16).
fn log1p_pos(u: f32) -> f32 {
    if (u < 0.0625) {
        return u * (1.0 + u * (-0.5 + u * (1.0 / 3.0 + u * (-0.25 + u * (0.2 - u / 6.0)))));
    }
    return log(1.0 + u);
}

struct Row {
    // Maximum logit and its first index (ties: lowest index, as on the CPU).
    max: f32,
    argmax: u32,
    // Σ exp(x_j - max) over j != argmax.
    rest: f32,
}

fn row_stats(base: u32) -> Row {
    var m = logits[base];
    var a = 0u;
    for (var j = 1u; j < params.classes; j++) {
        let x = logits[base + j];
        if (x > m) {
            m = x;
            a = j;
        }
    }
    var rest = 0.0;
    for (var j = 0u; j < params.classes; j++) {
        if (j != a) {
            rest += exp(logits[base + j] - m);
        }
    }
    return Row(m, a, rest);
}

// Writes one row's gradient; returns (loss, 1 if predicted right else 0).
fn ce_row(r: u32) -> vec2<f32> {
    let base = r * params.classes;
    let row = row_stats(base);
    let label = labels[r];
    let s = 1.0 + row.rest;
    let weight = params.scale / f32(params.batch);
    for (var j = 0u; j < params.classes; j++) {
        let e = exp(logits[base + j] - row.max);
        // p - 1 = (e - 1 - rest)/s at the label: exact 0 - rest when the label is the max.
        let numerator = select(e, (e - 1.0) - row.rest, j == label);
        var g = numerator / s * weight;
        if (params.accumulate != 0u) {
            g += dlogits[base + j];
        }
        dlogits[base + j] = g;
    }
    if (label >= params.classes) {
        return vec2(0.0);
    }
    let loss = log1p_pos(row.rest) - (logits[base + label] - row.max);
    return vec2(loss, select(0.0, 1.0, row.argmax == label));
}

@compute @workgroup_size(WG)
fn softmax_ce(@builtin(local_invocation_index) lid: u32) {
    var own = vec2(0.0);
    for (var r = lid; r < params.batch; r += WG) {
        own += ce_row(r);
    }
    sums[lid] = own;
    workgroupBarrier();
    for (var stride = WG / 2u; stride > 0u; stride /= 2u) {
        if (lid < stride) {
            sums[lid] += sums[lid + stride];
        }
        workgroupBarrier();
    }
    if (lid == 0u) {
        let mean = sums[0] / f32(params.batch);
        stats[0] = mean.x;
        stats[1] = mean.y;
    }
}

@compute @workgroup_size(WG)
fn softmax(
    @builtin(global_invocation_id) gid: vec3<u32>,
    @builtin(num_workgroups) groups: vec3<u32>,
) {
    let r = gid.x + gid.y * groups.x * WG;
    if (r >= params.batch) {
        return;
    }
    let base = r * params.classes;
    let row = row_stats(base);
    let s = 1.0 + row.rest;
    for (var j = 0u; j < params.classes; j++) {
        probs[base + j] = exp(logits[base + j] - row.max) / s;
    }
}
