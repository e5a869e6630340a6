//! Models built on the graph: the MNIST GAN, its training loop, checkpoints and samples.

pub mod checkpoint;
pub mod classifier;
pub mod evaluate;
pub mod gan;
pub mod images;
pub mod plot;
pub mod sample;
pub mod train;
