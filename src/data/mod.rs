//! Training data: the MNIST digits, read from IDX files.

pub mod idx;

use std::path::{Path, PathBuf};

pub use idx::{
    IdxImageWriter, MnistSet, Split, load_mnist, parse_idx_images, parse_idx_labels,
    read_idx_images, read_idx_labels, write_idx_images,
};

/// `data/mnist` in the crate root, where the dataset is bundled. The path is fixed at compile
/// time, so it works from any working directory.
pub fn default_data_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("data")
        .join("mnist")
}

/// `gan-gpu dataset`: both splits in `dir`, loaded and validated, one line each with the
/// count of every label.
pub fn summary(dir: &Path) -> crate::Result<String> {
    let mut out = String::new();
    for split in [Split::Train, Split::Test] {
        let set = load_mnist(dir, split)?;
        let mut counts = [0usize; 10];
        for &label in &set.labels {
            counts[label as usize] += 1;
        }
        out += &format!(
            "{split}: {} images of {}x{} in {}; labels 0-9: {counts:?}\n",
            set.count,
            set.rows,
            set.cols,
            dir.display(),
        );
    }
    Ok(out)
}
