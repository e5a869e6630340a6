// Counter-based random numbers: Philox4x32-10, the twin of cpu::noise, so CPU and GPU
// draw the same stream without sharing state: element i depends only on (seed, stream, i).
//
// Block b (b = i / 4) is philox4x32_10(counter = (b lo, b hi, stream lo, stream hi),
// key = (seed lo, seed hi)); element i is lane i % 4 of block b. Here n < 2^32 so b < 2^30
// and b hi = 0.
//   uniform_u32:   out[i] = the raw word (bit-exact with cpu::noise::uniform_u32)
//   batch_indices: out[i] = floor(word·bound / 2^32), Lemire's multiply-high (bit-exact
//                  with cpu::noise::uniform_index), in [0, bound)
//   normal:        out[i] = bitcast<u32> of an f32 N(0, 1) sample by Box-Muller from
//                  lanes (0, 1) and (2, 3) of the block, as cpu::noise::normal_noise
//   dropout:       y[i] = word >= bound ? x[i]·scale : 0 (bound = round(rate·2^32), scale
//                  = 1/(1 - rate)), the mask bit-exact with cpu::dropout; dropout_grad is
//                  the same with dy for x and dx for y, added with `accumulate`.
//   normal_and_indices: `normal` into out and `batch_indices` by params_b into out_b, as
//                  the two entry points draw them, in one dispatch
//   draw_batch:    `batch_indices` into out, and the dataset rows they name gathered into
//                  batch_out as gather.wgsl does (draw_batch_labels: and their labels)
// out: [n] u32 (f32 bits for `normal`, so one binding serves all entry points); the
// dropout entry points bind f32 y and x instead.
// One invocation per block, writing its up to 4 elements below n. The grid may be split
// over y (linear block id = x + y * num_workgroups.x * WG).
//
// WGSL has no 64-bit integers: mulhilo uses 16-bit limbs, line for line as the CPU twin.
// The integer part is exact; normals go through log, sqrt, cos and sin, whose last bits
// differ between platforms, so they match the CPU to about 1e-6, not bit for bit. To keep
// that error small where WGSL's precision guarantees are weakest, ln(u1) for u1 near 1
// uses a series (log is only specified to an absolute 2^-21 on [0.5, 2], and radius =
// sqrt(-2 ln u1) magnifies an absolute error there), and cos/sin get an argument in
// [-pi, pi) (cos(t) = -cos(t - pi), sin(t) = -sin(t - pi)), their most accurate range.

struct Params {
    seed_lo: u32,
    seed_hi: u32,
    stream_lo: u32,
    stream_hi: u32,
    n: u32,
    // batch_indices: indices are drawn in [0, bound); dropout: words below it drop.
    bound: u32,
    // dropout: the kept values' factor, and 1 to add into y instead of overwriting it.
    scale: f32,
    accumulate: u32,
}

// draw_batch*: the length of a dataset row in bytes.
struct Rows {
    row_len: u32,
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

const PHILOX_M0: u32 = 0xD2511F53u;
const PHILOX_M1: u32 = 0xCD9E8D57u;
const PHILOX_W0: u32 = 0x9E3779B9u;
const PHILOX_W1: u32 = 0xBB67AE85u;
// 2^-24: a 24-bit integer times this is an exact f32 in [0, 1).
const INV_2_24: f32 = 5.9604644775390625e-8;
const TAU: f32 = 6.283185307179586;

override WG: u32 = 64u;

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read_write> out: array<u32>;
@group(0) @binding(1) var<storage, read_write> y_drop: array<f32>;
@group(0) @binding(2) var<storage, read> x_drop: array<f32>;
// normal_and_indices: the second draw's parameters and output.
@group(0) @binding(2) var<uniform> params_b: Params;
@group(0) @binding(3) var<storage, read_write> out_b: array<u32>;
// draw_batch*: the rows drawn (gather.wgsl's layout), and where they and their labels go.
@group(0) @binding(2) var<uniform> rows: Rows;
@group(0) @binding(3) var<storage, read> dataset: array<u32>;
@group(0) @binding(4) var<storage, read_write> batch_out: array<f32>;
@group(0) @binding(5) var<storage, read> labels: array<u32>;
@group(0) @binding(6) var<storage, read_write> labels_out: array<u32>;

// (high, low) 32 bits of the 64-bit product a·b.
fn mulhilo(a: u32, b: u32) -> vec2<u32> {
    let a_lo = a & 0xffffu;
    let a_hi = a >> 16u;
    let b_lo = b & 0xffffu;
    let b_hi = b >> 16u;
    let ll = a_lo * b_lo;
    let lh = a_lo * b_hi;
    let hl = a_hi * b_lo;
    let hh = a_hi * b_hi;
    // Bits 16..47 of the product, less than 3·2^16: no overflow.
    let mid = (ll >> 16u) + (lh & 0xffffu) + (hl & 0xffffu);
    let lo = (mid << 16u) | (ll & 0xffffu);
    let hi = hh + (lh >> 16u) + (hl >> 16u) + (mid >> 16u);
    return vec2(hi, lo);
}

fn philox4x32_10(counter: vec4<u32>, key: vec2<u32>) -> vec4<u32> {
    var c = counter;
    var k = key;
    for (var r = 0u; r < 10u; r++) {
        if (r > 0u) {
            k += vec2(PHILOX_W0, PHILOX_W1);
        }
        let p0 = mulhilo(PHILOX_M0, c.x);
        let p1 = mulhilo(PHILOX_M1, c.z);
        c = vec4(p1.x ^ c.y ^ k.x, p1.y, p0.x ^ c.w ^ k.y, p0.y);
    }
    return c;
}

fn block_of(p: Params, b: u32) -> vec4<u32> {
    return philox4x32_10(vec4(b, 0u, p.stream_lo, p.stream_hi), vec2(p.seed_lo, p.seed_hi));
}

fn block(b: u32) -> vec4<u32> {
    return block_of(params, b);
}

// Lemire's multiply-high of each word: indices in [0, bound).
fn below(r: vec4<u32>, bound: u32) -> vec4<u32> {
    return vec4(
        mulhilo(r.x, bound).x,
        mulhilo(r.y, bound).x,
        mulhilo(r.z, bound).x,
        mulhilo(r.w, bound).x,
    );
}

// ln(u) for u in (0, 1]; a series for u > 15/16 (truncation error < |d|^7/7 < 3e-9).
fn ln_unit(u: f32) -> f32 {
    if (u > 0.9375) {
        let d = u - 1.0; // exact (Sterbenz)
        return d * (1.0 + d * (-0.5 + d * (1.0 / 3.0 + d * (-0.25 + d * (0.2 - d / 6.0)))));
    }
    return log(u);
}

fn box_muller(ra: u32, rb: u32) -> vec2<f32> {
    let u1 = (f32(ra >> 8u) + 1.0) * INV_2_24;
    let u2 = f32(rb >> 8u) * INV_2_24;
    let radius = sqrt(-2.0 * ln_unit(u1));
    // u2 - 0.5 is exact; the angle is theta - pi for the CPU's theta = TAU·u2.
    let phi = TAU * (u2 - 0.5);
    return -radius * vec2(cos(phi), sin(phi));
}

fn block_count() -> u32 {
    return params.n / 4u + select(0u, 1u, params.n % 4u != 0u);
}

fn store(b: u32, words: vec4<u32>) {
    for (var lane = 0u; lane < 4u; lane++) {
        let i = 4u * b + lane;
        if (i < params.n) {
            out[i] = words[lane];
        }
    }
}

fn linear_id(gid: vec3<u32>, groups: vec3<u32>) -> u32 {
    return gid.x + gid.y * groups.x * WG;
}

@compute @workgroup_size(WG)
fn uniform_u32(
    @builtin(global_invocation_id) gid: vec3<u32>,
    @builtin(num_workgroups) groups: vec3<u32>,
) {
    let b = linear_id(gid, groups);
    if (b < block_count()) {
        store(b, block(b));
    }
}

@compute @workgroup_size(WG)
fn batch_indices(
    @builtin(global_invocation_id) gid: vec3<u32>,
    @builtin(num_workgroups) groups: vec3<u32>,
) {
    let b = linear_id(gid, groups);
    if (b < block_count()) {
        store(b, below(block(b), params.bound));
    }
}

@compute @workgroup_size(WG)
fn normal(
    @builtin(global_invocation_id) gid: vec3<u32>,
    @builtin(num_workgroups) groups: vec3<u32>,
) {
    let b = linear_id(gid, groups);
    if (b < block_count()) {
        let r = block(b);
        let z = vec4(box_muller(r.x, r.y), box_muller(r.z, r.w));
        store(b, bitcast<vec4<u32>>(z));
    }
}

// y (+)= mask·x·scale over the block's elements; dropout and its gradient alike.
fn masked_scale(b: u32) {
    let words = block(b);
    for (var lane = 0u; lane < 4u; lane++) {
        let i = 4u * b + lane;
        if (i < params.n) {
            var v = 0.0;
            if (words[lane] >= params.bound) {
                v = x_drop[i] * params.scale;
            }
            if (params.accumulate == 1u) {
                y_drop[i] = y_drop[i] + v;
            } else {
                y_drop[i] = v;
            }
        }
    }
}

@compute @workgroup_size(WG)
fn dropout(
    @builtin(global_invocation_id) gid: vec3<u32>,
    @builtin(num_workgroups) groups: vec3<u32>,
) {
    let b = linear_id(gid, groups);
    if (b < block_count()) {
        masked_scale(b);
    }
}

// Two draws in one dispatch: `normal` by params into out, `batch_indices` by params_b into
// out_b (a conditional generator's noise and its class labels). Block b of each draw is
// the block its own entry point computes.
@compute @workgroup_size(WG)
fn normal_and_indices(
    @builtin(global_invocation_id) gid: vec3<u32>,
    @builtin(num_workgroups) groups: vec3<u32>,
) {
    let b = linear_id(gid, groups);
    if (b < block_count()) {
        let r = block(b);
        let z = vec4(box_muller(r.x, r.y), box_muller(r.z, r.w));
        store(b, bitcast<vec4<u32>>(z));
    }
    let n = params_b.n;
    if (b < n / 4u + select(0u, 1u, n % 4u != 0u)) {
        let words = below(block_of(params_b, b), params_b.bound);
        for (var lane = 0u; lane < 4u; lane++) {
            let i = 4u * b + lane;
            if (i < n) {
                out_b[i] = words[lane];
            }
        }
    }
}

// This step's batch: row index b is element b of `batch_indices` (params.n = batch,
// params.bound = the dataset's rows), written to out; row b of batch_out is dataset row
// index·2/255 - 1, as gather.wgsl's gather_rows, and draw_batch_labels also writes its
// label, as gather_labels. One workgroup per batch row (linear workgroup id over x and y);
// every invocation draws the row's block, then strides over the row.
fn draw_row(wid: vec3<u32>, groups: vec3<u32>, lid: u32) -> vec2<u32> {
    let b = wid.x + wid.y * groups.x;
    if (b >= params.n) {
        return vec2(params.n, 0u);
    }
    let row = below(block(b / 4u), params.bound)[b % 4u];
    let len = rows.row_len;
    for (var p = lid; p < len; p += WG) {
        let byte = row * len + p;
        let value = (dataset[byte / 4u] >> ((byte % 4u) * 8u)) & 0xffu;
        batch_out[b * len + p] = f32(value) * (2.0 / 255.0) - 1.0;
    }
    if (lid == 0u) {
        out[b] = row;
    }
    return vec2(b, row);
}

@compute @workgroup_size(WG)
fn draw_batch(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) groups: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    draw_row(wid, groups, lid);
}

@compute @workgroup_size(WG)
fn draw_batch_labels(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) groups: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let drawn = draw_row(wid, groups, lid);
    if (lid == 0u && drawn.x < params.n) {
        labels_out[drawn.x] = (labels[drawn.y / 4u] >> ((drawn.y % 4u) * 8u)) & 0xffu;
    }
}
