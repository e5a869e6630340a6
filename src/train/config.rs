//! Every number of a run: saved in `config.json` and in each checkpoint, checked before
//! anything is allocated.

use serde::{Deserialize, Serialize};

use crate::cpu::AdamConfig;
use crate::error::{Error, Result};
use crate::model::{ModelConfig, ModelKind, kind, sample::SAMPLE_GRID};

fn default_model() -> String {
    crate::model::MODELS[0].name.to_string()
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
    /// The model (`--model`); runs from before models had names are the default one.
    #[serde(default = "default_model")]
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
        if !(0.0..1.0).contains(&self.ema_decay) {
            return bad("--ema-decay must lie in [0, 1) (0 turns the moving average off)");
        }
        Ok(())
    }
}
