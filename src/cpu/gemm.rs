//! Row-major f32 GEMM on top of the `gemm` crate (threaded on rayon's pool), and the Dense layer
//! built on it.

use gemm::Parallelism;

use super::check_len;
use crate::error::Result;

/// C (m, n) = op(A) (m, k) · op(B) (k, n), plus the old C when `accumulate`. All row-major:
/// A is stored (m, k), or (k, m) when `trans_a`; B is stored (k, n), or (n, k) when `trans_b`.
/// Transposes become strides, so nothing is copied. Without `accumulate`, C is only written, so
/// it may hold anything (even NaN) on entry; with k = 0 it becomes zeros (or stays, accumulating).
///
/// Deterministic: the crate splits the work between threads by blocks of C, never along k, so
/// each element's sum has one order for a given machine.
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
    let par = Parallelism::Rayon(0);
    gemm_with(par, m, n, k, a, trans_a, b, trans_b, c, accumulate)
}

/// [`gemm`] on the calling thread alone: for callers that already split their work across
/// the pool (the convolutions, per slice of the batch).
#[allow(clippy::too_many_arguments)]
pub(super) fn gemm_serial(
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
    let par = Parallelism::None;
    gemm_with(par, m, n, k, a, trans_a, b, trans_b, c, accumulate)
}

#[allow(clippy::too_many_arguments)]
fn gemm_with(
    parallelism: Parallelism,
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
    if m == 0 || n == 0 {
        return Ok(());
    }
    // Slice lengths are at most isize::MAX bytes, so these dimensions fit isize.
    let (rsa, csa) = if trans_a { (1, m) } else { (k, 1) };
    let (rsb, csb) = if trans_b { (1, k) } else { (n, 1) };
    // SAFETY: the lengths checked above make every element that the crate addresses,
    // A[i*rsa + p*csa] for i < m, p < k (likewise B and C), lie inside its slice.
    unsafe {
        crate_gemm(
            parallelism,
            (m, n, k),
            a,
            (rsa, csa),
            b,
            (rsb, csb),
            c,
            accumulate,
        )
    };
    Ok(())
}

/// C (m, n) = A·B on the calling thread, where A's rows lie `lda` floats apart (lda >= k): a
/// block of columns of a wider matrix, read in place. B is (k, n) and C (m, n), row-major.
pub(super) fn gemm_serial_strided_a(
    m: usize,
    n: usize,
    k: usize,
    a: &[f32],
    lda: usize,
    b: &[f32],
    c: &mut [f32],
) -> Result<()> {
    let a_needs = match m {
        0 => 0,
        m => (m - 1).saturating_mul(lda).saturating_add(k),
    };
    if k > lda || a.len() < a_needs {
        return Err(crate::error::Error::Shape {
            op: "gemm",
            message: format!(
                "A has {} elements, fewer than {m} rows of {k} every {lda} need",
                a.len()
            ),
        });
    }
    check_len("gemm", "B", b.len(), k.saturating_mul(n))?;
    check_len("gemm", "C", c.len(), m.saturating_mul(n))?;
    if m == 0 || n == 0 {
        return Ok(());
    }
    // SAFETY: A[i*lda + p] for i < m, p < k is at most (m-1)·lda + k - 1 < a.len(), checked
    // above, as are B's and C's lengths.
    unsafe {
        crate_gemm(
            Parallelism::None,
            (m, n, k),
            a,
            (lda, 1),
            b,
            (n, 1),
            c,
            false,
        )
    };
    Ok(())
}

/// The `gemm` crate's C = A·B (+ C when `accumulate`), C row-major and contiguous, A and B
/// with (row, column) strides.
///
/// # Safety
/// Every A[i*rsa + p*csa], B[p*rsb + j*csb] for i < m, j < n, p < k must lie inside `a` and
/// `b`, and `c` must hold m·n elements.
#[allow(clippy::too_many_arguments)]
unsafe fn crate_gemm(
    parallelism: Parallelism,
    (m, n, k): (usize, usize, usize),
    a: &[f32],
    (rsa, csa): (usize, usize),
    b: &[f32],
    (rsb, csb): (usize, usize),
    c: &mut [f32],
    accumulate: bool,
) {
    // C is a unique borrow, so it aliases neither A nor B. Without `accumulate` (read_dst
    // false), C is never read. The crate computes dst = alpha·dst + beta·lhs·rhs.
    // SAFETY: the caller's contract; slice lengths fit isize, so the strides do too.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            c.as_mut_ptr(),
            1,
            n as isize,
            accumulate,
            a.as_ptr(),
            csa as isize,
            rsa as isize,
            b.as_ptr(),
            csb as isize,
            rsb as isize,
            1.0,
            1.0,
            false,
            false,
            false,
            parallelism,
        );
    }
}

/// c (rows, cols) = each row of `bias` (cols), or c += it when `accumulate`: the bias written
/// before a GEMM that then accumulates onto it.
pub fn fill_rows(c: &mut [f32], bias: &[f32], accumulate: bool) -> Result<()> {
    let cols = bias.len().max(1);
    if !c.len().is_multiple_of(cols) {
        return Err(crate::error::Error::Shape {
            op: "fill_rows",
            message: format!("{} elements are not rows of {}", c.len(), bias.len()),
        });
    }
    if bias.is_empty() {
        return Ok(());
    }
    for row in c.chunks_exact_mut(cols) {
        if accumulate {
            row.iter_mut().zip(bias).for_each(|(c, &b)| *c += b);
        } else {
            row.copy_from_slice(bias);
        }
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
    let mut y = vec![0.0; batch.saturating_mul(out_f)];
    fill_rows(&mut y, b, false)?;
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
    let mut db = vec![0.0; cols];
    bias_grad_into(dy, rows, cols, &mut db, false)?;
    Ok(db)
}

/// Columns summed per pass over dy: their f64 sums stay on the stack, so nothing is allocated.
const BIAS_GRAD_COLUMNS: usize = 64;

/// Fixed blocks of dy's rows, summed separately (in parallel when large) and then in block
/// order, so the bits do not depend on the number of threads.
const BIAS_GRAD_ROW_BLOCKS: usize = 8;

/// Elements of dy from which the sums run in parallel.
const BIAS_GRAD_PARALLEL_FROM: usize = 1 << 16;

/// [`bias_grad`] written into `db` (cols), or added to it when `accumulate`.
pub fn bias_grad_into(
    dy: &[f32],
    rows: usize,
    cols: usize,
    db: &mut [f32],
    accumulate: bool,
) -> Result<()> {
    use rayon::prelude::*;
    check_len("bias_grad", "dy", dy.len(), rows.saturating_mul(cols))?;
    check_len("bias_grad", "db", db.len(), cols)?;
    let large = rows * cols >= BIAS_GRAD_PARALLEL_FROM;
    // Threads split the column blocks when there are several, else the row blocks.
    let split_columns = large && cols > BIAS_GRAD_COLUMNS;
    let column_block = |(i, db): (usize, &mut [f32])| {
        let c0 = i * BIAS_GRAD_COLUMNS;
        let width = db.len();
        let block_sum = |(b, sum): (usize, &mut [f64; BIAS_GRAD_COLUMNS])| {
            let block = b * rows / BIAS_GRAD_ROW_BLOCKS..(b + 1) * rows / BIAS_GRAD_ROW_BLOCKS;
            for row in dy[block.start * cols..block.end * cols].chunks_exact(cols) {
                for (s, &d) in sum.iter_mut().zip(&row[c0..c0 + width]) {
                    *s += f64::from(d);
                }
            }
        };
        let mut sums = [[0.0f64; BIAS_GRAD_COLUMNS]; BIAS_GRAD_ROW_BLOCKS];
        if large && !split_columns {
            sums.par_iter_mut().enumerate().for_each(block_sum);
        } else {
            sums.iter_mut().enumerate().for_each(block_sum);
        }
        for (c, db) in db.iter_mut().enumerate() {
            let s = sums.iter().map(|block| block[c]).sum::<f64>() as f32;
            *db = if accumulate { *db + s } else { s };
        }
    };
    if split_columns {
        db.par_chunks_mut(BIAS_GRAD_COLUMNS)
            .enumerate()
            .for_each(column_block);
    } else {
        db.chunks_mut(BIAS_GRAD_COLUMNS)
            .enumerate()
            .for_each(column_block);
    }
    Ok(())
}
