// Keras BatchNormalization over the last axis: x [rows, channels] row-major (a Dense
// output, or NHWC with rows = batch·h·w), statistics per channel. The twin of
// cpu::batchnorm; the formulas are there.
//
// Forward, training (3 dispatches):
//   moments_partial  grid (ceil(channels/WG), slices): invocation (c, s) runs Welford over
//                    rows [s·rows_per_slice, ...) of channel c: partials[s, c] = (mean, M2).
//                    Consecutive invocations read consecutive channels of a row (coalesced).
//   moments_combine  one invocation per channel: Chan's pairwise merge of the slices in
//                    order, so f32 keeps the variance's accuracy without a second pass over
//                    x: stat_mean[c], stat_var[c] (biased); with UPDATE_RUNNING, the running
//                    statistics move: running = running·momentum + batch·keep.
//   normalize_rows   one invocation per element: y = x·inv + (beta - mean·inv), inv =
//                    gamma / sqrt(var + epsilon), from stat_* (training) or the running
//                    statistics (inference: this dispatch alone).
// Backward (5 dispatches): the moments again (no update), then
//   grad_partial     (c, s): partials[s, c] = (Σ dy, Σ dy·(x - mean)) over the slice's rows.
//   grad_combine     per channel: sums[c] = (Σ dy, Σ dy·x̂) over the slices in order, and
//                    dbeta = Σ dy, dgamma = Σ dy·x̂ where asked for (written or added).
//   grad_input       per element: dx = gamma·is·(dy - Σdy/rows - x̂·Σ(dy·x̂)/rows), is =
//                    1/sqrt(var + epsilon), x̂ = (x - mean)·is (written or added).
// Element-wise entry points may split their grid over y (linear id = x + y·groups.x·WG).
// Every loop runs at most max(rows_per_slice, slices) times per invocation; the launcher
// keeps both under an adapter's loop limit.

struct Params {
    rows: u32,
    channels: u32,
    slices: u32,
    rows_per_slice: u32,
    epsilon: f32,
    momentum: f32,
    // 1 - momentum, rounded from f64 on the host as the CPU twin rounds it.
    keep: f32,
    flags: u32,
}

const UPDATE_RUNNING: u32 = 1u;
const ACCUMULATE_DX: u32 = 2u;
const WRITE_DGAMMA: u32 = 4u;
const ACCUMULATE_DGAMMA: u32 = 8u;
const WRITE_DBETA: u32 = 16u;
const ACCUMULATE_DBETA: u32 = 32u;

override WG: u32 = 64u;

@group(0) @binding(0) var<uniform> params: Params;

// moments_partial: x -> partials
@group(0) @binding(1) var<storage, read_write> partials_out: array<vec2<f32>>;
@group(0) @binding(2) var<storage, read> x_in: array<f32>;

fn has(flag: u32) -> bool {
    return (params.flags & flag) != 0u;
}

fn slice_rows(s: u32) -> vec2<u32> {
    let start = s * params.rows_per_slice;
    return vec2(start, min(start + params.rows_per_slice, params.rows));
}

@compute @workgroup_size(WG)
fn moments_partial(@builtin(global_invocation_id) gid: vec3<u32>) {
    let c = gid.x;
    let s = gid.y;
    if (c >= params.channels || s >= params.slices) {
        return;
    }
    let span = slice_rows(s);
    var mean = 0.0;
    var m2 = 0.0;
    var n = 0.0;
    for (var r = span.x; r < span.y; r++) {
        let v = x_in[r * params.channels + c];
        n += 1.0;
        let d = v - mean;
        mean += d / n;
        m2 += d * (v - mean);
    }
    partials_out[s * params.channels + c] = vec2(mean, m2);
}

// moments_combine: partials -> statistics (and the running ones)
@group(0) @binding(1) var<storage, read> partials_in: array<vec2<f32>>;
@group(0) @binding(2) var<storage, read_write> stat_mean_out: array<f32>;
@group(0) @binding(3) var<storage, read_write> stat_var_out: array<f32>;
@group(0) @binding(4) var<storage, read_write> running_mean: array<f32>;
@group(0) @binding(5) var<storage, read_write> running_var: array<f32>;

fn linear_id(gid: vec3<u32>, groups: vec3<u32>) -> u32 {
    return gid.x + gid.y * groups.x * WG;
}

@compute @workgroup_size(WG)
fn moments_combine(
    @builtin(global_invocation_id) gid: vec3<u32>,
    @builtin(num_workgroups) groups: vec3<u32>,
) {
    let c = linear_id(gid, groups);
    if (c >= params.channels) {
        return;
    }
    var n = 0.0;
    var mean = 0.0;
    var m2 = 0.0;
    for (var s = 0u; s < params.slices; s++) {
        let span = slice_rows(s);
        let nb = f32(span.y - span.x);
        if (nb > 0.0) {
            let part = partials_in[s * params.channels + c];
            let total = n + nb;
            let delta = part.x - mean;
            mean += delta * (nb / total);
            m2 += part.y + delta * delta * (n * nb / total);
            n = total;
        }
    }
    let variance = m2 / max(n, 1.0);
    stat_mean_out[c] = mean;
    stat_var_out[c] = variance;
    if (has(UPDATE_RUNNING)) {
        running_mean[c] = running_mean[c] * params.momentum + mean * params.keep;
        running_var[c] = running_var[c] * params.momentum + variance * params.keep;
    }
}

// normalize_rows: y = x·inv + (beta - mean·inv)
@group(0) @binding(1) var<storage, read_write> y_out: array<f32>;
@group(0) @binding(2) var<storage, read> x_norm: array<f32>;
@group(0) @binding(3) var<storage, read> gamma: array<f32>;
@group(0) @binding(4) var<storage, read> beta: array<f32>;
@group(0) @binding(5) var<storage, read> mean_in: array<f32>;
@group(0) @binding(6) var<storage, read> var_in: array<f32>;

@compute @workgroup_size(WG)
fn normalize_rows(
    @builtin(global_invocation_id) gid: vec3<u32>,
    @builtin(num_workgroups) groups: vec3<u32>,
) {
    let i = linear_id(gid, groups);
    if (i >= params.rows * params.channels) {
        return;
    }
    let c = i % params.channels;
    let inv = gamma[c] * (1.0 / sqrt(var_in[c] + params.epsilon));
    y_out[i] = x_norm[i] * inv + (beta[c] - mean_in[c] * inv);
}

// grad_partial: (Σ dy, Σ dy·(x - mean)) per slice and channel
@group(0) @binding(1) var<storage, read_write> grad_partials_out: array<vec2<f32>>;
@group(0) @binding(2) var<storage, read> x_grad: array<f32>;
@group(0) @binding(3) var<storage, read> dy_partial: array<f32>;
@group(0) @binding(4) var<storage, read> mean_partial: array<f32>;

@compute @workgroup_size(WG)
fn grad_partial(@builtin(global_invocation_id) gid: vec3<u32>) {
    let c = gid.x;
    let s = gid.y;
    if (c >= params.channels || s >= params.slices) {
        return;
    }
    let span = slice_rows(s);
    let mean = mean_partial[c];
    var sum_dy = 0.0;
    var sum_dy_xm = 0.0;
    for (var r = span.x; r < span.y; r++) {
        let i = r * params.channels + c;
        let g = dy_partial[i];
        sum_dy += g;
        sum_dy_xm += g * (x_grad[i] - mean);
    }
    grad_partials_out[s * params.channels + c] = vec2(sum_dy, sum_dy_xm);
}

// grad_combine: sums[c] = (Σ dy, Σ dy·x̂), and dgamma, dbeta
@group(0) @binding(1) var<storage, read> grad_partials_in: array<vec2<f32>>;
@group(0) @binding(2) var<storage, read> var_combine: array<f32>;
@group(0) @binding(3) var<storage, read_write> sums_out: array<vec2<f32>>;
@group(0) @binding(4) var<storage, read_write> dgamma: array<f32>;
@group(0) @binding(5) var<storage, read_write> dbeta: array<f32>;

@compute @workgroup_size(WG)
fn grad_combine(
    @builtin(global_invocation_id) gid: vec3<u32>,
    @builtin(num_workgroups) groups: vec3<u32>,
) {
    let c = linear_id(gid, groups);
    if (c >= params.channels) {
        return;
    }
    var sum_dy = 0.0;
    var sum_dy_xm = 0.0;
    for (var s = 0u; s < params.slices; s++) {
        let part = grad_partials_in[s * params.channels + c];
        sum_dy += part.x;
        sum_dy_xm += part.y;
    }
    let sum_dy_xhat = sum_dy_xm * (1.0 / sqrt(var_combine[c] + params.epsilon));
    sums_out[c] = vec2(sum_dy, sum_dy_xhat);
    if (has(WRITE_DGAMMA)) {
        if (has(ACCUMULATE_DGAMMA)) {
            dgamma[c] = dgamma[c] + sum_dy_xhat;
        } else {
            dgamma[c] = sum_dy_xhat;
        }
    }
    if (has(WRITE_DBETA)) {
        if (has(ACCUMULATE_DBETA)) {
            dbeta[c] = dbeta[c] + sum_dy;
        } else {
            dbeta[c] = sum_dy;
        }
    }
}

// grad_input: dx = gamma·is·(dy - Σdy/rows - x̂·Σ(dy·x̂)/rows)
@group(0) @binding(1) var<storage, read_write> dx_out: array<f32>;
@group(0) @binding(2) var<storage, read> x_input: array<f32>;
@group(0) @binding(3) var<storage, read> dy_input: array<f32>;
@group(0) @binding(4) var<storage, read> gamma_input: array<f32>;
@group(0) @binding(5) var<storage, read> mean_input: array<f32>;
@group(0) @binding(6) var<storage, read> var_input: array<f32>;
@group(0) @binding(7) var<storage, read> sums_in: array<vec2<f32>>;

@compute @workgroup_size(WG)
fn grad_input(
    @builtin(global_invocation_id) gid: vec3<u32>,
    @builtin(num_workgroups) groups: vec3<u32>,
) {
    let i = linear_id(gid, groups);
    if (i >= params.rows * params.channels) {
        return;
    }
    let c = i % params.channels;
    let inv_std = 1.0 / sqrt(var_input[c] + params.epsilon);
    let n = f32(params.rows);
    let sums = sums_in[c];
    let xhat = (x_input[i] - mean_input[c]) * inv_std;
    let g = gamma_input[c] * inv_std * (dy_input[i] - sums.x / n - xhat * (sums.y / n));
    if (has(ACCUMULATE_DX)) {
        dx_out[i] = dx_out[i] + g;
    } else {
        dx_out[i] = g;
    }
}
