//! An exponential moving average of weights (Polyak averaging of a generator), with
//! TensorFlow's `ExponentialMovingAverage(num_updates=t)` warm-up:
//!   d = min(decay, (1 + t)/(10 + t)),   average = d·average + (1 - d)·source
//! at 0-based step t, so the first averages follow the weights (d = 0.1, 0.18, ...) instead
//! of staying near where they started.

use super::check_len;
use crate::error::Result;

/// (d, 1 - d) of step t, each rounded from f64; the GPU kernel gets the same two numbers.
pub fn ema_weights(decay: f32, t: u64) -> (f32, f32) {
    let warm = (1.0 + t as f64) / (10.0 + t as f64);
    let d = f64::from(decay).min(warm);
    (d as f32, (1.0 - d) as f32)
}

/// One step: `average = d·average + (1 - d)·source` at step `t`.
pub fn ema_step(decay: f32, t: u64, source: &[f32], average: &mut [f32]) -> Result<()> {
    check_len("ema", "average", average.len(), source.len())?;
    let weights = ema_weights(decay, t);
    super::par::chunks_mut(average, |at, average| {
        average_into(average, &source[at..], weights)
    });
    Ok(())
}

/// `average = d·average + (1 - d)·source` element by element, with (d, 1 - d) from
/// [`ema_weights`]: the one update that [`ema_step`] and Adam's fused step share.
#[inline]
pub(super) fn average_into(average: &mut [f32], source: &[f32], (d, rest): (f32, f32)) {
    for (a, &s) in average.iter_mut().zip(source) {
        *a = d * *a + rest * s;
    }
}
