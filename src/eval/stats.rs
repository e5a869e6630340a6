//! Statistics of a classifier's predictions on generated samples: which classes the
//! generator produces (mode collapse shows as a skewed histogram and low entropy) and
//! how often the classifier is sure of its answer (blurry digits show as low confidence).

use serde::Serialize;

use crate::error::{Error, Result};

/// Summary of `count` class-probability rows.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ClassStats {
    /// `[classes]`: how many samples were predicted as each class.
    pub histogram: Vec<usize>,
    /// Entropy (natural log) of the predicted-class distribution `histogram / count`:
    /// 0 when every sample is one class, `ln(classes)` when the classes are balanced.
    pub entropy: f64,
    /// Fraction of samples whose largest probability is strictly above the threshold.
    pub confident_fraction: f64,
    pub count: usize,
}

impl ClassStats {
    /// `entropy / ln(classes)`: 1 for balanced classes, 0 for a single class (and 0
    /// when there is only one class to predict).
    pub fn normalized_entropy(&self) -> f64 {
        let classes = self.histogram.len();
        if classes < 2 {
            0.0
        } else {
            self.entropy / (classes as f64).ln()
        }
    }
}

/// Class statistics of `probs`: `[n, classes]` row-major, one probability row per sample.
/// The predicted class of a row is its argmax, the lowest index on ties. Rows are not
/// required to sum to 1, but must be finite. Errors for `classes == 0`, a length that is
/// not a positive multiple of `classes`, a non-finite value, or a NaN threshold.
pub fn class_stats(probs: &[f32], classes: usize, threshold: f32) -> Result<ClassStats> {
    const OP: &str = "class_stats";
    if classes == 0 {
        return Err(Error::InvalidArgument(format!(
            "{OP}: the number of classes must be at least 1"
        )));
    }
    if probs.is_empty() || !probs.len().is_multiple_of(classes) {
        return Err(Error::Shape {
            op: OP,
            message: format!(
                "{} probabilities is not a positive whole number of rows of {classes} classes",
                probs.len()
            ),
        });
    }
    if threshold.is_nan() {
        return Err(Error::InvalidArgument(format!(
            "{OP}: the confidence threshold is NaN"
        )));
    }
    if let Some(i) = probs.iter().position(|p| !p.is_finite()) {
        return Err(Error::InvalidArgument(format!(
            "{OP}: probability {} of sample {} is {}",
            i % classes,
            i / classes,
            probs[i]
        )));
    }

    let count = probs.len() / classes;
    let mut histogram = vec![0usize; classes];
    let mut confident = 0usize;
    for row in probs.chunks_exact(classes) {
        // Strict `>` keeps the first of equal maxima.
        let (mut best, mut best_p) = (0, row[0]);
        for (c, &p) in row.iter().enumerate().skip(1) {
            if p > best_p {
                best = c;
                best_p = p;
            }
        }
        histogram[best] += 1;
        if best_p > threshold {
            confident += 1;
        }
    }

    let entropy = histogram
        .iter()
        .filter(|&&h| h > 0)
        // p ln(1/p) rather than -p ln p: a single class gives +0.0, not -0.0.
        .map(|&h| (h as f64 / count as f64) * (count as f64 / h as f64).ln())
        .sum::<f64>();

    Ok(ClassStats {
        histogram,
        entropy,
        confident_fraction: confident as f64 / count as f64,
        count,
    })
}
