//! The MNIST classifier behind `gan-gpu eval`, as a graph: it turns images into class
//! probabilities and 128-wide features for the Fréchet distance. Its training and use
//! live in `eval::classifier`.

use std::path::Path;

use crate::cpu::Activation;
use crate::error::{Error, Result};
use crate::graph::{Graph, InputSource, NodeId, Padding, Phase};
use crate::io::checkpoint::{
    Checkpoint, FORMAT, NamedTensor, check_tensors, load_checkpoint, save_checkpoint,
};
use crate::model::IMAGE_SIDE;

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
        let (features, logits) = g.scoped("classifier", "classifier", |g| {
            let h = g.conv2d("conv1", images, 32, (3, 3), (1, 1), Padding::Valid)?;
            let h = g.activation("relu1", h, Activation::Relu);
            let h = g.conv2d("conv2", h, 64, (3, 3), (2, 2), Padding::Valid)?;
            let h = g.activation("relu2", h, Activation::Relu);
            let h = g.flatten("flatten", h)?;
            let h = g.dense("features", h, FEATURES)?;
            let features = g.activation("relu3", h, Activation::Relu);
            let logits = g.dense("logits", features, CLASSES)?;
            Ok::<_, Error>((features, logits))
        })?;
        let (labels, loss) = if training {
            let labels = g.input("labels", InputSource::DataLabels, vec![batch]);
            let loss = g.softmax_cross_entropy("classifier.loss", logits, labels)?;
            (Some(labels), Some(loss))
        } else {
            (None, None)
        };
        Ok(Classifier {
            params: g.params(),
            graph: g,
            batch,
            images,
            labels,
            features,
            logits,
            loss,
        })
    }

    /// The training step: one Adam step (optimizer group 0) on the mean cross-entropy.
    pub fn phases(&self) -> Result<Vec<Phase>> {
        let loss = self.loss.ok_or_else(|| {
            Error::InvalidArgument("an inference classifier has no training step".into())
        })?;
        Ok(vec![Phase {
            losses: vec![loss],
            params: self.params.clone(),
            group: 0,
        }])
    }

    fn expected_tensors(&self) -> Vec<(String, Vec<usize>)> {
        self.params
            .iter()
            .map(|&id| {
                let node = &self.graph.nodes[id];
                (node.name.clone(), node.shape.clone())
            })
            .collect()
    }
}

/// Trained weights, in `Classifier::params` order.
#[derive(Debug, Clone)]
pub struct ClassifierWeights(pub Vec<Vec<f32>>);

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
    metadata.insert("format".into(), FORMAT.into());
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
    check_tensors(path, &ckpt, &model.expected_tensors())?;
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
