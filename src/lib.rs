//! gan-gpu: a GPU-compute runtime that trains GANs with hand-written WGSL kernels.
//!
//! Layers, from the metal up: [`gpu`] (device, buffers, pipelines), [`kernels`] (WGSL
//! launchers) beside [`cpu`] (their CPU reference twins), [`graph`] (ops, shape-inferring
//! builders, autodiff, the two executors and the runtime that picks between them), [`io`]
//! and [`data`] (files and MNIST), [`model`] (models as data), [`eval`] (sample quality),
//! [`train`] (the training loop), the front ends [`web`], [`onnx`] and [`mod@bench`], and
//! [`selftest`], which checks every kernel on the user's adapter against the CPU reference,
//! and [`tune`] on top of both, which picks each kernel's settings on the user's adapter
//! by measurement.

pub mod bench;
pub mod cpu;
pub mod data;
pub mod error;
pub mod eval;
pub mod geometry;
pub mod gpu;
pub mod graph;
pub mod io;
pub mod kernels;
pub mod limits;
pub mod model;
pub mod onnx;
pub mod selftest;
pub mod train;
pub mod tune;
pub mod web;

pub use error::{Error, Result};
