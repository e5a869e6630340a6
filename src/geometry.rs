//! Convolution sizes and paddings. This is the one definition that the CPU reference, the GPU
//! kernels, the shape checks and the tests all use, so they cannot drift apart.
//!
//! Everything follows TensorFlow/Keras (dilation 1), which is what the golden vectors were made
//! with. Two places where PyTorch differs are pinned here: an odd 'same' padding puts the extra
//! zero after (bottom/right), and a 'same' transposed conv crops floor(P/2) before.

use crate::error::{Error, Result};

/// A 2-D convolution: NHWC input, HWIO kernel, NHWC output.
///
/// Output pixel (oy, ox) reads input row `oy*stride_h + a - pad_top` for kernel tap `a` (and
/// column `ox*stride_w + c - pad_left` for tap `c`). Rows and columns outside the input are zero.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Conv2dGeometry {
    pub batch: usize,
    pub in_h: usize,
    pub in_w: usize,
    pub in_c: usize,
    pub out_c: usize,
    pub k_h: usize,
    pub k_w: usize,
    pub stride_h: usize,
    pub stride_w: usize,
    pub pad_top: usize,
    pub pad_bottom: usize,
    pub pad_left: usize,
    pub pad_right: usize,
}

impl Conv2dGeometry {
    /// Keras `padding='valid'`: no padding, out = floor((n - k)/s) + 1.
    #[allow(clippy::too_many_arguments)] // the arguments of a Keras Conv2D layer
    pub fn valid(
        batch: usize,
        in_h: usize,
        in_w: usize,
        in_c: usize,
        out_c: usize,
        k_h: usize,
        k_w: usize,
        stride_h: usize,
        stride_w: usize,
    ) -> Self {
        Self {
            batch,
            in_h,
            in_w,
            in_c,
            out_c,
            k_h,
            k_w,
            stride_h,
            stride_w,
            pad_top: 0,
            pad_bottom: 0,
            pad_left: 0,
            pad_right: 0,
        }
    }

    /// Keras/TF `padding='same'`: out = ceil(n/s), total padding P = max((out-1)s + k - n, 0),
    /// floor(P/2) before and the rest after (an odd P puts the extra zero at the bottom/right).
    #[allow(clippy::too_many_arguments)] // the arguments of a Keras Conv2D layer
    pub fn same(
        batch: usize,
        in_h: usize,
        in_w: usize,
        in_c: usize,
        out_c: usize,
        k_h: usize,
        k_w: usize,
        stride_h: usize,
        stride_w: usize,
    ) -> Self {
        let (pad_top, pad_bottom) = same_pads(in_h, k_h, stride_h);
        let (pad_left, pad_right) = same_pads(in_w, k_w, stride_w);
        Self {
            pad_top,
            pad_bottom,
            pad_left,
            pad_right,
            ..Self::valid(batch, in_h, in_w, in_c, out_c, k_h, k_w, stride_h, stride_w)
        }
    }

    /// (in_h + pad_top + pad_bottom - k_h)/stride_h + 1, or 0 when the padded input is shorter
    /// than the kernel (which `validate` rejects for a non-empty input).
    pub fn out_h(&self) -> usize {
        conv_out_len(
            self.in_h + self.pad_top + self.pad_bottom,
            self.k_h,
            self.stride_h,
        )
    }

    /// (in_w + pad_left + pad_right - k_w)/stride_w + 1, or 0 as for `out_h`.
    pub fn out_w(&self) -> usize {
        conv_out_len(
            self.in_w + self.pad_left + self.pad_right,
            self.k_w,
            self.stride_w,
        )
    }

    /// batch·in_h·in_w·in_c
    pub fn input_len(&self) -> usize {
        self.batch * self.in_h * self.in_w * self.in_c
    }

    /// batch·out_h·out_w·out_c
    pub fn output_len(&self) -> usize {
        self.batch * self.out_h() * self.out_w() * self.out_c
    }

    /// k_h·k_w·in_c·out_c
    pub fn weight_len(&self) -> usize {
        self.k_h * self.k_w * self.in_c * self.out_c
    }

    /// Multiply-adds counted as 2 flops: 2·batch·out_h·out_w·out_c·k_h·k_w·in_c.
    pub fn flops(&self) -> u64 {
        [self.batch, self.out_h(), self.out_w(), self.out_c]
            .into_iter()
            .chain([self.k_h, self.k_w, self.in_c])
            .fold(2, |acc, d| acc.saturating_mul(d as u64))
    }

    /// Nonzero kernel and strides; a non-empty input axis must, padded, be at least as long as
    /// the kernel (Keras refuses a negative output size); no tensor length overflows usize.
    /// Zero batch or zero sizes are valid and give empty tensors.
    pub fn validate(&self) -> Result<()> {
        check_kernel_stride(
            "Conv2dGeometry",
            [self.k_h, self.k_w, self.stride_h, self.stride_w],
        )?;
        for (axis, n, pads, k) in [
            (
                "height",
                self.in_h,
                self.pad_top + self.pad_bottom,
                self.k_h,
            ),
            ("width", self.in_w, self.pad_left + self.pad_right, self.k_w),
        ] {
            if n > 0 && n + pads < k {
                return Err(shape(format!(
                    "input {axis} {n} plus padding {pads} is smaller than the kernel ({k})"
                )));
            }
        }
        check_products(
            "Conv2dGeometry",
            [
                [self.batch, self.in_h, self.in_w, self.in_c],
                [self.batch, self.out_h(), self.out_w(), self.out_c],
                [self.k_h, self.k_w, self.in_c, self.out_c],
            ],
        )
    }
}

/// A 2-D transposed convolution (Keras Conv2DTranspose, TF semantics, no kernel flip): NHWC
/// input, HWOI kernel (out before in), NHWC output.
///
/// The un-cropped "full" result is F[i·s_h + a, j·s_w + c, o] += x[i, j, ci] · w[a, c, o, ci],
/// of size full_h = (in_h-1)·s_h + k_h. The output is
/// `y[p, q, o] = F[p + crop_top, q + crop_left, o] + b[o]`, where positions beyond F contribute 0.
/// It is the exact adjoint of [`adjoint_conv`](Self::adjoint_conv).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ConvTranspose2dGeometry {
    pub batch: usize,
    pub in_h: usize,
    pub in_w: usize,
    pub in_c: usize,
    pub out_c: usize,
    pub k_h: usize,
    pub k_w: usize,
    pub stride_h: usize,
    pub stride_w: usize,
    pub crop_top: usize,
    pub crop_left: usize,
    pub out_h: usize,
    pub out_w: usize,
}

impl ConvTranspose2dGeometry {
    /// Keras `padding='same'`. Output size from Keras `deconv_output_length`: n·s without
    /// output_padding, else (n-1)·s + k - 2·(k/2) + op. The crop is TF's rule for any output
    /// size: crop_before = floor(max(full - out, 0)/2), the rest of the excess is cropped after.
    /// Without output_padding that is floor(max(k - s, 0)/2).
    #[allow(clippy::too_many_arguments)] // the arguments of a Keras Conv2DTranspose layer
    pub fn keras_same(
        batch: usize,
        in_h: usize,
        in_w: usize,
        in_c: usize,
        out_c: usize,
        k_h: usize,
        k_w: usize,
        stride_h: usize,
        stride_w: usize,
        output_padding: Option<(usize, usize)>,
    ) -> Self {
        let (out_h, crop_top) =
            transpose_axis(in_h, k_h, stride_h, true, output_padding.map(|p| p.0));
        let (out_w, crop_left) =
            transpose_axis(in_w, k_w, stride_w, true, output_padding.map(|p| p.1));
        Self {
            batch,
            in_h,
            in_w,
            in_c,
            out_c,
            k_h,
            k_w,
            stride_h,
            stride_w,
            crop_top,
            crop_left,
            out_h,
            out_w,
        }
    }

    /// Keras `padding='valid'`: out = n·s + max(k - s, 0) (= (n-1)·s + max(k, s) for n > 0)
    /// without output_padding, else (n-1)·s + k + op; never cropped. When k < s the last
    /// s - k rows lie beyond the full result, so they hold only the bias.
    #[allow(clippy::too_many_arguments)] // the arguments of a Keras Conv2DTranspose layer
    pub fn keras_valid(
        batch: usize,
        in_h: usize,
        in_w: usize,
        in_c: usize,
        out_c: usize,
        k_h: usize,
        k_w: usize,
        stride_h: usize,
        stride_w: usize,
        output_padding: Option<(usize, usize)>,
    ) -> Self {
        let (out_h, crop_top) =
            transpose_axis(in_h, k_h, stride_h, false, output_padding.map(|p| p.0));
        let (out_w, crop_left) =
            transpose_axis(in_w, k_w, stride_w, false, output_padding.map(|p| p.1));
        Self {
            batch,
            in_h,
            in_w,
            in_c,
            out_c,
            k_h,
            k_w,
            stride_h,
            stride_w,
            crop_top,
            crop_left,
            out_h,
            out_w,
        }
    }

    /// Height of the un-cropped result: (in_h-1)·stride_h + k_h, 0 for an empty input.
    pub fn full_h(&self) -> usize {
        full_len(self.in_h, self.k_h, self.stride_h)
    }

    /// Width of the un-cropped result: (in_w-1)·stride_w + k_w, 0 for an empty input.
    pub fn full_w(&self) -> usize {
        full_len(self.in_w, self.k_w, self.stride_w)
    }

    /// The convolution this is the adjoint (transpose) of: input (out_h, out_w, out_c), output
    /// channels in_c, pad_top = crop_top, and enough bottom padding to reach the full size. Its
    /// HWIO kernel is this HWOI kernel unchanged, and for Keras geometries (output_padding <
    /// stride) its output size is (in_h, in_w). The GPU's transposed-conv input gradient is
    /// this conv of dy.
    pub fn adjoint_conv(&self) -> Conv2dGeometry {
        Conv2dGeometry {
            batch: self.batch,
            in_h: self.out_h,
            in_w: self.out_w,
            in_c: self.out_c,
            out_c: self.in_c,
            k_h: self.k_h,
            k_w: self.k_w,
            stride_h: self.stride_h,
            stride_w: self.stride_w,
            pad_top: self.crop_top,
            pad_bottom: self.full_h().saturating_sub(self.crop_top + self.out_h),
            pad_left: self.crop_left,
            pad_right: self.full_w().saturating_sub(self.crop_left + self.out_w),
        }
    }

    /// batch·in_h·in_w·in_c
    pub fn input_len(&self) -> usize {
        self.batch * self.in_h * self.in_w * self.in_c
    }

    /// batch·out_h·out_w·out_c
    pub fn output_len(&self) -> usize {
        self.batch * self.out_h * self.out_w * self.out_c
    }

    /// k_h·k_w·out_c·in_c
    pub fn weight_len(&self) -> usize {
        self.k_h * self.k_w * self.out_c * self.in_c
    }

    /// Multiply-adds counted as 2 flops: 2·batch·in_h·in_w·in_c·k_h·k_w·out_c.
    pub fn flops(&self) -> u64 {
        [self.batch, self.in_h, self.in_w, self.in_c]
            .into_iter()
            .chain([self.k_h, self.k_w, self.out_c])
            .fold(2, |acc, d| acc.saturating_mul(d as u64))
    }

    /// Nonzero kernel and strides; no tensor length overflows usize. Any crop and output size
    /// are meaningful (outputs beyond the full result are bias only); zero sizes give empty
    /// tensors.
    pub fn validate(&self) -> Result<()> {
        check_kernel_stride(
            "ConvTranspose2dGeometry",
            [self.k_h, self.k_w, self.stride_h, self.stride_w],
        )?;
        check_products(
            "ConvTranspose2dGeometry",
            [
                [self.batch, self.in_h, self.in_w, self.in_c],
                [self.batch, self.out_h, self.out_w, self.out_c],
                [self.k_h, self.k_w, self.out_c, self.in_c],
            ],
        )?;
        // Positions used by the kernels, e.g. (in_h-1)·s + k + crop, must not overflow either.
        check_products(
            "ConvTranspose2dGeometry",
            [
                [self.in_h + self.k_h + self.crop_top, self.stride_h + 1],
                [self.in_w + self.k_w + self.crop_left, self.stride_w + 1],
            ],
        )
    }
}

/// Keras/TF 'same' padding of one axis as (before, after).
fn same_pads(n: usize, k: usize, s: usize) -> (usize, usize) {
    if n == 0 || s == 0 {
        return (0, 0);
    }
    let out = n.div_ceil(s);
    let total = ((out - 1) * s + k).saturating_sub(n);
    (total / 2, total - total / 2)
}

fn conv_out_len(padded: usize, k: usize, s: usize) -> usize {
    padded
        .checked_sub(k)
        .and_then(|span| span.checked_div(s))
        .map_or(0, |steps| steps + 1)
}

fn full_len(n: usize, k: usize, s: usize) -> usize {
    if n == 0 { 0 } else { (n - 1) * s + k }
}

/// (out, crop_before) of one transposed-conv axis; see `keras_same` / `keras_valid`.
fn transpose_axis(
    n: usize,
    k: usize,
    s: usize,
    same: bool,
    output_padding: Option<usize>,
) -> (usize, usize) {
    let out = match output_padding {
        None if same => n * s,
        None => n * s + k.saturating_sub(s),
        Some(op) => {
            let pad = if same { k / 2 } else { 0 };
            // (n-1)·s + k - 2·pad + op, written without a negative intermediate.
            (n * s + k + op).saturating_sub(s + 2 * pad)
        }
    };
    let crop = if same {
        full_len(n, k, s).saturating_sub(out) / 2
    } else {
        0
    };
    (out, crop)
}

fn shape(message: String) -> Error {
    Error::Shape {
        op: "geometry",
        message,
    }
}

fn check_kernel_stride(what: &str, [k_h, k_w, s_h, s_w]: [usize; 4]) -> Result<()> {
    if k_h == 0 || k_w == 0 || s_h == 0 || s_w == 0 {
        return Err(shape(format!(
            "{what}: kernel {k_h}x{k_w} and stride {s_h}x{s_w} must be nonzero"
        )));
    }
    Ok(())
}

fn check_products<const R: usize, const C: usize>(what: &str, rows: [[usize; C]; R]) -> Result<()> {
    for dims in rows {
        if dims
            .iter()
            .try_fold(1usize, |acc, &d| acc.checked_mul(d))
            .is_none()
        {
            return Err(shape(format!("{what}: the size {dims:?} overflows usize")));
        }
    }
    Ok(())
}
