//! `loss.csv`: its schema (defined here once, from the model's logged values), its rows,
//! reading it back (`plot`, resume), and the progress display.

use std::io::IsTerminal;
use std::path::Path;

use crate::error::{Error, Result};
use crate::graph::Snapshot;
use crate::io::files::read_bounded;
use crate::model::Model;

/// The columns `--eval-every` adds: the raw generator's figures.
pub const EVAL_COLUMNS: [&str; 3] = ["fid", "class_entropy", "confident_fraction"];
/// And, for a model with a moving average, the same figures of the averaged generator.
pub const EMA_EVAL_COLUMNS: [&str; 3] = ["ema_fid", "ema_class_entropy", "ema_confident_fraction"];

/// FID, class entropy and confident fraction of one evaluation.
pub type Figures = (f64, f64, f64);

/// The columns of a run's loss.csv: `iteration`, the model's logged values, `seconds`,
/// and with in-training evaluation the [`EVAL_COLUMNS`] (then, with a moving average,
/// the [`EMA_EVAL_COLUMNS`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LossSchema {
    pub logged: Vec<&'static str>,
    pub eval: bool,
    pub ema: bool,
}

impl LossSchema {
    pub fn of(model: &Model, eval: bool) -> Self {
        LossSchema {
            logged: model.logged.iter().map(|l| l.column).collect(),
            eval,
            ema: eval && model.ema.is_some(),
        }
    }

    pub fn header(&self) -> String {
        let mut columns = vec!["iteration"];
        columns.extend(&self.logged);
        columns.push("seconds");
        if self.eval {
            columns.extend(EVAL_COLUMNS);
        }
        if self.ema {
            columns.extend(EMA_EVAL_COLUMNS);
        }
        columns.join(",")
    }

    /// Which of the schemas of `model` a header line is, if any.
    pub fn from_header(model: &Model, header: &str) -> Option<Self> {
        let logged: Vec<&'static str> = model.logged.iter().map(|l| l.column).collect();
        [(false, false), (true, false), (true, true)]
            .into_iter()
            .map(|(eval, ema)| LossSchema {
                logged: logged.clone(),
                eval,
                ema,
            })
            .find(|s| s.header() == header.trim_end())
    }

    pub fn line(&self, row: &LossRow) -> String {
        let mut line = row.iteration.to_string();
        for v in &row.values {
            line += &format!(",{v}");
        }
        line += &format!(",{:.3}", row.seconds);
        let figures = |q: Option<Figures>| match q {
            Some((fid, entropy, confident)) => format!(",{fid:.4},{entropy:.4},{confident:.4}"),
            None => ",,,".to_string(),
        };
        if self.eval {
            line += &figures(row.quality);
        }
        if self.ema {
            line += &figures(row.ema_quality);
        }
        line
    }
}

/// One row of `loss.csv`.
#[derive(Debug, Clone, PartialEq)]
pub struct LossRow {
    pub iteration: u64,
    /// The model's logged values, in [`Model::logged`] order.
    pub values: Vec<f32>,
    pub seconds: f64,
    /// FID, class entropy and confident fraction, at `--eval-every` points.
    pub quality: Option<Figures>,
    /// The same of the moving average's generator.
    pub ema_quality: Option<Figures>,
}

impl LossRow {
    /// A row from a snapshot of [`Model::logged_nodes`] taken after step `snap.tag`, or
    /// the error that stops a diverged run.
    pub fn from_snapshot(model: &Model, snap: &Snapshot, seconds: f64) -> Result<Self> {
        let nodes = model.logged_nodes();
        let mut values = Vec::with_capacity(model.logged.len());
        for l in &model.logged {
            let slot = nodes.iter().position(|&n| n == l.node).unwrap_or_default();
            let x = snap
                .values
                .get(slot)
                .and_then(|v| v.get(l.index))
                .copied()
                .unwrap_or(f32::NAN);
            if !x.is_finite() {
                return Err(Error::NonFinite {
                    iteration: snap.tag + 1,
                    what: l.column.to_string(),
                    value: x,
                });
            }
            values.push(x);
        }
        Ok(LossRow {
            iteration: snap.tag + 1,
            values,
            seconds,
            quality: None,
            ema_quality: None,
        })
    }

    /// The value of loss.csv column `column`, if the row has it.
    pub fn value(&self, model: &Model, column: &str) -> Option<f32> {
        let i = model.logged.iter().position(|l| l.column == column)?;
        self.values.get(i).copied()
    }
}

/// The largest loss.csv read: a row a step for ten million steps is about 800 MB.
pub const MAX_LOSS_CSV_BYTES: u64 = 1 << 30;

/// The text of the loss.csv at `path` (a regular file of at most [`MAX_LOSS_CSV_BYTES`]).
pub fn read_loss_csv(path: &Path) -> Result<String> {
    let bytes = read_bounded(path, "loss.csv", MAX_LOSS_CSV_BYTES)?;
    String::from_utf8(bytes).map_err(|e| {
        Error::InvalidArgument(format!(
            "{} is not text (invalid UTF-8 at byte {})",
            path.display(),
            e.utf8_error().valid_up_to()
        ))
    })
}

/// A loss.csv-shaped file's columns by name, one `Vec` per column (empty fields are NaN).
pub fn read_columns(path: &Path) -> Result<(Vec<String>, Vec<Vec<f64>>)> {
    parse_columns(path, &read_loss_csv(path)?)
}

/// [`read_columns`] on a file's text; `origin` names it in errors.
pub fn parse_columns(origin: &Path, text: &str) -> Result<(Vec<String>, Vec<Vec<f64>>)> {
    let mut lines = text.lines();
    let header: Vec<String> = lines
        .next()
        .ok_or_else(|| Error::InvalidArgument(format!("{} is empty", origin.display())))?
        .split(',')
        .map(str::to_string)
        .collect();
    let mut columns = vec![Vec::new(); header.len()];
    for (n, line) in lines.enumerate() {
        let fields: Vec<&str> = line.split(',').collect();
        if fields.len() != header.len() {
            return Err(Error::InvalidArgument(format!(
                "{} line {}: {} fields, the header has {}",
                origin.display(),
                n + 2,
                fields.len(),
                header.len()
            )));
        }
        for (column, field) in columns.iter_mut().zip(fields) {
            column.push(field.parse().unwrap_or(f64::NAN));
        }
    }
    Ok((header, columns))
}

/// How many bytes of loss.csv's `text` to keep when resuming from a checkpoint written
/// after iteration `through`: the header and the rows up to it. Rows after it were logged
/// after that checkpoint and will be logged again; a last line without its newline was
/// cut short by a crash. `origin` names the file in errors.
pub fn rows_through(origin: &Path, text: &str, through: u64) -> Result<usize> {
    let mut lines = text.split_inclusive('\n');
    let mut keep = match lines.next() {
        Some(header) if header.ends_with('\n') => header.len(),
        _ => {
            return Err(Error::InvalidArgument(format!(
                "{} has no complete header line",
                origin.display()
            )));
        }
    };
    for (n, line) in lines.enumerate() {
        if !line.ends_with('\n') {
            break;
        }
        let field = line.split(',').next().unwrap_or_default().trim_end();
        let iteration: u64 = field.parse().map_err(|_| {
            Error::InvalidArgument(format!(
                "{} line {}: iteration {field:?} is not a whole number",
                origin.display(),
                n + 2
            ))
        })?;
        if iteration > through {
            break;
        }
        keep += line.len();
    }
    Ok(keep)
}

/// The `seconds` of the last row of loss.csv's `kept` text (as [`rows_through`] leaves
/// it), or 0 when it has no rows: a resumed run's clock goes on from there, so the column
/// stays the run's training time across resumes.
pub fn seconds_so_far(origin: &Path, kept: &str) -> Result<f64> {
    let mut lines = kept.lines();
    let header = lines.next().unwrap_or_default();
    let Some(column) = header.split(',').position(|c| c == "seconds") else {
        return Err(Error::InvalidArgument(format!(
            "{} has no seconds column",
            origin.display()
        )));
    };
    let Some((row, last)) = lines.enumerate().last() else {
        return Ok(0.0);
    };
    let field = last.split(',').nth(column).unwrap_or_default();
    field.parse().map_err(|_| {
        Error::InvalidArgument(format!(
            "{} line {}: seconds {field:?} is not a number",
            origin.display(),
            row + 2
        ))
    })
}

/// loss.csv's `kept` text with `schema`'s header and each row padded with empty fields to
/// its width: how a run from before the moving average gains the average's columns when it
/// is resumed, so that from then on both generators are evaluated.
pub fn widened(kept: &str, schema: &LossSchema) -> String {
    let header = schema.header();
    let width = header.split(',').count();
    let mut out = header + "\n";
    for row in kept.lines().skip(1) {
        out += row;
        out += &",".repeat(width.saturating_sub(row.split(',').count()));
        out += "\n";
    }
    out
}

/// A progress bar on a terminal, plain lines otherwise.
pub struct Progress {
    bar: Option<indicatif::ProgressBar>,
    plain: bool,
    labels: Vec<&'static str>,
}

impl Progress {
    pub fn new(model: &Model, start: u64, total: u64, quiet: bool) -> Self {
        let labels = model.logged.iter().map(|l| l.label).collect();
        if quiet || !std::io::stderr().is_terminal() {
            return Progress {
                bar: None,
                plain: !quiet,
                labels,
            };
        }
        let bar = indicatif::ProgressBar::new(total);
        bar.set_style(
            indicatif::ProgressStyle::with_template(
                "{bar:30} {pos}/{len} [{elapsed_precise}<{eta_precise}, {per_sec}] {msg}",
            )
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        bar.set_position(start);
        Progress {
            bar: Some(bar),
            plain: false,
            labels,
        }
    }

    pub fn log(&self, r: &LossRow) {
        let parts: Vec<String> = self
            .labels
            .iter()
            .zip(&r.values)
            .map(|(label, v)| format!("{label} {v:.3}"))
            .collect();
        let mut line = parts.join("  ");
        if let Some((fid, entropy, _)) = r.quality {
            line += &format!("  FID {fid:.2}  class entropy {entropy:.2}");
        }
        if let Some((fid, entropy, _)) = r.ema_quality {
            line += &format!("  EMA FID {fid:.2}  class entropy {entropy:.2}");
        }
        if let Some(bar) = &self.bar {
            bar.set_message(line);
        } else if self.plain {
            eprintln!("iter {:>6}  {line}  ({:.1}s)", r.iteration, r.seconds);
        }
    }

    pub fn tick(&self, done: u64) {
        if let Some(bar) = &self.bar {
            bar.set_position(done);
        }
    }

    pub fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish();
        }
    }
}
