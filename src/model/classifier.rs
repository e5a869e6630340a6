//! The MNIST classifier behind `gan-gpu eval`: trained by our own runtime, it turns
//! images into class probabilities and 128-wide features for the Fréchet distance.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rand::SeedableRng;

use crate::cpu::{self, Activation, AdamConfig};
use crate::data::{MnistSet, Split, load_mnist};
use crate::error::{Error, Result};
use crate::geometry::Conv2dGeometry;
use crate::gpu::AdapterRequest;
use crate::graph::cpu_exec::CpuExecutor;
use crate::graph::{
    Buf, Dataset, Executor, Graph, Init, InputSource, NodeId, RandomStreams, lower,
};
use crate::model::checkpoint::{Checkpoint, NamedTensor, load_checkpoint, save_checkpoint};
use crate::model::gan::{IMAGE_SIDE, PIXELS};
use crate::model::train::{DeviceChoice, make_executor};

pub const CLASSES: usize = 10;
/// Width of the feature layer the Fréchet distance is computed on.
pub const FEATURES: usize = 128;
/// Metadata `model` of a classifier weights file (the format is the checkpoints' own).
const MODEL: &str = "mnist-classifier";

/// Conv(32, 3x3, s1) -> ReLU -> Conv(64, 3x3, s2) -> ReLU -> Flatten -> Dense(128) ->
/// ReLU (the features) -> Dense(10) (the logits).
pub struct Classifier {
    pub graph: Graph,
    pub batch: usize,
    pub images: NodeId,
    pub labels: Option<NodeId>,
    pub features: NodeId,
    pub logits: NodeId,
    pub loss: Option<NodeId>,
    pub params: Vec<NodeId>,
}

impl Classifier {
    /// With `training`, images and labels are random dataset batches and the graph ends
    /// in a softmax cross-entropy; otherwise images are fed by the caller.
    pub fn new(batch: usize, training: bool) -> Result<Self> {
        let mut g = Graph::default();
        let source = if training {
            InputSource::DataBatch
        } else {
            InputSource::External
        };
        let images = g.input("images", source, vec![batch, IMAGE_SIDE, IMAGE_SIDE, 1]);
        let glorot = |g: &mut Graph, name: &str, shape: Vec<usize>, fan_in, fan_out| {
            g.param(name, Init::GlorotUniform { fan_in, fan_out }, shape)
        };
        let c1_w = glorot(
            &mut g,
            "classifier.conv1.kernel",
            vec![3, 3, 1, 32],
            9,
            9 * 32,
        );
        let c1_b = g.param("classifier.conv1.bias", Init::Zeros, vec![32]);
        let c2_w = glorot(
            &mut g,
            "classifier.conv2.kernel",
            vec![3, 3, 32, 64],
            9 * 32,
            9 * 64,
        );
        let c2_b = g.param("classifier.conv2.bias", Init::Zeros, vec![64]);
        let f_w = glorot(
            &mut g,
            "classifier.features.kernel",
            vec![12 * 12 * 64, FEATURES],
            12 * 12 * 64,
            FEATURES,
        );
        let f_b = g.param("classifier.features.bias", Init::Zeros, vec![FEATURES]);
        let o_w = glorot(
            &mut g,
            "classifier.logits.kernel",
            vec![FEATURES, CLASSES],
            FEATURES,
            CLASSES,
        );
        let o_b = g.param("classifier.logits.bias", Init::Zeros, vec![CLASSES]);

        let h = g.conv2d(
            "classifier.conv1",
            images,
            c1_w,
            c1_b,
            Conv2dGeometry::valid(batch, 28, 28, 1, 32, 3, 3, 1, 1),
        )?;
        let h = g.activation("classifier.relu1", h, Activation::Relu);
        let h = g.conv2d(
            "classifier.conv2",
            h,
            c2_w,
            c2_b,
            Conv2dGeometry::valid(batch, 26, 26, 32, 64, 3, 3, 2, 2),
        )?;
        let h = g.activation("classifier.relu2", h, Activation::Relu);
        let h = g.reshape("classifier.flatten", h, vec![batch, 12 * 12 * 64])?;
        let h = g.dense("classifier.features", h, f_w, f_b)?;
        let features = g.activation("classifier.relu3", h, Activation::Relu);
        let logits = g.dense("classifier.logits", features, o_w, o_b)?;
        let (labels, loss) = if training {
            let labels = g.input("labels", InputSource::DataLabels, vec![batch]);
            (
                Some(labels),
                Some(g.softmax_cross_entropy("classifier.loss", logits, labels)?),
            )
        } else {
            (None, None)
        };
        Ok(Classifier {
            graph: g,
            batch,
            images,
            labels,
            features,
            logits,
            loss,
            params: vec![c1_w, c1_b, c2_w, c2_b, f_w, f_b, o_w, o_b],
        })
    }

    fn expected_tensors(&self) -> Vec<(String, Vec<usize>)> {
        self.params
            .iter()
            .map(|&id| {
                (
                    self.graph.nodes[id].name.clone(),
                    self.graph.nodes[id].shape.clone(),
                )
            })
            .collect()
    }
}

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

/// Trained weights, in `Classifier::params` order.
#[derive(Debug, Clone)]
pub struct ClassifierWeights(pub Vec<Vec<f32>>);

/// Trains on MNIST's training set; `progress(done, total)` sees every step.
pub fn train_classifier(
    data_dir: &Path,
    cfg: &ClassifierConfig,
    device: DeviceChoice,
    adapter: &AdapterRequest,
    progress: &mut dyn FnMut(u64, u64),
) -> Result<(ClassifierWeights, String)> {
    let mnist = load_mnist(data_dir, Split::Train)?;
    let dataset = Arc::new(Dataset {
        bytes: mnist.images,
        rows: mnist.count,
        row_len: PIXELS,
        labels: Some(mnist.labels),
    });
    let model = Classifier::new(cfg.batch_size, true)?;
    let loss = model.loss.expect("a training classifier has a loss");
    let mut plan = lower::forward(&model.graph, &[loss], &Default::default());
    plan.extend(lower::backward(&model.graph, &[loss], &model.params)?);
    plan.extend(lower::adam(&model.graph, &model.params, 0));
    let streams = RandomStreams { seed: cfg.seed };
    let mut rng = rand::rngs::StdRng::seed_from_u64(cfg.seed);
    let mut weights: Vec<Vec<f32>> = model
        .graph
        .init_params(&mut rng)
        .into_iter()
        .map(|(_, w)| w)
        .collect();
    // The last quarter at a tenth of the rate settles the weights: about +0.3% accuracy.
    let settle_from = cfg.iterations * 3 / 4;
    let phases = [
        (cfg.lr, 0..settle_from),
        (cfg.lr / 10.0, settle_from..cfg.iterations),
    ];
    let mut line = String::new();
    for (lr, iterations) in phases {
        let adam = AdamConfig {
            lr,
            beta1: 0.9,
            beta2: 0.999,
            epsilon: 1e-7,
        };
        let (mut exec, l) = make_executor(
            &model.graph,
            vec![adam],
            streams,
            device,
            adapter,
            Some(Arc::clone(&dataset)),
        )?;
        line = l;
        for (&id, w) in model.params.iter().zip(&weights) {
            exec.write(Buf::Value(id), w)?;
        }
        let compiled = exec.compile(&plan)?;
        // Global iteration numbers: each step draws a fresh batch.
        for iteration in iterations {
            exec.run(compiled, iteration)?;
            progress(iteration + 1, cfg.iterations);
        }
        weights = model
            .params
            .iter()
            .map(|&id| exec.read(Buf::Value(id)))
            .collect::<Result<Vec<_>>>()?;
    }
    Ok((ClassifierWeights(weights), line))
}

/// Class probabilities [n, 10] and features [n, 128] of images [n, 28, 28, 1] in [-1, 1],
/// on the CPU executor in chunks.
pub fn classify(weights: &ClassifierWeights, images: &[f32]) -> Result<(Vec<f32>, Vec<f32>)> {
    let n = images.len() / PIXELS;
    if n * PIXELS != images.len() {
        return Err(Error::Shape {
            op: "classify",
            message: format!("{} values are not whole 28x28 images", images.len()),
        });
    }
    let chunk = 500;
    let (mut probs, mut features) = (
        Vec::with_capacity(n * CLASSES),
        Vec::with_capacity(n * FEATURES),
    );
    let mut start = 0;
    while start < n {
        let batch = chunk.min(n - start);
        let model = Classifier::new(batch, false)?;
        let mut exec = CpuExecutor::new(&model.graph, vec![], None, RandomStreams { seed: 0 });
        for (&id, w) in model.params.iter().zip(&weights.0) {
            exec.write(Buf::Value(id), w)?;
        }
        exec.write(
            Buf::Value(model.images),
            &images[start * PIXELS..(start + batch) * PIXELS],
        )?;
        let plan = exec.compile(&lower::forward(
            &model.graph,
            &[model.logits],
            &Default::default(),
        ))?;
        exec.run(plan, 0)?;
        let logits = exec.read(Buf::Value(model.logits))?;
        probs.extend(cpu::softmax_ce::softmax_rows(&logits, CLASSES));
        features.extend(exec.read(Buf::Value(model.graph.storage(model.features)))?);
        start += batch;
    }
    Ok((probs, features))
}

/// Images of a dataset split scaled to [-1, 1], as the generator draws them.
pub fn scaled_images(set: &MnistSet, count: usize) -> Vec<f32> {
    cpu::gather::to_signed_unit(&set.images[..count.min(set.count) * PIXELS])
}

/// Fraction of `set`'s first `count` images classified correctly.
pub fn accuracy(weights: &ClassifierWeights, set: &MnistSet, count: usize) -> Result<f64> {
    let (probs, _) = classify(weights, &scaled_images(set, count))?;
    let correct = probs
        .chunks(CLASSES)
        .zip(&set.labels)
        .filter(|&(p, &label)| argmax(p) == label as usize)
        .count();
    Ok(correct as f64 / count.min(set.count).max(1) as f64)
}

fn argmax(p: &[f32]) -> usize {
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
    dirs::cache_dir()
        .unwrap_or_else(std::env::temp_dir)
        .join("gan-gpu")
        .join("mnist-classifier.safetensors")
}

pub fn save_classifier(path: &Path, weights: &ClassifierWeights, test_accuracy: f64) -> Result<()> {
    let model = Classifier::new(1, false)?;
    let tensors = model
        .expected_tensors()
        .into_iter()
        .zip(&weights.0)
        .map(|((name, shape), data)| NamedTensor {
            name,
            shape,
            data: data.clone(),
        })
        .collect();
    let mut metadata = std::collections::BTreeMap::new();
    metadata.insert("format".into(), crate::model::checkpoint::FORMAT.into());
    metadata.insert("model".into(), MODEL.into());
    metadata.insert("test_accuracy".into(), format!("{test_accuracy:.4}"));
    save_checkpoint(path, &Checkpoint { tensors, metadata })
}

pub fn load_classifier(path: &Path) -> Result<ClassifierWeights> {
    let ckpt = load_checkpoint(path)?;
    if ckpt.metadata.get("model").map(String::as_str) != Some(MODEL) {
        return Err(Error::Checkpoint {
            path: path.to_path_buf(),
            problem: "not a gan-gpu MNIST classifier (train one with `gan-gpu classifier train`)"
                .into(),
        });
    }
    let model = Classifier::new(1, false)?;
    crate::model::checkpoint::check_tensors(path, &ckpt, &model.expected_tensors())?;
    Ok(ClassifierWeights(
        model
            .expected_tensors()
            .iter()
            .map(|(name, _)| {
                ckpt.tensor(name)
                    .map(|t| t.data.clone())
                    .unwrap_or_default()
            })
            .collect(),
    ))
}
