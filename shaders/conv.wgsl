// 2-D convolution as implicit GEMM (no im2col buffer), NHWC, forward and backward.
//
// One geometry covers conv2d and its adjoint conv_transpose2d (the launcher maps a
// transposed conv onto the conv it is the adjoint of):
//   x  (batch, in_h, in_w, in_c)     conv input, or its gradient dx
//   w  (k_h, k_w, in_c, out_c)       HWIO (a Keras Conv2DTranspose HWOI kernel, as-is)
//   y  (batch, out_h, out_w, out_c)  conv output, or its gradient dy
//   y[b,oy,ox,co] = sum_{a,c,ci} x[b, oy*s_h + a - pad_top, ox*s_w + c - pad_left, ci]
//                                * w[a,c,ci,co]     (x = 0 outside the image)
// out_h/out_w are explicit, so padding at the bottom/right is implied (and may be
// "negative" for a transposed conv with k < s).
//
// Three GEMMs, each reducing in steps of 4:
//   conv_forward*       y = x (*) w (+ bias[co]) (+ y). Rows: the batch*out_h*out_w output
//                       pixels; columns: out_c; reduction: (a, c, ci).
//   conv_input_grad*    dx = the adjoint of conv_forward applied to dy (+ bias[ci])
//                       (+ dx). Rows: input pixels; columns: in_c; reduction: (a, c, co)
//                       over valid taps only. Pixels are split into s_h*s_w phase classes
//                       by (iy + pad_top) % s_h and (ix + pad_left) % s_w (grid z): in a
//                       class every pixel has the same taps, so with stride 2 only the
//                       valid quarter of the taps is visited, by uniform loops.
//   conv_weight_grad*   dw = sum over pixels of patch(x)^T dy (+ dw). Rows: (a, c, ci);
//                       columns: out_c; reduction: "quad rows" (4 images, one output row),
//                       4 images per step, split into `k_slices` slices of `k_chunk` quad
//                       rows. With more than one slice each writes its slice of a partial
//                       [k_slices][rows*out_c] buffer that `conv_reduce_slices` sums.
// conv_forward* and conv_input_grad* may also write f(result) into `act_dst` (binding 5),
// the activation that follows the layer (ACT, ALPHA: the same formulas as
// elementwise.wgsl's act_forward), saving that kernel's dispatch and its read of the
// result; the result itself is still written, for the activation's gradient. With
// ACT_GRAD they write the gradient through the activation that precedes them instead:
// act_dst (+)= f'(saved)·result, saved (binding 6) the activation's input x for relu and
// leaky relu, its output for tanh and sigmoid (elementwise.wgsl's act_backward).
// Variants by channel counts (the launcher picks):
//   `_vec4`       every channel axis read and written as vec4; tile 8 rows x 16 columns.
//                 Needs in_c and out_c % 4 == 0 (input grad: out_c % 4 == 0, in_c % 4 == 0
//                 and in_c > 4).
//   `_scalar_x`   forward and weight grad with in_c % 4 != 0 (an image's 1 or 3 channels):
//                 x read as scalars, w / dy as vec4; 8 x 16.
//   `_narrow`     input grad with in_c <= 4 (out_c % 4 == 0): 16 pixels x 4 channels.
//   no suffix     any shape, scalar loads; 8 x 8.
//
// Mapping: each invocation owns a register tile, kept as mat4x4 accumulators (columns:
// 4 rows of the tile, components: 4 columns) so that a reduction step of 4 is a few
// mat4x4 products. Forward and input grad take tile rows from the invocation index
// (grid x, split over y as x + y * groups.x) and columns from grid z; the weight grad
// numbers invocations (row tile, column tile, slice). No workgroup memory: llvmpipe
// executes every per-invocation load instruction, whatever its width and even at a
// uniform address, as a loop over its 8 SIMD lanes, so the design minimises load
// instructions per multiply-add (vec4 loads, 24 per 512 multiply-adds in the `_vec4`
// kernels) and avoids barriers; real GPUs serve the operand shared by a workgroup from
// cache. Tiles are written out as explicit mat4x4 code: llvmpipe does not unroll longer
// loops over register arrays (it spills them), and compiles such code in seconds instead
// of tens of seconds. The workgroup size is an override.

struct Params {
    batch: u32,
    in_h: u32,
    in_w: u32,
    in_c: u32,
    out_h: u32,
    out_w: u32,
    out_c: u32,
    k_h: u32,
    k_w: u32,
    stride_h: u32,
    stride_w: u32,
    pad_top: u32,
    pad_left: u32,
    // bit 0: add bias; bit 1: accumulate into the output
    flags: u32,
    // weight grad: quad rows (4 images, one output row) per slice, and the slice count
    k_chunk: u32,
    k_slices: u32,
    // weight grad with the bias gradient riding along (see bias_lane): the first bias
    // workgroup, pixels per bias chunk, the chunk count (0: no bias gradient) and
    // BIAS_* flags
    bias_first_group: u32,
    bias_chunk_rows: u32,
    bias_chunks: u32,
    bias_flags: u32,
}

const FLAG_BIAS: u32 = 1u;
const FLAG_ACCUMULATE: u32 = 2u;
// With ACT_GRAD: add into act_dst instead of overwriting it.
const FLAG_ACT_ACCUMULATE: u32 = 4u;
// The bias gradient sums x's channels (src1: a transposed conv's dy, seen through its
// adjoint) instead of dy's (src2: a conv's dy); add it to db instead of overwriting.
const BIAS_OF_SRC1: u32 = 1u;
const BIAS_ACCUMULATE: u32 = 2u;
const LANES: vec4<u32> = vec4(0u, 1u, 2u, 3u);

override WG: u32 = 64u;
// The fused activation: 0 relu, 1 leaky relu (slope ALPHA), 2 tanh, 3 sigmoid, 4 none.
override ACT: u32 = 4u;
override ALPHA: f32 = 0.0;
// 1: the fused activation's epilogue is its gradient, not the activation.
override ACT_GRAD: u32 = 0u;
const RELU: u32 = 0u;
const LEAKY_RELU: u32 = 1u;
const TANH: u32 = 2u;
const SIGMOID: u32 = 3u;
const TANH_CLAMP: f32 = 15.0;

@group(0) @binding(0) var<uniform> params: Params;
// forward: x, w, bias, y. input grad: dy, w, bias, dx. weight grad: x, dy, dw.
// Each binding also has a vec4 view; an entry point uses one view per binding.
@group(0) @binding(1) var<storage, read> src1: array<f32>;
@group(0) @binding(1) var<storage, read> src1_v4: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read> src2: array<f32>;
@group(0) @binding(2) var<storage, read> src2_v4: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read> bias: array<f32>;
@group(0) @binding(3) var<storage, read> bias_v4: array<vec4<f32>>;
@group(0) @binding(4) var<storage, read_write> dst: array<f32>;
@group(0) @binding(4) var<storage, read_write> dst_v4: array<vec4<f32>>;
@group(0) @binding(5) var<storage, read_write> act_dst: array<f32>;
@group(0) @binding(5) var<storage, read_write> act_dst_v4: array<vec4<f32>>;
@group(0) @binding(6) var<storage, read> act_saved: array<f32>;
@group(0) @binding(6) var<storage, read> act_saved_v4: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read_write> dw_dst: array<f32>;
@group(0) @binding(3) var<storage, read_write> dw_dst_v4: array<vec4<f32>>;
// conv_reduce_slices: partial sums, dw, db.
@group(0) @binding(1) var<storage, read> parts: array<f32>;
@group(0) @binding(2) var<storage, read_write> dw_sum: array<f32>;
@group(0) @binding(3) var<storage, read_write> db_sum: array<f32>;

// The invocation's linear index over a grid split across x and y.
fn row_tile(wid: vec3<u32>, groups: vec3<u32>, lid: u32) -> u32 {
    return (wid.x + wid.y * groups.x) * WG + lid;
}

// The fused activation (elementwise.wgsl's `forward`, with ALPHA for params.value).
fn activate(x: vec4<f32>) -> vec4<f32> {
    let zero = vec4(0.0);
    switch ACT {
        case RELU: {
            return max(x, zero);
        }
        case LEAKY_RELU: {
            return select(ALPHA * x, x, x >= zero);
        }
        case TANH: {
            return tanh(clamp(x, vec4(-TANH_CLAMP), vec4(TANH_CLAMP)));
        }
        default: {
            let e = exp(-abs(x));
            return select(e / (1.0 + e), 1.0 / (1.0 + e), x >= zero);
        }
    }
}

// f'(saved)·dy for the fused activation (elementwise.wgsl's `backward`, with ALPHA).
fn activation_grad(saved: vec4<f32>, dy: vec4<f32>) -> vec4<f32> {
    let zero = vec4(0.0);
    switch ACT {
        case RELU: {
            return select(zero, dy, saved > zero);
        }
        case LEAKY_RELU: {
            return select(ALPHA * dy, dy, saved > zero);
        }
        case TANH: {
            return dy * (1.0 - saved * saved);
        }
        default: {
            return dy * saved * (1.0 - saved);
        }
    }
}

// Writes the 4 x 4 block acc (column p: pixel rows[p], components: channels n0..n0+3)
// where the pixel row is live and the channel exists, adding bias and the old value,
// and its activation where one is fused.
fn store_block(acc: mat4x4<f32>, rows: vec4<u32>, live: vec4<bool>, n0: u32, n_len: u32) {
    let with_bias = (params.flags & FLAG_BIAS) != 0u;
    let accumulate = (params.flags & FLAG_ACCUMULATE) != 0u;
    for (var p = 0u; p < 4u; p++) {
        for (var j = 0u; j < 4u; j++) {
            let n = n0 + j;
            if (live[p] && n < n_len) {
                var v = acc[p][j];
                if (with_bias) {
                    v += bias[n];
                }
                let o = rows[p] + n;
                if (accumulate) {
                    v += dst[o];
                }
                dst[o] = v;
                if (ACT <= SIGMOID && ACT_GRAD != 0u) {
                    var g = activation_grad(vec4(act_saved[o]), vec4(v)).x;
                    if ((params.flags & FLAG_ACT_ACCUMULATE) != 0u) {
                        g += act_dst[o];
                    }
                    act_dst[o] = g;
                } else if (ACT <= SIGMOID) {
                    act_dst[o] = activate(vec4(v)).x;
                }
            }
        }
    }
}

// store_block for n_len % 4 == 0: one vec4 store per pixel.
fn store_block_v4(acc: mat4x4<f32>, rows: vec4<u32>, live: vec4<bool>, n0: u32, n_len: u32) {
    let accumulate = (params.flags & FLAG_ACCUMULATE) != 0u;
    var b = vec4(0.0);
    if ((params.flags & FLAG_BIAS) != 0u) {
        b = bias_v4[min(n0, n_len - 4u) / 4u];
    }
    for (var p = 0u; p < 4u; p++) {
        if (live[p] && n0 < n_len) {
            let o = (rows[p] + n0) / 4u;
            var v = acc[p] + b;
            if (accumulate) {
                v += dst_v4[o];
            }
            dst_v4[o] = v;
            if (ACT <= SIGMOID && ACT_GRAD != 0u) {
                var g = activation_grad(act_saved_v4[o], v);
                if ((params.flags & FLAG_ACT_ACCUMULATE) != 0u) {
                    g += act_dst_v4[o];
                }
                act_dst_v4[o] = g;
            } else if (ACT <= SIGMOID) {
                act_dst_v4[o] = activate(v);
            }
        }
    }
}

// ---------------------------------------------------------------------------------------
// conv_forward

// The receptive-field corners (wrapped u32 where negative) of 4 output pixels.
struct OutPixels {
    iy: vec4<u32>,
    ix: vec4<u32>,
    img: vec4<u32>,
    live: vec4<bool>,
    y: vec4<u32>,
}

fn out_pixels(m0: u32, m_total: u32) -> OutPixels {
    let m_raw = vec4(m0) + LANES;
    // Rows past the end compute a clamped duplicate and are not stored.
    let m = min(m_raw, vec4(max(m_total, 1u) - 1u));
    let t = m / params.out_w;
    var p: OutPixels;
    p.iy = (t % params.out_h) * params.stride_h - params.pad_top;
    p.ix = (m % params.out_w) * params.stride_w - params.pad_left;
    p.img = (t / params.out_h) * params.in_h;
    p.live = m_raw < vec4(m_total);
    p.y = m * params.out_c;
    return p;
}

// Element offsets of x[b, iy + a, ix + c, 0] for 4 pixels, 0 (and ok = false) in padding.
struct Taps {
    off: vec4<u32>,
    ok: vec4<bool>,
}

fn fwd_taps(p: OutPixels, a: u32, c: u32) -> Taps {
    let iy = p.iy + a;
    let ix = p.ix + c;
    let ok = (iy < vec4(params.in_h)) & (ix < vec4(params.in_w));
    return Taps(select(vec4(0u), ((p.img + iy) * params.in_w + ix) * params.in_c, ok), ok);
}

// Columns: 4 pixels; components: channels q..q+3 of the tap.
fn x_cols_v4(t: Taps, q: u32) -> mat4x4<f32> {
    let o = (t.off + q) / 4u;
    let z = vec4(0.0);
    return mat4x4(
        select(z, src1_v4[o.x], t.ok.x),
        select(z, src1_v4[o.y], t.ok.y),
        select(z, src1_v4[o.z], t.ok.z),
        select(z, src1_v4[o.w], t.ok.w),
    );
}

// Columns: weight rows k..k+3; components: output channels 4g..4g+3.
fn w_rows_v4(k: u32, g: u32) -> mat4x4<f32> {
    let co4 = params.out_c / 4u;
    let i = k * co4 + g;
    return mat4x4(src2_v4[i], src2_v4[i + co4], src2_v4[i + 2u * co4], src2_v4[i + 3u * co4]);
}

@compute @workgroup_size(WG)
fn conv_forward_vec4(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) groups: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let m_total = params.batch * params.out_h * params.out_w;
    let m0 = row_tile(wid, groups, lid) * 8u;
    // Channel groups past the end load a clamped duplicate and are not stored.
    let g_last = params.out_c / 4u - 1u;
    let g = min(vec4(wid.z * 4u) + LANES, vec4(g_last));
    let pa = out_pixels(m0, m_total);
    let pb = out_pixels(m0 + 4u, m_total);
    var a0 = mat4x4<f32>();
    var a1 = mat4x4<f32>();
    var a2 = mat4x4<f32>();
    var a3 = mat4x4<f32>();
    var b0 = mat4x4<f32>();
    var b1 = mat4x4<f32>();
    var b2 = mat4x4<f32>();
    var b3 = mat4x4<f32>();
    for (var a = 0u; a < params.k_h; a++) {
        for (var c = 0u; c < params.k_w; c++) {
            let ta = fwd_taps(pa, a, c);
            let tb = fwd_taps(pb, a, c);
            let k0 = (a * params.k_w + c) * params.in_c;
            for (var q = 0u; q < params.in_c; q += 4u) {
                let xa = x_cols_v4(ta, q);
                let xb = x_cols_v4(tb, q);
                let w0 = w_rows_v4(k0 + q, g.x);
                a0 += w0 * xa;
                b0 += w0 * xb;
                let w1 = w_rows_v4(k0 + q, g.y);
                a1 += w1 * xa;
                b1 += w1 * xb;
                let w2 = w_rows_v4(k0 + q, g.z);
                a2 += w2 * xa;
                b2 += w2 * xb;
                let w3 = w_rows_v4(k0 + q, g.w);
                a3 += w3 * xa;
                b3 += w3 * xb;
            }
        }
    }
    let n0 = wid.z * 16u;
    let n = params.out_c;
    store_block_v4(a0, pa.y, pa.live, n0, n);
    store_block_v4(a1, pa.y, pa.live, n0 + 4u, n);
    store_block_v4(a2, pa.y, pa.live, n0 + 8u, n);
    store_block_v4(a3, pa.y, pa.live, n0 + 12u, n);
    store_block_v4(b0, pb.y, pb.live, n0, n);
    store_block_v4(b1, pb.y, pb.live, n0 + 4u, n);
    store_block_v4(b2, pb.y, pb.live, n0 + 8u, n);
    store_block_v4(b3, pb.y, pb.live, n0 + 12u, n);
}

// Reduction index k = (a*k_w + c)*in_c + ci, stepped without divisions.
struct KPos {
    a: u32,
    c: u32,
    ci: u32,
    k: u32,
}

fn k_next(s: KPos) -> KPos {
    var n = KPos(s.a, s.c, s.ci + 1u, s.k + 1u);
    if (n.ci == params.in_c) {
        n.ci = 0u;
        n.c += 1u;
        if (n.c == params.k_w) {
            n.c = 0u;
            n.a += 1u;
        }
    }
    return n;
}

// x at reduction index s for 4 pixels (0 in padding or past the end of the reduction).
fn x_at(p: OutPixels, s: KPos, k_len: u32) -> vec4<f32> {
    let t = fwd_taps(p, s.a, s.c);
    let ok = t.ok & vec4(s.k < k_len);
    let o = select(vec4(0u), t.off + s.ci, ok);
    return select(vec4(0.0), vec4(src1[o.x], src1[o.y], src1[o.z], src1[o.w]), ok);
}

// w row k, output channels n..n+3 (0 past the end of the reduction; clamped columns).
fn w_at(k: u32, k_len: u32, n: u32) -> vec4<f32> {
    let row = min(k, k_len - 1u) * params.out_c;
    let col = min(vec4(n) + LANES, vec4(params.out_c - 1u));
    let v = vec4(src2[row + col.x], src2[row + col.y], src2[row + col.z], src2[row + col.w]);
    return select(vec4(0.0), v, k < k_len);
}

// Weight rows k..k+3 (columns; rows past k_len clamped, x is 0 there) at channel
// group g (components).
fn w_rows_v4_clamped(k: u32, k_len: u32, g: u32) -> mat4x4<f32> {
    let co4 = params.out_c / 4u;
    let r = min(vec4(k) + LANES, vec4(k_len - 1u)) * co4 + g;
    return mat4x4(src2_v4[r.x], src2_v4[r.y], src2_v4[r.z], src2_v4[r.w]);
}

// conv_forward_vec4 for in_c % 4 != 0: x read as scalars at 4 reduction indices at a time.
@compute @workgroup_size(WG)
fn conv_forward_scalar_x(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) groups: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let m_total = params.batch * params.out_h * params.out_w;
    let m0 = row_tile(wid, groups, lid) * 8u;
    let g = min(vec4(wid.z * 4u) + LANES, vec4(params.out_c / 4u - 1u));
    let pa = out_pixels(m0, m_total);
    let pb = out_pixels(m0 + 4u, m_total);
    let k_len = params.k_h * params.k_w * params.in_c;
    var a0 = mat4x4<f32>();
    var a1 = mat4x4<f32>();
    var a2 = mat4x4<f32>();
    var a3 = mat4x4<f32>();
    var b0 = mat4x4<f32>();
    var b1 = mat4x4<f32>();
    var b2 = mat4x4<f32>();
    var b3 = mat4x4<f32>();
    var s = KPos(0u, 0u, 0u, 0u);
    for (var k = 0u; k < k_len; k += 4u) {
        let s1 = k_next(s);
        let s2 = k_next(s1);
        let s3 = k_next(s2);
        let xa = transpose(mat4x4(x_at(pa, s, k_len), x_at(pa, s1, k_len), x_at(pa, s2, k_len), x_at(pa, s3, k_len)));
        let xb = transpose(mat4x4(x_at(pb, s, k_len), x_at(pb, s1, k_len), x_at(pb, s2, k_len), x_at(pb, s3, k_len)));
        let w0 = w_rows_v4_clamped(k, k_len, g.x);
        a0 += w0 * xa;
        b0 += w0 * xb;
        let w1 = w_rows_v4_clamped(k, k_len, g.y);
        a1 += w1 * xa;
        b1 += w1 * xb;
        let w2 = w_rows_v4_clamped(k, k_len, g.z);
        a2 += w2 * xa;
        b2 += w2 * xb;
        let w3 = w_rows_v4_clamped(k, k_len, g.w);
        a3 += w3 * xa;
        b3 += w3 * xb;
        s = k_next(s3);
    }
    let n0 = wid.z * 16u;
    let n = params.out_c;
    store_block_v4(a0, pa.y, pa.live, n0, n);
    store_block_v4(a1, pa.y, pa.live, n0 + 4u, n);
    store_block_v4(a2, pa.y, pa.live, n0 + 8u, n);
    store_block_v4(a3, pa.y, pa.live, n0 + 12u, n);
    store_block_v4(b0, pb.y, pb.live, n0, n);
    store_block_v4(b1, pb.y, pb.live, n0 + 4u, n);
    store_block_v4(b2, pb.y, pb.live, n0 + 8u, n);
    store_block_v4(b3, pb.y, pb.live, n0 + 12u, n);
}

@compute @workgroup_size(WG)
fn conv_forward(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) groups: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let m_total = params.batch * params.out_h * params.out_w;
    let m0 = row_tile(wid, groups, lid) * 8u;
    let n0 = wid.z * 8u;
    let pa = out_pixels(m0, m_total);
    let pb = out_pixels(m0 + 4u, m_total);
    let k_len = params.k_h * params.k_w * params.in_c;
    var acc00 = mat4x4<f32>();
    var acc01 = mat4x4<f32>();
    var acc10 = mat4x4<f32>();
    var acc11 = mat4x4<f32>();
    var s = KPos(0u, 0u, 0u, 0u);
    for (var k = 0u; k < k_len; k += 4u) {
        let s1 = k_next(s);
        let s2 = k_next(s1);
        let s3 = k_next(s2);
        let w0 = mat4x4(w_at(k, k_len, n0), w_at(k + 1u, k_len, n0), w_at(k + 2u, k_len, n0), w_at(k + 3u, k_len, n0));
        let w1 = mat4x4(w_at(k, k_len, n0 + 4u), w_at(k + 1u, k_len, n0 + 4u), w_at(k + 2u, k_len, n0 + 4u), w_at(k + 3u, k_len, n0 + 4u));
        let xa = transpose(mat4x4(x_at(pa, s, k_len), x_at(pa, s1, k_len), x_at(pa, s2, k_len), x_at(pa, s3, k_len)));
        let xb = transpose(mat4x4(x_at(pb, s, k_len), x_at(pb, s1, k_len), x_at(pb, s2, k_len), x_at(pb, s3, k_len)));
        acc00 += w0 * xa;
        acc01 += w1 * xa;
        acc10 += w0 * xb;
        acc11 += w1 * xb;
        s = k_next(s3);
    }
    store_block(acc00, pa.y, pa.live, n0, params.out_c);
    store_block(acc01, pa.y, pa.live, n0 + 4u, params.out_c);
    store_block(acc10, pb.y, pb.live, n0, params.out_c);
    store_block(acc11, pb.y, pb.live, n0 + 4u, params.out_c);
}

// ---------------------------------------------------------------------------------------
// conv_input_grad

// One phase class: input pixels iy = iy0 + s_h*th (th < cnt_h), whose valid taps are
// a = r_h + s_h*ja, reading dy row oy = uy0 + th - ja (likewise along x).
struct Phase {
    r_h: u32,
    r_w: u32,
    iy0: u32,
    ix0: u32,
    cnt_h: u32,
    cnt_w: u32,
    uy0: u32,
    ux0: u32,
}

fn phase_class(phase: u32) -> Phase {
    let s_h = params.stride_h;
    let s_w = params.stride_w;
    var p: Phase;
    p.r_h = phase / s_w;
    p.r_w = phase % s_w;
    p.iy0 = (p.r_h + s_h - params.pad_top % s_h) % s_h;
    p.ix0 = (p.r_w + s_w - params.pad_left % s_w) % s_w;
    p.cnt_h = select(0u, (params.in_h - p.iy0 + s_h - 1u) / s_h, p.iy0 < params.in_h);
    p.cnt_w = select(0u, (params.in_w - p.ix0 + s_w - 1u) / s_w, p.ix0 < params.in_w);
    p.uy0 = (p.iy0 + params.pad_top - p.r_h) / s_h;
    p.ux0 = (p.ix0 + params.pad_left - p.r_w) / s_w;
    return p;
}

// 4 input pixels of a class: the dy row/column of their first tap, the dy image's
// first row, and their dx element offsets.
struct InPixels {
    oy: vec4<u32>,
    ox: vec4<u32>,
    img: vec4<u32>,
    live: vec4<bool>,
    dx: vec4<u32>,
}

fn in_pixels(p: Phase, m0: u32, m_total: u32) -> InPixels {
    let m_raw = vec4(m0) + LANES;
    let m = min(m_raw, vec4(max(m_total, 1u) - 1u));
    let cnt_w = max(p.cnt_w, 1u);
    let cnt_h = max(p.cnt_h, 1u);
    let tw = m % cnt_w;
    let t = m / cnt_w;
    let th = t % cnt_h;
    let b = t / cnt_h;
    var r: InPixels;
    r.oy = p.uy0 + th;
    r.ox = p.ux0 + tw;
    r.img = b * params.out_h;
    r.live = m_raw < vec4(m_total);
    let iy = p.iy0 + th * params.stride_h;
    let ix = p.ix0 + tw * params.stride_w;
    r.dx = ((b * params.in_h + iy) * params.in_w + ix) * params.in_c;
    return r;
}

// dy element offsets for the tap (ja, jc) steps back from each pixel, 0 when outside.
fn grad_taps(r: InPixels, ja: u32, jc: u32) -> Taps {
    let oy = r.oy - ja;
    let ox = r.ox - jc;
    let ok = (oy < vec4(params.out_h)) & (ox < vec4(params.out_w));
    return Taps(select(vec4(0u), ((r.img + oy) * params.out_w + ox) * params.out_c, ok), ok);
}

// Columns: input channels ci0..ci0+3 (clamped); components: w[tap, ci, 4q..4q+3].
fn wt_cols_v4(tap: u32, ci0: u32, q: u32) -> mat4x4<f32> {
    let co4 = params.out_c / 4u;
    let ci = min(vec4(ci0) + LANES, vec4(params.in_c - 1u));
    let i = (tap + ci) * co4 + q;
    return mat4x4(src2_v4[i.x], src2_v4[i.y], src2_v4[i.z], src2_v4[i.w]);
}

@compute @workgroup_size(WG)
fn conv_input_grad_vec4(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) groups: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let n_tiles = (params.in_c + 15u) / 16u;
    let p = phase_class(wid.z / n_tiles);
    let n0 = (wid.z % n_tiles) * 16u;
    let m_total = params.batch * p.cnt_h * p.cnt_w;
    let m0 = row_tile(wid, groups, lid) * 8u;
    let ra = in_pixels(p, m0, m_total);
    let rb = in_pixels(p, m0 + 4u, m_total);
    let co4 = params.out_c / 4u;
    var a0 = mat4x4<f32>();
    var a1 = mat4x4<f32>();
    var a2 = mat4x4<f32>();
    var a3 = mat4x4<f32>();
    var b0 = mat4x4<f32>();
    var b1 = mat4x4<f32>();
    var b2 = mat4x4<f32>();
    var b3 = mat4x4<f32>();
    for (var a = p.r_h; a < params.k_h; a += params.stride_h) {
        for (var c = p.r_w; c < params.k_w; c += params.stride_w) {
            let ta = grad_taps(ra, a / params.stride_h, c / params.stride_w);
            let tb = grad_taps(rb, a / params.stride_h, c / params.stride_w);
            let tap = (a * params.k_w + c) * params.in_c;
            for (var q = 0u; q < co4; q++) {
                let da = x_cols_v4(ta, 4u * q);
                let db = x_cols_v4(tb, 4u * q);
                let w0 = transpose(wt_cols_v4(tap, n0, q));
                a0 += w0 * da;
                b0 += w0 * db;
                let w1 = transpose(wt_cols_v4(tap, n0 + 4u, q));
                a1 += w1 * da;
                b1 += w1 * db;
                let w2 = transpose(wt_cols_v4(tap, n0 + 8u, q));
                a2 += w2 * da;
                b2 += w2 * db;
                let w3 = transpose(wt_cols_v4(tap, n0 + 12u, q));
                a3 += w3 * da;
                b3 += w3 * db;
            }
        }
    }
    let n = params.in_c;
    store_block_v4(a0, ra.dx, ra.live, n0, n);
    store_block_v4(a1, ra.dx, ra.live, n0 + 4u, n);
    store_block_v4(a2, ra.dx, ra.live, n0 + 8u, n);
    store_block_v4(a3, ra.dx, ra.live, n0 + 12u, n);
    store_block_v4(b0, rb.dx, rb.live, n0, n);
    store_block_v4(b1, rb.dx, rb.live, n0 + 4u, n);
    store_block_v4(b2, rb.dx, rb.live, n0 + 8u, n);
    store_block_v4(b3, rb.dx, rb.live, n0 + 12u, n);
}

// conv_input_grad_vec4 for in_c <= 4 (a network's image channels): 16 pixels x 4
// channels per invocation, so few columns are wasted.
@compute @workgroup_size(WG)
fn conv_input_grad_narrow(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) groups: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let p = phase_class(wid.z);
    let m_total = params.batch * p.cnt_h * p.cnt_w;
    let m0 = row_tile(wid, groups, lid) * 16u;
    let r0 = in_pixels(p, m0, m_total);
    let r1 = in_pixels(p, m0 + 4u, m_total);
    let r2 = in_pixels(p, m0 + 8u, m_total);
    let r3 = in_pixels(p, m0 + 12u, m_total);
    let co4 = params.out_c / 4u;
    var a0 = mat4x4<f32>();
    var a1 = mat4x4<f32>();
    var a2 = mat4x4<f32>();
    var a3 = mat4x4<f32>();
    for (var a = p.r_h; a < params.k_h; a += params.stride_h) {
        for (var c = p.r_w; c < params.k_w; c += params.stride_w) {
            let ja = a / params.stride_h;
            let jc = c / params.stride_w;
            let t0 = grad_taps(r0, ja, jc);
            let t1 = grad_taps(r1, ja, jc);
            let t2 = grad_taps(r2, ja, jc);
            let t3 = grad_taps(r3, ja, jc);
            let tap = (a * params.k_w + c) * params.in_c;
            for (var q = 0u; q < co4; q++) {
                let w = transpose(wt_cols_v4(tap, 0u, q));
                a0 += w * x_cols_v4(t0, 4u * q);
                a1 += w * x_cols_v4(t1, 4u * q);
                a2 += w * x_cols_v4(t2, 4u * q);
                a3 += w * x_cols_v4(t3, 4u * q);
            }
        }
    }
    let n = params.in_c;
    store_block(a0, r0.dx, r0.live, 0u, n);
    store_block(a1, r1.dx, r1.live, 0u, n);
    store_block(a2, r2.dx, r2.live, 0u, n);
    store_block(a3, r3.dx, r3.live, 0u, n);
}

// dy channels co..co+3 for 4 pixels (0 outside, or past out_c).
fn dy_at(t: Taps, co: u32) -> mat4x4<f32> {
    let cols = vec4(co) + LANES;
    let keep = cols < vec4(params.out_c);
    let cl = min(cols, vec4(params.out_c - 1u));
    let z = vec4(0.0);
    return mat4x4(
        select(z, vec4(src1[t.off.x + cl.x], src1[t.off.x + cl.y], src1[t.off.x + cl.z], src1[t.off.x + cl.w]), keep & vec4(t.ok.x)),
        select(z, vec4(src1[t.off.y + cl.x], src1[t.off.y + cl.y], src1[t.off.y + cl.z], src1[t.off.y + cl.w]), keep & vec4(t.ok.y)),
        select(z, vec4(src1[t.off.z + cl.x], src1[t.off.z + cl.y], src1[t.off.z + cl.z], src1[t.off.z + cl.w]), keep & vec4(t.ok.z)),
        select(z, vec4(src1[t.off.w + cl.x], src1[t.off.w + cl.y], src1[t.off.w + cl.z], src1[t.off.w + cl.w]), keep & vec4(t.ok.w)),
    );
}

// Columns: input channels ci0..ci0+3 (clamped); components: w[tap, ci, co..co+3]
// (0 past out_c).
fn wt_cols(tap: u32, ci0: u32, co: u32) -> mat4x4<f32> {
    let ci = min(vec4(ci0) + LANES, vec4(params.in_c - 1u));
    let cols = vec4(co) + LANES;
    let keep = cols < vec4(params.out_c);
    let cl = min(cols, vec4(params.out_c - 1u));
    let r = (tap + ci) * params.out_c;
    let z = vec4(0.0);
    return mat4x4(
        select(z, vec4(src2[r.x + cl.x], src2[r.x + cl.y], src2[r.x + cl.z], src2[r.x + cl.w]), keep),
        select(z, vec4(src2[r.y + cl.x], src2[r.y + cl.y], src2[r.y + cl.z], src2[r.y + cl.w]), keep),
        select(z, vec4(src2[r.z + cl.x], src2[r.z + cl.y], src2[r.z + cl.z], src2[r.z + cl.w]), keep),
        select(z, vec4(src2[r.w + cl.x], src2[r.w + cl.y], src2[r.w + cl.z], src2[r.w + cl.w]), keep),
    );
}

@compute @workgroup_size(WG)
fn conv_input_grad(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) groups: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let n_tiles = (params.in_c + 7u) / 8u;
    let p = phase_class(wid.z / n_tiles);
    let n0 = (wid.z % n_tiles) * 8u;
    let m_total = params.batch * p.cnt_h * p.cnt_w;
    let m0 = row_tile(wid, groups, lid) * 8u;
    let ra = in_pixels(p, m0, m_total);
    let rb = in_pixels(p, m0 + 4u, m_total);
    var acc00 = mat4x4<f32>();
    var acc01 = mat4x4<f32>();
    var acc10 = mat4x4<f32>();
    var acc11 = mat4x4<f32>();
    for (var a = p.r_h; a < params.k_h; a += params.stride_h) {
        for (var c = p.r_w; c < params.k_w; c += params.stride_w) {
            let ta = grad_taps(ra, a / params.stride_h, c / params.stride_w);
            let tb = grad_taps(rb, a / params.stride_h, c / params.stride_w);
            let tap = (a * params.k_w + c) * params.in_c;
            for (var co = 0u; co < params.out_c; co += 4u) {
                let w0 = transpose(wt_cols(tap, n0, co));
                let w1 = transpose(wt_cols(tap, n0 + 4u, co));
                let da = dy_at(ta, co);
                let db = dy_at(tb, co);
                acc00 += w0 * da;
                acc01 += w1 * da;
                acc10 += w0 * db;
                acc11 += w1 * db;
            }
        }
    }
    store_block(acc00, ra.dx, ra.live, n0, params.in_c);
    store_block(acc01, ra.dx, ra.live, n0 + 4u, params.in_c);
    store_block(acc10, rb.dx, rb.live, n0, params.in_c);
    store_block(acc11, rb.dx, rb.live, n0 + 4u, params.in_c);
}

// ---------------------------------------------------------------------------------------
// conv_weight_grad

// 4 consecutive weight rows (a, c, ci) of an invocation.
struct WRows {
    a: vec4<u32>,
    c: vec4<u32>,
    ci: vec4<u32>,
    live: vec4<bool>,
    dw: vec4<u32>,
}

fn w_rows(r0: u32) -> WRows {
    let rows = params.k_h * params.k_w * params.in_c;
    let r_raw = vec4(r0) + LANES;
    let r = min(r_raw, vec4(max(rows, 1u) - 1u));
    let tap = r / params.in_c;
    return WRows(tap / params.k_w, tap % params.k_w, r % params.in_c, r_raw < vec4(rows), r * params.out_c);
}

// x for 4 weight rows (components) at output pixel (oy, ox) of 4 images b..b+3
// (columns); 0 in padding or past the batch. Offsets of each row's input pixel in image 0.
struct XPatch {
    off: vec4<u32>,
    ok: vec4<bool>,
}

fn x_patch(r: WRows, oy: u32, ox: u32) -> XPatch {
    let iy = oy * params.stride_h + r.a - params.pad_top;
    let ix = ox * params.stride_w + r.c - params.pad_left;
    let ok = (iy < vec4(params.in_h)) & (ix < vec4(params.in_w));
    return XPatch(select(vec4(0u), (iy * params.in_w + ix) * params.in_c + r.ci, ok), ok);
}

// Which of images b..b+3 exist.
fn image_mask(b: u32) -> vec4<bool> {
    return vec4(b) + LANES < vec4(params.batch);
}

// The reduction runs over "quad rows" (4 images, one output row: (b/4)*out_h + oy);
// slice `z` covers quad rows [x, y).
fn k_span(z: u32) -> vec2<u32> {
    let total = (params.batch + 3u) / 4u * params.out_h;
    let first = min(z * params.k_chunk, total);
    return vec2(first, min(first + params.k_chunk, total));
}

// An invocation's share of the weight gradient: 8 rows from r0, n_width columns from n0,
// and one slice of the reduction. Invocations are numbered row tile fastest, then column
// tile, then slice, so that even a small kernel (9 rows) fills whole workgroups; those
// past the last slice get no rows and an empty span.
struct WTile {
    r0: u32,
    n0: u32,
    slice: u32,
    span: vec2<u32>,
}

fn w_tile(wid: vec3<u32>, groups: vec3<u32>, lid: u32, n_width: u32) -> WTile {
    let lane = row_tile(wid, groups, lid);
    let rows = params.k_h * params.k_w * params.in_c;
    let row_tiles = max((rows + 7u) / 8u, 1u);
    let n_tiles = max((params.out_c + n_width - 1u) / n_width, 1u);
    let t = lane / row_tiles;
    var w: WTile;
    w.slice = t / n_tiles;
    w.r0 = select(rows, (lane % row_tiles) * 8u, w.slice < params.k_slices);
    w.n0 = (t % n_tiles) * n_width;
    w.span = k_span(w.slice);
    return w;
}


// The bias gradient of a weight-gradient dispatch (bias_chunks > 0): the workgroups from
// bias_first_group on (after every weight tile's, so no workgroup mixes the two) sum the
// bias source over chunks of bias_chunk_rows pixels, 4 channels per invocation, into the
// partial buffer after the weight slices: chunk q, channel c at k_slices*len + q*C4 + c,
// C4 the channel count rounded up to 4 (so vec4 stores stay aligned).
// conv_reduce_slices sums the chunks into db. This saves the bias gradient's own two
// dispatches (partial sums, then their sum) per layer.
struct BiasLane {
    live: bool,
    first: u32,
    end: u32,
    c0: u32,
    channels: u32,
    at: u32,
}

fn bias_channels() -> u32 {
    return select(params.out_c, params.in_c, (params.bias_flags & BIAS_OF_SRC1) != 0u);
}

fn bias_pixels() -> u32 {
    if ((params.bias_flags & BIAS_OF_SRC1) != 0u) {
        return params.batch * params.in_h * params.in_w;
    }
    return params.batch * params.out_h * params.out_w;
}

fn bias_workgroup(wid: vec3<u32>, groups: vec3<u32>) -> bool {
    return params.bias_chunks > 0u && wid.x + wid.y * groups.x >= params.bias_first_group;
}

fn bias_lane(wid: vec3<u32>, groups: vec3<u32>, lid: u32) -> BiasLane {
    let lane = (wid.x + wid.y * groups.x - params.bias_first_group) * WG + lid;
    let channels = bias_channels();
    let c4 = (channels + 3u) / 4u;
    let chunk = lane / c4;
    var l: BiasLane;
    l.live = chunk < params.bias_chunks;
    l.first = min(chunk * params.bias_chunk_rows, bias_pixels());
    l.end = select(l.first, min(l.first + params.bias_chunk_rows, bias_pixels()), l.live);
    l.c0 = (lane % c4) * 4u;
    l.channels = channels;
    let len = params.k_h * params.k_w * params.in_c * params.out_c;
    l.at = params.k_slices * len + chunk * c4 * 4u + l.c0;
    return l;
}

// The lane's 4 channels (clamped) of pixel p, as 4 element offsets.
fn bias_cols(l: BiasLane, p: u32) -> vec4<u32> {
    return p * l.channels + min(vec4(l.c0) + LANES, vec4(l.channels - 1u));
}

// Channels past the last are clamped reads: zeroed before the store.
fn bias_mask(l: BiasLane, sum: vec4<f32>) -> vec4<f32> {
    return select(vec4(0.0), sum, vec4(l.c0) + LANES < vec4(l.channels));
}

// One sum per view of each source, as the entry points read them (scalar or vec4, whose
// offsets need channels % 4 == 0).
fn bias_sum_src1(l: BiasLane) -> vec4<f32> {
    var sum = vec4(0.0);
    for (var p = l.first; p < l.end; p++) {
        let o = bias_cols(l, p);
        sum += vec4(src1[o.x], src1[o.y], src1[o.z], src1[o.w]);
    }
    return bias_mask(l, sum);
}

fn bias_sum_src2(l: BiasLane) -> vec4<f32> {
    var sum = vec4(0.0);
    for (var p = l.first; p < l.end; p++) {
        let o = bias_cols(l, p);
        sum += vec4(src2[o.x], src2[o.y], src2[o.z], src2[o.w]);
    }
    return bias_mask(l, sum);
}

fn bias_sum_src1_v4(l: BiasLane) -> vec4<f32> {
    var sum = vec4(0.0);
    for (var p = l.first; p < l.end; p++) {
        sum += src1_v4[(p * l.channels + l.c0) / 4u];
    }
    return sum;
}

fn bias_sum_src2_v4(l: BiasLane) -> vec4<f32> {
    var sum = vec4(0.0);
    for (var p = l.first; p < l.end; p++) {
        sum += src2_v4[(p * l.channels + l.c0) / 4u];
    }
    return sum;
}

fn bias_store(l: BiasLane, sum: vec4<f32>) {
    if (l.live) {
        dw_dst[l.at] = sum.x;
        dw_dst[l.at + 1u] = sum.y;
        dw_dst[l.at + 2u] = sum.z;
        dw_dst[l.at + 3u] = sum.w;
    }
}

fn bias_store_v4(l: BiasLane, sum: vec4<f32>) {
    if (l.live) {
        dw_dst_v4[l.at / 4u] = sum;
    }
}

@compute @workgroup_size(WG)
fn conv_weight_grad_vec4(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) groups: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    if (bias_workgroup(wid, groups)) {
        let l = bias_lane(wid, groups, lid);
        if ((params.bias_flags & BIAS_OF_SRC1) != 0u) {
            bias_store_v4(l, bias_sum_src1_v4(l));
        } else {
            bias_store_v4(l, bias_sum_src2_v4(l));
        }
        return;
    }
    // Rows come in quads of 4 channels of one tap (in_c % 4 == 0).
    let tile = w_tile(wid, groups, lid, 16u);
    let ra = w_rows(tile.r0);
    let rb = w_rows(tile.r0 + 4u);
    let co4 = params.out_c / 4u;
    let g = min(vec4(tile.n0 / 4u) + LANES, vec4(co4 - 1u));
    let x_img = params.in_h * params.in_w * params.in_c / 4u;
    let y_img = params.out_h * params.out_w * co4;
    let z = vec4(0.0);
    var a0 = mat4x4<f32>();
    var a1 = mat4x4<f32>();
    var a2 = mat4x4<f32>();
    var a3 = mat4x4<f32>();
    var b0 = mat4x4<f32>();
    var b1 = mat4x4<f32>();
    var b2 = mat4x4<f32>();
    var b3 = mat4x4<f32>();
    for (var qr = tile.span.x; qr < tile.span.y; qr++) {
        let b = 4u * (qr / params.out_h);
        let oy = qr % params.out_h;
        let img = image_mask(b);
        // Missing images read image 0's dy, which meets x = 0.
        let yb = select(vec4(0u), (b + LANES) * y_img, img) + oy * params.out_w * co4;
        for (var ox = 0u; ox < params.out_w; ox++) {
            let pa = x_patch(ra, oy, ox);
            let pb = x_patch(rb, oy, ox);
            let oka = img & vec4(pa.ok.x);
            let okb = img & vec4(pb.ok.x);
            let ia = select(vec4(0u), (b + LANES) * x_img + pa.off.x / 4u, oka);
            let ib = select(vec4(0u), (b + LANES) * x_img + pb.off.x / 4u, okb);
            // Columns: images; components: the 4 rows.
            let xa = transpose(mat4x4(
                select(z, src1_v4[ia.x], oka.x),
                select(z, src1_v4[ia.y], oka.y),
                select(z, src1_v4[ia.z], oka.z),
                select(z, src1_v4[ia.w], oka.w),
            ));
            let xb = transpose(mat4x4(
                select(z, src1_v4[ib.x], okb.x),
                select(z, src1_v4[ib.y], okb.y),
                select(z, src1_v4[ib.z], okb.z),
                select(z, src1_v4[ib.w], okb.w),
            ));
            // Columns: images; components: output channels.
            let d = yb + ox * co4;
            let d0 = mat4x4(src2_v4[d.x + g.x], src2_v4[d.y + g.x], src2_v4[d.z + g.x], src2_v4[d.w + g.x]);
            a0 += d0 * xa;
            b0 += d0 * xb;
            let d1 = mat4x4(src2_v4[d.x + g.y], src2_v4[d.y + g.y], src2_v4[d.z + g.y], src2_v4[d.w + g.y]);
            a1 += d1 * xa;
            b1 += d1 * xb;
            let d2 = mat4x4(src2_v4[d.x + g.z], src2_v4[d.y + g.z], src2_v4[d.z + g.z], src2_v4[d.w + g.z]);
            a2 += d2 * xa;
            b2 += d2 * xb;
            let d3 = mat4x4(src2_v4[d.x + g.w], src2_v4[d.y + g.w], src2_v4[d.z + g.w], src2_v4[d.w + g.w]);
            a3 += d3 * xa;
            b3 += d3 * xb;
        }
    }
    let n0 = tile.n0;
    w_store_v4(a0, ra, n0, tile.slice);
    w_store_v4(a1, ra, n0 + 4u, tile.slice);
    w_store_v4(a2, ra, n0 + 8u, tile.slice);
    w_store_v4(a3, ra, n0 + 12u, tile.slice);
    w_store_v4(b0, rb, n0, tile.slice);
    w_store_v4(b1, rb, n0 + 4u, tile.slice);
    w_store_v4(b2, rb, n0 + 8u, tile.slice);
    w_store_v4(b3, rb, n0 + 12u, tile.slice);
}

// Whether dw_dst is the partial-sum buffer that conv_reduce_slices sums (and adds to dw
// when accumulating) rather than dw itself: with more than one slice, or a bias gradient.
fn writes_partials() -> bool {
    return params.k_slices > 1u || params.bias_chunks > 0u;
}

// w_store for out_c % 4 == 0: one vec4 store per row.
fn w_store_v4(acc: mat4x4<f32>, r: WRows, n0: u32, slice: u32) {
    let len = params.k_h * params.k_w * params.in_c * params.out_c;
    let accumulate = !writes_partials() && (params.flags & FLAG_ACCUMULATE) != 0u;
    for (var p = 0u; p < 4u; p++) {
        if (r.live[p] && n0 < params.out_c) {
            let o = (slice * len + r.dw[p] + n0) / 4u;
            var v = acc[p];
            if (accumulate) {
                v += dw_dst_v4[o];
            }
            dw_dst_v4[o] = v;
        }
    }
}

// dw rows r (columns of acc) x channels n0..n0+3; into `slice` of the partial sums when
// the reduction is split.
fn w_store(acc: mat4x4<f32>, r: WRows, n0: u32, slice: u32) {
    let len = params.k_h * params.k_w * params.in_c * params.out_c;
    let accumulate = !writes_partials() && (params.flags & FLAG_ACCUMULATE) != 0u;
    for (var p = 0u; p < 4u; p++) {
        for (var j = 0u; j < 4u; j++) {
            let n = n0 + j;
            if (r.live[p] && n < params.out_c) {
                var v = acc[p][j];
                let o = slice * len + r.dw[p] + n;
                if (accumulate) {
                    v += dw_dst[o];
                }
                dw_dst[o] = v;
            }
        }
    }
}

// x of 4 weight rows (components) in the image starting at element `base`.
fn x_rows_at(pa: XPatch, base: u32, live: bool) -> vec4<f32> {
    let ok = pa.ok & vec4(live);
    let o = select(vec4(0u), vec4(base) + pa.off, ok);
    return select(vec4(0.0), vec4(src1[o.x], src1[o.y], src1[o.z], src1[o.w]), ok);
}

// dy channels n..n+3 (clamped) of the pixel at element `base`.
fn dy_cols_at(base: u32, n: u32) -> vec4<f32> {
    let col = base + min(vec4(n) + LANES, vec4(params.out_c - 1u));
    return vec4(src2[col.x], src2[col.y], src2[col.z], src2[col.w]);
}

// conv_weight_grad_vec4 for in_c % 4 != 0: x read as scalars, 4 rows x 4 images at a
// time.
@compute @workgroup_size(WG)
fn conv_weight_grad_scalar_x(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) groups: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    if (bias_workgroup(wid, groups)) {
        let l = bias_lane(wid, groups, lid);
        if ((params.bias_flags & BIAS_OF_SRC1) != 0u) {
            bias_store_v4(l, bias_sum_src1(l));
        } else {
            bias_store_v4(l, bias_sum_src2_v4(l));
        }
        return;
    }
    let tile = w_tile(wid, groups, lid, 16u);
    let ra = w_rows(tile.r0);
    let rb = w_rows(tile.r0 + 4u);
    let co4 = params.out_c / 4u;
    let g = min(vec4(tile.n0 / 4u) + LANES, vec4(co4 - 1u));
    let x_img = params.in_h * params.in_w * params.in_c;
    let y_img = params.out_h * params.out_w * co4;
    var a0 = mat4x4<f32>();
    var a1 = mat4x4<f32>();
    var a2 = mat4x4<f32>();
    var a3 = mat4x4<f32>();
    var b0 = mat4x4<f32>();
    var b1 = mat4x4<f32>();
    var b2 = mat4x4<f32>();
    var b3 = mat4x4<f32>();
    for (var qr = tile.span.x; qr < tile.span.y; qr++) {
        let b = 4u * (qr / params.out_h);
        let oy = qr % params.out_h;
        let img = image_mask(b);
        // Missing images read image 0's dy, which meets x = 0.
        let yb = select(vec4(0u), (b + LANES) * y_img, img) + oy * params.out_w * co4;
        for (var ox = 0u; ox < params.out_w; ox++) {
            let pa = x_patch(ra, oy, ox);
            let pb = x_patch(rb, oy, ox);
            // Columns: images; components: the 4 rows.
            let xa = transpose(mat4x4(
                x_rows_at(pa, b * x_img, img.x),
                x_rows_at(pa, (b + 1u) * x_img, img.y),
                x_rows_at(pa, (b + 2u) * x_img, img.z),
                x_rows_at(pa, (b + 3u) * x_img, img.w),
            ));
            let xb = transpose(mat4x4(
                x_rows_at(pb, b * x_img, img.x),
                x_rows_at(pb, (b + 1u) * x_img, img.y),
                x_rows_at(pb, (b + 2u) * x_img, img.z),
                x_rows_at(pb, (b + 3u) * x_img, img.w),
            ));
            // Columns: images; components: output channels.
            let d = yb + ox * co4;
            let d0 = mat4x4(src2_v4[d.x + g.x], src2_v4[d.y + g.x], src2_v4[d.z + g.x], src2_v4[d.w + g.x]);
            a0 += d0 * xa;
            b0 += d0 * xb;
            let d1 = mat4x4(src2_v4[d.x + g.y], src2_v4[d.y + g.y], src2_v4[d.z + g.y], src2_v4[d.w + g.y]);
            a1 += d1 * xa;
            b1 += d1 * xb;
            let d2 = mat4x4(src2_v4[d.x + g.z], src2_v4[d.y + g.z], src2_v4[d.z + g.z], src2_v4[d.w + g.z]);
            a2 += d2 * xa;
            b2 += d2 * xb;
            let d3 = mat4x4(src2_v4[d.x + g.w], src2_v4[d.y + g.w], src2_v4[d.z + g.w], src2_v4[d.w + g.w]);
            a3 += d3 * xa;
            b3 += d3 * xb;
        }
    }
    let n0 = tile.n0;
    w_store_v4(a0, ra, n0, tile.slice);
    w_store_v4(a1, ra, n0 + 4u, tile.slice);
    w_store_v4(a2, ra, n0 + 8u, tile.slice);
    w_store_v4(a3, ra, n0 + 12u, tile.slice);
    w_store_v4(b0, rb, n0, tile.slice);
    w_store_v4(b1, rb, n0 + 4u, tile.slice);
    w_store_v4(b2, rb, n0 + 8u, tile.slice);
    w_store_v4(b3, rb, n0 + 12u, tile.slice);
}

@compute @workgroup_size(WG)
fn conv_weight_grad(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) groups: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    if (bias_workgroup(wid, groups)) {
        let l = bias_lane(wid, groups, lid);
        if ((params.bias_flags & BIAS_OF_SRC1) != 0u) {
            bias_store(l, bias_sum_src1(l));
        } else {
            bias_store(l, bias_sum_src2(l));
        }
        return;
    }
    let tile = w_tile(wid, groups, lid, 8u);
    let ra = w_rows(tile.r0);
    let rb = w_rows(tile.r0 + 4u);
    let n0 = tile.n0;
    let x_img = params.in_h * params.in_w * params.in_c;
    let y_img = params.out_h * params.out_w * params.out_c;
    var acc00 = mat4x4<f32>();
    var acc01 = mat4x4<f32>();
    var acc10 = mat4x4<f32>();
    var acc11 = mat4x4<f32>();
    for (var qr = tile.span.x; qr < tile.span.y; qr++) {
        let b = 4u * (qr / params.out_h);
        let oy = qr % params.out_h;
        let img = image_mask(b);
        // Missing images read image 0's dy, which meets x = 0.
        let yb = select(vec4(0u), (b + LANES) * y_img, img);
        for (var ox = 0u; ox < params.out_w; ox++) {
            let pa = x_patch(ra, oy, ox);
            let pb = x_patch(rb, oy, ox);
            // Columns: images; components: the 4 rows.
            let xa = mat4x4(
                x_rows_at(pa, b * x_img, img.x),
                x_rows_at(pa, (b + 1u) * x_img, img.y),
                x_rows_at(pa, (b + 2u) * x_img, img.z),
                x_rows_at(pa, (b + 3u) * x_img, img.w),
            );
            let xb = mat4x4(
                x_rows_at(pb, b * x_img, img.x),
                x_rows_at(pb, (b + 1u) * x_img, img.y),
                x_rows_at(pb, (b + 2u) * x_img, img.z),
                x_rows_at(pb, (b + 3u) * x_img, img.w),
            );
            // Columns: images; components: output channels.
            let d = yb + (oy * params.out_w + ox) * params.out_c;
            let d0 = mat4x4(dy_cols_at(d.x, n0), dy_cols_at(d.y, n0), dy_cols_at(d.z, n0), dy_cols_at(d.w, n0));
            let n1 = n0 + 4u;
            let d1 = mat4x4(dy_cols_at(d.x, n1), dy_cols_at(d.y, n1), dy_cols_at(d.z, n1), dy_cols_at(d.w, n1));
            let xta = transpose(xa);
            let xtb = transpose(xb);
            acc00 += d0 * xta;
            acc01 += d1 * xta;
            acc10 += d0 * xtb;
            acc11 += d1 * xtb;
        }
    }
    w_store(acc00, ra, n0, tile.slice);
    w_store(acc01, ra, n0 + 4u, tile.slice);
    w_store(acc10, rb, n0, tile.slice);
    w_store(acc11, rb, n0 + 4u, tile.slice);
}

// Lanes that sum one weight's slices together: a power of two dividing WG. With 1 each
// invocation walks all slices of its weight (no barriers, for software adapters); with
// more, lane l adds slices l, l + RL, ... and the lanes' sums meet in a tree in workgroup
// memory, so long reductions spread over RL times more invocations.
override RL: u32 = 1u;

var<workgroup> slice_sums: array<f32, WG>;

// dw[i] = sum_s parts[s*len + i] (+ dw[i]), len = k_h*k_w*in_c*out_c; then, with a bias
// gradient, db[j] = sum_q parts[k_slices*len + q*C4 + j] (+ db[j]) as elements len + j. A
// workgroup owns WG / RL consecutive elements.
@compute @workgroup_size(WG)
fn conv_reduce_slices(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
    @builtin(num_workgroups) groups: vec3<u32>,
) {
    let len = params.k_h * params.k_w * params.in_c * params.out_c;
    let i = (wid.x + wid.y * groups.x) * (WG / RL) + lid / RL;
    let lane = lid % RL;
    let is_bias = i >= len;
    let j = i - select(0u, len, is_bias);
    let channels = select(0u, bias_channels(), params.bias_chunks > 0u);
    let live = i < len || j < channels;
    let base = select(0u, params.k_slices * len, is_bias);
    let part_stride = select(len, (channels + 3u) / 4u * 4u, is_bias);
    let count = select(params.k_slices, params.bias_chunks, is_bias);
    var v = 0.0;
    if (live) {
        for (var s = lane; s < count; s += RL) {
            v += parts[base + s * part_stride + j];
        }
    }
    if (RL > 1u) {
        slice_sums[lid] = v;
        workgroupBarrier();
        for (var stride = RL / 2u; stride > 0u; stride /= 2u) {
            if (lane < stride) {
                slice_sums[lid] += slice_sums[lid + stride];
            }
            workgroupBarrier();
        }
        v = slice_sums[lid];
    }
    if (lane != 0u || !live) {
        return;
    }
    if (is_bias) {
        if ((params.bias_flags & BIAS_ACCUMULATE) != 0u) {
            v += db_sum[j];
        }
        db_sum[j] = v;
        return;
    }
    if ((params.flags & FLAG_ACCUMULATE) != 0u) {
        v += dw_sum[i];
    }
    dw_sum[i] = v;
}
