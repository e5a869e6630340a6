//! Binary cross-entropy on logits (Keras `BinaryCrossentropy(from_logits=True)`).

use super::activation::sigmoid;
use super::check_len;
use crate::error::{Error, Result};

#[derive(Debug, Clone, PartialEq)]
pub struct BceOutput {
    /// Mean of the elementwise losses.
    pub loss: f32,
    /// Mean of sigmoid(logits): the discriminator's average belief that its inputs are real.
    pub mean_prob: f32,
    /// d loss / d logits = (sigmoid(x) - z)/count, including the 1/count of the mean.
    pub dlogits: Vec<f32>,
}

/// logits x (n), labels z (n) -> l (n) = max(x, 0) - x·z + ln(1 + e^-|x|), the stable form of
/// -z·ln σ(x) - (1-z)·ln(1-σ(x)) (TF's sigmoid_cross_entropy_with_logits); finite for any x.
pub fn bce_elementwise(logits: &[f32], labels: &[f32]) -> Result<Vec<f32>> {
    check_len("bce_elementwise", "labels", labels.len(), logits.len())?;
    Ok(logits
        .iter()
        .zip(labels)
        .map(|(&x, &z)| element(x, z))
        .collect())
}

/// logits x (n), labels z (n), n > 0 -> mean loss, mean σ(x), dlogits (n). The means are
/// accumulated in f64, so the oracle does not depend on a summation order.
pub fn bce_with_logits(logits: &[f32], labels: &[f32]) -> Result<BceOutput> {
    check_len("bce_with_logits", "labels", labels.len(), logits.len())?;
    if logits.is_empty() {
        return Err(Error::Shape {
            op: "bce_with_logits",
            message: "no logits: the mean loss of an empty batch is undefined".into(),
        });
    }
    let count = logits.len() as f32;
    let (mut loss, mut prob) = (0.0f64, 0.0f64);
    let dlogits = logits
        .iter()
        .zip(labels)
        .map(|(&x, &z)| {
            let p = sigmoid(x);
            loss += f64::from(element(x, z));
            prob += f64::from(p);
            (p - z) / count
        })
        .collect();
    let n = logits.len() as f64;
    Ok(BceOutput {
        loss: (loss / n) as f32,
        mean_prob: (prob / n) as f32,
        dlogits,
    })
}

fn element(x: f32, z: f32) -> f32 {
    x.max(0.0) - x * z + (-x.abs()).exp().ln_1p()
}
