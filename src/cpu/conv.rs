//! Conv2D as im2col + GEMM (col2im for the input gradient), and the patch machinery it shares
//! with the transposed convolution.
//!
//! The batch goes through in chunks of whole images whose column matrix stays in cache (it is
//! written by im2col or the GEMM and read straight back), in a buffer that a [`Workspace`]
//! keeps from call to call. The `_into` forms write into the caller's buffers (adding to them
//! when asked), so the CPU executor allocates nothing in a step; the plain forms allocate their
//! result and are what the tests and the GPU parity tests call.

use std::ops::Range;

use rayon::prelude::*;

use super::activation::{Activation, activation_forward_into};
use super::check_len;
use super::gemm::{fill_rows, gemm};
use crate::error::Result;
use crate::geometry::Conv2dGeometry;

/// Target size of one chunk's column matrix, in floats (4 MiB): measured on the GAN's layers,
/// large enough for full-speed GEMMs, small enough to stay in the last-level cache. A single
/// image larger than this still goes in one piece.
const COLUMN_CHUNK_FLOATS: usize = 1 << 20;

/// Scratch memory of the convolutions (one chunk's column matrix), grown to the largest
/// layer's need and then reused.
#[derive(Debug, Default)]
pub struct Workspace {
    cols: Vec<f32>,
}

impl Workspace {
    pub(super) fn cols(&mut self, len: usize) -> &mut [f32] {
        if self.cols.len() < len {
            self.cols.resize(len, 0.0);
        }
        &mut self.cols[..len]
    }
}

/// An activation applied to a layer's output as each chunk of it is finished (while it is in
/// cache): (activation, where its output goes, as long as the layer's output).
pub type FusedActivation<'a> = Option<(Activation, &'a mut [f32])>;

/// Applies `fused` to the finished output range `range` of `y`.
pub(super) fn apply_fused(
    fused: &mut FusedActivation<'_>,
    y: &[f32],
    range: Range<usize>,
) -> Result<()> {
    match fused {
        Some((act, out)) => activation_forward_into(*act, &y[range.clone()], &mut out[range]),
        None => Ok(()),
    }
}

/// Checks that a fused activation's output is as long as the layer's.
pub(super) fn check_fused(op: &'static str, fused: &FusedActivation<'_>, len: usize) -> Result<()> {
    match fused {
        Some((_, out)) => check_len(op, "activation output", out.len(), len),
        None => Ok(()),
    }
}

/// The window map shared by conv and transposed conv. Per batch item there is an image
/// (img_h, img_w, channels) and a grid (grid_h, grid_w) of windows; window (gy, gx) with
/// kernel tap (a, c) touches image pixel (gy·stride_h + a - pad_top, gx·stride_w + c - pad_left),
/// or zero padding when that lies outside the image.
///
/// The column matrix has one row per (batch, gy, gx) and k_h·k_w·channels columns ordered
/// (a, c, channel): the Keras kernel order, so it multiplies a kernel viewed as a matrix.
pub(super) struct Patches {
    pub(super) img_h: usize,
    pub(super) img_w: usize,
    pub(super) channels: usize,
    pub(super) grid_h: usize,
    pub(super) grid_w: usize,
    pub(super) k_h: usize,
    pub(super) k_w: usize,
    pub(super) stride_h: usize,
    pub(super) stride_w: usize,
    pub(super) pad_top: usize,
    pub(super) pad_left: usize,
}

impl Patches {
    /// Columns of the column matrix: k_h·k_w·channels.
    pub(super) fn row_len(&self) -> usize {
        self.k_h * self.k_w * self.channels
    }

    /// Rows of the column matrix per batch item: grid_h·grid_w.
    pub(super) fn rows_per_image(&self) -> usize {
        self.grid_h * self.grid_w
    }

    pub(super) fn image_len(&self) -> usize {
        self.img_h * self.img_w * self.channels
    }

    /// Ranges of batch items to process together: as many whole images as fit
    /// [`COLUMN_CHUNK_FLOATS`], spread evenly (100 images of 78k floats go as 8 chunks of 12-13,
    /// not 7 of 13 and one of 9).
    pub(super) fn chunks(&self, batch: usize) -> impl Iterator<Item = Range<usize>> + use<> {
        let per_image = self.rows_per_image() * self.row_len();
        let most = (COLUMN_CHUNK_FLOATS / per_image.max(1)).clamp(1, batch.max(1));
        let count = batch.div_ceil(most);
        (0..count).map(move |c| c * batch / count..(c + 1) * batch / count)
    }

    /// images (n, img_h, img_w, channels) -> cols (n·grid_h·grid_w, row_len), padding as 0.
    /// One image per task: plain copies, memory-bound, so both cores help.
    pub(super) fn im2col(&self, images: &[f32], cols: &mut [f32]) {
        let per_image = self.rows_per_image() * self.row_len();
        if per_image == 0 {
            return;
        }
        if self.image_len() == 0 {
            cols.fill(0.0);
            return;
        }
        cols.par_chunks_mut(per_image)
            .zip(images.par_chunks(self.image_len()))
            .for_each(|(cols, image)| {
                self.for_each_run(|col, pixel| match pixel {
                    Some(pixel) => cols[col].copy_from_slice(&image[pixel]),
                    None => cols[col].fill(0.0),
                })
            });
    }

    /// images += the scatter of cols: every column entry is added to the pixel it came from
    /// (the adjoint of `im2col`); padding entries are dropped. One image per task.
    pub(super) fn col2im_add(&self, cols: &[f32], images: &mut [f32]) {
        let per_image = self.rows_per_image() * self.row_len();
        if per_image == 0 || self.image_len() == 0 {
            return;
        }
        images
            .par_chunks_mut(self.image_len())
            .zip(cols.par_chunks(per_image))
            .for_each(|(image, cols)| {
                self.for_each_run(|col, pixel| {
                    if let Some(pixel) = pixel {
                        for (dst, &src) in image[pixel].iter_mut().zip(&cols[col]) {
                            *dst += src;
                        }
                    }
                })
            });
    }

    /// Calls `visit(column range, Some(image range) or None for padding)` for runs covering the
    /// column matrix of one image. In NHWC a kernel row that lies inside the image is one
    /// contiguous run of k_w·channels floats; at the borders it splits per tap.
    fn for_each_run(&self, mut visit: impl FnMut(Range<usize>, Option<Range<usize>>)) {
        let ch = self.channels;
        let kernel_row = self.k_w * ch;
        let mut col = 0;
        for gy in 0..self.grid_h {
            for gx in 0..self.grid_w {
                let x0 = gx * self.stride_w;
                for a in 0..self.k_h {
                    let row = col..col + kernel_row;
                    col += kernel_row;
                    let Some(iy) = tap(gy * self.stride_h + a, self.pad_top, self.img_h) else {
                        visit(row, None);
                        continue;
                    };
                    let row_base = iy * self.img_w * ch;
                    if x0 >= self.pad_left && x0 - self.pad_left + self.k_w <= self.img_w {
                        let start = row_base + (x0 - self.pad_left) * ch;
                        visit(row, Some(start..start + kernel_row));
                        continue;
                    }
                    for c in 0..self.k_w {
                        let run = row.start + c * ch..row.start + (c + 1) * ch;
                        let pixel = tap(x0 + c, self.pad_left, self.img_w)
                            .map(|ix| row_base + ix * ch..row_base + (ix + 1) * ch);
                        visit(run, pixel);
                    }
                }
            }
        }
    }
}

/// Image coordinate of padded position `padded`, if inside [0, size).
fn tap(padded: usize, pad: usize, size: usize) -> Option<usize> {
    padded.checked_sub(pad).filter(|&i| i < size)
}

fn patches(g: &Conv2dGeometry) -> Patches {
    Patches {
        img_h: g.in_h,
        img_w: g.in_w,
        channels: g.in_c,
        grid_h: g.out_h(),
        grid_w: g.out_w(),
        k_h: g.k_h,
        k_w: g.k_w,
        stride_h: g.stride_h,
        stride_w: g.stride_w,
        pad_top: g.pad_top,
        pad_left: g.pad_left,
    }
}

/// x (batch, in_h, in_w, in_c), w (k_h, k_w, in_c, out_c), b (out_c) -> y (batch, out_h, out_w, out_c)
/// `y[n, oy, ox, o] = b[o] + Σ_{a, c, i} x[n, oy·s_h + a - pad_top, ox·s_w + c - pad_left, i] · w[a, c, i, o]`
/// (x = 0 outside the input). As matrices: y = im2col(x) · w + b.
pub fn conv2d_forward(g: &Conv2dGeometry, x: &[f32], w: &[f32], b: &[f32]) -> Result<Vec<f32>> {
    g.validate()?;
    let mut y = vec![0.0; g.output_len()];
    conv2d_forward_into(g, x, w, b, &mut y, None, &mut Workspace::default())?;
    Ok(y)
}

/// [`conv2d_forward`] into `y`, then `fused` applied to it.
pub fn conv2d_forward_into(
    g: &Conv2dGeometry,
    x: &[f32],
    w: &[f32],
    b: &[f32],
    y: &mut [f32],
    mut fused: FusedActivation<'_>,
    ws: &mut Workspace,
) -> Result<()> {
    const OP: &str = "conv2d_forward";
    g.validate()?;
    check_len(OP, "x", x.len(), g.input_len())?;
    check_len(OP, "w", w.len(), g.weight_len())?;
    check_len(OP, "b", b.len(), g.out_c)?;
    check_len(OP, "y", y.len(), g.output_len())?;
    check_fused(OP, &fused, y.len())?;
    let p = patches(g);
    let out_per_image = p.rows_per_image() * g.out_c;
    for r in p.chunks(g.batch) {
        let rows = r.len() * p.rows_per_image();
        let cols = ws.cols(rows * p.row_len());
        p.im2col(&x[r.start * p.image_len()..r.end * p.image_len()], cols);
        let out = r.start * out_per_image..r.end * out_per_image;
        fill_rows(&mut y[out.clone()], b, false)?;
        gemm(
            rows,
            g.out_c,
            p.row_len(),
            cols,
            false,
            w,
            false,
            &mut y[out.clone()],
            true,
        )?;
        apply_fused(&mut fused, y, out)?;
    }
    Ok(())
}

/// dy (batch, out_h, out_w, out_c), w (k_h, k_w, in_c, out_c) -> dx (batch, in_h, in_w, in_c)
/// dx = col2im(dy · wᵀ): each dy[n, oy, ox, o]·w[a, c, i, o] lands on the x pixel it read.
pub fn conv2d_backward_input(g: &Conv2dGeometry, dy: &[f32], w: &[f32]) -> Result<Vec<f32>> {
    g.validate()?;
    let mut dx = vec![0.0; g.input_len()];
    conv2d_backward_input_into(g, dy, w, &mut dx, false, &mut Workspace::default())?;
    Ok(dx)
}

/// [`conv2d_backward_input`] into `dx`, or added to it when `accumulate`.
pub fn conv2d_backward_input_into(
    g: &Conv2dGeometry,
    dy: &[f32],
    w: &[f32],
    dx: &mut [f32],
    accumulate: bool,
    ws: &mut Workspace,
) -> Result<()> {
    const OP: &str = "conv2d_backward_input";
    g.validate()?;
    check_len(OP, "dy", dy.len(), g.output_len())?;
    check_len(OP, "w", w.len(), g.weight_len())?;
    check_len(OP, "dx", dx.len(), g.input_len())?;
    let p = patches(g);
    let out_per_image = p.rows_per_image() * g.out_c;
    for r in p.chunks(g.batch) {
        let rows = r.len() * p.rows_per_image();
        let cols = ws.cols(rows * p.row_len());
        let dy = &dy[r.start * out_per_image..r.end * out_per_image];
        gemm(rows, p.row_len(), g.out_c, dy, false, w, true, cols, false)?;
        let dx = &mut dx[r.start * p.image_len()..r.end * p.image_len()];
        if !accumulate {
            dx.fill(0.0);
        }
        p.col2im_add(cols, dx);
    }
    Ok(())
}

/// x (batch, in_h, in_w, in_c), dy (batch, out_h, out_w, out_c) -> dw (k_h, k_w, in_c, out_c)
/// dw = im2col(x)ᵀ · dy, summed over the batch. (db is `bias_grad(dy, batch·out_h·out_w, out_c)`.)
pub fn conv2d_backward_weight(g: &Conv2dGeometry, x: &[f32], dy: &[f32]) -> Result<Vec<f32>> {
    g.validate()?;
    let mut dw = vec![0.0; g.weight_len()];
    conv2d_backward_weight_into(g, x, dy, &mut dw, false, &mut Workspace::default())?;
    Ok(dw)
}

/// [`conv2d_backward_weight`] into `dw`, or added to it when `accumulate`.
pub fn conv2d_backward_weight_into(
    g: &Conv2dGeometry,
    x: &[f32],
    dy: &[f32],
    dw: &mut [f32],
    accumulate: bool,
    ws: &mut Workspace,
) -> Result<()> {
    const OP: &str = "conv2d_backward_weight";
    g.validate()?;
    check_len(OP, "x", x.len(), g.input_len())?;
    check_len(OP, "dy", dy.len(), g.output_len())?;
    check_len(OP, "dw", dw.len(), g.weight_len())?;
    let p = patches(g);
    let out_per_image = p.rows_per_image() * g.out_c;
    // The first chunk overwrites dw unless accumulating; the later ones add.
    let mut add = accumulate;
    for r in p.chunks(g.batch) {
        let rows = r.len() * p.rows_per_image();
        let cols = ws.cols(rows * p.row_len());
        p.im2col(&x[r.start * p.image_len()..r.end * p.image_len()], cols);
        let dy = &dy[r.start * out_per_image..r.end * out_per_image];
        gemm(p.row_len(), g.out_c, rows, cols, true, dy, false, dw, add)?;
        add = true;
    }
    if !add {
        dw.fill(0.0);
    }
    Ok(())
}
