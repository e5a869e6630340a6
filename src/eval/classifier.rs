//! Training the MNIST classifier with our runtime, and running it over images.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rand::SeedableRng;

use crate::cpu::{self, AdamConfig};
use crate::data::{MnistSet, Split, load_mnist};
use crate::error::{Error, Result};
use crate::graph::runtime::Runtime;
use crate::graph::{Buf, Dataset, Executor, RandomStreams, lower};
use crate::model::PIXELS;
use crate::model::classifier::{
    CLASSES, Classifier, ClassifierWeights, FEATURES, load_classifier, save_classifier,
};

/// How to train the classifier.
#[derive(Debug, Clone)]
pub struct ClassifierConfig {
    pub iterations: u64,
    pub batch_size: usize,
    pub lr: f32,
    pub seed: u64,
}

impl Default for ClassifierConfig {
    fn default() -> Self {
        // About 10.7 epochs of MNIST's 60,000 images.
        ClassifierConfig {
            iterations: 5_000,
            batch_size: 128,
            lr: 1e-3,
            seed: 0,
        }
    }
}

/// Trains on MNIST's training set with one executor of `runtime`; `progress(done,
/// total)` sees every step.
pub fn train_classifier(
    runtime: &Runtime,
    data_dir: &Path,
    cfg: &ClassifierConfig,
    progress: &mut dyn FnMut(u64, u64),
) -> Result<ClassifierWeights> {
    let mnist = load_mnist(data_dir, Split::Train)?;
    let dataset = Arc::new(Dataset {
        bytes: mnist.images,
        rows: mnist.count,
        row_len: PIXELS,
        labels: Some(mnist.labels),
    });
    let model = Classifier::new(cfg.batch_size, true)?;
    let adam = AdamConfig {
        lr: cfg.lr,
        beta1: 0.9,
        beta2: 0.999,
        epsilon: 1e-7,
    };
    let streams = RandomStreams { seed: cfg.seed };
    let mut exec = runtime.executor(&model.graph, vec![adam], streams, Some(dataset))?;
    let mut rng = rand::rngs::StdRng::seed_from_u64(cfg.seed);
    for (id, values) in model.graph.init_params(&mut rng) {
        exec.write(Buf::Value(id), &values)?;
    }
    let plan = exec.compile(&lower::training_step(&model.graph, &model.phases()?)?)?;
    // The last quarter at a tenth of the rate settles the weights: about +0.3% accuracy.
    let settle_from = cfg.iterations * 3 / 4;
    for iteration in 0..cfg.iterations {
        if iteration == settle_from {
            exec.set_learning_rate(0, cfg.lr / 10.0)?;
        }
        // Global iteration numbers: each step draws a fresh batch.
        exec.run(plan, iteration)?;
        progress(iteration + 1, cfg.iterations);
    }
    let weights = model
        .params
        .iter()
        .map(|&id| exec.read(Buf::Value(id)))
        .collect::<Result<Vec<_>>>()?;
    Ok(ClassifierWeights(weights))
}

/// Images per forward pass of a [`ClassifierRunner`].
const CLASSIFY_BATCH: usize = 500;

/// The classifier compiled once on an executor of a runtime, for any number of images.
pub struct ClassifierRunner {
    model: Classifier,
    exec: Box<dyn Executor>,
    plan: usize,
}

impl ClassifierRunner {
    pub fn new(runtime: &Runtime, weights: &ClassifierWeights) -> Result<Self> {
        let model = Classifier::new(CLASSIFY_BATCH, false)?;
        let mut exec = runtime.executor(&model.graph, vec![], RandomStreams { seed: 0 }, None)?;
        for (&id, w) in model.params.iter().zip(&weights.0) {
            exec.write(Buf::Value(id), w)?;
        }
        let plan = exec.compile(&lower::forward(
            &model.graph,
            &[model.logits],
            &Default::default(),
        ))?;
        Ok(ClassifierRunner { model, exec, plan })
    }

    /// Class probabilities [n, 10] and features [n, 128] of images [n, 28, 28, 1] in
    /// [-1, 1].
    pub fn classify(&mut self, images: &[f32]) -> Result<(Vec<f32>, Vec<f32>)> {
        let n = images.len() / PIXELS;
        if n * PIXELS != images.len() {
            return Err(Error::Shape {
                op: "classify",
                message: format!("{} values are not whole 28x28 images", images.len()),
            });
        }
        let (mut probs, mut features) = (
            Vec::with_capacity(n * CLASSES),
            Vec::with_capacity(n * FEATURES),
        );
        let batch = self.model.batch;
        let mut chunk = vec![0.0; batch * PIXELS];
        let features_root = self.model.graph.storage(self.model.features);
        for start in (0..n).step_by(batch) {
            let count = batch.min(n - start);
            chunk[..count * PIXELS]
                .copy_from_slice(&images[start * PIXELS..(start + count) * PIXELS]);
            chunk[count * PIXELS..].fill(0.0);
            self.exec.write(Buf::Value(self.model.images), &chunk)?;
            self.exec.run(self.plan, 0)?;
            let logits = self.exec.read(Buf::Value(self.model.logits))?;
            probs.extend(cpu::softmax_ce::softmax_rows(
                &logits[..count * CLASSES],
                CLASSES,
            ));
            let f = self.exec.read(Buf::Value(features_root))?;
            features.extend_from_slice(&f[..count * FEATURES]);
        }
        Ok((probs, features))
    }

    /// Fraction of `set`'s first `count` images classified correctly.
    pub fn accuracy(&mut self, set: &MnistSet, count: usize) -> Result<f64> {
        let (probs, _) = self.classify(&scaled_images(set, count))?;
        let correct = probs
            .chunks(CLASSES)
            .zip(&set.labels)
            .filter(|&(p, &label)| argmax(p) == label as usize)
            .count();
        Ok(correct as f64 / count.min(set.count).max(1) as f64)
    }
}

/// Images of a dataset split scaled to [-1, 1], as the generator draws them.
pub fn scaled_images(set: &MnistSet, count: usize) -> Vec<f32> {
    cpu::gather::to_signed_unit(&set.images[..count.min(set.count) * PIXELS])
}

pub fn argmax(p: &[f32]) -> usize {
    p.iter()
        .enumerate()
        .fold((0, f32::NEG_INFINITY), |best, (i, &v)| {
            if v > best.1 { (i, v) } else { best }
        })
        .0
}

/// The default weights file: `$XDG_CACHE_HOME/gan-gpu/mnist-classifier.safetensors`
/// (or the platform's cache folder).
pub fn default_classifier_path() -> PathBuf {
    crate::io::cache_dir().join("mnist-classifier.safetensors")
}

/// The classifier at `path`, trained with `runtime` as `config` says (and saved there,
/// with its test-set accuracy) on first use; `progress` sees the training steps. Returns the accuracy when
/// it trained one.
pub fn ensure_classifier(
    runtime: &Runtime,
    path: &Path,
    data_dir: &Path,
    config: &ClassifierConfig,
    progress: &mut dyn FnMut(u64, u64),
) -> Result<(ClassifierWeights, Option<f64>)> {
    if path.exists() {
        return Ok((load_classifier(path)?, None));
    }
    let weights = train_classifier(runtime, data_dir, config, progress)?;
    let test = load_mnist(data_dir, Split::Test)?;
    let acc = ClassifierRunner::new(runtime, &weights)?.accuracy(&test, test.count)?;
    save_classifier(path, &weights, acc)?;
    Ok((weights, Some(acc)))
}

/// `gan-gpu classifier train`: trains the classifier with `runtime` (`progress` sees the
/// steps), measures it on the test set and saves it to `path`; returns the accuracy and
/// the number of test images.
pub fn train_and_save(
    runtime: &Runtime,
    data_dir: &Path,
    path: &Path,
    progress: &mut dyn FnMut(u64, u64),
) -> Result<(f64, usize)> {
    let weights = train_classifier(runtime, data_dir, &ClassifierConfig::default(), progress)?;
    let test = load_mnist(data_dir, Split::Test)?;
    let acc = ClassifierRunner::new(runtime, &weights)?.accuracy(&test, test.count)?;
    save_classifier(path, &weights, acc)?;
    Ok((acc, test.count))
}
