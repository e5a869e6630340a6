//! The device layer: one wgpu context, buffers, and the cached pipelines of our shaders.

pub mod adapters;
pub mod buffer;
pub mod context;
pub mod dispatch;
pub mod pipeline;
pub mod settings;
pub mod tuning;

pub use buffer::{GpuBuffer, PackLayout};
pub use context::{AdapterRequest, BackendChoice, GpuContext, PowerPreference};
pub use dispatch::{Dispatch, Footprint};
pub use pipeline::{Binding, Kernel, KernelSpec, Shader};
pub use settings::{KernelChoice, KernelSettings};
pub use tuning::Knobs;
pub mod testing;
pub mod timer;
