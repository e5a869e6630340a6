//! Row-major f32 GEMM on top of `matrixmultiply` (threaded), and the Dense layer built on it.

use super::check_len;
use crate::error::Result;

/// C (m, n) = op(A) (m, k) · op(B) (k, n), plus the old C when `accumulate`. All row-major:
/// A is stored (m, k), or (k, m) when `trans_a`; B is stored (k, n), or (n, k) when `trans_b`.
/// Transposes become strides, so nothing is copied. Without `accumulate`, C is only written, so
/// it may hold anything (even NaN) on entry; with k = 0 it becomes zeros (or stays, accumulating).
#[allow(clippy::too_many_arguments)] // the BLAS sgemm argument list
pub fn gemm(
    m: usize,
    n: usize,
    k: usize,
    a: &[f32],
    trans_a: bool,
    b: &[f32],
    trans_b: bool,
    c: &mut [f32],
    accumulate: bool,
) -> Result<()> {
    // Saturating: an overflowing size matches no slice, so it is reported, not wrapped.
    check_len("gemm", "A", a.len(), m.saturating_mul(k))?;
    check_len("gemm", "B", b.len(), k.saturating_mul(n))?;
    check_len("gemm", "C", c.len(), m.saturating_mul(n))?;
    // Slice lengths are at most isize::MAX bytes, so these dimensions fit isize.
    let (rsa, csa) = if trans_a { (1, m) } else { (k, 1) };
    let (rsb, csb) = if trans_b { (1, k) } else { (n, 1) };
    let beta = if accumulate { 1.0 } else { 0.0 };
    // SAFETY: the lengths checked above make every element that matrixmultiply addresses,
    // A[i*rsa + p*csa] for i < m, p < k (likewise B and C), lie inside its slice; C is a unique
    // borrow, so it aliases neither A nor B. With beta = 0, C is never read.
    unsafe {
        matrixmultiply::sgemm(
            m,
            k,
            n,
            1.0,
            a.as_ptr(),
            rsa as isize,
            csa as isize,
            b.as_ptr(),
            rsb as isize,
            csb as isize,
            beta,
            c.as_mut_ptr(),
            n as isize,
            1,
        );
    }
    Ok(())
}

/// x (batch, in_f), w (in_f, out_f), b (out_f) -> y (batch, out_f) = x·w + b
pub fn dense_forward(
    x: &[f32],
    w: &[f32],
    b: &[f32],
    batch: usize,
    in_f: usize,
    out_f: usize,
) -> Result<Vec<f32>> {
    check_len("dense_forward", "x", x.len(), batch.saturating_mul(in_f))?;
    check_len("dense_forward", "w", w.len(), in_f.saturating_mul(out_f))?;
    check_len("dense_forward", "b", b.len(), out_f)?;
    let mut y = b.repeat(batch);
    gemm(batch, out_f, in_f, x, false, w, false, &mut y, true)?;
    Ok(y)
}

/// x (batch, in_f), w (in_f, out_f), dy (batch, out_f) ->
/// (dx = dy·wᵀ (batch, in_f), dw = xᵀ·dy (in_f, out_f), db = Σ_batch dy (out_f))
pub fn dense_backward(
    x: &[f32],
    w: &[f32],
    dy: &[f32],
    batch: usize,
    in_f: usize,
    out_f: usize,
) -> Result<(Vec<f32>, Vec<f32>, Vec<f32>)> {
    check_len("dense_backward", "x", x.len(), batch.saturating_mul(in_f))?;
    check_len("dense_backward", "w", w.len(), in_f.saturating_mul(out_f))?;
    check_len(
        "dense_backward",
        "dy",
        dy.len(),
        batch.saturating_mul(out_f),
    )?;
    let mut dx = vec![0.0; x.len()];
    gemm(batch, in_f, out_f, dy, false, w, true, &mut dx, false)?;
    let mut dw = vec![0.0; w.len()];
    gemm(in_f, out_f, batch, x, true, dy, false, &mut dw, false)?;
    Ok((dx, dw, bias_grad(dy, batch, out_f)?))
}

/// dy (rows, cols) -> db (cols) = Σ_rows dy. The bias gradient of Dense (rows = batch) and of
/// the convolutions (rows = batch·out_h·out_w). Accumulated in f64: a conv bias sums ~10^4
/// terms, and the oracle should not carry the f32 rounding of any one summation order.
pub fn bias_grad(dy: &[f32], rows: usize, cols: usize) -> Result<Vec<f32>> {
    check_len("bias_grad", "dy", dy.len(), rows.saturating_mul(cols))?;
    let mut sum = vec![0.0f64; cols];
    if cols > 0 {
        for row in dy.chunks_exact(cols) {
            for (s, &d) in sum.iter_mut().zip(row) {
                *s += f64::from(d);
            }
        }
    }
    Ok(sum.into_iter().map(|s| s as f32).collect())
}
