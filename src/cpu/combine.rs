//! Ops that combine two tensors: element-wise sum, and the row-wise dot product a
//! projection discriminator scores with, with their gradients.

use super::{check_len, par};
use crate::error::{Error, Result};

/// y = a + b, element-wise. Its gradient passes dy to both inputs unchanged.
pub fn add(a: &[f32], b: &[f32]) -> Result<Vec<f32>> {
    let mut y = vec![0.0; a.len()];
    add_into(a, b, &mut y)?;
    Ok(y)
}

/// [`add`] into `y`.
pub fn add_into(a: &[f32], b: &[f32], y: &mut [f32]) -> Result<()> {
    check_len("add", "b", b.len(), a.len())?;
    check_len("add", "y", y.len(), a.len())?;
    par::chunks_mut(y, |at, y| {
        let n = y.len();
        for ((y, x), z) in y.iter_mut().zip(&a[at..at + n]).zip(&b[at..at + n]) {
            *y = x + z;
        }
    });
    Ok(())
}

/// `dst = src`, or `dst += src` with `accumulate`: the gradient a sum passes on.
pub fn accumulate_into(src: &[f32], dst: &mut [f32], accumulate: bool) -> Result<()> {
    check_len("accumulate", "dst", dst.len(), src.len())?;
    par::chunks_mut(dst, |at, dst| {
        let src = &src[at..at + dst.len()];
        if accumulate {
            dst.iter_mut().zip(src).for_each(|(d, s)| *d += s);
        } else {
            dst.copy_from_slice(src);
        }
    });
    Ok(())
}

/// y = a followed by b: the batch-axis concatenation of two row-major tensors.
pub fn concat_into(a: &[f32], b: &[f32], y: &mut [f32]) -> Result<()> {
    check_len("concat", "y", y.len(), a.len() + b.len())?;
    let (head, tail) = y.split_at_mut(a.len());
    head.copy_from_slice(a);
    tail.copy_from_slice(b);
    Ok(())
}

/// `src[offset..offset + dst.len()]` into `dst`, or added to it: the gradient a
/// concatenation passes to one input.
pub fn accumulate_rows_into(
    src: &[f32],
    offset: usize,
    dst: &mut [f32],
    accumulate: bool,
) -> Result<()> {
    let Some(part) = src.get(offset..offset.saturating_add(dst.len())) else {
        return Err(Error::Shape {
            op: "accumulate",
            message: format!(
                "elements {offset}..{} of a source of {}",
                offset.saturating_add(dst.len()),
                src.len()
            ),
        });
    };
    accumulate_into(part, dst, accumulate)
}

/// `y [rows]`: `y[r] = Σ_c a[r, c]·b[r, c]`, for a and b `[rows, cols]`, summed as `dot`
/// does.
pub fn row_dot(a: &[f32], b: &[f32], cols: usize) -> Result<Vec<f32>> {
    let mut y = vec![0.0; a.len().checked_div(cols).unwrap_or(0)];
    row_dot_into(a, b, cols, &mut y)?;
    Ok(y)
}

/// [`row_dot`] into `y`.
pub fn row_dot_into(a: &[f32], b: &[f32], cols: usize, y: &mut [f32]) -> Result<()> {
    check_len("row_dot", "b", b.len(), a.len())?;
    if cols == 0 || !a.len().is_multiple_of(cols) {
        return Err(Error::Shape {
            op: "row_dot",
            message: format!("{} values are not whole rows of {cols}", a.len()),
        });
    }
    check_len("row_dot", "y", y.len(), a.len() / cols)?;
    for ((y, x), z) in y.iter_mut().zip(a.chunks(cols)).zip(b.chunks(cols)) {
        *y = dot(x, z);
    }
    Ok(())
}

/// The gradient of row_dot with respect to one input: `dx[r, c] = dy[r]·other[r, c]`.
pub fn row_dot_backward(dy: &[f32], other: &[f32], cols: usize) -> Result<Vec<f32>> {
    let mut dx = vec![0.0; other.len()];
    row_dot_backward_into(dy, other, cols, &mut dx, false)?;
    Ok(dx)
}

/// [`row_dot_backward`] into `dx`, or added to it with `accumulate`.
pub fn row_dot_backward_into(
    dy: &[f32],
    other: &[f32],
    cols: usize,
    dx: &mut [f32],
    accumulate: bool,
) -> Result<()> {
    check_len("row_dot_backward", "other", other.len(), dy.len() * cols)?;
    check_len("row_dot_backward", "dx", dx.len(), other.len())?;
    let rows = dx.chunks_mut(cols.max(1)).zip(other.chunks(cols.max(1)));
    // One loop per case rather than a branch per element, so each vectorises.
    for ((row, o), &g) in rows.zip(dy) {
        if accumulate {
            row.iter_mut().zip(o).for_each(|(d, &v)| *d += g * v);
        } else {
            row.iter_mut().zip(o).for_each(|(d, &v)| *d = g * v);
        }
    }
    Ok(())
}

/// Lanes of [`dot`]'s partial sums: one AVX-512 vector, two AVX2 vectors.
const DOT_LANES: usize = 16;

/// Σ x[i]·z[i] in [`DOT_LANES`] interleaved partial sums (lane i mod 16), then the lanes in
/// order, then the tail: a fixed order that vectorises, where a single running sum would wait
/// on each add.
fn dot(x: &[f32], z: &[f32]) -> f32 {
    let mut lanes = [0.0f32; DOT_LANES];
    let (xs, zs) = (x.chunks_exact(DOT_LANES), z.chunks_exact(DOT_LANES));
    let tail: f32 = xs
        .remainder()
        .iter()
        .zip(zs.remainder())
        .map(|(p, q)| p * q)
        .sum();
    for (xs, zs) in xs.zip(zs) {
        for ((l, &p), &q) in lanes.iter_mut().zip(xs).zip(zs) {
            *l += p * q;
        }
    }
    lanes.iter().sum::<f32>() + tail
}
