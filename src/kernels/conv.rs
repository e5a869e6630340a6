//! Launchers for `shaders/conv.wgsl`: conv2d and conv_transpose2d, forward and both
//! gradients, from three implicit-GEMM kernels (no im2col buffer).
//!
//! A transposed conv is the adjoint of a conv (see [`ConvShape::adjoint_of`]), so
//! - conv2d forward and convT input gradient run `conv_forward*`,
//! - conv2d input gradient and convT forward run `conv_input_grad*` (gather form, one
//!   slice of the grid per stride phase class, so stride 2 visits only the valid taps),
//! - both weight gradients run `conv_weight_grad*` (convT with x and dy swapped), with the
//!   long pixel reduction split into slices and summed by a second pass when that adds
//!   parallelism (or, on llvmpipe, keeps each invocation under its loop limit).
//!
//! Workgroup sizes and split counts follow the context's [`KernelSettings`]; llvmpipe's
//! loop limit ([`GpuContext::loop_limit`]) is the adapter's and holds under either.
//!
//! Each launcher picks the kernel variant from the channel counts (vec4 loads where they
//! are multiples of 4) and returns its dispatches without submitting. Bias gradients are
//! `kernels::gemm::bias_grad` over the NHWC rows of dy, or ride in the weight gradient's
//! dispatches ([`conv2d_backward_weight_and_bias`]).

use std::sync::Arc;

use bytemuck::{Pod, Zeroable};

use crate::cpu::Activation;
use crate::error::{Error, Result};
use crate::geometry::{Conv2dGeometry, ConvTranspose2dGeometry};
use crate::gpu::pipeline::grid_1d;
use crate::gpu::settings::spread_workgroup;
use crate::gpu::{
    Binding, Dispatch, Footprint, GpuBuffer, GpuContext, Kernel, KernelSettings, KernelSpec, Knobs,
    Shader,
};
use crate::kernels::elementwise::act_code;
use crate::kernels::gemm;

/// Twin of `Params` in `shaders/conv.wgsl`.
#[repr(C)]
#[derive(Debug, Clone, Copy, Pod, Zeroable)]
pub struct ConvParams {
    pub batch: u32,
    pub in_h: u32,
    pub in_w: u32,
    pub in_c: u32,
    pub out_h: u32,
    pub out_w: u32,
    pub out_c: u32,
    pub k_h: u32,
    pub k_w: u32,
    pub stride_h: u32,
    pub stride_w: u32,
    pub pad_top: u32,
    pub pad_left: u32,
    pub flags: u32,
    pub k_chunk: u32,
    pub k_slices: u32,
    pub bias_first_group: u32,
    pub bias_chunk_rows: u32,
    pub bias_chunks: u32,
    pub bias_flags: u32,
}

pub const PARAMS_TWINS: &[super::ParamsTwin] =
    &[(Shader::Conv, "Params", std::mem::size_of::<ConvParams>())];

const FLAG_BIAS: u32 = 1;
const FLAG_ACCUMULATE: u32 = 2;
const FLAG_ACT_ACCUMULATE: u32 = 4;
const BIAS_OF_SRC1: u32 = 1;
const BIAS_ACCUMULATE: u32 = 2;
/// Pixels one invocation sums for a bias gradient riding in a weight gradient, at most.
const BIAS_CHUNK_ROWS: usize = 256;

/// A bias gradient to compute in a weight gradient's dispatches: db\[c\] = the sum over
/// pixels of channel c of `of` (+ db with `accumulate`).
#[derive(Clone, Copy)]
pub struct BiasGrad<'a> {
    pub db: &'a GpuBuffer,
    pub accumulate: bool,
}

/// Which operand of the weight-gradient kernel a bias gradient sums: a conv's dy is the
/// kernel's dy; a transposed conv's dy is its adjoint conv's x.
#[derive(Clone, Copy, PartialEq)]
enum BiasOf {
    Dy,
    X,
}

/// The convolution the kernels compute: x (batch, in_h, in_w, in_c) (*) w (k_h, k_w, in_c,
/// out_c) -> y (batch, out_h, out_w, out_c), reading x row `oy*stride_h + a - pad_top`.
/// Output sizes are explicit, so the bottom/right padding is whatever they imply (a
/// transposed conv with k < s gives the adjoint conv a "negative" one).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConvShape {
    pub batch: usize,
    pub in_h: usize,
    pub in_w: usize,
    pub in_c: usize,
    pub out_h: usize,
    pub out_w: usize,
    pub out_c: usize,
    pub k_h: usize,
    pub k_w: usize,
    pub stride_h: usize,
    pub stride_w: usize,
    pub pad_top: usize,
    pub pad_left: usize,
}

impl ConvShape {
    pub fn of_conv(g: &Conv2dGeometry) -> Self {
        ConvShape {
            batch: g.batch,
            in_h: g.in_h,
            in_w: g.in_w,
            in_c: g.in_c,
            out_h: g.out_h(),
            out_w: g.out_w(),
            out_c: g.out_c,
            k_h: g.k_h,
            k_w: g.k_w,
            stride_h: g.stride_h,
            stride_w: g.stride_w,
            pad_top: g.pad_top,
            pad_left: g.pad_left,
        }
    }

    /// The conv whose adjoint is `g`: its input is g's output (out_h, out_w, out_c), its
    /// output is g's input (in_h, in_w, in_c), pad = crop, and its HWIO kernel is g's HWOI
    /// kernel read as-is. Unlike [`ConvTranspose2dGeometry::adjoint_conv`] it keeps the
    /// output size explicit, so any crop and output size map exactly.
    pub fn adjoint_of(g: &ConvTranspose2dGeometry) -> Self {
        ConvShape {
            batch: g.batch,
            in_h: g.out_h,
            in_w: g.out_w,
            in_c: g.out_c,
            out_h: g.in_h,
            out_w: g.in_w,
            out_c: g.in_c,
            k_h: g.k_h,
            k_w: g.k_w,
            stride_h: g.stride_h,
            stride_w: g.stride_w,
            pad_top: g.crop_top,
            pad_left: g.crop_left,
        }
    }

    pub fn input_len(&self) -> usize {
        self.batch * self.in_h * self.in_w * self.in_c
    }

    pub fn output_len(&self) -> usize {
        self.batch * self.out_h * self.out_w * self.out_c
    }

    pub fn weight_len(&self) -> usize {
        self.k_h * self.k_w * self.in_c * self.out_c
    }

    /// FLOPs of the conv, and of each of its gradients: 2·(output elements)·taps·in_c.
    pub fn flops(&self) -> f64 {
        2.0 * self.output_len() as f64 * (self.k_h * self.k_w * self.in_c) as f64
    }

    /// Bytes of one pass that reads `a` and `b` elements and writes `out` (read too
    /// with `accumulate`), plus a bias of `bias` values.
    fn bytes(a: usize, b: usize, out: usize, bias: usize, accumulate: bool) -> f64 {
        (4 * (a + b + out * (1 + accumulate as usize) + bias)) as f64
    }

    fn params(&self, flags: u32, k_chunk: usize, k_slices: usize) -> Result<ConvParams> {
        let u = |v: usize| u32::try_from(v).map_err(|_| overflow(self));
        Ok(ConvParams {
            batch: u(self.batch)?,
            in_h: u(self.in_h)?,
            in_w: u(self.in_w)?,
            in_c: u(self.in_c)?,
            out_h: u(self.out_h)?,
            out_w: u(self.out_w)?,
            out_c: u(self.out_c)?,
            k_h: u(self.k_h)?,
            k_w: u(self.k_w)?,
            stride_h: u(self.stride_h)?,
            stride_w: u(self.stride_w)?,
            pad_top: u(self.pad_top)?,
            pad_left: u(self.pad_left)?,
            flags,
            k_chunk: u(k_chunk)?,
            k_slices: u(k_slices)?,
            bias_first_group: 0,
            bias_chunk_rows: 0,
            bias_chunks: 0,
            bias_flags: 0,
        })
    }

    /// Index arithmetic in the shader is u32: every tensor, and every position one step
    /// past a tensor, must fit.
    fn check_fits_u32(&self) -> Result<()> {
        let lens = [self.input_len(), self.output_len(), self.weight_len()];
        if lens.iter().any(|&n| n >= u32::MAX as usize / 2) {
            return Err(overflow(self));
        }
        Ok(())
    }
}

fn overflow(s: &ConvShape) -> Error {
    Error::Shape {
        op: "conv",
        message: format!("{s:?} does not fit the kernels' 32-bit indices"),
    }
}

const FWD_BINDINGS: &[Binding] = &[
    Binding::Uniform,
    Binding::Read,
    Binding::Read,
    Binding::Read,
    Binding::ReadWrite,
    Binding::ReadWrite,
    Binding::Read,
];

/// The shader's `ACT` when no activation is fused.
const NO_ACTIVATION: u32 = 4;

/// An activation fused into a kernel's store: f(result) is also written to `out`; or,
/// with `gradient`, the gradient through an activation whose output's gradient the kernel
/// computes: out (+)= f'(saved)·result.
#[derive(Clone, Copy)]
pub struct Epilogue<'a> {
    pub act: Activation,
    pub out: &'a GpuBuffer,
    pub gradient: Option<EpilogueGradient<'a>>,
}

/// What an activation's gradient reads: `saved` is the activation's input for relu and
/// leaky relu, its output for tanh and sigmoid (as `elementwise::activation_backward`).
#[derive(Clone, Copy)]
pub struct EpilogueGradient<'a> {
    pub saved: &'a GpuBuffer,
    pub accumulate: bool,
}
const WGRAD_BINDINGS: &[Binding] = &[
    Binding::Uniform,
    Binding::Read,
    Binding::Read,
    Binding::ReadWrite,
];
const REDUCE_BINDINGS: &[Binding] = &[
    Binding::Uniform,
    Binding::Read,
    Binding::ReadWrite,
    Binding::ReadWrite,
];

/// Register tile (rows, columns) per invocation, fixed by the shader's explicit mat4x4
/// accumulators: the `_vec4` kernels hold 8 x 16, the scalar ones 8 x 8. Measured on
/// llvmpipe, where every per-invocation load instruction costs about as much as eight
/// scalar loads whatever its width, 8 x 16 ran 1.3x faster than 8 x 8 and as fast as
/// 16 x 16 (which doubles the registers a real GPU must hold).
const VEC4_TILE: (usize, usize) = (8, 16);
const SCALAR_TILE: (usize, usize) = (8, 8);
/// `conv_input_grad_narrow` (in_c <= 4): 16 pixels x 4 channels.
const NARROW_TILE: (usize, usize) = (16, 4);

/// Workgroup size: llvmpipe runs 8 invocations per SIMD step (8 and 16 measured the
/// same); 64 (two warps, one wavefront) on real GPUs.
/// A site's tuned workgroup where it is one of [`WORKGROUPS`], else `default`.
fn workgroup(knobs: Knobs, default: u32) -> usize {
    match knobs.workgroup {
        Some(wg) if WORKGROUPS.contains(&wg) => wg as usize,
        _ => default as usize,
    }
}

/// 16 on a software adapter; on a real GPU 64, halved (to 16 at least) while it would
/// leave fewer than [`MIN_WORKGROUPS`](crate::gpu::settings::MIN_WORKGROUPS) workgroups:
/// a small convolution of large per-invocation tiles then still spreads over most of the
/// GPU's cores. The workgroup only groups invocations, so it changes no result.
fn default_workgroup(ctx: &GpuContext, invocations: usize) -> u32 {
    match ctx.kernel_settings() {
        KernelSettings::Software => 16,
        KernelSettings::Gpu => spread_workgroup(KernelSettings::Gpu, invocations, 64, 16),
    }
}

/// The invocations a weight gradient's split aims for: enough to fill the device.
fn default_split_target(ctx: &GpuContext) -> u32 {
    match ctx.kernel_settings() {
        KernelSettings::Software => 256,
        KernelSettings::Gpu => 16384,
    }
}

/// The workgroup sizes `gan-gpu tune` tries (powers of two, so a reduction's lanes
/// still divide them).
const WORKGROUPS: [u32; 4] = [16, 32, 64, 128];
/// The invocation counts a weight gradient's split may aim for under tuning.
const SPLIT_TARGETS: [u32; 5] = [64, 256, 1024, 4096, 16384];

/// The knobs of `entry` at `s`, and what `gan-gpu tune` may try there: each workgroup
/// size, and for a weight gradient each split target, one knob at a time.
fn site_knobs(ctx: &GpuContext, entry: &str, s: &ConvShape, split: bool, default_wg: u32) -> Knobs {
    let site = format!(
        "{entry} {}x{}x{}x{} k{}x{} s{}x{} p{},{} -> {}x{}x{}",
        s.batch,
        s.in_h,
        s.in_w,
        s.in_c,
        s.k_h,
        s.k_w,
        s.stride_h,
        s.stride_w,
        s.pad_top,
        s.pad_left,
        s.out_h,
        s.out_w,
        s.out_c
    );
    ctx.knobs(&site, || {
        let mut candidates: Vec<Knobs> = WORKGROUPS
            .iter()
            .filter(|&&wg| wg != default_wg)
            .map(|&wg| Knobs {
                workgroup: Some(wg),
                ..Knobs::default()
            })
            .collect();
        if split {
            let targets = SPLIT_TARGETS
                .iter()
                .filter(|&&target| target != default_split_target(ctx));
            candidates.extend(targets.map(|&target| Knobs {
                split_target: Some(target),
                ..Knobs::default()
            }));
        }
        candidates
    })
}

fn kernel(
    ctx: &GpuContext,
    entry: &'static str,
    bindings: &'static [Binding],
    wg: usize,
) -> Result<Arc<Kernel>> {
    ctx.kernel(&KernelSpec {
        shader: Shader::Conv,
        entry,
        bindings,
        constants: &[("WG", wg as f64)],
    })
}

/// A forward or input-gradient kernel, with `epilogue`'s activation (or its gradient)
/// fused or none; the buffer its activation output binds (a one-vec4 stand-in when there
/// is none: WebGPU forbids binding one buffer twice where either binding is written), the
/// buffer the gradient reads (`read_only` when there is none), and the extra flags.
fn kernel_with_epilogue<'a>(
    ctx: &GpuContext,
    op: &'static str,
    entry: &'static str,
    epilogue: Option<Epilogue<'a>>,
    out_len: usize,
    wg: usize,
    read_only: &'a GpuBuffer,
) -> Result<(Arc<Kernel>, GpuBuffer, &'a GpuBuffer, u32)> {
    let (act, alpha, out) = match epilogue {
        Some(e) => {
            check_buffer(op, "activation output", e.out, out_len)?;
            let (code, alpha) = act_code(e.act);
            (code.unwrap_or(NO_ACTIVATION), alpha, e.out.clone())
        }
        None => (NO_ACTIVATION, 0.0, ctx.storage("no fused activation", 16)),
    };
    let gradient = epilogue.and_then(|e| e.gradient);
    if let Some(g) = gradient {
        check_buffer(op, "activation's saved input or output", g.saved, out_len)?;
    }
    let kernel = ctx.kernel(&KernelSpec {
        shader: Shader::Conv,
        entry,
        bindings: FWD_BINDINGS,
        constants: &[
            ("WG", wg as f64),
            ("ACT", act as f64),
            ("ALPHA", alpha as f64),
            ("ACT_GRAD", gradient.is_some() as u32 as f64),
        ],
    })?;
    let saved = gradient.map_or(read_only, |g| g.saved);
    let act_flags = match gradient {
        Some(g) if g.accumulate => FLAG_ACT_ACCUMULATE,
        _ => 0,
    };
    Ok((kernel, out, saved, act_flags))
}

/// Bytes the epilogue moves: its output written, and for a gradient the saved tensor read
/// (and the output read too when accumulating).
fn epilogue_bytes(epilogue: Option<Epilogue>, out: usize) -> f64 {
    let words = match epilogue {
        None => 0,
        Some(Epilogue { gradient: None, .. }) => out,
        Some(Epilogue {
            gradient: Some(g), ..
        }) => out * (2 + g.accumulate as usize),
    };
    (4 * words) as f64
}

fn check_buffer(op: &'static str, what: &str, buf: &GpuBuffer, len: usize) -> Result<()> {
    if buf.size() < (len * 4) as u64 {
        return Err(Error::Shape {
            op,
            message: format!(
                "{what} buffer holds {} bytes, {len} f32 need {}",
                buf.size(),
                len * 4
            ),
        });
    }
    Ok(())
}

/// llvmpipe silently stops an invocation's loops past its limit; the weight gradient
/// splits its reduction to stay below it, the other kernels refuse shapes that reach it.
fn check_loops(ctx: &GpuContext, op: &'static str, iterations: usize) -> Result<()> {
    match ctx.loop_limit_exceeded(iterations) {
        Some(message) => Err(Error::Shape { op, message }),
        None => Ok(()),
    }
}

fn flags(bias: bool, accumulate: bool) -> u32 {
    (if bias { FLAG_BIAS } else { 0 }) | (if accumulate { FLAG_ACCUMULATE } else { 0 })
}

/// Whether a kernel may read these channels as vec4: a multiple of 4, in a buffer that
/// holds at least one vec4 (an empty batch is bound as 4 bytes).
fn vec4_ok(channels: usize, buf: &GpuBuffer) -> bool {
    channels > 0 && channels.is_multiple_of(4) && buf.size() >= 16
}

/// Entry point and register tile (rows, columns) of the forward kernel for `s`.
fn forward_kernel(s: &ConvShape, x: &GpuBuffer, w: &GpuBuffer) -> (&'static str, (usize, usize)) {
    match (vec4_ok(s.out_c, w), vec4_ok(s.in_c, x)) {
        (true, true) => ("conv_forward_vec4", VEC4_TILE),
        (true, false) => ("conv_forward_scalar_x", VEC4_TILE),
        (false, _) => ("conv_forward", SCALAR_TILE),
    }
}

fn input_grad_kernel(
    s: &ConvShape,
    dy: &GpuBuffer,
    w: &GpuBuffer,
) -> (&'static str, (usize, usize)) {
    if !(vec4_ok(s.out_c, dy) && w.size() >= 16) {
        ("conv_input_grad", SCALAR_TILE)
    } else if s.in_c <= 4 {
        ("conv_input_grad_narrow", NARROW_TILE)
    } else if s.in_c.is_multiple_of(4) {
        ("conv_input_grad_vec4", VEC4_TILE)
    } else {
        ("conv_input_grad", SCALAR_TILE)
    }
}

fn weight_grad_kernel(
    s: &ConvShape,
    x: &GpuBuffer,
    dy: &GpuBuffer,
) -> (&'static str, (usize, usize)) {
    match (vec4_ok(s.out_c, dy), vec4_ok(s.in_c, x)) {
        (true, true) => ("conv_weight_grad_vec4", VEC4_TILE),
        (true, false) => ("conv_weight_grad_scalar_x", VEC4_TILE),
        (false, _) => ("conv_weight_grad", SCALAR_TILE),
    }
}

/// (x, y) workgroups covering `rows` rows of `per_invocation` each.
fn row_grid(ctx: &GpuContext, rows: usize, per_invocation: usize, wg: usize) -> Result<(u32, u32)> {
    let groups = rows.div_ceil(per_invocation * wg);
    let groups = u32::try_from(groups).map_err(|_| Error::Shape {
        op: "conv",
        message: format!("{rows} rows need too many workgroups"),
    })?;
    Ok(grid_1d(ctx, groups))
}

/// A grid dimension other than the split row one, checked against the device limit.
fn grid_dim(ctx: &GpuContext, op: &'static str, groups: usize) -> Result<u32> {
    u32::try_from(groups)
        .ok()
        .filter(|&g| g <= ctx.limits.max_compute_workgroups_per_dimension)
        .ok_or_else(|| Error::Shape {
            op,
            message: format!("{groups} workgroups exceed the device's per-dimension limit"),
        })
}

/// y = conv(x, w) (+ bias) (+ y).
#[allow(clippy::too_many_arguments)]
fn forward(
    ctx: &GpuContext,
    op: &'static str,
    s: &ConvShape,
    x: &GpuBuffer,
    w: &GpuBuffer,
    bias: Option<&GpuBuffer>,
    y: &GpuBuffer,
    accumulate: bool,
    epilogue: Option<Epilogue>,
) -> Result<Vec<Dispatch>> {
    s.check_fits_u32()?;
    check_buffer(op, "input", x, s.input_len())?;
    check_buffer(op, "weight", w, s.weight_len())?;
    check_buffer(op, "output", y, s.output_len())?;
    if let Some(b) = bias {
        check_buffer(op, "bias", b, s.out_c)?;
    }
    if s.output_len() == 0 {
        return Ok(Vec::new());
    }
    let (entry, tile) = forward_kernel(s, x, w);
    let invocations = (s.batch * s.out_h * s.out_w).div_ceil(tile.0) * s.out_c.div_ceil(tile.1);
    let default_wg = default_workgroup(ctx, invocations);
    let wg = workgroup(site_knobs(ctx, entry, s, false, default_wg), default_wg);
    let taps = s.k_h * s.k_w;
    // The tap loops hold the channel loop (a vec4 of channels per trip).
    let trips = (taps * s.in_c).div_ceil(4);
    check_loops(ctx, op, s.k_h + taps + trips)?;
    let (kernel, act_out, saved, act_flags) =
        kernel_with_epilogue(ctx, op, entry, epilogue, s.output_len(), wg, w)?;
    let params = s.params(flags(bias.is_some(), accumulate) | act_flags, 0, 1)?;
    let uniform = ctx.uniform(op, &params);
    let bindings = [&uniform, x, w, bias.unwrap_or(w), y, &act_out, saved];
    let bind_group = ctx.bind(&kernel, &bindings);
    let (gx, gy) = row_grid(ctx, s.batch * s.out_h * s.out_w, tile.0, wg)?;
    let gz = grid_dim(ctx, op, s.out_c.div_ceil(tile.1))?;
    let bias_len = if bias.is_some() { s.out_c } else { 0 };
    let (a, b, out) = (s.input_len(), s.weight_len(), s.output_len());
    let act_bytes = epilogue_bytes(epilogue, out);
    Ok(vec![Dispatch {
        kernel,
        bind_group,
        groups: [gx, gy, gz],
        footprint: Footprint::linear(
            wg as u32,
            trips,
            s.flops(),
            ConvShape::bytes(a, b, out, bias_len, accumulate) + act_bytes,
        ),
    }])
}

/// dx = conv's adjoint applied to dy (+ bias over dx's channels) (+ dx).
#[allow(clippy::too_many_arguments)]
fn input_grad(
    ctx: &GpuContext,
    op: &'static str,
    s: &ConvShape,
    dy: &GpuBuffer,
    w: &GpuBuffer,
    bias: Option<&GpuBuffer>,
    dx: &GpuBuffer,
    accumulate: bool,
    epilogue: Option<Epilogue>,
) -> Result<Vec<Dispatch>> {
    s.check_fits_u32()?;
    check_buffer(op, "upstream gradient", dy, s.output_len())?;
    check_buffer(op, "weight", w, s.weight_len())?;
    check_buffer(op, "output", dx, s.input_len())?;
    if let Some(b) = bias {
        check_buffer(op, "bias", b, s.in_c)?;
    }
    if s.input_len() == 0 {
        return Ok(Vec::new());
    }
    let (entry, tile) = input_grad_kernel(s, dy, w);
    // The largest phase class sets the row grid; smaller ones leave a tail idle.
    let class_rows = s.batch * s.in_h.div_ceil(s.stride_h) * s.in_w.div_ceil(s.stride_w);
    let column_tiles = s.stride_h * s.stride_w * s.in_c.div_ceil(tile.1);
    let invocations = class_rows.div_ceil(tile.0) * column_tiles;
    let default_wg = default_workgroup(ctx, invocations);
    let wg = workgroup(site_knobs(ctx, entry, s, false, default_wg), default_wg);
    let (taps_h, taps_w) = (s.k_h.div_ceil(s.stride_h), s.k_w.div_ceil(s.stride_w));
    let taps = taps_h * taps_w;
    // The valid taps of a phase class hold the channel loop (a vec4 per trip).
    let trips = taps * s.out_c.div_ceil(4);
    check_loops(ctx, op, taps_h + taps + trips)?;
    let (kernel, act_out, saved, act_flags) =
        kernel_with_epilogue(ctx, op, entry, epilogue, s.input_len(), wg, w)?;
    let params = s.params(flags(bias.is_some(), accumulate) | act_flags, 0, 1)?;
    let uniform = ctx.uniform(op, &params);
    let bindings = [&uniform, dy, w, bias.unwrap_or(w), dx, &act_out, saved];
    let bind_group = ctx.bind(&kernel, &bindings);
    let (gx, gy) = row_grid(ctx, class_rows, tile.0, wg)?;
    let gz = grid_dim(ctx, op, column_tiles)?;
    let bias_len = if bias.is_some() { s.in_c } else { 0 };
    let (a, b, out) = (s.output_len(), s.weight_len(), s.input_len());
    let act_bytes = epilogue_bytes(epilogue, out);
    Ok(vec![Dispatch {
        kernel,
        bind_group,
        groups: [gx, gy, gz],
        footprint: Footprint::linear(
            wg as u32,
            trips,
            s.flops(),
            ConvShape::bytes(a, b, out, bias_len, accumulate) + act_bytes,
        ),
    }])
}

/// (slices, quad rows per slice) for a weight gradient: the reduction runs over quad rows
/// (4 images x one output row); it is split until there are enough invocations to fill
/// the device (256 on a software adapter, 16,384 on a real GPU, or the site's tuned
/// target), and wherever the adapter has a loop limit until each slice stays under it.
fn weight_grad_split(
    ctx: &GpuContext,
    op: &'static str,
    s: &ConvShape,
    tile: (usize, usize),
    knobs: Knobs,
) -> Result<(usize, usize)> {
    let quad_rows = (s.batch.div_ceil(4) * s.out_h).max(1);
    let invocations = (s.k_h * s.k_w * s.in_c).div_ceil(tile.0) * s.out_c.div_ceil(tile.1);
    let wanted = match knobs.split_target {
        Some(target) if SPLIT_TARGETS.contains(&target) => target,
        _ => default_split_target(ctx),
    } as usize;
    let mut slices = (wanted / invocations.max(1)).clamp(1, quad_rows);
    if let Some(limit) = ctx.loop_limit() {
        let per_row = 1 + s.out_w;
        let max_chunk = limit.saturating_sub(64) / per_row;
        if max_chunk == 0 {
            check_loops(ctx, op, per_row)?;
        }
        slices = slices.max(quad_rows.div_ceil(max_chunk.max(1)));
    }
    let chunk = quad_rows.div_ceil(slices);
    Ok((quad_rows.div_ceil(chunk), chunk))
}

/// Lanes summing one weight's slices in `conv_reduce_slices`: on a real GPU enough that
/// each adds at most [`SLICES_PER_LANE`] slices (up to 16, a power of two); one on a
/// software adapter, where the barriers of the lanes' tree cost more than the loop.
fn reduce_lanes(ctx: &GpuContext, slices: usize) -> usize {
    match ctx.kernel_settings() {
        KernelSettings::Software => 1,
        KernelSettings::Gpu => slices.div_ceil(SLICES_PER_LANE).next_power_of_two().min(16),
    }
}

/// The slices one lane of the reduction should add at most, where 16 lanes allow.
const SLICES_PER_LANE: usize = 32;

/// dw = sum over pixels of patch(x)^T dy (+ dw); with `bias`, also its bias gradient
/// (always through the partial-sum buffer and `conv_reduce_slices`, which then sums the
/// bias chunks too).
#[allow(clippy::too_many_arguments)]
fn weight_grad(
    ctx: &GpuContext,
    op: &'static str,
    s: &ConvShape,
    x: &GpuBuffer,
    dy: &GpuBuffer,
    dw: &GpuBuffer,
    accumulate: bool,
    bias: Option<(BiasGrad, BiasOf)>,
) -> Result<Vec<Dispatch>> {
    s.check_fits_u32()?;
    check_buffer(op, "input", x, s.input_len())?;
    check_buffer(op, "upstream gradient", dy, s.output_len())?;
    check_buffer(op, "weight gradient", dw, s.weight_len())?;
    let (bias_channels, bias_pixels) = match bias {
        Some((_, BiasOf::Dy)) => (s.out_c, s.batch * s.out_h * s.out_w),
        Some((_, BiasOf::X)) => (s.in_c, s.batch * s.in_h * s.in_w),
        None => (0, 0),
    };
    if let Some((b, _)) = bias {
        check_buffer(op, "bias gradient", b.db, bias_channels)?;
    }
    if s.weight_len() == 0 {
        // No weights to ride along with (no input channels): the bias gradient alone.
        return match bias {
            Some((b, of)) => {
                let source = if of == BiasOf::X { x } else { dy };
                gemm::bias_grad(ctx, source, bias_pixels, bias_channels, b.db, b.accumulate)
            }
            None => Ok(Vec::new()),
        };
    }
    let (entry, tile) = weight_grad_kernel(s, x, dy);
    // One invocation per (row tile, column tile, slice), numbered in that order. The
    // default workgroup is sized for the default split (a tuned split keeps it).
    let tiles = (s.k_h * s.k_w * s.in_c).div_ceil(tile.0).max(1) * s.out_c.div_ceil(tile.1).max(1);
    let (default_slices, _) = weight_grad_split(ctx, op, s, tile, Knobs::default())?;
    let default_wg = default_workgroup(ctx, tiles * default_slices);
    // With the bias sums riding along the dispatches differ, so the pair is a site of its
    // own: each is tuned on what it runs.
    let site = match bias {
        Some(_) => format!("{entry}+bias"),
        None => entry.to_string(),
    };
    let knobs = site_knobs(ctx, &site, s, true, default_wg);
    let (slices, chunk) = weight_grad_split(ctx, op, s, tile, knobs)?;
    let wg = workgroup(knobs, default_wg);
    let mut params = s.params(flags(false, accumulate), chunk, slices)?;
    let kernel = kernel(ctx, entry, WGRAD_BINDINGS, wg)?;
    let weight_groups = (tiles * slices).div_ceil(wg);
    let len = s.weight_len();
    // Each invocation walks its slice's quad rows, each over the output row's pixels.
    let trips = chunk * s.out_w;
    let (inputs, flops) = (s.input_len() + s.output_len(), s.flops());
    if slices == 1 && bias.is_none() {
        let (gx, gy) = row_grid(ctx, tiles, 1, wg)?;
        let uniform = ctx.uniform(op, &params);
        let bind_group = ctx.bind(&kernel, &[&uniform, x, dy, dw]);
        return Ok(vec![Dispatch {
            kernel,
            bind_group,
            groups: [gx, gy, 1],
            footprint: Footprint::linear(
                wg as u32,
                trips,
                flops,
                ConvShape::bytes(inputs, 0, len, 0, accumulate),
            ),
        }]);
    }
    // The bias chunks: as many as the weight's slices, while each stays short (its loop
    // body is one load, against the weight tile's dozens).
    let bias_chunk_rows = bias_pixels.div_ceil(slices).clamp(1, BIAS_CHUNK_ROWS);
    // At least one, so that an empty batch still writes a zero bias gradient.
    let bias_chunks = bias_pixels
        .div_ceil(bias_chunk_rows)
        .max(bias.is_some() as usize);
    let bias_stride = bias_channels.div_ceil(4) * 4;
    let bias_groups = (bias_chunks * bias_channels.div_ceil(4)).div_ceil(wg);
    let (gx, gy) = row_grid(ctx, (weight_groups + bias_groups) * wg, 1, wg)?;
    let u = |v: usize| u32::try_from(v).map_err(|_| overflow(s));
    if let Some((b, of)) = bias {
        params.bias_first_group = u(weight_groups)?;
        params.bias_chunk_rows = u(bias_chunk_rows)?;
        params.bias_chunks = u(bias_chunks)?;
        params.bias_flags =
            (of == BiasOf::X) as u32 * BIAS_OF_SRC1 + b.accumulate as u32 * BIAS_ACCUMULATE;
    }
    let parts_len = slices * len + bias_chunks * bias_stride;
    if parts_len >= u32::MAX as usize / 2 {
        return Err(overflow(s));
    }
    let uniform = ctx.uniform(op, &params);
    let parts = ctx.storage("conv weight grad partial sums", (parts_len * 4) as u64);
    let bind_group = ctx.bind(&kernel, &[&uniform, x, dy, &parts]);
    // Lanes for the weights' slices; the few bias sums may loop longer.
    let lanes = reduce_lanes(ctx, slices);
    let reduce = ctx.kernel(&KernelSpec {
        shader: Shader::Conv,
        entry: "conv_reduce_slices",
        bindings: REDUCE_BINDINGS,
        constants: &[("WG", wg as f64), ("RL", lanes as f64)],
    })?;
    let no_bias;
    let db = match bias {
        Some((b, _)) => b.db,
        None => {
            no_bias = ctx.storage("no bias gradient", 16);
            &no_bias
        }
    };
    let reduce_group = ctx.bind(&reduce, &[&uniform, &parts, dw, db]);
    let weights_per_group = wg / lanes;
    let reduce_groups = u32::try_from((len + bias_channels).div_ceil(weights_per_group))
        .map_err(|_| overflow(s))?;
    let (rx, ry) = grid_1d(ctx, reduce_groups);
    let bias_accumulate = bias.is_some_and(|(b, _)| b.accumulate);
    let bias_bytes = ConvShape::bytes(0, 0, bias_channels, 0, bias_accumulate);
    Ok(vec![
        Dispatch {
            kernel,
            bind_group,
            groups: [gx, gy, 1],
            footprint: Footprint::linear(
                wg as u32,
                trips.max(bias_chunk_rows * bias.is_some() as usize),
                flops + (bias_pixels * bias_channels) as f64,
                ConvShape::bytes(inputs, 0, parts_len, 0, false),
            ),
        },
        // `lanes` invocations per weight (and bias), each adding every lanes-th slice.
        Dispatch {
            kernel: reduce,
            bind_group: reduce_group,
            groups: [rx, ry, 1],
            footprint: Footprint::linear(
                wg as u32,
                slices
                    .max(bias_chunks)
                    .div_ceil(lanes)
                    .max(lanes.ilog2() as usize),
                parts_len as f64,
                ConvShape::bytes(parts_len, 0, len, 0, accumulate) + bias_bytes,
            ),
        },
    ])
}

/// y = conv2d(x, w) + bias (x NHWC, w HWIO, y NHWC); with `accumulate`, y += instead.
pub fn conv2d_forward(
    ctx: &GpuContext,
    g: &Conv2dGeometry,
    x: &GpuBuffer,
    w: &GpuBuffer,
    bias: Option<&GpuBuffer>,
    y: &GpuBuffer,
    accumulate: bool,
) -> Result<Vec<Dispatch>> {
    g.validate()?;
    let s = ConvShape::of_conv(g);
    forward(ctx, "conv2d_forward", &s, x, w, bias, y, accumulate, None)
}

/// [`conv2d_forward`] (overwriting y) with the following activation fused: also writes
/// f(y) into `epilogue.out`, as `elementwise::activation_forward` would.
pub fn conv2d_forward_activated(
    ctx: &GpuContext,
    g: &Conv2dGeometry,
    x: &GpuBuffer,
    w: &GpuBuffer,
    bias: Option<&GpuBuffer>,
    y: &GpuBuffer,
    epilogue: Epilogue,
) -> Result<Vec<Dispatch>> {
    g.validate()?;
    let s = ConvShape::of_conv(g);
    let op = "conv2d_forward";
    forward(ctx, op, &s, x, w, bias, y, false, Some(epilogue))
}

/// dx = the input gradient of conv2d for upstream gradient dy (dx NHWC like x).
pub fn conv2d_backward_input(
    ctx: &GpuContext,
    g: &Conv2dGeometry,
    dy: &GpuBuffer,
    w: &GpuBuffer,
    dx: &GpuBuffer,
    accumulate: bool,
) -> Result<Vec<Dispatch>> {
    g.validate()?;
    let s = ConvShape::of_conv(g);
    input_grad(
        ctx,
        "conv2d_backward_input",
        &s,
        dy,
        w,
        None,
        dx,
        accumulate,
        None,
    )
}

/// [`conv2d_backward_input`] with the gradient through the activation before the conv
/// fused (`epilogue.gradient` must be set): also writes f'(saved)·dx into `epilogue.out`,
/// as `elementwise::activation_backward` would.
pub fn conv2d_backward_input_activated(
    ctx: &GpuContext,
    g: &Conv2dGeometry,
    dy: &GpuBuffer,
    w: &GpuBuffer,
    dx: &GpuBuffer,
    accumulate: bool,
    epilogue: Epilogue,
) -> Result<Vec<Dispatch>> {
    g.validate()?;
    let s = ConvShape::of_conv(g);
    let op = "conv2d_backward_input";
    input_grad(ctx, op, &s, dy, w, None, dx, accumulate, Some(epilogue))
}

/// dw = the weight gradient of conv2d, summed over the batch (dw HWIO like w).
pub fn conv2d_backward_weight(
    ctx: &GpuContext,
    g: &Conv2dGeometry,
    x: &GpuBuffer,
    dy: &GpuBuffer,
    dw: &GpuBuffer,
    accumulate: bool,
) -> Result<Vec<Dispatch>> {
    g.validate()?;
    let s = ConvShape::of_conv(g);
    weight_grad(
        ctx,
        "conv2d_backward_weight",
        &s,
        x,
        dy,
        dw,
        accumulate,
        None,
    )
}

/// [`conv2d_backward_weight`] and the bias gradient (the sum of dy over its pixels) in the
/// same two dispatches.
pub fn conv2d_backward_weight_and_bias(
    ctx: &GpuContext,
    g: &Conv2dGeometry,
    x: &GpuBuffer,
    dy: &GpuBuffer,
    dw: &GpuBuffer,
    accumulate: bool,
    bias: BiasGrad,
) -> Result<Vec<Dispatch>> {
    g.validate()?;
    let s = ConvShape::of_conv(g);
    let op = "conv2d_backward_weight";
    weight_grad(ctx, op, &s, x, dy, dw, accumulate, Some((bias, BiasOf::Dy)))
}

/// y = conv_transpose2d(x, w) + bias (x NHWC, w HWOI, y NHWC): the adjoint conv's input
/// gradient applied to x.
pub fn conv_transpose2d_forward(
    ctx: &GpuContext,
    g: &ConvTranspose2dGeometry,
    x: &GpuBuffer,
    w: &GpuBuffer,
    bias: Option<&GpuBuffer>,
    y: &GpuBuffer,
    accumulate: bool,
) -> Result<Vec<Dispatch>> {
    g.validate()?;
    let s = ConvShape::adjoint_of(g);
    let op = "conv_transpose2d_forward";
    input_grad(ctx, op, &s, x, w, bias, y, accumulate, None)
}

/// [`conv_transpose2d_forward`] (overwriting y) with the following activation fused: also
/// writes f(y) into `epilogue.out`.
pub fn conv_transpose2d_forward_activated(
    ctx: &GpuContext,
    g: &ConvTranspose2dGeometry,
    x: &GpuBuffer,
    w: &GpuBuffer,
    bias: Option<&GpuBuffer>,
    y: &GpuBuffer,
    epilogue: Epilogue,
) -> Result<Vec<Dispatch>> {
    g.validate()?;
    let s = ConvShape::adjoint_of(g);
    let op = "conv_transpose2d_forward";
    input_grad(ctx, op, &s, x, w, bias, y, false, Some(epilogue))
}

/// dx = the input gradient of conv_transpose2d: the adjoint conv applied to dy.
pub fn conv_transpose2d_backward_input(
    ctx: &GpuContext,
    g: &ConvTranspose2dGeometry,
    dy: &GpuBuffer,
    w: &GpuBuffer,
    dx: &GpuBuffer,
    accumulate: bool,
) -> Result<Vec<Dispatch>> {
    g.validate()?;
    let s = ConvShape::adjoint_of(g);
    forward(
        ctx,
        "conv_transpose2d_backward_input",
        &s,
        dy,
        w,
        None,
        dx,
        accumulate,
        None,
    )
}

/// [`conv_transpose2d_backward_input`] with the gradient through the activation before
/// the transposed conv fused, as [`conv2d_backward_input_activated`].
pub fn conv_transpose2d_backward_input_activated(
    ctx: &GpuContext,
    g: &ConvTranspose2dGeometry,
    dy: &GpuBuffer,
    w: &GpuBuffer,
    dx: &GpuBuffer,
    accumulate: bool,
    epilogue: Epilogue,
) -> Result<Vec<Dispatch>> {
    g.validate()?;
    let s = ConvShape::adjoint_of(g);
    let op = "conv_transpose2d_backward_input";
    forward(ctx, op, &s, dy, w, None, dx, accumulate, Some(epilogue))
}

/// dw = the weight gradient of conv_transpose2d (HWOI): the adjoint conv's weight gradient
/// with x and dy swapped.
pub fn conv_transpose2d_backward_weight(
    ctx: &GpuContext,
    g: &ConvTranspose2dGeometry,
    x: &GpuBuffer,
    dy: &GpuBuffer,
    dw: &GpuBuffer,
    accumulate: bool,
) -> Result<Vec<Dispatch>> {
    g.validate()?;
    let s = ConvShape::adjoint_of(g);
    weight_grad(
        ctx,
        "conv_transpose2d_backward_weight",
        &s,
        dy,
        x,
        dw,
        accumulate,
        None,
    )
}

/// [`conv_transpose2d_backward_weight`] and the bias gradient (the sum of dy over its
/// pixels) in the same two dispatches.
pub fn conv_transpose2d_backward_weight_and_bias(
    ctx: &GpuContext,
    g: &ConvTranspose2dGeometry,
    x: &GpuBuffer,
    dy: &GpuBuffer,
    dw: &GpuBuffer,
    accumulate: bool,
    bias: BiasGrad,
) -> Result<Vec<Dispatch>> {
    g.validate()?;
    let s = ConvShape::adjoint_of(g);
    let op = "conv_transpose2d_backward_weight";
    weight_grad(ctx, op, &s, dy, x, dw, accumulate, Some((bias, BiasOf::X)))
}
