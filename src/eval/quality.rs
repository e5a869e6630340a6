//! `gan-gpu eval`: how close generated digits are to MNIST, in the classifier's eyes.

use std::path::Path;

use serde::Serialize;

use crate::data::{MnistSet, Split, load_mnist, read_idx_images};
use crate::error::{Error, Result};
use crate::eval::classifier::{
    ClassifierConfig, ClassifierRunner, argmax, ensure_classifier, scaled_images,
};
use crate::eval::fid::{Gaussian, frechet_distance};
use crate::eval::stats::{ClassStats, class_stats};
use crate::graph::runtime::Runtime;
use crate::io::checkpoint::load_checkpoint;
use crate::model::IMAGE_SIDE;
use crate::model::classifier::{CLASSES, FEATURES};
use crate::model::load::{Weights, load_generator};
use crate::model::sample::{Digits, check_room_for, not_conditional, sample_stored};

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
    /// For a class-conditional generator: how often the classifier sees the digit it
    /// was asked for.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub requested: Option<RequestedDigits>,
}

/// The fraction of samples that the classifier assigns to the digit they were drawn as.
#[derive(Debug, Clone, Serialize)]
pub struct RequestedDigits {
    /// Over all samples.
    pub accuracy: f64,
    /// Per requested digit: (digit, samples, fraction classified as that digit).
    pub per_digit: Vec<(u32, usize, f64)>,
}

fn requested_digits(probs: &[f32], labels: &[u32]) -> RequestedDigits {
    let mut asked = [0usize; CLASSES];
    let mut hit = [0usize; CLASSES];
    for (p, &label) in probs.chunks(CLASSES).zip(labels) {
        let label = (label as usize).min(CLASSES - 1);
        asked[label] += 1;
        hit[label] += usize::from(argmax(p) == label);
    }
    let total: usize = asked.iter().sum();
    RequestedDigits {
        accuracy: hit.iter().sum::<usize>() as f64 / total.max(1) as f64,
        per_digit: (0..CLASSES)
            .filter(|&d| asked[d] > 0)
            .map(|d| (d as u32, asked[d], hit[d] as f64 / asked[d] as f64))
            .collect(),
    }
}

/// The Gaussian fit of the MNIST test set's features: the reference every FID is
/// measured against.
pub fn reference(classifier: &mut ClassifierRunner, test: &MnistSet) -> Result<Gaussian> {
    let (_, features) = classifier.classify(&scaled_images(test, test.count))?;
    Gaussian::fit(&features, FEATURES)
}

/// FID and class statistics of `images` ([n, 28, 28, 1] in [-1, 1]), and with `labels`
/// (the digits a class-conditional generator was asked for) how often it drew them.
pub fn quality(
    source: &str,
    classifier: &mut ClassifierRunner,
    images: &[f32],
    labels: Option<&[u32]>,
    reference: &Gaussian,
) -> Result<Quality> {
    let (probs, features) = classifier.classify(images)?;
    let fit = Gaussian::fit(&features, FEATURES)?;
    Ok(Quality {
        source: source.to_string(),
        count: fit.count,
        fid: frechet_distance(&fit, reference)?,
        classes: class_stats(&probs, CLASSES, CONFIDENT)?,
        requested: labels.map(|l| requested_digits(&probs, l)),
    })
}

/// The human-readable report.
pub fn render(rows: &[Quality]) -> String {
    // As wide as the longest source, so that the columns line up.
    let width = rows
        .iter()
        .map(|q| q.source.chars().count())
        .max()
        .unwrap_or(0)
        .max("images".len());
    let mut out = format!(
        "{:<width$} {:>7} {:>9} {:>8} {:>10}  predicted classes 0-9\n",
        "images", "count", "FID", "entropy", "p>0.9"
    );
    for q in rows {
        let hist: Vec<String> = q.classes.histogram.iter().map(|c| c.to_string()).collect();
        out += &format!(
            "{:<width$} {:>7} {:>9.3} {:>8.3} {:>9.1}%  {}\n",
            q.source,
            q.count,
            q.fid,
            q.classes.entropy,
            100.0 * q.classes.confident_fraction,
            hist.join(" ")
        );
    }
    for q in rows {
        if let Some(r) = &q.requested {
            let digits: Vec<String> = r
                .per_digit
                .iter()
                .map(|(d, _, f)| format!("{d}: {:.1}%", 100.0 * f))
                .collect();
            out += &format!(
                "{}: drawn as the digit asked for {:.1}% ({})\n",
                q.source,
                100.0 * r.accuracy,
                digits.join(", ")
            );
        }
    }
    out += &format!(
        "(entropy of a perfectly balanced set: ln 10 = {:.3})\n",
        (CLASSES as f64).ln()
    );
    out
}

/// What `gan-gpu eval` scores.
pub enum EvalSource<'a> {
    /// `count` digits from a checkpoint's generator, noise from `seed`; a class-conditional
    /// one draws `digits` (default: all, in equal numbers).
    Checkpoint {
        path: &'a Path,
        count: usize,
        seed: u64,
        digits: Option<Digits>,
        weights: Weights,
    },
    /// Images from an IDX file of 28x28 images.
    Samples(&'a Path),
}

/// The figures of `source`'s images and, as the reference line, of 10,000 MNIST training
/// images. The images are loaded (and a bad file refused) before the classifier, which
/// `classifier` holds or, on first use, is trained into with `progress` showing the steps.
pub fn evaluate(
    runtime: &Runtime,
    source: &EvalSource,
    classifier: &Path,
    data_dir: &Path,
    progress: &mut dyn FnMut(u64, u64),
) -> Result<(Vec<Quality>, Option<f64>)> {
    let (label, images, labels) = match *source {
        EvalSource::Checkpoint {
            path,
            count,
            seed,
            digits,
            weights,
        } => {
            let stored = load_generator(path, &load_checkpoint(path)?, weights)?;
            check_room_for(count)?;
            let labels = match (stored.kind.classes, digits) {
                (Some(classes), digits) => {
                    Some(digits.unwrap_or(Digits::All).labels(count, classes)?.0)
                }
                (None, None) => None,
                (None, Some(_)) => return Err(not_conditional(path, stored.kind.name)),
            };
            let images = sample_stored(runtime, &stored, count, seed, labels.as_deref())?;
            let which = match (stored.weights.wanted, stored.weights.used) {
                (_, Weights::Ema) => "EMA weights",
                (Weights::Raw, Weights::Raw) => "raw weights",
                (Weights::Ema, Weights::Raw) => "raw weights, the checkpoint has no EMA",
            };
            (
                format!("generator, {which} ({count} samples)"),
                images,
                labels,
            )
        }
        EvalSource::Samples(path) => {
            let (pixels, count, rows, cols) = read_idx_images(path)?;
            if (rows, cols) != (IMAGE_SIDE, IMAGE_SIDE) {
                return Err(Error::InvalidArgument(format!(
                    "{}: images are {rows}x{cols}, the classifier takes {IMAGE_SIDE}x{IMAGE_SIDE}",
                    path.display()
                )));
            }
            (
                format!("{} ({count} images)", path.display()),
                crate::cpu::gather::to_signed_unit(&pixels),
                None,
            )
        }
    };
    let config = ClassifierConfig::default();
    let (weights, trained) = ensure_classifier(runtime, classifier, data_dir, &config, progress)?;
    let mut runner = ClassifierRunner::new(runtime, &weights)?;
    let test = load_mnist(data_dir, Split::Test)?;
    let reference = reference(&mut runner, &test)?;
    let generated = quality(&label, &mut runner, &images, labels.as_deref(), &reference)?;
    let train = load_mnist(data_dir, Split::Train)?;
    let real = quality(
        "MNIST training images (reference)",
        &mut runner,
        &scaled_images(&train, 10_000),
        None,
        &reference,
    )?;
    Ok((vec![generated, real], trained))
}
