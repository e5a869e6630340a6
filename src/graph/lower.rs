//! Lowering: forward passes and reverse-mode autodiff as flat instruction lists.
//!
//! Every instruction is one kernel family's call over named buffers, so an executor only
//! implements this small set and never sees the model. All backward rules live in
//! [`backward`]'s one `match`: conv2d's input gradient is a transposed conv and the
//! reverse, dense gradients are GEMMs with a transposed operand.

use std::cell::RefCell;
use std::collections::{HashMap, HashSet};

use crate::cpu::Activation;
use crate::error::{Error, Result};
use crate::geometry::{Conv2dGeometry, ConvTranspose2dGeometry};
use crate::graph::{BatchNormMode, Graph, InputSource, NodeId, Op, schedule};

/// A buffer an instruction touches. Node ids are storage roots (reshapes resolved).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Buf {
    Value(NodeId),
    Grad(NodeId),
}

/// One kernel call. `accumulate` adds into the destination instead of overwriting it:
/// the first gradient written into a buffer in a backward pass overwrites, later ones
/// add, so no buffer needs zeroing between steps.
#[derive(Debug, Clone, PartialEq)]
pub enum Instr {
    /// Fills `out` with N(0, 1) noise for this step and `slot`.
    Noise { out: Buf, len: usize, slot: u32 },
    /// Fills `out` with `batch` random dataset rows in [-1, 1].
    DataBatch { out: Buf, batch: usize },
    /// Fills `out` with the labels of this step's `DataBatch` rows (u32 bits).
    DataLabels { out: Buf, batch: usize },
    /// c\[m,n\] = op(a)·op(b) (+ bias\[n\]) (+ c)
    Gemm {
        a: Buf,
        b: Buf,
        c: Buf,
        bias: Option<Buf>,
        m: usize,
        n: usize,
        k: usize,
        trans_a: bool,
        trans_b: bool,
        accumulate: bool,
    },
    /// db\[cols\] = Σ_rows dy[rows, cols]
    BiasGrad {
        dy: Buf,
        db: Buf,
        rows: usize,
        cols: usize,
        accumulate: bool,
    },
    Conv2d {
        geom: Conv2dGeometry,
        x: Buf,
        w: Buf,
        b: Option<Buf>,
        y: Buf,
    },
    Conv2dInputGrad {
        geom: Conv2dGeometry,
        dy: Buf,
        w: Buf,
        dx: Buf,
        accumulate: bool,
    },
    Conv2dWeightGrad {
        geom: Conv2dGeometry,
        x: Buf,
        dy: Buf,
        dw: Buf,
        accumulate: bool,
    },
    ConvTranspose2d {
        geom: ConvTranspose2dGeometry,
        x: Buf,
        w: Buf,
        b: Option<Buf>,
        y: Buf,
    },
    ConvTranspose2dInputGrad {
        geom: ConvTranspose2dGeometry,
        dy: Buf,
        w: Buf,
        dx: Buf,
        accumulate: bool,
    },
    ConvTranspose2dWeightGrad {
        geom: ConvTranspose2dGeometry,
        x: Buf,
        dy: Buf,
        dw: Buf,
        accumulate: bool,
    },
    Activation {
        act: Activation,
        x: Buf,
        y: Buf,
        len: usize,
    },
    ActivationGrad {
        act: Activation,
        x: Buf,
        y: Buf,
        dy: Buf,
        dx: Buf,
        len: usize,
        accumulate: bool,
    },
    /// stats = [mean BCE, mean sigmoid] of logits `first..first + len` against a constant
    /// label.
    BceLoss {
        logits: Buf,
        label: f32,
        stats: Buf,
        first: usize,
        len: usize,
    },
    /// dlogits = (sigmoid(logits) - label) / len in rows `first..first + len`, the gradient
    /// of the mean loss; the other rows of the `total` get 0 (or keep theirs, with
    /// `accumulate`).
    BceGrad {
        logits: Buf,
        label: f32,
        dlogits: Buf,
        first: usize,
        len: usize,
        total: usize,
        accumulate: bool,
    },
    /// stats = [mean softmax cross-entropy, accuracy] of logits [batch, classes].
    SoftmaxCeLoss {
        logits: Buf,
        labels: Buf,
        stats: Buf,
        batch: usize,
        classes: usize,
    },
    /// dlogits = (softmax(logits) - onehot(labels)) / batch.
    SoftmaxCeGrad {
        logits: Buf,
        labels: Buf,
        dlogits: Buf,
        batch: usize,
        classes: usize,
        accumulate: bool,
    },
    /// Fills `out` with `batch` uniform class labels below `classes` (u32 bits) for this
    /// step and noise `slot`.
    RandomLabels {
        out: Buf,
        batch: usize,
        classes: usize,
        slot: u32,
    },
    /// `out[b, :] = table[labels[b], :]` for a `[classes, dim]` table.
    Embedding {
        table: Buf,
        labels: Buf,
        out: Buf,
        batch: usize,
        classes: usize,
        dim: usize,
    },
    /// `dtable[c, :] (+)= Σ over b with labels[b] = c of dy[b, :]`.
    EmbeddingGrad {
        dy: Buf,
        labels: Buf,
        dtable: Buf,
        batch: usize,
        classes: usize,
        dim: usize,
        accumulate: bool,
    },
    /// y = a + b over `len` elements.
    Add { a: Buf, b: Buf, y: Buf, len: usize },
    /// dst = src[offset..offset + len], or dst += it: the gradient an `Add` (offset 0) or a
    /// `Concat` (the input's rows) passes to each input.
    Accumulate {
        src: Buf,
        offset: usize,
        dst: Buf,
        len: usize,
        accumulate: bool,
    },
    /// y = a followed by b (`len_a` and `len_b` elements, copied bit for bit: labels too).
    Concat {
        a: Buf,
        b: Buf,
        y: Buf,
        len_a: usize,
        len_b: usize,
    },
    /// `y[r] = Σ_c a[r, c]·b[r, c]` over `[rows, cols]`.
    RowDot {
        a: Buf,
        b: Buf,
        y: Buf,
        rows: usize,
        cols: usize,
    },
    /// `dx[r, c] (+)= dy[r]·other[r, c]`: a row dot product's gradient for one input.
    RowDotGrad {
        dy: Buf,
        other: Buf,
        dx: Buf,
        rows: usize,
        cols: usize,
        accumulate: bool,
    },
    /// One Adam step of a parameter from its gradient; `group` picks the optimizer state
    /// (step counter and hyper-parameters).
    Adam {
        param: NodeId,
        len: usize,
        group: usize,
    },
    /// y = BatchNorm of x [rows, channels] (channels fastest) with gamma and beta
    /// `[channels]`, Keras's y = x·inv + (beta - mean·inv), inv = gamma/sqrt(var + epsilon).
    /// With `momentum`, mean and var are the batch's (biased) statistics and the running
    /// `mean` and `var` buffers move towards them (running·momentum + batch·(1 - momentum));
    /// without, the running buffers are the statistics.
    BatchNorm {
        x: Buf,
        gamma: Buf,
        beta: Buf,
        mean: Buf,
        var: Buf,
        y: Buf,
        rows: usize,
        channels: usize,
        epsilon: f32,
        momentum: Option<f32>,
    },
    /// The gradients of a training-mode BatchNorm, its batch statistics recomputed from x:
    /// dbeta = Σ dy, dgamma = Σ dy·x̂, dx = gamma/sqrt(var + eps)·(dy - dbeta/rows -
    /// x̂·dgamma/rows), each written only when asked for (and added with its flag).
    BatchNormGrad {
        x: Buf,
        gamma: Buf,
        dy: Buf,
        dx: Option<(Buf, bool)>,
        dgamma: Option<(Buf, bool)>,
        dbeta: Option<(Buf, bool)>,
        rows: usize,
        channels: usize,
        epsilon: f32,
    },
    /// y = x·mask/(1 - rate), the mask keeping element i when word i of this step's noise
    /// stream `slot` is at least rate·2^32.
    Dropout {
        x: Buf,
        y: Buf,
        len: usize,
        rate: f32,
        slot: u32,
    },
    /// dx (+)= dy·mask/(1 - rate), the same mask drawn again.
    DropoutGrad {
        dy: Buf,
        dx: Buf,
        len: usize,
        rate: f32,
        slot: u32,
        accumulate: bool,
    },
    /// One step of an exponential moving average: average = d·average + (1 - d)·source,
    /// d = min(decay, (1 + t)/(10 + t)) at 0-based iteration t (the warm-up lets early
    /// averages follow the weights instead of staying near their initial values).
    Ema {
        source: NodeId,
        average: NodeId,
        len: usize,
        decay: f32,
    },
}

impl Instr {
    /// Floating-point operations of the instruction, a multiply-add counting 2; the
    /// element-wise ones count 0 (they are bandwidth-bound and negligible here).
    pub fn flops(&self) -> f64 {
        match self {
            Instr::Gemm { m, n, k, .. } => 2.0 * (*m * *n * *k) as f64,
            Instr::Conv2d { geom, .. }
            | Instr::Conv2dInputGrad { geom, .. }
            | Instr::Conv2dWeightGrad { geom, .. } => geom.flops() as f64,
            Instr::ConvTranspose2d { geom, .. }
            | Instr::ConvTranspose2dInputGrad { geom, .. }
            | Instr::ConvTranspose2dWeightGrad { geom, .. } => geom.flops() as f64,
            Instr::RowDot { rows, cols, .. } | Instr::RowDotGrad { rows, cols, .. } => {
                2.0 * (*rows * *cols) as f64
            }
            _ => 0.0,
        }
    }
}

/// The instructions that compute `targets` and every node they depend on, in order,
/// skipping inputs, parameters, reshapes (free) and nodes in `done`.
pub fn forward(graph: &Graph, targets: &[NodeId], done: &HashSet<NodeId>) -> Vec<Instr> {
    let needed = ancestors(graph, targets);
    let mut out = Vec::new();
    let v = |n: NodeId| Buf::Value(graph.storage(n));
    for (id, node) in graph.nodes.iter().enumerate() {
        if !needed[id] || done.contains(&id) {
            continue;
        }
        match node.op {
            Op::Input(InputSource::Noise { slot }) => out.push(Instr::Noise {
                out: v(id),
                len: node.len(),
                slot,
            }),
            Op::Input(InputSource::DataBatch) => out.push(Instr::DataBatch {
                out: v(id),
                batch: node.shape[0],
            }),
            Op::Input(InputSource::DataLabels) => out.push(Instr::DataLabels {
                out: v(id),
                batch: node.shape[0],
            }),
            Op::Input(InputSource::RandomLabels { slot, classes }) => {
                out.push(Instr::RandomLabels {
                    out: v(id),
                    batch: node.shape[0],
                    classes,
                    slot,
                })
            }
            Op::Input(InputSource::External) | Op::Param(_) | Op::State(_) | Op::Reshape { .. } => {
            }
            Op::BatchNorm {
                x,
                gamma,
                beta,
                mean,
                var,
                epsilon,
                mode,
            } => {
                let channels = *node.shape.last().unwrap_or(&1);
                out.push(Instr::BatchNorm {
                    x: v(x),
                    gamma: v(gamma),
                    beta: v(beta),
                    mean: v(mean),
                    var: v(var),
                    y: v(id),
                    rows: node.len() / channels.max(1),
                    channels,
                    epsilon,
                    momentum: match mode {
                        BatchNormMode::Training { momentum } => Some(momentum),
                        BatchNormMode::Inference => None,
                    },
                })
            }
            Op::Dropout { x, rate, slot } => out.push(Instr::Dropout {
                x: v(x),
                y: v(id),
                len: node.len(),
                rate,
                slot,
            }),
            Op::Embedding { table, labels } => out.push(Instr::Embedding {
                table: v(table),
                labels: v(labels),
                out: v(id),
                batch: node.shape[0],
                classes: graph.shape(table)[0],
                dim: node.shape[1],
            }),
            Op::Add { a, b } => out.push(Instr::Add {
                a: v(a),
                b: v(b),
                y: v(id),
                len: node.len(),
            }),
            Op::RowDot { a, b } => out.push(Instr::RowDot {
                a: v(a),
                b: v(b),
                y: v(id),
                rows: graph.shape(a)[0],
                cols: graph.shape(a)[1],
            }),
            Op::Dense { x, w, b } => out.push(Instr::Gemm {
                a: v(x),
                b: v(w),
                c: v(id),
                bias: b.map(v),
                m: node.shape[0],
                n: node.shape[1],
                k: graph.shape(x)[1],
                trans_a: false,
                trans_b: false,
                accumulate: false,
            }),
            Op::Conv2d { x, w, b, geom } => out.push(Instr::Conv2d {
                geom,
                x: v(x),
                w: v(w),
                b: b.map(v),
                y: v(id),
            }),
            Op::ConvTranspose2d { x, w, b, geom } => out.push(Instr::ConvTranspose2d {
                geom,
                x: v(x),
                w: v(w),
                b: b.map(v),
                y: v(id),
            }),
            Op::Activation { x, act } => out.push(Instr::Activation {
                act,
                x: v(x),
                y: v(id),
                len: node.len(),
            }),
            Op::BceWithLogits {
                logits,
                label,
                first,
                count,
            } => out.push(Instr::BceLoss {
                logits: v(logits),
                label,
                stats: v(id),
                first,
                len: count,
            }),
            Op::Concat { a, b } => out.push(Instr::Concat {
                a: v(a),
                b: v(b),
                y: v(id),
                len_a: graph.nodes[a].len(),
                len_b: graph.nodes[b].len(),
            }),
            Op::SoftmaxCrossEntropy { logits, labels } => out.push(Instr::SoftmaxCeLoss {
                logits: v(logits),
                labels: v(labels),
                stats: v(id),
                batch: graph.shape(logits)[0],
                classes: graph.shape(logits)[1],
            }),
        }
    }
    out
}

/// Marks every node that `targets` depend on (targets included).
pub fn ancestors(graph: &Graph, targets: &[NodeId]) -> Vec<bool> {
    let mut mark = vec![false; graph.nodes.len()];
    let mut stack: Vec<NodeId> = targets.to_vec();
    while let Some(id) = stack.pop() {
        if !std::mem::replace(&mut mark[id], true) {
            stack.extend(graph.nodes[id].op.inputs());
        }
    }
    mark
}

/// Reverse-mode autodiff: the instructions that leave, in `Grad(p)` for every `p` in
/// `wrt`, the gradient of the sum of the `losses` (each the mean BCE of its node).
/// Values of every node on the way must have been computed by [`forward`] first.
pub fn backward(graph: &Graph, losses: &[NodeId], wrt: &[NodeId]) -> Result<Vec<Instr>> {
    let on_path = ancestors(graph, losses);
    // A node needs a gradient when it lies between a requested parameter and a loss.
    let mut needs = vec![false; graph.nodes.len()];
    for id in 0..graph.nodes.len() {
        needs[id] = on_path[id]
            && (wrt.contains(&id) || graph.nodes[id].op.inputs().iter().any(|&i| needs[i]));
    }
    for &p in wrt {
        if !needs[p] {
            return Err(Error::InvalidArgument(format!(
                "no loss depends on parameter {}",
                graph.nodes[p].name
            )));
        }
    }
    let grads = RefCell::new(GradBuffers::new(graph, &needs));
    let target = |n: NodeId| grads.borrow_mut().target(n);
    let v = |n: NodeId| Buf::Value(graph.storage(n));
    let g = |n: NodeId| grads.borrow().grad(n);
    let mut out = Vec::new();
    for id in (0..graph.nodes.len()).rev() {
        if !needs[id] {
            continue;
        }
        let node = &graph.nodes[id];
        match node.op {
            Op::Input(_) | Op::Param(_) | Op::State(_) => {}
            Op::Dropout { x, rate, slot } => {
                if needs[x] {
                    let (dx, accumulate) = target(x);
                    out.push(Instr::DropoutGrad {
                        dy: g(id),
                        dx,
                        len: node.len(),
                        rate,
                        slot,
                        accumulate,
                    });
                }
            }
            Op::BatchNorm {
                x,
                gamma,
                beta,
                epsilon,
                mode,
                ..
            } => {
                if mode == BatchNormMode::Inference {
                    return Err(Error::InvalidArgument(format!(
                        "{}: no gradient through an inference-mode BatchNorm (build it with \
                         training = true to train through it)",
                        node.name
                    )));
                }
                let channels = *node.shape.last().unwrap_or(&1);
                let want = |n: NodeId| needs[n].then(|| target(n));
                let (dx, dgamma, dbeta) = (want(x), want(gamma), want(beta));
                out.push(Instr::BatchNormGrad {
                    x: v(x),
                    gamma: v(gamma),
                    dy: g(id),
                    dx,
                    dgamma,
                    dbeta,
                    rows: node.len() / channels.max(1),
                    channels,
                    epsilon,
                });
            }
            // Shares storage with its input, so the gradient is already in place.
            Op::Reshape { .. } => {}
            Op::BceWithLogits {
                logits,
                label,
                first,
                count,
            } => {
                if needs[logits] {
                    let (dlogits, accumulate) = target(logits);
                    out.push(Instr::BceGrad {
                        logits: v(logits),
                        label,
                        dlogits,
                        first,
                        len: count,
                        total: graph.nodes[logits].len(),
                        accumulate,
                    });
                }
            }
            Op::Concat { a, b } => {
                let len_a = graph.nodes[a].len();
                for (input, offset) in [(a, 0), (b, len_a)] {
                    if needs[input] {
                        let (dst, accumulate) = target(input);
                        out.push(Instr::Accumulate {
                            src: g(id),
                            offset,
                            dst,
                            len: graph.nodes[input].len(),
                            accumulate,
                        });
                    }
                }
            }
            Op::SoftmaxCrossEntropy { logits, labels } => {
                if needs[logits] {
                    let (dlogits, accumulate) = target(logits);
                    out.push(Instr::SoftmaxCeGrad {
                        logits: v(logits),
                        labels: v(labels),
                        dlogits,
                        batch: graph.shape(logits)[0],
                        classes: graph.shape(logits)[1],
                        accumulate,
                    });
                }
            }
            Op::Embedding { table, labels } => {
                if needs[table] {
                    let (dtable, accumulate) = target(table);
                    out.push(Instr::EmbeddingGrad {
                        dy: g(id),
                        labels: v(labels),
                        dtable,
                        batch: node.shape[0],
                        classes: graph.shape(table)[0],
                        dim: node.shape[1],
                        accumulate,
                    });
                }
            }
            Op::Add { a, b } => {
                for input in [a, b] {
                    if needs[input] && !grads.borrow_mut().lend(input, id) {
                        let (dst, accumulate) = target(input);
                        out.push(Instr::Accumulate {
                            src: g(id),
                            offset: 0,
                            dst,
                            len: node.len(),
                            accumulate,
                        });
                    }
                }
            }
            Op::RowDot { a, b } => {
                let (rows, cols) = (graph.shape(a)[0], graph.shape(a)[1]);
                for (input, other) in [(a, b), (b, a)] {
                    if needs[input] {
                        let (dx, accumulate) = target(input);
                        out.push(Instr::RowDotGrad {
                            dy: g(id),
                            other: v(other),
                            dx,
                            rows,
                            cols,
                            accumulate,
                        });
                    }
                }
            }
            Op::Activation { x, act } => {
                if needs[x] {
                    let (dx, accumulate) = target(x);
                    out.push(Instr::ActivationGrad {
                        act,
                        x: v(x),
                        y: v(id),
                        dy: g(id),
                        dx,
                        len: node.len(),
                        accumulate,
                    });
                }
            }
            Op::Dense { x, w, b } => {
                let (batch, out_f, in_f) = (node.shape[0], node.shape[1], graph.shape(x)[1]);
                if needs[w] {
                    let (dw, accumulate) = target(w);
                    out.push(Instr::Gemm {
                        a: v(x),
                        b: g(id),
                        c: dw,
                        bias: None,
                        m: in_f,
                        n: out_f,
                        k: batch,
                        trans_a: true,
                        trans_b: false,
                        accumulate,
                    });
                }
                if let Some(b) = b.filter(|&b| needs[b]) {
                    let (db, accumulate) = target(b);
                    out.push(Instr::BiasGrad {
                        dy: g(id),
                        db,
                        rows: batch,
                        cols: out_f,
                        accumulate,
                    });
                }
                // The input gradient last, as for Conv2d.
                if needs[x] {
                    let (dx, accumulate) = target(x);
                    out.push(Instr::Gemm {
                        a: g(id),
                        b: v(w),
                        c: dx,
                        bias: None,
                        m: batch,
                        n: in_f,
                        k: out_f,
                        trans_a: false,
                        trans_b: true,
                        accumulate,
                    });
                }
            }
            Op::Conv2d { x, w, b, geom } => {
                if needs[w] {
                    let (dw, accumulate) = target(w);
                    out.push(Instr::Conv2dWeightGrad {
                        geom,
                        x: v(x),
                        dy: g(id),
                        dw,
                        accumulate,
                    });
                }
                if let Some(b) = b.filter(|&b| needs[b]) {
                    let (db, accumulate) = target(b);
                    out.push(Instr::BiasGrad {
                        dy: g(id),
                        db,
                        rows: geom.batch * geom.out_h() * geom.out_w(),
                        cols: geom.out_c,
                        accumulate,
                    });
                }
                // The input gradient last: next to the gradient through the activation
                // before the layer, which an executor may fuse into it.
                if needs[x] {
                    let (dx, accumulate) = target(x);
                    out.push(Instr::Conv2dInputGrad {
                        geom,
                        dy: g(id),
                        w: v(w),
                        dx,
                        accumulate,
                    });
                }
            }
            Op::ConvTranspose2d { x, w, b, geom } => {
                if needs[w] {
                    let (dw, accumulate) = target(w);
                    out.push(Instr::ConvTranspose2dWeightGrad {
                        geom,
                        x: v(x),
                        dy: g(id),
                        dw,
                        accumulate,
                    });
                }
                if let Some(b) = b.filter(|&b| needs[b]) {
                    let (db, accumulate) = target(b);
                    out.push(Instr::BiasGrad {
                        dy: g(id),
                        db,
                        rows: geom.batch * geom.out_h * geom.out_w,
                        cols: geom.out_c,
                        accumulate,
                    });
                }
                // The input gradient last, as for Conv2d.
                if needs[x] {
                    let (dx, accumulate) = target(x);
                    out.push(Instr::ConvTranspose2dInputGrad {
                        geom,
                        dy: g(id),
                        w: v(w),
                        dx,
                        accumulate,
                    });
                }
            }
        }
    }
    Ok(out)
}

/// Where each node's gradient lives during one backward pass. The first write into a
/// gradient buffer overwrites, later ones accumulate. A sum's gradient is its inputs'
/// gradient too, so an input whose only use is the sum borrows the sum's buffer instead
/// of getting a copy: nothing else adds into it, and nothing reads the sum's gradient
/// after the sum's own backward step.
struct GradBuffers<'g> {
    graph: &'g Graph,
    written: HashSet<NodeId>,
    /// Storage root -> the root whose gradient buffer it uses.
    borrowed: HashMap<NodeId, NodeId>,
    /// Storage root -> how many gradient contributions it receives in this pass.
    contributions: HashMap<NodeId, usize>,
}

impl<'g> GradBuffers<'g> {
    fn new(graph: &'g Graph, needs: &[bool]) -> Self {
        let mut contributions = HashMap::new();
        for (id, node) in graph.nodes.iter().enumerate() {
            if !needs[id] || matches!(node.op, Op::Reshape { .. }) {
                continue;
            }
            for input in node.op.inputs() {
                if needs[input] {
                    *contributions.entry(graph.storage(input)).or_insert(0) += 1;
                }
            }
        }
        GradBuffers {
            graph,
            written: HashSet::new(),
            borrowed: HashMap::new(),
            contributions,
        }
    }

    fn root(&self, n: NodeId) -> NodeId {
        let mut root = self.graph.storage(n);
        while let Some(&to) = self.borrowed.get(&root) {
            root = to;
        }
        root
    }

    fn grad(&self, n: NodeId) -> Buf {
        Buf::Grad(self.root(n))
    }

    /// The buffer to write `n`'s gradient into, and whether to add to it.
    fn target(&mut self, n: NodeId) -> (Buf, bool) {
        let root = self.root(n);
        (Buf::Grad(root), !self.written.insert(root))
    }

    /// Makes `input`'s gradient the buffer of `sum`'s when `input` is not a parameter or
    /// state (their gradients are read after the pass) and the sum is its only use; says
    /// whether it did.
    fn lend(&mut self, input: NodeId, sum: NodeId) -> bool {
        let root = self.graph.storage(input);
        let leaf = matches!(
            self.graph.nodes[root].op,
            Op::Input(_) | Op::Param(_) | Op::State(_)
        );
        let to = self.root(sum);
        if leaf || root == to || self.contributions.get(&root) != Some(&1) {
            return false;
        }
        self.borrowed.insert(root, to);
        true
    }
}

/// An Adam step for each parameter in `params`, with optimizer state `group`.
pub fn adam(graph: &Graph, params: &[NodeId], group: usize) -> Vec<Instr> {
    params
        .iter()
        .map(|&param| Instr::Adam {
            param,
            len: graph.nodes[param].len(),
            group,
        })
        .collect()
}

/// A moving-average step for each (source, average) pair, once per training iteration:
/// the averages of parameters first, in creation order (the order the wgpu executor packs
/// parameters in, so that they run as one dispatch), then the others. The steps are
/// independent, so the order changes no value.
pub fn ema(graph: &Graph, pairs: &[(NodeId, NodeId)], decay: f32) -> Vec<Instr> {
    let mut pairs = pairs.to_vec();
    pairs.sort_by_key(|&(source, _)| (!matches!(graph.nodes[source].op, Op::Param(_)), source));
    pairs
        .iter()
        .map(|&(source, average)| Instr::Ema {
            source,
            average,
            len: graph.nodes[average].len(),
            decay,
        })
        .collect()
}

/// One optimizer step inside a training iteration: the gradient of the sum of `losses`
/// with respect to `params`, applied by Adam with the state of optimizer group `group`.
#[derive(Debug, Clone, PartialEq)]
pub struct Phase {
    pub losses: Vec<NodeId>,
    pub params: Vec<NodeId>,
    pub group: usize,
}

/// A whole training iteration as one instruction list: each phase's forward pass,
/// backward pass and Adam step, in order. A later phase recomputes only what depends on
/// parameters an earlier phase updated; everything else (noise, batches, a generator's
/// output before the discriminator's step) is reused as computed.
pub fn training_step(graph: &Graph, phases: &[Phase]) -> Result<Vec<Instr>> {
    let mut plan = Vec::new();
    let mut updated: Vec<NodeId> = Vec::new();
    for phase in phases {
        let reused: HashSet<NodeId> = if updated.is_empty() {
            HashSet::new()
        } else {
            let stale = dependents(graph, &updated);
            (0..graph.nodes.len()).filter(|&id| !stale[id]).collect()
        };
        let mut forward = forward(graph, &phase.losses, &reused);
        let mut backward = backward(graph, &phase.losses, &phase.params)?;
        schedule::losses_beside_their_gradients(graph, &mut forward, &mut backward);
        schedule::contributions_together(&mut backward);
        plan.extend(forward);
        plan.extend(backward);
        plan.extend(adam(graph, &phase.params, phase.group));
        updated.extend(&phase.params);
    }
    Ok(plan)
}

/// Marks every node that is one of `sources` or computed from one (node ids are in
/// topological order, so one forward sweep suffices).
fn dependents(graph: &Graph, sources: &[NodeId]) -> Vec<bool> {
    let mut mark = vec![false; graph.nodes.len()];
    for id in 0..graph.nodes.len() {
        mark[id] = sources.contains(&id) || graph.nodes[id].op.inputs().iter().any(|&i| mark[i]);
    }
    mark
}
