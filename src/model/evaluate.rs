//! `gan-gpu eval`: how close generated digits are to MNIST, in the classifier's eyes.

use serde::Serialize;

use crate::data::MnistSet;
use crate::error::Result;
use crate::eval::fid::{Gaussian, frechet_distance};
use crate::eval::stats::{ClassStats, class_stats};
use crate::model::classifier::{CLASSES, ClassifierWeights, FEATURES, classify, scaled_images};

/// A sample counts as confidently classified above this probability.
pub const CONFIDENT: f32 = 0.9;

/// The figures for one set of images.
#[derive(Debug, Clone, Serialize)]
pub struct Quality {
    pub source: String,
    pub count: usize,
    /// Fréchet distance to the MNIST test set in the classifier's 128-wide features.
    pub fid: f64,
    pub classes: ClassStats,
}

/// The Gaussian fit of the MNIST test set's features: the reference every FID is
/// measured against.
pub fn reference(weights: &ClassifierWeights, test: &MnistSet) -> Result<Gaussian> {
    let (_, features) = classify(weights, &scaled_images(test, test.count))?;
    Gaussian::fit(&features, FEATURES)
}

/// FID and class statistics of `images` ([n, 28, 28, 1] in [-1, 1]).
pub fn quality(
    source: &str,
    weights: &ClassifierWeights,
    images: &[f32],
    reference: &Gaussian,
) -> Result<Quality> {
    let (probs, features) = classify(weights, images)?;
    let fit = Gaussian::fit(&features, FEATURES)?;
    Ok(Quality {
        source: source.to_string(),
        count: fit.count,
        fid: frechet_distance(&fit, reference)?,
        classes: class_stats(&probs, CLASSES, CONFIDENT)?,
    })
}

/// The human-readable report.
pub fn render(rows: &[Quality]) -> String {
    let mut out = format!(
        "{:<34} {:>7} {:>9} {:>8} {:>10}  predicted classes 0-9\n",
        "images", "count", "FID", "entropy", "p>0.9"
    );
    for q in rows {
        let hist: Vec<String> = q.classes.histogram.iter().map(|c| c.to_string()).collect();
        out += &format!(
            "{:<34} {:>7} {:>9.3} {:>8.3} {:>9.1}%  {}\n",
            q.source,
            q.count,
            q.fid,
            q.classes.entropy,
            100.0 * q.classes.confident_fraction,
            hist.join(" ")
        );
    }
    out += &format!(
        "(entropy of a perfectly balanced set: ln 10 = {:.3})\n",
        (CLASSES as f64).ln()
    );
    out
}

/// The classifier at `path` (default: the user's cache folder), trained on first use
/// with `progress` showing the steps.
pub fn ensure_classifier(
    path: &std::path::Path,
    data_dir: &std::path::Path,
    device: crate::model::train::DeviceChoice,
    adapter: &crate::gpu::AdapterRequest,
    progress: &mut dyn FnMut(u64, u64),
) -> Result<(ClassifierWeights, Option<f64>)> {
    use crate::model::classifier::{
        ClassifierConfig, accuracy, load_classifier, save_classifier, train_classifier,
    };
    if path.exists() {
        return Ok((load_classifier(path)?, None));
    }
    let (weights, _) = train_classifier(
        data_dir,
        &ClassifierConfig::default(),
        device,
        adapter,
        progress,
    )?;
    let test = crate::data::load_mnist(data_dir, crate::data::Split::Test)?;
    let acc = accuracy(&weights, &test, test.count)?;
    save_classifier(path, &weights, acc)?;
    Ok((weights, Some(acc)))
}
