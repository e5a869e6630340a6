//! Adam with exactly Keras's update (keras/src/optimizers/adam.py, `update_step`), in f32.

use rayon::prelude::*;

use super::ema::{average_into, ema_weights};
use super::{check_len, par};
use crate::error::{Error, Result};

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AdamConfig {
    pub lr: f32,
    pub beta1: f32,
    pub beta2: f32,
    pub epsilon: f32,
}

/// The DCGAN settings with Keras's epsilon: lr 2e-4, beta1 0.5, beta2 0.999, epsilon 1e-7.
impl Default for AdamConfig {
    fn default() -> Self {
        Self {
            lr: 2e-4,
            beta1: 0.5,
            beta2: 0.999,
            epsilon: 1e-7,
        }
    }
}

impl AdamConfig {
    /// The bias-corrected step size of step t (1-based): lr·sqrt(1 - beta2^t)/(1 - beta1^t),
    /// in f32 in this order. The GPU kernel does not compute it: it receives this very value in
    /// its uniform, so CPU and GPU updates agree bit for bit.
    pub fn alpha(&self, t: u32) -> f32 {
        // beta^t underflows to 0 long before t leaves i32.
        let t = i32::try_from(t).unwrap_or(i32::MAX);
        self.lr * (1.0 - self.beta2.powi(t)).sqrt() / (1.0 - self.beta1.powi(t))
    }

    /// 1 - beta1 as Keras computes it (see `one_minus_beta2`); also passed to the GPU.
    pub fn one_minus_beta1(&self) -> f32 {
        keras_one_minus(self.beta1)
    }

    /// 1 - beta2 as Keras computes it. There beta is a Python float, so 1 - beta is taken in f64
    /// and then rounded to f32: 0.001f32 for beta2 = 0.999, where 1 - 0.999f32 in f32 would be
    /// 0.0009999871, off by 1.3e-5 relative (v = 10 comes out 9.999871). The GPU receives this
    /// value in its uniform, like alpha.
    pub fn one_minus_beta2(&self) -> f32 {
        keras_one_minus(self.beta2)
    }
}

/// The f32 stands for the decimal the user wrote, recovered as its shortest round-trip
/// representation (0.999f32 prints as "0.999"), then 1 - that decimal in f64, rounded to f32.
fn keras_one_minus(beta: f32) -> f32 {
    let decimal: f64 = beta.to_string().parse().unwrap_or(f64::from(beta));
    (1.0 - decimal) as f32
}

/// One step t (1-based) on p, g, m, v (all n): with alpha = `cfg.alpha(t)` and 1 - beta from
/// `cfg.one_minus_beta1/2()`, in f32 and in this order:
/// m += (g - m)(1 - beta1); v += (g² - v)(1 - beta2); p -= (m·alpha)/(sqrt(v) + epsilon).
/// epsilon is added to sqrt of the uncorrected v, after the correction went into alpha; this
/// is Keras's placement, not PyTorch's sqrt(v̂) + epsilon.
pub fn adam_step(
    cfg: &AdamConfig,
    t: u32,
    p: &mut [f32],
    g: &[f32],
    m: &mut [f32],
    v: &mut [f32],
) -> Result<()> {
    adam_ema_step(cfg, t, p, g, m, v, None)
}

/// A moving average of the parameters to step with them: (decay, 0-based step, average), as
/// [`super::ema_step`] takes them.
pub type EmaOf<'a> = Option<(f32, u64, &'a mut [f32])>;

/// [`adam_step`], then, when `ema` is given, [`super::ema_step`] of the updated p into its
/// average in the same pass (each element while it is in cache): the same bits as the two
/// one after the other, from one read of p instead of two.
pub fn adam_ema_step(
    cfg: &AdamConfig,
    t: u32,
    p: &mut [f32],
    g: &[f32],
    m: &mut [f32],
    v: &mut [f32],
    ema: EmaOf<'_>,
) -> Result<()> {
    check_len("adam_step", "g", g.len(), p.len())?;
    check_len("adam_step", "m", m.len(), p.len())?;
    check_len("adam_step", "v", v.len(), p.len())?;
    if let Some((_, _, average)) = &ema {
        check_len("ema", "average", average.len(), p.len())?;
    }
    if t == 0 {
        return Err(Error::InvalidArgument(
            "adam_step: the step t is 1-based (t = 0 divides by 1 - beta1^0 = 0)".into(),
        ));
    }
    let alpha = cfg.alpha(t);
    let (one_minus_b1, one_minus_b2) = (cfg.one_minus_beta1(), cfg.one_minus_beta2());
    let epsilon = cfg.epsilon;
    let (weights, average) = match ema {
        Some((decay, step, average)) => (ema_weights(decay, step), average),
        None => ((0.0, 0.0), &mut [][..]),
    };
    let update = |p: &mut [f32], g: &[f32], m: &mut [f32], v: &mut [f32], a: &mut [f32]| {
        for (((p, &g), m), v) in p.iter_mut().zip(g).zip(m.iter_mut()).zip(v.iter_mut()) {
            *m += (g - *m) * one_minus_b1;
            *v += (g * g - *v) * one_minus_b2;
            *p -= (*m * alpha) / (v.sqrt() + epsilon);
        }
        average_into(a, p, weights);
    };
    // Element-wise, so any split gives the same bits; split only when threads pay.
    if p.len() < 2 * par::CHUNK {
        update(p, g, m, v, average);
        return Ok(());
    }
    let chunks = p
        .par_chunks_mut(par::CHUNK)
        .zip(g.par_chunks(par::CHUNK))
        .zip(m.par_chunks_mut(par::CHUNK))
        .zip(v.par_chunks_mut(par::CHUNK));
    if average.is_empty() {
        chunks.for_each(|(((p, g), m), v)| update(p, g, m, v, &mut []));
    } else {
        chunks
            .zip(average.par_chunks_mut(par::CHUNK))
            .for_each(|((((p, g), m), v), a)| update(p, g, m, v, a));
    }
    Ok(())
}
