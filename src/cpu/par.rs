//! Element-wise loops split across rayon's pool (the threads the GEMM uses) in fixed chunks.
//!
//! Every element is computed by the same code whichever thread runs its chunk, so results do
//! not depend on the thread count or on scheduling.

use rayon::prelude::*;

/// Elements per task: 64 KiB of f32, large enough that scheduling costs nothing next to the
/// loop, small enough that two threads share a 1.25M-element activation evenly.
pub(crate) const CHUNK: usize = 1 << 14;

/// Below this many elements a loop runs on the calling thread: waking the pool would cost more.
const SERIAL_BELOW: usize = 1 << 15;

/// Calls `f(offset, chunk)` for `out` cut into chunks of [`CHUNK`] (offset = the chunk's first
/// index), in parallel when `out` is large.
pub(crate) fn chunks_mut(out: &mut [f32], f: impl Fn(usize, &mut [f32]) + Sync + Send) {
    if out.len() < SERIAL_BELOW {
        f(0, out);
    } else {
        out.par_chunks_mut(CHUNK)
            .enumerate()
            .for_each(|(i, chunk)| f(i * CHUNK, chunk));
    }
}

/// `y[i] = f(x[i])`. The caller has checked that the lengths agree.
pub(crate) fn map(x: &[f32], y: &mut [f32], f: impl Fn(f32) -> f32 + Sync + Send) {
    debug_assert_eq!(x.len(), y.len());
    chunks_mut(y, |at, y| {
        let x = &x[at..at + y.len()];
        for (y, &x) in y.iter_mut().zip(x) {
            *y = f(x);
        }
    });
}

/// `out[i] = f(a[i], b[i], c[i])`, or `out[i] += ...` when `accumulate`. Lengths checked by the
/// caller. Two loops rather than a branch per element, so each vectorises.
pub(crate) fn map3(
    a: &[f32],
    b: &[f32],
    c: &[f32],
    out: &mut [f32],
    accumulate: bool,
    f: impl Fn(f32, f32, f32) -> f32 + Sync + Send,
) {
    debug_assert!(a.len() == out.len() && b.len() == out.len() && c.len() == out.len());
    chunks_mut(out, |at, out| {
        let n = out.len();
        let (a, b, c) = (&a[at..at + n], &b[at..at + n], &c[at..at + n]);
        if accumulate {
            for i in 0..n {
                out[i] += f(a[i], b[i], c[i]);
            }
        } else {
            for i in 0..n {
                out[i] = f(a[i], b[i], c[i]);
            }
        }
    });
}
