//! Models built on the graph: the MNIST GAN.

pub mod gan;
