//! Keras BatchNormalization over the last axis: x [rows, channels] (a Dense output, or an
//! NHWC feature map with rows = batch·h·w), statistics per channel.
//!
//! Forward, Keras's formula (`tf.nn.batch_normalization`):
//!   inv = gamma / sqrt(var + epsilon),   y = x·inv + (beta - mean·inv)
//! with the batch's mean and biased variance in training (and the running statistics moved
//! towards them: running = running·momentum + batch·(1 - momentum)), the running ones in
//! inference. Backward (training), with x̂ = (x - mean)/sqrt(var + epsilon):
//!   dbeta = Σ dy,   dgamma = Σ dy·x̂,   dx = gamma/sqrt(var + eps)·(dy - dbeta/rows - x̂·dgamma/rows)
//! The sums are taken in f64 (two passes for the variance), so the reference does not
//! depend on the order of a long f32 reduction.

use super::check_len;
use crate::error::{Error, Result};

fn rows_of(op: &'static str, len: usize, channels: usize) -> Result<usize> {
    if channels == 0 || !len.is_multiple_of(channels) {
        return Err(Error::Shape {
            op,
            message: format!("{len} values are not whole rows of {channels} channels"),
        });
    }
    Ok(len / channels)
}

/// Per-channel mean and biased variance of x [rows, channels], in f64 (two passes). An empty
/// batch has mean 0 and variance 0.
pub fn batch_moments(x: &[f32], channels: usize) -> Result<(Vec<f64>, Vec<f64>)> {
    let rows = rows_of("batch_moments", x.len(), channels)?;
    let mut mean = vec![0.0f64; channels];
    for row in x.chunks_exact(channels) {
        for (m, &v) in mean.iter_mut().zip(row) {
            *m += f64::from(v);
        }
    }
    let scale = 1.0 / rows.max(1) as f64;
    mean.iter_mut().for_each(|m| *m *= scale);
    let mut var = vec![0.0f64; channels];
    for row in x.chunks_exact(channels) {
        for ((s, &v), &m) in var.iter_mut().zip(row).zip(&mean) {
            let d = f64::from(v) - m;
            *s += d * d;
        }
    }
    var.iter_mut().for_each(|s| *s *= scale);
    Ok((mean, var))
}

/// Forward into `y`. `mean` and `var` are the running statistics: read in inference
/// (`momentum` None), moved towards the batch's in training (`Some(momentum)`).
#[allow(clippy::too_many_arguments)]
pub fn batch_norm_forward_into(
    x: &[f32],
    gamma: &[f32],
    beta: &[f32],
    mean: &mut [f32],
    var: &mut [f32],
    epsilon: f32,
    momentum: Option<f32>,
    y: &mut [f32],
) -> Result<()> {
    const OP: &str = "batch_norm_forward";
    let channels = gamma.len();
    rows_of(OP, x.len(), channels)?;
    check_len(OP, "beta", beta.len(), channels)?;
    check_len(OP, "mean", mean.len(), channels)?;
    check_len(OP, "var", var.len(), channels)?;
    check_len(OP, "y", y.len(), x.len())?;
    let (stat_mean, stat_var): (Vec<f32>, Vec<f32>) = match momentum {
        Some(momentum) => {
            let (bm, bv) = batch_moments(x, channels)?;
            let (bm, bv): (Vec<f32>, Vec<f32>) = (
                bm.iter().map(|&m| m as f32).collect(),
                bv.iter().map(|&v| v as f32).collect(),
            );
            // Keras: moving·momentum + batch·(1 - momentum), 1 - momentum rounded from f64.
            let keep = (1.0 - f64::from(momentum)) as f32;
            for (r, &b) in mean.iter_mut().zip(&bm) {
                *r = *r * momentum + b * keep;
            }
            for (r, &b) in var.iter_mut().zip(&bv) {
                *r = *r * momentum + b * keep;
            }
            (bm, bv)
        }
        None => (mean.to_vec(), var.to_vec()),
    };
    let (inv, shift) = scale_and_shift(gamma, beta, &stat_mean, &stat_var, epsilon);
    for (yr, xr) in y.chunks_exact_mut(channels).zip(x.chunks_exact(channels)) {
        for (((o, &v), &a), &b) in yr.iter_mut().zip(xr).zip(&inv).zip(&shift) {
            *o = v * a + b;
        }
    }
    Ok(())
}

/// inv = gamma/sqrt(var + epsilon) and shift = beta - mean·inv, per channel, in f32 as
/// TensorFlow computes them.
pub fn scale_and_shift(
    gamma: &[f32],
    beta: &[f32],
    mean: &[f32],
    var: &[f32],
    epsilon: f32,
) -> (Vec<f32>, Vec<f32>) {
    let inv: Vec<f32> = gamma
        .iter()
        .zip(var)
        .map(|(&g, &v)| g * (1.0 / (v + epsilon).sqrt()))
        .collect();
    let shift = beta
        .iter()
        .zip(mean)
        .zip(&inv)
        .map(|((&b, &m), &i)| b - m * i)
        .collect();
    (inv, shift)
}

/// Where a gradient goes and whether it adds to what is there.
pub type GradOut<'a> = Option<(&'a mut [f32], bool)>;

fn store(dst: &mut f32, value: f32, accumulate: bool) {
    *dst = if accumulate { *dst + value } else { value };
}

/// The gradients of a training-mode BatchNorm given dy, the batch statistics recomputed
/// from x. Each of `dx`, `dgamma`, `dbeta` is written (or added to) only when given.
pub fn batch_norm_backward_into(
    x: &[f32],
    gamma: &[f32],
    dy: &[f32],
    epsilon: f32,
    dx: GradOut<'_>,
    dgamma: GradOut<'_>,
    dbeta: GradOut<'_>,
) -> Result<()> {
    const OP: &str = "batch_norm_backward";
    let channels = gamma.len();
    let rows = rows_of(OP, x.len(), channels)?;
    check_len(OP, "dy", dy.len(), x.len())?;
    let (mean, var) = batch_moments(x, channels)?;
    let inv_std: Vec<f64> = var
        .iter()
        .map(|&v| 1.0 / (v + f64::from(epsilon)).sqrt())
        .collect();
    let mut sum_dy = vec![0.0f64; channels];
    let mut sum_dy_xhat = vec![0.0f64; channels];
    for (xr, dr) in x.chunks_exact(channels).zip(dy.chunks_exact(channels)) {
        for c in 0..channels {
            let g = f64::from(dr[c]);
            sum_dy[c] += g;
            sum_dy_xhat[c] += g * (f64::from(xr[c]) - mean[c]) * inv_std[c];
        }
    }
    if let Some((db, accumulate)) = dbeta {
        check_len(OP, "dbeta", db.len(), channels)?;
        for (d, &s) in db.iter_mut().zip(&sum_dy) {
            store(d, s as f32, accumulate);
        }
    }
    if let Some((dg, accumulate)) = dgamma {
        check_len(OP, "dgamma", dg.len(), channels)?;
        for (d, &s) in dg.iter_mut().zip(&sum_dy_xhat) {
            store(d, s as f32, accumulate);
        }
    }
    if let Some((dx, accumulate)) = dx {
        check_len(OP, "dx", dx.len(), x.len())?;
        let n = rows.max(1) as f64;
        // Per channel in f64, then one f32 expression per element.
        let mean32: Vec<f32> = mean.iter().map(|&m| m as f32).collect();
        let inv32: Vec<f32> = inv_std.iter().map(|&i| i as f32).collect();
        let scale: Vec<f32> = (0..channels)
            .map(|c| (f64::from(gamma[c]) * inv_std[c]) as f32)
            .collect();
        let mean_dy: Vec<f32> = sum_dy.iter().map(|&s| (s / n) as f32).collect();
        let mean_dy_xhat: Vec<f32> = sum_dy_xhat.iter().map(|&s| (s / n) as f32).collect();
        for ((dxr, xr), dr) in dx
            .chunks_exact_mut(channels)
            .zip(x.chunks_exact(channels))
            .zip(dy.chunks_exact(channels))
        {
            for c in 0..channels {
                let xhat = (xr[c] - mean32[c]) * inv32[c];
                let g = scale[c] * (dr[c] - mean_dy[c] - xhat * mean_dy_xhat[c]);
                store(&mut dxr[c], g, accumulate);
            }
        }
    }
    Ok(())
}
