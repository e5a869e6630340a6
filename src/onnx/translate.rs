//! A generator's `Op` graph as ONNX nodes. Nothing here knows a particular network: every
//! op the image depends on becomes ONNX nodes by its own rule, and the parameters become
//! initializers under their checkpoint names, holding the checkpoint's values in Keras's
//! layouts (a convolution kernel reaches ONNX's layout through a Transpose node, which
//! runtimes fold into a constant when they load the model).
//!
//! Layouts: graph tensors are NHWC (Keras's channels_last), while ONNX's Conv and
//! ConvTranspose take NCHW. A graph tensor can exist in ONNX in its graph layout,
//! channels-first, or both. Each op asks for the layout it needs, and a Transpose is
//! inserted the first time a tensor is asked for in a layout it lacks. Element-wise ops
//! stay in the layout their input already has, so a run of convolutions and activations
//! stays channels-first; an addition is channels-first when both its operands are. The seed
//! generator needs only two activation Transposes: after the reshape to 7x7x128, and
//! before the image.
//!
//! Class labels: the graph holds them as u32 bit patterns in an f32 tensor, ONNX takes them
//! as the int64 input `label`, which only an embedding lookup (Gather) reads.

use std::collections::HashMap;

use super::proto::{AttributeProto, NodeProto, TensorProto};
use crate::cpu::Activation;
use crate::error::{Error, Result};
use crate::geometry::{Conv2dGeometry, ConvTranspose2dGeometry};
use crate::graph::{BatchNormMode, Graph, InputSource, NodeId, Op, lower};
use crate::io::checkpoint::NamedTensor;
use crate::model::GeneratorNodes;

/// ONNX names of the generator's inputs and output.
pub const NOISE_INPUT: &str = "z";
pub const LABEL_INPUT: &str = "label";
pub const IMAGE_OUTPUT: &str = "image";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Layout {
    /// The graph's own: NHWC for images.
    Graph,
    /// NCHW, what ONNX's convolutions take.
    ChannelsFirst,
}

const TO_CHANNELS_FIRST: [i64; 4] = [0, 3, 1, 2];
const TO_CHANNELS_LAST: [i64; 4] = [0, 2, 3, 1];
/// Keras's HWIO (conv) and HWOI (transposed conv) to ONNX's OIHW and IOHW: one permutation.
const KERNEL_TO_ONNX: [i64; 4] = [3, 2, 0, 1];

/// The ONNX graph's body: nodes in topological order, and the weights.
pub struct Translated {
    pub nodes: Vec<NodeProto>,
    pub initializers: Vec<TensorProto>,
}

pub(super) fn export_error(message: String) -> Error {
    Error::OnnxExport(message)
}

/// The variant name of `op`, for errors.
fn op_name(op: &Op) -> String {
    let debug = format!("{op:?}");
    debug
        .split(|c: char| !c.is_alphanumeric())
        .next()
        .unwrap_or_default()
        .to_string()
}

/// ONNX ConvTranspose's explicit padding for a Keras geometry, per axis (height, width).
///
/// ONNX computes the un-cropped result F of length full = (n-1)·s + k, then
/// `y[p] = F[p + pads_begin]` over out = full + output_padding - pads_begin - pads_end
/// positions, those past F being zero (plus the bias). Keras's `y[p] = F[p + crop_before]`
/// over `out` positions is that with pads_begin = crop_before and the rest of the excess
/// cropped at the end, or, when Keras's output reaches past F ('valid' with k < s), with
/// no end crop and the missing rows added as output_padding. So 'same' k5 s2 on 7 is
/// pads 1/2 (full 17, out 14): PyTorch's usual padding=2, output_padding=1 would be
/// shifted by one pixel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConvTransposePads {
    pub begin: [usize; 2],
    pub end: [usize; 2],
    pub output_padding: [usize; 2],
}

impl ConvTransposePads {
    pub fn of(geom: &ConvTranspose2dGeometry) -> Self {
        let axis = |full: usize, crop: usize, out: usize| {
            let kept = full.saturating_sub(crop);
            (kept.saturating_sub(out), out.saturating_sub(kept))
        };
        let (end_h, extra_h) = axis(geom.full_h(), geom.crop_top, geom.out_h);
        let (end_w, extra_w) = axis(geom.full_w(), geom.crop_left, geom.out_w);
        ConvTransposePads {
            begin: [geom.crop_top, geom.crop_left],
            end: [end_h, end_w],
            output_padding: [extra_h, extra_w],
        }
    }

    /// ONNX's `pads`: [top, left, bottom, right].
    pub fn onnx_pads(&self) -> [i64; 4] {
        [self.begin[0], self.begin[1], self.end[0], self.end[1]].map(|p| p as i64)
    }
}

/// Translates the part of `graph` that `generator.image` depends on. `weights` are the
/// values of its parameters, by name. For a dynamic batch, `batch_probe` is the same generator built
/// at another batch size: comparing the two tells each tensor's batch axis apart, which a
/// reshape's target shape must leave to the runtime.
pub fn translate(
    graph: &Graph,
    generator: &GeneratorNodes,
    weights: &[NamedTensor],
    batch_probe: Option<&Graph>,
) -> Result<Translated> {
    if let Some(probe) = batch_probe
        && probe.nodes.len() != graph.nodes.len()
    {
        return Err(export_error(format!(
            "the generator has {} nodes at batch {} but {} at another batch; a dynamic batch \
             needs one graph for every batch size (export with a fixed --batch)",
            graph.nodes.len(),
            generator.batch,
            probe.nodes.len()
        )));
    }
    let mut t = Translator {
        graph,
        generator,
        batch_probe,
        weights: weights.iter().map(|w| (w.name.as_str(), w)).collect(),
        values: HashMap::new(),
        onnx_kernels: HashMap::new(),
        out: Translated {
            nodes: Vec::new(),
            initializers: Vec::new(),
        },
    };
    let needed = lower::ancestors(graph, &[generator.image]);
    for id in (0..graph.nodes.len()).filter(|&id| needed[id]) {
        t.emit(id)?;
    }
    let image = t.value(generator.image, Layout::Graph)?;
    if image != IMAGE_OUTPUT {
        // The image is an input or a weight itself: no op wrote it under its ONNX name.
        t.push(
            "Identity",
            IMAGE_OUTPUT,
            vec![image],
            IMAGE_OUTPUT,
            vec![],
            "",
        );
    }
    Ok(t.out)
}

struct Translator<'a> {
    graph: &'a Graph,
    generator: &'a GeneratorNodes,
    batch_probe: Option<&'a Graph>,
    weights: HashMap<&'a str, &'a NamedTensor>,
    /// The ONNX value holding a graph node's tensor in a layout.
    values: HashMap<(NodeId, Layout), String>,
    /// Convolution kernels transposed to ONNX's layout, by parameter.
    onnx_kernels: HashMap<NodeId, String>,
    out: Translated,
}

impl Translator<'_> {
    fn name(&self, id: NodeId) -> &str {
        &self.graph.nodes[id].name
    }

    /// Where an op writes `id`'s tensor in `layout`; the image goes to the model's output.
    fn output_name(&self, id: NodeId, layout: Layout) -> String {
        match layout {
            Layout::Graph if id == self.generator.image => IMAGE_OUTPUT.to_string(),
            Layout::Graph => self.name(id).to_string(),
            Layout::ChannelsFirst => format!("{}/nchw", self.name(id)),
        }
    }

    fn push(
        &mut self,
        op_type: &str,
        name: &str,
        input: Vec<String>,
        output: &str,
        attribute: Vec<AttributeProto>,
        doc: &str,
    ) {
        self.out.nodes.push(NodeProto {
            input,
            output: vec![output.to_string()],
            name: name.to_string(),
            op_type: op_type.to_string(),
            attribute,
            doc_string: doc.to_string(),
        });
    }

    /// `id`'s tensor in `layout`, transposed (once) from the other layout if need be.
    fn value(&mut self, id: NodeId, layout: Layout) -> Result<String> {
        if let Some(name) = self.values.get(&(id, layout)) {
            return Ok(name.clone());
        }
        if Some(id) == self.generator.labels {
            return Err(export_error(format!(
                "the class labels ({}) feed an op that is not an embedding lookup; ONNX's \
                 `{LABEL_INPUT}` input holds int64 class ids, which only a lookup can read",
                self.name(id)
            )));
        }
        let (from, perm) = match layout {
            Layout::Graph => (Layout::ChannelsFirst, TO_CHANNELS_LAST),
            Layout::ChannelsFirst => (Layout::Graph, TO_CHANNELS_FIRST),
        };
        let Some(source) = self.values.get(&(id, from)).cloned() else {
            return Err(export_error(format!(
                "node {} is read before it is computed (the graph is not in topological order)",
                self.name(id)
            )));
        };
        if self.graph.shape(id).len() != 4 {
            return Err(export_error(format!(
                "node {} has shape {:?}; only NHWC images change layout",
                self.name(id),
                self.graph.shape(id)
            )));
        }
        let out = self.output_name(id, layout);
        let node_name = format!("{out}/transpose");
        let perm = AttributeProto::ints("perm", &perm);
        self.push("Transpose", &node_name, vec![source], &out, vec![perm], "");
        self.values.insert((id, layout), out.clone());
        Ok(out)
    }

    /// The layout `id` already has, channels-first where it has both.
    fn present_layout(&self, id: NodeId) -> Layout {
        if self.values.contains_key(&(id, Layout::ChannelsFirst)) {
            Layout::ChannelsFirst
        } else {
            Layout::Graph
        }
    }

    /// A convolution kernel in ONNX's layout (OIHW, or IOHW for a transposed one).
    fn onnx_kernel(&mut self, w: NodeId) -> Result<String> {
        if let Some(name) = self.onnx_kernels.get(&w) {
            return Ok(name.clone());
        }
        let keras = self.value(w, Layout::Graph)?;
        let out = format!("{keras}/onnx_layout");
        let perm = AttributeProto::ints("perm", &KERNEL_TO_ONNX);
        let doc = "Keras HWIO/HWOI kernel to ONNX's OIHW/IOHW";
        self.push("Transpose", &out, vec![keras], &out, vec![perm], doc);
        self.onnx_kernels.insert(w, out.clone());
        Ok(out)
    }

    fn emit(&mut self, id: NodeId) -> Result<()> {
        let graph = self.graph;
        let node = &graph.nodes[id];
        let name = node.name.clone();
        match node.op {
            Op::Input(InputSource::External) if id == self.generator.z => {
                self.values
                    .insert((id, Layout::Graph), NOISE_INPUT.to_string());
            }
            // Read by name by the lookups; `value` refuses anything else.
            Op::Input(InputSource::External) if Some(id) == self.generator.labels => {}
            Op::Input(source) => {
                return Err(export_error(format!(
                    "input {name} ({source:?}) is neither the generator's noise nor its labels; \
                     an exported generator takes all its inputs from the caller"
                )));
            }
            Op::Param(_) | Op::State(_) => {
                let weight = self
                    .weights
                    .get(name.as_str())
                    .ok_or_else(|| export_error(format!("no weights for {name}")))?;
                if weight.shape != node.shape {
                    return Err(export_error(format!(
                        "weights {name} have shape {:?}, the graph needs {:?}",
                        weight.shape, node.shape
                    )));
                }
                let tensor = TensorProto::f32(&name, &weight.shape, &weight.data);
                self.out.initializers.push(tensor);
                self.values.insert((id, Layout::Graph), name);
            }
            Op::Dense { x, w, b } => {
                let mut inputs = vec![self.value(x, Layout::Graph)?, self.value(w, Layout::Graph)?];
                if let Some(b) = b {
                    inputs.push(self.value(b, Layout::Graph)?);
                }
                let out = self.output_name(id, Layout::Graph);
                let doc = "Keras Dense: y = x·kernel (+ bias)";
                self.push("Gemm", &name, inputs, &out, vec![], doc);
                self.values.insert((id, Layout::Graph), out);
            }
            Op::Conv2d { x, w, b, geom } => {
                let mut inputs = vec![self.value(x, Layout::ChannelsFirst)?, self.onnx_kernel(w)?];
                if let Some(b) = b {
                    inputs.push(self.value(b, Layout::Graph)?);
                }
                let out = self.output_name(id, Layout::ChannelsFirst);
                let (attrs, doc) = conv_attributes(&geom);
                self.push("Conv", &name, inputs, &out, attrs, &doc);
                self.values.insert((id, Layout::ChannelsFirst), out);
            }
            Op::ConvTranspose2d { x, w, b, geom } => {
                let mut inputs = vec![self.value(x, Layout::ChannelsFirst)?, self.onnx_kernel(w)?];
                if let Some(b) = b {
                    inputs.push(self.value(b, Layout::Graph)?);
                }
                let out = self.output_name(id, Layout::ChannelsFirst);
                let (attrs, doc) = conv_transpose_attributes(&geom);
                self.push("ConvTranspose", &name, inputs, &out, attrs, &doc);
                self.values.insert((id, Layout::ChannelsFirst), out);
            }
            Op::Activation { x, act } => {
                let layout = self.present_layout(x);
                let input = self.value(x, layout)?;
                let out = self.output_name(id, layout);
                let (op_type, attrs) = match act {
                    Activation::Relu => ("Relu", vec![]),
                    // Both are x for x >= 0, alpha·x below.
                    Activation::LeakyRelu(alpha) => {
                        ("LeakyRelu", vec![AttributeProto::float("alpha", alpha)])
                    }
                    Activation::Tanh => ("Tanh", vec![]),
                    Activation::Sigmoid => ("Sigmoid", vec![]),
                };
                self.push(op_type, &name, vec![input], &out, attrs, "");
                self.values.insert((id, layout), out);
            }
            Op::Reshape { x } => {
                let input = self.value(x, Layout::Graph)?;
                let (target, allow_zero) = self.reshape_target(id, x)?;
                let shape = format!("{name}/shape");
                let constant = AttributeProto::tensor("value", TensorProto::i64s(&shape, &target));
                self.push("Constant", &shape, vec![], &shape, vec![constant], "");
                let out = self.output_name(id, Layout::Graph);
                let attrs = vec![AttributeProto::int("allowzero", allow_zero)];
                self.push("Reshape", &name, vec![input, shape], &out, attrs, "");
                self.values.insert((id, Layout::Graph), out);
            }
            Op::Embedding { table, labels } => {
                if Some(labels) != self.generator.labels {
                    return Err(export_error(format!(
                        "embedding {name} looks up {}, which is not the generator's labels input",
                        self.name(labels)
                    )));
                }
                let inputs = vec![self.value(table, Layout::Graph)?, LABEL_INPUT.to_string()];
                let out = self.output_name(id, Layout::Graph);
                let axis = vec![AttributeProto::int("axis", 0)];
                let doc = "Keras Embedding: the table's row of each label";
                self.push("Gather", &name, inputs, &out, axis, doc);
                self.values.insert((id, Layout::Graph), out);
            }
            Op::Add { a, b } | Op::Concat { a, b } => {
                // Channels-first only when both already are; otherwise one transpose either way.
                // The batch is axis 0 in both layouts, so a concatenation does not care.
                let both_first = [a, b]
                    .iter()
                    .all(|&x| self.present_layout(x) == Layout::ChannelsFirst);
                let layout = if both_first {
                    Layout::ChannelsFirst
                } else {
                    Layout::Graph
                };
                let inputs = vec![self.value(a, layout)?, self.value(b, layout)?];
                let out = self.output_name(id, layout);
                match node.op {
                    Op::Add { .. } => self.push("Add", &name, inputs, &out, vec![], ""),
                    _ => {
                        let axis = vec![AttributeProto::int("axis", 0)];
                        self.push("Concat", &name, inputs, &out, axis, "batch axis");
                    }
                }
                self.values.insert((id, layout), out);
            }
            Op::RowDot { a, b } => {
                let inputs = vec![self.value(a, Layout::Graph)?, self.value(b, Layout::Graph)?];
                let product = format!("{name}/product");
                self.push("Mul", &product, inputs, &product, vec![], "");
                let axes = format!("{name}/axes");
                let constant = AttributeProto::tensor("value", TensorProto::i64s(&axes, &[1]));
                self.push("Constant", &axes, vec![], &axes, vec![constant], "");
                let out = self.output_name(id, Layout::Graph);
                let keep = vec![AttributeProto::int("keepdims", 1)];
                self.push("ReduceSum", &name, vec![product, axes], &out, keep, "");
                self.values.insert((id, Layout::Graph), out);
            }
            Op::BatchNorm {
                x,
                gamma,
                beta,
                mean,
                var,
                epsilon,
                mode: BatchNormMode::Inference,
            } => {
                // ONNX normalises axis 1: the channels of NCHW, the features of [N, C].
                let layout = if graph.shape(x).len() == 4 {
                    Layout::ChannelsFirst
                } else {
                    Layout::Graph
                };
                let inputs = vec![
                    self.value(x, layout)?,
                    self.value(gamma, Layout::Graph)?,
                    self.value(beta, Layout::Graph)?,
                    self.value(mean, Layout::Graph)?,
                    self.value(var, Layout::Graph)?,
                ];
                let out = self.output_name(id, layout);
                let attrs = vec![AttributeProto::float("epsilon", epsilon)];
                let doc = "Keras BatchNormalization, inference: the running statistics";
                self.push("BatchNormalization", &name, inputs, &out, attrs, doc);
                self.values.insert((id, layout), out);
            }
            Op::BatchNorm { .. } | Op::Dropout { .. } => {
                return Err(export_error(format!(
                    "op {} (node {name}) is in training mode: an exported generator runs \
                     inference, with BatchNorm's running statistics and no dropout",
                    op_name(&node.op)
                )));
            }
            Op::BceWithLogits { .. } | Op::SoftmaxCrossEntropy { .. } => {
                return Err(export_error(format!(
                    "op {} (node {name}) has no ONNX translation: it is a training loss, \
                     and the generator's image must not depend on one",
                    op_name(&node.op)
                )));
            }
        }
        Ok(())
    }

    /// A reshape's target shape and Reshape's `allowzero`. At a fixed batch it is the
    /// graph's shape, literally. With a dynamic batch the batch axis is written 0 ("copy
    /// the input's"), so input and output must both have it first, and no other axis may
    /// depend on the batch.
    fn reshape_target(&self, id: NodeId, x: NodeId) -> Result<(Vec<i64>, i64)> {
        let to = self.graph.shape(id);
        let Some(probe) = self.batch_probe else {
            return Ok((to.iter().map(|&d| d as i64).collect(), 1));
        };
        let (from, probe_from, probe_to) = (self.graph.shape(x), probe.shape(x), probe.shape(id));
        let batch_first = |a: &[usize], b: &[usize]| {
            a.len() == b.len() && !a.is_empty() && a[0] != b[0] && a[1..] == b[1..]
        };
        if !(batch_first(from, probe_from) && batch_first(to, probe_to) && from[0] == to[0]) {
            return Err(export_error(format!(
                "reshape {} ({from:?} -> {to:?}) does not keep the batch as its first axis, \
                 so it cannot take a dynamic batch; export with a fixed --batch",
                self.name(id)
            )));
        }
        let mut target: Vec<i64> = to.iter().map(|&d| d as i64).collect();
        target[0] = 0;
        Ok((target, 0))
    }
}

fn conv_attributes(geom: &Conv2dGeometry) -> (Vec<AttributeProto>, String) {
    let pads = [geom.pad_top, geom.pad_left, geom.pad_bottom, geom.pad_right];
    let attrs = vec![
        AttributeProto::ints("kernel_shape", &[geom.k_h as i64, geom.k_w as i64]),
        AttributeProto::ints("strides", &[geom.stride_h as i64, geom.stride_w as i64]),
        AttributeProto::ints("pads", &pads.map(|p| p as i64)),
        AttributeProto::ints("dilations", &[1, 1]),
    ];
    let doc = format!(
        "Keras Conv2D: zero padding top {} left {} bottom {} right {} (TF puts an odd \
         padding's extra zero after)",
        pads[0], pads[1], pads[2], pads[3]
    );
    (attrs, doc)
}

fn conv_transpose_attributes(geom: &ConvTranspose2dGeometry) -> (Vec<AttributeProto>, String) {
    let pads = ConvTransposePads::of(geom);
    let attrs = vec![
        AttributeProto::ints("kernel_shape", &[geom.k_h as i64, geom.k_w as i64]),
        AttributeProto::ints("strides", &[geom.stride_h as i64, geom.stride_w as i64]),
        AttributeProto::ints("pads", &pads.onnx_pads()),
        AttributeProto::ints("output_padding", &pads.output_padding.map(|p| p as i64)),
        AttributeProto::ints("dilations", &[1, 1]),
    ];
    let doc = format!(
        "Keras Conv2DTranspose: of the full {}x{} result, crop {}/{} rows and {}/{} columns \
         (before/after), then add {} rows and {} columns of bias only",
        geom.full_h(),
        geom.full_w(),
        pads.begin[0],
        pads.end[0],
        pads.begin[1],
        pads.end[1],
        pads.output_padding[0],
        pads.output_padding[1]
    );
    (attrs, doc)
}
