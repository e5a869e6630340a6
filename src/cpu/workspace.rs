//! How the convolutions use the threads: the batch is cut into [`SLICES`] fixed slices that run
//! in parallel, each on one thread with single-threaded GEMMs over chunks of its images, in
//! scratch that a [`Workspace`] keeps from call to call.
//!
//! Why slices rather than threaded GEMMs: a layer's GEMMs are modest (tens of MFLOP per chunk),
//! and splitting each of them between threads costs a synchronisation per call and lets one
//! descheduled thread stall the other; whole slices need no synchronisation until the end, and
//! rayon hands slices to whichever thread is free. The slices are fixed (not one per thread),
//! so a weight gradient, summed slice by slice in slice order, has the same bits on any number
//! of threads.

use std::ops::Range;

use rayon::prelude::*;

use super::activation::{Activation, activation_backward_into, activation_forward_into};
use super::check_len;
use crate::error::Result;

/// Fixed pieces of the batch: enough for rayon to balance two to eight threads, few enough that
/// the weight gradient's per-slice partial sums stay small.
pub const SLICES: usize = 8;

/// Scratch of the convolutions: a column-matrix buffer per slice, the weight gradient's
/// per-slice partial sums and rearranged weights, grown to the largest layer's need and then
/// reused.
#[derive(Debug, Default)]
pub struct Workspace {
    cols: [Vec<f32>; SLICES],
    partials: Vec<f32>,
    /// A layer's weights rearranged for its GEMMs (the transposed convolution's phases).
    pub(super) packed_weights: Vec<f32>,
}

/// An activation applied to a layer's output as each chunk of it is finished (while it is in
/// cache): (activation, where its output goes, as long as the layer's output).
pub type FusedActivation<'a> = Option<(Activation, &'a mut [f32])>;

/// The backward of the activation that a layer's output feeds, applied to the layer's
/// output gradient (its result: the activation's `dy`) as each chunk of it is finished:
/// `dx = f'(x)·dy` (or `dx +=` it when `accumulate`), for the activation's input `x` and
/// output `y`, each as long as the layer's output.
pub struct FusedActivationGrad<'a> {
    pub act: Activation,
    pub x: &'a [f32],
    pub y: &'a [f32],
    pub dx: &'a mut [f32],
    pub accumulate: bool,
}

/// Checks that a fused activation's output is as long as the layer's.
pub(super) fn check_fused(op: &'static str, fused: &FusedActivation<'_>, len: usize) -> Result<()> {
    match fused {
        Some((_, out)) => check_len(op, "activation output", out.len(), len),
        None => Ok(()),
    }
}

/// Checks that a fused activation gradient's buffers are as long as the layer's output.
pub(super) fn check_fused_grad(
    op: &'static str,
    fused: &Option<FusedActivationGrad<'_>>,
    len: usize,
) -> Result<()> {
    let Some(f) = fused else { return Ok(()) };
    check_len(op, "activation input", f.x.len(), len)?;
    check_len(op, "activation output", f.y.len(), len)?;
    check_len(op, "activation input gradient", f.dx.len(), len)
}

/// What runs on each finished chunk of a layer's output.
pub(super) enum Fused<'a> {
    Nothing,
    Forward(Activation, &'a mut [f32]),
    Backward(FusedActivationGrad<'a>),
}

impl<'a> From<FusedActivation<'a>> for Fused<'a> {
    fn from(fused: FusedActivation<'a>) -> Self {
        match fused {
            Some((act, y)) => Fused::Forward(act, y),
            None => Fused::Nothing,
        }
    }
}

impl<'a> From<Option<FusedActivationGrad<'a>>> for Fused<'a> {
    fn from(fused: Option<FusedActivationGrad<'a>>) -> Self {
        fused.map_or(Fused::Nothing, Fused::Backward)
    }
}

impl<'a> Fused<'a> {
    /// Cut at the slice boundaries, as the layer's output is.
    fn split(self, batch: usize, per_image: usize) -> [Fused<'a>; SLICES] {
        let mut parts: [Fused<'a>; SLICES] = std::array::from_fn(|_| Fused::Nothing);
        match self {
            Fused::Nothing => {}
            Fused::Forward(act, y) => {
                for (part, y) in parts.iter_mut().zip(split_by_slice(y, batch, per_image)) {
                    *part = Fused::Forward(act, y);
                }
            }
            Fused::Backward(f) => {
                let dxs = split_by_slice(f.dx, batch, per_image);
                for (s, (part, dx)) in parts.iter_mut().zip(dxs).enumerate() {
                    let images = slice_images(batch, s);
                    let range = images.start * per_image..images.end * per_image;
                    *part = Fused::Backward(FusedActivationGrad {
                        act: f.act,
                        x: &f.x[range.clone()],
                        y: &f.y[range],
                        dx,
                        accumulate: f.accumulate,
                    });
                }
            }
        }
        parts
    }
}

/// The images of slice `s` of a batch: near-equal contiguous ranges, in order.
fn slice_images(batch: usize, s: usize) -> Range<usize> {
    s * batch / SLICES..(s + 1) * batch / SLICES
}

/// `out` (per_image floats per image) cut at the slice boundaries.
fn split_by_slice(mut out: &mut [f32], batch: usize, per_image: usize) -> [&mut [f32]; SLICES] {
    let mut parts: [&mut [f32]; SLICES] = Default::default();
    for (s, part) in parts.iter_mut().enumerate() {
        let (head, tail) =
            std::mem::take(&mut out).split_at_mut(slice_images(batch, s).len() * per_image);
        *part = head;
        out = tail;
    }
    parts
}

/// One slice's share of a layer's output.
pub(super) struct SliceOut<'a> {
    /// The slice's images.
    pub(super) images: Range<usize>,
    /// Its part of the output (or its partial sum, in [`summed_over_slices`]).
    pub(super) out: &'a mut [f32],
    /// Column-matrix scratch, grown as needed.
    pub(super) cols: &'a mut Vec<f32>,
    /// Its part of what is fused onto the output.
    fused: Fused<'a>,
}

impl SliceOut<'_> {
    /// Applies what is fused, if anything, to `range` of this slice's output.
    pub(super) fn finish(&mut self, range: Range<usize>) -> Result<()> {
        let out = &self.out[range.clone()];
        match &mut self.fused {
            Fused::Nothing => Ok(()),
            Fused::Forward(act, y) => activation_forward_into(*act, out, &mut y[range]),
            Fused::Backward(f) => {
                let (x, y) = (&f.x[range.clone()], &f.y[range.clone()]);
                activation_backward_into(f.act, x, y, out, &mut f.dx[range], f.accumulate)
            }
        }
    }
}

/// Runs `job` on every slice in parallel, each with its part of `out` (`per_image` floats per
/// image) and of what is fused onto it.
pub(super) fn per_slice<'a>(
    out: &mut [f32],
    fused: impl Into<Fused<'a>>,
    batch: usize,
    per_image: usize,
    ws: &mut Workspace,
    job: impl Fn(SliceOut<'_>) -> Result<()> + Sync,
) -> Result<()> {
    let parts = split_by_slice(out, batch, per_image);
    let fused_parts = fused.into().split(batch, per_image);
    parts
        .into_par_iter()
        .zip(fused_parts)
        .zip(ws.cols.par_iter_mut())
        .enumerate()
        .try_for_each(|(s, ((out, fused), cols))| {
            job(SliceOut {
                images: slice_images(batch, s),
                out,
                cols,
                fused,
            })
        })
}

/// Runs `job` on every slice in parallel, each writing its partial sum (it must overwrite all
/// of it, unless the slice has no images), then `out` = (out +) Σ partials in slice order.
pub(super) fn summed_over_slices(
    out: &mut [f32],
    accumulate: bool,
    batch: usize,
    ws: &mut Workspace,
    job: impl Fn(SliceOut<'_>) -> Result<()> + Sync,
) -> Result<()> {
    summed_beside(
        out,
        accumulate,
        &mut [],
        0,
        Fused::Nothing,
        batch,
        ws,
        |partial, s| {
            job(SliceOut {
                images: s.images,
                out: partial,
                cols: s.cols,
                fused: Fused::Nothing,
            })
        },
    )
}

/// [`summed_over_slices`] with a second output computed beside the sum: each slice's job gets
/// its partial sum and its part of `beside` (`per_image` floats per image, with its part of
/// what is fused onto that). `out` must not be empty, or nothing runs.
#[allow(clippy::too_many_arguments)] // two outputs, each with its own options
pub(super) fn summed_beside<'a>(
    out: &mut [f32],
    accumulate: bool,
    beside: &mut [f32],
    per_image: usize,
    fused: impl Into<Fused<'a>>,
    batch: usize,
    ws: &mut Workspace,
    job: impl Fn(&mut [f32], SliceOut<'_>) -> Result<()> + Sync,
) -> Result<()> {
    let len = out.len();
    if len == 0 {
        return Ok(());
    }
    if ws.partials.len() < len * SLICES {
        ws.partials.resize(len * SLICES, 0.0);
    }
    let partials = &mut ws.partials[..len * SLICES];
    let parts = split_by_slice(beside, batch, per_image);
    let fused_parts = fused.into().split(batch, per_image);
    partials
        .par_chunks_mut(len)
        .zip(parts)
        .zip(fused_parts)
        .zip(ws.cols.par_iter_mut())
        .enumerate()
        .try_for_each(|(s, (((partial, out), fused), cols))| {
            let images = slice_images(batch, s);
            if images.is_empty() {
                partial.fill(0.0);
                return Ok(());
            }
            let slice = SliceOut {
                images,
                out,
                cols,
                fused,
            };
            job(partial, slice)
        })?;
    let partials = &*partials;
    // Partial by partial over the chunk (contiguous, vectorised); each element still adds the
    // slices in slice order onto its start value.
    super::par::chunks_mut(out, |at, out| {
        if !accumulate {
            out.fill(0.0);
        }
        let n = out.len();
        for partial in partials.chunks_exact(len) {
            for (o, &p) in out.iter_mut().zip(&partial[at..at + n]) {
                *o += p;
            }
        }
    });
    Ok(())
}
