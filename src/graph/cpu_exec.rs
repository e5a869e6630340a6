//! The CPU executor: runs instruction lists with the CPU reference ops.
//!
//! It is the oracle for the GPU executor and the trainer on machines without a real GPU
//! (the reference ops are GEMM-based and multi-threaded, so it is not slow). Every op writes
//! into the executor's own buffers (adding to them for `accumulate`), and the convolutions
//! reuse one scratch [`Workspace`], so a step allocates no tensor. A convolution or a biased
//! GEMM followed by an activation of its output runs as one fused instruction: the activation
//! is applied to each finished chunk of the output while it is still in cache; likewise an
//! input gradient with the activation gradient after it, and a transposed convolution's two
//! gradients share their im2col (`cpu_exec/fusion.rs`).

use std::mem::take;
use std::sync::Arc;

use crate::cpu::{self, AdamConfig, Workspace};
use crate::error::{Error, Result};
use crate::graph::{Buf, Executor, Graph, Instr, NodeId, RandomStreams, Snapshot};

mod fusion;

use fusion::{Plan, fusable_activation, fusable_activation_grad, fused_grad_args};

pub struct CpuExecutor {
    graph: Graph,
    values: Vec<Vec<f32>>,
    grads: Vec<Vec<f32>>,
    adam_m: Vec<Vec<f32>>,
    adam_v: Vec<Vec<f32>>,
    optimizers: Vec<AdamConfig>,
    dataset: Option<Arc<crate::graph::Dataset>>,
    streams: RandomStreams,
    plans: Vec<Plan>,
    snapshots: Vec<Snapshot>,
    workspace: Workspace,
}

impl CpuExecutor {
    pub fn new(
        graph: &Graph,
        optimizers: Vec<AdamConfig>,
        dataset: Option<Arc<crate::graph::Dataset>>,
        streams: RandomStreams,
    ) -> Self {
        let lens: Vec<usize> = graph.nodes.iter().map(|n| n.len()).collect();
        let zeros = || lens.iter().map(|&n| vec![0.0; n]).collect::<Vec<_>>();
        CpuExecutor {
            graph: graph.clone(),
            values: zeros(),
            grads: zeros(),
            adam_m: zeros(),
            adam_v: zeros(),
            optimizers,
            dataset,
            streams,
            plans: Vec::new(),
            snapshots: Vec::new(),
            workspace: Workspace::default(),
        }
    }

    fn get(&self, buf: Buf) -> &[f32] {
        match buf {
            Buf::Value(n) => &self.values[n],
            Buf::Grad(n) => &self.grads[n],
        }
    }

    fn slot(&mut self, buf: Buf) -> &mut Vec<f32> {
        match buf {
            Buf::Value(n) => &mut self.values[n],
            Buf::Grad(n) => &mut self.grads[n],
        }
    }

    /// Runs `op` with `out` (and `second`, if given) lent out of the executor, so the op reads
    /// the other buffers while writing these in place. Lending moves the vectors, it does not
    /// copy them. An op that also reads a lent buffer sees it empty and fails its length check.
    fn write_into(
        &mut self,
        out: Buf,
        second: Option<Buf>,
        op: impl FnOnce(&Self, &mut [f32], Option<&mut [f32]>, &mut Workspace) -> Result<()>,
    ) -> Result<()> {
        let mut dst = std::mem::take(self.slot(out));
        let mut dst2 = second.map(|b| std::mem::take(self.slot(b)));
        let mut ws = std::mem::take(&mut self.workspace);
        let result = op(self, &mut dst, dst2.as_deref_mut(), &mut ws);
        self.workspace = ws;
        if let (Some(b), Some(v)) = (second, dst2) {
            *self.slot(b) = v;
        }
        *self.slot(out) = dst;
        result
    }

    /// Runs `instr`, fused with `next` when that is an activation of its output, the gradient
    /// of the activation before it, or (after Adam) the moving average of the parameter it
    /// stepped; returns whether `next` was consumed.
    fn exec(&mut self, instr: &Instr, next: Option<&Instr>, iteration: u64) -> Result<bool> {
        let fused = fusable_activation(instr, next);
        let act_out = fused.map(|(_, y)| y);
        let act = fused.map(|(act, _)| act);
        let fused_grad = fusable_activation_grad(instr, next);
        let grad_out = fused_grad.as_ref().map(|f| f.dx);
        match *instr {
            Instr::Noise { out, len, slot } => {
                let stream = RandomStreams::noise_stream(iteration, slot);
                let seed = self.streams.seed;
                let out = self.slot(out);
                cpu::check_len("Noise", "out", out.len(), len)?;
                cpu::normal_noise_into(seed, stream, out);
            }
            Instr::DataBatch { out, batch } => {
                let data = Arc::clone(self.dataset.as_ref().ok_or_else(|| {
                    Error::InvalidArgument("a DataBatch input needs a dataset".into())
                })?);
                let indices = self.streams.batch_indices(iteration, batch, data.rows);
                cpu::gather::gather_rows_into(&data.bytes, data.row_len, &indices, self.slot(out))?;
            }
            Instr::RandomLabels {
                out,
                batch,
                classes,
                slot,
            } => {
                let stream = RandomStreams::noise_stream(iteration, slot);
                let bound = u32::try_from(classes).map_err(|_| {
                    Error::InvalidArgument(format!("{classes} classes overflow u32"))
                })?;
                let seed = self.streams.seed;
                let words = cpu::uniform_u32(seed, stream, batch);
                let dst = self.slot(out);
                cpu::check_len("random labels", "out", dst.len(), batch)?;
                for (d, word) in dst.iter_mut().zip(words) {
                    *d = f32::from_bits(cpu::uniform_index(word, bound));
                }
            }
            Instr::Embedding {
                table,
                labels,
                out,
                classes,
                dim,
                ..
            } => self.write_into(out, None, |s, dst, _, _| {
                let labels = bits(s.get(labels));
                cpu::embedding_forward_into(s.get(table), labels, classes, dim, dst)
            })?,
            Instr::EmbeddingGrad {
                dy,
                labels,
                dtable,
                classes,
                dim,
                accumulate,
                ..
            } => self.write_into(dtable, None, |s, dst, _, _| {
                let labels = bits(s.get(labels));
                cpu::embedding_backward_into(s.get(dy), labels, classes, dim, dst, accumulate)
            })?,
            Instr::Add { a, b, y, .. } => self.write_into(y, None, |s, dst, _, _| {
                cpu::add_into(s.get(a), s.get(b), dst)
            })?,
            Instr::Accumulate {
                src,
                offset,
                dst,
                len,
                accumulate,
            } => self.write_into(dst, None, |s, out, _, _| {
                cpu::check_len("Accumulate", "dst", out.len(), len)?;
                cpu::accumulate_rows_into(s.get(src), offset, out, accumulate)
            })?,
            Instr::Concat { a, b, y, .. } => self.write_into(y, None, |s, dst, _, _| {
                cpu::concat_into(s.get(a), s.get(b), dst)
            })?,
            Instr::RowDot { a, b, y, cols, .. } => self.write_into(y, None, |s, dst, _, _| {
                cpu::row_dot_into(s.get(a), s.get(b), cols, dst)
            })?,
            Instr::RowDotGrad {
                dy,
                other,
                dx,
                cols,
                accumulate,
                ..
            } => self.write_into(dx, None, |s, dst, _, _| {
                cpu::row_dot_backward_into(s.get(dy), s.get(other), cols, dst, accumulate)
            })?,
            Instr::DataLabels { out, batch } => {
                let labels = self
                    .dataset
                    .as_ref()
                    .and_then(|d| Some((d.labels.as_ref()?, d.rows)))
                    .ok_or_else(|| {
                        Error::InvalidArgument("a DataLabels input needs a labelled dataset".into())
                    })?;
                let indices = self.streams.batch_indices(iteration, batch, labels.1);
                let classes = cpu::gather::gather_labels(labels.0, &indices);
                let slot = self.slot(out);
                cpu::check_len("DataLabels", "out", slot.len(), classes.len())?;
                for (dst, class) in slot.iter_mut().zip(classes) {
                    *dst = f32::from_bits(class);
                }
            }
            Instr::SoftmaxCeLoss {
                logits,
                labels,
                stats,
                classes,
                ..
            } => {
                let labels: Vec<u32> = self.get(labels).iter().map(|x| x.to_bits()).collect();
                let out =
                    cpu::softmax_ce::softmax_cross_entropy(self.get(logits), &labels, classes)?;
                let stats = self.slot(stats);
                cpu::check_len("SoftmaxCeLoss", "stats", stats.len(), 2)?;
                stats.copy_from_slice(&[out.loss, out.accuracy]);
            }
            Instr::SoftmaxCeGrad {
                logits,
                labels,
                dlogits,
                classes,
                accumulate,
                ..
            } => {
                let labels: Vec<u32> = self.get(labels).iter().map(|x| x.to_bits()).collect();
                let out =
                    cpu::softmax_ce::softmax_cross_entropy(self.get(logits), &labels, classes)?;
                let dst = self.slot(dlogits);
                cpu::check_len("SoftmaxCeGrad", "dlogits", dst.len(), out.dlogits.len())?;
                for (d, g) in dst.iter_mut().zip(out.dlogits) {
                    *d = if accumulate { *d + g } else { g };
                }
            }
            Instr::Gemm {
                a,
                b,
                c,
                bias,
                m,
                n,
                k,
                trans_a,
                trans_b,
                accumulate,
            } => self.write_into(c, act_out, |s, c, act_y, _| {
                if let Some(bias) = bias {
                    cpu::fill_rows(c, s.get(bias), accumulate)?;
                }
                let add = accumulate || bias.is_some();
                cpu::gemm(m, n, k, s.get(a), trans_a, s.get(b), trans_b, c, add)?;
                match act.zip(act_y) {
                    Some((act, y)) => cpu::activation_forward_into(act, c, y),
                    None => Ok(()),
                }
            })?,
            Instr::BiasGrad {
                dy,
                db,
                rows,
                cols,
                accumulate,
            } => self.write_into(db, None, |s, db, _, _| {
                cpu::bias_grad_into(s.get(dy), rows, cols, db, accumulate)
            })?,
            Instr::Conv2d { geom, x, w, b, y } => {
                self.write_into(y, act_out, |s, y, act_y, ws| {
                    let (x, w, b) = (s.get(x), s.get(w), b.map(|b| s.get(b)));
                    cpu::conv2d_forward_into(&geom, x, w, b, y, act.zip(act_y), ws)
                })?
            }
            Instr::Conv2dInputGrad {
                geom,
                dy,
                w,
                dx,
                accumulate,
            } => self.write_into(dx, grad_out, |s, dx, grad_dx, ws| {
                let (dy, w, fused) = (
                    s.get(dy),
                    s.get(w),
                    fused_grad_args(fused_grad.as_ref(), s, grad_dx),
                );
                cpu::conv2d_backward_input_into(&geom, dy, w, dx, accumulate, fused, ws)
            })?,
            Instr::Conv2dWeightGrad {
                geom,
                x,
                dy,
                dw,
                accumulate,
            } => self.write_into(dw, None, |s, dw, _, ws| {
                cpu::conv2d_backward_weight_into(&geom, s.get(x), s.get(dy), dw, accumulate, ws)
            })?,
            Instr::ConvTranspose2d { geom, x, w, b, y } => {
                self.write_into(y, act_out, |s, y, act_y, ws| {
                    let (x, w, b) = (s.get(x), s.get(w), b.map(|b| s.get(b)));
                    cpu::conv_transpose2d_forward_into(&geom, x, w, b, y, act.zip(act_y), ws)
                })?
            }
            Instr::ConvTranspose2dInputGrad {
                geom,
                dy,
                w,
                dx,
                accumulate,
            } => self.write_into(dx, grad_out, |s, dx, grad_dx, ws| {
                let (dy, w, fused) = (
                    s.get(dy),
                    s.get(w),
                    fused_grad_args(fused_grad.as_ref(), s, grad_dx),
                );
                cpu::conv_transpose2d_backward_input_into(&geom, dy, w, dx, accumulate, fused, ws)
            })?,
            Instr::ConvTranspose2dWeightGrad {
                geom,
                x,
                dy,
                dw,
                accumulate,
            } => self.write_into(dw, None, |s, dw, _, ws| {
                let (x, dy) = (s.get(x), s.get(dy));
                cpu::conv_transpose2d_backward_weight_into(&geom, x, dy, dw, accumulate, ws)
            })?,
            Instr::Activation { act, x, y, .. } => self.write_into(y, None, |s, y, _, _| {
                cpu::activation_forward_into(act, s.get(x), y)
            })?,
            Instr::ActivationGrad {
                act,
                x,
                y,
                dy,
                dx,
                accumulate,
                ..
            } => self.write_into(dx, None, |s, dx, _, _| {
                let (x, y, dy) = (s.get(x), s.get(y), s.get(dy));
                cpu::activation_backward_into(act, x, y, dy, dx, accumulate)
            })?,
            Instr::BceLoss {
                logits,
                label,
                stats,
                first,
                len,
            } => {
                let rows = first..first + len;
                let (loss, mean_prob) =
                    cpu::bce_constant_label_rows(self.get(logits), label, rows, None)?;
                let stats = self.slot(stats);
                cpu::check_len("BceLoss", "stats", stats.len(), 2)?;
                stats.copy_from_slice(&[loss, mean_prob]);
            }
            Instr::BceGrad {
                logits,
                label,
                dlogits,
                first,
                len,
                total,
                accumulate,
            } => self.write_into(dlogits, None, |s, d, _, _| {
                let logits = s.get(logits);
                cpu::check_len("BceGrad", "logits", logits.len(), total)?;
                let rows = first..first + len;
                cpu::bce_constant_label_rows(logits, label, rows, Some((d, accumulate))).map(drop)
            })?,
            Instr::BatchNorm {
                x,
                gamma,
                beta,
                mean,
                var,
                y,
                epsilon,
                momentum,
                ..
            } => {
                // The running statistics are written too: lent out beside y.
                let mut running = (take(self.slot(mean)), take(self.slot(var)));
                let result = self.write_into(y, None, |s, y, _, _| {
                    let (x, gamma, beta) = (s.get(x), s.get(gamma), s.get(beta));
                    let (m, v) = (&mut running.0, &mut running.1);
                    cpu::batch_norm_forward_into(x, gamma, beta, m, v, epsilon, momentum, y)
                });
                *self.slot(mean) = running.0;
                *self.slot(var) = running.1;
                result?
            }
            Instr::BatchNormGrad {
                x,
                gamma,
                dy,
                dx,
                dgamma,
                dbeta,
                epsilon,
                ..
            } => {
                // Each requested gradient is lent out of the executor while x, gamma, dy are read.
                let mut lent = [dx, dgamma, dbeta].map(|o| o.map(|(b, acc)| (b, Vec::new(), acc)));
                for (buf, data, _) in lent.iter_mut().flatten() {
                    *data = take(self.slot(*buf));
                }
                let [odx, odg, odb] = lent
                    .each_mut()
                    .map(|o| o.as_mut().map(|(_, d, acc)| (d.as_mut_slice(), *acc)));
                let result = cpu::batch_norm_backward_into(
                    self.get(x),
                    self.get(gamma),
                    self.get(dy),
                    epsilon,
                    odx,
                    odg,
                    odb,
                );
                for (buf, data, _) in lent.into_iter().flatten() {
                    *self.slot(buf) = data;
                }
                result?
            }
            Instr::Dropout {
                x, y, rate, slot, ..
            } => {
                let stream = RandomStreams::noise_stream(iteration, slot);
                let seed = self.streams.seed;
                self.write_into(y, None, |s, y, _, _| {
                    cpu::dropout_into(seed, stream, rate, s.get(x), y)
                })?
            }
            Instr::DropoutGrad {
                dy,
                dx,
                rate,
                slot,
                accumulate,
                ..
            } => {
                let stream = RandomStreams::noise_stream(iteration, slot);
                let seed = self.streams.seed;
                self.write_into(dx, None, |s, dx, _, _| {
                    cpu::dropout_backward_into(seed, stream, rate, s.get(dy), dx, accumulate)
                })?
            }
            Instr::Ema {
                source,
                average,
                decay,
                ..
            } => self.write_into(Buf::Value(average), None, |s, avg, _, _| {
                cpu::ema_step(decay, iteration, s.get(Buf::Value(source)), avg)
            })?,
            Instr::Adam { param, group, .. } => {
                let cfg = self.optimizers[group];
                let t = adam_step_number(iteration)?;
                // When the next step is this parameter's moving average, it runs in the same
                // pass (lent out of the executor meanwhile).
                let ema = match next {
                    Some(&Instr::Ema {
                        source,
                        average,
                        decay,
                        ..
                    }) if source == param && average != param => Some((average, decay)),
                    _ => None,
                };
                let mut lent = ema.map(|(average, _)| std::mem::take(&mut self.values[average]));
                let result = cpu::adam_ema_step(
                    &cfg,
                    t,
                    &mut self.values[param],
                    &self.grads[param],
                    &mut self.adam_m[param],
                    &mut self.adam_v[param],
                    ema.zip(lent.as_deref_mut())
                        .map(|((_, decay), average)| (decay, iteration, average)),
                );
                if let (Some((average, _)), Some(values)) = (ema, lent) {
                    self.values[average] = values;
                }
                result?;
                return Ok(ema.is_some());
            }
        }
        Ok(fused.is_some() || fused_grad.is_some())
    }
}

/// Class labels stored as u32 bit patterns in an f32 buffer, read in place.
fn bits(values: &[f32]) -> &[u32] {
    bytemuck::cast_slice(values)
}

/// Adam's 1-based step for a 0-based iteration; both optimizers step once per iteration.
pub fn adam_step_number(iteration: u64) -> Result<u32> {
    u32::try_from(iteration + 1).map_err(|_| {
        Error::InvalidArgument(format!(
            "iteration {iteration} is beyond Adam's u32 step counter"
        ))
    })
}

impl Executor for CpuExecutor {
    fn compile(&mut self, instrs: &[Instr]) -> Result<usize> {
        self.plans.push(Plan::new(instrs));
        Ok(self.plans.len() - 1)
    }

    fn run(&mut self, plan: usize, iteration: u64) -> Result<()> {
        let compiled = take(&mut self.plans[plan]);
        let result = self.run_plan(&compiled, iteration);
        self.plans[plan] = compiled;
        result
    }

    fn read(&mut self, buf: Buf) -> Result<Vec<f32>> {
        Ok(self.get(buf).to_vec())
    }

    fn write(&mut self, buf: Buf, data: &[f32]) -> Result<()> {
        let slot = self.slot(buf);
        crate::cpu::check_len("write", "data", data.len(), slot.len())?;
        slot.copy_from_slice(data);
        Ok(())
    }

    fn read_adam(&mut self, param: NodeId) -> Result<(Vec<f32>, Vec<f32>)> {
        Ok((self.adam_m[param].clone(), self.adam_v[param].clone()))
    }

    fn write_adam(&mut self, param: NodeId, m: &[f32], v: &[f32]) -> Result<()> {
        crate::cpu::check_len("write_adam", "m", m.len(), self.adam_m[param].len())?;
        crate::cpu::check_len("write_adam", "v", v.len(), self.adam_v[param].len())?;
        self.adam_m[param].copy_from_slice(m);
        self.adam_v[param].copy_from_slice(v);
        Ok(())
    }

    fn snapshot(&mut self, tag: u64, bufs: &[Buf]) -> Result<()> {
        let values = bufs.iter().map(|&b| self.get(b).to_vec()).collect();
        self.snapshots.push(Snapshot { tag, values });
        Ok(())
    }

    fn take_snapshots(&mut self, _wait: bool) -> Result<Vec<Snapshot>> {
        Ok(std::mem::take(&mut self.snapshots))
    }

    fn sync(&mut self) -> Result<()> {
        Ok(())
    }

    fn graph(&self) -> &Graph {
        &self.graph
    }

    fn set_learning_rate(&mut self, group: usize, lr: f32) -> Result<()> {
        let cfg = self
            .optimizers
            .get_mut(group)
            .ok_or_else(|| no_group(group))?;
        cfg.lr = lr;
        Ok(())
    }
}

pub(crate) fn no_group(group: usize) -> Error {
    Error::InvalidArgument(format!("the executor has no optimizer group {group}"))
}
