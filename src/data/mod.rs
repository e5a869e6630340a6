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
