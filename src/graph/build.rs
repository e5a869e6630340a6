//! Shape-inferring layer builders: a model says what a layer is (`conv2d("conv1", x, 32,
//! (3, 3), (2, 2), Padding::Valid)`), the builder reads the input's shape, creates the
//! layer's initialised parameters and computes the output's shape. No intermediate size is
//! ever written by hand, so changing one layer reshapes everything after it.
//!
//! Names come from two scopes (see [`Graph::scoped`]): parameters are named
//! `<param scope>.<layer>.kernel`/`.bias`, op nodes `<node scope>.<layer>`. A parameter
//! that already exists under its name is reused, which is how one discriminator is applied
//! to the real and the fake batch with shared weights.

use std::ops::Range;

use crate::cpu::Activation;
use crate::error::{Error, Result};
use crate::geometry::{Conv2dGeometry, ConvTranspose2dGeometry};
use crate::graph::{BatchNormMode, Graph, Init, NodeId, Op};

/// Keras BatchNormalization's defaults.
pub const BATCH_NORM_MOMENTUM: f32 = 0.99;
pub const BATCH_NORM_EPSILON: f32 = 1e-3;

/// Keras's `padding` argument.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Padding {
    Valid,
    Same,
}

fn shape_error(op: &'static str, message: String) -> Error {
    Error::Shape { op, message }
}

fn join(scope: &str, name: &str) -> String {
    if scope.is_empty() {
        name.to_string()
    } else {
        format!("{scope}.{name}")
    }
}

/// An NHWC image tensor's (batch, height, width, channels).
fn nhwc(graph: &Graph, op: &'static str, layer: &str, x: NodeId) -> Result<[usize; 4]> {
    match *graph.shape(x) {
        [b, h, w, c] => Ok([b, h, w, c]),
        ref other => Err(shape_error(
            op,
            format!("{layer}: input must be NHWC [batch, height, width, channels], got {other:?}"),
        )),
    }
}

impl Graph {
    /// Runs `build` with parameters named under `params` and op nodes under `nodes`
    /// (nested scopes replace, they do not stack), then restores the previous scopes.
    pub fn scoped<T>(
        &mut self,
        params: &str,
        nodes: &str,
        build: impl FnOnce(&mut Graph) -> T,
    ) -> T {
        let saved = (
            std::mem::replace(&mut self.param_scope, params.to_string()),
            std::mem::replace(&mut self.node_scope, nodes.to_string()),
        );
        let out = build(self);
        (self.param_scope, self.node_scope) = saved;
        out
    }

    /// The full name of op node `layer` in the current scope.
    pub fn node_name(&self, layer: &str) -> String {
        join(&self.node_scope, layer)
    }

    /// Runs `build` with every parameter and state under `source.` replaced by a state
    /// node under `shadow.` (the same name after the prefix), initialised as a copy of the
    /// source, which must exist. This is how a moving average of a network's weights is
    /// built: the network's own builder, run again under the shadow names. Returns `build`'s
    /// result and the (source, shadow) pairs it used, in first-use order.
    pub fn shadowed<T>(
        &mut self,
        source: &str,
        shadow: &str,
        build: impl FnOnce(&mut Graph) -> Result<T>,
    ) -> Result<(T, Vec<(NodeId, NodeId)>)> {
        let saved = self
            .shadow
            .replace((format!("{source}."), format!("{shadow}."), Vec::new()));
        let out = build(self);
        let (_, _, pairs) = std::mem::replace(&mut self.shadow, saved).unwrap_or_default();
        Ok((out?, pairs))
    }

    /// The node `full` (a parameter or state, as `is_state` says): created with `init` on
    /// first use, reused (with its kind and shape checked) when it exists; under
    /// [`Graph::shadowed`], its shadow instead.
    fn weight_named(
        &mut self,
        full: String,
        init: Init,
        shape: Vec<usize>,
        is_state: bool,
    ) -> Result<NodeId> {
        let check = |g: &Graph, id: NodeId, state: bool| {
            let kind_ok = match g.nodes[id].op {
                Op::Param(_) => !state,
                Op::State(_) => state,
                _ => false,
            };
            if !kind_ok || g.nodes[id].shape != shape {
                return Err(shape_error(
                    "param",
                    format!(
                        "{full} exists as {:?} with shape {:?}, this layer needs {} of \
                         shape {shape:?}",
                        g.nodes[id].op,
                        g.nodes[id].shape,
                        if state { "a state" } else { "a parameter" }
                    ),
                ));
            }
            Ok(id)
        };
        let shadow_name = self.shadow.as_ref().and_then(|(source, shadow, _)| {
            full.strip_prefix(source.as_str())
                .map(|rest| format!("{shadow}{rest}"))
        });
        if let Some(name) = shadow_name {
            let Some(of) = self.find(&full) else {
                return Err(shape_error(
                    "param",
                    format!("{name} shadows {full}, which does not exist"),
                ));
            };
            check(self, of, is_state)?;
            let id = match self.find(&name) {
                Some(id) => check(self, id, true)?,
                None => self.push(name, Op::State(Init::CopyOf { of }), shape.clone()),
            };
            if let Some((_, _, pairs)) = self.shadow.as_mut()
                && !pairs.contains(&(of, id))
            {
                pairs.push((of, id));
            }
            return Ok(id);
        }
        if let Some(id) = self.find(&full) {
            return check(self, id, is_state);
        }
        let op = if is_state {
            Op::State(init)
        } else {
            Op::Param(init)
        };
        Ok(self.push(full, op, shape))
    }

    /// The parameter `<param scope>.<name>`: created with `init` on first use, reused (with
    /// its shape checked) when it exists.
    pub fn param_named(&mut self, name: &str, init: Init, shape: Vec<usize>) -> Result<NodeId> {
        let full = join(&self.param_scope, name);
        self.weight_named(full, init, shape, false)
    }

    /// The state `<param scope>.<name>` (see [`Op::State`]), as [`Graph::param_named`].
    pub fn state_named(&mut self, name: &str, init: Init, shape: Vec<usize>) -> Result<NodeId> {
        let full = join(&self.param_scope, name);
        self.weight_named(full, init, shape, true)
    }

    /// A kernel with Keras's Glorot-uniform fans (receptive field times the last two axes)
    /// and, with `bias`, a zero bias of `units`.
    fn kernel_and_bias(
        &mut self,
        layer: &str,
        shape: Vec<usize>,
        units: usize,
        bias: bool,
    ) -> Result<(NodeId, Option<NodeId>)> {
        let (receptive, axes) = shape.split_at(shape.len() - 2);
        let receptive: usize = receptive.iter().product();
        let init = Init::GlorotUniform {
            fan_in: receptive * axes[0],
            fan_out: receptive * axes[1],
        };
        let w = self.param_named(&format!("{layer}.kernel"), init, shape)?;
        let b = if bias {
            Some(self.param_named(&format!("{layer}.bias"), Init::Zeros, vec![units])?)
        } else {
            None
        };
        Ok((w, b))
    }

    /// Keras Dense(units): `x [batch, in] · kernel [in, units] + bias [units]`.
    pub fn dense(&mut self, layer: &str, x: NodeId, units: usize) -> Result<NodeId> {
        self.dense_layer(layer, x, units, true)
    }

    /// Keras Dense(units, use_bias=False): x [batch, in] · kernel [in, units].
    pub fn dense_no_bias(&mut self, layer: &str, x: NodeId, units: usize) -> Result<NodeId> {
        self.dense_layer(layer, x, units, false)
    }

    fn dense_layer(&mut self, layer: &str, x: NodeId, units: usize, bias: bool) -> Result<NodeId> {
        let &[batch, in_f] = self.shape(x) else {
            return Err(shape_error(
                "dense",
                format!(
                    "{layer}: input must be [batch, features], got {:?} (flatten it first)",
                    self.shape(x)
                ),
            ));
        };
        let (w, b) = self.kernel_and_bias(layer, vec![in_f, units], units, bias)?;
        let name = self.node_name(layer);
        Ok(self.push(name, Op::Dense { x, w, b }, vec![batch, units]))
    }

    /// Keras Conv2D(filters, kernel, strides, padding) on NHWC x, kernel HWIO.
    pub fn conv2d(
        &mut self,
        layer: &str,
        x: NodeId,
        filters: usize,
        kernel: (usize, usize),
        stride: (usize, usize),
        padding: Padding,
    ) -> Result<NodeId> {
        let [batch, h, w_, c] = nhwc(self, "conv2d", layer, x)?;
        let make = match padding {
            Padding::Valid => Conv2dGeometry::valid,
            Padding::Same => Conv2dGeometry::same,
        };
        let geom = make(
            batch, h, w_, c, filters, kernel.0, kernel.1, stride.0, stride.1,
        );
        self.conv2d_with(layer, x, geom)
    }

    /// A conv2d of any geometry (explicit, unequal paddings): the geometry's input must
    /// be x's shape.
    pub fn conv2d_with(&mut self, layer: &str, x: NodeId, geom: Conv2dGeometry) -> Result<NodeId> {
        self.conv2d_layer(layer, x, geom, true)
    }

    /// [`Graph::conv2d_with`] without a bias (Keras's `use_bias=False`).
    pub fn conv2d_no_bias(
        &mut self,
        layer: &str,
        x: NodeId,
        geom: Conv2dGeometry,
    ) -> Result<NodeId> {
        self.conv2d_layer(layer, x, geom, false)
    }

    fn conv2d_layer(
        &mut self,
        layer: &str,
        x: NodeId,
        geom: Conv2dGeometry,
        bias: bool,
    ) -> Result<NodeId> {
        geom.validate()?;
        let expected = [geom.batch, geom.in_h, geom.in_w, geom.in_c];
        if self.shape(x) != expected {
            return Err(shape_error(
                "conv2d",
                format!(
                    "{layer}: input is {:?}, the geometry takes {expected:?}",
                    self.shape(x)
                ),
            ));
        }
        let (k_h, k_w, c, filters) = (geom.k_h, geom.k_w, geom.in_c, geom.out_c);
        let (w, b) = self.kernel_and_bias(layer, vec![k_h, k_w, c, filters], filters, bias)?;
        let shape = vec![geom.batch, geom.out_h(), geom.out_w(), filters];
        let name = self.node_name(layer);
        Ok(self.push(name, Op::Conv2d { x, w, b, geom }, shape))
    }

    /// Keras Conv2DTranspose(filters, kernel, strides, padding) on NHWC x, kernel HWOI.
    pub fn conv_transpose2d(
        &mut self,
        layer: &str,
        x: NodeId,
        filters: usize,
        kernel: (usize, usize),
        stride: (usize, usize),
        padding: Padding,
    ) -> Result<NodeId> {
        let geom = self.keras_conv_transpose(layer, x, filters, kernel, stride, padding)?;
        self.conv_transpose2d_layer(layer, x, geom, true)
    }

    /// Keras Conv2DTranspose(..., use_bias=False).
    pub fn conv_transpose2d_no_bias(
        &mut self,
        layer: &str,
        x: NodeId,
        filters: usize,
        kernel: (usize, usize),
        stride: (usize, usize),
        padding: Padding,
    ) -> Result<NodeId> {
        let geom = self.keras_conv_transpose(layer, x, filters, kernel, stride, padding)?;
        self.conv_transpose2d_layer(layer, x, geom, false)
    }

    fn keras_conv_transpose(
        &self,
        layer: &str,
        x: NodeId,
        filters: usize,
        kernel: (usize, usize),
        stride: (usize, usize),
        padding: Padding,
    ) -> Result<ConvTranspose2dGeometry> {
        let [batch, h, w_, c] = nhwc(self, "conv_transpose2d", layer, x)?;
        let make = match padding {
            Padding::Valid => ConvTranspose2dGeometry::keras_valid,
            Padding::Same => ConvTranspose2dGeometry::keras_same,
        };
        Ok(make(
            batch, h, w_, c, filters, kernel.0, kernel.1, stride.0, stride.1, None,
        ))
    }

    /// A transposed conv of any geometry (output padding, any crop): the geometry's input
    /// must be x's shape.
    pub fn conv_transpose2d_with(
        &mut self,
        layer: &str,
        x: NodeId,
        geom: ConvTranspose2dGeometry,
    ) -> Result<NodeId> {
        self.conv_transpose2d_layer(layer, x, geom, true)
    }

    fn conv_transpose2d_layer(
        &mut self,
        layer: &str,
        x: NodeId,
        geom: ConvTranspose2dGeometry,
        bias: bool,
    ) -> Result<NodeId> {
        geom.validate()?;
        let expected = [geom.batch, geom.in_h, geom.in_w, geom.in_c];
        if self.shape(x) != expected {
            return Err(shape_error(
                "conv_transpose2d",
                format!(
                    "{layer}: input is {:?}, the geometry takes {expected:?}",
                    self.shape(x)
                ),
            ));
        }
        let (k_h, k_w, c, filters) = (geom.k_h, geom.k_w, geom.in_c, geom.out_c);
        let (w, b) = self.kernel_and_bias(layer, vec![k_h, k_w, filters, c], filters, bias)?;
        let shape = vec![geom.batch, geom.out_h, geom.out_w, filters];
        let name = self.node_name(layer);
        Ok(self.push(name, Op::ConvTranspose2d { x, w, b, geom }, shape))
    }

    pub fn activation(&mut self, layer: &str, x: NodeId, act: Activation) -> NodeId {
        let shape = self.shape(x).to_vec();
        let name = self.node_name(layer);
        self.push(name, Op::Activation { x, act }, shape)
    }

    /// Keras BatchNormalization() over x's last axis, with Keras's momentum (0.99) and
    /// epsilon (1e-3): `<layer>.gamma` (ones) and `<layer>.beta` (zeros) are trained, the
    /// running `<layer>.moving_mean` (zeros) and `<layer>.moving_variance` (ones) are
    /// states. `training` normalises with the batch's statistics and moves the running
    /// ones; otherwise the running ones are used.
    pub fn batch_norm(&mut self, layer: &str, x: NodeId, training: bool) -> Result<NodeId> {
        let mode = if training {
            BatchNormMode::Training {
                momentum: BATCH_NORM_MOMENTUM,
            }
        } else {
            BatchNormMode::Inference
        };
        self.batch_norm_with(layer, x, BATCH_NORM_EPSILON, mode)
    }

    /// [`Graph::batch_norm`] with any epsilon and momentum.
    pub fn batch_norm_with(
        &mut self,
        layer: &str,
        x: NodeId,
        epsilon: f32,
        mode: BatchNormMode,
    ) -> Result<NodeId> {
        let shape = self.shape(x).to_vec();
        let channels = match shape.last() {
            Some(&c) if shape.len() >= 2 && c > 0 => c,
            _ => {
                return Err(shape_error(
                    "batch_norm",
                    format!("{layer}: input must be [batch, ..., channels], got {shape:?}"),
                ));
            }
        };
        let momentum_ok = match mode {
            BatchNormMode::Training { momentum } => (0.0..=1.0).contains(&momentum),
            BatchNormMode::Inference => true,
        };
        if !(epsilon > 0.0 && epsilon.is_finite() && momentum_ok) {
            return Err(shape_error(
                "batch_norm",
                format!("{layer}: epsilon {epsilon} must be positive, {mode:?} in [0, 1]"),
            ));
        }
        let c = vec![channels];
        let gamma = self.param_named(&format!("{layer}.gamma"), Init::Ones, c.clone())?;
        let beta = self.param_named(&format!("{layer}.beta"), Init::Zeros, c.clone())?;
        let mean = self.state_named(&format!("{layer}.moving_mean"), Init::Zeros, c.clone())?;
        let var = self.state_named(&format!("{layer}.moving_variance"), Init::Ones, c)?;
        let name = self.node_name(layer);
        let op = Op::BatchNorm {
            x,
            gamma,
            beta,
            mean,
            var,
            epsilon,
            mode,
        };
        Ok(self.push(name, op, shape))
    }

    /// Keras Dropout(rate) in training, its mask drawn on noise stream `slot`.
    pub fn dropout(&mut self, layer: &str, x: NodeId, rate: f32, slot: u32) -> Result<NodeId> {
        if !(0.0..1.0).contains(&rate) {
            return Err(shape_error(
                "dropout",
                format!("{layer}: rate {rate} must lie in [0, 1)"),
            ));
        }
        if slot >= crate::graph::RandomStreams::MAX_NOISE_SLOTS {
            return Err(shape_error(
                "dropout",
                format!(
                    "{layer}: noise slot {slot}, there are {}",
                    crate::graph::RandomStreams::MAX_NOISE_SLOTS
                ),
            ));
        }
        let shape = self.shape(x).to_vec();
        let name = self.node_name(layer);
        Ok(self.push(name, Op::Dropout { x, rate, slot }, shape))
    }

    /// Same data, new shape; the element counts must agree.
    pub fn reshape(&mut self, layer: &str, x: NodeId, shape: Vec<usize>) -> Result<NodeId> {
        let from: usize = self.shape(x).iter().product();
        let to: usize = shape.iter().product();
        if from != to {
            return Err(shape_error(
                "reshape",
                format!(
                    "{layer}: cannot reshape {:?} ({from} elements) to {shape:?} ({to})",
                    self.shape(x)
                ),
            ));
        }
        let name = self.node_name(layer);
        Ok(self.push(name, Op::Reshape { x }, shape))
    }

    /// [batch, ...] -> [batch, product of the rest] (NHWC order, free).
    pub fn flatten(&mut self, layer: &str, x: NodeId) -> Result<NodeId> {
        let shape = self.shape(x);
        let batch = shape.first().copied().unwrap_or(0);
        let rest = shape.iter().skip(1).product();
        self.reshape(layer, x, vec![batch, rest])
    }

    /// [batch, h·w·c] -> [batch, h, w, c] (free).
    pub fn unflatten(
        &mut self,
        layer: &str,
        x: NodeId,
        (h, w, c): (usize, usize, usize),
    ) -> Result<NodeId> {
        let batch = self.shape(x).first().copied().unwrap_or(0);
        self.reshape(layer, x, vec![batch, h, w, c])
    }

    /// Keras Embedding(classes, dim) applied to class labels `[batch]` (u32 bits): a table
    /// `<layer>.embeddings` [classes, dim], uniform in ±0.05 as Keras initialises it.
    pub fn embedding(
        &mut self,
        layer: &str,
        labels: NodeId,
        classes: usize,
        dim: usize,
    ) -> Result<NodeId> {
        let &[batch] = self.shape(labels) else {
            return Err(shape_error(
                "embedding",
                format!(
                    "{layer}: labels must be [batch], got {:?}",
                    self.shape(labels)
                ),
            ));
        };
        let init = Init::Uniform { limit: 0.05 };
        let table = self.param_named(&format!("{layer}.embeddings"), init, vec![classes, dim])?;
        let name = self.node_name(layer);
        Ok(self.push(name, Op::Embedding { table, labels }, vec![batch, dim]))
    }

    /// a + b for tensors of one shape.
    pub fn add(&mut self, layer: &str, a: NodeId, b: NodeId) -> Result<NodeId> {
        if self.shape(a) != self.shape(b) {
            return Err(shape_error(
                "add",
                format!(
                    "{layer}: shapes {:?} and {:?} differ",
                    self.shape(a),
                    self.shape(b)
                ),
            ));
        }
        let shape = self.shape(a).to_vec();
        let name = self.node_name(layer);
        Ok(self.push(name, Op::Add { a, b }, shape))
    }

    /// The dot product of each row of a and b [batch, n]: [batch, 1].
    pub fn row_dot(&mut self, layer: &str, a: NodeId, b: NodeId) -> Result<NodeId> {
        let (&[batch, _], true) = (self.shape(a), self.shape(a) == self.shape(b)) else {
            return Err(shape_error(
                "row_dot",
                format!(
                    "{layer}: needs two [batch, n] tensors of one shape, got {:?} and {:?}",
                    self.shape(a),
                    self.shape(b)
                ),
            ));
        };
        let name = self.node_name(layer);
        Ok(self.push(name, Op::RowDot { a, b }, vec![batch, 1]))
    }

    /// Mean binary cross-entropy of logits [batch, 1] against a constant label. Its value
    /// is `[loss, mean sigmoid(logits)]`.
    pub fn bce_with_logits(&mut self, name: &str, logits: NodeId, label: f32) -> Result<NodeId> {
        let batch = self.shape(logits).first().copied().unwrap_or(0);
        self.bce_with_logits_rows(name, logits, label, 0..batch)
    }

    /// [`Graph::bce_with_logits`] of the logits in `rows` only, e.g. the real half of a
    /// discriminator's [real; fake] batch; the other rows get no gradient from it.
    pub fn bce_with_logits_rows(
        &mut self,
        name: &str,
        logits: NodeId,
        label: f32,
        rows: Range<usize>,
    ) -> Result<NodeId> {
        let &[batch, 1] = self.shape(logits) else {
            return Err(shape_error(
                "bce_with_logits",
                format!(
                    "{name}: logits must be [batch, 1], got {:?}",
                    self.shape(logits)
                ),
            ));
        };
        if rows.is_empty() || rows.end > batch {
            return Err(shape_error(
                "bce_with_logits",
                format!("{name}: rows {rows:?} must be a non-empty range within 0..{batch}"),
            ));
        }
        let name = self.node_name(name);
        let op = Op::BceWithLogits {
            logits,
            label,
            first: rows.start,
            count: rows.len(),
        };
        Ok(self.push(name, op, vec![2]))
    }

    /// a's rows followed by b's: two tensors whose shapes agree after the first axis,
    /// e.g. a discriminator's real and fake batches as one.
    pub fn concat(&mut self, layer: &str, a: NodeId, b: NodeId) -> Result<NodeId> {
        let (sa, sb) = (self.shape(a), self.shape(b));
        if sa.is_empty() || sa.len() != sb.len() || sa[1..] != sb[1..] {
            return Err(shape_error(
                "concat",
                format!("{layer}: shapes {sa:?} and {sb:?} differ after the first axis"),
            ));
        }
        let mut shape = sa.to_vec();
        shape[0] += sb[0];
        let name = self.node_name(layer);
        Ok(self.push(name, Op::Concat { a, b }, shape))
    }

    /// Mean softmax cross-entropy of logits `[batch, classes]` against class labels `[batch]`.
    /// Its value is `[loss, accuracy]`.
    pub fn softmax_cross_entropy(
        &mut self,
        name: &str,
        logits: NodeId,
        labels: NodeId,
    ) -> Result<NodeId> {
        let &[batch, _classes] = self.shape(logits) else {
            return Err(shape_error(
                "softmax_cross_entropy",
                format!(
                    "{name}: logits must be [batch, classes], got {:?}",
                    self.shape(logits)
                ),
            ));
        };
        if self.shape(labels) != [batch] {
            return Err(shape_error(
                "softmax_cross_entropy",
                format!(
                    "{name}: labels have shape {:?}, expected [{batch}]",
                    self.shape(labels)
                ),
            ));
        }
        let name = self.node_name(name);
        Ok(self.push(name, Op::SoftmaxCrossEntropy { logits, labels }, vec![2]))
    }
}
