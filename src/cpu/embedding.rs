//! Embedding lookup (Keras `Embedding`): rows of a [classes, dim] table picked by class
//! labels, and the table's gradient.

use super::check_len;
use crate::error::{Error, Result};

fn check_labels(op: &'static str, labels: &[u32], classes: usize) -> Result<()> {
    match labels.iter().position(|&l| l as usize >= classes) {
        Some(b) => Err(Error::Shape {
            op,
            message: format!("label {} at {b} is not below {classes} classes", labels[b]),
        }),
        None => Ok(()),
    }
}

/// `out [batch, dim]`: `out[b, j] = table[labels[b], j]`, for `table [classes, dim]`.
pub fn embedding_forward(
    table: &[f32],
    labels: &[u32],
    classes: usize,
    dim: usize,
) -> Result<Vec<f32>> {
    let mut out = vec![0.0; labels.len() * dim];
    embedding_forward_into(table, labels, classes, dim, &mut out)?;
    Ok(out)
}

/// [`embedding_forward`] into `out`.
pub fn embedding_forward_into(
    table: &[f32],
    labels: &[u32],
    classes: usize,
    dim: usize,
    out: &mut [f32],
) -> Result<()> {
    check_len("embedding_forward", "table", table.len(), classes * dim)?;
    check_len("embedding_forward", "out", out.len(), labels.len() * dim)?;
    check_labels("embedding_forward", labels, classes)?;
    for (&label, row) in labels.iter().zip(out.chunks_exact_mut(dim.max(1))) {
        let start = label as usize * dim;
        row.copy_from_slice(&table[start..start + dim]);
    }
    Ok(())
}

/// Columns of the table gradient summed per pass over the batch, on the stack.
const SUM_COLUMNS: usize = 256;

/// `dtable [classes, dim]`: `dtable[c, j] = Σ over b with labels[b] = c of dy[b, j]`.
pub fn embedding_backward(
    dy: &[f32],
    labels: &[u32],
    classes: usize,
    dim: usize,
) -> Result<Vec<f32>> {
    let mut dtable = vec![0.0; classes * dim];
    embedding_backward_into(dy, labels, classes, dim, &mut dtable, false)?;
    Ok(dtable)
}

/// [`embedding_backward`] into `dtable`, or added to it with `accumulate`. The sum runs
/// in batch order from zero, then adds to what was there, as the GPU kernel does, so
/// both agree bit for bit.
pub fn embedding_backward_into(
    dy: &[f32],
    labels: &[u32],
    classes: usize,
    dim: usize,
    dtable: &mut [f32],
    accumulate: bool,
) -> Result<()> {
    check_len("embedding_backward", "dy", dy.len(), labels.len() * dim)?;
    check_len("embedding_backward", "dtable", dtable.len(), classes * dim)?;
    check_labels("embedding_backward", labels, classes)?;
    // Column blocks, each summed over the batch in a stack array: dy is read row by row
    // (contiguous, vectorised) and each element still adds in batch order from zero.
    for c in 0..classes {
        let rows = || {
            labels
                .iter()
                .zip(dy.chunks_exact(dim.max(1)))
                .filter(move |&(&l, _)| l as usize == c)
                .map(|(_, row)| row)
        };
        let table_row = &mut dtable[c * dim..(c + 1) * dim];
        for (j0, out) in (0..dim)
            .step_by(SUM_COLUMNS)
            .zip(table_row.chunks_mut(SUM_COLUMNS))
        {
            let mut sum = [0.0f32; SUM_COLUMNS];
            let sum = &mut sum[..out.len()];
            for row in rows() {
                for (s, &d) in sum.iter_mut().zip(&row[j0..j0 + out.len()]) {
                    *s += d;
                }
            }
            for (t, &s) in out.iter_mut().zip(sum.iter()) {
                *t = if accumulate { *t + s } else { s };
            }
        }
    }
    Ok(())
}
