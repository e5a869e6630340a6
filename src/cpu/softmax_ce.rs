//! Softmax cross-entropy on logits with integer labels (Keras
//! `SparseCategoricalCrossentropy(from_logits=True)`), and the row softmax.

use super::check_len;
use crate::error::{Error, Result};

#[derive(Debug, Clone, PartialEq)]
pub struct SoftmaxCeOutput {
    /// Mean over the rows of logsumexp(x) - x\[label\].
    pub loss: f32,
    /// Fraction of rows whose first (lowest-index) maximal logit is at the label.
    pub accuracy: f32,
    /// d loss / d logits = (softmax(x) - onehot(label))/batch, including the 1/batch of the
    /// mean; [batch, classes].
    pub dlogits: Vec<f32>,
}

/// One row's maximum m, its first index a and Σ_{j≠a} exp(x_j - m), in f64. Leaving the
/// max's own exp(0) = 1 out of the sum keeps ln(1 + rest) and p_a - 1 precise when the row
/// is confidently right, as the shader does.
fn row_stats(row: &[f32]) -> (f64, usize, f64) {
    let mut argmax = 0;
    for (j, &x) in row.iter().enumerate() {
        if x > row[argmax] {
            argmax = j;
        }
    }
    let m = f64::from(row[argmax]);
    let rest = row
        .iter()
        .enumerate()
        .filter(|&(j, _)| j != argmax)
        .map(|(_, &x)| (f64::from(x) - m).exp())
        .sum();
    (m, argmax, rest)
}

/// logits [batch, classes] row-major, labels \[batch\] (each < classes), batch > 0 ->
/// mean loss, accuracy, dlogits [batch, classes]. Each row is computed stably in f64
/// (max subtracted, every exponent <= 0) and the means accumulated in f64, so the oracle
/// does not depend on a summation order.
pub fn softmax_cross_entropy(
    logits: &[f32],
    labels: &[u32],
    classes: usize,
) -> Result<SoftmaxCeOutput> {
    const OP: &str = "softmax_cross_entropy";
    let shape_error = |message: String| Error::Shape { op: OP, message };
    if classes == 0 {
        return Err(shape_error("no classes to normalise over".into()));
    }
    check_len(OP, "logits", logits.len(), labels.len() * classes)?;
    if labels.is_empty() {
        return Err(shape_error(
            "no rows: the mean loss of an empty batch is undefined".into(),
        ));
    }
    if let Some((r, &label)) = labels
        .iter()
        .enumerate()
        .find(|&(_, &l)| l as usize >= classes)
    {
        return Err(shape_error(format!(
            "label {label} of row {r} is not below {classes} classes"
        )));
    }
    let batch = labels.len() as f64;
    let (mut loss, mut correct) = (0.0f64, 0usize);
    let mut dlogits = Vec::with_capacity(logits.len());
    for (row, &label) in logits.chunks_exact(classes).zip(labels) {
        let label = label as usize;
        let (m, argmax, rest) = row_stats(row);
        loss += rest.ln_1p() - (f64::from(row[label]) - m);
        correct += usize::from(argmax == label);
        let s = 1.0 + rest;
        dlogits.extend(row.iter().enumerate().map(|(j, &x)| {
            let e = (f64::from(x) - m).exp();
            // p - 1 = (e - 1 - rest)/s: exactly -rest/s when the label is the max.
            let numerator = if j == label { (e - 1.0) - rest } else { e };
            (numerator / s / batch) as f32
        }));
    }
    Ok(SoftmaxCeOutput {
        loss: (loss / batch) as f32,
        accuracy: (correct as f64 / batch) as f32,
        dlogits,
    })
}

/// logits [batch, classes] row-major -> softmax of each row, [batch, classes], computed in
/// f64. Panics if `classes` is 0 or does not divide `logits.len()`.
pub fn softmax_rows(logits: &[f32], classes: usize) -> Vec<f32> {
    assert!(
        classes > 0 && logits.len().is_multiple_of(classes),
        "softmax_rows: {} logits are not rows of {classes} classes",
        logits.len()
    );
    let mut probs = Vec::with_capacity(logits.len());
    for row in logits.chunks_exact(classes) {
        let (m, _, rest) = row_stats(row);
        let s = 1.0 + rest;
        probs.extend(row.iter().map(|&x| ((f64::from(x) - m).exp() / s) as f32));
    }
    probs
}
