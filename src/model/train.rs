//! The training loop: executor choice, the run folder, logging, samples, checkpoints,
//! resume and Ctrl-C.

use std::fs::OpenOptions;
use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use rand::SeedableRng;
use serde::{Deserialize, Serialize};

use crate::cpu::AdamConfig;
use crate::data::{Split, load_mnist};
use crate::error::{Error, Result};
use crate::eval::fid::Gaussian;
use crate::fsutil::write_atomically;
use crate::gpu::{AdapterRequest, GpuContext};
use crate::graph::cpu_exec::CpuExecutor;
use crate::graph::gpu_exec::GpuExecutor;
use crate::graph::{Buf, Dataset, Executor, Graph, RandomStreams, Snapshot};
use crate::model::checkpoint::{
    Checkpoint, NamedTensor, check_tensors, load_checkpoint, save_checkpoint,
};
use crate::model::classifier::ClassifierWeights;
use crate::model::evaluate::quality;
use crate::model::gan::{D_OPTIMIZER, G_OPTIMIZER, Gan, PIXELS};
use crate::model::sample::{SAMPLE_GRID, generate};

/// Every number of a run; saved in `config.json` and in each checkpoint.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainConfig {
    pub iterations: u64,
    pub batch_size: usize,
    pub noise_dim: usize,
    pub lr: f32,
    pub beta1: f32,
    pub beta2: f32,
    pub epsilon: f32,
    pub seed: u64,
    pub log_every: u64,
    pub sample_every: u64,
    pub checkpoint_every: u64,
}

impl Default for TrainConfig {
    fn default() -> Self {
        TrainConfig {
            iterations: 50_000,
            batch_size: 100,
            noise_dim: 100,
            lr: 2e-4,
            beta1: 0.5,
            beta2: 0.999,
            epsilon: 1e-7,
            seed: 0,
            log_every: 100,
            sample_every: 500,
            checkpoint_every: 5_000,
        }
    }
}

impl TrainConfig {
    pub fn adam(&self) -> AdamConfig {
        AdamConfig {
            lr: self.lr,
            beta1: self.beta1,
            beta2: self.beta2,
            epsilon: self.epsilon,
        }
    }

    pub fn validate(&self) -> Result<()> {
        let bad = |m: &str| Err(Error::InvalidArgument(m.to_string()));
        if self.batch_size == 0 || self.noise_dim == 0 {
            return bad("--batch-size and the noise dimension must be at least 1");
        }
        if self.log_every == 0 || self.sample_every == 0 || self.checkpoint_every == 0 {
            return bad("--log-every, --sample-every and --checkpoint-every must be at least 1");
        }
        if !(self.lr > 0.0 && self.lr.is_finite()) {
            return bad("--lr must be a positive number");
        }
        if !(0.0..1.0).contains(&self.beta1) || !(0.0..1.0).contains(&self.beta2) {
            return bad("--beta1 and --beta2 must lie in [0, 1)");
        }
        Ok(())
    }
}

/// Which executor runs the step.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum DeviceChoice {
    /// The wgpu adapter when it is a real GPU, else the CPU executor
    #[default]
    Auto,
    Gpu,
    Cpu,
}

/// An executor for `gan`, chosen as `device` says, with a line saying which and why.
/// `adams[g]` configures optimizer group `g`.
pub fn make_executor(
    graph: &Graph,
    adams: Vec<AdamConfig>,
    streams: RandomStreams,
    device: DeviceChoice,
    adapter: &AdapterRequest,
    dataset: Option<Arc<Dataset>>,
) -> Result<(Box<dyn Executor>, String)> {
    let cpu = |why: String| -> (Box<dyn Executor>, String) {
        let exec = CpuExecutor::new(graph, adams.clone(), dataset.clone(), streams);
        (Box::new(exec), format!("executor: cpu ({why})"))
    };
    match device {
        DeviceChoice::Cpu => Ok(cpu("--device cpu".into())),
        DeviceChoice::Gpu | DeviceChoice::Auto => {
            let ctx = match GpuContext::new(adapter) {
                Ok(ctx) => Arc::new(ctx),
                Err(e) if device == DeviceChoice::Auto => {
                    return Ok(cpu(format!("no usable GPU adapter: {e}")));
                }
                Err(e) => return Err(e),
            };
            if device == DeviceChoice::Auto && ctx.is_software() {
                return Ok(cpu(format!(
                    "the only adapter, {}, is a software rasterizer, far slower than the CPU \
                     executor; --device gpu forces it",
                    ctx.info.name
                )));
            }
            crate::selftest::first_use::protect(&ctx)?;
            let line = format!("executor: gpu on {}", ctx.describe());
            let exec = GpuExecutor::new(ctx, graph, adams.clone(), dataset.clone(), streams)?;
            Ok((Box::new(exec), line))
        }
    }
}

/// The two Adam configurations, indexed by optimizer group.
fn gan_optimizers(cfg: &TrainConfig) -> Vec<AdamConfig> {
    let mut adams = vec![AdamConfig::default(); 2];
    adams[D_OPTIMIZER] = cfg.adam();
    adams[G_OPTIMIZER] = cfg.adam();
    adams
}

/// Where a run keeps its files.
pub struct RunDir {
    pub root: PathBuf,
}

impl RunDir {
    pub fn checkpoint(&self) -> PathBuf {
        self.root.join("checkpoint.safetensors")
    }
    pub fn config(&self) -> PathBuf {
        self.root.join("config.json")
    }
    pub fn losses(&self) -> PathBuf {
        self.root.join("loss.csv")
    }
    pub fn sample(&self, iteration: u64) -> PathBuf {
        self.root
            .join("samples")
            .join(format!("iter_{iteration:06}.png"))
    }
}

/// What a caller needs to drive training.
pub struct TrainOptions {
    pub config: TrainConfig,
    pub device: DeviceChoice,
    pub adapter: AdapterRequest,
    pub data_dir: PathBuf,
    pub out: PathBuf,
    /// Continue the run in `out` from its checkpoint.
    pub resume: bool,
    /// Set (e.g. by Ctrl-C) to stop after the current step with a checkpoint.
    pub stop: Arc<AtomicBool>,
    /// Show a progress bar (on a terminal) or print plain log lines.
    pub quiet: bool,
    /// Sample quality measured during training (`--eval-every`).
    pub eval: Option<InTrainingEval>,
}

/// What `--eval-every` needs: the classifier and the test set's feature Gaussian.
pub struct InTrainingEval {
    pub every: u64,
    /// Generated images per evaluation.
    pub count: usize,
    pub classifier: ClassifierWeights,
    pub reference: Gaussian,
}

/// One row of `loss.csv`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LossRow {
    pub iteration: u64,
    pub d_loss_real: f32,
    pub d_loss_fake: f32,
    pub g_loss: f32,
    pub d_real_mean: f32,
    pub d_fake_mean: f32,
    pub seconds: f64,
    /// FID, class entropy and confident fraction, at `--eval-every` points.
    pub quality: Option<(f64, f64, f64)>,
}

#[derive(Debug)]
pub struct TrainReport {
    pub executor: String,
    pub rows: Vec<LossRow>,
    pub iterations_run: u64,
    pub last_iteration: u64,
    pub stopped_early: bool,
}

const LOSS_HEADER: &str =
    "iteration,d_loss_real,d_loss_fake,g_loss,d_real_mean,d_fake_mean,seconds";

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> Error + '_ {
    move |e| Error::io(path, e)
}

/// Trains the GAN as `opts` says and returns the logged losses.
pub fn train(opts: &TrainOptions) -> Result<TrainReport> {
    let run = RunDir {
        root: opts.out.clone(),
    };
    let mut cfg = opts.config.clone();
    let resumed = if opts.resume {
        let ckpt = load_checkpoint(&run.checkpoint())?;
        let saved: TrainConfig = serde_json::from_str(
            ckpt.metadata_value(&run.checkpoint(), "config")?,
        )
        .map_err(|e| Error::Checkpoint {
            path: run.checkpoint(),
            problem: format!("config metadata is not a gan-gpu training config: {e}"),
        })?;
        // A resumed run keeps every setting but may be given a new length.
        cfg = TrainConfig {
            iterations: cfg.iterations,
            ..saved
        };
        Some(ckpt)
    } else {
        None
    };
    cfg.validate()?;
    std::fs::create_dir_all(run.root.join("samples")).map_err(io_err(&run.root))?;

    let mnist = load_mnist(&opts.data_dir, Split::Train)?;
    let dataset = Arc::new(Dataset {
        bytes: mnist.images,
        rows: mnist.count,
        row_len: PIXELS,
        labels: None,
    });
    let gan = Gan::new(cfg.batch_size, cfg.noise_dim)?;
    if let Some(ckpt) = &resumed {
        check_tensors(&run.checkpoint(), ckpt, &expected_tensors(&gan))?;
    }
    let (mut exec, executor_line) = make_executor(
        &gan.graph,
        gan_optimizers(&cfg),
        RandomStreams { seed: cfg.seed },
        opts.device,
        &opts.adapter,
        Some(dataset),
    )?;
    if !opts.quiet {
        eprintln!("{executor_line}");
    }
    let plan_instrs = gan.train_step()?;
    let plan = exec.compile(&plan_instrs)?;

    let start = match &resumed {
        Some(ckpt) => restore(exec.as_mut(), &gan, &run.checkpoint(), ckpt)?,
        None => {
            let mut rng = rand::rngs::StdRng::seed_from_u64(cfg.seed);
            for (id, values) in gan.graph.init_params(&mut rng) {
                exec.write(Buf::Value(id), &values)?;
            }
            let config_json = serde_json::to_string_pretty(&cfg).unwrap_or_default();
            write_atomically(&run.config(), &[config_json.as_bytes()])?;
            let header = if opts.eval.is_some() {
                format!("{LOSS_HEADER}{EVAL_HEADER}\n")
            } else {
                format!("{LOSS_HEADER}\n")
            };
            std::fs::write(run.losses(), header).map_err(io_err(&run.losses()))?;
            0
        }
    };
    // The columns were fixed when the run started; a resumed run keeps them.
    let eval_columns = std::fs::read_to_string(run.losses())
        .map_err(io_err(&run.losses()))?
        .lines()
        .next()
        .is_some_and(|header| header.ends_with(EVAL_HEADER));
    if opts.eval.is_some() && !eval_columns {
        return Err(Error::InvalidArgument(format!(
            "{} was started without --eval-every; resume it without that flag",
            run.root.display()
        )));
    }
    let mut csv = OpenOptions::new()
        .append(true)
        .open(run.losses())
        .map_err(io_err(&run.losses()))?;
    let stats = [gan.d_loss_real, gan.d_loss_fake, gan.g_loss];

    let progress = Progress::new(start, cfg.iterations, opts.quiet);
    let clock = Instant::now();
    let mut rows = Vec::new();
    let mut stopped_early = false;
    let mut iteration = start;
    let stat_bufs = stats.map(Buf::Value);
    let mut requested_at = std::collections::VecDeque::new();
    while iteration < cfg.iterations {
        exec.run(plan, iteration)?;
        let done = iteration + 1;
        let last = done == cfg.iterations;
        let stop = opts.stop.load(Ordering::SeqCst);
        let checkpoint_due = done % cfg.checkpoint_every == 0 || last || stop;
        let eval_due = opts
            .eval
            .as_ref()
            .is_some_and(|e| done % e.every == 0 || last);
        if done % cfg.log_every == 0 || checkpoint_due || eval_due {
            // Copied back without waiting: the GPU keeps running the next steps.
            exec.snapshot(iteration, &stat_bufs)?;
            requested_at.push_back(clock.elapsed().as_secs_f64());
        }
        let quality = match &opts.eval {
            Some(ev) if eval_due => {
                let noise =
                    crate::cpu::normal_noise(cfg.seed, u64::MAX - 1, ev.count * cfg.noise_dim);
                let images = generate(exec.as_mut(), &gan, &noise)?;
                let q = quality("generator", &ev.classifier, &images, &ev.reference)?;
                Some((q.fid, q.classes.entropy, q.classes.confident_fraction))
            }
            _ => None,
        };
        // Before a checkpoint, every logged loss must have been checked.
        for snap in exec.take_snapshots(checkpoint_due || eval_due)? {
            let seconds = requested_at.pop_front().unwrap_or_default();
            let mut row = loss_row(&snap, seconds)?;
            if snap.tag == iteration {
                row.quality = row.quality.or(quality);
            }
            writeln!(csv, "{}", csv_line(&row, eval_columns)).map_err(io_err(&run.losses()))?;
            progress.log(&row);
            rows.push(row);
        }
        if done % cfg.sample_every == 0 || last {
            let images = generate(exec.as_mut(), &gan, &sample_noise(&cfg))?;
            crate::model::images::write_grid_png(
                &run.sample(done),
                &images,
                SAMPLE_GRID,
                28,
                8,
                2,
            )?;
        }
        if checkpoint_due {
            save_checkpoint(
                &run.checkpoint(),
                &checkpoint_of(exec.as_mut(), &gan, &cfg, done)?,
            )?;
        }
        progress.tick(done);
        iteration = done;
        if stop && !last {
            stopped_early = true;
            break;
        }
    }
    progress.finish();
    Ok(TrainReport {
        executor: executor_line,
        rows,
        iterations_run: iteration - start,
        last_iteration: iteration,
        stopped_early,
    })
}

/// The fixed noise behind every sample grid of a run (a stream no training step uses).
pub fn sample_noise(cfg: &TrainConfig) -> Vec<f32> {
    crate::cpu::normal_noise(cfg.seed, u64::MAX, SAMPLE_GRID * cfg.noise_dim)
}

/// A `loss.csv` row from a snapshot of the three loss nodes ([loss, mean D output]
/// each), or the error that stops a diverged run.
fn loss_row(snap: &Snapshot, seconds: f64) -> Result<LossRow> {
    let names = ["d_loss_real", "d_loss_fake", "g_loss"];
    for (name, v) in names.iter().zip(&snap.values) {
        for (which, &x) in ["", "mean D output of "].iter().zip(v) {
            if !x.is_finite() {
                return Err(Error::NonFinite {
                    iteration: snap.tag + 1,
                    what: format!("{which}{name}"),
                    value: x,
                });
            }
        }
    }
    let v = &snap.values;
    Ok(LossRow {
        iteration: snap.tag + 1,
        d_loss_real: v[0][0],
        d_loss_fake: v[1][0],
        g_loss: v[2][0],
        d_real_mean: v[0][1],
        d_fake_mean: v[1][1],
        seconds,
        quality: None,
    })
}

fn csv_line(r: &LossRow, eval_columns: bool) -> String {
    let mut line = format!(
        "{},{},{},{},{},{},{:.3}",
        r.iteration,
        r.d_loss_real,
        r.d_loss_fake,
        r.g_loss,
        r.d_real_mean,
        r.d_fake_mean,
        r.seconds
    );
    if eval_columns {
        line += &match r.quality {
            Some((fid, entropy, confident)) => format!(",{fid:.4},{entropy:.4},{confident:.4}"),
            None => ",,,".to_string(),
        };
    }
    line
}

const EVAL_HEADER: &str = ",fid,class_entropy,confident_fraction";

/// Parameters and Adam moments by name, plus what resuming needs in the metadata.
fn checkpoint_of(
    exec: &mut dyn Executor,
    gan: &Gan,
    cfg: &TrainConfig,
    next_iteration: u64,
) -> Result<Checkpoint> {
    let mut tensors = Vec::new();
    for id in gan.params() {
        let node = &gan.graph.nodes[id];
        let (m, v) = exec.read_adam(id)?;
        let data = exec.read(Buf::Value(id))?;
        // Never replace a good checkpoint with diverged weights.
        if let Some(bad) = data.iter().find(|x| !x.is_finite()) {
            return Err(Error::NonFinite {
                iteration: next_iteration - 1,
                what: format!("a weight of {}", node.name),
                value: *bad,
            });
        }
        tensors.push(NamedTensor {
            name: node.name.clone(),
            shape: node.shape.clone(),
            data,
        });
        tensors.push(NamedTensor {
            name: format!("adam_m.{}", node.name),
            shape: node.shape.clone(),
            data: m,
        });
        tensors.push(NamedTensor {
            name: format!("adam_v.{}", node.name),
            shape: node.shape.clone(),
            data: v,
        });
    }
    let mut metadata = std::collections::BTreeMap::new();
    metadata.insert("format".into(), "gan-gpu-checkpoint-v1".into());
    metadata.insert("iteration".into(), next_iteration.to_string());
    metadata.insert("seed".into(), cfg.seed.to_string());
    metadata.insert(
        "config".into(),
        serde_json::to_string(cfg).unwrap_or_default(),
    );
    metadata.insert(
        "layout".into(),
        "Keras layouts: dense kernels (in, out); conv kernels HWIO; transposed-conv kernels \
         HWOI; images NHWC in [-1, 1]. Random state: Philox streams of (seed, iteration)."
            .into(),
    );
    Ok(Checkpoint { tensors, metadata })
}

/// The names and shapes a checkpoint of `gan` holds.
pub fn expected_tensors(gan: &Gan) -> Vec<(String, Vec<usize>)> {
    let mut out = Vec::new();
    for id in gan.params() {
        let node = &gan.graph.nodes[id];
        for prefix in ["", "adam_m.", "adam_v."] {
            out.push((format!("{prefix}{}", node.name), node.shape.clone()));
        }
    }
    out
}

/// Loads a checkpoint already checked with `check_tensors`; returns the next iteration.
fn restore(exec: &mut dyn Executor, gan: &Gan, path: &Path, ckpt: &Checkpoint) -> Result<u64> {
    for id in gan.params() {
        let name = &gan.graph.nodes[id].name;
        let get = |n: String| {
            ckpt.tensor(&n)
                .map(|t| t.data.as_slice())
                .unwrap_or_default()
        };
        exec.write(Buf::Value(id), get(name.clone()))?;
        exec.write_adam(
            id,
            get(format!("adam_m.{name}")),
            get(format!("adam_v.{name}")),
        )?;
    }
    ckpt.metadata_value(path, "iteration")?
        .parse()
        .map_err(|e| Error::Checkpoint {
            path: path.to_path_buf(),
            problem: format!("iteration metadata is not a number: {e}"),
        })
}

/// A progress bar on a terminal, plain lines otherwise.
struct Progress {
    bar: Option<indicatif::ProgressBar>,
    plain: bool,
}

impl Progress {
    fn new(start: u64, total: u64, quiet: bool) -> Self {
        if quiet {
            return Progress {
                bar: None,
                plain: false,
            };
        }
        if !std::io::stderr().is_terminal() {
            return Progress {
                bar: None,
                plain: true,
            };
        }
        let bar = indicatif::ProgressBar::new(total);
        bar.set_style(
            indicatif::ProgressStyle::with_template(
                "{bar:30} {pos}/{len} [{elapsed_precise}<{eta_precise}, {per_sec}] {msg}",
            )
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        bar.set_position(start);
        Progress {
            bar: Some(bar),
            plain: false,
        }
    }

    fn log(&self, r: &LossRow) {
        let line = format!(
            "D loss {:.3}/{:.3}  G loss {:.3}  D(x) {:.3}  D(G(z)) {:.3}",
            r.d_loss_real, r.d_loss_fake, r.g_loss, r.d_real_mean, r.d_fake_mean
        );
        let line = match r.quality {
            Some((fid, entropy, _)) => format!("{line}  FID {fid:.2}  class entropy {entropy:.2}"),
            None => line,
        };
        if let Some(bar) = &self.bar {
            bar.set_message(line);
        } else if self.plain {
            eprintln!("iter {:>6}  {line}  ({:.1}s)", r.iteration, r.seconds);
        }
    }

    fn tick(&self, done: u64) {
        if let Some(bar) = &self.bar {
            bar.set_position(done);
        }
    }

    fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish();
        }
    }
}
