//! The transposed convolution's forward pass as s_h·s_w ordinary convolutions, one per output
//! phase ("sub-pixel" decomposition).
//!
//! Output row p is reached by input row i through kernel row a where i·s + a = p + crop. So
//! the rows with (p + crop) mod s = r take only the kernel rows a = r + t·s, from input rows
//! m - t, where m = (p + crop - r)/s: an ordinary stride-1 convolution over x with those taps.
//! Each phase is then im2col(x) · (its taps of w), whose rows are exactly its output pixels:
//! nothing is scattered and added afterwards (the scatter formulation multiplied in_c-long rows
//! and added the results where they landed, a GEMM with only in_c for its inner dimension).
//! The rows are split where windows hang over the input's top or bottom, so that those GEMMs
//! skip the kernel rows outside; taps beyond the left and right edges multiply zeros.

use std::ops::Range;

use super::conv::image_chunks;
use super::gemm::gemm_serial_strided_a;
use crate::error::Result;
use crate::geometry::ConvTranspose2dGeometry;

/// One axis of one phase: the output positions first_out + g·stride for g < count, reached by
/// the kernel taps residue + t·stride (t < taps) from input positions first_m + g - t.
#[derive(Debug, Clone, Copy)]
struct AxisPhase {
    residue: usize,
    taps: usize,
    first_out: usize,
    count: usize,
    first_m: usize,
}

impl AxisPhase {
    fn new(k: usize, stride: usize, crop: usize, out_len: usize, r: usize) -> Self {
        let taps = if r < k { (k - r).div_ceil(stride) } else { 0 };
        let first_out = (r + stride - crop % stride) % stride;
        let count = if first_out < out_len {
            (out_len - 1 - first_out) / stride + 1
        } else {
            0
        };
        // first_out + crop - r is a multiple of stride and above -stride, hence >= 0.
        let first_m = (first_out + crop - r) / stride;
        Self {
            residue: r,
            taps,
            first_out,
            count,
            first_m,
        }
    }

    /// The input positions of output g's taps in the column order, which runs t downwards
    /// (t = taps-1 first), so that they ascend: first_m + g + 1 - taps + j for j < taps.
    /// As a signed start, since it may lie before the input.
    fn window_start(&self, g: usize) -> isize {
        (self.first_m + g + 1) as isize - self.taps as isize
    }

    /// Kernel tap of column position j (the order of `window_start`).
    fn tap(&self, j: usize, stride: usize) -> usize {
        self.residue + (self.taps - 1 - j) * stride
    }

    /// The column positions j of output g whose input position lies inside [0, len).
    fn inside(&self, g: usize, len: usize) -> Range<usize> {
        let start = self.window_start(g);
        let first = usize::try_from(-start).unwrap_or(0).min(self.taps);
        let end = usize::try_from(len as isize - start)
            .unwrap_or(0)
            .min(self.taps);
        first..end.max(first)
    }
}

/// The phases of one transposed convolution.
pub(super) struct Phases<'g> {
    g: &'g ConvTranspose2dGeometry,
}

impl<'g> Phases<'g> {
    pub(super) fn new(g: &'g ConvTranspose2dGeometry) -> Self {
        Self { g }
    }

    /// Every phase, rows outer, as (row phase, column phase).
    fn all(&self) -> impl Iterator<Item = (AxisPhase, AxisPhase)> + use<> {
        let g = *self.g;
        let row = move |r| AxisPhase::new(g.k_h, g.stride_h, g.crop_top, g.out_h, r);
        let column = move |r| AxisPhase::new(g.k_w, g.stride_w, g.crop_left, g.out_w, r);
        (0..g.stride_h).flat_map(move |ry| (0..g.stride_w).map(move |rx| (row(ry), column(rx))))
    }

    /// Floats per image of the largest phase's column matrix and of its GEMM output.
    fn scratch_per_image(&self) -> (usize, usize) {
        let in_c = self.g.in_c;
        let out_c = self.g.out_c;
        self.all().fold((0, 0), |(cols, out), (py, px)| {
            let pixels = py.count * px.count;
            (
                cols.max(pixels * py.taps * px.taps * in_c),
                out.max(pixels * out_c),
            )
        })
    }

    /// `images` in chunks whose column matrices fit the cache (relative to `images.start`).
    pub(super) fn chunks(
        &self,
        images: Range<usize>,
    ) -> impl Iterator<Item = Range<usize>> + use<> {
        image_chunks(images, self.scratch_per_image().0)
    }

    /// w (k_h, k_w, out_c, in_c) -> every phase's GEMM operand, one after the other in the
    /// order of [`Self::all`], each (taps_h·taps_w·in_c, out_c) with rows in column order.
    /// Every tap belongs to exactly one phase, so `packed` is as long as w.
    pub(super) fn pack_weights(&self, w: &[f32], packed: &mut Vec<f32>) {
        let g = self.g;
        packed.clear();
        for (py, px) in self.all() {
            for jy in 0..py.taps {
                for jx in 0..px.taps {
                    let (a, c) = (py.tap(jy, g.stride_h), px.tap(jx, g.stride_w));
                    let block = &w[(a * g.k_w + c) * g.out_c * g.in_c..][..g.out_c * g.in_c];
                    // block is (out_c, in_c); the operand wants (in_c, out_c).
                    for ci in 0..g.in_c {
                        packed.extend(block.iter().skip(ci).step_by(g.in_c));
                    }
                }
            }
        }
    }

    /// y (n, out_h, out_w, out_c) of the n images in x (n, in_h, in_w, in_c), plus `bias`:
    /// per phase, im2col of x into scratch, one GEMM, and its rows copied to their pixels.
    pub(super) fn forward_chunk(
        &self,
        x: &[f32],
        packed: &[f32],
        bias: Option<&[f32]>,
        y: &mut [f32],
        scratch: &mut Vec<f32>,
    ) -> Result<()> {
        let g = self.g;
        let images = x.len().checked_div(g.in_h * g.in_w * g.in_c).unwrap_or(0);
        let (cols_per_image, out_per_image) = self.scratch_per_image();
        let need = images * (cols_per_image + out_per_image);
        if scratch.len() < need {
            scratch.resize(need, 0.0);
        }
        let (cols, out) = scratch.split_at_mut(images * cols_per_image);
        let mut weights = packed;
        for (py, px) in self.all() {
            let k = py.taps * px.taps * g.in_c;
            let (phase_w, rest) = weights.split_at(k * g.out_c);
            weights = rest;
            let rows = images * py.count * px.count;
            if rows == 0 {
                continue;
            }
            let cols = &mut cols[..rows * k];
            let out = &mut out[..rows * g.out_c];
            if k > 0 {
                self.im2col(py, px, x, cols);
            }
            // Rows go by output row gy (then image, then gx), so the rows of the output rows
            // whose windows hang over the input's top or bottom are blocks of their own: their
            // GEMMs take only the kernel rows inside, not the zeros of the others. Without taps
            // (a stride above the kernel) a GEMM's k is 0: it writes zeros.
            let run = px.taps * g.in_c;
            let per_gy = images * px.count;
            let mut gy = 0;
            while gy < py.count {
                let inside = py.inside(gy, g.in_h);
                let end = (gy..py.count)
                    .find(|&e| py.inside(e, g.in_h) != inside)
                    .unwrap_or(py.count);
                let block = gy * per_gy..end * per_gy;
                gemm_serial_strided_a(
                    block.len(),
                    g.out_c,
                    inside.len() * run,
                    &cols[block.start * k + inside.start * run..],
                    k,
                    &phase_w[inside.start * run * g.out_c..inside.end * run * g.out_c],
                    &mut out[block.start * g.out_c..block.end * g.out_c],
                )?;
                gy = end;
            }
            self.place(py, px, out, bias, y);
        }
        Ok(())
    }

    /// The column matrix of one phase: a row per (output row gy, image, gx) of the phase, its
    /// taps_h·taps_w·in_c columns the input pixels the taps read (0 outside the input
    /// horizontally; kernel rows above or below the input are left unwritten, the GEMMs
    /// skip them).
    fn im2col(&self, py: AxisPhase, px: AxisPhase, x: &[f32], cols: &mut [f32]) {
        let g = self.g;
        let ch = g.in_c;
        let run = px.taps * ch;
        let image_len = g.in_h * g.in_w * ch;
        let mut rows = cols.chunks_exact_mut(py.taps * run);
        for gy in 0..py.count {
            let y0 = py.window_start(gy);
            let inside = py.inside(gy, g.in_h);
            for image in x.chunks_exact(image_len) {
                for gx in 0..px.count {
                    let Some(row) = rows.next() else { return };
                    let x0 = px.window_start(gx);
                    for jy in inside.clone() {
                        let dst = &mut row[jy * run..][..run];
                        let iy = (y0 + jy as isize) as usize;
                        let line = &image[iy * g.in_w * ch..][..g.in_w * ch];
                        if x0 >= 0 && x0 as usize + px.taps <= g.in_w {
                            dst.copy_from_slice(&line[x0 as usize * ch..][..run]);
                            continue;
                        }
                        for (jx, dst) in dst.chunks_exact_mut(ch).enumerate() {
                            let ix = x0 + jx as isize;
                            if (0..g.in_w as isize).contains(&ix) {
                                dst.copy_from_slice(&line[ix as usize * ch..][..ch]);
                            } else {
                                dst.fill(0.0);
                            }
                        }
                    }
                }
            }
        }
    }

    /// Copies the phase's GEMM rows (gy, image, gx) to their output pixels, adding the bias.
    fn place(
        &self,
        py: AxisPhase,
        px: AxisPhase,
        out: &[f32],
        bias: Option<&[f32]>,
        y: &mut [f32],
    ) {
        let g = self.g;
        let ch = g.out_c;
        let image_len = g.out_h * g.out_w * ch;
        let mut rows = out.chunks_exact(ch.max(1));
        for gy in 0..py.count {
            let p = py.first_out + gy * g.stride_h;
            for image in y.chunks_exact_mut(image_len.max(1)) {
                for gx in 0..px.count {
                    let q = px.first_out + gx * g.stride_w;
                    let Some(src) = rows.next() else { return };
                    let dst = &mut image[(p * g.out_w + q) * ch..][..ch];
                    match bias {
                        Some(b) => {
                            for ((d, &s), &b) in dst.iter_mut().zip(src).zip(b) {
                                *d = s + b;
                            }
                        }
                        None => dst.copy_from_slice(src),
                    }
                }
            }
        }
    }
}
