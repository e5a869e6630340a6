// Ops that combine two tensors: element-wise sum, copy-or-add (the sum's gradient), and
// the row-wise dot product of a projection discriminator with its gradient.
//
// add:            y[i] = a[i] + b[i]                  (flat, any layout; len elements)
// accumulate:     y[i] = a[i + offset], or y[i] += it with accumulate (a concat's gradient
//                 reads its input's rows at an offset; an add's is offset 0)
// concat:         y = a's `cols` words then b's (len words in all), copied as bits, so
//                 labels (u32) travel as well as f32; concat_pair does two at once (the
//                 second by params_b into y2 from a2 and b2)
// row_dot:        y[r] = Σ_c a[r, c]·b[r, c]        (a, b [rows, cols] row-major; y [rows])
// row_dot_grad:   y[r, c] = a[r]·b[r, c] (+ y)       (a = dy [rows], b = the other input)
// add, accumulate and row_dot_grad map one invocation to one element (the grid may be
// split over y: linear id = x + y * num_workgroups.x * WG). row_dot gives each row one
// workgroup: its invocations sum strided columns, then a shared-memory tree adds the WG
// partial sums, so a 2304-wide row is 36 steps per invocation on a GPU, not 2304.

struct Params {
    // add, accumulate: elements; row_dot, row_dot_grad: rows.
    len: u32,
    cols: u32,
    // 1: add into y instead of overwriting it.
    accumulate: u32,
    // accumulate: the first element of a to read.
    offset: u32,
}

override WG: u32 = 64u;

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read_write> y: array<f32>;
@group(0) @binding(2) var<storage, read> a: array<f32>;
@group(0) @binding(3) var<storage, read> b: array<f32>;
@group(0) @binding(1) var<storage, read_write> y_bits: array<u32>;
@group(0) @binding(2) var<storage, read> a_bits: array<u32>;
@group(0) @binding(3) var<storage, read> b_bits: array<u32>;
// concat_pair: the second concat.
@group(0) @binding(4) var<uniform> params_b: Params;
@group(0) @binding(5) var<storage, read_write> y2_bits: array<u32>;
@group(0) @binding(6) var<storage, read> a2_bits: array<u32>;
@group(0) @binding(7) var<storage, read> b2_bits: array<u32>;

var<workgroup> partial: array<f32, WG>;

fn linear(gid: vec3<u32>, groups: vec3<u32>) -> u32 {
    return gid.x + gid.y * groups.x * WG;
}

fn store(i: u32, value: f32) {
    if (params.accumulate == 1u) {
        y[i] = y[i] + value;
    } else {
        y[i] = value;
    }
}

@compute @workgroup_size(WG)
fn add(
    @builtin(global_invocation_id) gid: vec3<u32>,
    @builtin(num_workgroups) groups: vec3<u32>,
) {
    let i = linear(gid, groups);
    if (i < params.len) {
        store(i, a[i] + b[i]);
    }
}

@compute @workgroup_size(WG)
fn accumulate(
    @builtin(global_invocation_id) gid: vec3<u32>,
    @builtin(num_workgroups) groups: vec3<u32>,
) {
    let i = linear(gid, groups);
    if (i < params.len) {
        store(i, a[i + params.offset]);
    }
}

@compute @workgroup_size(WG)
fn concat(
    @builtin(global_invocation_id) gid: vec3<u32>,
    @builtin(num_workgroups) groups: vec3<u32>,
) {
    let i = linear(gid, groups);
    if (i < params.cols) {
        y_bits[i] = a_bits[i];
    } else if (i < params.len) {
        y_bits[i] = b_bits[i - params.cols];
    }
}

// Two concats in one dispatch (a batch's images and their labels): `concat` by params
// into y_bits, and by params_b into y2_bits.
@compute @workgroup_size(WG)
fn concat_pair(
    @builtin(global_invocation_id) gid: vec3<u32>,
    @builtin(num_workgroups) groups: vec3<u32>,
) {
    let i = linear(gid, groups);
    if (i < params.cols) {
        y_bits[i] = a_bits[i];
    } else if (i < params.len) {
        y_bits[i] = b_bits[i - params.cols];
    }
    if (i < params_b.cols) {
        y2_bits[i] = a2_bits[i];
    } else if (i < params_b.len) {
        y2_bits[i] = b2_bits[i - params_b.cols];
    }
}

@compute @workgroup_size(WG)
fn row_dot(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) groups: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    // One workgroup per row; every invocation reaches the barriers (uniform control).
    let row = wid.x + wid.y * groups.x;
    var sum = 0.0;
    if (row < params.len) {
        let base = row * params.cols;
        for (var c = lid; c < params.cols; c += WG) {
            sum += a[base + c] * b[base + c];
        }
    }
    partial[lid] = sum;
    workgroupBarrier();
    for (var stride = WG / 2u; stride > 0u; stride /= 2u) {
        if (lid < stride) {
            partial[lid] += partial[lid + stride];
        }
        workgroupBarrier();
    }
    if (lid == 0u && row < params.len) {
        store(row, partial[0]);
    }
}

@compute @workgroup_size(WG)
fn row_dot_grad(
    @builtin(global_invocation_id) gid: vec3<u32>,
    @builtin(num_workgroups) groups: vec3<u32>,
) {
    let i = linear(gid, groups);
    if (i < params.len * params.cols) {
        store(i, a[i / params.cols] * b[i]);
    }
}
