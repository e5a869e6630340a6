//! Launchers for `shaders/batchnorm.wgsl`: Keras BatchNormalization over the last axis,
//! training (batch statistics, running statistics moved) and inference (running
//! statistics), and the training-mode gradients, the twins of `cpu::batchnorm`.
//!
//! The rows of each channel are summed in slices (Welford within a slice, Chan's merge
//! across them, in slice order), so the sums run in parallel over slices as well as
//! channels. The kernel settings pick the slicing: many short slices for a real GPU, few
//! long ones for a CPU rasterizer, and llvmpipe's loop limit bounds both loops under
//! either. The launchers own the scratch buffers (partial sums, batch statistics).

use bytemuck::{Pod, Zeroable};

use crate::error::{Error, Result};
use crate::gpu::pipeline::grid_1d;
use crate::gpu::{
    Binding, Dispatch, Footprint, GpuBuffer, GpuContext, KernelSettings, KernelSpec, Shader,
};
use Binding::{Read, ReadWrite, Uniform};

/// Twin of `Params` in `shaders/batchnorm.wgsl`.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Pod, Zeroable)]
pub struct BatchNormParams {
    pub rows: u32,
    pub channels: u32,
    pub slices: u32,
    pub rows_per_slice: u32,
    pub epsilon: f32,
    pub momentum: f32,
    pub keep: f32,
    pub flags: u32,
}

pub const PARAMS_TWINS: &[super::ParamsTwin] = &[(
    Shader::BatchNorm,
    "Params",
    std::mem::size_of::<BatchNormParams>(),
)];

const UPDATE_RUNNING: u32 = 1;
const ACCUMULATE_DX: u32 = 2;
const WRITE_DGAMMA: u32 = 4;
const ACCUMULATE_DGAMMA: u32 = 8;
const WRITE_DBETA: u32 = 16;
const ACCUMULATE_DBETA: u32 = 32;

const WORKGROUP: u32 = 64;

/// x [rows, channels] and the layer's epsilon.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BatchNormShape {
    pub rows: usize,
    pub channels: usize,
    pub epsilon: f32,
}

/// Rows per slice and slices: (32, up to 4,096) on a real GPU, (256, up to 256) on a CPU
/// rasterizer, longer slices when the rows need more.
fn slicing(ctx: &GpuContext, rows: usize) -> (usize, usize) {
    let (min_rows, max_slices) = match ctx.kernel_settings() {
        KernelSettings::Gpu => (32, 4096),
        KernelSettings::Software => (256, 256),
    };
    let per_slice = min_rows.max(rows.div_ceil(max_slices)).max(1);
    (per_slice, rows.div_ceil(per_slice).max(1))
}

fn shape_error(message: String) -> Error {
    Error::Shape {
        op: "batch_norm",
        message,
    }
}

struct Launch<'a> {
    ctx: &'a GpuContext,
    params: BatchNormParams,
    len: usize,
}

impl Launch<'_> {
    fn new(
        ctx: &GpuContext,
        shape: BatchNormShape,
        momentum: f32,
        flags: u32,
    ) -> Result<Launch<'_>> {
        let (rows, channels) = (shape.rows, shape.channels);
        let len = rows
            .checked_mul(channels)
            .filter(|&n| n <= u32::MAX as usize);
        let Some(len) = len.filter(|_| channels > 0) else {
            return Err(shape_error(format!(
                "{rows}x{channels}: needs at least one channel and fewer than 2^32 elements"
            )));
        };
        let (per_slice, slices) = slicing(ctx, rows);
        for (what, n) in [("rows per slice", per_slice), ("slices", slices)] {
            if let Some(problem) = ctx.loop_limit_exceeded(n) {
                return Err(shape_error(format!(
                    "{rows}x{channels}: {what} {n}: {problem}"
                )));
            }
        }
        let max_groups = ctx.limits.max_compute_workgroups_per_dimension as usize;
        if slices > max_groups || channels.div_ceil(WORKGROUP as usize) > max_groups {
            return Err(shape_error(format!(
                "{rows}x{channels}: {slices} slices of {} channel groups exceed the device's \
                 {max_groups} workgroups per dimension",
                channels.div_ceil(WORKGROUP as usize)
            )));
        }
        Ok(Launch {
            ctx,
            params: BatchNormParams {
                rows: rows as u32,
                channels: channels as u32,
                slices: slices as u32,
                rows_per_slice: per_slice as u32,
                epsilon: shape.epsilon,
                momentum,
                keep: (1.0 - f64::from(momentum)) as f32,
                flags,
            },
            len,
        })
    }

    fn check(&self, name: &str, buffer: &GpuBuffer, n: usize) -> Result<()> {
        if buffer.size() < n as u64 * 4 {
            return Err(shape_error(format!(
                "{name} holds {} bytes, {n} f32 need {}",
                buffer.size(),
                n * 4
            )));
        }
        Ok(())
    }

    fn scratch(&self, what: &str, floats: usize) -> GpuBuffer {
        self.ctx
            .storage(&format!("batch norm {what}"), floats.max(1) as u64 * 4)
    }

    /// One dispatch of `entry` over `buffers` (after the uniform); `grid` in workgroups.
    fn dispatch(
        &self,
        entry: &'static str,
        bindings: &'static [Binding],
        buffers: &[&GpuBuffer],
        grid: [u32; 3],
    ) -> Result<Dispatch> {
        let kernel = self.ctx.kernel(&KernelSpec {
            shader: Shader::BatchNorm,
            entry,
            bindings,
            constants: &[("WG", WORKGROUP as f64)],
        })?;
        let uniform = self.ctx.uniform(&format!("{entry} params"), &self.params);
        let mut bound = vec![&uniform];
        bound.extend_from_slice(buffers);
        let bind_group = self.ctx.bind(&kernel, &bound);
        Ok(Dispatch {
            kernel,
            bind_group,
            groups: grid,
            footprint: self.footprint(entry),
        })
    }

    /// What one dispatch of `entry` loops over and moves: the partial passes walk a
    /// slice's rows, the combining ones the slices of a channel.
    fn footprint(&self, entry: &str) -> Footprint {
        let p = &self.params;
        let elements = f64::from(p.rows) * f64::from(p.channels);
        let partials = f64::from(p.slices) * f64::from(p.channels);
        let channels = f64::from(p.channels);
        let (longest_loop, flops, floats) = match entry {
            "moments_partial" => (p.rows_per_slice, 4.0 * elements, elements + 2.0 * partials),
            "moments_combine" => (p.slices, 6.0 * partials, 2.0 * partials + 6.0 * channels),
            "normalize_rows" => (0, 2.0 * elements, 2.0 * elements + 4.0 * channels),
            "grad_partial" => (
                p.rows_per_slice,
                5.0 * elements,
                2.0 * elements + 2.0 * partials,
            ),
            "grad_combine" => (p.slices, 2.0 * partials, 2.0 * partials + 4.0 * channels),
            _ => (0, 6.0 * elements, 3.0 * elements + 4.0 * channels),
        };
        Footprint::linear(WORKGROUP, longest_loop as usize, flops, 4.0 * floats)
    }

    fn per_slice_grid(&self) -> [u32; 3] {
        let groups = self.params.channels.div_ceil(WORKGROUP);
        let slices = if self.params.rows == 0 {
            0
        } else {
            self.params.slices
        };
        [groups, slices, 1]
    }

    fn linear_grid(&self, n: usize) -> [u32; 3] {
        let (x, y) = grid_1d(self.ctx, (n as u32).div_ceil(WORKGROUP));
        [x, y, 1]
    }

    /// moments_partial and moments_combine: the batch mean and variance into two scratch
    /// buffers (returned), the running statistics moved when the flags say so.
    fn moments(
        &self,
        x: &GpuBuffer,
        running: (&GpuBuffer, &GpuBuffer),
        partials: &GpuBuffer,
        out: &mut Vec<Dispatch>,
    ) -> Result<(GpuBuffer, GpuBuffer)> {
        let c = self.params.channels as usize;
        let (mean, var) = (
            self.scratch("batch mean", c),
            self.scratch("batch variance", c),
        );
        out.push(self.dispatch(
            "moments_partial",
            &[Uniform, ReadWrite, Read],
            &[partials, x],
            self.per_slice_grid(),
        )?);
        out.push(self.dispatch(
            "moments_combine",
            &[Uniform, Read, ReadWrite, ReadWrite, ReadWrite, ReadWrite],
            &[partials, &mean, &var, running.0, running.1],
            self.linear_grid(c),
        )?);
        Ok((mean, var))
    }
}

/// y = BatchNorm(x) `[rows, channels]` with gamma and beta `[channels]`. With `momentum`
/// (training), the batch's statistics normalise and `mean`/`var` (the running statistics)
/// move towards them; without (inference), `mean`/`var` normalise, one dispatch.
#[allow(clippy::too_many_arguments)]
pub fn batch_norm_forward(
    ctx: &GpuContext,
    shape: BatchNormShape,
    x: &GpuBuffer,
    gamma: &GpuBuffer,
    beta: &GpuBuffer,
    mean: &GpuBuffer,
    var: &GpuBuffer,
    y: &GpuBuffer,
    momentum: Option<f32>,
) -> Result<Vec<Dispatch>> {
    let flags = if momentum.is_some() {
        UPDATE_RUNNING
    } else {
        0
    };
    let launch = Launch::new(ctx, shape, momentum.unwrap_or(0.0), flags)?;
    let c = shape.channels;
    for (name, buffer, n) in [
        ("x", x, launch.len),
        ("y", y, launch.len),
        ("gamma", gamma, c),
        ("beta", beta, c),
        ("mean", mean, c),
        ("var", var, c),
    ] {
        launch.check(name, buffer, n)?;
    }
    if x == y {
        return Err(shape_error(
            "x and y are the same buffer; they must differ".into(),
        ));
    }
    let mut out = Vec::new();
    let (use_mean, use_var) = match momentum {
        Some(_) => {
            let partials = launch.scratch("partial sums", launch.params.slices as usize * c * 2);
            launch.moments(x, (mean, var), &partials, &mut out)?
        }
        None => (mean.clone(), var.clone()),
    };
    out.push(launch.dispatch(
        "normalize_rows",
        &[Uniform, ReadWrite, Read, Read, Read, Read, Read],
        &[y, x, gamma, beta, &use_mean, &use_var],
        launch.linear_grid(launch.len),
    )?);
    Ok(out)
}

/// Where one gradient of [`batch_norm_backward`] goes, and whether it adds to it.
pub type GradTarget<'a> = Option<(&'a GpuBuffer, bool)>;

/// The training-mode gradients given dy: dx, dgamma, dbeta, each where given (written, or
/// added with its flag), the batch statistics recomputed from x.
#[allow(clippy::too_many_arguments)]
pub fn batch_norm_backward(
    ctx: &GpuContext,
    shape: BatchNormShape,
    x: &GpuBuffer,
    gamma: &GpuBuffer,
    dy: &GpuBuffer,
    dx: GradTarget<'_>,
    dgamma: GradTarget<'_>,
    dbeta: GradTarget<'_>,
) -> Result<Vec<Dispatch>> {
    let flag = |target: GradTarget<'_>, write: u32, add: u32| match target {
        Some((_, true)) => write | add,
        Some((_, false)) => write,
        None => 0,
    };
    let flags = flag(dx, 0, ACCUMULATE_DX)
        | flag(dgamma, WRITE_DGAMMA, ACCUMULATE_DGAMMA)
        | flag(dbeta, WRITE_DBETA, ACCUMULATE_DBETA);
    let launch = Launch::new(ctx, shape, 0.0, flags)?;
    let c = shape.channels;
    for (name, buffer, n) in [
        ("x", x, launch.len),
        ("dy", dy, launch.len),
        ("gamma", gamma, c),
    ] {
        launch.check(name, buffer, n)?;
    }
    let outputs = [
        ("dx", dx, launch.len),
        ("dgamma", dgamma, c),
        ("dbeta", dbeta, c),
    ];
    for (name, target, n) in outputs {
        if let Some((buffer, _)) = target {
            launch.check(name, buffer, n)?;
            if [x, gamma, dy].contains(&buffer) {
                return Err(shape_error(format!(
                    "{name} is also an input; they must differ"
                )));
            }
        }
    }
    let mut out = Vec::new();
    let partials = launch.scratch("partial sums", launch.params.slices as usize * c * 2);
    // The backward pass never moves the running statistics: they bind to scratch.
    let unused = (
        launch.scratch("unused mean", c),
        launch.scratch("unused var", c),
    );
    let (mean, var) = launch.moments(x, (&unused.0, &unused.1), &partials, &mut out)?;
    out.push(launch.dispatch(
        "grad_partial",
        &[Uniform, ReadWrite, Read, Read, Read],
        &[&partials, x, dy, &mean],
        launch.per_slice_grid(),
    )?);
    let sums = launch.scratch("gradient sums", c * 2);
    let placeholder = |what| launch.scratch(what, 1);
    let dgamma_buf = dgamma.map_or_else(|| placeholder("no dgamma"), |(b, _)| b.clone());
    let dbeta_buf = dbeta.map_or_else(|| placeholder("no dbeta"), |(b, _)| b.clone());
    out.push(launch.dispatch(
        "grad_combine",
        &[Uniform, Read, Read, ReadWrite, ReadWrite, ReadWrite],
        &[&partials, &var, &sums, &dgamma_buf, &dbeta_buf],
        launch.linear_grid(c),
    )?);
    if let Some((dx, _)) = dx {
        out.push(launch.dispatch(
            "grad_input",
            &[Uniform, ReadWrite, Read, Read, Read, Read, Read, Read],
            &[dx, x, dy, gamma, &mean, &var, &sums],
            launch.linear_grid(launch.len),
        )?);
    }
    Ok(out)
}
