//! The `gan-gpu` command line: clap types here, all work in the library.

use std::path::PathBuf;
use std::process::ExitCode;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use clap::{Args, Parser, Subcommand};
use gan_gpu::bench::{self, BenchOptions};
use gan_gpu::data::{Split, default_data_dir, load_mnist, write_idx_images};
use gan_gpu::gpu::adapters::{list_adapters, render_table};
use gan_gpu::gpu::{AdapterRequest, BackendChoice, GpuContext, PowerPreference};
use gan_gpu::model::checkpoint::load_checkpoint;
use gan_gpu::model::images::{to_u8_pixels, write_grid_png};
use gan_gpu::model::sample::sample_checkpoint;
use gan_gpu::model::train::{DeviceChoice, TrainConfig, TrainOptions, train};

#[derive(Parser)]
#[command(
    name = "gan-gpu",
    version,
    about = "Train GANs on any GPU with hand-written WGSL kernels"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// List every GPU adapter wgpu finds, with the limits that matter to gan-gpu
    Adapters {
        #[command(flatten)]
        adapter: AdapterArgs,
        /// Print JSON instead of a table
        #[arg(long)]
        json: bool,
    },
    /// Train the MNIST GAN
    Train(TrainArgs),
    /// Draw digits from a checkpoint's generator
    Sample {
        /// A checkpoint.safetensors written by `gan-gpu train`
        #[arg(long, value_name = "FILE")]
        checkpoint: PathBuf,
        /// How many digits
        #[arg(long, default_value_t = 64)]
        count: usize,
        /// Seed of the noise
        #[arg(long, default_value_t = 0)]
        seed: u64,
        /// Output: a PNG grid, or MNIST's IDX format when the name ends in .idx3-ubyte or .idx
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
    },
    /// Time every kernel at the GAN's shapes, and a whole training step, on the GPU and the CPU
    Bench {
        #[command(flatten)]
        adapter: AdapterArgs,
        /// Which executors to time
        #[arg(long, value_enum, default_value_t = BenchDevice::Both)]
        device: BenchDevice,
        /// One JSON array of rows instead of the table
        #[arg(long)]
        json: bool,
        /// Fewer samples, no 1024³ GEMM: a quick smoke run
        #[arg(long)]
        quick: bool,
    },
    /// Load and validate the MNIST files, and print what they hold
    Dataset {
        #[command(flatten)]
        data: DataArgs,
    },
}

#[derive(Args)]
struct TrainArgs {
    /// Executor: `auto` uses the wgpu adapter when it is a real GPU, else the CPU executor
    #[arg(long, value_enum, default_value_t = DeviceChoice::Auto)]
    device: DeviceChoice,
    #[command(flatten)]
    adapter: AdapterArgs,
    /// Training iterations (one discriminator and one generator step each)
    #[arg(long, default_value_t = 50_000)]
    iterations: u64,
    #[arg(long, default_value_t = 100)]
    batch_size: usize,
    /// Dimension of the generator's N(0, 1) input
    #[arg(long, default_value_t = 100)]
    noise_dim: usize,
    /// Adam learning rate (both networks)
    #[arg(long, default_value_t = 2e-4)]
    lr: f32,
    #[arg(long, default_value_t = 0.5)]
    beta1: f32,
    #[arg(long, default_value_t = 0.999)]
    beta2: f32,
    /// Seed of the weights, the batches and the noise
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Run folder [default: runs/<timestamp>]
    #[arg(long, value_name = "DIR")]
    out: Option<PathBuf>,
    /// Losses to loss.csv and the progress line every N iterations
    #[arg(long, default_value_t = 100, value_name = "N")]
    log_every: u64,
    /// An 8x8 sample grid every N iterations
    #[arg(long, default_value_t = 500, value_name = "N")]
    sample_every: u64,
    /// checkpoint.safetensors every N iterations (and at the end)
    #[arg(long, default_value_t = 5_000, value_name = "N")]
    checkpoint_every: u64,
    /// Continue the run in DIR from its checkpoint (its settings; --iterations sets the new total)
    #[arg(long, value_name = "DIR", conflicts_with = "out")]
    resume: Option<PathBuf>,
    #[command(flatten)]
    data: DataArgs,
}

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum BenchDevice {
    Both,
    Gpu,
    Cpu,
}

#[derive(Args, Clone)]
struct AdapterArgs {
    /// Which adapter wgpu should prefer (`WGPU_ADAPTER_NAME=substring` overrides)
    #[arg(long, value_enum, default_value_t = PowerPreference::HighPerformance)]
    adapter: PowerPreference,
    /// Restrict wgpu to one backend (default: all, or `WGPU_BACKEND`)
    #[arg(long, value_enum)]
    backend: Option<BackendChoice>,
}

impl AdapterArgs {
    fn request(&self) -> AdapterRequest {
        AdapterRequest {
            power: self.adapter,
            backend: self.backend,
        }
    }
}

#[derive(Args, Clone)]
struct DataArgs {
    /// Folder holding the four MNIST IDX files (gzip or plain) [default: the bundled data/mnist]
    #[arg(long, value_name = "DIR")]
    data: Option<PathBuf>,
}

impl DataArgs {
    fn dir(&self) -> PathBuf {
        self.data.clone().unwrap_or_else(default_data_dir)
    }
}

/// The CPU executor allocates large im2col and activation buffers every step; glibc's
/// allocator returns them to the OS and page-faults them back in (about 10% of a step),
/// mimalloc keeps them.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Adapters { adapter, json } => {
            let reports = list_adapters(&adapter.request());
            if json {
                println!("{}", serde_json::to_string_pretty(&reports)?);
            } else {
                print!("{}", render_table(&reports));
            }
        }
        Command::Train(args) => run_train(args)?,
        Command::Sample {
            checkpoint,
            count,
            seed,
            out,
        } => {
            let ckpt = load_checkpoint(&checkpoint)?;
            let images = sample_checkpoint(&checkpoint, &ckpt, count, seed)?;
            let name = out.to_string_lossy();
            if name.ends_with(".idx3-ubyte") || name.ends_with(".idx") {
                write_idx_images(&out, &to_u8_pixels(&images), count, 28, 28)?;
            } else {
                write_grid_png(&out, &images, count, 28, count.clamp(1, 16), 2)?;
            }
            println!("wrote {count} digits to {}", out.display());
        }
        Command::Bench {
            adapter,
            device,
            json,
            quick,
        } => {
            let ctx = if device == BenchDevice::Cpu {
                None
            } else {
                Some(Arc::new(GpuContext::new(&adapter.request())?))
            };
            if let Some(ctx) = &ctx {
                eprintln!("adapter: {} (timing: {:?})", ctx.describe(), ctx.clock());
            }
            let opts = BenchOptions {
                quick,
                gpu: device != BenchDevice::Cpu,
                cpu: device != BenchDevice::Gpu,
            };
            let rows = bench::run(ctx.as_ref(), &opts, &mut |row| {
                if !json {
                    eprint!(
                        "{}",
                        bench::render(std::slice::from_ref(row))
                            .lines()
                            .nth(1)
                            .unwrap_or_default()
                    );
                    eprintln!();
                }
            })?;
            if json {
                println!("{}", serde_json::to_string_pretty(&rows)?);
            } else {
                print!("{}", bench::render(&rows));
            }
        }
        Command::Dataset { data } => {
            let dir = data.dir();
            for split in [Split::Train, Split::Test] {
                let set = load_mnist(&dir, split)?;
                let mut counts = [0usize; 10];
                for &label in &set.labels {
                    counts[label as usize] += 1;
                }
                println!(
                    "{split}: {} images of {}x{} in {}; labels 0-9: {:?}",
                    set.count,
                    set.rows,
                    set.cols,
                    dir.display(),
                    counts
                );
            }
        }
    }
    Ok(())
}

fn run_train(args: TrainArgs) -> anyhow::Result<()> {
    let config = TrainConfig {
        iterations: args.iterations,
        batch_size: args.batch_size,
        noise_dim: args.noise_dim,
        lr: args.lr,
        beta1: args.beta1,
        beta2: args.beta2,
        seed: args.seed,
        log_every: args.log_every,
        sample_every: args.sample_every,
        checkpoint_every: args.checkpoint_every,
        ..TrainConfig::default()
    };
    let out = match (&args.resume, &args.out) {
        (Some(dir), _) | (None, Some(dir)) => dir.clone(),
        (None, None) => {
            PathBuf::from("runs").join(chrono::Local::now().format("%Y-%m-%d_%H-%M-%S").to_string())
        }
    };
    // Ctrl-C finishes the current step and writes a checkpoint; a second one kills.
    let stop = Arc::new(AtomicBool::new(false));
    let flag = Arc::clone(&stop);
    ctrlc::set_handler(move || {
        if flag.swap(true, Ordering::SeqCst) {
            std::process::exit(130);
        }
        eprintln!("\nstopping after this step (Ctrl-C again to abort)");
    })?;
    let opts = TrainOptions {
        config,
        device: args.device,
        adapter: args.adapter.request(),
        data_dir: args.data.dir(),
        out: out.clone(),
        resume: args.resume.is_some(),
        stop,
        quiet: false,
    };
    let report = train(&opts)?;
    let verb = if report.stopped_early {
        "stopped"
    } else {
        "finished"
    };
    println!(
        "{verb} at iteration {}; run folder {} (loss.csv, samples/, checkpoint.safetensors)",
        report.last_iteration,
        out.display()
    );
    Ok(())
}

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
