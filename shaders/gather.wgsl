// Batch gather: selected rows of a u8 dataset become a normalized f32 batch, and the
// same rows' u8 class labels become u32 labels.
//
// dataset: u8 rows of `row_len` bytes, packed 4 bytes per u32, little-endian (the
//          whole MNIST training set is uploaded once, 47 MB, in this form).
// indices: [batch] u32 row numbers.
// out:     [batch, row_len] f32, row-major, out = byte * 2/255 - 1, in [-1, 1] to
//          match the generator's tanh.
// labels:  [rows] u8 class labels, packed 4 per u32 like the dataset (gather_labels).
// out_labels: [batch] u32 = labels[indices[b]] (gather_labels; row_len is unused).
// One invocation per output element; the grid may be split over y when it exceeds
// the per-dimension workgroup limit (linear id = x + y * num_workgroups.x * WG).

struct Params {
    row_len: u32,
    batch: u32,
    rows: u32,
    _pad: u32,
}

override WG: u32 = 256u;

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> dataset: array<u32>;
@group(0) @binding(2) var<storage, read> indices: array<u32>;
@group(0) @binding(3) var<storage, read_write> out: array<f32>;
// gather_labels' bindings 1 and 3; no entry point uses these and the two above.
@group(0) @binding(1) var<storage, read> labels: array<u32>;
@group(0) @binding(3) var<storage, read_write> out_labels: array<u32>;

@compute @workgroup_size(WG)
fn gather_rows(
    @builtin(global_invocation_id) gid: vec3<u32>,
    @builtin(num_workgroups) groups: vec3<u32>,
) {
    let i = gid.x + gid.y * groups.x * WG;
    if (i >= params.row_len * params.batch) {
        return;
    }
    let b = i / params.row_len;
    let p = i % params.row_len;
    // The host validates indices; clamping keeps a bad one from reading another row's
    // bytes past the end.
    let row = min(indices[b], params.rows - 1u);
    let byte = row * params.row_len + p;
    let value = (dataset[byte / 4u] >> ((byte % 4u) * 8u)) & 0xffu;
    out[i] = f32(value) * (2.0 / 255.0) - 1.0;
}

@compute @workgroup_size(WG)
fn gather_labels(
    @builtin(global_invocation_id) gid: vec3<u32>,
    @builtin(num_workgroups) groups: vec3<u32>,
) {
    let b = gid.x + gid.y * groups.x * WG;
    if (b >= params.batch) {
        return;
    }
    // Clamped like gather_rows: a bad index reads another label, never out of bounds.
    let row = min(indices[b], params.rows - 1u);
    out_labels[b] = (labels[row / 4u] >> ((row % 4u) * 8u)) & 0xffu;
}
