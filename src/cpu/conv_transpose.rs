//! Conv2DTranspose (TF semantics: scatter, no kernel flip): the forward pass by output phases
//! (`cpu/subpixel.rs`) or as GEMM + col2im, the gradients as im2col + GEMM.
//!
//! The scatter and the gradients reuse conv's window map with the roles swapped: the windows
//! sit on the input x (one per input pixel) and the image is the output y, offset by the crop.
//! Input pixel (i, j) with tap (a, c) writes y[i·s_h + a - crop_top, j·s_w + c - crop_left],
//! exactly as a conv window at (i, j) with padding = crop reads it; hence the scatter is conv's
//! col2im and the input gradient is conv's im2col.

use super::check_len;
use super::conv::Patches;
use super::gemm::{fill_rows, gemm_serial};
use super::subpixel::Phases;
use super::workspace::{
    FusedActivation, FusedActivationGrad, Workspace, check_fused, check_fused_grad, per_slice,
    summed_beside, summed_over_slices,
};
use crate::error::Result;
use crate::geometry::ConvTranspose2dGeometry;

fn patches(g: &ConvTranspose2dGeometry) -> Patches {
    Patches {
        img_h: g.out_h,
        img_w: g.out_w,
        channels: g.out_c,
        grid_h: g.in_h,
        grid_w: g.in_w,
        k_h: g.k_h,
        k_w: g.k_w,
        stride_h: g.stride_h,
        stride_w: g.stride_w,
        pad_top: g.crop_top,
        pad_left: g.crop_left,
    }
}

/// x (batch, in_h, in_w, in_c), w (k_h, k_w, out_c, in_c), b (out_c) -> y (batch, out_h, out_w, out_c)
/// `y[n, p, q, o] = b[o] + Σ x[n, i, j, ci] · w[a, c, o, ci]` over `i·s_h + a = p + crop_top`,
/// `j·s_w + c = q + crop_left`. As matrices: y = col2im(x · wᵀ) + b, w viewed as (k_h·k_w·out_c, in_c).
///
/// Either way nothing multiplies the zeros that a convolution over a dilated input would:
/// with 8 output channels or more (`PHASES_FROM_OUT_C`), per output phase
/// (`cpu/subpixel.rs`), s_h·s_w ordinary convolutions over x with the taps that reach each
/// phase; with fewer, by scatter, each input pixel's products added where they land.
pub fn conv_transpose2d_forward(
    g: &ConvTranspose2dGeometry,
    x: &[f32],
    w: &[f32],
    b: &[f32],
) -> Result<Vec<f32>> {
    g.validate()?;
    let mut y = vec![0.0; g.output_len()];
    conv_transpose2d_forward_into(g, x, w, Some(b), &mut y, None, &mut Workspace::default())?;
    Ok(y)
}

/// [`conv_transpose2d_forward`] into `y`, then `fused` applied to it.
pub fn conv_transpose2d_forward_into(
    g: &ConvTranspose2dGeometry,
    x: &[f32],
    w: &[f32],
    b: Option<&[f32]>,
    y: &mut [f32],
    fused: FusedActivation<'_>,
    ws: &mut Workspace,
) -> Result<()> {
    const OP: &str = "conv_transpose2d_forward";
    g.validate()?;
    check_len(OP, "x", x.len(), g.input_len())?;
    check_len(OP, "w", w.len(), g.weight_len())?;
    if let Some(b) = b {
        check_len(OP, "b", b.len(), g.out_c)?;
    }
    check_len(OP, "y", y.len(), g.output_len())?;
    check_fused(OP, &fused, y.len())?;
    if g.out_c >= PHASES_FROM_OUT_C {
        forward_by_phases(g, x, w, b, y, fused, ws)
    } else {
        forward_by_scatter(g, x, w, b, y, fused, ws)
    }
}

/// Output channels from which the forward pass runs by phases. A phase's GEMM has out_c
/// columns, and below about one register tile of them (the gemm crate's f32 kernels hold 4 to 6
/// columns by 1 to 4 vectors) it wastes most of each tile, while the scatter's GEMM has
/// k_h·k_w·out_c columns. Measured on the generator (`bench --device cpu`, one run): deconv1
/// (128 -> 64 channels) by phases 1.6x faster than by scatter next to its gradients' rows;
/// deconv2 (64 -> 1) by phases 3.3 ms, by scatter 1.2 ms.
const PHASES_FROM_OUT_C: usize = 8;

fn forward_by_phases(
    g: &ConvTranspose2dGeometry,
    x: &[f32],
    w: &[f32],
    b: Option<&[f32]>,
    y: &mut [f32],
    fused: FusedActivation<'_>,
    ws: &mut Workspace,
) -> Result<()> {
    let phases = Phases::new(g);
    // Taken out of the workspace for the call, so the slices can borrow it beside their scratch.
    let mut packed = std::mem::take(&mut ws.packed_weights);
    phases.pack_weights(w, &mut packed);
    let in_per_image = g.in_h * g.in_w * g.in_c;
    let out_per_image = g.out_h * g.out_w * g.out_c;
    let result = per_slice(y, fused, g.batch, out_per_image, ws, |mut s| {
        for r in phases.chunks(s.images.clone()) {
            let first = s.images.start + r.start;
            let x = &x[first * in_per_image..][..r.len() * in_per_image];
            let out = r.start * out_per_image..r.end * out_per_image;
            phases.forward_chunk(x, &packed, b, &mut s.out[out.clone()], s.cols)?;
            s.finish(out)?;
        }
        Ok(())
    });
    ws.packed_weights = packed;
    result
}

/// The forward pass as y = col2im(x · wᵀ) + b: each input pixel's products are made once and
/// added where they land.
fn forward_by_scatter(
    g: &ConvTranspose2dGeometry,
    x: &[f32],
    w: &[f32],
    b: Option<&[f32]>,
    y: &mut [f32],
    fused: FusedActivation<'_>,
    ws: &mut Workspace,
) -> Result<()> {
    let p = patches(g);
    let in_per_image = p.rows_per_image() * g.in_c;
    per_slice(y, fused, g.batch, p.image_len(), ws, |mut s| {
        for r in p.chunks(s.images.clone()) {
            let cols = p.cols(s.cols, r.len());
            let first = s.images.start + r.start;
            let x = &x[first * in_per_image..][..r.len() * in_per_image];
            let rows = r.len() * p.rows_per_image();
            gemm_serial(rows, p.row_len(), g.in_c, x, false, w, true, cols, false)?;
            let out = r.start * p.image_len()..r.end * p.image_len();
            let y = &mut s.out[out.clone()];
            match b {
                Some(b) => fill_rows(y, b, false)?,
                None => y.fill(0.0),
            }
            p.col2im_add(cols, y);
            s.finish(out)?;
        }
        Ok(())
    })
}

/// dy (batch, out_h, out_w, out_c), w (k_h, k_w, out_c, in_c) -> dx (batch, in_h, in_w, in_c)
/// dx[n, i, j, ci] = Σ_{a, c, o} dy[n, i·s_h + a - crop_top, j·s_w + c - crop_left, o] · w[a, c, o, ci]
/// (dy = 0 outside): a conv of dy (`adjoint_conv`), computed as im2col(dy) · w.
pub fn conv_transpose2d_backward_input(
    g: &ConvTranspose2dGeometry,
    dy: &[f32],
    w: &[f32],
) -> Result<Vec<f32>> {
    g.validate()?;
    let mut dx = vec![0.0; g.input_len()];
    conv_transpose2d_backward_input_into(
        g,
        dy,
        w,
        &mut dx,
        false,
        None,
        &mut Workspace::default(),
    )?;
    Ok(dx)
}

/// [`conv_transpose2d_backward_input`] into `dx`, or added to it when `accumulate`; then `fused`, the
/// backward of the activation that produced this layer's input, applied to it.
#[allow(clippy::too_many_arguments)] // the layer's buffers, and the fused activation's
pub fn conv_transpose2d_backward_input_into(
    g: &ConvTranspose2dGeometry,
    dy: &[f32],
    w: &[f32],
    dx: &mut [f32],
    accumulate: bool,
    fused: Option<FusedActivationGrad<'_>>,
    ws: &mut Workspace,
) -> Result<()> {
    const OP: &str = "conv_transpose2d_backward_input";
    g.validate()?;
    check_len(OP, "dy", dy.len(), g.output_len())?;
    check_len(OP, "w", w.len(), g.weight_len())?;
    check_len(OP, "dx", dx.len(), g.input_len())?;
    let p = patches(g);
    let in_per_image = p.rows_per_image() * g.in_c;
    check_fused_grad(OP, &fused, dx.len())?;
    per_slice(dx, fused, g.batch, in_per_image, ws, |mut s| {
        for r in p.chunks(s.images.clone()) {
            let cols = p.cols(s.cols, r.len());
            let first = s.images.start + r.start;
            p.im2col(
                &dy[first * p.image_len()..][..r.len() * p.image_len()],
                cols,
            );
            let out = r.start * in_per_image..r.end * in_per_image;
            let rows = r.len() * p.rows_per_image();
            let dx = &mut s.out[out.clone()];
            gemm_serial(
                rows,
                g.in_c,
                p.row_len(),
                cols,
                false,
                w,
                false,
                dx,
                accumulate,
            )?;
            s.finish(out)?;
        }
        Ok(())
    })
}

/// x (batch, in_h, in_w, in_c), dy (batch, out_h, out_w, out_c) -> dw (k_h, k_w, out_c, in_c)
/// dw[a, c, o, ci] = Σ x[n, i, j, ci] · dy[n, i·s_h + a - crop_top, j·s_w + c - crop_left, o]
/// = im2col(dy)ᵀ · x, summed over the batch. (db is `bias_grad(dy, batch·out_h·out_w, out_c)`.)
pub fn conv_transpose2d_backward_weight(
    g: &ConvTranspose2dGeometry,
    x: &[f32],
    dy: &[f32],
) -> Result<Vec<f32>> {
    g.validate()?;
    let mut dw = vec![0.0; g.weight_len()];
    conv_transpose2d_backward_weight_into(g, x, dy, &mut dw, false, &mut Workspace::default())?;
    Ok(dw)
}

/// [`conv_transpose2d_backward_weight`] into `dw`, or added to it when `accumulate`.
pub fn conv_transpose2d_backward_weight_into(
    g: &ConvTranspose2dGeometry,
    x: &[f32],
    dy: &[f32],
    dw: &mut [f32],
    accumulate: bool,
    ws: &mut Workspace,
) -> Result<()> {
    const OP: &str = "conv_transpose2d_backward_weight";
    g.validate()?;
    check_len(OP, "x", x.len(), g.input_len())?;
    check_len(OP, "dy", dy.len(), g.output_len())?;
    check_len(OP, "dw", dw.len(), g.weight_len())?;
    let p = patches(g);
    let in_per_image = p.rows_per_image() * g.in_c;
    summed_over_slices(dw, accumulate, g.batch, ws, |s| {
        // The slice's first chunk overwrites its partial sum; the later ones add.
        for (i, r) in p.chunks(s.images.clone()).enumerate() {
            let cols = p.cols(s.cols, r.len());
            let first = s.images.start + r.start;
            p.im2col(
                &dy[first * p.image_len()..][..r.len() * p.image_len()],
                cols,
            );
            let x = &x[first * in_per_image..][..r.len() * in_per_image];
            let rows = r.len() * p.rows_per_image();
            gemm_serial(
                p.row_len(),
                g.in_c,
                rows,
                cols,
                true,
                x,
                false,
                s.out,
                i > 0,
            )?;
        }
        Ok(())
    })
}

/// [`conv_transpose2d_backward_weight_into`] and [`conv_transpose2d_backward_input_into`]
/// together, for the same dy: both multiply im2col(dy), which is built once per chunk and
/// used by both GEMMs while it is in cache. The bits are those of the two apart (the same
/// GEMMs on the same columns, the weight gradient summed over the same slices).
#[allow(clippy::too_many_arguments)] // both gradients' buffers and options
pub fn conv_transpose2d_backward_into(
    g: &ConvTranspose2dGeometry,
    x: &[f32],
    dy: &[f32],
    w: &[f32],
    (dw, accumulate_dw): (&mut [f32], bool),
    (dx, accumulate_dx): (&mut [f32], bool),
    fused: Option<FusedActivationGrad<'_>>,
    ws: &mut Workspace,
) -> Result<()> {
    const OP: &str = "conv_transpose2d_backward";
    g.validate()?;
    check_len(OP, "x", x.len(), g.input_len())?;
    check_len(OP, "dy", dy.len(), g.output_len())?;
    check_len(OP, "w", w.len(), g.weight_len())?;
    check_len(OP, "dw", dw.len(), g.weight_len())?;
    check_len(OP, "dx", dx.len(), g.input_len())?;
    check_fused_grad(OP, &fused, dx.len())?;
    if dw.is_empty() {
        // No weights (no output channels): nothing to share, and dx is still owed.
        return conv_transpose2d_backward_input_into(g, dy, w, dx, accumulate_dx, fused, ws);
    }
    let p = patches(g);
    let in_per_image = p.rows_per_image() * g.in_c;
    summed_beside(
        dw,
        accumulate_dw,
        dx,
        in_per_image,
        fused,
        g.batch,
        ws,
        |dw, mut s| {
            // The slice's first chunk overwrites its partial sum; the later ones add.
            for (i, r) in p.chunks(s.images.clone()).enumerate() {
                let cols = p.cols(s.cols, r.len());
                let first = s.images.start + r.start;
                p.im2col(
                    &dy[first * p.image_len()..][..r.len() * p.image_len()],
                    cols,
                );
                let x = &x[first * in_per_image..][..r.len() * in_per_image];
                let rows = r.len() * p.rows_per_image();
                gemm_serial(p.row_len(), g.in_c, rows, cols, true, x, false, dw, i > 0)?;
                let out = r.start * in_per_image..r.end * in_per_image;
                let dx = &mut s.out[out.clone()];
                gemm_serial(
                    rows,
                    g.in_c,
                    p.row_len(),
                    cols,
                    false,
                    w,
                    false,
                    dx,
                    accumulate_dx,
                )?;
                s.finish(out)?;
            }
            Ok(())
        },
    )
}
