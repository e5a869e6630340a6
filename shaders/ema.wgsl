// One step of an exponential moving average of weights, the twin of cpu::ema:
//   average[i] = d·average[i] + rest·source[i]
// with d = min(decay, (1 + t)/(10 + t)) and rest = 1 - d, both rounded from f64 on the
// host. `step` is shared by every tensor of one moving average (one queue write per
// training step); `tensor` holds each tensor's length. One invocation per element; the
// grid may be split over y (linear id = x + y * num_workgroups.x * WG).

struct Step {
    d: f32,
    rest: f32,
    _pad0: u32,
    _pad1: u32,
}

struct Tensor {
    len: u32,
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

override WG: u32 = 256u;

@group(0) @binding(0) var<uniform> step: Step;
@group(0) @binding(1) var<uniform> tensor: Tensor;
@group(0) @binding(2) var<storage, read> source: array<f32>;
@group(0) @binding(3) var<storage, read_write> average: array<f32>;

@compute @workgroup_size(WG)
fn ema(
    @builtin(global_invocation_id) gid: vec3<u32>,
    @builtin(num_workgroups) groups: vec3<u32>,
) {
    let i = gid.x + gid.y * groups.x * WG;
    if (i < tensor.len) {
        average[i] = step.d * average[i] + step.rest * source[i];
    }
}
