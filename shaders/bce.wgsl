// Binary cross-entropy on logits (Keras BinaryCrossentropy(from_logits=True)), mean
// over the batch, with its gradient and logging statistics in one pass.
//
// logits:  [total] f32 (the discriminator's outputs, one per sample); the loss reads
//          logits first .. first + count (part of a batch, e.g. the real half of [real; fake])
// labels:  [count] f32 (bce_labels only; bce_constant uses params.label for every sample)
// dlogits: [total] f32 = scale·(sigmoid(x) - z)/count in the loss's rows, or += that when
//          accumulate != 0; the other rows get 0 (or keep their values with accumulate)
// stats:   f32; stats[stats_offset] = mean loss, stats[stats_offset + 1] = mean sigmoid(x)
//          (D's average belief that its inputs are real)
// Per element l = max(x, 0) - x·z + log1p(exp(-|x|)) (TF's
// sigmoid_cross_entropy_with_logits): finite for any x, exp never overflows.
//
// One workgroup of WG invocations (a power of two) does everything: invocation t handles
// elements t, t + WG, ... (any count), then a tree reduction in workgroup memory sums the
// per-invocation partial loss and probability. The batch is small (100 in the GAN), so a
// single workgroup is plenty and needs no second pass. bce_constant_pair runs two
// constant-label losses of the same logits, one after the other, in that one workgroup.

struct Params {
    count: u32,
    // The label of every sample for bce_constant (1 for "real", 0 for "fake").
    label: f32,
    // Weight of dlogits, e.g. to combine several losses into one gradient.
    scale: f32,
    accumulate: u32,
    // Where in `stats` the two statistics go, so several losses share one buffer.
    stats_offset: u32,
    // The loss's first row, and the rows of logits and dlogits (at least first + count).
    first: u32,
    total: u32,
    _pad: u32,
}

override WG: u32 = 256u;

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> logits: array<f32>;
@group(0) @binding(2) var<storage, read_write> dlogits: array<f32>;
@group(0) @binding(3) var<storage, read_write> stats: array<f32>;
@group(0) @binding(4) var<storage, read> labels: array<f32>;
// bce_constant_pair: the second loss and where its statistics go.
@group(0) @binding(4) var<uniform> params_b: Params;
@group(0) @binding(5) var<storage, read_write> stats_b: array<f32>;

var<workgroup> sums: array<vec2<f32>, WG>;
var<workgroup> pair_sums: array<vec4<f32>, WG>;

// ln(1 + u) for u in [0, 1]. WGSL has no log1p, and log near 1 is only specified to an
// absolute 2^-21, so small u uses the series (truncation error < u^7/7, 3e-9 at 1/16).
fn log1p_unit(u: f32) -> f32 {
    if (u < 0.0625) {
        return u * (1.0 + u * (-0.5 + u * (1.0 / 3.0 + u * (-0.25 + u * (0.2 - u / 6.0)))));
    }
    return log(1.0 + u);
}

// Loss and probability of one element of the loss `p`, writing its gradient.
fn element(p: Params, row: u32, z: f32) -> vec2<f32> {
    let i = p.first + row;
    let x = logits[i];
    let e = exp(-abs(x));
    // Stable sigmoid, the same branches as the CPU twin.
    let prob = select(e / (1.0 + e), 1.0 / (1.0 + e), x >= 0.0);
    var g = (prob - z) / f32(p.count) * p.scale;
    if (p.accumulate != 0u) {
        g += dlogits[i];
    }
    dlogits[i] = g;
    return vec2(max(x, 0.0) - x * z + log1p_unit(e), prob);
}

// Zeroes the rows of dlogits outside the loss's, unless they accumulate.
fn clear_other_rows(p: Params, lid: u32) {
    if (p.accumulate != 0u) {
        return;
    }
    for (var i = lid; i < p.total; i += WG) {
        if (i < p.first || i >= p.first + p.count) {
            dlogits[i] = 0.0;
        }
    }
}

// This invocation's partial (loss, probability) of the constant-label loss `p`, its
// gradient written.
fn constant_pass(p: Params, lid: u32) -> vec2<f32> {
    var sum = vec2(0.0);
    for (var i = lid; i < p.count; i += WG) {
        sum += element(p, i, p.label);
    }
    clear_other_rows(p, lid);
    return sum;
}

// Adds up the invocations' partial (loss, probability) and writes the means.
fn reduce_and_store(lid: u32, own: vec2<f32>) {
    sums[lid] = own;
    workgroupBarrier();
    for (var stride = WG / 2u; stride > 0u; stride /= 2u) {
        if (lid < stride) {
            sums[lid] += sums[lid + stride];
        }
        workgroupBarrier();
    }
    if (lid == 0u) {
        let mean = sums[0] / f32(params.count);
        stats[params.stats_offset] = mean.x;
        stats[params.stats_offset + 1u] = mean.y;
    }
}

@compute @workgroup_size(WG)
fn bce_constant(@builtin(local_invocation_index) lid: u32) {
    reduce_and_store(lid, constant_pass(params, lid));
}

@compute @workgroup_size(WG)
fn bce_labels(@builtin(local_invocation_index) lid: u32) {
    var sum = vec2(0.0);
    for (var i = lid; i < params.count; i += WG) {
        sum += element(params, i, labels[i]);
    }
    clear_other_rows(params, lid);
    reduce_and_store(lid, sum);
}

// Two bce_constant losses of the same logits and dlogits in one dispatch (the real and
// the fake half of a [real; fake] batch): `params`, then `params_b`, each pass as its own
// entry point runs it, with a storage barrier between them so that the second reads
// the gradient the first wrote; the two trees then reduce side by side (vec4 lanes: the
// same sums in the same order).
@compute @workgroup_size(WG)
fn bce_constant_pair(@builtin(local_invocation_index) lid: u32) {
    let first = constant_pass(params, lid);
    storageBarrier();
    let second = constant_pass(params_b, lid);
    pair_sums[lid] = vec4(first, second);
    workgroupBarrier();
    for (var stride = WG / 2u; stride > 0u; stride /= 2u) {
        if (lid < stride) {
            pair_sums[lid] += pair_sums[lid + stride];
        }
        workgroupBarrier();
    }
    if (lid == 0u) {
        let mean = pair_sums[0].xy / f32(params.count);
        stats[params.stats_offset] = mean.x;
        stats[params.stats_offset + 1u] = mean.y;
        let mean_b = pair_sums[0].zw / f32(params_b.count);
        stats_b[params_b.stats_offset] = mean_b.x;
        stats_b[params_b.stats_offset + 1u] = mean_b.y;
    }
}
