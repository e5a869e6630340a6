//! The `gan-gpu` command line: clap types here, all work in the library.

use std::path::PathBuf;
use std::process::ExitCode;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use clap::{Args, Parser, Subcommand};
use gan_gpu::bench::{self, BenchOptions};
use gan_gpu::data::{Split, default_data_dir, load_mnist};
use gan_gpu::eval::classifier::{
    ClassifierConfig, ClassifierRunner, default_classifier_path, train_classifier,
};
use gan_gpu::eval::quality::{self, EvalSource, not_conditional};
use gan_gpu::gpu::adapters::{list_adapters, render_table};
use gan_gpu::gpu::{AdapterRequest, BackendChoice, KernelChoice, PowerPreference};
use gan_gpu::graph::runtime::{DeviceChoice, Runtime};
use gan_gpu::io::checkpoint::load_checkpoint;
use gan_gpu::io::images::write_digits;
use gan_gpu::io::progress::step_bar;
use gan_gpu::model::classifier::save_classifier;
use gan_gpu::model::load::generator_from_checkpoint;
use gan_gpu::model::sample::{Digits, sample_stored};
use gan_gpu::model::{IMAGE_SIDE, MODELS, kind};
use gan_gpu::onnx::{BatchSize, export_onnx};
use gan_gpu::selftest::first_use::FirstUseArgs;
use gan_gpu::train::{InTrainingEval, TrainConfig, TrainOptions, train};
use gan_gpu::web::export_web;

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
    /// Train a GAN on MNIST
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
        /// For a class-conditional checkpoint: a digit 0-9, or `all` for one row per digit
        /// [default: all]
        #[arg(long, value_name = "DIGIT|all")]
        digit: Option<String>,
        /// Executor: `auto` uses the wgpu adapter when it is a real GPU, else the CPU executor
        #[arg(long, value_enum, default_value_t = DeviceChoice::Auto)]
        device: DeviceChoice,
        #[command(flatten)]
        adapter: AdapterArgs,
    },
    /// Write a checkpoint's generator as a static web page that runs our WGSL kernels on WebGPU
    ExportWeb {
        /// A checkpoint.safetensors written by `gan-gpu train`
        #[arg(long, value_name = "FILE")]
        checkpoint: PathBuf,
        /// Folder for the site (created if missing; our files in it are overwritten)
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
        /// Digits per side of the page's grid (one forward pass draws grid x grid)
        #[arg(long, default_value_t = 8)]
        grid: usize,
        /// The adapter the plan is recorded on (it runs in the browser, not here)
        #[command(flatten)]
        adapter: AdapterArgs,
    },
    /// Write a checkpoint's generator as an ONNX model (onnxruntime, PyTorch's tools, servers)
    ExportOnnx {
        /// A checkpoint.safetensors written by `gan-gpu train`
        #[arg(long, value_name = "FILE")]
        checkpoint: PathBuf,
        /// The .onnx file to write
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
        /// Images per run: `dynamic` (any) or a fixed number
        #[arg(long, value_name = "N|dynamic", default_value = "dynamic")]
        batch: BatchSize,
    },
    /// The MNIST classifier that `eval` scores with
    #[command(subcommand)]
    Classifier(ClassifierCommand),
    /// Score a generator: FID in the classifier's features, and the predicted classes
    Eval(EvalArgs),
    /// Draw a run's loss.csv as an SVG chart: FID over iterations when it was measured
    Plot {
        /// The run folder (holding loss.csv)
        #[arg(long, value_name = "DIR")]
        run: PathBuf,
        /// Output file [default: DIR/fid.svg or DIR/losses.svg]
        #[arg(long, value_name = "FILE.svg")]
        out: Option<PathBuf>,
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
        /// The model whose training step is timed
        #[arg(long, default_value = "seed", value_parser = model_names())]
        model: String,
    },
    /// Check every kernel on this adapter against the CPU reference, at the GAN's and the
    /// classifier's exact shapes and at awkward ones, then whole training iterations
    Selftest {
        #[command(flatten)]
        adapter: AdapterArgs,
        /// Kernel settings to check [default: GAN_GPU_KERNELS, else auto]
        #[arg(long, value_enum)]
        kernels: Option<KernelChoice>,
        /// One JSON report instead of the lines
        #[arg(long)]
        json: bool,
        /// Only what `train` needs: the GAN's kernels and both training iterations
        #[arg(long)]
        quick: bool,
    },
    /// Load and validate the MNIST files, and print what they hold
    Dataset {
        #[command(flatten)]
        data: DataArgs,
    },
}

#[derive(Subcommand)]
enum ClassifierCommand {
    /// Train it on MNIST's training set and report its test-set accuracy
    Train {
        #[arg(long, value_enum, default_value_t = DeviceChoice::Auto)]
        device: DeviceChoice,
        #[command(flatten)]
        adapter: AdapterArgs,
        /// Where to write the weights [default: the user's cache folder]
        #[arg(long, value_name = "FILE")]
        out: Option<PathBuf>,
        #[command(flatten)]
        data: DataArgs,
        #[command(flatten)]
        selftest: FirstUseArgs,
    },
}

#[derive(Args)]
#[command(group(clap::ArgGroup::new("images").required(true).args(["checkpoint", "samples"])))]
struct EvalArgs {
    /// A checkpoint.safetensors whose generator is scored
    #[arg(long, value_name = "FILE")]
    checkpoint: Option<PathBuf>,
    /// Or images from anywhere, as an MNIST-format IDX file of 28x28 images
    #[arg(long, value_name = "FILE")]
    samples: Option<PathBuf>,
    /// Generated images to score
    #[arg(long, default_value_t = 10_000)]
    count: usize,
    /// Seed of the generator's noise
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// For a class-conditional checkpoint: the digit to draw, or `all` (equal numbers of
    /// each) [default: all]
    #[arg(long, value_name = "DIGIT|all")]
    digit: Option<String>,
    /// Print JSON instead of the table
    #[arg(long)]
    json: bool,
    /// Classifier weights [default: the user's cache folder; trained there on first use]
    #[arg(long, value_name = "FILE")]
    classifier: Option<PathBuf>,
    /// Executor for sampling, and for training the classifier on first use
    #[arg(long, value_enum, default_value_t = DeviceChoice::Auto)]
    device: DeviceChoice,
    #[command(flatten)]
    adapter: AdapterArgs,
    #[command(flatten)]
    data: DataArgs,
    #[command(flatten)]
    selftest: FirstUseArgs,
}

#[derive(Args)]
struct TrainArgs {
    /// The model to train
    #[arg(long, default_value = "seed", value_parser = model_names())]
    model: String,
    /// Executor: `auto` uses the wgpu adapter when it is a real GPU, else the CPU executor
    #[arg(long, value_enum, default_value_t = DeviceChoice::Auto)]
    device: DeviceChoice,
    #[command(flatten)]
    adapter: AdapterArgs,
    /// Training iterations (one discriminator and one generator step each) [default: the
    /// model's: 50,000 for seed and cgan, 10,000 for dcgan]
    #[arg(long)]
    iterations: Option<u64>,
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
    /// Decay of the moving average of the generator's weights, updated every step (with the
    /// warm-up min(decay, (1+t)/(10+t))); `sample`, `eval` and the exports use it. 0: none
    #[arg(long, default_value_t = gan_gpu::model::DEFAULT_EMA_DECAY)]
    ema_decay: f32,
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
    /// FID and class statistics of the generator every N iterations, into loss.csv
    #[arg(long, value_name = "N")]
    eval_every: Option<u64>,
    /// Generated images per --eval-every evaluation
    #[arg(long, default_value_t = 2_000, value_name = "N")]
    eval_count: usize,
    /// Classifier weights for --eval-every [default: the user's cache folder]
    #[arg(long, value_name = "FILE")]
    classifier: Option<PathBuf>,
    /// Continue the run in DIR from its checkpoint (its settings; --iterations sets the new total)
    #[arg(long, value_name = "DIR", conflicts_with = "out")]
    resume: Option<PathBuf>,
    #[command(flatten)]
    data: DataArgs,
    #[command(flatten)]
    selftest: FirstUseArgs,
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
        Command::Train(args) => {
            args.selftest.apply();
            run_train(args)?
        }
        Command::Sample {
            checkpoint,
            count,
            seed,
            out,
            digit,
            device,
            adapter,
        } => {
            let digits = digit.as_deref().map(Digits::parse).transpose()?;
            let stored = generator_from_checkpoint(&checkpoint, &load_checkpoint(&checkpoint)?)?;
            let (labels, columns) = match (stored.kind.classes, digits) {
                (Some(classes), digits) => {
                    let (labels, columns) = digits.unwrap_or(Digits::All).labels(count, classes)?;
                    (Some(labels), columns)
                }
                (None, None) => (None, count.clamp(1, 16)),
                (None, Some(_)) => {
                    return Err(not_conditional(&checkpoint, stored.kind.name).into());
                }
            };
            let runtime = guarded(Runtime::new(device, adapter.request()));
            let images = sample_stored(&runtime, &stored, count, seed, labels.as_deref())?;
            write_digits(&out, &images, count, IMAGE_SIDE, columns)?;
            println!("wrote {count} digits to {}", out.display());
        }
        Command::ExportWeb {
            checkpoint,
            out,
            grid,
            adapter,
        } => {
            let runtime = Runtime::for_browser(adapter.request());
            let summary = export_web(&runtime, &checkpoint, &out, grid)?;
            println!(
                "wrote {} files to {} ({} dispatches recorded on {}, weights {:.1} MB)",
                summary.files.len(),
                out.display(),
                summary.dispatches,
                summary.recorded_on,
                summary.weight_bytes as f64 / 1e6
            );
            println!(
                "serve it on localhost (WebGPU needs a secure origin, and the page fetches its \
                 files), e.g.\n  python3 -m http.server --directory {} 8000\nthen open \
                 http://localhost:8000/",
                out.display()
            );
        }
        Command::ExportOnnx {
            checkpoint,
            out,
            batch,
        } => {
            let summary = export_onnx(&checkpoint, &out, batch)?;
            println!("{}", summary.describe(&out));
        }
        Command::Classifier(ClassifierCommand::Train {
            device,
            adapter,
            out,
            data,
            selftest,
        }) => {
            selftest.apply();
            let runtime = guarded(Runtime::new(device, adapter.request()));
            let path = out.unwrap_or_else(default_classifier_path);
            let bar = step_bar("training the classifier");
            let weights = train_classifier(
                &runtime,
                &data.dir(),
                &ClassifierConfig::default(),
                &mut |done, total| {
                    bar.set_length(total);
                    bar.set_position(done);
                },
            )?;
            bar.finish_and_clear();
            eprintln!("{}", runtime.describe()?);
            let test = load_mnist(&data.dir(), Split::Test)?;
            let acc = ClassifierRunner::new(&runtime, &weights)?.accuracy(&test, test.count)?;
            save_classifier(&path, &weights, acc)?;
            println!(
                "test accuracy {:.2}% on {} images; weights in {}",
                100.0 * acc,
                test.count,
                path.display()
            );
        }
        Command::Eval(args) => {
            args.selftest.apply();
            run_eval(args)?
        }
        Command::Plot { run, out } => {
            let csv = run.join("loss.csv");
            let has_fid = std::fs::read_to_string(&csv)
                .map_err(|e| anyhow::anyhow!("{}: {e}", csv.display()))?
                .lines()
                .next()
                .is_some_and(|h| h.contains(",fid,"));
            let out =
                out.unwrap_or_else(|| run.join(if has_fid { "fid.svg" } else { "losses.svg" }));
            gan_gpu::train::plot::plot_run(&csv, &out)?;
            println!("wrote {}", out.display());
        }
        Command::Bench {
            adapter,
            device,
            json,
            quick,
            model,
        } => {
            let gpu = (device != BenchDevice::Cpu)
                .then(|| Runtime::new(DeviceChoice::Gpu, adapter.request()));
            if let Some(runtime) = &gpu {
                let ctx = runtime.require_gpu("bench")?;
                eprintln!("adapter: {} (timing: {:?})", ctx.describe(), ctx.clock());
            }
            let opts = BenchOptions {
                quick,
                gpu: device != BenchDevice::Cpu,
                cpu: device != BenchDevice::Gpu,
                model: kind(&model)?,
            };
            let rows = bench::run(gpu.as_ref(), &opts, &mut |row| {
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
        Command::Selftest {
            adapter,
            kernels,
            json,
            quick,
        } => {
            let runtime = Runtime::new(DeviceChoice::Gpu, adapter.request()).with_kernels(kernels);
            gan_gpu::selftest::command(&runtime, json, quick)?
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

/// Reports the classifier's first-use training on a progress bar.
fn with_classifier_bar<T>(
    path: &std::path::Path,
    job: impl FnOnce(&mut dyn FnMut(u64, u64)) -> gan_gpu::Result<(T, Option<f64>)>,
) -> anyhow::Result<T> {
    if !path.exists() {
        eprintln!(
            "no classifier at {}: training one (a few minutes, once)",
            path.display()
        );
    }
    let bar = step_bar("training the classifier");
    let (out, trained) = job(&mut |done, total| {
        bar.set_length(total);
        bar.set_position(done);
    })?;
    bar.finish_and_clear();
    if let Some(acc) = trained {
        eprintln!(
            "classifier test accuracy {:.2}%, saved to {}",
            100.0 * acc,
            path.display()
        );
    }
    Ok(out)
}

fn run_eval(args: EvalArgs) -> anyhow::Result<()> {
    let runtime = guarded(Runtime::new(args.device, args.adapter.request()));
    let classifier = args.classifier.unwrap_or_else(default_classifier_path);
    let source = match (&args.checkpoint, &args.samples) {
        (Some(path), _) => EvalSource::Checkpoint {
            path,
            count: args.count,
            seed: args.seed,
            digits: args.digit.as_deref().map(Digits::parse).transpose()?,
        },
        (None, Some(path)) => EvalSource::Samples(path),
        (None, None) => unreachable!("clap requires --checkpoint or --samples"),
    };
    let rows = with_classifier_bar(&classifier, |progress| {
        quality::evaluate(&runtime, &source, &classifier, &args.data.dir(), progress)
    })?;
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(
                &serde_json::json!({ "generated": rows[0], "real": rows[1] })
            )?
        );
    } else {
        print!("{}", quality::render(&rows));
    }
    Ok(())
}

fn run_train(args: TrainArgs) -> anyhow::Result<()> {
    // The default length is the model's: the resumed run's model when resuming.
    let iterations = match (args.iterations, &args.resume) {
        (Some(n), _) => n,
        (None, Some(dir)) => {
            let path = gan_gpu::train::RunDir { root: dir.clone() }.checkpoint();
            let saved = gan_gpu::train::state::saved_config(&path, &load_checkpoint(&path)?)?;
            saved.model_kind()?.default_iterations
        }
        (None, None) => kind(&args.model)?.default_iterations,
    };
    let config = TrainConfig {
        iterations,
        ema_decay: args.ema_decay,
        batch_size: args.batch_size,
        noise_dim: args.noise_dim,
        lr: args.lr,
        beta1: args.beta1,
        beta2: args.beta2,
        seed: args.seed,
        log_every: args.log_every,
        sample_every: args.sample_every,
        checkpoint_every: args.checkpoint_every,
        model: args.model.clone(),
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
    let runtime = guarded(Runtime::new(args.device, args.adapter.request()));
    let mut eval = match args.eval_every {
        Some(every) => {
            let path = args
                .classifier
                .clone()
                .unwrap_or_else(default_classifier_path);
            Some(with_classifier_bar(&path, |progress| {
                InTrainingEval::prepare(
                    &runtime,
                    &path,
                    &args.data.dir(),
                    &ClassifierConfig::default(),
                    (every, args.eval_count),
                    progress,
                )
            })?)
        }
        None => None,
    };
    let opts = TrainOptions {
        config,
        data_dir: args.data.dir(),
        out: out.clone(),
        resume: args.resume.is_some(),
        stop,
        quiet: false,
    };
    let report = train(&runtime, &opts, eval.as_mut())?;
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

/// A runtime that runs the first-use selftest (as `--selftest`/`--skip-selftest` set it)
/// before training or sampling on a GPU it has not checked.
fn guarded(runtime: Runtime) -> Runtime {
    runtime.guarded(gan_gpu::selftest::first_use::protect)
}

/// The names `--model` takes, for its help text.
fn model_names() -> Vec<&'static str> {
    MODELS.iter().map(|k| k.name).collect()
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
