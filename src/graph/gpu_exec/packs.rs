//! Packed parameters: a training executor lays every parameter out in one buffer, and
//! its gradient, Adam moments and moving average in four more of the same layout, so that
//! consecutive Adam (or moving-average) steps over neighbouring tensors run as one
//! dispatch over their span while every other kernel binds only its own tensor's view;
//! a run of Adam steps followed by the moving average of the same tensors is one
//! dispatch too.

use std::sync::Arc;

use super::{GpuExecutor, Plan};
use crate::error::{Error, Result};
use crate::gpu::{GpuBuffer, PackLayout};
use crate::graph::{Init, Instr, NodeId, Op};
use crate::kernels::adam::{adam_ema_update, adam_update};
use crate::kernels::ema::{EmaStep, ema_update};

/// The packed buffers of a training executor, whole, all laid out as `layout`.
pub(super) struct Packs {
    layout: PackLayout,
    values: GpuBuffer,
    grads: GpuBuffer,
    m: GpuBuffer,
    v: GpuBuffer,
    averages: Option<GpuBuffer>,
}

impl GpuExecutor {
    /// Lays every parameter out in one pack (with its gradient and Adam moments in three
    /// more of the same layout), and each moving average of a parameter at its source's
    /// place in a fifth.
    pub(super) fn pack_parameters(&mut self) {
        let params = self.graph.params();
        let lens: Vec<usize> = params.iter().map(|&p| self.graph.nodes[p].len()).collect();
        let align = u64::from(self.ctx.limits.min_storage_buffer_offset_alignment);
        let layout = PackLayout::new(&lens, align);
        let [values, grads, m, v] = ["parameters", "gradients", "adam m", "adam v"]
            .map(|what| self.ctx.packed(&format!("{what} (packed)"), &layout));
        for (index, &param) in params.iter().enumerate() {
            self.pack_index[param] = Some(index);
            self.values[param] = Some(values.1[index].clone());
            self.grads[param] = Some(grads.1[index].clone());
            self.adam_m[param] = Some(m.1[index].clone());
            self.adam_v[param] = Some(v.1[index].clone());
        }
        // One average per parameter has its slot; a second one (another decay) keeps a
        // buffer of its own.
        let mut taken = vec![false; params.len()];
        let averages: Vec<(NodeId, usize)> = self
            .graph
            .states()
            .into_iter()
            .filter_map(|state| match self.graph.nodes[state].op {
                Op::State(Init::CopyOf { of }) => {
                    let index = self.pack_index[of]?;
                    (!std::mem::replace(&mut taken[index], true)).then_some((state, index))
                }
                _ => None,
            })
            .collect();
        let averages = (!averages.is_empty()).then(|| {
            let (pack, slots) = self.ctx.packed("moving averages (packed)", &layout);
            for (state, index) in averages {
                self.pack_index[state] = Some(index);
                self.values[state] = Some(slots[index].clone());
            }
            pack
        });
        self.packs = Some(Packs {
            layout,
            values: values.0,
            grads: grads.0,
            m: m.0,
            v: v.0,
            averages,
        });
    }

    /// How many instructions from the start of `instrs` run as one dispatch: Adam steps
    /// of one group, or moving-average steps of one decay, over tensors that follow each
    /// other in the packs (1 when the first instruction is none of these).
    pub(super) fn merged_run(&self, instrs: &[Instr]) -> usize {
        let place = |id: NodeId| self.pack_index[id];
        let next_to = |a: &Instr, b: &Instr| match (a, b) {
            (
                Instr::Adam { param, group, .. },
                Instr::Adam {
                    param: next,
                    group: next_group,
                    ..
                },
            ) => group == next_group && follows(place(*param), place(*next)),
            (
                Instr::Ema {
                    source,
                    average,
                    decay,
                    ..
                },
                Instr::Ema {
                    source: next_source,
                    average: next_average,
                    decay: next_decay,
                    ..
                },
            ) => {
                decay == next_decay
                    && place(*source).is_some()
                    && place(*source) == place(*average)
                    && place(*next_source) == place(*next_average)
                    && follows(place(*source), place(*next_source))
            }
            _ => false,
        };
        1 + instrs
            .windows(2)
            .take_while(|pair| next_to(&pair[0], &pair[1]))
            .count()
    }

    /// One dispatch for a run that [`Self::merged_run`] found: Adam or the moving average
    /// over the span of the packs from the run's first tensor to its last.
    pub(super) fn compile_merged(&mut self, run: &[Instr], plan: &mut Plan) -> Result<()> {
        let ctx = Arc::clone(&self.ctx);
        let packs = self.packs.as_ref().expect("merged runs lie in the packs");
        let (Some(first), Some(last)) = (run.first(), run.last()) else {
            return Ok(());
        };
        let node = |instr: &Instr| match *instr {
            Instr::Adam { param, .. } => param,
            Instr::Ema { source, .. } => source,
            _ => unreachable!("merged_run merges only Adam and moving-average steps"),
        };
        let (Some(a), Some(b)) = (self.pack_index[node(first)], self.pack_index[node(last)]) else {
            unreachable!("merged_run merges only packed tensors")
        };
        let span = packs.layout.span(a, b);
        let view = |pack: &GpuBuffer| pack.range(span.start as u64 * 4, span.len() as u64 * 4);
        match *first {
            Instr::Adam { group, .. } => {
                let step = self
                    .optimizers
                    .get(group)
                    .ok_or_else(|| Error::InvalidArgument(format!("no optimizer group {group}")))?;
                let (p, g, m, v) = (
                    view(&packs.values),
                    view(&packs.grads),
                    view(&packs.m),
                    view(&packs.v),
                );
                plan.dispatches
                    .push(adam_update(&ctx, step, &p, &g, &m, &v, span.len())?);
                if !plan.optimizers.contains(&group) {
                    plan.optimizers.push(group);
                }
            }
            Instr::Ema { decay, .. } => {
                let averages = packs
                    .averages
                    .as_ref()
                    .expect("a packed moving average has the averages' pack");
                let (source, average) = (view(&packs.values), view(averages));
                let at = self.ema_step(decay);
                plan.dispatches.push(ema_update(
                    &ctx,
                    &self.emas[at],
                    &source,
                    &average,
                    span.len(),
                )?);
                if !plan.emas.contains(&at) {
                    plan.emas.push(at);
                }
            }
            _ => unreachable!("merged_run merges only Adam and moving-average steps"),
        }
        Ok(())
    }

    /// When `instrs` starts with a run of Adam steps and then a run of moving-average
    /// steps of exactly the same packed tensors (a generator's weights and their average),
    /// the two runs' lengths: one dispatch steps both.
    pub(super) fn adam_ema_runs(&self, instrs: &[Instr]) -> Option<(usize, usize)> {
        let Some(Instr::Adam { .. }) = instrs.first() else {
            return None;
        };
        let adam = self.merged_run(instrs);
        let emas = &instrs[adam..];
        let Some(Instr::Ema { .. }) = emas.first() else {
            return None;
        };
        let ema = self.merged_run(emas);
        let place = |id: NodeId| self.pack_index[id];
        let places = |instr: &Instr| match *instr {
            Instr::Adam { param, .. } => (place(param), place(param)),
            Instr::Ema {
                source, average, ..
            } => (place(source), place(average)),
            _ => (None, None),
        };
        let ends = |run: &[Instr]| (places(&run[0]), places(&run[run.len() - 1]));
        let ((first, _), (last, _)) = ends(&instrs[..adam]);
        let ((source, average), (last_source, last_average)) = ends(&emas[..ema]);
        let same = first.is_some()
            && (source, average, last_source, last_average) == (first, first, last, last);
        same.then_some((adam, ema))
    }

    /// One dispatch for the runs that [`Self::adam_ema_runs`] found.
    pub(super) fn compile_adam_ema(
        &mut self,
        adam: &[Instr],
        ema: &Instr,
        plan: &mut Plan,
    ) -> Result<()> {
        let (Instr::Adam { param, group, .. }, Some(Instr::Adam { param: last, .. })) =
            (&adam[0], adam.last())
        else {
            unreachable!("adam_ema_runs starts with Adam steps");
        };
        let Instr::Ema { decay, .. } = *ema else {
            unreachable!("adam_ema_runs ends with moving-average steps");
        };
        let (Some(a), Some(b)) = (self.pack_index[*param], self.pack_index[*last]) else {
            unreachable!("adam_ema_runs merges only packed tensors")
        };
        let at = self.ema_step(decay);
        let ctx = Arc::clone(&self.ctx);
        let packs = self.packs.as_ref().expect("merged runs lie in the packs");
        let averages = packs
            .averages
            .as_ref()
            .expect("a packed moving average has the averages' pack");
        let span = packs.layout.span(a, b);
        let view = |pack: &GpuBuffer| pack.range(span.start as u64 * 4, span.len() as u64 * 4);
        let step = self
            .optimizers
            .get(*group)
            .ok_or_else(|| Error::InvalidArgument(format!("no optimizer group {group}")))?;
        plan.dispatches.push(adam_ema_update(
            &ctx,
            step,
            &view(&packs.values),
            &view(&packs.grads),
            &view(&packs.m),
            &view(&packs.v),
            (&self.emas[at], &view(averages)),
            span.len(),
        )?);
        if !plan.optimizers.contains(group) {
            plan.optimizers.push(*group);
        }
        if !plan.emas.contains(&at) {
            plan.emas.push(at);
        }
        Ok(())
    }

    /// The index of the step uniform of moving averages with `decay`, made on first use.
    pub(super) fn ema_step(&mut self, decay: f32) -> usize {
        match self.emas.iter().position(|e| e.decay == decay) {
            Some(at) => at,
            None => {
                self.emas.push(EmaStep::new(&self.ctx, decay));
                self.emas.len() - 1
            }
        }
    }
}

/// Whether the packed tensor at `b` comes right after the one at `a`.
fn follows(a: Option<usize>, b: Option<usize>) -> bool {
    matches!((a, b), (Some(a), Some(b)) if b == a + 1)
}
