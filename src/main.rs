//! The `gan-gpu` command line: clap types here, all work in the library.

use std::path::PathBuf;
use std::process::ExitCode;

use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use clap::{Args, Parser, Subcommand};
use gan_gpu::bench::{self, BenchOptions};
use gan_gpu::data::default_data_dir;
use gan_gpu::eval::classifier::{ClassifierConfig, default_classifier_path, train_and_save};
use gan_gpu::eval::quality::{self, EvalSource};
use gan_gpu::gpu::adapters::{list_adapters, render_table};
use gan_gpu::gpu::{AdapterRequest, BackendChoice, KernelChoice, PowerPreference};
use gan_gpu::graph::runtime::{DeviceChoice, Runtime};
use gan_gpu::io::progress::{step_bar, with_classifier_bar};
use gan_gpu::model::load::Weights;
use gan_gpu::model::sample::{Digits, sample_command};
use gan_gpu::model::{DEFAULT_MODEL, MODELS, kind};
use gan_gpu::onnx::{BatchSize, export_onnx};
use gan_gpu::selftest::first_use::FirstUseArgs;
use gan_gpu::train::config::CHANGEABLE_ON_RESUME;
use gan_gpu::train::signals::StopSignals;
use gan_gpu::train::{ConfigFlags, InTrainingEval, OpenRun, Start, TrainOptions};
use gan_gpu::tune::TuneWhen;
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
        /// How many digits (a PNG grid holds at most 4512; an IDX file any number, streamed)
        #[arg(long, default_value_t = 64)]
        count: u64,
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
        /// Use the raw generator weights (`generator.*`), not their moving average
        /// (`ema.generator.*`, the default; a checkpoint without one gives its raw weights)
        #[arg(long)]
        raw: bool,
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
        /// [default: a row per digit for a class-conditional generator (10), else 8]
        #[arg(long)]
        grid: Option<usize>,
        /// Use the raw generator weights (`generator.*`), not their moving average
        /// (`ema.generator.*`, the default; a checkpoint without one gives its raw weights)
        #[arg(long)]
        raw: bool,
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
        /// Use the raw generator weights (`generator.*`), not their moving average
        /// (`ema.generator.*`, the default; a checkpoint without one gives its raw weights)
        #[arg(long)]
        raw: bool,
    },
    /// The MNIST classifier that `eval` scores with
    #[command(subcommand)]
    Classifier(ClassifierCommand),
    /// Score a generator: FID in the classifier's features, and the predicted classes
    Eval(EvalArgs),
    /// Draw a run's loss.csv as an SVG chart: FID over iterations when it was measured
    Plot {
        /// The run folder (holding loss.csv); several `--run`s draw their FIDs on one chart
        #[arg(long, value_name = "DIR", required = true)]
        run: Vec<PathBuf>,
        /// Output file [default: DIR/fid.svg or DIR/losses.svg; needed for several runs]
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
        #[arg(long, default_value = DEFAULT_MODEL.name, value_parser = model_names())]
        model: String,
    },
    /// Show one training iteration as the adapter runs it: every dispatch with its kernel,
    /// grid, longest loop, FLOPs and bytes, the totals, and the dispatches too narrow for a GPU
    Plan {
        #[command(flatten)]
        adapter: AdapterArgs,
        /// The model whose training iteration is shown
        #[arg(long, default_value = DEFAULT_MODEL.name, value_parser = model_names())]
        model: String,
        /// Kernel settings to plan with [default: GAN_GPU_KERNELS, else auto]
        #[arg(long, value_enum)]
        kernels: Option<KernelChoice>,
        /// One JSON report instead of the table
        #[arg(long)]
        json: bool,
    },
    /// Time every tunable kernel's candidate settings at the model's shapes on this
    /// adapter, keep the fastest that match the CPU reference, for train, bench and selftest
    Tune {
        #[command(flatten)]
        adapter: AdapterArgs,
        /// The model whose training step is tuned
        #[arg(long, default_value = DEFAULT_MODEL.name, value_parser = model_names())]
        model: String,
        /// Kernel settings to tune from [default: GAN_GPU_KERNELS, else auto]
        #[arg(long, value_enum)]
        kernels: Option<KernelChoice>,
        /// One timing per candidate instead of a median: a quick smoke run
        #[arg(long)]
        quick: bool,
        /// One JSON report instead of the table
        #[arg(long)]
        json: bool,
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
    /// Use the raw generator weights (`generator.*`), not their moving average
    /// (`ema.generator.*`, the default; a checkpoint without one gives its raw weights)
    #[arg(long)]
    raw: bool,
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
#[command(after_help = format!(
    "A run folder belongs to one run: `--out` on a folder holding a run is refused \
     (--force moves its files aside), and a running trainer locks its folder. Only \
     {CHANGEABLE_ON_RESUME} may change on --resume; the other settings must match the run's \
     (leave them out). SIGINT (Ctrl-C) or SIGTERM stops after the current step with a \
     checkpoint, exit status 130 or 143."
))]
struct TrainArgs {
    /// The model to train [default: cgan; `seed` is the corrected Keras GAN without classes]
    /// (fixed for a run)
    #[arg(long, value_parser = model_names())]
    model: Option<String>,
    /// Executor: `auto` uses the wgpu adapter when it is a real GPU, else the CPU executor
    #[arg(long, value_enum, default_value_t = DeviceChoice::Auto)]
    device: DeviceChoice,
    #[command(flatten)]
    adapter: AdapterArgs,
    /// Tune the adapter's kernels before training (`gan-gpu tune`, this run's shapes):
    /// `auto` on a real GPU when the kept table lacks one of this run's kernels
    #[arg(long, value_enum, default_value_t = TuneWhen::Auto)]
    tune: TuneWhen,
    /// The most seconds that tuning before training may take; kernels not reached keep
    /// their defaults until a later run
    #[arg(long, value_name = "S", default_value_t = 60)]
    tune_seconds: u64,
    /// Training iterations, one discriminator and one generator step each [default: the
    /// model's: 50000 for cgan and seed, 10000 for dcgan; with --resume: the run's own]
    /// (may change on --resume)
    #[arg(long, value_name = "N")]
    iterations: Option<u64>,
    /// [default: 100] (fixed for a run)
    #[arg(long)]
    batch_size: Option<usize>,
    /// Dimension of the generator's N(0, 1) input [default: 100] (fixed for a run)
    #[arg(long)]
    noise_dim: Option<usize>,
    /// Adam learning rate, both networks [default: 0.0002] (fixed for a run)
    #[arg(long)]
    lr: Option<f32>,
    /// [default: 0.5] (fixed for a run)
    #[arg(long)]
    beta1: Option<f32>,
    /// [default: 0.999] (fixed for a run)
    #[arg(long)]
    beta2: Option<f32>,
    /// Seed of the weights, the batches and the noise [default: 0] (fixed for a run)
    #[arg(long)]
    seed: Option<u64>,
    /// Decay of the moving average of the generator's weights, updated every step with the
    /// warm-up min(decay, (1+t)/(10+t)); `sample`, `eval` and the exports use it unless given
    /// `--raw`. 0: none [default: 0.999] (fixed for a run)
    #[arg(long)]
    ema_decay: Option<f32>,
    /// Run folder [default: runs/<timestamp>]
    #[arg(long, value_name = "DIR")]
    out: Option<PathBuf>,
    /// With --out: start over in a folder that holds a run, moving its files into a
    /// replaced-<time> folder inside it (nothing is deleted)
    #[arg(long, conflicts_with = "resume")]
    force: bool,
    /// Losses to loss.csv and the progress line every N iterations [default: 100] (may
    /// change on --resume)
    #[arg(long, value_name = "N")]
    log_every: Option<u64>,
    /// An 8x8 sample grid every N iterations [default: 500] (may change on --resume)
    #[arg(long, value_name = "N")]
    sample_every: Option<u64>,
    /// checkpoint.safetensors every N iterations, and at the end [default: 5000] (may
    /// change on --resume)
    #[arg(long, value_name = "N")]
    checkpoint_every: Option<u64>,
    /// FID and class statistics of the generator every N iterations, into loss.csv
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    eval_every: Option<u64>,
    /// Generated images per --eval-every evaluation (FID needs at least 2)
    #[arg(long, default_value_t = 2_000, value_name = "N", value_parser = at_least_two)]
    eval_count: usize,
    /// Classifier weights for --eval-every [default: the user's cache folder]
    #[arg(long, value_name = "FILE")]
    classifier: Option<PathBuf>,
    /// Continue the run in DIR from its checkpoint, to its own target or --iterations
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
            raw,
            device,
            adapter,
        } => {
            let digits = digit.as_deref().map(Digits::parse).transpose()?;
            let runtime = guarded(Runtime::new(device, adapter.request()));
            let weights = Weights::from_raw_flag(raw);
            let used = sample_command(&runtime, &checkpoint, count, seed, digits, weights, &out)?;
            println!(
                "wrote {count} digits to {}, drawn with {used}",
                out.display()
            );
        }
        Command::ExportWeb {
            checkpoint,
            out,
            grid,
            raw,
            adapter,
        } => {
            let runtime = Runtime::for_browser(adapter.request());
            let weights = Weights::from_raw_flag(raw);
            println!(
                "{}",
                export_web(&runtime, &checkpoint, &out, grid, weights)?.describe(&out)
            );
        }
        Command::ExportOnnx {
            checkpoint,
            out,
            batch,
            raw,
        } => {
            let summary = export_onnx(&checkpoint, &out, batch, Weights::from_raw_flag(raw))?;
            println!("{}", summary.describe(&out))
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
            let (acc, tested) =
                train_and_save(&runtime, &data.dir(), &path, &mut |done, total| {
                    bar.set_length(total);
                    bar.set_position(done);
                })?;
            bar.finish_and_clear();
            eprintln!("{}", runtime.describe()?);
            println!(
                "test accuracy {:.2}% on {tested} images; weights in {}",
                100.0 * acc,
                path.display()
            );
        }
        Command::Eval(args) => {
            args.selftest.apply();
            run_eval(args)?
        }
        Command::Plot { run, out } => {
            let out = match (run.as_slice(), out) {
                ([one], out) => gan_gpu::train::plot::plot_run(one, out.as_deref())?,
                (runs, Some(out)) => {
                    gan_gpu::train::plot::plot_runs(runs, &out)?;
                    out
                }
                (_, None) => anyhow::bail!(
                    "--out: {} runs to draw on one chart; say which file to write",
                    run.len()
                ),
            };
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
            let opts = BenchOptions {
                quick,
                gpu: device != BenchDevice::Cpu,
                cpu: device != BenchDevice::Gpu,
                model: kind(&model)?,
            };
            bench::command(gpu.as_ref(), &opts, json)?
        }
        Command::Plan {
            adapter,
            model,
            kernels,
            json,
        } => {
            let runtime = Runtime::new(DeviceChoice::Gpu, adapter.request()).with_kernels(kernels);
            bench::plan::command(&runtime, kind(&model)?, json)?
        }
        Command::Tune {
            adapter,
            model,
            kernels,
            quick,
            json,
        } => {
            let runtime = Runtime::new(DeviceChoice::Gpu, adapter.request()).with_kernels(kernels);
            gan_gpu::tune::command(&runtime, kind(&model)?, quick, json)?
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
        Command::Dataset { data } => print!("{}", gan_gpu::data::summary(&data.dir())?),
    }
    Ok(())
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
            weights: Weights::from_raw_flag(args.raw),
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
    let flags = ConfigFlags {
        iterations: args.iterations,
        log_every: args.log_every,
        sample_every: args.sample_every,
        checkpoint_every: args.checkpoint_every,
        model: args.model.clone(),
        batch_size: args.batch_size,
        noise_dim: args.noise_dim,
        lr: args.lr,
        beta1: args.beta1,
        beta2: args.beta2,
        seed: args.seed,
        ema_decay: args.ema_decay,
    };
    let (out, start) = match (&args.resume, &args.out) {
        (Some(dir), _) => (dir.clone(), Start::Resume(flags)),
        (None, out) => {
            let dir = out.clone().unwrap_or_else(|| {
                let stamp = chrono::Local::now().format("%Y-%m-%d_%H-%M-%S");
                PathBuf::from("runs").join(stamp.to_string())
            });
            let config = flags.new_run();
            (
                dir,
                Start::New {
                    config,
                    replace: args.force,
                },
            )
        }
    };
    let stop = Arc::new(AtomicBool::new(false));
    let opts = TrainOptions {
        start,
        data_dir: args.data.dir(),
        out: out.clone(),
        stop: Arc::clone(&stop),
        quiet: false,
        tune: (args.tune, args.tune_seconds),
    };
    // The folder and the settings first: refusing them must not wait for the classifier.
    let run = OpenRun::open(&opts)?;
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
    // From here on the first SIGINT or SIGTERM ends the run after a step, with a checkpoint.
    let signals = StopSignals::install(stop)?;
    let report = run.train(&runtime, &opts, eval.as_mut())?;
    if report.stopped_early {
        println!(
            "stopped by {} at iteration {}, checkpoint written; continue with \
             `gan-gpu train --resume {}`",
            signals.name(),
            report.last_iteration,
            out.display()
        );
        std::process::exit(signals.exit_status().unwrap_or(1));
    }
    println!(
        "finished at iteration {}; run folder {} (loss.csv, samples/, checkpoint.safetensors)",
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

/// `--eval-count`: an FID needs at least two images for its covariance.
fn at_least_two(value: &str) -> std::result::Result<usize, String> {
    match value.parse::<usize>() {
        Ok(n) if n >= 2 => Ok(n),
        Ok(n) => Err(format!("{n} images give no FID; give at least 2")),
        Err(e) => Err(e.to_string()),
    }
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
