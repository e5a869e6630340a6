//! `cargo bench`: the same table as `gan-gpu bench`, on the default adapter and the CPU.

use std::sync::Arc;

use gan_gpu::bench::{self, BenchOptions};
use gan_gpu::gpu::{AdapterRequest, GpuContext};

/// As in the `gan-gpu` binary: keeps the CPU executor's large buffers off the page-fault path.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let ctx = match GpuContext::new(&AdapterRequest::default()) {
        Ok(ctx) => {
            println!("adapter: {} (timing: {:?})", ctx.describe(), ctx.clock());
            Some(Arc::new(ctx))
        }
        Err(e) => {
            println!("no GPU adapter ({e}); CPU rows only");
            None
        }
    };
    let opts = BenchOptions {
        quick,
        gpu: ctx.is_some(),
        cpu: true,
    };
    match bench::run(ctx.as_ref(), &opts, &mut |_| {}) {
        Ok(rows) => print!("{}", bench::render(&rows)),
        Err(e) => {
            eprintln!("error: {e}");
            std::process::exit(1);
        }
    }
}
