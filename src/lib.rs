//! gan-gpu: a GPU-compute runtime that trains GANs with hand-written WGSL kernels.
//!
//! Layers, from the metal up: [`gpu`] (device, buffers, pipelines), [`kernels`] (WGSL
//! launchers) beside [`cpu`] (their CPU reference twins), [`graph`] (ops, autodiff and
//! the two executors), and [`data`] (MNIST). [`selftest`] checks every kernel on the
//! user's adapter against the CPU reference.

pub mod bench;
pub mod cpu;
pub mod data;
pub mod error;
pub mod eval;
pub mod fsutil;
pub mod geometry;
pub mod gpu;
pub mod graph;
pub mod kernels;
pub mod model;
pub mod selftest;
pub mod web;

pub use error::{Error, Result};
