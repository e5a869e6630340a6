//! CPU twins of `shaders/gather.wgsl`.

/// Pixels to [-1, 1] (the generator's tanh range): `byte * 2/255 - 1`, the same f32
/// operations as the shader.
pub fn to_signed_unit(pixels: &[u8]) -> Vec<f32> {
    let scale = 2.0f32 / 255.0;
    pixels.iter().map(|&b| b as f32 * scale - 1.0).collect()
}

/// dataset: [rows, row_len] u8; indices: \[batch\] -> [batch, row_len] f32 in [-1, 1].
pub fn gather_rows(dataset: &[u8], row_len: usize, indices: &[u32]) -> Vec<f32> {
    let mut out = Vec::with_capacity(indices.len() * row_len);
    for &row in indices {
        let start = row as usize * row_len;
        out.extend(to_signed_unit(&dataset[start..start + row_len]));
    }
    out
}

/// labels: \[rows\] u8 class labels; indices: \[batch\] -> \[batch\] u32 labels.
pub fn gather_labels(labels: &[u8], indices: &[u32]) -> Vec<u32> {
    indices
        .iter()
        .map(|&row| u32::from(labels[row as usize]))
        .collect()
}
