//! Ops that combine two tensors: element-wise sum, and the row-wise dot product a
//! projection discriminator scores with, with their gradients.

use super::check_len;
use crate::error::{Error, Result};

/// y = a + b, element-wise. Its gradient passes dy to both inputs unchanged.
pub fn add(a: &[f32], b: &[f32]) -> Result<Vec<f32>> {
    check_len("add", "b", b.len(), a.len())?;
    Ok(a.iter().zip(b).map(|(x, y)| x + y).collect())
}

/// y [rows]: y[r] = Σ_c a[r, c]·b[r, c], for a and b [rows, cols], summed in column order.
pub fn row_dot(a: &[f32], b: &[f32], cols: usize) -> Result<Vec<f32>> {
    check_len("row_dot", "b", b.len(), a.len())?;
    if cols == 0 {
        return Ok(Vec::new());
    }
    if !a.len().is_multiple_of(cols) {
        return Err(Error::Shape {
            op: "row_dot",
            message: format!("{} values are not whole rows of {cols}", a.len()),
        });
    }
    Ok(a.chunks(cols)
        .zip(b.chunks(cols))
        .map(|(x, y)| x.iter().zip(y).map(|(p, q)| p * q).sum())
        .collect())
}

/// The gradient of row_dot with respect to one input: dx[r, c] = dy[r]·other[r, c].
pub fn row_dot_backward(dy: &[f32], other: &[f32], cols: usize) -> Result<Vec<f32>> {
    check_len("row_dot_backward", "other", other.len(), dy.len() * cols)?;
    Ok(other
        .chunks(cols.max(1))
        .zip(dy)
        .flat_map(|(row, &g)| row.iter().map(move |&o| g * o))
        .collect())
}
