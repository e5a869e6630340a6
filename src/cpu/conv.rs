//! Conv2D as im2col + GEMM (col2im for the input gradient), and the patch machinery it shares
//! with the transposed convolution.

use std::ops::Range;

use super::check_len;
use super::gemm::gemm;
use crate::error::Result;
use crate::geometry::Conv2dGeometry;

/// Upper bound on the im2col buffer (64 MiB of f32): the batch is processed in chunks of images
/// whose column matrix fits. A single image larger than this still goes in one piece.
const MAX_COLUMN_FLOATS: usize = 16 << 20;

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

    /// Ranges of batch items to process together, and a column buffer large enough for one.
    pub(super) fn chunks(&self, batch: usize) -> (impl Iterator<Item = Range<usize>>, Vec<f32>) {
        let per_image = self.rows_per_image() * self.row_len();
        let chunk = (MAX_COLUMN_FLOATS / per_image.max(1)).clamp(1, batch.max(1));
        let ranges = (0..batch)
            .step_by(chunk)
            .map(move |b0| b0..(b0 + chunk).min(batch));
        (ranges, vec![0.0; chunk.min(batch) * per_image])
    }

    /// images (n, img_h, img_w, channels) -> cols (n·grid_h·grid_w, row_len), padding as 0.
    pub(super) fn im2col(&self, images: &[f32], cols: &mut [f32]) {
        self.for_each_run(cols.len(), |col, pixel| match pixel {
            Some(pixel) => cols[col].copy_from_slice(&images[pixel]),
            None => cols[col].fill(0.0),
        });
    }

    /// images += the scatter of cols: every column entry is added to the pixel it came from
    /// (the adjoint of `im2col`); padding entries are dropped.
    pub(super) fn col2im_add(&self, cols: &[f32], images: &mut [f32]) {
        self.for_each_run(cols.len(), |col, pixel| {
            if let Some(pixel) = pixel {
                for (dst, &src) in images[pixel].iter_mut().zip(&cols[col]) {
                    *dst += src;
                }
            }
        });
    }

    /// Calls `visit(column range, Some(image range) or None for padding)` for runs covering a
    /// column matrix of `cols_len` floats. In NHWC a kernel row that lies inside the image is
    /// one contiguous run of k_w·channels floats; at the borders it splits per tap.
    fn for_each_run(
        &self,
        cols_len: usize,
        mut visit: impl FnMut(Range<usize>, Option<Range<usize>>),
    ) {
        let ch = self.channels;
        let kernel_row = self.k_w * ch;
        let per_image = self.rows_per_image() * self.row_len();
        if per_image == 0 {
            return;
        }
        let mut col = 0;
        for image in 0..cols_len / per_image {
            let image_base = image * self.image_len();
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
                        let row_base = image_base + iy * self.img_w * ch;
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
    check_len("conv2d_forward", "x", x.len(), g.input_len())?;
    check_len("conv2d_forward", "w", w.len(), g.weight_len())?;
    check_len("conv2d_forward", "b", b.len(), g.out_c)?;
    let p = patches(g);
    let out_per_image = p.rows_per_image() * g.out_c;
    let mut y = b.repeat(g.batch * p.rows_per_image());
    let (chunks, mut cols) = p.chunks(g.batch);
    for r in chunks {
        let rows = r.len() * p.rows_per_image();
        let cols = &mut cols[..rows * p.row_len()];
        p.im2col(&x[r.start * p.image_len()..r.end * p.image_len()], cols);
        let y = &mut y[r.start * out_per_image..r.end * out_per_image];
        gemm(rows, g.out_c, p.row_len(), cols, false, w, false, y, true)?;
    }
    Ok(y)
}

/// dy (batch, out_h, out_w, out_c), w (k_h, k_w, in_c, out_c) -> dx (batch, in_h, in_w, in_c)
/// dx = col2im(dy · wᵀ): each dy[n, oy, ox, o]·w[a, c, i, o] lands on the x pixel it read.
pub fn conv2d_backward_input(g: &Conv2dGeometry, dy: &[f32], w: &[f32]) -> Result<Vec<f32>> {
    g.validate()?;
    check_len("conv2d_backward_input", "dy", dy.len(), g.output_len())?;
    check_len("conv2d_backward_input", "w", w.len(), g.weight_len())?;
    let p = patches(g);
    let out_per_image = p.rows_per_image() * g.out_c;
    let mut dx = vec![0.0; g.input_len()];
    let (chunks, mut cols) = p.chunks(g.batch);
    for r in chunks {
        let rows = r.len() * p.rows_per_image();
        let cols = &mut cols[..rows * p.row_len()];
        let dy = &dy[r.start * out_per_image..r.end * out_per_image];
        gemm(rows, p.row_len(), g.out_c, dy, false, w, true, cols, false)?;
        p.col2im_add(
            cols,
            &mut dx[r.start * p.image_len()..r.end * p.image_len()],
        );
    }
    Ok(dx)
}

/// x (batch, in_h, in_w, in_c), dy (batch, out_h, out_w, out_c) -> dw (k_h, k_w, in_c, out_c)
/// dw = im2col(x)ᵀ · dy, summed over the batch. (db is `bias_grad(dy, batch·out_h·out_w, out_c)`.)
pub fn conv2d_backward_weight(g: &Conv2dGeometry, x: &[f32], dy: &[f32]) -> Result<Vec<f32>> {
    g.validate()?;
    check_len("conv2d_backward_weight", "x", x.len(), g.input_len())?;
    check_len("conv2d_backward_weight", "dy", dy.len(), g.output_len())?;
    let p = patches(g);
    let out_per_image = p.rows_per_image() * g.out_c;
    let mut dw = vec![0.0; g.weight_len()];
    let (chunks, mut cols) = p.chunks(g.batch);
    for r in chunks {
        let rows = r.len() * p.rows_per_image();
        let cols = &mut cols[..rows * p.row_len()];
        p.im2col(&x[r.start * p.image_len()..r.end * p.image_len()], cols);
        let dy = &dy[r.start * out_per_image..r.end * out_per_image];
        gemm(
            p.row_len(),
            g.out_c,
            rows,
            cols,
            true,
            dy,
            false,
            &mut dw,
            true,
        )?;
    }
    Ok(dw)
}
