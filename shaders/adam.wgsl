// Adam, in place, with exactly Keras's update (keras/src/optimizers/adam.py):
//   m += (g - m)·(1 - beta1);  v += (g² - v)·(1 - beta2);  p -= (m·alpha)/(sqrt(v) + eps)
// where alpha = lr·sqrt(1 - beta2^t)/(1 - beta1^t) and 1 - beta1, 1 - beta2 are computed
// on the host by the CPU twin's own functions (cpu::adam::AdamConfig::alpha and
// one_minus_beta1/2, which round 1 - beta from f64 as Keras does), so only the
// per-element arithmetic can differ. epsilon is added to sqrt of the uncorrected v
// (Keras's placement).
//
// p, m, v: [len] f32, updated in place; g: [len] f32 gradient (read only).
// Two uniforms: `step_params` holds the per-step scalars and is shared by every parameter
// tensor of an optimizer (one queue write per training step, no bind group rebuilt);
// `tensor_params` holds this tensor's length and never changes.
// `adam` maps one invocation to one element (any length); `adam4` one invocation to one
// vec4 (len % 4 == 0), binding the same buffers as vec4 arrays. The grid may be split
// over y (linear id = x + y * num_workgroups.x * WG). `adam_ema` and `adam4_ema` also
// step a moving average of the updated parameters (average: [len] f32, in place), with
// ema.wgsl's formula and step uniform: average = d·average + rest·p.

struct Params {
    alpha: f32,
    // 1 - beta1 and 1 - beta2, rounded on the host exactly as the CPU twin rounds them.
    one_minus_beta1: f32,
    one_minus_beta2: f32,
    epsilon: f32,
}

struct Tensor {
    len: u32,
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

// ema.wgsl's `Step`: the moving average's per-step weights.
struct EmaStep {
    d: f32,
    rest: f32,
    _pad0: u32,
    _pad1: u32,
}

override WG: u32 = 256u;

@group(0) @binding(0) var<uniform> step_params: Params;
@group(0) @binding(1) var<uniform> tensor_params: Tensor;
@group(0) @binding(2) var<storage, read> g: array<f32>;
@group(0) @binding(3) var<storage, read_write> p: array<f32>;
@group(0) @binding(4) var<storage, read_write> m: array<f32>;
@group(0) @binding(5) var<storage, read_write> v: array<f32>;
@group(0) @binding(2) var<storage, read> g4: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read_write> p4: array<vec4<f32>>;
@group(0) @binding(4) var<storage, read_write> m4: array<vec4<f32>>;
@group(0) @binding(5) var<storage, read_write> v4: array<vec4<f32>>;
@group(0) @binding(6) var<uniform> ema_step: EmaStep;
@group(0) @binding(7) var<storage, read_write> average: array<f32>;
@group(0) @binding(7) var<storage, read_write> average4: array<vec4<f32>>;

fn linear_id(gid: vec3<u32>, groups: vec3<u32>) -> u32 {
    return gid.x + gid.y * groups.x * WG;
}

// One element's step; returns the new parameter.
fn adam_element(i: u32) -> f32 {
    let grad = g[i];
    let mi = m[i] + (grad - m[i]) * step_params.one_minus_beta1;
    let vi = v[i] + (grad * grad - v[i]) * step_params.one_minus_beta2;
    m[i] = mi;
    v[i] = vi;
    let updated = p[i] - (mi * step_params.alpha) / (sqrt(vi) + step_params.epsilon);
    p[i] = updated;
    return updated;
}

fn adam_quad(i: u32) -> vec4<f32> {
    let grad = g4[i];
    let mi = m4[i] + (grad - m4[i]) * step_params.one_minus_beta1;
    let vi = v4[i] + (grad * grad - v4[i]) * step_params.one_minus_beta2;
    m4[i] = mi;
    v4[i] = vi;
    let updated = p4[i] - (mi * step_params.alpha) / (sqrt(vi) + step_params.epsilon);
    p4[i] = updated;
    return updated;
}

@compute @workgroup_size(WG)
fn adam(
    @builtin(global_invocation_id) gid: vec3<u32>,
    @builtin(num_workgroups) groups: vec3<u32>,
) {
    let i = linear_id(gid, groups);
    if (i < tensor_params.len) {
        adam_element(i);
    }
}

@compute @workgroup_size(WG)
fn adam4(
    @builtin(global_invocation_id) gid: vec3<u32>,
    @builtin(num_workgroups) groups: vec3<u32>,
) {
    let i = linear_id(gid, groups);
    if (i < tensor_params.len / 4u) {
        adam_quad(i);
    }
}

// The step, then the moving average of the updated parameters (ema.wgsl's formula).
@compute @workgroup_size(WG)
fn adam_ema(
    @builtin(global_invocation_id) gid: vec3<u32>,
    @builtin(num_workgroups) groups: vec3<u32>,
) {
    let i = linear_id(gid, groups);
    if (i < tensor_params.len) {
        let updated = adam_element(i);
        average[i] = ema_step.d * average[i] + ema_step.rest * updated;
    }
}

@compute @workgroup_size(WG)
fn adam4_ema(
    @builtin(global_invocation_id) gid: vec3<u32>,
    @builtin(num_workgroups) groups: vec3<u32>,
) {
    let i = linear_id(gid, groups);
    if (i < tensor_params.len / 4u) {
        let updated = adam_quad(i);
        average4[i] = ema_step.d * average4[i] + ema_step.rest * updated;
    }
}
