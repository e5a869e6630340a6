//! The CPU executor: runs instruction lists with the CPU reference ops.
//!
//! It is the oracle for the GPU executor and the trainer on machines without a real GPU
//! (the reference ops are GEMM-based and multi-threaded, so it is not slow).

use std::sync::Arc;

use crate::cpu::{self, AdamConfig};
use crate::error::{Error, Result};
use crate::graph::{Buf, Executor, Graph, Instr, NodeId, RandomStreams, Snapshot};

pub struct CpuExecutor {
    graph: Graph,
    values: Vec<Vec<f32>>,
    grads: Vec<Vec<f32>>,
    adam_m: Vec<Vec<f32>>,
    adam_v: Vec<Vec<f32>>,
    optimizers: Vec<AdamConfig>,
    dataset: Option<Arc<crate::graph::Dataset>>,
    streams: RandomStreams,
    plans: Vec<Vec<Instr>>,
    snapshots: Vec<Snapshot>,
}

/// Adds `src` into `dst` or replaces it.
fn store(dst: &mut Vec<f32>, src: Vec<f32>, accumulate: bool) {
    if accumulate {
        for (d, s) in dst.iter_mut().zip(&src) {
            *d += s;
        }
    } else {
        *dst = src;
    }
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

    fn exec(&mut self, instr: &Instr, iteration: u64) -> Result<()> {
        match *instr {
            Instr::Noise { out, len, slot } => {
                let stream = RandomStreams::noise_stream(iteration, slot);
                *self.slot(out) = cpu::normal_noise(self.streams.seed, stream, len);
            }
            Instr::DataBatch { out, batch } => {
                let data = self.dataset.as_ref().ok_or_else(|| {
                    Error::InvalidArgument("a DataBatch input needs a dataset".into())
                })?;
                let indices = self.streams.batch_indices(iteration, batch, data.rows);
                let rows = cpu::gather::gather_rows(&data.bytes, data.row_len, &indices);
                *self.slot(out) = rows;
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
                *self.slot(out) = cpu::uniform_u32(self.streams.seed, stream, batch)
                    .into_iter()
                    .map(|word| f32::from_bits(cpu::uniform_index(word, bound)))
                    .collect();
            }
            Instr::Embedding {
                table,
                labels,
                out,
                classes,
                dim,
                ..
            } => {
                let labels = bits(self.get(labels));
                let y = cpu::embedding_forward(self.get(table), &labels, classes, dim)?;
                *self.slot(out) = y;
            }
            Instr::EmbeddingGrad {
                dy,
                labels,
                dtable,
                classes,
                dim,
                accumulate,
                ..
            } => {
                let labels = bits(self.get(labels));
                let g = cpu::embedding_backward(self.get(dy), &labels, classes, dim)?;
                store(self.slot(dtable), g, accumulate);
            }
            Instr::Add { a, b, y, .. } => {
                let sum = cpu::add(self.get(a), self.get(b))?;
                *self.slot(y) = sum;
            }
            Instr::Accumulate {
                src,
                dst,
                accumulate,
                ..
            } => {
                let value = self.get(src).to_vec();
                store(self.slot(dst), value, accumulate);
            }
            Instr::RowDot { a, b, y, cols, .. } => {
                let dots = cpu::row_dot(self.get(a), self.get(b), cols)?;
                *self.slot(y) = dots;
            }
            Instr::RowDotGrad {
                dy,
                other,
                dx,
                cols,
                accumulate,
                ..
            } => {
                let g = cpu::row_dot_backward(self.get(dy), self.get(other), cols)?;
                store(self.slot(dx), g, accumulate);
            }
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
                *self.slot(out) = classes.into_iter().map(f32::from_bits).collect();
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
                *self.slot(stats) = vec![out.loss, out.accuracy];
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
                store(self.slot(dlogits), out.dlogits, accumulate);
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
            } => {
                let mut result = match bias {
                    Some(bias) => self.get(bias).repeat(m),
                    None => vec![0.0; m * n],
                };
                cpu::gemm(
                    m,
                    n,
                    k,
                    self.get(a),
                    trans_a,
                    self.get(b),
                    trans_b,
                    &mut result,
                    bias.is_some(),
                )?;
                store(self.slot(c), result, accumulate);
            }
            Instr::BiasGrad {
                dy,
                db,
                rows,
                cols,
                accumulate,
            } => {
                let result = cpu::bias_grad(self.get(dy), rows, cols)?;
                store(self.slot(db), result, accumulate);
            }
            Instr::Conv2d { geom, x, w, b, y } => {
                let result = cpu::conv2d_forward(&geom, self.get(x), self.get(w), self.get(b))?;
                *self.slot(y) = result;
            }
            Instr::Conv2dInputGrad {
                geom,
                dy,
                w,
                dx,
                accumulate,
            } => {
                let result = cpu::conv2d_backward_input(&geom, self.get(dy), self.get(w))?;
                store(self.slot(dx), result, accumulate);
            }
            Instr::Conv2dWeightGrad {
                geom,
                x,
                dy,
                dw,
                accumulate,
            } => {
                let result = cpu::conv2d_backward_weight(&geom, self.get(x), self.get(dy))?;
                store(self.slot(dw), result, accumulate);
            }
            Instr::ConvTranspose2d { geom, x, w, b, y } => {
                let result =
                    cpu::conv_transpose2d_forward(&geom, self.get(x), self.get(w), self.get(b))?;
                *self.slot(y) = result;
            }
            Instr::ConvTranspose2dInputGrad {
                geom,
                dy,
                w,
                dx,
                accumulate,
            } => {
                let result =
                    cpu::conv_transpose2d_backward_input(&geom, self.get(dy), self.get(w))?;
                store(self.slot(dx), result, accumulate);
            }
            Instr::ConvTranspose2dWeightGrad {
                geom,
                x,
                dy,
                dw,
                accumulate,
            } => {
                let result =
                    cpu::conv_transpose2d_backward_weight(&geom, self.get(x), self.get(dy))?;
                store(self.slot(dw), result, accumulate);
            }
            Instr::Activation { act, x, y, .. } => {
                let result = cpu::activation_forward(act, self.get(x));
                *self.slot(y) = result;
            }
            Instr::ActivationGrad {
                act,
                x,
                y,
                dy,
                dx,
                accumulate,
                ..
            } => {
                let result = cpu::activation_backward(act, self.get(x), self.get(y), self.get(dy))?;
                store(self.slot(dx), result, accumulate);
            }
            Instr::BceLoss {
                logits,
                label,
                stats,
                len,
            } => {
                let out = cpu::bce_with_logits(self.get(logits), &vec![label; len])?;
                *self.slot(stats) = vec![out.loss, out.mean_prob];
            }
            Instr::BceGrad {
                logits,
                label,
                dlogits,
                len,
                accumulate,
            } => {
                let out = cpu::bce_with_logits(self.get(logits), &vec![label; len])?;
                store(self.slot(dlogits), out.dlogits, accumulate);
            }
            Instr::Adam { param, group, .. } => {
                let cfg = self.optimizers[group];
                let t = adam_step_number(iteration)?;
                let (p, g) = (&mut self.values[param], &self.grads[param]);
                cpu::adam_step(
                    &cfg,
                    t,
                    p,
                    g,
                    &mut self.adam_m[param],
                    &mut self.adam_v[param],
                )?;
            }
        }
        Ok(())
    }
}

/// Class labels stored as u32 bit patterns in an f32 buffer.
fn bits(values: &[f32]) -> Vec<u32> {
    values.iter().map(|x| x.to_bits()).collect()
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
        self.plans.push(instrs.to_vec());
        Ok(self.plans.len() - 1)
    }

    fn run(&mut self, plan: usize, iteration: u64) -> Result<()> {
        let instrs = std::mem::take(&mut self.plans[plan]);
        let result = instrs.iter().try_for_each(|i| self.exec(i, iteration));
        self.plans[plan] = instrs;
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
