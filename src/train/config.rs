//! Every number of a run: saved in `config.json` and in each checkpoint, checked before
//! anything is allocated.

use serde::{Deserialize, Serialize};

use crate::cpu::AdamConfig;
use crate::error::{Error, Result};
use crate::limits::{check_dimension, graph_bytes, human_bytes, memory_limit};
use crate::model::{ModelConfig, ModelKind, kind, sample::SAMPLE_GRID};

fn default_model() -> String {
    crate::model::DEFAULT_MODEL.name.to_string()
}

/// The model of a config.json or checkpoint written before models had names: there was
/// only the seed's.
fn unnamed_model() -> String {
    crate::model::seed::SEED.name.to_string()
}

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
    /// The model (`--model`); runs from before models had names are `seed`'s.
    #[serde(default = "unnamed_model")]
    pub model: String,
    /// Decay of the moving average of the generator's weights (`--ema-decay`, 0: none);
    /// runs from before it existed get the default, which changes nothing they trained.
    #[serde(default = "default_ema_decay")]
    pub ema_decay: f32,
}

fn default_ema_decay() -> f32 {
    crate::model::DEFAULT_EMA_DECAY
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
            model: default_model(),
            ema_decay: default_ema_decay(),
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

    pub fn model_kind(&self) -> Result<&'static ModelKind> {
        kind(&self.model)
    }

    /// What the model builder needs.
    pub fn model_config(&self) -> ModelConfig {
        ModelConfig {
            batch: self.batch_size,
            noise_dim: self.noise_dim,
            adam: self.adam(),
            sample_batch: SAMPLE_GRID,
            ema_decay: self.ema_decay,
        }
    }

    pub fn validate(&self) -> Result<()> {
        let bad = |m: &str| Err(Error::InvalidArgument(m.to_string()));
        self.model_kind()?;
        if self.iterations == 0 {
            return bad("--iterations 0: nothing to train; give at least 1");
        }
        if self.batch_size == 0 || self.noise_dim == 0 {
            return bad("--batch-size and the noise dimension must be at least 1");
        }
        check_dimension("--batch-size", self.batch_size)?;
        check_dimension("--noise-dim", self.noise_dim)?;
        if self.log_every == 0 || self.sample_every == 0 || self.checkpoint_every == 0 {
            return bad("--log-every, --sample-every and --checkpoint-every must be at least 1");
        }
        if !(self.lr > 0.0 && self.lr.is_finite()) {
            return bad("--lr must be a positive number");
        }
        if !(0.0..1.0).contains(&self.beta1) || !(0.0..1.0).contains(&self.beta2) {
            return bad("--beta1 and --beta2 must lie in [0, 1)");
        }
        if !(0.0..1.0).contains(&self.ema_decay) {
            return bad("--ema-decay must lie in [0, 1) (0 turns the moving average off)");
        }
        Ok(())
    }

    /// Refuses a batch size or noise dimension whose training graph would not fit in
    /// memory (on the CPU executor: values, gradients and both Adam moments of every node),
    /// naming the flag responsible and about the largest value that fits. Cheap: the
    /// graphs are built as shapes, nothing is allocated for their data.
    pub fn check_memory(&self) -> Result<()> {
        let kind = self.model_kind()?;
        let bytes = |batch: usize, noise_dim: usize| -> Result<Option<u64>> {
            let config = TrainConfig {
                batch_size: batch,
                noise_dim,
                ..self.clone()
            };
            Ok(graph_bytes(&kind.build(&config.model_config())?.graph, 4))
        };
        let limit = memory_limit();
        let needed = bytes(self.batch_size, self.noise_dim)?;
        if needed.is_some_and(|n| n <= limit) {
            return Ok(());
        }
        let d = TrainConfig::default();
        // Which flag is to blame, and how far it could go: the bytes are affine in each.
        let (flag, value, at_one, at_two) =
            if bytes(self.batch_size, d.noise_dim)?.is_none_or(|n| n > limit) {
                let one = bytes(1, self.noise_dim)?;
                (
                    "--batch-size",
                    self.batch_size,
                    one,
                    bytes(2, self.noise_dim)?,
                )
            } else {
                let one = bytes(self.batch_size, 1)?;
                (
                    "--noise-dim",
                    self.noise_dim,
                    one,
                    bytes(self.batch_size, 2)?,
                )
            };
        let fits = match (at_one, at_two) {
            (Some(one), Some(two)) if one <= limit && two > one => {
                format!("; at most about {} fits", (limit - one) / (two - one) + 1)
            }
            _ => String::new(),
        };
        let problem = format!(
            "training would need {} for its buffers (values, gradients and Adam moments), \
             more than this machine's {} of memory{fits}",
            needed.map_or_else(|| "more than 2^64 bytes".into(), human_bytes),
            human_bytes(limit)
        );
        Err(Error::TooLarge {
            what: format!("{flag} {value}"),
            problem,
        })
    }
}

/// What `--help` says of `train --resume`: the flags that may differ from the run's.
pub const CHANGEABLE_ON_RESUME: &str = "--iterations, --log-every, --sample-every, \
    --checkpoint-every, the --eval-* flags, --classifier, --device, --adapter, --backend and \
    --data";

/// `train`'s settings as given on the command line (`None`: not given), for a new run or
/// a resumed one.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ConfigFlags {
    pub iterations: Option<u64>,
    pub log_every: Option<u64>,
    pub sample_every: Option<u64>,
    pub checkpoint_every: Option<u64>,
    pub model: Option<String>,
    pub batch_size: Option<usize>,
    pub noise_dim: Option<usize>,
    pub lr: Option<f32>,
    pub beta1: Option<f32>,
    pub beta2: Option<f32>,
    pub seed: Option<u64>,
    pub ema_decay: Option<f32>,
}

impl ConfigFlags {
    /// A new run's config: the flags given, the defaults for the rest (the length is the
    /// model's own default; an unknown model is refused later, by [`TrainConfig::validate`]).
    pub fn new_run(&self) -> TrainConfig {
        let d = TrainConfig::default();
        let model = self.model.clone().unwrap_or(d.model.clone());
        let default_iterations = kind(&model).map_or(d.iterations, |k| k.default_iterations);
        TrainConfig {
            iterations: self.iterations.unwrap_or(default_iterations),
            batch_size: self.batch_size.unwrap_or(d.batch_size),
            noise_dim: self.noise_dim.unwrap_or(d.noise_dim),
            lr: self.lr.unwrap_or(d.lr),
            beta1: self.beta1.unwrap_or(d.beta1),
            beta2: self.beta2.unwrap_or(d.beta2),
            seed: self.seed.unwrap_or(d.seed),
            log_every: self.log_every.unwrap_or(d.log_every),
            sample_every: self.sample_every.unwrap_or(d.sample_every),
            checkpoint_every: self.checkpoint_every.unwrap_or(d.checkpoint_every),
            ema_decay: self.ema_decay.unwrap_or(d.ema_decay),
            model,
            ..d
        }
    }

    /// A resumed run's config: the run's own `saved` settings, with the ones a run may
    /// change (its length and the logging, sampling and checkpoint intervals) taken from
    /// the flags given. A flag that gives any other setting a value other than the run's
    /// is an error naming each such flag: those settings define the run.
    pub fn resumed(&self, saved: &TrainConfig) -> Result<TrainConfig> {
        let mut clashes = Vec::new();
        let mut check = |flag: &str, given: Option<String>, saved: String| {
            if let Some(given) = given.filter(|g| *g != saved) {
                clashes.push((format!("{flag} {given}"), format!("{flag} {saved}")));
            }
        };
        let text = |v: &dyn std::fmt::Display| v.to_string();
        check("--model", self.model.clone(), saved.model.clone());
        check(
            "--batch-size",
            self.batch_size.map(|v| text(&v)),
            text(&saved.batch_size),
        );
        check(
            "--noise-dim",
            self.noise_dim.map(|v| text(&v)),
            text(&saved.noise_dim),
        );
        check("--lr", self.lr.map(|v| text(&v)), text(&saved.lr));
        check("--beta1", self.beta1.map(|v| text(&v)), text(&saved.beta1));
        check("--beta2", self.beta2.map(|v| text(&v)), text(&saved.beta2));
        check("--seed", self.seed.map(|v| text(&v)), text(&saved.seed));
        check(
            "--ema-decay",
            self.ema_decay.map(|v| text(&v)),
            text(&saved.ema_decay),
        );
        if !clashes.is_empty() {
            let (given, runs): (Vec<String>, Vec<String>) = clashes.into_iter().unzip();
            return Err(Error::InvalidArgument(format!(
                "--resume with {}: the run was started with {}, and a run keeps these \
                 settings; leave them out, or start a new run in another folder (only \
                 {CHANGEABLE_ON_RESUME} may change on resume)",
                given.join(" and "),
                runs.join(" and ")
            )));
        }
        Ok(TrainConfig {
            iterations: self.iterations.unwrap_or(saved.iterations),
            log_every: self.log_every.unwrap_or(saved.log_every),
            sample_every: self.sample_every.unwrap_or(saved.sample_every),
            checkpoint_every: self.checkpoint_every.unwrap_or(saved.checkpoint_every),
            ..saved.clone()
        })
    }
}
