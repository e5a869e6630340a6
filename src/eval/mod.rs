//! Quality statistics of generated samples, computed on the CPU in f64 from features
//! and class probabilities that a classifier produced:
//! [`fid`] fits Gaussians to feature vectors and measures the Fréchet distance between
//! them; [`stats`] summarises predicted classes (histogram, entropy, confidence).

pub mod fid;
pub mod stats;

pub use fid::{Gaussian, frechet_distance};
pub use stats::{ClassStats, class_stats};
