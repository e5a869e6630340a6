// Element-wise kernels: activations (forward and backward) and the small buffer helpers
// a graph executor needs (fill, dst += s·src, buf *= s).
//
// Every tensor is a flat f32 array of `params.len` elements (any layout: the ops are
// element-wise). Binding 1 is always the one output; inputs follow from binding 2:
//   act_forward:  dst = f(a)                            a = x, f chosen by ACT
//   act_backward: dst (+)= f'(a or b)·c                 a = x, b = y = f(x), c = dy
//                 (reads a for relu/leaky relu, b for tanh/sigmoid)
//   fill:         dst = value
//   add_scaled:   dst += value·a
//   scale:        dst *= value
// Each entry point comes twice: the plain one maps one invocation to one element (any
// length), the `*4` one maps one invocation to one vec4 (used when len % 4 == 0; vec4
// loads are 2.2x faster on lavapipe and wider transactions on GPUs). The `*4` variants
// bind the same buffers as arrays of vec4<f32> at the same binding numbers.
// The grid may be split over y (linear id = x + y * num_workgroups.x * WG).
//
// The math is written once, for vec4; the scalar entries splat their element into a vec4
// and keep lane 0. That costs 4x the arithmetic only on the cold path (lengths not a
// multiple of 4; every GAN tensor at batch 100 is one).
//
// TensorFlow's conventions (see shared/golden/README.md): relu'(0) = 0; leaky forward
// x >= 0 ? x : alpha·x, derivative x > 0 ? 1 : alpha; tanh' = 1 - y², sigmoid' = y(1 - y)
// from the forward output y. tanh clamps x to [-15, 15] first (tanh is ±1 in f32 there
// anyway) because Chromium/SwiftShader's WGSL tanh returns NaN for |x| > 88; the CPU twin
// clamps the same way.

struct Params {
    len: u32,
    // LeakyReLU's alpha, or the fill value / the factor of add_scaled and scale.
    value: f32,
    // act_backward: 1 adds into dst instead of overwriting it.
    accumulate: u32,
    _pad: u32,
}

const RELU: u32 = 0u;
const LEAKY_RELU: u32 = 1u;
const TANH: u32 = 2u;
const TANH_CLAMP: f32 = 15.0;

override WG: u32 = 256u;
// The activation, 0 relu, 1 leaky relu, 2 tanh, 3 sigmoid: a pipeline constant rather
// than a uniform because llvmpipe pays for every case of a uniform switch (relu ran at
// sigmoid's speed, 1.6x slower); on GPUs it removes the branch too.
override ACT: u32 = 0u;

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read_write> dst: array<f32>;
@group(0) @binding(2) var<storage, read> a: array<f32>;
@group(0) @binding(3) var<storage, read> b: array<f32>;
@group(0) @binding(4) var<storage, read> c: array<f32>;
@group(0) @binding(1) var<storage, read_write> dst4: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read> a4: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read> b4: array<vec4<f32>>;
@group(0) @binding(4) var<storage, read> c4: array<vec4<f32>>;

fn forward(x: vec4<f32>) -> vec4<f32> {
    let zero = vec4(0.0);
    switch ACT {
        case RELU: {
            return max(x, zero);
        }
        case LEAKY_RELU: {
            return select(params.value * x, x, x >= zero);
        }
        case TANH: {
            return tanh(clamp(x, vec4(-TANH_CLAMP), vec4(TANH_CLAMP)));
        }
        default: {
            // Sigmoid: e^-|x| <= 1 never overflows; same branches as the CPU twin.
            let e = exp(-abs(x));
            return select(e / (1.0 + e), 1.0 / (1.0 + e), x >= zero);
        }
    }
}

// f'·dy from `saved`: x for relu and leaky relu, y = f(x) for tanh and sigmoid.
fn backward(saved: vec4<f32>, dy: vec4<f32>) -> vec4<f32> {
    let zero = vec4(0.0);
    switch ACT {
        case RELU: {
            return select(zero, dy, saved > zero);
        }
        case LEAKY_RELU: {
            return select(params.value * dy, dy, saved > zero);
        }
        case TANH: {
            return dy * (1.0 - saved * saved);
        }
        default: {
            return dy * saved * (1.0 - saved);
        }
    }
}

// Only the input the rule needs is read: 12 bytes per element instead of 16.
fn uses_x() -> bool {
    return ACT <= LEAKY_RELU;
}

fn linear_id(gid: vec3<u32>, groups: vec3<u32>) -> u32 {
    return gid.x + gid.y * groups.x * WG;
}

@compute @workgroup_size(WG)
fn act_forward(
    @builtin(global_invocation_id) gid: vec3<u32>,
    @builtin(num_workgroups) groups: vec3<u32>,
) {
    let i = linear_id(gid, groups);
    if (i < params.len) {
        dst[i] = forward(vec4(a[i])).x;
    }
}

@compute @workgroup_size(WG)
fn act_forward4(
    @builtin(global_invocation_id) gid: vec3<u32>,
    @builtin(num_workgroups) groups: vec3<u32>,
) {
    let i = linear_id(gid, groups);
    if (i < params.len / 4u) {
        dst4[i] = forward(a4[i]);
    }
}

@compute @workgroup_size(WG)
fn act_backward(
    @builtin(global_invocation_id) gid: vec3<u32>,
    @builtin(num_workgroups) groups: vec3<u32>,
) {
    let i = linear_id(gid, groups);
    if (i < params.len) {
        var saved: f32;
        if (uses_x()) {
            saved = a[i];
        } else {
            saved = b[i];
        }
        var g = backward(vec4(saved), vec4(c[i])).x;
        // Branch instead of select: an overwrite must not read dst (bandwidth, and NaN).
        if (params.accumulate != 0u) {
            g += dst[i];
        }
        dst[i] = g;
    }
}

@compute @workgroup_size(WG)
fn act_backward4(
    @builtin(global_invocation_id) gid: vec3<u32>,
    @builtin(num_workgroups) groups: vec3<u32>,
) {
    let i = linear_id(gid, groups);
    if (i < params.len / 4u) {
        var saved: vec4<f32>;
        if (uses_x()) {
            saved = a4[i];
        } else {
            saved = b4[i];
        }
        var g = backward(saved, c4[i]);
        if (params.accumulate != 0u) {
            g += dst4[i];
        }
        dst4[i] = g;
    }
}

@compute @workgroup_size(WG)
fn fill(
    @builtin(global_invocation_id) gid: vec3<u32>,
    @builtin(num_workgroups) groups: vec3<u32>,
) {
    let i = linear_id(gid, groups);
    if (i < params.len) {
        dst[i] = params.value;
    }
}

@compute @workgroup_size(WG)
fn fill4(
    @builtin(global_invocation_id) gid: vec3<u32>,
    @builtin(num_workgroups) groups: vec3<u32>,
) {
    let i = linear_id(gid, groups);
    if (i < params.len / 4u) {
        dst4[i] = vec4(params.value);
    }
}

@compute @workgroup_size(WG)
fn add_scaled(
    @builtin(global_invocation_id) gid: vec3<u32>,
    @builtin(num_workgroups) groups: vec3<u32>,
) {
    let i = linear_id(gid, groups);
    if (i < params.len) {
        dst[i] += params.value * a[i];
    }
}

@compute @workgroup_size(WG)
fn add_scaled4(
    @builtin(global_invocation_id) gid: vec3<u32>,
    @builtin(num_workgroups) groups: vec3<u32>,
) {
    let i = linear_id(gid, groups);
    if (i < params.len / 4u) {
        dst4[i] += params.value * a4[i];
    }
}

@compute @workgroup_size(WG)
fn scale(
    @builtin(global_invocation_id) gid: vec3<u32>,
    @builtin(num_workgroups) groups: vec3<u32>,
) {
    let i = linear_id(gid, groups);
    if (i < params.len) {
        dst[i] *= params.value;
    }
}

@compute @workgroup_size(WG)
fn scale4(
    @builtin(global_invocation_id) gid: vec3<u32>,
    @builtin(num_workgroups) groups: vec3<u32>,
) {
    let i = linear_id(gid, groups);
    if (i < params.len / 4u) {
        dst4[i] *= params.value;
    }
}
