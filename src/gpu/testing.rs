//! The shared wgpu context for tests and benchmarks.
//!
//! Where no adapter exists, tests print a loud `SKIP` and pass, so `cargo test` works on
//! any machine; with `GAN_GPU_REQUIRE_ADAPTER=1` (set by `.ci/run`) a missing adapter
//! fails instead, so CI can never pass by skipping. `GAN_GPU_KERNELS` chooses the kernel
//! settings as everywhere else; a value it does not know fails the test, never skips it.

use std::sync::{Arc, OnceLock};

use crate::gpu::{AdapterRequest, GpuContext, KernelChoice};

pub const REQUIRE_ADAPTER_ENV: &str = "GAN_GPU_REQUIRE_ADAPTER";

/// One context per test process (device creation is not free on lavapipe), or `None`
/// after printing `SKIP: no wgpu adapter` for `test_name`.
pub fn test_context(test_name: &str) -> Option<Arc<GpuContext>> {
    static CONTEXT: OnceLock<Result<Arc<GpuContext>, String>> = OnceLock::new();
    if let Err(e) = KernelChoice::from_env() {
        panic!("{test_name}: {e}");
    }
    let context = CONTEXT.get_or_init(|| {
        GpuContext::new(&AdapterRequest::default())
            .map(Arc::new)
            .map_err(|e| e.to_string())
    });
    match context {
        Ok(ctx) => Some(Arc::clone(ctx)),
        Err(reason) => {
            let required = std::env::var(REQUIRE_ADAPTER_ENV).is_ok_and(|v| v == "1");
            assert!(
                !required,
                "{REQUIRE_ADAPTER_ENV}=1 but no wgpu adapter for {test_name}: {reason}"
            );
            eprintln!("SKIP: no wgpu adapter, {test_name} not run ({reason})");
            None
        }
    }
}
