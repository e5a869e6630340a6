//! A step's inputs in fewer dispatches: a generator's noise and the random class labels
//! drawn beside it in one, a training batch (its row numbers, the rows and their labels)
//! in one instead of three, and the two concats that stack the real and the fake batch
//! (rows and labels) for the discriminator in one.

use std::sync::Arc;

use super::{GpuExecutor, Plan, StreamUse, missing_dataset};
use crate::error::{Error, Result};
use crate::graph::{Instr, RandomStreams};
use crate::kernels::combine::{Concat, concat_pair};
use crate::kernels::noise::{DatasetRows, DrawnBatch, draw_batch, normal_and_indices};

impl GpuExecutor {
    /// Records the fused draw `instrs` starts with, if any, and says how many
    /// instructions it covers.
    pub(super) fn compile_fused_inputs(
        &mut self,
        instrs: &[Instr],
        plan: &mut Plan,
    ) -> Result<Option<usize>> {
        match *instrs {
            [
                Instr::Noise { out, len, slot },
                Instr::RandomLabels {
                    out: labels,
                    batch,
                    classes,
                    slot: labels_slot,
                },
                ..,
            ] if out != labels => {
                let bound = u32::try_from(classes).map_err(|_| {
                    Error::InvalidArgument(format!("{classes} classes overflow u32"))
                })?;
                let (out, labels) = (self.buffer(out), self.buffer(labels));
                let seed = self.streams.seed;
                let noise = (RandomStreams::noise_stream(0, slot), &out, len);
                let drawn = (
                    RandomStreams::noise_stream(0, labels_slot),
                    &labels,
                    batch,
                    bound,
                );
                let (d, s, s_labels) = normal_and_indices(&self.ctx, seed, noise, drawn)?;
                plan.dispatches.push(d);
                plan.streams.push((s, StreamUse::Noise { slot }));
                plan.streams
                    .push((s_labels, StreamUse::Noise { slot: labels_slot }));
                Ok(Some(2))
            }
            // The first batch of the plan; a later one reads the row numbers drawn here.
            [Instr::DataBatch { out, batch }, ref rest @ ..] if plan.batch_indices.is_none() => {
                let labels_out = match rest.first() {
                    Some(&Instr::DataLabels {
                        out: labels,
                        batch: labels_batch,
                    }) if labels_batch == batch && labels != out => Some(labels),
                    _ => None,
                };
                let data = self.dataset.as_ref().ok_or_else(missing_dataset)?;
                let (bytes, labels) = (data.bytes.clone(), data.labels.clone());
                let (rows, row_len) = (data.rows, data.row_len);
                let labels = match (labels_out, labels) {
                    (Some(_), None) => {
                        return Err(Error::InvalidArgument(
                            "a DataLabels input needs a labelled dataset".into(),
                        ));
                    }
                    (Some(_), labels) => labels,
                    (None, _) => None,
                };
                let ctx = Arc::clone(&self.ctx);
                let indices = ctx.storage("batch indices", batch as u64 * 4);
                let out = self.buffer(out);
                let labels_out = labels_out.map(|l| self.buffer(l));
                let dataset = DatasetRows {
                    bytes: &bytes,
                    rows,
                    row_len,
                    labels: labels.as_ref(),
                };
                let drawn = DrawnBatch {
                    indices: &indices,
                    rows: &out,
                    labels: labels_out.as_ref(),
                };
                let stream = RandomStreams::batch_stream(0);
                let seed = self.streams.seed;
                let (d, s) = draw_batch(&ctx, seed, stream, &dataset, batch, drawn)?;
                plan.dispatches.push(d);
                plan.streams.push((s, StreamUse::Batch));
                plan.batch_indices = Some((batch, indices));
                Ok(Some(1 + labels_out.is_some() as usize))
            }
            [
                Instr::Concat {
                    a,
                    b,
                    y,
                    len_a,
                    len_b,
                },
                Instr::Concat {
                    a: a2,
                    b: b2,
                    y: y2,
                    len_a: len_a2,
                    len_b: len_b2,
                },
                ..,
            ] if ![a2, b2, y2].contains(&y) && ![a, b].contains(&y2) => {
                let [a, b, y, a2, b2, y2] = [a, b, y, a2, b2, y2].map(|buf| self.buffer(buf));
                let first = Concat {
                    a: &a,
                    len_a,
                    b: &b,
                    len_b,
                    y: &y,
                };
                let second = Concat {
                    a: &a2,
                    len_a: len_a2,
                    b: &b2,
                    len_b: len_b2,
                    y: &y2,
                };
                plan.dispatches.push(concat_pair(&self.ctx, first, second)?);
                Ok(Some(2))
            }
            _ => Ok(None),
        }
    }
}
