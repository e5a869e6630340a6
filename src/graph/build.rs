//! Shape-inferring layer builders: a model says what a layer is (`conv2d("conv1", x, 32,
//! (3, 3), (2, 2), Padding::Valid)`), the builder reads the input's shape, creates the
//! layer's initialised parameters and computes the output's shape. No intermediate size is
//! ever written by hand, so changing one layer reshapes everything after it.
//!
//! Names come from two scopes (see [`Graph::scoped`]): parameters are named
//! `<param scope>.<layer>.kernel`/`.bias`, op nodes `<node scope>.<layer>`. A parameter
//! that already exists under its name is reused, which is how one discriminator is applied
//! to the real and the fake batch with shared weights.

use crate::cpu::Activation;
use crate::error::{Error, Result};
use crate::geometry::{Conv2dGeometry, ConvTranspose2dGeometry};
use crate::graph::{Graph, Init, NodeId, Op};

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

    /// The parameter `<param scope>.<name>`: created with `init` on first use, reused (with
    /// its shape checked) when it exists.
    pub fn param_named(&mut self, name: &str, init: Init, shape: Vec<usize>) -> Result<NodeId> {
        let full = join(&self.param_scope, name);
        if let Some(id) = self.find(&full) {
            if !matches!(self.nodes[id].op, Op::Param(_)) || self.nodes[id].shape != shape {
                return Err(shape_error(
                    "param",
                    format!(
                        "{full} exists with shape {:?}, this layer needs {shape:?}",
                        self.nodes[id].shape
                    ),
                ));
            }
            return Ok(id);
        }
        Ok(self.param(&full, init, shape))
    }

    /// A kernel with Keras's Glorot-uniform fans (receptive field times the last two axes)
    /// and a zero bias of `units`.
    fn kernel_and_bias(
        &mut self,
        layer: &str,
        shape: Vec<usize>,
        units: usize,
    ) -> Result<(NodeId, NodeId)> {
        let (receptive, axes) = shape.split_at(shape.len() - 2);
        let receptive: usize = receptive.iter().product();
        let init = Init::GlorotUniform {
            fan_in: receptive * axes[0],
            fan_out: receptive * axes[1],
        };
        let w = self.param_named(&format!("{layer}.kernel"), init, shape)?;
        let b = self.param_named(&format!("{layer}.bias"), Init::Zeros, vec![units])?;
        Ok((w, b))
    }

    /// Keras Dense(units): `x [batch, in] · kernel [in, units] + bias [units]`.
    pub fn dense(&mut self, layer: &str, x: NodeId, units: usize) -> Result<NodeId> {
        let &[batch, in_f] = self.shape(x) else {
            return Err(shape_error(
                "dense",
                format!(
                    "{layer}: input must be [batch, features], got {:?} (flatten it first)",
                    self.shape(x)
                ),
            ));
        };
        let (w, b) = self.kernel_and_bias(layer, vec![in_f, units], units)?;
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
        let (w, b) = self.kernel_and_bias(layer, vec![k_h, k_w, c, filters], filters)?;
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
        let [batch, h, w_, c] = nhwc(self, "conv_transpose2d", layer, x)?;
        let make = match padding {
            Padding::Valid => ConvTranspose2dGeometry::keras_valid,
            Padding::Same => ConvTranspose2dGeometry::keras_same,
        };
        let geom = make(
            batch, h, w_, c, filters, kernel.0, kernel.1, stride.0, stride.1, None,
        );
        self.conv_transpose2d_with(layer, x, geom)
    }

    /// A transposed conv of any geometry (output padding, any crop): the geometry's input
    /// must be x's shape.
    pub fn conv_transpose2d_with(
        &mut self,
        layer: &str,
        x: NodeId,
        geom: ConvTranspose2dGeometry,
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
        let (w, b) = self.kernel_and_bias(layer, vec![k_h, k_w, filters, c], filters)?;
        let shape = vec![geom.batch, geom.out_h, geom.out_w, filters];
        let name = self.node_name(layer);
        Ok(self.push(name, Op::ConvTranspose2d { x, w, b, geom }, shape))
    }

    pub fn activation(&mut self, layer: &str, x: NodeId, act: Activation) -> NodeId {
        let shape = self.shape(x).to_vec();
        let name = self.node_name(layer);
        self.push(name, Op::Activation { x, act }, shape)
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
        if self.shape(logits).len() != 2 || self.shape(logits)[1] != 1 {
            return Err(shape_error(
                "bce_with_logits",
                format!(
                    "{name}: logits must be [batch, 1], got {:?}",
                    self.shape(logits)
                ),
            ));
        }
        let name = self.node_name(name);
        Ok(self.push(name, Op::BceWithLogits { logits, label }, vec![2]))
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
