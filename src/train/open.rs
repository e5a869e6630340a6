//! Opening a run folder for training, with every cheap check before any expensive work:
//! the settings, what they would allocate, the folder's lock, and whether it already
//! holds a run (refused, or moved aside) or a checkpoint to resume.

use std::path::PathBuf;

use crate::error::{Error, Result};
use crate::io::atomic::remove_stale_temporaries;
use crate::io::checkpoint::{Checkpoint, load_checkpoint};
use crate::train::config::TrainConfig;
use crate::train::run_dir::{RunDir, RunLock};
use crate::train::{Start, TrainOptions, state};

/// A run folder locked for one trainer, with the run's settings decided.
pub struct OpenRun {
    pub(crate) run: RunDir,
    pub(crate) config: TrainConfig,
    /// The checkpoint resumed from, and the iteration it was written after.
    pub(crate) resumed: Option<(Checkpoint, u64)>,
    /// Where `--force` moved the old run's files.
    pub moved_aside: Option<PathBuf>,
    /// Temporary files that killed writers had left, now removed.
    pub removed_temporaries: Vec<PathBuf>,
    _lock: RunLock,
}

impl OpenRun {
    /// Checks `opts` and takes the run folder; nothing expensive (data, devices, the
    /// classifier) has been touched when this fails.
    pub fn open(opts: &TrainOptions) -> Result<Self> {
        let run = RunDir {
            root: opts.out.clone(),
        };
        let folder_error = |problem: String| Error::RunFolder {
            dir: run.root.clone(),
            problem,
        };
        let mut moved_aside = None;
        let (lock, config, resumed) = match &opts.start {
            Start::New { config, replace } => {
                config.validate()?;
                config.check_memory()?;
                std::fs::create_dir_all(&run.root).map_err(|e| Error::io(&run.root, e))?;
                let lock = run.lock()?;
                if *replace {
                    moved_aside = run.move_aside()?;
                } else {
                    run.check_empty()?;
                }
                (lock, config.clone(), None)
            }
            Start::Resume(flags) => {
                if !run.root.is_dir() {
                    return Err(folder_error(format!(
                        "no such folder, so nothing to resume (looked for {})",
                        run.checkpoint().display()
                    )));
                }
                let lock = run.lock()?;
                let path = run.checkpoint();
                let ckpt = load_checkpoint(&path)?;
                let config = flags.resumed(&state::saved_config(&path, &ckpt)?)?;
                config.validate()?;
                config.check_memory()?;
                let at = state::checkpoint_iteration(&path, &ckpt)?;
                if config.iterations <= at {
                    return Err(folder_error(match flags.iterations {
                        None => format!(
                            "the run has reached its target of {at} iterations; give \
                             --iterations N (more than {at}) to train further"
                        ),
                        Some(n) => format!(
                            "its checkpoint is at iteration {at}; --iterations {n} must be \
                             more than that to train further"
                        ),
                    }));
                }
                (lock, config, Some((ckpt, at)))
            }
        };
        // Only this process writes here now: what killed writers left can go.
        let mut removed_temporaries = remove_stale_temporaries(&run.root)?;
        removed_temporaries.extend(remove_stale_temporaries(&run.samples())?);
        if !opts.quiet {
            if let Some(aside) = &moved_aside {
                eprintln!("moved the folder's old run to {}", aside.display());
            }
            for temp in &removed_temporaries {
                eprintln!(
                    "removed {}, left by a writer that was killed",
                    temp.display()
                );
            }
        }
        Ok(OpenRun {
            run,
            config,
            resumed,
            moved_aside,
            removed_temporaries,
            _lock: lock,
        })
    }

    /// The settings the run trains with.
    pub fn config(&self) -> &TrainConfig {
        &self.config
    }
}
