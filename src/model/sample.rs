//! Drawing digits from a generator on any executor: sample grids and evaluation during
//! training (on the training executor, with the model's in-graph sampler), `gan-gpu
//! sample` and `eval` (on a generator graph loaded from a checkpoint, streamed a chunk
//! at a time to IDX files).

use std::collections::HashSet;
use std::path::Path;

use crate::cpu::normal_noise_at;
use crate::data::IdxImageWriter;
use crate::error::{Error, Result};
use crate::graph::runtime::Runtime;
use crate::graph::{Buf, Executor, Graph, RandomStreams, lower};
use crate::io::atomic::resolve_output;
use crate::io::checkpoint::load_checkpoint;
use crate::io::images::{
    DIGIT_COLUMNS, DIGIT_SCALE, DigitFile, MAX_PNG_SIDE, grid_capacity, to_u8_pixels,
    write_grid_png,
};
use crate::limits::{bytes_for, check_memory, graph_bytes};
use crate::model::load::{StoredGenerator, Weights, WeightsUsed, load_generator};
use crate::model::{GeneratorNodes, IMAGE_SIDE, PIXELS};

/// Digits in a training sample grid (8x8).
pub const SAMPLE_GRID: usize = 64;

/// A generator's forward pass compiled on an executor.
pub struct Sampler {
    pub nodes: GeneratorNodes,
    plan: usize,
}

impl Sampler {
    /// Compiles `nodes`' forward pass (of `graph`, the executor's graph) on `exec`.
    pub fn compile(exec: &mut dyn Executor, graph: &Graph, nodes: &GeneratorNodes) -> Result<Self> {
        let plan = exec.compile(&lower::forward(graph, &[nodes.image], &HashSet::new()))?;
        Ok(Sampler {
            nodes: nodes.clone(),
            plan,
        })
    }

    /// Images [count, 28, 28, 1] in [-1, 1] for `noise` [count, noise_dim] (and, for a
    /// class-conditional generator, `labels [count]`), a batch of the graph's size at a
    /// time; a short last batch is padded with zeros and cut off again.
    pub fn generate(
        &self,
        exec: &mut dyn Executor,
        noise: &[f32],
        labels: Option<&[u32]>,
    ) -> Result<Vec<f32>> {
        let (batch, dim) = (self.nodes.batch, self.nodes.noise_dim);
        if dim == 0 || !noise.len().is_multiple_of(dim) {
            return Err(Error::Shape {
                op: "generate",
                message: format!(
                    "{} noise values are not whole rows of the noise dimension {dim}",
                    noise.len()
                ),
            });
        }
        let count = noise.len() / dim;
        match (self.nodes.labels, labels) {
            (Some(_), Some(l)) if l.len() == count => {}
            (None, None) => {}
            (Some(_), _) => {
                return Err(Error::InvalidArgument(format!(
                    "this generator is class-conditional: it needs one label per image ({count})"
                )));
            }
            (None, Some(_)) => {
                return Err(Error::InvalidArgument(
                    "this generator is not class-conditional: it takes no labels".into(),
                ));
            }
        }
        let mut images = Vec::with_capacity(count * PIXELS);
        let mut z = vec![0.0; batch * dim];
        let mut y = vec![0.0; batch];
        for start in (0..count).step_by(batch.max(1)) {
            let n = batch.min(count - start);
            z[..n * dim].copy_from_slice(&noise[start * dim..(start + n) * dim]);
            z[n * dim..].fill(0.0);
            let root = exec.graph().storage(self.nodes.z);
            exec.write(Buf::Value(root), &z)?;
            if let (Some(node), Some(labels)) = (self.nodes.labels, labels) {
                for (slot, &label) in y.iter_mut().zip(&labels[start..start + n]) {
                    *slot = f32::from_bits(label);
                }
                y[n..].fill(f32::from_bits(0));
                let root = exec.graph().storage(node);
                exec.write(Buf::Value(root), &y)?;
            }
            exec.run(self.plan, 0)?;
            let root = exec.graph().storage(self.nodes.image);
            let out = exec.read(Buf::Value(root))?;
            images.extend_from_slice(&out[..n * PIXELS]);
        }
        Ok(images)
    }
}

/// Images per forward pass when sampling from a checkpoint, and so the chunk that
/// streamed sampling holds in memory.
const STORED_BATCH: usize = 1000;

/// The class label of generated image `i`, for class-conditional generators.
pub type LabelOf<'a> = &'a dyn Fn(u64) -> u32;

/// A [`LabelOf`] that owns what it needs.
pub type Labeler = Box<dyn Fn(u64) -> u32>;

/// Draws `count` digits from a checkpoint's generator on `runtime`, noise stream 0 of
/// `seed`, and hands them to `each` in order, `STORED_BATCH` at a time: memory holds
/// one chunk whatever `count` is. Chunk by chunk or all at once, image `i` gets the same
/// noise ([`normal_noise_at`]), so the digits are the same either way.
pub fn sample_chunks(
    runtime: &Runtime,
    stored: &StoredGenerator,
    count: u64,
    seed: u64,
    labels: Option<LabelOf>,
    each: &mut dyn FnMut(&[f32]) -> Result<()>,
) -> Result<()> {
    if count == 0 {
        return Ok(());
    }
    let batch = count.min(STORED_BATCH as u64);
    let (graph, nodes) = stored.graph(batch as usize)?;
    // The CPU executor keeps four buffers per node (values, gradients, Adam moments).
    check_memory(
        || format!("the generator of noise dimension {}", stored.noise_dim),
        &format!("sampling {batch} digits at a time"),
        graph_bytes(&graph, 4),
    )?;
    let mut exec = runtime.executor(&graph, vec![], RandomStreams { seed: 0 }, None)?;
    stored.write_into(exec.as_mut())?;
    let sampler = Sampler::compile(exec.as_mut(), &graph, &nodes)?;
    let dim = stored.noise_dim as u64;
    let mut start = 0;
    while start < count {
        let n = batch.min(count - start);
        let noise = normal_noise_at(seed, 0, start * dim, (n * dim) as usize);
        let chunk_labels: Option<Vec<u32>> = labels.map(|f| (start..start + n).map(f).collect());
        each(&sampler.generate(exec.as_mut(), &noise, chunk_labels.as_deref())?)?;
        start += n;
    }
    Ok(())
}

/// Refuses a `--count` whose digits would not fit in this machine's memory, before
/// anything of that size (such as their labels) is allocated.
pub fn check_room_for(count: usize) -> Result<()> {
    check_memory(
        || format!("--count {count}"),
        &format!("holding {count} generated digits"),
        bytes_for(count as u64, (PIXELS * size_of::<f32>()) as u64),
    )
}

/// `count` digits from a checkpoint's generator on `runtime`, with noise stream 0 of
/// `seed` (and, for a class-conditional generator, `labels`), in memory: refused, naming
/// `--count`, when they would not fit.
pub fn sample_stored(
    runtime: &Runtime,
    stored: &StoredGenerator,
    count: usize,
    seed: u64,
    labels: Option<&[u32]>,
) -> Result<Vec<f32>> {
    check_room_for(count)?;
    if let Some(labels) = labels
        && labels.len() != count
    {
        return Err(Error::InvalidArgument(format!(
            "{} labels for {count} digits",
            labels.len()
        )));
    }
    let label_of = labels.map(|l| move |i: u64| l[i as usize]);
    let mut images = Vec::with_capacity(count * PIXELS);
    sample_chunks(
        runtime,
        stored,
        count as u64,
        seed,
        label_of.as_ref().map(|f| f as LabelOf),
        &mut |chunk| {
            images.extend_from_slice(chunk);
            Ok(())
        },
    )?;
    Ok(images)
}

/// Digits from a checkpoint's generator on `runtime` for the given `noise` [count,
/// noise_dim] (and `labels`).
pub fn generate_stored(
    runtime: &Runtime,
    stored: &StoredGenerator,
    noise: &[f32],
    labels: Option<&[u32]>,
) -> Result<Vec<f32>> {
    let count = noise.len() / stored.noise_dim.max(1);
    if count == 0 {
        return Ok(Vec::new());
    }
    let (graph, nodes) = stored.graph(count.min(STORED_BATCH))?;
    let mut exec = runtime.executor(&graph, vec![], RandomStreams { seed: 0 }, None)?;
    stored.write_into(exec.as_mut())?;
    let sampler = Sampler::compile(exec.as_mut(), &graph, &nodes)?;
    sampler.generate(exec.as_mut(), noise, labels)
}

/// `gan-gpu sample`: `count` digits from a checkpoint's generator written to `out`, as
/// MNIST's IDX format (streamed: any count up to the format's 2^32 - 1 in the memory of
/// one chunk) or as a PNG grid (at most [`grid_capacity`] digits). Sizes and the output
/// path are checked before anything is drawn.
pub fn write_samples(
    runtime: &Runtime,
    stored: &StoredGenerator,
    count: u64,
    seed: u64,
    labels: Option<LabelOf>,
    columns: usize,
    out: &Path,
) -> Result<()> {
    let too_large = |problem: String| Error::TooLarge {
        what: format!("--count {count}"),
        problem,
    };
    if count == 0 {
        return Err(Error::InvalidArgument(
            "--count 0: nothing to sample; give at least 1".into(),
        ));
    }
    match DigitFile::of(out) {
        DigitFile::Idx => {
            if count > u64::from(u32::MAX) {
                return Err(too_large(format!(
                    "an IDX file holds at most {} images (its header stores the count as u32)",
                    u32::MAX
                )));
            }
            let mut writer = IdxImageWriter::create(out, count as usize, IMAGE_SIDE, IMAGE_SIDE)?;
            sample_chunks(runtime, stored, count, seed, labels, &mut |images| {
                writer.write(&to_u8_pixels(images))
            })?;
            writer.finish()
        }
        DigitFile::Png => {
            let capacity = grid_capacity(IMAGE_SIDE, DIGIT_COLUMNS, DIGIT_SCALE);
            if count > capacity as u64 {
                return Err(too_large(format!(
                    "a PNG grid holds at most {capacity} digits ({DIGIT_COLUMNS} per row, \
                     {MAX_PNG_SIDE} pixels per side); write them to an IDX file \
                     (--out FILE.idx3-ubyte), which streams any count"
                )));
            }
            let count = count as usize;
            resolve_output(out)?;
            let labels: Option<Vec<u32>> = labels.map(|f| (0..count as u64).map(f).collect());
            let images = sample_stored(runtime, stored, count, seed, labels.as_deref())?;
            let columns = columns.clamp(1, DIGIT_COLUMNS);
            write_grid_png(out, &images, count, IMAGE_SIDE, columns, DIGIT_SCALE)
        }
    }
}

/// The classes a class-conditional generator is asked to draw.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Digits {
    /// Every image of this class.
    One(u32),
    /// One row per class, in order: `count.div_ceil(classes)` images of each.
    All,
}

impl Digits {
    /// `--digit`'s value: a class number, or `all`.
    pub fn parse(text: &str) -> Result<Self> {
        if text == "all" {
            return Ok(Digits::All);
        }
        text.parse().map(Digits::One).map_err(|_| {
            Error::InvalidArgument(format!("--digit {text:?}: expected a digit 0-9 or \"all\""))
        })
    }

    /// The label of image `i` of `count` for a generator conditioned on `classes` classes,
    /// and the images per row of their grid.
    pub fn label_of(self, count: u64, classes: usize) -> Result<(Labeler, usize)> {
        match self {
            Digits::One(d) if d as usize >= classes => Err(Error::InvalidArgument(format!(
                "--digit {d}: this generator draws the digits 0-{}",
                classes.saturating_sub(1)
            ))),
            Digits::One(d) => Ok((Box::new(move |_| d), count.clamp(1, 16) as usize)),
            Digits::All => {
                let columns = count.div_ceil(classes.max(1) as u64).max(1);
                let last = classes.saturating_sub(1) as u64;
                let columns_usize = usize::try_from(columns).unwrap_or(usize::MAX);
                Ok((
                    Box::new(move |i| (i / columns).min(last) as u32),
                    columns_usize,
                ))
            }
        }
    }

    /// The labels of `count` images (see [`Digits::label_of`]) and the grid's row length.
    pub fn labels(self, count: usize, classes: usize) -> Result<(Vec<u32>, usize)> {
        let (label, columns) = self.label_of(count as u64, classes)?;
        Ok(((0..count as u64).map(label).collect(), columns))
    }
}

/// `--digit` given for a generator that takes no class.
pub fn not_conditional(path: &Path, model: &str) -> Error {
    Error::InvalidArgument(format!(
        "--digit: {} is a checkpoint of the {model} model, which is not class-conditional \
         (train one with --model cgan)",
        path.display()
    ))
}

/// `gan-gpu sample`: `count` digits of the checkpoint at `path` to `out` (see
/// [`write_samples`]); a class-conditional generator draws `digits` (default: all, a row
/// each), an unconditional one refuses them. Draws with `weights` (see
/// [`load_generator`]) and says which it used.
pub fn sample_command(
    runtime: &Runtime,
    path: &Path,
    count: u64,
    seed: u64,
    digits: Option<Digits>,
    weights: Weights,
    out: &Path,
) -> Result<WeightsUsed> {
    let stored = load_generator(path, &load_checkpoint(path)?, weights)?;
    let (labels, columns) = match (stored.kind.classes, digits) {
        (Some(classes), digits) => {
            let (label, columns) = digits.unwrap_or(Digits::All).label_of(count, classes)?;
            (Some(label), columns)
        }
        (None, None) => (None, count.clamp(1, DIGIT_COLUMNS as u64) as usize),
        (None, Some(_)) => return Err(not_conditional(path, stored.kind.name)),
    };
    write_samples(
        runtime,
        &stored,
        count,
        seed,
        labels.as_deref(),
        columns,
        out,
    )?;
    Ok(stored.weights)
}
