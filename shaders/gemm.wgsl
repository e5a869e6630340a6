// Dense matrix products and the bias-gradient reduction, row-major f32.
//
// GEMM: C[i, j] = sum_p opA[i, p] * opB[p, j]  (+ bias term)  (+ C[i, j] if accumulate)
//   opA (m, k), opB (k, n), C (m, n). Every operand is addressed through strides from
//   Params, so one kernel serves NN/NT/TN/TT and the launcher's role swap
//   (C^T = opB^T opA^T, written through swapped C strides):
//     opA[i, p] = a[i * a_stride_m + p * a_stride_k]
//     opB[p, j] = b[p * b_stride_k + j * b_stride_n]
//     C[i, j]   = c[i * c_stride_m + j * c_stride_n]
//     bias term = bias[i * bias_stride_m + j * bias_stride_n]   (only when has_bias)
//   Dense layers: y = x·W + b is NN with bias along columns; dx = dy·W^T is NT;
//   dW = x^T·dy is TN, accumulated into the gradient buffer.
//   Out-of-range rows and columns are clamped for loads and skipped for stores, so any
//   m, n, k works (k = 0 gives the bias, or leaves C unchanged when accumulating).
//
// Kernels (the launcher picks one):
//   gemm_tiled          for GPUs: a TILED_WG x TILED_WG workgroup computes a block of
//                       TILED_WG*4 rows and columns. Each K step of TILED_BK stages an A
//                       and a B tile in workgroup memory, loaded so that neighbouring
//                       invocations read neighbouring addresses whichever operand axis
//                       is contiguous; then invocation (lx, ly) accumulates the 4 x 4
//                       outputs at rows ly + TILED_WG*r and columns lx + TILED_WG*s
//                       (conflict-free tile reads, coalesced stores).
//   gemm_register*      for CPU adapters (llvmpipe), where workgroup memory behind
//                       barriers is very slow: no workgroup memory; a REG_WG_X x REG_WG_Y
//                       workgroup covers REG_WG_Y*16 rows and REG_WG_X*8 columns, each
//                       invocation a 16 x 8 register tile (contiguous rows and columns)
//                       streamed over k four steps at a time. Suffixes say which
//                       operand is loaded as vec4 (one per-invocation load instead of
//                       four): `_vec4_a` four k steps of opA (needs a_stride_k == 1 and
//                       a_stride_m a multiple of 4), `_vec4_b` four columns of opB
//                       (needs b_stride_n == 1, b_stride_k and n multiples of 4).
//   gemm_register_thin* for n < 8 (matrix-vector products): each invocation computes 4
//                       rows of one column; a 1 x THIN_WG workgroup covers 4*THIN_WG
//                       rows. `_vec4_k` reads both operands as vec4 along k (needs
//                       a_stride_k == b_stride_k == 1, a_stride_m a multiple of 4, and
//                       n == 1 or b_stride_n a multiple of 4); `_vec4_rows` reads opA as
//                       vec4 over the 4 rows (needs a_stride_m == 1, a_stride_k a
//                       multiple of 4).
//   gemm_dot            for GPUs, thin products with a long k (a Dense(1) layer): one
//                       DOT_WG workgroup per output element; invocation l adds the
//                       products p = l, l + DOT_WG, ... and the workgroup's sums meet in
//                       a tree in workgroup memory. Grid: the m*n outputs over x and y.
//   gemm_columns_bias   a thin Dense layer's weight gradient and its bias gradient in one
//                       dispatch (n of a few units, k = the batch): invocation o < m*n of a
//                       COL_WG workgroup computes C[o / n, o % n] walking k in order (for
//                       dW = x^T·dy neighbouring invocations read neighbouring x), and the
//                       n invocations from the next workgroup on write db[j] = sum_p opB[p, j]
//                       (+ db[j] with BIAS_ACCUMULATE) into binding 7: the bias gradient of
//                       the same dy. No workgroup memory, no barrier.
//   Register tiles are consts (function-scope arrays need constant sizes) and written
//   out by hand rather than as loops: llvmpipe does not unroll the longer loops, and it
//   ends a shader invocation's loops after 65535 iterations in total (all loops
//   together), so the k loop (k/4 iterations) must be the only one that scales with the
//   problem; the launcher refuses shapes that would pass that limit on a software
//   adapter. Entry points share one body and differ in constant flags that fold away.
//   Grid: x over column blocks, y over row blocks.
//
// Bias gradient: db[j] = sum_r dy[r, j] (+ db[j] if accumulate), dy (rows, cols).
//   bias_grad  a BG_COLS x BG_ROWS workgroup owns BG_COLS columns; invocation (x, y)
//              sums rows y, y + BG_ROWS, ... of column x (neighbouring invocations read
//              neighbouring columns), then row group 0 adds the BG_ROWS partial sums
//              from workgroup memory. Grid: x over column blocks, y over chunks of
//              chunk_rows rows; chunk y writes row y of db (chunks, cols), so a long
//              reduction runs as partial sums over many workgroups, then this same
//              kernel over the (chunks, cols) partial sums.

struct Params {
    m: u32,
    n: u32,
    k: u32,
    accumulate: u32,
    a_stride_m: u32,
    a_stride_k: u32,
    b_stride_k: u32,
    b_stride_n: u32,
    c_stride_m: u32,
    c_stride_n: u32,
    bias_stride_m: u32,
    bias_stride_n: u32,
    has_bias: u32,
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

struct BiasGradParams {
    rows: u32,
    cols: u32,
    accumulate: u32,
    chunk_rows: u32,
}

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> a: array<f32>;
@group(0) @binding(2) var<storage, read> b: array<f32>;
@group(0) @binding(3) var<storage, read> bias: array<f32>;
@group(0) @binding(4) var<storage, read_write> c: array<f32>;
// The A and B buffers again, seen as vec4 (the launcher binds each buffer twice): the
// register kernels choose a view by a constant flag, so both are statically used.
@group(0) @binding(5) var<storage, read> a4: array<vec4<f32>>;
@group(0) @binding(6) var<storage, read> b4: array<vec4<f32>>;

@group(0) @binding(0) var<uniform> bg_params: BiasGradParams;
@group(0) @binding(1) var<storage, read> dy: array<f32>;
@group(0) @binding(2) var<storage, read_write> db: array<f32>;

// Writes one finished element: adds the bias and, when accumulating, the old value.
fn store_c(i: u32, j: u32, value: f32) {
    let at = i * params.c_stride_m + j * params.c_stride_n;
    var out = value;
    if (params.has_bias != 0u) {
        out += bias[i * params.bias_stride_m + j * params.bias_stride_n];
    }
    if (params.accumulate != 0u) {
        out += c[at];
    }
    c[at] = out;
}

// Stores the in-range outputs among row i, columns j, j + step, j + 2 step, j + 3 step.
fn store_4(i: u32, j: u32, step: u32, v: vec4<f32>) {
    if (i >= params.m) {
        return;
    }
    if (j < params.n) {
        store_c(i, j, v.x);
    }
    if (j + step < params.n) {
        store_c(i, j + step, v.y);
    }
    if (j + 2u * step < params.n) {
        store_c(i, j + 2u * step, v.z);
    }
    if (j + 3u * step < params.n) {
        store_c(i, j + 3u * step, v.w);
    }
}

// ---- gemm_tiled -------------------------------------------------------------------

override TILED_WG: u32 = 16u;
override TILED_BK: u32 = 16u;

// [kk][row] and [kk][column] of the current K step; a block side is TILED_WG * 4.
var<workgroup> tile_a: array<f32, TILED_BK * TILED_WG * 4u>;
var<workgroup> tile_b: array<f32, TILED_BK * TILED_WG * 4u>;

@compute @workgroup_size(TILED_WG, TILED_WG)
fn gemm_tiled(
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(local_invocation_id) lid: vec3<u32>,
) {
    let side = TILED_WG * 4u;
    let row0 = wg.y * side;
    let col0 = wg.x * side;
    let tid = lid.y * TILED_WG + lid.x;
    let threads = TILED_WG * TILED_WG;
    let tile_len = TILED_BK * side;
    // Walk each tile along the operand's contiguous axis so loads coalesce.
    let a_along_k = params.a_stride_k == 1u;
    let b_along_n = params.b_stride_n == 1u;
    let w = TILED_WG;

    // acc[r][s]: row ly + w*r, column lx + w*s.
    var acc: array<vec4<f32>, 4>;
    for (var k0 = 0u; k0 < params.k; k0 += TILED_BK) {
        for (var e = tid; e < tile_len; e += threads) {
            let kk = select(e / side, e % TILED_BK, a_along_k);
            let r = select(e % side, e / TILED_BK, a_along_k);
            var v = 0.0;
            if (row0 + r < params.m && k0 + kk < params.k) {
                v = a[(row0 + r) * params.a_stride_m + (k0 + kk) * params.a_stride_k];
            }
            tile_a[kk * side + r] = v;
        }
        for (var e = tid; e < tile_len; e += threads) {
            let kk = select(e % TILED_BK, e / side, b_along_n);
            let s = select(e / TILED_BK, e % side, b_along_n);
            var v = 0.0;
            if (col0 + s < params.n && k0 + kk < params.k) {
                v = b[(k0 + kk) * params.b_stride_k + (col0 + s) * params.b_stride_n];
            }
            tile_b[kk * side + s] = v;
        }
        workgroupBarrier();
        for (var kk = 0u; kk < TILED_BK; kk++) {
            let at_a = kk * side + lid.y;
            let at_b = kk * side + lid.x;
            let bv = vec4(tile_b[at_b], tile_b[at_b + w], tile_b[at_b + 2u * w], tile_b[at_b + 3u * w]);
            acc[0] = fma(vec4(tile_a[at_a]), bv, acc[0]);
            acc[1] = fma(vec4(tile_a[at_a + w]), bv, acc[1]);
            acc[2] = fma(vec4(tile_a[at_a + 2u * w]), bv, acc[2]);
            acc[3] = fma(vec4(tile_a[at_a + 3u * w]), bv, acc[3]);
        }
        workgroupBarrier();
    }
    let i = row0 + lid.y;
    let j = col0 + lid.x;
    store_4(i, j, w, acc[0]);
    store_4(i + w, j, w, acc[1]);
    store_4(i + 2u * w, j, w, acc[2]);
    store_4(i + 3u * w, j, w, acc[3]);
}

// ---- gemm_register, gemm_register_vec4_a / _vec4_b / _vec4_ab ----------------------

override REG_WG_X: u32 = 8u;
override REG_WG_Y: u32 = 8u;
// Rows and columns per invocation. REG_TM is 4, 8 or 16 (`gan-gpu tune` picks per
// shape); the rows it leaves out are constant-false branches that the compiler drops.
override REG_TM: u32 = 16u;
const REG_TN: u32 = 8u;

// Eight columns of opB row p, or zeros when p >= k. `cols` holds what
// register_b_columns computed for the same `vec4_b`.
fn register_b_row(p: u32, cols: array<u32, 8>, vec4_b: bool) -> array<vec4<f32>, 2> {
    let q = min(p, params.k - 1u);
    var v: array<vec4<f32>, 2>;
    if (vec4_b) {
        let at = q * (params.b_stride_k / 4u);
        v = array(b4[at + cols[0]], b4[at + cols[1]]);
    } else {
        let at = q * params.b_stride_k;
        v = array(
            vec4(b[at + cols[0]], b[at + cols[1]], b[at + cols[2]], b[at + cols[3]]),
            vec4(b[at + cols[4]], b[at + cols[5]], b[at + cols[6]], b[at + cols[7]]),
        );
    }
    if (p >= params.k) {
        v = array(vec4(0.0), vec4(0.0));
    }
    return v;
}

// Offsets of columns col0..col0+7 of opB within a row, clamped to n - 1: eight scalar
// offsets, or two vec4 indices in cols[0] and cols[1].
fn register_b_columns(col0: u32, vec4_b: bool) -> array<u32, 8> {
    var cols: array<u32, 8>;
    if (vec4_b) {
        // n % 4 == 0, so a clamped group is still a whole vec4 of the row.
        cols[0] = min(col0, params.n - 4u) / 4u;
        cols[1] = min(col0 + 4u, params.n - 4u) / 4u;
    } else {
        let last = params.n - 1u;
        let s = params.b_stride_n;
        cols = array(
            min(col0, last) * s, min(col0 + 1u, last) * s,
            min(col0 + 2u, last) * s, min(col0 + 3u, last) * s,
            min(col0 + 4u, last) * s, min(col0 + 5u, last) * s,
            min(col0 + 6u, last) * s, min(col0 + 7u, last) * s,
        );
    }
    return cols;
}

// opA[row, p..p+3] for the row starting at offset `row_at`, zero past k.
fn register_a_quad(row_at: u32, p: u32, vec4_a: bool) -> vec4<f32> {
    var v: vec4<f32>;
    if (vec4_a) {
        v = a4[(row_at + p) / 4u];
    } else {
        let s = params.a_stride_k;
        let last = params.k - 1u;
        v = vec4(
            a[row_at + p * s],
            a[row_at + min(p + 1u, last) * s],
            a[row_at + min(p + 2u, last) * s],
            a[row_at + min(p + 3u, last) * s],
        );
    }
    return select(vec4(0.0), v, vec4(p, p + 1u, p + 2u, p + 3u) < vec4(params.k));
}

// Four k steps of one tile row: acc[2r], acc[2r + 1] += av[q] * bq for q = 0..3.
fn register_row_step(
    acc: ptr<function, array<vec4<f32>, 32>>,
    r: u32,
    av: vec4<f32>,
    b0: array<vec4<f32>, 2>,
    b1: array<vec4<f32>, 2>,
    b2: array<vec4<f32>, 2>,
    b3: array<vec4<f32>, 2>,
) {
    var lo = (*acc)[2u * r];
    var hi = (*acc)[2u * r + 1u];
    lo = fma(vec4(av.x), b0[0], lo);
    hi = fma(vec4(av.x), b0[1], hi);
    lo = fma(vec4(av.y), b1[0], lo);
    hi = fma(vec4(av.y), b1[1], hi);
    lo = fma(vec4(av.z), b2[0], lo);
    hi = fma(vec4(av.z), b2[1], hi);
    lo = fma(vec4(av.w), b3[0], lo);
    hi = fma(vec4(av.w), b3[1], hi);
    (*acc)[2u * r] = lo;
    (*acc)[2u * r + 1u] = hi;
}

// Stores tile row r (row0 + r, columns col0..col0+7).
fn register_store_row(acc: ptr<function, array<vec4<f32>, 32>>, r: u32, row0: u32, col0: u32) {
    store_4(row0 + r, col0, 1u, (*acc)[2u * r]);
    store_4(row0 + r, col0 + 4u, 1u, (*acc)[2u * r + 1u]);
}

// The whole REG_TM x 8 tile of one invocation; the entry points differ only in the (constant)
// load flags, which fold away.
fn register_tile(wg: vec3<u32>, lid: vec3<u32>, vec4_a: bool, vec4_b: bool) {
    let row0 = (wg.y * REG_WG_Y + lid.y) * REG_TM;
    let col0 = (wg.x * REG_WG_X + lid.x) * REG_TN;
    let cols = register_b_columns(col0, vec4_b);
    // Rows past m are clamped to m - 1 (computed, never stored).
    let last = params.m - 1u;
    let sm = params.a_stride_m;
    let rows = array(
        min(row0, last) * sm, min(row0 + 1u, last) * sm,
        min(row0 + 2u, last) * sm, min(row0 + 3u, last) * sm,
        min(row0 + 4u, last) * sm, min(row0 + 5u, last) * sm,
        min(row0 + 6u, last) * sm, min(row0 + 7u, last) * sm,
        min(row0 + 8u, last) * sm, min(row0 + 9u, last) * sm,
        min(row0 + 10u, last) * sm, min(row0 + 11u, last) * sm,
        min(row0 + 12u, last) * sm, min(row0 + 13u, last) * sm,
        min(row0 + 14u, last) * sm, min(row0 + 15u, last) * sm,
    );
    var acc: array<vec4<f32>, 32>;
    for (var p = 0u; p < params.k; p += 4u) {
        let b0 = register_b_row(p, cols, vec4_b);
        let b1 = register_b_row(p + 1u, cols, vec4_b);
        let b2 = register_b_row(p + 2u, cols, vec4_b);
        let b3 = register_b_row(p + 3u, cols, vec4_b);
        register_row_step(&acc, 0u, register_a_quad(rows[0], p, vec4_a), b0, b1, b2, b3);
        register_row_step(&acc, 1u, register_a_quad(rows[1], p, vec4_a), b0, b1, b2, b3);
        register_row_step(&acc, 2u, register_a_quad(rows[2], p, vec4_a), b0, b1, b2, b3);
        register_row_step(&acc, 3u, register_a_quad(rows[3], p, vec4_a), b0, b1, b2, b3);
        if (REG_TM > 4u) {
            register_row_step(&acc, 4u, register_a_quad(rows[4], p, vec4_a), b0, b1, b2, b3);
            register_row_step(&acc, 5u, register_a_quad(rows[5], p, vec4_a), b0, b1, b2, b3);
            register_row_step(&acc, 6u, register_a_quad(rows[6], p, vec4_a), b0, b1, b2, b3);
            register_row_step(&acc, 7u, register_a_quad(rows[7], p, vec4_a), b0, b1, b2, b3);
        }
        if (REG_TM > 8u) {
            register_row_step(&acc, 8u, register_a_quad(rows[8], p, vec4_a), b0, b1, b2, b3);
            register_row_step(&acc, 9u, register_a_quad(rows[9], p, vec4_a), b0, b1, b2, b3);
            register_row_step(&acc, 10u, register_a_quad(rows[10], p, vec4_a), b0, b1, b2, b3);
            register_row_step(&acc, 11u, register_a_quad(rows[11], p, vec4_a), b0, b1, b2, b3);
            register_row_step(&acc, 12u, register_a_quad(rows[12], p, vec4_a), b0, b1, b2, b3);
            register_row_step(&acc, 13u, register_a_quad(rows[13], p, vec4_a), b0, b1, b2, b3);
            register_row_step(&acc, 14u, register_a_quad(rows[14], p, vec4_a), b0, b1, b2, b3);
            register_row_step(&acc, 15u, register_a_quad(rows[15], p, vec4_a), b0, b1, b2, b3);
        }
    }
    register_store_row(&acc, 0u, row0, col0);
    register_store_row(&acc, 1u, row0, col0);
    register_store_row(&acc, 2u, row0, col0);
    register_store_row(&acc, 3u, row0, col0);
    if (REG_TM > 4u) {
        register_store_row(&acc, 4u, row0, col0);
        register_store_row(&acc, 5u, row0, col0);
        register_store_row(&acc, 6u, row0, col0);
        register_store_row(&acc, 7u, row0, col0);
    }
    if (REG_TM > 8u) {
        register_store_row(&acc, 8u, row0, col0);
        register_store_row(&acc, 9u, row0, col0);
        register_store_row(&acc, 10u, row0, col0);
        register_store_row(&acc, 11u, row0, col0);
        register_store_row(&acc, 12u, row0, col0);
        register_store_row(&acc, 13u, row0, col0);
        register_store_row(&acc, 14u, row0, col0);
        register_store_row(&acc, 15u, row0, col0);
    }
}

@compute @workgroup_size(REG_WG_X, REG_WG_Y)
fn gemm_register(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    register_tile(wg, lid, false, false);
}

@compute @workgroup_size(REG_WG_X, REG_WG_Y)
fn gemm_register_vec4_a(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    register_tile(wg, lid, true, false);
}

@compute @workgroup_size(REG_WG_X, REG_WG_Y)
fn gemm_register_vec4_b(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    register_tile(wg, lid, false, true);
}

@compute @workgroup_size(REG_WG_X, REG_WG_Y)
fn gemm_register_vec4_ab(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    register_tile(wg, lid, true, true);
}

// ---- gemm_register_thin, _thin_vec4_k, _thin_vec4_rows -----------------------------

// How thin_quad reads opA: scalars, vec4 along k, or vec4 along four rows.
const THIN_A_SCALAR: u32 = 0u;
const THIN_A_ALONG_K: u32 = 1u;
const THIN_A_ALONG_ROWS: u32 = 2u;

// acc + sum over q < 4 of opA[rows, p + q] * opB[p + q, col] for the four row offsets
// `rows` and the column offset `col`, terms past k being zero. `a_mode` and `vec4_b`
// (opB as vec4 along k) are constants of the entry point.
fn thin_quad(acc: vec4<f32>, p: u32, rows: vec4<u32>, col: u32, a_mode: u32, vec4_b: bool) -> vec4<f32> {
    let q = min(vec4(p, p + 1u, p + 2u, p + 3u), vec4(params.k - 1u));
    let ak = q * params.a_stride_k;
    // c[i]: opA[rows, p + i], one lane per row.
    var c: array<vec4<f32>, 4>;
    if (a_mode == THIN_A_ALONG_K) {
        let r0 = a4[(rows.x + p) / 4u];
        let r1 = a4[(rows.y + p) / 4u];
        let r2 = a4[(rows.z + p) / 4u];
        let r3 = a4[(rows.w + p) / 4u];
        c = array(
            vec4(r0.x, r1.x, r2.x, r3.x),
            vec4(r0.y, r1.y, r2.y, r3.y),
            vec4(r0.z, r1.z, r2.z, r3.z),
            vec4(r0.w, r1.w, r2.w, r3.w),
        );
    } else if (a_mode == THIN_A_ALONG_ROWS) {
        c = array(
            a4[(rows.x + ak.x) / 4u],
            a4[(rows.x + ak.y) / 4u],
            a4[(rows.x + ak.z) / 4u],
            a4[(rows.x + ak.w) / 4u],
        );
    } else {
        c = array(
            vec4(a[rows.x + ak.x], a[rows.y + ak.x], a[rows.z + ak.x], a[rows.w + ak.x]),
            vec4(a[rows.x + ak.y], a[rows.y + ak.y], a[rows.z + ak.y], a[rows.w + ak.y]),
            vec4(a[rows.x + ak.z], a[rows.y + ak.z], a[rows.z + ak.z], a[rows.w + ak.z]),
            vec4(a[rows.x + ak.w], a[rows.y + ak.w], a[rows.z + ak.w], a[rows.w + ak.w]),
        );
    }
    var bv: vec4<f32>;
    if (vec4_b) {
        bv = b4[(col + p) / 4u];
    } else {
        let bk = q * params.b_stride_k + vec4(col);
        bv = vec4(b[bk.x], b[bk.y], b[bk.z], b[bk.w]);
    }
    let ok = vec4(p, p + 1u, p + 2u, p + 3u) < vec4(params.k);
    let z = vec4(0.0);
    bv = select(z, bv, ok);
    var out = fma(select(z, c[0], ok.x), vec4(bv.x), acc);
    out = fma(select(z, c[1], ok.y), vec4(bv.y), out);
    out = fma(select(z, c[2], ok.z), vec4(bv.z), out);
    return fma(select(z, c[3], ok.w), vec4(bv.w), out);
}

override THIN_WG: u32 = 16u;

fn thin_tile(wg: vec3<u32>, lid: vec3<u32>, a_mode: u32, vec4_b: bool) {
    let row0 = (wg.y * THIN_WG + lid.y) * 4u;
    let j = wg.x;
    // Rows past m are clamped (computed, never stored); the vec4-along-rows view reads
    // rows row0..row0+3 from rows.x whatever m is, and is likewise only stored in range.
    let rows = min(row0 + vec4(0u, 1u, 2u, 3u), vec4(params.m - 1u)) * params.a_stride_m;
    let col = j * params.b_stride_n;
    var acc = vec4(0.0);
    for (var p = 0u; p < params.k; p += 4u) {
        acc = thin_quad(acc, p, rows, col, a_mode, vec4_b);
    }
    if (row0 < params.m) {
        store_c(row0, j, acc.x);
    }
    if (row0 + 1u < params.m) {
        store_c(row0 + 1u, j, acc.y);
    }
    if (row0 + 2u < params.m) {
        store_c(row0 + 2u, j, acc.z);
    }
    if (row0 + 3u < params.m) {
        store_c(row0 + 3u, j, acc.w);
    }
}

@compute @workgroup_size(1, THIN_WG)
fn gemm_register_thin(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    thin_tile(wg, lid, THIN_A_SCALAR, false);
}

@compute @workgroup_size(1, THIN_WG)
fn gemm_register_thin_vec4_k(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    thin_tile(wg, lid, THIN_A_ALONG_K, true);
}

@compute @workgroup_size(1, THIN_WG)
fn gemm_register_thin_vec4_rows(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    thin_tile(wg, lid, THIN_A_ALONG_ROWS, false);
}

// ---- gemm_dot ------------------------------------------------------------------------

override DOT_WG: u32 = 64u;

var<workgroup> dot_sums: array<f32, DOT_WG>;

@compute @workgroup_size(DOT_WG)
fn gemm_dot(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
    @builtin(num_workgroups) groups: vec3<u32>,
) {
    // Uniform over the workgroup, so the early exit keeps the barriers uniform.
    let o = wid.x + wid.y * groups.x;
    if (o >= params.m * params.n) {
        return;
    }
    let i = o / params.n;
    let j = o % params.n;
    var sum = 0.0;
    for (var p = lid; p < params.k; p += DOT_WG) {
        sum += a[i * params.a_stride_m + p * params.a_stride_k]
            * b[p * params.b_stride_k + j * params.b_stride_n];
    }
    dot_sums[lid] = sum;
    workgroupBarrier();
    for (var stride = DOT_WG / 2u; stride > 0u; stride /= 2u) {
        if (lid < stride) {
            dot_sums[lid] += dot_sums[lid + stride];
        }
        workgroupBarrier();
    }
    if (lid == 0u) {
        store_c(i, j, dot_sums[0]);
    }
}

// ---- gemm_columns_bias -----------------------------------------------------------------

override COL_WG: u32 = 16u;
// 1: the bias gradient is added to db's old value.
override BIAS_ACCUMULATE: u32 = 0u;

@group(0) @binding(7) var<storage, read_write> db_cols: array<f32>;

@compute @workgroup_size(COL_WG)
fn gemm_columns_bias(
    @builtin(global_invocation_id) gid: vec3<u32>,
    @builtin(num_workgroups) groups: vec3<u32>,
) {
    let o = gid.x + gid.y * groups.x * COL_WG;
    let outputs = params.m * params.n;
    // The bias invocations start at the next workgroup.
    let first_bias = (outputs + COL_WG - 1u) / COL_WG * COL_WG;
    if (o < outputs) {
        let i = o / params.n;
        let j = o % params.n;
        var sum = 0.0;
        for (var p = 0u; p < params.k; p++) {
            sum += a[i * params.a_stride_m + p * params.a_stride_k]
                * b[p * params.b_stride_k + j * params.b_stride_n];
        }
        store_c(i, j, sum);
    } else if (o >= first_bias && o < first_bias + params.n) {
        let j = o - first_bias;
        var sum = 0.0;
        for (var p = 0u; p < params.k; p++) {
            sum += b[p * params.b_stride_k + j * params.b_stride_n];
        }
        if (BIAS_ACCUMULATE != 0u) {
            sum += db_cols[j];
        }
        db_cols[j] = sum;
    }
}

// ---- bias_grad ----------------------------------------------------------------------

override BG_COLS: u32 = 64u;
override BG_ROWS: u32 = 4u;

var<workgroup> bg_partial: array<f32, BG_COLS * BG_ROWS>;

@compute @workgroup_size(BG_COLS, BG_ROWS)
fn bias_grad(
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(local_invocation_id) lid: vec3<u32>,
) {
    let cols = bg_params.cols;
    let col = wg.x * BG_COLS + lid.x;
    // Clamped so that no loop exit diverges; the store is guarded instead.
    let load_col = min(col, cols - 1u);
    let g = BG_ROWS;
    let start = wg.y * bg_params.chunk_rows;
    // The launcher's chunks all start inside the rows.
    let end = start + min(bg_params.chunk_rows, bg_params.rows - start);
    var sum = 0.0;
    // Four rows per iteration: fewer iterations against llvmpipe's loop limit.
    var r = start + lid.y;
    for (; r + 3u * g < end; r += 4u * g) {
        let at = r * cols + load_col;
        sum += (dy[at] + dy[at + g * cols]) + (dy[at + 2u * g * cols] + dy[at + 3u * g * cols]);
    }
    for (; r < end; r += g) {
        sum += dy[r * cols + load_col];
    }
    bg_partial[lid.y * BG_COLS + lid.x] = sum;
    workgroupBarrier();
    if (lid.y == 0u && col < cols) {
        var total = 0.0;
        for (var y = 0u; y < BG_ROWS; y++) {
            total += bg_partial[y * BG_COLS + lid.x];
        }
        let at = wg.y * cols + col;
        if (bg_params.accumulate != 0u) {
            total += db[at];
        }
        db[at] = total;
    }
}
