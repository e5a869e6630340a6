//! Binary cross-entropy on logits (Keras `BinaryCrossentropy(from_logits=True)`).

use std::ops::Range;

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
    let mut dlogits = vec![0.0; logits.len()];
    let (loss, mean_prob) = bce_into(logits, |i| labels[i], Some((&mut dlogits, false)))?;
    Ok(BceOutput {
        loss,
        mean_prob,
        dlogits,
    })
}

/// [`bce_with_logits`] against one label for every logit, without allocating: returns
/// (mean loss, mean σ(x)) and, given `dlogits`, writes the gradient there (adds it when its
/// flag says accumulate).
pub fn bce_constant_label(
    logits: &[f32],
    label: f32,
    dlogits: Option<(&mut [f32], bool)>,
) -> Result<(f32, f32)> {
    bce_into(logits, |_| label, dlogits)
}

/// [`bce_constant_label`] of the logits in `rows` only: dlogits, as long as the logits,
/// gets the gradient in those rows and 0 in the others (which keep their values with
/// accumulate), as for a loss that reads only those rows.
pub fn bce_constant_label_rows(
    logits: &[f32],
    label: f32,
    rows: Range<usize>,
    dlogits: Option<(&mut [f32], bool)>,
) -> Result<(f32, f32)> {
    let Some(part) = logits.get(rows.clone()) else {
        return Err(Error::Shape {
            op: "bce_with_logits",
            message: format!("rows {rows:?} of {} logits", logits.len()),
        });
    };
    match dlogits {
        None => bce_into(part, |_| label, None),
        Some((d, accumulate)) => {
            check_len("bce_with_logits", "dlogits", d.len(), logits.len())?;
            if !accumulate {
                d[..rows.start].fill(0.0);
                d[rows.end..].fill(0.0);
            }
            bce_into(part, |_| label, Some((&mut d[rows], accumulate)))
        }
    }
}

fn bce_into(
    logits: &[f32],
    label: impl Fn(usize) -> f32,
    mut dlogits: Option<(&mut [f32], bool)>,
) -> Result<(f32, f32)> {
    if logits.is_empty() {
        return Err(Error::Shape {
            op: "bce_with_logits",
            message: "no logits: the mean loss of an empty batch is undefined".into(),
        });
    }
    if let Some((d, _)) = &dlogits {
        check_len("bce_with_logits", "dlogits", d.len(), logits.len())?;
    }
    let count = logits.len() as f32;
    let (mut loss, mut prob) = (0.0f64, 0.0f64);
    for (i, &x) in logits.iter().enumerate() {
        let (z, p) = (label(i), sigmoid(x));
        loss += f64::from(element(x, z));
        prob += f64::from(p);
        if let Some((d, accumulate)) = &mut dlogits {
            let g = (p - z) / count;
            d[i] = if *accumulate { d[i] + g } else { g };
        }
    }
    let n = logits.len() as f64;
    Ok(((loss / n) as f32, (prob / n) as f32))
}

fn element(x: f32, z: f32) -> f32 {
    x.max(0.0) - x * z + (-x.abs()).exp().ln_1p()
}
