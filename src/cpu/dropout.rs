//! Dropout with a counter-based mask: element i is kept when word i of the Philox stream
//! (seed, stream) is at least rate·2^32, so the CPU and the GPU drop the same elements
//! (the words are integer arithmetic, bit-exact on both) and the backward pass draws the
//! mask again instead of storing it. Kept elements are scaled by 1/(1 - rate), as Keras's
//! (TensorFlow's) dropout does.

use super::{check_len, par};
use crate::error::{Error, Result};

/// The mask and scale of one dropout rate.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DropoutMask {
    /// Words below this are dropped: round(rate·2^32).
    pub threshold: u32,
    /// 1/(1 - rate), rounded from f64.
    pub scale: f32,
}

impl DropoutMask {
    pub fn new(rate: f32) -> Result<Self> {
        if !(0.0..1.0).contains(&rate) {
            return Err(Error::InvalidArgument(format!(
                "dropout rate {rate} must lie in [0, 1)"
            )));
        }
        let threshold = (f64::from(rate) * 4_294_967_296.0).round();
        Ok(DropoutMask {
            threshold: threshold.min(f64::from(u32::MAX)) as u32,
            scale: (1.0 / (1.0 - f64::from(rate))) as f32,
        })
    }

    /// `out[i] = keep(i) ? f(i)·scale : 0` (or `out[i] +=` that), threaded.
    fn apply(
        self,
        seed: u64,
        stream: u64,
        out: &mut [f32],
        accumulate: bool,
        f: impl Fn(usize) -> f32 + Sync + Send,
    ) {
        // Chunks start at multiples of 4, so each begins on a Philox block.
        const { assert!(par::CHUNK.is_multiple_of(4)) };
        par::chunks_mut(out, |at, out| {
            for (q, quad) in out.chunks_mut(4).enumerate() {
                let words = super::noise::block(seed, stream, (at / 4 + q) as u64);
                for (lane, (o, word)) in quad.iter_mut().zip(words).enumerate() {
                    let i = at + 4 * q + lane;
                    let v = if word >= self.threshold {
                        f(i) * self.scale
                    } else {
                        0.0
                    };
                    *o = if accumulate { *o + v } else { v };
                }
            }
        });
    }
}

/// y = dropout(x) with the mask of Philox stream (seed, stream).
pub fn dropout_into(seed: u64, stream: u64, rate: f32, x: &[f32], y: &mut [f32]) -> Result<()> {
    check_len("dropout", "y", y.len(), x.len())?;
    DropoutMask::new(rate)?.apply(seed, stream, y, false, |i| x[i]);
    Ok(())
}

/// dx (+)= dy·mask·scale, the mask of the same stream as the forward pass.
pub fn dropout_backward_into(
    seed: u64,
    stream: u64,
    rate: f32,
    dy: &[f32],
    dx: &mut [f32],
    accumulate: bool,
) -> Result<()> {
    check_len("dropout_backward", "dx", dx.len(), dy.len())?;
    DropoutMask::new(rate)?.apply(seed, stream, dx, accumulate, |i| dy[i]);
    Ok(())
}
