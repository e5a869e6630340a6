//! `gan-gpu export-onnx`: a checkpoint's generator as an ONNX model, for onnxruntime
//! (Python, C++, the browser), PyTorch's ONNX tooling and inference servers.
//!
//! The model is translated from the generator's `Op` graph ([`translate()`]), so every model
//! in [`crate::model::MODELS`] exports the same way. Inputs `z` [batch, noise_dim] f32 (and
//! `label [batch]` int64 for a class-conditional model); output `image [batch, 28, 28, 1]`
//! f32 in [-1, 1], NHWC like every tensor of gan-gpu (with one channel, the same values in
//! the same order as NCHW [batch, 1, 28, 28]). The encoding is prost over the subset of
//! onnx.proto in [`proto`].

pub mod proto;
pub mod translate;

use std::fmt;
use std::path::Path;
use std::str::FromStr;

use prost::Message;

use crate::error::Result;
use crate::io::atomic::write_atomically;
use crate::io::checkpoint::load_checkpoint;
use crate::model::load::{StoredGenerator, Weights, WeightsUsed, load_generator};
use proto::{Dim, GraphProto, ModelProto, OperatorSetIdProto, StringStringEntryProto};
use proto::{FLOAT, INT64, ValueInfoProto};
use translate::{IMAGE_OUTPUT, LABEL_INPUT, NOISE_INPUT, export_error, translate};

/// ONNX operator set 17 (2022): every op used here is in it, and onnxruntime has run it
/// since 1.12, onnxruntime-web included.
pub const OPSET: i64 = 17;
/// The IR version that came with opset 17 (onnx 1.12).
pub const IR_VERSION: i64 = 8;
/// The symbolic batch axis of a dynamic-batch model's inputs and output.
pub const BATCH_AXIS: &str = "batch";
/// protobuf refuses messages of 2 GiB or more; larger models need ONNX's external data.
const PROTOBUF_LIMIT: usize = (1 << 31) - 1;

/// The images per run that the model's inputs and output take.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BatchSize {
    Fixed(usize),
    /// Any batch: the first axis is the symbol [`BATCH_AXIS`].
    Dynamic,
}

impl FromStr for BatchSize {
    type Err = String;

    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "dynamic" => Ok(BatchSize::Dynamic),
            _ => match s.parse::<usize>() {
                Ok(n) if n > 0 => Ok(BatchSize::Fixed(n)),
                _ => Err(format!(
                    "expected `dynamic` or a whole number of at least 1, got {s:?}"
                )),
            },
        }
    }
}

impl fmt::Display for BatchSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BatchSize::Fixed(n) => write!(f, "{n}"),
            BatchSize::Dynamic => f.write_str("dynamic"),
        }
    }
}

/// What [`export_onnx`] wrote.
#[derive(Debug, Clone)]
pub struct ExportSummary {
    pub model: &'static str,
    pub iteration: Option<u64>,
    pub batch: BatchSize,
    pub bytes: usize,
    pub nodes: usize,
    pub initializers: usize,
    pub weights: WeightsUsed,
}

impl ExportSummary {
    /// One line for the command line.
    pub fn describe(&self, out: &Path) -> String {
        let trained = self
            .iteration
            .map_or(String::new(), |i| format!(" after {i} iterations"));
        format!(
            "wrote {}: the {} generator{trained}, {}, batch {}, {} nodes, {} weight \
             tensors, {:.1} MB (ONNX opset {OPSET}, IR version {IR_VERSION})",
            out.display(),
            self.model,
            self.weights,
            self.batch,
            self.nodes,
            self.initializers,
            self.bytes as f64 / 1e6
        )
    }
}

/// The generator of `stored` as an ONNX model.
pub fn generator_model(stored: &StoredGenerator, batch: BatchSize) -> Result<ModelProto> {
    let kind = stored.kind;
    // A dynamic model is translated at batch 2 and compared with batch 1 (see `translate`).
    let (graph, generator) = stored.graph(match batch {
        BatchSize::Fixed(n) => n,
        BatchSize::Dynamic => 2,
    })?;
    let probe = match batch {
        BatchSize::Dynamic => Some(stored.graph(1)?.0),
        BatchSize::Fixed(_) => None,
    };
    let body = translate(&graph, &generator, &stored.tensors, probe.as_ref())?;

    let batch_dim = match batch {
        BatchSize::Fixed(n) => Dim::Fixed(n),
        BatchSize::Dynamic => Dim::Named(BATCH_AXIS),
    };
    let image_shape = graph.shape(generator.image);
    if let Some(probe) = &probe
        && probe.shape(generator.image).get(1..) != image_shape.get(1..)
    {
        return Err(export_error(format!(
            "the image's shape {image_shape:?} depends on the batch beyond its first axis; \
             export with a fixed --batch"
        )));
    }
    let mut output_shape = vec![batch_dim.clone()];
    output_shape.extend(image_shape.iter().skip(1).map(|&d| Dim::Fixed(d)));
    let mut input = vec![ValueInfoProto::tensor(
        NOISE_INPUT,
        FLOAT,
        &[batch_dim.clone(), Dim::Fixed(stored.noise_dim)],
        "noise, N(0, 1) per value during training",
    )];
    if generator.labels.is_some() {
        let range = kind
            .classes
            .map_or(String::new(), |c| format!(", 0 to {}", c.saturating_sub(1)));
        input.push(ValueInfoProto::tensor(
            LABEL_INPUT,
            INT64,
            &[batch_dim],
            &format!("the class of each image{range}"),
        ));
    }
    let output = vec![ValueInfoProto::tensor(
        IMAGE_OUTPUT,
        FLOAT,
        &output_shape,
        "images in [-1, 1] (-1 black), NHWC",
    )];

    let entry = |key: &str, value: String| StringStringEntryProto {
        key: key.to_string(),
        value,
    };
    let version = env!("CARGO_PKG_VERSION");
    let mut metadata = vec![
        entry("gan_gpu_version", version.to_string()),
        entry("model", kind.name.to_string()),
        entry("noise_dim", stored.noise_dim.to_string()),
        entry("image_layout", "NHWC".to_string()),
    ];
    if let Some(iteration) = stored.iteration {
        metadata.push(entry("iteration", iteration.to_string()));
    }
    if let Some(classes) = kind.classes {
        metadata.push(entry("classes", classes.to_string()));
    }
    Ok(ModelProto {
        ir_version: IR_VERSION,
        opset_import: vec![OperatorSetIdProto {
            domain: String::new(),
            version: OPSET,
        }],
        producer_name: "gan-gpu".to_string(),
        producer_version: version.to_string(),
        domain: String::new(),
        model_version: stored.iteration.map_or(0, |i| i as i64),
        doc_string: format!(
            "The generator of gan-gpu's `{}` model ({}), trained for {} iterations",
            kind.name,
            kind.about,
            stored
                .iteration
                .map_or("an unknown number of".to_string(), |i| i.to_string())
        ),
        graph: Some(GraphProto {
            node: body.nodes,
            name: format!("{}_generator", kind.name),
            initializer: body.initializers,
            doc_string: String::new(),
            input,
            output,
        }),
        metadata_props: metadata,
    })
}

/// Encodes `model` and writes it to `path` atomically; returns its size in bytes.
pub fn save_model(path: &Path, model: &ModelProto) -> Result<usize> {
    let bytes = model.encode_to_vec();
    if bytes.len() > PROTOBUF_LIMIT {
        return Err(export_error(format!(
            "the model is {} bytes, over protobuf's 2 GiB limit (ONNX external data is not \
             supported)",
            bytes.len()
        )));
    }
    write_atomically(path, &[&bytes])?;
    Ok(bytes.len())
}

/// `gan-gpu export-onnx`: the generator of `checkpoint`, with `weights` (see
/// [`load_generator`]), as an ONNX file at `out`.
pub fn export_onnx(
    checkpoint: &Path,
    out: &Path,
    batch: BatchSize,
    weights: Weights,
) -> Result<ExportSummary> {
    if out.is_dir() {
        return Err(export_error(format!(
            "--out {} is a folder; name the file to write, such as {}",
            out.display(),
            out.join("generator.onnx").display()
        )));
    }
    let stored = load_generator(checkpoint, &load_checkpoint(checkpoint)?, weights)?;
    let model = generator_model(&stored, batch)?;
    let bytes = save_model(out, &model)?;
    let graph = model.graph.unwrap_or_default();
    Ok(ExportSummary {
        model: stored.kind.name,
        iteration: stored.iteration,
        batch,
        bytes,
        nodes: graph.node.len(),
        initializers: graph.initializer.len(),
        weights: stored.weights,
    })
}
