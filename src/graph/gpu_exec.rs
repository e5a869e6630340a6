//! The wgpu executor: instruction lists become recorded dispatches over buffers that are
//! allocated once.
//!
//! `compile` builds every pipeline, bind group and uniform up front; `run` only rewrites
//! the few per-step uniforms (noise and batch streams, Adam's step) and replays the
//! dispatches into one compute pass and one queue submission. Nothing is read back
//! during a step; the dataset lives on the GPU as packed u8 and batches are gathered there.
//! An executor with optimizers packs the parameters (`gpu_exec/packs.rs`), so that an
//! optimizer group's Adam steps are one dispatch.

use std::ops::Range;
use std::sync::Arc;

use crate::cpu::{AdamConfig, DropoutMask};
use crate::error::{Error, Result};
use crate::gpu::{Dispatch, GpuBuffer, GpuContext};
use crate::graph::cpu_exec::adam_step_number;
use crate::graph::{Buf, Dataset, Executor, Graph, Instr, NodeId, RandomStreams, Snapshot};
use crate::kernels::adam::{AdamStep, adam_update};
use crate::kernels::batchnorm::{self, BatchNormShape};
use crate::kernels::bce::{BceOptions, Labels, bce_with_logits};
use crate::kernels::ema::{EmaStep, ema_update};
use crate::kernels::gemm::{GemmShape, GemmVariant};
use crate::kernels::noise::{NoiseKind, NoiseStream, dropout, noise};
use crate::kernels::softmax_ce::{self, SoftmaxCeOptions};
use crate::kernels::{combine, conv, elementwise, embedding, gather, gemm};

mod fused;
mod fused_heads;
mod fused_inputs;
mod packs;
pub use fused_heads::head_run_len;
use packs::Packs;

/// A per-step random stream of a compiled plan.
enum StreamUse {
    Noise { slot: u32 },
    Batch,
}

struct Plan {
    dispatches: Vec<Dispatch>,
    /// The instructions (indices into the compiled list) each dispatch was recorded for:
    /// one, or a run of Adam or moving-average steps merged into one dispatch.
    sources: Vec<Range<usize>>,
    streams: Vec<(NoiseStream, StreamUse)>,
    optimizers: Vec<usize>,
    /// The moving averages (indices into the executor's) the plan steps.
    emas: Vec<usize>,
    /// This step's dataset row numbers, drawn once and read by both `DataBatch` and
    /// `DataLabels` (so images and labels are the same rows).
    batch_indices: Option<(usize, GpuBuffer)>,
}

struct GpuDataset {
    bytes: GpuBuffer,
    labels: Option<GpuBuffer>,
    rows: usize,
    row_len: usize,
}

/// A readback in flight: a staging buffer being mapped, and where each value lies in it.
struct PendingSnapshot {
    tag: u64,
    staging: wgpu::Buffer,
    lens: Vec<usize>,
    mapped: Arc<std::sync::Mutex<Option<std::result::Result<(), wgpu::BufferAsyncError>>>>,
}

pub struct GpuExecutor {
    ctx: Arc<GpuContext>,
    graph: Graph,
    values: Vec<Option<GpuBuffer>>,
    grads: Vec<Option<GpuBuffer>>,
    adam_m: Vec<Option<GpuBuffer>>,
    adam_v: Vec<Option<GpuBuffer>>,
    /// Each packed node's place in the packs (parameters and the moving averages of
    /// parameters, which lie at their source's place in the averages' pack).
    pack_index: Vec<Option<usize>>,
    packs: Option<Packs>,
    optimizers: Vec<AdamStep>,
    /// One step uniform per moving-average decay.
    emas: Vec<EmaStep>,
    dataset: Option<GpuDataset>,
    streams: RandomStreams,
    plans: Vec<Plan>,
    pending: std::collections::VecDeque<PendingSnapshot>,
}

fn missing_dataset() -> Error {
    Error::InvalidArgument("a DataBatch input needs a dataset".into())
}

impl GpuExecutor {
    pub fn new(
        ctx: Arc<GpuContext>,
        graph: &Graph,
        optimizers: Vec<AdamConfig>,
        dataset: Option<Arc<Dataset>>,
        streams: RandomStreams,
    ) -> Result<Self> {
        let optimizers = optimizers
            .into_iter()
            .map(|cfg| AdamStep::new(&ctx, cfg))
            .collect::<Result<Vec<_>>>()?;
        // Uploaded once as packed bytes (47 MB for MNIST); batches are gathered on the GPU.
        let dataset = dataset.map(|d| GpuDataset {
            bytes: ctx.upload("dataset (u8 rows)", &d.bytes),
            labels: d
                .labels
                .as_ref()
                .map(|l| ctx.upload("dataset labels (u8)", l)),
            rows: d.rows,
            row_len: d.row_len,
        });
        let n = graph.nodes.len();
        let mut exec = GpuExecutor {
            ctx,
            graph: graph.clone(),
            values: vec![None; n],
            grads: vec![None; n],
            adam_m: vec![None; n],
            adam_v: vec![None; n],
            pack_index: vec![None; n],
            packs: None,
            optimizers,
            emas: Vec::new(),
            dataset,
            streams,
            plans: Vec::new(),
            pending: std::collections::VecDeque::new(),
        };
        if !exec.optimizers.is_empty() {
            exec.pack_parameters();
        }
        for id in 0..n {
            let root = exec.graph.storage(id);
            exec.buffer(Buf::Value(root));
        }
        exec.ctx.check("allocating the graph's buffers")?;
        Ok(exec)
    }

    /// A compiled plan's dispatches in order, for replay outside this process (the
    /// browser export). Refused for plans that draw noise or batches, whose per-step
    /// uniforms a verbatim replay would freeze.
    pub fn recorded_dispatches(&self, plan: usize) -> Result<&[Dispatch]> {
        let plan = self.plan(plan)?;
        if !plan.streams.is_empty() || !plan.optimizers.is_empty() || !plan.emas.is_empty() {
            return Err(Error::InvalidArgument(
                "a plan with per-step random streams or Adam steps cannot be replayed verbatim"
                    .into(),
            ));
        }
        Ok(&plan.dispatches)
    }

    /// A compiled plan's dispatches in order, each with the index of the instruction it
    /// was recorded for, as one [`Executor::run`] replays them: into
    /// [`crate::gpu::dispatch::PASSES_PER_RUN`] compute pass and
    /// [`crate::gpu::dispatch::SUBMISSIONS_PER_RUN`] queue submission.
    pub fn plan_dispatches(&self, plan: usize) -> Result<(&[Dispatch], &[Range<usize>])> {
        let plan = self.plan(plan)?;
        Ok((&plan.dispatches, &plan.sources))
    }

    fn plan(&self, plan: usize) -> Result<&Plan> {
        self.plans
            .get(plan)
            .ok_or_else(|| Error::InvalidArgument(format!("no compiled plan {plan}")))
    }

    /// The buffer holding the value of node `id` (shared by views of one storage).
    pub fn value_buffer(&self, id: NodeId) -> Option<&GpuBuffer> {
        self.values.get(self.graph.storage(id))?.as_ref()
    }

    /// The buffer behind `buf`, allocated (zeroed) on first use.
    fn buffer(&mut self, buf: Buf) -> GpuBuffer {
        let (slots, kind, id) = match buf {
            Buf::Value(id) => (&mut self.values, "value", id),
            Buf::Grad(id) => (&mut self.grads, "grad", id),
        };
        let node = &self.graph.nodes[id];
        slots[id]
            .get_or_insert_with(|| {
                self.ctx
                    .storage(&format!("{kind} of {}", node.name), node.len() as u64 * 4)
            })
            .clone()
    }

    fn moments(&mut self, param: NodeId) -> (GpuBuffer, GpuBuffer) {
        let node = &self.graph.nodes[param];
        let bytes = node.len() as u64 * 4;
        let m = self.adam_m[param]
            .get_or_insert_with(|| self.ctx.storage(&format!("adam m of {}", node.name), bytes))
            .clone();
        let v = self.adam_v[param]
            .get_or_insert_with(|| self.ctx.storage(&format!("adam v of {}", node.name), bytes))
            .clone();
        (m, v)
    }

    /// The plan's batch-index buffer, with the dispatch that fills it each step recorded
    /// on first use.
    fn batch_indices(&self, plan: &mut Plan, batch: usize) -> Result<GpuBuffer> {
        if let Some((drawn, indices)) = &plan.batch_indices {
            if *drawn != batch {
                return Err(Error::InvalidArgument(format!(
                    "one plan draws batches of {drawn} and {batch} dataset rows"
                )));
            }
            return Ok(indices.clone());
        }
        let data = self.dataset.as_ref().ok_or_else(missing_dataset)?;
        let bound = u32::try_from(data.rows).map_err(|_| missing_dataset())?;
        let indices = self.ctx.storage("batch indices", batch as u64 * 4);
        let (d, s) = noise(
            &self.ctx,
            NoiseKind::BatchIndices { bound },
            self.streams.seed,
            RandomStreams::batch_stream(0),
            &indices,
            batch,
        )?;
        plan.dispatches.push(d);
        plan.streams.push((s, StreamUse::Batch));
        plan.batch_indices = Some((batch, indices.clone()));
        Ok(indices)
    }

    /// A dropout (or its gradient: x = dy, y = dx) on noise stream `slot` of each step.
    fn compile_dropout(
        &mut self,
        plan: &mut Plan,
        (x, y): (Buf, Buf),
        len: usize,
        rate: f32,
        slot: u32,
        accumulate: bool,
    ) -> Result<()> {
        let (x, y) = (self.buffer(x), self.buffer(y));
        let stream = RandomStreams::noise_stream(0, slot);
        let mask = DropoutMask::new(rate)?;
        let (d, s) = dropout(
            &self.ctx,
            mask,
            self.streams.seed,
            stream,
            &x,
            &y,
            len,
            accumulate,
        )?;
        plan.dispatches.push(d);
        plan.streams.push((s, StreamUse::Noise { slot }));
        Ok(())
    }

    fn compile_instr(&mut self, instr: &Instr, plan: &mut Plan) -> Result<()> {
        let ctx = Arc::clone(&self.ctx);
        let ctx = ctx.as_ref();
        match *instr {
            Instr::Noise { out, len, slot } => {
                let out = self.buffer(out);
                let stream = RandomStreams::noise_stream(0, slot);
                let (d, s) = noise(ctx, NoiseKind::Normal, self.streams.seed, stream, &out, len)?;
                plan.dispatches.push(d);
                plan.streams.push((s, StreamUse::Noise { slot }));
            }
            Instr::RandomLabels {
                out,
                batch,
                classes,
                slot,
            } => {
                let out = self.buffer(out);
                let bound = u32::try_from(classes).map_err(|_| {
                    Error::InvalidArgument(format!("{classes} classes overflow u32"))
                })?;
                let stream = RandomStreams::noise_stream(0, slot);
                let kind = NoiseKind::BatchIndices { bound };
                let (d, s) = noise(ctx, kind, self.streams.seed, stream, &out, batch)?;
                plan.dispatches.push(d);
                plan.streams.push((s, StreamUse::Noise { slot }));
            }
            Instr::Embedding {
                table,
                labels,
                out,
                batch,
                classes,
                dim,
            } => {
                let (table, labels, out) =
                    (self.buffer(table), self.buffer(labels), self.buffer(out));
                plan.dispatches.push(embedding::embedding_forward(
                    ctx,
                    &table,
                    &labels,
                    &out,
                    (batch, classes, dim),
                    false,
                )?);
            }
            Instr::EmbeddingGrad {
                dy,
                labels,
                dtable,
                batch,
                classes,
                dim,
                accumulate,
            } => {
                let (dy, labels, dtable) =
                    (self.buffer(dy), self.buffer(labels), self.buffer(dtable));
                plan.dispatches.push(embedding::embedding_backward(
                    ctx,
                    &dy,
                    &labels,
                    &dtable,
                    (batch, classes, dim),
                    accumulate,
                )?);
            }
            Instr::Add { a, b, y, len } => {
                let (a, b, y) = (self.buffer(a), self.buffer(b), self.buffer(y));
                plan.dispatches.push(combine::add(ctx, &a, &b, &y, len)?);
            }
            Instr::Accumulate {
                src,
                offset,
                dst,
                len,
                accumulate,
            } => {
                let (src, dst) = (self.buffer(src), self.buffer(dst));
                plan.dispatches.push(combine::accumulate(
                    ctx, &src, offset, &dst, len, accumulate,
                )?);
            }
            Instr::Concat {
                a,
                b,
                y,
                len_a,
                len_b,
            } => {
                let (a, b, y) = (self.buffer(a), self.buffer(b), self.buffer(y));
                plan.dispatches
                    .push(combine::concat(ctx, &a, len_a, &b, len_b, &y)?);
            }
            Instr::RowDot {
                a,
                b,
                y,
                rows,
                cols,
            } => {
                let (a, b, y) = (self.buffer(a), self.buffer(b), self.buffer(y));
                plan.dispatches
                    .push(combine::row_dot(ctx, &a, &b, &y, rows, cols)?);
            }
            Instr::RowDotGrad {
                dy,
                other,
                dx,
                rows,
                cols,
                accumulate,
            } => {
                let (dy, other, dx) = (self.buffer(dy), self.buffer(other), self.buffer(dx));
                plan.dispatches.push(combine::row_dot_grad(
                    ctx, &dy, &other, &dx, rows, cols, accumulate,
                )?);
            }
            Instr::DataBatch { out, batch } => {
                let indices = self.batch_indices(plan, batch)?;
                let data = self.dataset.as_ref().ok_or_else(missing_dataset)?;
                let (bytes, rows, row_len) = (data.bytes.clone(), data.rows, data.row_len);
                let out = self.buffer(out);
                plan.dispatches.push(gather::gather_rows(
                    ctx, &bytes, rows, row_len, &indices, batch, &out,
                )?);
            }
            Instr::DataLabels { out, batch } => {
                let indices = self.batch_indices(plan, batch)?;
                let data = self.dataset.as_ref().ok_or_else(missing_dataset)?;
                let labels = data.labels.clone().ok_or_else(|| {
                    Error::InvalidArgument("a DataLabels input needs a labelled dataset".into())
                })?;
                let rows = data.rows;
                let out = self.buffer(out);
                plan.dispatches.push(gather::gather_labels(
                    ctx, &labels, rows, &indices, batch, &out,
                )?);
            }
            Instr::SoftmaxCeLoss {
                logits,
                labels,
                stats,
                batch,
                classes,
            } => {
                let (logits, labels, stats) =
                    (self.buffer(logits), self.buffer(labels), self.buffer(stats));
                // The kernel always writes a gradient too; the loss pass discards it.
                let scratch = ctx.storage(
                    "softmax loss scratch gradient",
                    (batch * classes) as u64 * 4,
                );
                plan.dispatches.push(softmax_ce::softmax_cross_entropy(
                    ctx,
                    &logits,
                    &labels,
                    batch,
                    classes,
                    &scratch,
                    &stats,
                    SoftmaxCeOptions::default(),
                )?);
            }
            Instr::SoftmaxCeGrad {
                logits,
                labels,
                dlogits,
                batch,
                classes,
                accumulate,
            } => {
                let (logits, labels, dlogits) = (
                    self.buffer(logits),
                    self.buffer(labels),
                    self.buffer(dlogits),
                );
                let scratch = ctx.storage("softmax grad scratch stats", 8);
                let options = SoftmaxCeOptions {
                    accumulate,
                    ..SoftmaxCeOptions::default()
                };
                plan.dispatches.push(softmax_ce::softmax_cross_entropy(
                    ctx, &logits, &labels, batch, classes, &dlogits, &scratch, options,
                )?);
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
                let (a, b, c) = (self.buffer(a), self.buffer(b), self.buffer(c));
                let bias = bias.map(|x| self.buffer(x));
                let shape = GemmShape {
                    m,
                    n,
                    k,
                    trans_a,
                    trans_b,
                    accumulate,
                };
                plan.dispatches.push(gemm::gemm(
                    ctx,
                    &shape,
                    &a,
                    &b,
                    bias.as_ref(),
                    &c,
                    GemmVariant::Auto,
                )?);
            }
            Instr::BiasGrad {
                dy,
                db,
                rows,
                cols,
                accumulate,
            } => {
                let (dy, db) = (self.buffer(dy), self.buffer(db));
                plan.dispatches
                    .extend(gemm::bias_grad(ctx, &dy, rows, cols, &db, accumulate)?);
            }
            Instr::Conv2d { geom, x, w, b, y } => {
                let (x, w, y) = (self.buffer(x), self.buffer(w), self.buffer(y));
                let b = b.map(|b| self.buffer(b));
                plan.dispatches.extend(conv::conv2d_forward(
                    ctx,
                    &geom,
                    &x,
                    &w,
                    b.as_ref(),
                    &y,
                    false,
                )?);
            }
            Instr::Conv2dInputGrad {
                geom,
                dy,
                w,
                dx,
                accumulate,
            } => {
                let (dy, w, dx) = (self.buffer(dy), self.buffer(w), self.buffer(dx));
                plan.dispatches.extend(conv::conv2d_backward_input(
                    ctx, &geom, &dy, &w, &dx, accumulate,
                )?);
            }
            Instr::Conv2dWeightGrad {
                geom,
                x,
                dy,
                dw,
                accumulate,
            } => {
                let (x, dy, dw) = (self.buffer(x), self.buffer(dy), self.buffer(dw));
                plan.dispatches.extend(conv::conv2d_backward_weight(
                    ctx, &geom, &x, &dy, &dw, accumulate,
                )?);
            }
            Instr::ConvTranspose2d { geom, x, w, b, y } => {
                let (x, w, y) = (self.buffer(x), self.buffer(w), self.buffer(y));
                let b = b.map(|b| self.buffer(b));
                plan.dispatches.extend(conv::conv_transpose2d_forward(
                    ctx,
                    &geom,
                    &x,
                    &w,
                    b.as_ref(),
                    &y,
                    false,
                )?);
            }
            Instr::ConvTranspose2dInputGrad {
                geom,
                dy,
                w,
                dx,
                accumulate,
            } => {
                let (dy, w, dx) = (self.buffer(dy), self.buffer(w), self.buffer(dx));
                plan.dispatches
                    .extend(conv::conv_transpose2d_backward_input(
                        ctx, &geom, &dy, &w, &dx, accumulate,
                    )?);
            }
            Instr::ConvTranspose2dWeightGrad {
                geom,
                x,
                dy,
                dw,
                accumulate,
            } => {
                let (x, dy, dw) = (self.buffer(x), self.buffer(dy), self.buffer(dw));
                plan.dispatches
                    .extend(conv::conv_transpose2d_backward_weight(
                        ctx, &geom, &x, &dy, &dw, accumulate,
                    )?);
            }
            Instr::Activation { act, x, y, len } => {
                let (x, y) = (self.buffer(x), self.buffer(y));
                plan.dispatches
                    .push(elementwise::activation_forward(ctx, act, &x, &y, len)?);
            }
            Instr::ActivationGrad {
                act,
                x,
                y,
                dy,
                dx,
                len,
                accumulate,
            } => {
                let (x, y, dy, dx) = (
                    self.buffer(x),
                    self.buffer(y),
                    self.buffer(dy),
                    self.buffer(dx),
                );
                plan.dispatches.push(elementwise::activation_backward(
                    ctx, act, &x, &y, &dy, &dx, len, accumulate,
                )?);
            }
            Instr::BceLoss {
                logits,
                label,
                stats,
                first,
                len,
            } => {
                let (logits, stats) = (self.buffer(logits), self.buffer(stats));
                // The kernel always writes a gradient too; the loss pass discards it.
                let rows = first + len;
                let scratch = ctx.storage("bce loss scratch gradient", rows as u64 * 4);
                let options = BceOptions {
                    first,
                    ..BceOptions::default()
                };
                plan.dispatches.push(bce_with_logits(
                    ctx,
                    &logits,
                    Labels::Constant(label),
                    len,
                    &scratch,
                    &stats,
                    options,
                )?);
            }
            Instr::BceGrad {
                logits,
                label,
                dlogits,
                first,
                len,
                total,
                accumulate,
            } => {
                let (logits, dlogits) = (self.buffer(logits), self.buffer(dlogits));
                let scratch = ctx.storage("bce grad scratch stats", 8);
                let options = BceOptions {
                    accumulate,
                    first,
                    total: Some(total),
                    ..BceOptions::default()
                };
                plan.dispatches.push(bce_with_logits(
                    ctx,
                    &logits,
                    Labels::Constant(label),
                    len,
                    &dlogits,
                    &scratch,
                    options,
                )?);
            }
            Instr::BatchNorm {
                x,
                gamma,
                beta,
                mean,
                var,
                y,
                rows,
                channels,
                epsilon,
                momentum,
            } => {
                let [x, gamma, beta, mean, var, y] =
                    [x, gamma, beta, mean, var, y].map(|b| self.buffer(b));
                let shape = BatchNormShape {
                    rows,
                    channels,
                    epsilon,
                };
                plan.dispatches.extend(batchnorm::batch_norm_forward(
                    ctx, shape, &x, &gamma, &beta, &mean, &var, &y, momentum,
                )?);
            }
            Instr::BatchNormGrad {
                x,
                gamma,
                dy,
                dx,
                dgamma,
                dbeta,
                rows,
                channels,
                epsilon,
            } => {
                let [x, gamma, dy] = [x, gamma, dy].map(|b| self.buffer(b));
                let [dx, dgamma, dbeta] =
                    [dx, dgamma, dbeta].map(|t| t.map(|(b, acc)| (self.buffer(b), acc)));
                fn target(t: &Option<(GpuBuffer, bool)>) -> Option<(&GpuBuffer, bool)> {
                    t.as_ref().map(|(b, a)| (b, *a))
                }
                let shape = BatchNormShape {
                    rows,
                    channels,
                    epsilon,
                };
                plan.dispatches.extend(batchnorm::batch_norm_backward(
                    ctx,
                    shape,
                    &x,
                    &gamma,
                    &dy,
                    target(&dx),
                    target(&dgamma),
                    target(&dbeta),
                )?);
            }
            Instr::Dropout {
                x,
                y,
                len,
                rate,
                slot,
            } => self.compile_dropout(plan, (x, y), len, rate, slot, false)?,
            Instr::DropoutGrad {
                dy,
                dx,
                len,
                rate,
                slot,
                accumulate,
            } => self.compile_dropout(plan, (dy, dx), len, rate, slot, accumulate)?,
            Instr::Ema {
                source,
                average,
                len,
                decay,
            } => {
                let source = self.buffer(Buf::Value(source));
                let average = self.buffer(Buf::Value(average));
                let at = self.ema_step(decay);
                plan.dispatches
                    .push(ema_update(ctx, &self.emas[at], &source, &average, len)?);
                if !plan.emas.contains(&at) {
                    plan.emas.push(at);
                }
            }
            Instr::Adam { param, len, group } => {
                let p = self.buffer(Buf::Value(param));
                let g = self.buffer(Buf::Grad(param));
                let (m, v) = self.moments(param);
                let step = self
                    .optimizers
                    .get(group)
                    .ok_or_else(|| Error::InvalidArgument(format!("no optimizer group {group}")))?;
                plan.dispatches
                    .push(adam_update(ctx, step, &p, &g, &m, &v, len)?);
                if !plan.optimizers.contains(&group) {
                    plan.optimizers.push(group);
                }
            }
        }
        Ok(())
    }
}

impl Executor for GpuExecutor {
    fn compile(&mut self, instrs: &[Instr]) -> Result<usize> {
        let mut plan = Plan {
            dispatches: Vec::new(),
            sources: Vec::new(),
            streams: Vec::new(),
            optimizers: Vec::new(),
            emas: Vec::new(),
            batch_indices: None,
        };
        let mut i = 0;
        while i < instrs.len() {
            let mut run = self.merged_run(&instrs[i..]);
            if let Some((adam, ema)) = self.adam_ema_runs(&instrs[i..]) {
                self.compile_adam_ema(&instrs[i..i + adam], &instrs[i + adam], &mut plan)?;
                run = adam + ema;
            } else if run > 1 {
                self.compile_merged(&instrs[i..i + run], &mut plan)?;
            } else if let Some(fused) = self.compile_fused(&instrs[i..], &mut plan)? {
                run = fused;
            } else {
                self.compile_instr(&instrs[i], &mut plan)?;
            }
            plan.sources.resize(plan.dispatches.len(), i..i + run);
            i += run;
        }
        self.ctx.check("compiling a plan")?;
        self.plans.push(plan);
        Ok(self.plans.len() - 1)
    }

    fn run(&mut self, plan: usize, iteration: u64) -> Result<()> {
        let ctx = &self.ctx;
        let plan = &self.plans[plan];
        for (stream, purpose) in &plan.streams {
            let id = match purpose {
                StreamUse::Noise { slot } => RandomStreams::noise_stream(iteration, *slot),
                StreamUse::Batch => RandomStreams::batch_stream(iteration),
            };
            stream.set_stream(ctx, id);
        }
        let t = adam_step_number(iteration)?;
        for &group in &plan.optimizers {
            self.optimizers[group].set_step(ctx, t)?;
        }
        for &at in &plan.emas {
            self.emas[at].set_step(ctx, iteration);
        }
        let refs: Vec<&Dispatch> = plan.dispatches.iter().collect();
        ctx.run(&refs, "a training step")
    }

    fn read(&mut self, buf: Buf) -> Result<Vec<f32>> {
        let len = self.graph.nodes[buf_node(buf)].len();
        let buffer = self.buffer(buf);
        self.ctx.read(&buffer, len)
    }

    fn write(&mut self, buf: Buf, data: &[f32]) -> Result<()> {
        let len = self.graph.nodes[buf_node(buf)].len();
        crate::cpu::check_len("write", "data", data.len(), len)?;
        let buffer = self.buffer(buf);
        self.ctx.write(&buffer, data);
        Ok(())
    }

    fn read_adam(&mut self, param: NodeId) -> Result<(Vec<f32>, Vec<f32>)> {
        let len = self.graph.nodes[param].len();
        let (m, v) = self.moments(param);
        Ok((self.ctx.read(&m, len)?, self.ctx.read(&v, len)?))
    }

    fn write_adam(&mut self, param: NodeId, m: &[f32], v: &[f32]) -> Result<()> {
        let len = self.graph.nodes[param].len();
        crate::cpu::check_len("write_adam", "m", m.len(), len)?;
        crate::cpu::check_len("write_adam", "v", v.len(), len)?;
        let (mb, vb) = self.moments(param);
        self.ctx.write(&mb, m);
        self.ctx.write(&vb, v);
        Ok(())
    }

    fn snapshot(&mut self, tag: u64, bufs: &[Buf]) -> Result<()> {
        let lens: Vec<usize> = bufs
            .iter()
            .map(|&b| self.graph.nodes[buf_node(b)].len())
            .collect();
        let total: usize = lens.iter().sum();
        let staging = self.ctx.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("snapshot staging"),
            size: (total.max(1) * 4) as u64,
            usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        let mut encoder = self
            .ctx
            .device
            .create_command_encoder(&wgpu::CommandEncoderDescriptor {
                label: Some("snapshot"),
            });
        let mut offset = 0;
        for (&b, &len) in bufs.iter().zip(&lens) {
            let source = self.buffer(b);
            encoder.copy_buffer_to_buffer(
                source.raw(),
                source.offset(),
                &staging,
                offset,
                (len * 4) as u64,
            );
            offset += (len * 4) as u64;
        }
        self.ctx.submit(encoder, "copying a snapshot")?;
        let mapped = Arc::new(std::sync::Mutex::new(None));
        let flag = Arc::clone(&mapped);
        staging.slice(..).map_async(wgpu::MapMode::Read, move |r| {
            *flag.lock().unwrap() = Some(r);
        });
        self.pending.push_back(PendingSnapshot {
            tag,
            staging,
            lens,
            mapped,
        });
        Ok(())
    }

    fn take_snapshots(&mut self, wait: bool) -> Result<Vec<Snapshot>> {
        if self.pending.is_empty() {
            return Ok(Vec::new());
        }
        let poll = if wait {
            wgpu::PollType::wait_indefinitely()
        } else {
            wgpu::PollType::Poll
        };
        self.ctx.device.poll(poll).map_err(|e| Error::Gpu {
            context: "polling for a snapshot".into(),
            message: e.to_string(),
        })?;
        self.ctx.check("reading a snapshot")?;
        let mut out = Vec::new();
        while let Some(front) = self.pending.front() {
            let Some(result) = front.mapped.lock().unwrap().take() else {
                break;
            };
            let p = self.pending.pop_front().expect("front exists");
            let map_error = |message: String| Error::Gpu {
                context: "mapping a snapshot".into(),
                message,
            };
            result.map_err(|e| map_error(e.to_string()))?;
            let view = p
                .staging
                .slice(..)
                .get_mapped_range()
                .map_err(|e| map_error(e.to_string()))?;
            let all: &[f32] = bytemuck::cast_slice(&view);
            let mut values = Vec::new();
            let mut start = 0;
            for len in &p.lens {
                values.push(all[start..start + len].to_vec());
                start += len;
            }
            drop(view);
            p.staging.unmap();
            out.push(Snapshot { tag: p.tag, values });
        }
        Ok(out)
    }

    fn sync(&mut self) -> Result<()> {
        self.ctx.wait("waiting for the GPU")
    }

    fn graph(&self) -> &Graph {
        &self.graph
    }

    fn set_learning_rate(&mut self, group: usize, lr: f32) -> Result<()> {
        let step = self
            .optimizers
            .get_mut(group)
            .ok_or_else(|| crate::graph::cpu_exec::no_group(group))?;
        // Read by the next `set_step`, which every run of a plan with Adam steps makes.
        step.config.lr = lr;
        Ok(())
    }

    fn dispatches_per_run(&self, plan: usize) -> Option<usize> {
        let plan = self.plans.get(plan)?;
        Some(
            plan.dispatches
                .iter()
                .filter(|d| d.workgroups() > 0)
                .count(),
        )
    }

    fn time_plan(&mut self, plan: usize, samples: usize) -> Result<f64> {
        let plan = self.plan(plan)?;
        let refs: Vec<&Dispatch> = plan.dispatches.iter().collect();
        self.ctx.time_dispatches(&refs, 3, samples as u32)
    }
}

fn buf_node(buf: Buf) -> NodeId {
    match buf {
        Buf::Value(id) | Buf::Grad(id) => id,
    }
}
