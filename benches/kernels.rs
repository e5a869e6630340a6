//! `cargo bench`: the same table as `gan-gpu bench`, on the default adapter and the CPU.

use gan_gpu::bench::{self, BenchOptions};
use gan_gpu::gpu::AdapterRequest;
use gan_gpu::graph::runtime::{DeviceChoice, Runtime};

/// As in the `gan-gpu` binary: keeps the CPU executor's large buffers off the page-fault path.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let runtime = Runtime::new(DeviceChoice::Gpu, AdapterRequest::default());
    let gpu = match runtime.require_gpu("the GPU rows") {
        Ok(ctx) => {
            println!("adapter: {} (timing: {:?})", ctx.describe(), ctx.clock());
            Some(&runtime)
        }
        Err(e) => {
            println!("no GPU adapter ({e}); CPU rows only");
            None
        }
    };
    let opts = BenchOptions {
        quick,
        gpu: gpu.is_some(),
        cpu: true,
        model: gan_gpu::model::MODELS[0],
    };
    match bench::run(gpu, &opts, &mut |_| {}) {
        Ok(rows) => print!("{}", bench::render(&rows)),
        Err(e) => {
            eprintln!("error: {e}");
            std::process::exit(1);
        }
    }
}
