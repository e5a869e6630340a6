//! The training loop: a model's step on the runtime's executor, with the run folder,
//! loss.csv, sample grids, in-training evaluation, checkpoints, resume and stop signals.

pub mod config;
pub mod log;
pub mod open;
pub mod plot;
pub mod run_dir;
pub mod signals;
pub mod state;

use std::fs::OpenOptions;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use rand::SeedableRng;

use crate::data::{Split, load_mnist};
use crate::error::{Error, Result};
use crate::eval::classifier::{ClassifierConfig, ClassifierRunner};
use crate::eval::fid::Gaussian;
use crate::eval::quality::quality;
use crate::graph::runtime::Runtime;
use crate::graph::{Buf, Dataset, RandomStreams};
use crate::io::atomic::write_atomically;
use crate::io::checkpoint::save_checkpoint;
use crate::limits::{bytes_for, check_memory};
use crate::model::classifier::{CLASSES, FEATURES};
use crate::model::sample::{Digits, SAMPLE_GRID, Sampler};
use crate::model::{IMAGE_SIDE, Model, PIXELS};
use crate::tune::TuneWhen;

pub use config::{ConfigFlags, TrainConfig};
pub use log::{LossRow, LossSchema};
pub use open::OpenRun;
pub use run_dir::RunDir;

/// How a run begins.
#[derive(Debug, Clone)]
pub enum Start {
    /// A new run with `config`. A folder that already holds a run is refused, or with
    /// `replace` (`--force`) its run's files are moved aside into a `replaced-*` folder.
    New { config: TrainConfig, replace: bool },
    /// Continue the folder's run from its checkpoint, with the flags given
    /// (see [`ConfigFlags::resumed`]).
    Resume(ConfigFlags),
}

impl Start {
    /// A new run in a folder that holds none.
    pub fn new(config: TrainConfig) -> Self {
        Start::New {
            config,
            replace: false,
        }
    }
}

/// What a caller needs to drive training.
pub struct TrainOptions {
    pub start: Start,
    pub data_dir: PathBuf,
    pub out: PathBuf,
    /// Set (e.g. by [`signals::StopSignals`]) to stop after the current step with a
    /// checkpoint.
    pub stop: Arc<AtomicBool>,
    /// Show a progress bar (on a terminal) or print plain log lines.
    pub quiet: bool,
    /// Whether to tune the adapter's kernels first ([`crate::tune::before_training`]),
    /// and for how many seconds at most.
    pub tune: (TuneWhen, u64),
}

/// What `--eval-every` needs: the classifier (on the training runtime) and the test
/// set's feature Gaussian.
pub struct InTrainingEval {
    pub every: u64,
    /// Generated images per evaluation.
    pub count: usize,
    pub classifier: ClassifierRunner,
    pub reference: Gaussian,
}

impl InTrainingEval {
    /// The classifier at `classifier` (trained there as `config` says, with `progress`, on
    /// first use) on `runtime`, and the test set's reference; also returns the accuracy
    /// when it trained.
    pub fn prepare(
        runtime: &Runtime,
        classifier: &Path,
        data_dir: &Path,
        config: &ClassifierConfig,
        (every, count): (u64, usize),
        progress: &mut dyn FnMut(u64, u64),
    ) -> Result<(Self, Option<f64>)> {
        if every == 0 {
            return Err(Error::InvalidArgument(
                "--eval-every 0: give the iterations between evaluations, at least 1".into(),
            ));
        }
        if count < 2 {
            return Err(Error::InvalidArgument(format!(
                "--eval-count {count}: FID needs at least 2 generated images"
            )));
        }
        // Each evaluation holds its images, their features and class probabilities.
        let per_image = (PIXELS + FEATURES + CLASSES) * size_of::<f32>();
        check_memory(
            || format!("--eval-count {count}"),
            &format!("evaluating {count} generated digits"),
            bytes_for(count as u64, per_image as u64),
        )?;
        let (weights, trained) = crate::eval::classifier::ensure_classifier(
            runtime, classifier, data_dir, config, progress,
        )?;
        let mut runner = ClassifierRunner::new(runtime, &weights)?;
        let test = load_mnist(data_dir, Split::Test)?;
        let reference = crate::eval::quality::reference(&mut runner, &test)?;
        let eval = InTrainingEval {
            every,
            count,
            classifier: runner,
            reference,
        };
        Ok((eval, trained))
    }
}

#[derive(Debug)]
pub struct TrainReport {
    pub executor: String,
    pub rows: Vec<LossRow>,
    pub iterations_run: u64,
    pub last_iteration: u64,
    pub stopped_early: bool,
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> Error + '_ {
    move |e| Error::io(path, e)
}

/// The sample grid of a run: how many digits, per row, and their labels. A
/// class-conditional model draws one row per class.
pub fn sample_grid(model: &Model) -> Result<(usize, usize, Option<Vec<u32>>)> {
    match model.kind.classes {
        None => Ok((SAMPLE_GRID, 8, None)),
        Some(classes) => {
            let (labels, columns) = Digits::All.labels(classes * classes, classes)?;
            Ok((classes * classes, columns, Some(labels)))
        }
    }
}

/// The fixed noise behind every sample grid of a run (a stream no training step uses).
pub fn sample_noise(cfg: &TrainConfig, count: usize) -> Vec<f32> {
    crate::cpu::normal_noise(cfg.seed, u64::MAX, count * cfg.noise_dim)
}

/// Labels for `count` generated images of a class-conditional model: every class in
/// turn, so a grid of width `classes` has one class per column. `None` otherwise.
pub fn cycling_labels(model: &Model, count: usize) -> Option<Vec<u32>> {
    let classes = model.kind.classes?;
    Some((0..count).map(|i| (i % classes) as u32).collect())
}

/// Trains the model of `opts` on `runtime`'s executor and returns the logged rows:
/// [`OpenRun::open`], then [`OpenRun::train`].
pub fn train(
    runtime: &Runtime,
    opts: &TrainOptions,
    eval: Option<&mut InTrainingEval>,
) -> Result<TrainReport> {
    OpenRun::open(opts)?.train(runtime, opts, eval)
}

impl OpenRun {
    /// Trains the opened run (see [`train`]); the folder stays locked until it returns.
    pub fn train(
        self,
        runtime: &Runtime,
        opts: &TrainOptions,
        eval: Option<&mut InTrainingEval>,
    ) -> Result<TrainReport> {
        run_loop(&self, runtime, opts, eval)
    }
}

fn run_loop(
    open: &OpenRun,
    runtime: &Runtime,
    opts: &TrainOptions,
    mut eval: Option<&mut InTrainingEval>,
) -> Result<TrainReport> {
    let (run, cfg) = (&open.run, &open.config);
    std::fs::create_dir_all(run.samples()).map_err(io_err(&run.root))?;

    let kind = cfg.model_kind()?;
    let mnist = load_mnist(&opts.data_dir, Split::Train)?;
    let dataset = Arc::new(Dataset {
        bytes: mnist.images,
        rows: mnist.count,
        row_len: PIXELS,
        labels: kind.classes.map(|_| mnist.labels),
    });
    let model = kind.build(&cfg.model_config())?;
    if let Some((ckpt, _)) = &open.resumed {
        state::check_resumable(&model, &run.checkpoint(), ckpt)?;
    }
    let step = model.train_step()?;
    let (tune_when, tune_seconds) = opts.tune;
    crate::tune::before_training(runtime, &model, &step, tune_when, tune_seconds, opts.quiet)?;
    let mut exec = runtime.executor(
        &model.graph,
        model.optimizers(),
        RandomStreams { seed: cfg.seed },
        Some(dataset),
    )?;
    let executor_line = runtime.describe()?;
    if !opts.quiet {
        eprintln!("{executor_line}");
    }
    let plan = exec.compile(&step)?;
    let sampler = Sampler::compile(exec.as_mut(), &model.graph, &model.sampler)?;
    let ema_sampler = match &model.ema {
        Some(ema) => Some(Sampler::compile(exec.as_mut(), &model.graph, &ema.sampler)?),
        None => None,
    };

    let schema = LossSchema::of(&model, eval.is_some());
    let config_json = serde_json::to_string_pretty(cfg).unwrap_or_default();
    let start = match &open.resumed {
        Some((ckpt, _)) => {
            let restored = state::restore(exec.as_mut(), &model, &run.checkpoint(), ckpt)?;
            if restored.ema_started && !opts.quiet {
                eprintln!(
                    "{} holds no moving average of the generator; it starts from the weights \
                     of iteration {}",
                    run.checkpoint().display(),
                    restored.next_iteration
                );
            }
            restored.next_iteration
        }
        None => {
            let mut rng = rand::rngs::StdRng::seed_from_u64(cfg.seed);
            for (id, values) in model.graph.init_params(&mut rng) {
                exec.write(Buf::Value(id), &values)?;
            }
            write_atomically(&run.losses(), &[schema.header().as_bytes(), b"\n"])?;
            0
        }
    };
    // The columns were fixed when the run started; a resumed run keeps them.
    let text = log::read_loss_csv(&run.losses())?;
    let header = text.lines().next().unwrap_or_default();
    // A run from before the moving average gains its columns (below).
    let widen = match LossSchema::from_header(&model, header) {
        Some(found) if found.eval == schema.eval && (found.ema == schema.ema || !found.ema) => {
            found.ema != schema.ema
        }
        _ => {
            return Err(Error::InvalidArgument(format!(
                "{} has the columns {header:?}, this run writes {:?}{}",
                run.losses().display(),
                schema.header(),
                if eval.is_some() {
                    " (was it started without --eval-every? then resume it without that flag)"
                } else {
                    ""
                }
            )));
        }
    };
    // Rows logged after the checkpoint will be logged again.
    let keep = log::rows_through(&run.losses(), &text, start)?;
    let seconds_before = log::seconds_so_far(&run.losses(), &text[..keep])?;
    if widen {
        write_atomically(
            &run.losses(),
            &[log::widened(&text[..keep], &schema).as_bytes()],
        )?;
        if !opts.quiet {
            eprintln!(
                "{} gains the moving average's columns (empty through iteration {start})",
                run.losses().display()
            );
        }
    }
    let mut csv = OpenOptions::new()
        .append(true)
        .open(run.losses())
        .map_err(io_err(&run.losses()))?;
    if !widen && keep < text.len() {
        csv.set_len(keep as u64).map_err(io_err(&run.losses()))?;
    }
    // A resumed run may have a new length or new intervals.
    write_atomically(&run.config(), &[config_json.as_bytes()])?;
    let logged: Vec<Buf> = model
        .logged_nodes()
        .into_iter()
        .map(|n| Buf::Value(model.graph.storage(n)))
        .collect();
    let (grid_count, grid_columns, grid_labels) = sample_grid(&model)?;
    let grid_noise = sample_noise(cfg, grid_count);

    let progress = log::Progress::new(&model, start, cfg.iterations, opts.quiet);
    let clock = Instant::now();
    let mut rows = Vec::new();
    let mut stopped_early = false;
    let mut iteration = start;
    let mut requested_at = std::collections::VecDeque::new();
    while iteration < cfg.iterations {
        exec.run(plan, iteration)?;
        let done = iteration + 1;
        let last = done == cfg.iterations;
        let stop = opts.stop.load(Ordering::SeqCst);
        if stop && !opts.quiet {
            eprintln!(
                "\nstopping after iteration {done}, with a checkpoint (signal again to abort)"
            );
        }
        let checkpoint_due = done % cfg.checkpoint_every == 0 || last || stop;
        let eval_due = eval.as_ref().is_some_and(|e| done % e.every == 0 || last);
        if done % cfg.log_every == 0 || checkpoint_due || eval_due {
            // Copied back without waiting: the GPU keeps running the next steps.
            exec.snapshot(iteration, &logged)?;
            requested_at.push_back(seconds_before + clock.elapsed().as_secs_f64());
        }
        let mut figures = |ev: &mut InTrainingEval, sampler: &Sampler| -> Result<_> {
            let noise = crate::cpu::normal_noise(cfg.seed, u64::MAX - 1, ev.count * cfg.noise_dim);
            let labels = cycling_labels(&model, ev.count);
            let images = sampler.generate(exec.as_mut(), &noise, labels.as_deref())?;
            let q = quality(
                "generator",
                &mut ev.classifier,
                &images,
                labels.as_deref(),
                &ev.reference,
            )?;
            Ok((q.fid, q.classes.entropy, q.classes.confident_fraction))
        };
        let (quality, ema_quality) = match eval.as_deref_mut() {
            Some(ev) if eval_due => {
                let raw = figures(ev, &sampler)?;
                let averaged = match (&ema_sampler, schema.ema) {
                    (Some(s), true) => Some(figures(ev, s)?),
                    _ => None,
                };
                (Some(raw), averaged)
            }
            _ => (None, None),
        };
        // Before a checkpoint, every logged loss must have been checked.
        for snap in exec.take_snapshots(checkpoint_due || eval_due)? {
            let seconds = requested_at.pop_front().unwrap_or_default();
            let mut row = LossRow::from_snapshot(&model, &snap, seconds)?;
            if snap.tag == iteration {
                row.quality = row.quality.or(quality);
                row.ema_quality = row.ema_quality.or(ema_quality);
            }
            // One write per row, so a crash cuts at most the last row short.
            let line = schema.line(&row) + "\n";
            csv.write_all(line.as_bytes())
                .map_err(io_err(&run.losses()))?;
            progress.log(&row);
            rows.push(row);
        }
        if done % cfg.sample_every == 0 || last {
            let grids = [(Some(&sampler), run.sample(done))]
                .into_iter()
                .chain([(ema_sampler.as_ref(), run.ema_sample(done))]);
            for (sampler, path) in grids {
                let Some(sampler) = sampler else { continue };
                let images =
                    sampler.generate(exec.as_mut(), &grid_noise, grid_labels.as_deref())?;
                crate::io::images::write_grid_png(
                    &path,
                    &images,
                    grid_count,
                    IMAGE_SIDE,
                    grid_columns,
                    2,
                )?;
            }
        }
        if checkpoint_due {
            save_checkpoint(
                &run.checkpoint(),
                &state::checkpoint_of(exec.as_mut(), &model, cfg, done)?,
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
