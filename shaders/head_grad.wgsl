// The gradient that thin heads send back into the features they read, and on through the
// activation that produced those features, in one pass: a discriminator's Dense(1) (and
// its class projection) over the last hidden layer. Three instructions of the lowered
// backward pass, computed in the order the separate kernels compute them:
//
//   h[r, c]  = dy[r]·other[r, c]  (+ h[r, c] with params.accumulate)   if ROW_DOT == 1
//              (combine.wgsl's row_dot_grad: the projection's gradient)
//            = h[r, c] with params.accumulate, else 0                   if ROW_DOT == 0
//   h[r, c] += Σ_{p < k} u[r, p]·w[c, p]                 (gemm.wgsl's NT product, k small:
//              the Dense layer's input gradient dx = dy·Wᵀ, summed over p in order)
//   dx[r, c] = act'(saved[r, c])·h[r, c]  (+ dx[r, c] with params.act_accumulate)
//              (elementwise.wgsl's `backward`; saved is x for relu and leaky relu, y for
//              tanh and sigmoid)
//
// h: [rows, cols] f32 (written: it is the features' gradient); dy: [rows]; other:
// [rows, cols]; u: [rows, k]; w: [cols, k] (the Dense kernel [cols, k] row-major, read
// transposed); saved, dx: [rows, cols]. All row-major. Without ROW_DOT the launcher binds
// u in place of dy and other, which are then never read.
// One invocation per element (r, c), linear id = x + y * num_workgroups.x * WG: an
// element-wise pass, since k is at most a few (a GEMM tile would idle for k = 1).

struct Params {
    rows: u32,
    cols: u32,
    k: u32,
    // 1: h's old value is added (the row dot gradient's, or the product's, flag).
    accumulate: u32,
    // 1: dx's old value is added.
    act_accumulate: u32,
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

override WG: u32 = 256u;
// 1: h starts from the row dot product's gradient.
override ROW_DOT: u32 = 0u;
// The activation, 0 relu, 1 leaky relu (slope ALPHA), 2 tanh, 3 sigmoid.
override ACT: u32 = 0u;
override ALPHA: f32 = 0.0;
const RELU: u32 = 0u;
const LEAKY_RELU: u32 = 1u;
const TANH: u32 = 2u;

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read_write> h: array<f32>;
@group(0) @binding(2) var<storage, read> dy: array<f32>;
@group(0) @binding(3) var<storage, read> other: array<f32>;
@group(0) @binding(4) var<storage, read> u: array<f32>;
@group(0) @binding(5) var<storage, read> w: array<f32>;
@group(0) @binding(6) var<storage, read> saved: array<f32>;
@group(0) @binding(7) var<storage, read_write> dx: array<f32>;

// f'(s)·g (elementwise.wgsl's `backward`, one lane, with ALPHA for params.value).
fn activation_grad(s: f32, g: f32) -> f32 {
    switch ACT {
        case RELU: {
            return select(0.0, g, s > 0.0);
        }
        case LEAKY_RELU: {
            return select(ALPHA * g, g, s > 0.0);
        }
        case TANH: {
            return g * (1.0 - s * s);
        }
        default: {
            return g * s * (1.0 - s);
        }
    }
}

@compute @workgroup_size(WG)
fn head_grad(
    @builtin(global_invocation_id) gid: vec3<u32>,
    @builtin(num_workgroups) groups: vec3<u32>,
) {
    let i = gid.x + gid.y * groups.x * WG;
    if (i >= params.rows * params.cols) {
        return;
    }
    let r = i / params.cols;
    let c = i % params.cols;
    var start = 0.0;
    if (ROW_DOT == 1u) {
        start = dy[r] * other[i];
        if (params.accumulate == 1u) {
            start = h[i] + start;
        }
    } else if (params.accumulate == 1u) {
        start = h[i];
    }
    var product = 0.0;
    for (var p = 0u; p < params.k; p++) {
        product += u[r * params.k + p] * w[c * params.k + p];
    }
    let total = product + start;
    h[i] = total;
    let g = activation_grad(saved[i], total);
    if (params.act_accumulate == 1u) {
        dx[i] = dx[i] + g;
    } else {
        dx[i] = g;
    }
}
