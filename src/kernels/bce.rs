//! Launcher for `shaders/bce.wgsl`: binary cross-entropy on logits, mean over the batch,
//! writing dlogits and the logging statistics [loss, mean sigmoid] in one dispatch.

use bytemuck::{Pod, Zeroable};

use crate::error::{Error, Result};
use crate::gpu::{Binding, Dispatch, Footprint, GpuBuffer, GpuContext, KernelSpec, Shader};
use Binding::{Read, ReadWrite, Uniform};

/// Twin of `Params` in `shaders/bce.wgsl`.
#[repr(C)]
#[derive(Debug, Clone, Copy, Pod, Zeroable)]
pub struct BceParams {
    pub count: u32,
    pub label: f32,
    pub scale: f32,
    pub accumulate: u32,
    pub stats_offset: u32,
    pub first: u32,
    pub total: u32,
    pub _pad: u32,
}

pub const PARAMS_TWINS: &[super::ParamsTwin] =
    &[(Shader::Bce, "Params", std::mem::size_of::<BceParams>())];

/// A power of two (the tree reduction halves it).
const WORKGROUP: u32 = 256;

/// Where the labels come from.
#[derive(Debug, Clone, Copy)]
pub enum Labels<'a> {
    /// The same label for every sample (the GAN's all-real 1 and all-fake 0).
    Constant(f32),
    /// One label per sample, `count` f32.
    Buffer(&'a GpuBuffer),
}

/// How the results are written.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BceOptions {
    /// dlogits = scale·(sigmoid(x) - z)/count.
    pub scale: f32,
    /// Add into dlogits instead of overwriting it.
    pub accumulate: bool,
    /// The statistics go to stats\[stats_offset\] (loss) and stats[stats_offset + 1]
    /// (mean sigmoid), so several losses of a step can share one buffer and one readback.
    pub stats_offset: usize,
    /// The loss reads logits `first..first + count` (part of a batch).
    pub first: usize,
    /// The rows of logits and dlogits when there are more than `first + count`: dlogits
    /// is 0 in the others (or keeps them, with `accumulate`).
    pub total: Option<usize>,
}

impl Default for BceOptions {
    fn default() -> Self {
        BceOptions {
            scale: 1.0,
            accumulate: false,
            stats_offset: 0,
            first: 0,
            total: None,
        }
    }
}

/// Checks one loss's buffers and options and returns its uniform.
fn checked_params(
    op: &'static str,
    (logits, labels, count): (&GpuBuffer, Labels<'_>, usize),
    (dlogits, stats): (&GpuBuffer, &GpuBuffer),
    options: BceOptions,
) -> Result<BceParams> {
    let shape_error = |message: String| Error::Shape { op, message };
    if count == 0 {
        return Err(shape_error(
            "no logits: the mean loss of an empty batch is undefined".into(),
        ));
    }
    let count32 = u32::try_from(count)
        .map_err(|_| shape_error(format!("{count} logits do not fit a u32 index")))?;
    let end = options.first.saturating_add(count);
    let total = options.total.unwrap_or(end);
    if total < end {
        return Err(shape_error(format!(
            "rows {}..{end} of {total} logits",
            options.first
        )));
    }
    let (Ok(first32), Ok(total32)) = (u32::try_from(options.first), u32::try_from(total)) else {
        return Err(shape_error(format!(
            "{total} logits do not fit a u32 index"
        )));
    };
    let stats_offset = u32::try_from(options.stats_offset)
        .ok()
        .filter(|&o| o < u32::MAX - 1)
        .ok_or_else(|| shape_error(format!("stats offset {} too large", options.stats_offset)))?;
    let mut buffers = vec![("logits", logits, total), ("dlogits", dlogits, total)];
    if let Labels::Buffer(labels) = labels {
        buffers.push(("labels", labels, count));
    }
    for (name, buffer, n) in &buffers {
        if buffer.size() < *n as u64 * 4 {
            return Err(shape_error(format!(
                "{name} holds {} bytes, {n} f32 need {}",
                buffer.size(),
                n * 4
            )));
        }
    }
    let stats_bytes = (options.stats_offset as u64 + 2) * 4;
    if stats.size() < stats_bytes {
        return Err(shape_error(format!(
            "stats holds {} bytes, offset {} needs {stats_bytes}",
            stats.size(),
            options.stats_offset
        )));
    }
    if dlogits == stats || dlogits == logits || stats == logits {
        return Err(shape_error(
            "logits, dlogits and stats must be three different buffers".into(),
        ));
    }
    if matches!(labels, Labels::Buffer(z) if z == dlogits || z == stats) {
        return Err(shape_error(
            "labels must differ from dlogits and stats".into(),
        ));
    }

    Ok(BceParams {
        count: count32,
        label: match labels {
            Labels::Constant(z) => z,
            Labels::Buffer(_) => 0.0,
        },
        scale: options.scale,
        accumulate: options.accumulate as u32,
        stats_offset,
        first: first32,
        total: total32,
        _pad: 0,
    })
}

/// Mean BCE of `count` logits (count > 0, from `options.first`) against `labels`: writes
/// dlogits = d loss/d logits · scale and stats[offset..offset + 2] =
/// [mean loss, mean sigmoid(logits)]. Matches `cpu::bce::bce_with_logits` (and
/// `bce_constant_label_rows` for part of a batch).
pub fn bce_with_logits(
    ctx: &GpuContext,
    logits: &GpuBuffer,
    labels: Labels<'_>,
    count: usize,
    dlogits: &GpuBuffer,
    stats: &GpuBuffer,
    options: BceOptions,
) -> Result<Dispatch> {
    let params = checked_params(
        "bce_with_logits",
        (logits, labels, count),
        (dlogits, stats),
        options,
    )?;
    let total = params.total as usize;
    let (entry, bindings): (_, &'static [Binding]) = match labels {
        Labels::Constant(_) => ("bce_constant", &[Uniform, Read, ReadWrite, ReadWrite]),
        Labels::Buffer(_) => ("bce_labels", &[Uniform, Read, ReadWrite, ReadWrite, Read]),
    };
    let kernel = ctx.kernel(&KernelSpec {
        shader: Shader::Bce,
        entry,
        bindings,
        constants: &[("WG", WORKGROUP as f64)],
    })?;
    let uniform = ctx.uniform("bce_with_logits params", &params);
    let mut bound = vec![&uniform, logits, dlogits, stats];
    if let Labels::Buffer(labels) = labels {
        bound.push(labels);
    }
    let bind_group = ctx.bind(&kernel, &bound);
    // One workgroup strides over the logits, then halves its partial sums.
    let trips = total
        .div_ceil(WORKGROUP as usize)
        .max(WORKGROUP.ilog2() as usize);
    let label_bytes = if matches!(labels, Labels::Buffer(_)) {
        4
    } else {
        0
    };
    let bytes = count * (4 + label_bytes) + total * 4 + 8;
    Ok(Dispatch {
        kernel,
        bind_group,
        groups: [1, 1, 1],
        footprint: Footprint::linear(WORKGROUP, trips, 0.0, bytes as f64),
    })
}

/// One constant-label loss of a [`bce_constant_pair`]: its label, rows (`count` from
/// `options.first`), statistics buffer and options.
pub struct ConstantLoss<'a> {
    pub label: f32,
    pub count: usize,
    pub stats: &'a GpuBuffer,
    pub options: BceOptions,
}

/// Two constant-label losses of the same logits in one dispatch, `second` after `first`
/// (its gradient added to the first's with `accumulate`, or overwriting it without):
/// writes exactly what [`bce_with_logits`] writes for `first` and then for `second`.
pub fn bce_constant_pair(
    ctx: &GpuContext,
    logits: &GpuBuffer,
    dlogits: &GpuBuffer,
    first: ConstantLoss,
    second: ConstantLoss,
) -> Result<Dispatch> {
    let op = "bce_constant_pair";
    let [params, params_b] = [&first, &second].map(|loss| {
        checked_params(
            op,
            (logits, Labels::Constant(loss.label), loss.count),
            (dlogits, loss.stats),
            loss.options,
        )
    });
    let (params, params_b) = (params?, params_b?);
    if params.total != params_b.total {
        return Err(Error::Shape {
            op,
            message: format!(
                "the two losses see {} and {} rows of the same logits",
                params.total, params_b.total
            ),
        });
    }
    if first.stats == second.stats {
        return Err(Error::Shape {
            op,
            message: "the two losses' statistics must be different buffers".into(),
        });
    }
    let kernel = ctx.kernel(&KernelSpec {
        shader: Shader::Bce,
        entry: op,
        bindings: &[Uniform, Read, ReadWrite, ReadWrite, Uniform, ReadWrite],
        constants: &[("WG", WORKGROUP as f64)],
    })?;
    let uniform = ctx.uniform("bce pair params", &params);
    let uniform_b = ctx.uniform("bce pair params (second loss)", &params_b);
    let bind_group = ctx.bind(
        &kernel,
        &[
            &uniform,
            logits,
            dlogits,
            first.stats,
            &uniform_b,
            second.stats,
        ],
    );
    let total = params.total as usize;
    let trips = 2 * total.div_ceil(WORKGROUP as usize) + WORKGROUP.ilog2() as usize;
    let bytes = 4 * (first.count + second.count) + 8 * total + 16;
    Ok(Dispatch {
        kernel,
        bind_group,
        groups: [1, 1, 1],
        footprint: Footprint::linear(WORKGROUP, trips, 0.0, bytes as f64),
    })
}
