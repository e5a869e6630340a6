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

/// out [batch, dim]: out[b, j] = table[labels[b], j], for table [classes, dim].
pub fn embedding_forward(
    table: &[f32],
    labels: &[u32],
    classes: usize,
    dim: usize,
) -> Result<Vec<f32>> {
    check_len("embedding_forward", "table", table.len(), classes * dim)?;
    check_labels("embedding_forward", labels, classes)?;
    let mut out = Vec::with_capacity(labels.len() * dim);
    for &label in labels {
        let row = label as usize * dim;
        out.extend_from_slice(&table[row..row + dim]);
    }
    Ok(out)
}

/// dtable [classes, dim]: dtable[c, j] = Σ over b with labels[b] = c of dy[b, j].
pub fn embedding_backward(
    dy: &[f32],
    labels: &[u32],
    classes: usize,
    dim: usize,
) -> Result<Vec<f32>> {
    check_len("embedding_backward", "dy", dy.len(), labels.len() * dim)?;
    check_labels("embedding_backward", labels, classes)?;
    let mut dtable = vec![0.0; classes * dim];
    // Batch order, as the GPU kernel sums: identical f32 results.
    for (b, &label) in labels.iter().enumerate() {
        let row = &mut dtable[label as usize * dim..(label as usize + 1) * dim];
        for (t, &g) in row.iter_mut().zip(&dy[b * dim..(b + 1) * dim]) {
            *t += g;
        }
    }
    Ok(dtable)
}
