//! Conv2D as im2col + GEMM (col2im for the input gradient), and the patch machinery it shares
//! with the transposed convolution.
//!
//! The batch runs as parallel slices (see [`super::workspace`]); each slice goes through its
//! images in chunks whose column matrix stays in cache (written by im2col or the GEMM and read
//! straight back). The `_into` forms write into the caller's buffers (adding to them when
//! asked), so the CPU executor allocates nothing in a step; the plain forms allocate their
//! result and are what the tests and the GPU parity tests call.

use std::ops::Range;

use super::check_len;
use super::gemm::{fill_rows, gemm_serial};
use super::workspace::{
    FusedActivation, FusedActivationGrad, Workspace, check_fused, check_fused_grad, per_slice,
    summed_over_slices,
};
use crate::error::Result;
use crate::geometry::Conv2dGeometry;

/// Target size of one chunk's column matrix, in floats (2 MiB): large enough for full-speed
/// GEMMs, small enough that each thread's stays in cache. A single image larger than this still
/// goes in one piece.
const COLUMN_CHUNK_FLOATS: usize = 1 << 19;

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

    /// `images` cut into chunks to process together: as many whole images as fit
    /// [`COLUMN_CHUNK_FLOATS`], spread evenly (13 images of 78k floats go as 3 chunks of 4-5,
    /// not 6 + 6 + 1). Ranges are relative to `images.start`.
    pub(super) fn chunks(
        &self,
        images: Range<usize>,
    ) -> impl Iterator<Item = Range<usize>> + use<> {
        image_chunks(images, self.rows_per_image() * self.row_len())
    }

    /// The column buffer for `images` images, grown if needed.
    pub(super) fn cols<'a>(&self, buf: &'a mut Vec<f32>, images: usize) -> &'a mut [f32] {
        let len = images * self.rows_per_image() * self.row_len();
        if buf.len() < len {
            buf.resize(len, 0.0);
        }
        &mut buf[..len]
    }

    /// images (n, img_h, img_w, channels) -> cols (n·grid_h·grid_w, row_len), padding as 0.
    pub(super) fn im2col(&self, images: &[f32], cols: &mut [f32]) {
        let per_image = self.rows_per_image() * self.row_len();
        if per_image == 0 {
            return;
        }
        if self.image_len() == 0 {
            cols.fill(0.0);
            return;
        }
        for (cols, image) in cols
            .chunks_exact_mut(per_image)
            .zip(images.chunks_exact(self.image_len()))
        {
            self.for_each_run(|col, pixel| match pixel {
                Some(pixel) => cols[col].copy_from_slice(&image[pixel]),
                None => cols[col].fill(0.0),
            })
        }
    }

    /// images += the scatter of cols: every column entry is added to the pixel it came from
    /// (the adjoint of `im2col`); padding entries are dropped.
    pub(super) fn col2im_add(&self, cols: &[f32], images: &mut [f32]) {
        let per_image = self.rows_per_image() * self.row_len();
        if per_image == 0 || self.image_len() == 0 {
            return;
        }
        for (image, cols) in images
            .chunks_exact_mut(self.image_len())
            .zip(cols.chunks_exact(per_image))
        {
            self.for_each_run(|col, pixel| {
                if let Some(pixel) = pixel {
                    for (dst, &src) in image[pixel].iter_mut().zip(&cols[col]) {
                        *dst += src;
                    }
                }
            })
        }
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

/// `images` cut into chunks whose column matrices (`per_image` floats an image) fit
/// [`COLUMN_CHUNK_FLOATS`] together, spread evenly; relative to `images.start`.
pub(super) fn image_chunks(
    images: Range<usize>,
    per_image: usize,
) -> impl Iterator<Item = Range<usize>> + use<> {
    let n = images.len();
    let most = (COLUMN_CHUNK_FLOATS / per_image.max(1)).clamp(1, n.max(1));
    let count = n.div_ceil(most);
    (0..count).map(move |c| c * n / count..(c + 1) * n / count)
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
    conv2d_forward_into(g, x, w, Some(b), &mut y, None, &mut Workspace::default())?;
    Ok(y)
}

/// [`conv2d_forward`] into `y`, then `fused` applied to it.
pub fn conv2d_forward_into(
    g: &Conv2dGeometry,
    x: &[f32],
    w: &[f32],
    b: Option<&[f32]>,
    y: &mut [f32],
    fused: FusedActivation<'_>,
    ws: &mut Workspace,
) -> Result<()> {
    const OP: &str = "conv2d_forward";
    g.validate()?;
    check_len(OP, "x", x.len(), g.input_len())?;
    check_len(OP, "w", w.len(), g.weight_len())?;
    if let Some(b) = b {
        check_len(OP, "b", b.len(), g.out_c)?;
    }
    check_len(OP, "y", y.len(), g.output_len())?;
    check_fused(OP, &fused, y.len())?;
    let p = patches(g);
    let out_per_image = p.rows_per_image() * g.out_c;
    per_slice(y, fused, g.batch, out_per_image, ws, |mut s| {
        for r in p.chunks(s.images.clone()) {
            let cols = p.cols(s.cols, r.len());
            let first = s.images.start + r.start;
            p.im2col(&x[first * p.image_len()..][..r.len() * p.image_len()], cols);
            let out = r.start * out_per_image..r.end * out_per_image;
            let y = &mut s.out[out.clone()];
            if let Some(b) = b {
                fill_rows(y, b, false)?;
            }
            let rows = r.len() * p.rows_per_image();
            let add = b.is_some();
            gemm_serial(rows, g.out_c, p.row_len(), cols, false, w, false, y, add)?;
            s.finish(out)?;
        }
        Ok(())
    })
}

/// dy (batch, out_h, out_w, out_c), w (k_h, k_w, in_c, out_c) -> dx (batch, in_h, in_w, in_c)
/// dx = col2im(dy · wᵀ): each dy[n, oy, ox, o]·w[a, c, i, o] lands on the x pixel it read.
pub fn conv2d_backward_input(g: &Conv2dGeometry, dy: &[f32], w: &[f32]) -> Result<Vec<f32>> {
    g.validate()?;
    let mut dx = vec![0.0; g.input_len()];
    conv2d_backward_input_into(g, dy, w, &mut dx, false, None, &mut Workspace::default())?;
    Ok(dx)
}

/// [`conv2d_backward_input`] into `dx`, or added to it when `accumulate`; then `fused`, the
/// backward of the activation that produced this layer's input, applied to it.
#[allow(clippy::too_many_arguments)] // the layer's buffers, and the fused activation's
pub fn conv2d_backward_input_into(
    g: &Conv2dGeometry,
    dy: &[f32],
    w: &[f32],
    dx: &mut [f32],
    accumulate: bool,
    fused: Option<FusedActivationGrad<'_>>,
    ws: &mut Workspace,
) -> Result<()> {
    const OP: &str = "conv2d_backward_input";
    g.validate()?;
    check_len(OP, "dy", dy.len(), g.output_len())?;
    check_len(OP, "w", w.len(), g.weight_len())?;
    check_len(OP, "dx", dx.len(), g.input_len())?;
    let p = patches(g);
    let out_per_image = p.rows_per_image() * g.out_c;
    check_fused_grad(OP, &fused, dx.len())?;
    per_slice(dx, fused, g.batch, p.image_len(), ws, |mut s| {
        for r in p.chunks(s.images.clone()) {
            let cols = p.cols(s.cols, r.len());
            let first = s.images.start + r.start;
            let dy = &dy[first * out_per_image..][..r.len() * out_per_image];
            let rows = r.len() * p.rows_per_image();
            gemm_serial(rows, p.row_len(), g.out_c, dy, false, w, true, cols, false)?;
            let out = r.start * p.image_len()..r.end * p.image_len();
            let dx = &mut s.out[out.clone()];
            if !accumulate {
                dx.fill(0.0);
            }
            p.col2im_add(cols, dx);
            s.finish(out)?;
        }
        Ok(())
    })
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
    summed_over_slices(dw, accumulate, g.batch, ws, |s| {
        // The slice's first chunk overwrites its partial sum; the later ones add.
        for (i, r) in p.chunks(s.images.clone()).enumerate() {
            let cols = p.cols(s.cols, r.len());
            let first = s.images.start + r.start;
            p.im2col(&x[first * p.image_len()..][..r.len() * p.image_len()], cols);
            let dy = &dy[first * out_per_image..][..r.len() * out_per_image];
            let rows = r.len() * p.rows_per_image();
            gemm_serial(
                p.row_len(),
                g.out_c,
                rows,
                cols,
                true,
                dy,
                false,
                s.out,
                i > 0,
            )?;
        }
        Ok(())
    })
}
