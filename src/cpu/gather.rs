//! CPU twins of `shaders/gather.wgsl`.

use super::check_len;
use crate::error::Result;

/// Pixels to [-1, 1] (the generator's tanh range): `byte * 2/255 - 1`, the same f32
/// operations as the shader.
pub fn to_signed_unit(pixels: &[u8]) -> Vec<f32> {
    pixels.iter().map(|&b| signed_unit(b)).collect()
}

fn signed_unit(byte: u8) -> f32 {
    byte as f32 * (2.0f32 / 255.0) - 1.0
}

/// dataset: [rows, row_len] u8; indices: \[batch\] -> [batch, row_len] f32 in [-1, 1].
pub fn gather_rows(dataset: &[u8], row_len: usize, indices: &[u32]) -> Vec<f32> {
    let mut out = vec![0.0; indices.len() * row_len];
    gather_rows_into(dataset, row_len, indices, &mut out)
        .expect("the buffer is made to the batch's length");
    out
}

/// [`gather_rows`] into `out` (`[batch, row_len]`). Panics if an index is past the dataset.
pub fn gather_rows_into(
    dataset: &[u8],
    row_len: usize,
    indices: &[u32],
    out: &mut [f32],
) -> Result<()> {
    check_len("gather_rows", "out", out.len(), indices.len() * row_len)?;
    for (&row, out) in indices.iter().zip(out.chunks_exact_mut(row_len.max(1))) {
        let start = row as usize * row_len;
        for (o, &b) in out.iter_mut().zip(&dataset[start..start + row_len]) {
            *o = signed_unit(b);
        }
    }
    Ok(())
}

/// labels: \[rows\] u8 class labels; indices: \[batch\] -> \[batch\] u32 labels.
pub fn gather_labels(labels: &[u8], indices: &[u32]) -> Vec<u32> {
    indices
        .iter()
        .map(|&row| u32::from(labels[row as usize]))
        .collect()
}
