//! The wgpu executor (being written).
