//! Rust launchers for the WGSL kernels in `shaders/`: each one checks shapes, fills the
//! kernel's typed `Params` uniform and returns a [`crate::gpu::Dispatch`].

pub mod gather;
