//! The `gan-gpu` command line: clap types here, all work in the library.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use gan_gpu::data::{Split, default_data_dir, load_mnist};
use gan_gpu::gpu::adapters::{list_adapters, render_table};
use gan_gpu::gpu::{AdapterRequest, BackendChoice, PowerPreference};

#[derive(Parser)]
#[command(name = "gan-gpu", version, about = "Train GANs on any GPU with hand-written WGSL kernels")]
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
    /// Load and validate the MNIST files, and print what they hold
    Dataset {
        #[command(flatten)]
        data: DataArgs,
    },
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

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
