//! Sample quality. [`fid`] fits Gaussians to feature vectors (f64) and measures the
//! Fréchet distance between them; [`stats`] summarises predicted classes (histogram,
//! entropy, confidence); [`classifier`] trains and runs the MNIST classifier whose
//! features and predictions they use; [`quality`] puts them together for `gan-gpu eval`.

pub mod classifier;
pub mod fid;
pub mod quality;
pub mod stats;

pub use fid::{Gaussian, frechet_distance};
pub use stats::{ClassStats, class_stats};
