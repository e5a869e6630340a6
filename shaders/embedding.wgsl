// Embedding lookup and its gradient: rows of a [classes, dim] table picked by class
// labels (Keras `Embedding`; a class-conditional GAN's label embeddings).
//
// table:  [classes, dim] f32, row-major.
// labels: [batch] u32 class ids. The host draws or gathers them below `classes`; the
//         kernels clamp so a bad one reads another row, never out of bounds.
// embedding_forward:  out [batch, dim], out[b, j] = table[labels[b], j] (+ out when
//                     ACCUMULATE). One invocation per output element.
// embedding_backward: dtable [classes, dim], dtable[c, j] = Σ_b [labels[b] == c] dy[b, j]
//                     (+ dtable when ACCUMULATE). WGSL has no float atomics, so each
//                     invocation owns one table element and walks the batch in order
//                     (so it sums in the CPU twin's order, bit for bit). That is
//                     batch·classes·dim reads for classes·dim outputs: cheap for MNIST's
//                     10 classes, and every invocation's loop is the batch, uniform.
// The grid may be split over y (linear id = x + y * num_workgroups.x * WG).

struct Params {
    batch: u32,
    dim: u32,
    classes: u32,
    // 1: add into the output instead of overwriting it.
    accumulate: u32,
}

override WG: u32 = 256u;

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> labels: array<u32>;
@group(0) @binding(2) var<storage, read> table: array<f32>;
@group(0) @binding(3) var<storage, read_write> out: array<f32>;
// embedding_backward's bindings 2 and 3.
@group(0) @binding(2) var<storage, read> dy: array<f32>;
@group(0) @binding(3) var<storage, read_write> dtable: array<f32>;

fn label_of(b: u32) -> u32 {
    return min(labels[b], params.classes - 1u);
}

@compute @workgroup_size(WG)
fn embedding_forward(
    @builtin(global_invocation_id) gid: vec3<u32>,
    @builtin(num_workgroups) groups: vec3<u32>,
) {
    let i = gid.x + gid.y * groups.x * WG;
    if (i >= params.batch * params.dim) {
        return;
    }
    let b = i / params.dim;
    let j = i % params.dim;
    var value = table[label_of(b) * params.dim + j];
    if (params.accumulate == 1u) {
        value += out[i];
    }
    out[i] = value;
}

@compute @workgroup_size(WG)
fn embedding_backward(
    @builtin(global_invocation_id) gid: vec3<u32>,
    @builtin(num_workgroups) groups: vec3<u32>,
) {
    let i = gid.x + gid.y * groups.x * WG;
    if (i >= params.classes * params.dim) {
        return;
    }
    let c = i / params.dim;
    let j = i % params.dim;
    var sum = 0.0;
    for (var b = 0u; b < params.batch; b++) {
        if (label_of(b) == c) {
            sum += dy[b * params.dim + j];
        }
    }
    if (params.accumulate == 1u) {
        sum = dtable[i] + sum;
    }
    dtable[i] = sum;
}

// A lookup fused with what follows it (each also writes `out`, as the lookup alone would):
// embedding_add:     result[i] = other[i] + out[i], out as embedding_forward (a
//                    conditioned input: features plus the label's embedding).
// embedding_row_dot: one workgroup (WG = 64) per row b: out[b, :] as embedding_forward,
//                    result[b] = Σ_j other[b, j]·out[b, j] summed as combine.wgsl's row_dot
//                    (strided partial sums, then the same tree, so the same bits), and
//                    logit[b] = row_addend[b] + result[b]: a projection discriminator's
//                    head (Miyato & Koyama 2018) in one pass instead of three.
@group(0) @binding(4) var<storage, read> other: array<f32>;
@group(0) @binding(5) var<storage, read_write> result: array<f32>;
@group(0) @binding(6) var<storage, read> row_addend: array<f32>;
@group(0) @binding(7) var<storage, read_write> logit: array<f32>;

var<workgroup> partial: array<f32, WG>;

@compute @workgroup_size(WG)
fn embedding_add(
    @builtin(global_invocation_id) gid: vec3<u32>,
    @builtin(num_workgroups) groups: vec3<u32>,
) {
    let i = gid.x + gid.y * groups.x * WG;
    if (i >= params.batch * params.dim) {
        return;
    }
    let value = table[label_of(i / params.dim) * params.dim + i % params.dim];
    out[i] = value;
    result[i] = other[i] + value;
}

@compute @workgroup_size(WG)
fn embedding_row_dot(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) groups: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    // Every invocation reaches the barriers (uniform control).
    let row = wid.x + wid.y * groups.x;
    var sum = 0.0;
    if (row < params.batch) {
        let base = row * params.dim;
        let class_base = label_of(row) * params.dim;
        for (var c = lid; c < params.dim; c += WG) {
            let value = table[class_base + c];
            out[base + c] = value;
            sum += other[base + c] * value;
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
    if (lid == 0u && row < params.batch) {
        result[row] = partial[0];
        logit[row] = row_addend[row] + partial[0];
    }
}

// embedding_backward_row_dot: a projection's row dot gradient into the embedding rows
// and the table gradient that reads it, in one pass. row_grad[b, j] = dy_rows[b]·
// features[b, j] (+ row_grad with ROW_ACCUMULATE: combine.wgsl's row_dot_grad), written
// by the invocation of table element (labels[b], j), which adds it into its sum as
// embedding_backward does (the same values in the same order, so the same bits).
override ROW_ACCUMULATE: u32 = 0u;
@group(0) @binding(2) var<storage, read> dy_rows: array<f32>;
@group(0) @binding(3) var<storage, read_write> table_grad: array<f32>;
@group(0) @binding(4) var<storage, read> features: array<f32>;
@group(0) @binding(5) var<storage, read_write> row_grad: array<f32>;

@compute @workgroup_size(WG)
fn embedding_backward_row_dot(
    @builtin(global_invocation_id) gid: vec3<u32>,
    @builtin(num_workgroups) groups: vec3<u32>,
) {
    let i = gid.x + gid.y * groups.x * WG;
    if (i >= params.classes * params.dim) {
        return;
    }
    let c = i / params.dim;
    let j = i % params.dim;
    var sum = 0.0;
    for (var b = 0u; b < params.batch; b++) {
        if (label_of(b) == c) {
            let at = b * params.dim + j;
            var g = dy_rows[b] * features[at];
            if (ROW_ACCUMULATE == 1u) {
                g = row_grad[at] + g;
            }
            row_grad[at] = g;
            sum += g;
        }
    }
    if (params.accumulate == 1u) {
        sum = table_grad[i] + sum;
    }
    table_grad[i] = sum;
}
