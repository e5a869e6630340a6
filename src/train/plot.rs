//! `gan-gpu plot`: a run's `loss.csv` as an SVG chart (FID when the run measured it,
//! else the losses). SVG keeps text as text, so no font files are needed.

use std::path::{Path, PathBuf};

use plotters::prelude::*;

use crate::error::{Error, Result};
use crate::io::atomic::write_atomically;
use crate::train::log::read_columns;

/// What a chart shows: named series of (iteration, value) points, all finite.
pub struct Chart {
    pub fid: bool,
    pub series: Vec<(String, Vec<(f64, f64)>)>,
}

/// Draws FID against iterations (or, without FID columns, the losses) from the run
/// folder's loss.csv to `out`, by default `fid.svg` or `losses.svg` in the run folder, and
/// returns the path written.
pub fn plot_run(run: &Path, out: Option<&Path>) -> Result<PathBuf> {
    let loss_csv = run.join("loss.csv");
    let (header, columns) = read_columns(&loss_csv)?;
    let chart = chart(&loss_csv, &header, &columns)?;
    let out = out
        .map(Path::to_path_buf)
        .unwrap_or_else(|| run.join(if chart.fid { "fid.svg" } else { "losses.svg" }));
    write_chart(&chart, &out)?;
    Ok(out)
}

/// Draws the FIDs of several runs on one chart to `out`, each series named after its
/// run folder, so that runs of different models compare at a glance. Every run must have
/// measured FID (`train --eval-every`).
pub fn plot_runs(runs: &[PathBuf], out: &Path) -> Result<()> {
    let mut series = Vec::new();
    for run in runs {
        let loss_csv = run.join("loss.csv");
        let (header, columns) = read_columns(&loss_csv)?;
        let one = chart(&loss_csv, &header, &columns)?;
        if !one.fid {
            return Err(Error::InvalidArgument(format!(
                "{} has no fid column: only runs trained with --eval-every plot together",
                loss_csv.display()
            )));
        }
        let name = run.file_name().map_or_else(
            || run.display().to_string(),
            |n| n.to_string_lossy().into_owned(),
        );
        series.extend(
            one.series
                .into_iter()
                .map(|(what, points)| (format!("{name}: {what}"), points)),
        );
    }
    write_chart(&Chart { fid: true, series }, out)
}

fn write_chart(chart: &Chart, out: &Path) -> Result<()> {
    let svg = render_svg(chart)
        .map_err(|e| Error::InvalidArgument(format!("drawing {}: {e}", out.display())))?;
    write_atomically(out, &[svg.as_bytes()])
}

/// The chart of a loss.csv's columns (`header`, `columns` as [`read_columns`] returns
/// them); `loss_csv` names the file in errors.
pub fn chart(loss_csv: &Path, header: &[String], columns: &[Vec<f64>]) -> Result<Chart> {
    let column = |name: &str| header.iter().position(|h| h == name).map(|i| &columns[i]);
    let iterations = column("iteration").ok_or_else(|| {
        Error::InvalidArgument(format!("{} has no iteration column", loss_csv.display()))
    })?;
    let fid = column("fid").is_some();
    let series: Vec<(String, Vec<(f64, f64)>)> = match column("fid") {
        Some(fid) => {
            let mut series = vec![("FID, raw weights".into(), points(iterations, fid))];
            // The moving average's, where it was evaluated.
            if let Some(ema) = column("ema_fid").map(|c| points(iterations, c))
                && !ema.is_empty()
            {
                series.push(("FID, moving average".into(), ema));
            }
            series
        }
        // Without FID, every loss the model logs.
        None => header
            .iter()
            .filter(|name| name.contains("loss"))
            .filter_map(|name| Some((name.clone(), points(iterations, column(name)?))))
            .collect(),
    };
    if series.iter().all(|(_, p)| p.is_empty()) {
        return Err(Error::InvalidArgument(format!(
            "{} has no values to plot",
            loss_csv.display()
        )));
    }
    Ok(Chart { fid, series })
}

/// The SVG text of `chart`.
pub fn render_svg(chart: &Chart) -> Result<String, String> {
    let all: Vec<&(f64, f64)> = chart.series.iter().flat_map(|(_, p)| p).collect();
    let fold = |f: fn(&(f64, f64)) -> f64, start: f64, pick: fn(f64, f64) -> f64| {
        all.iter().map(|p| f(p)).fold(start, pick)
    };
    let x = axis(
        fold(|p| p.0, 0.0, f64::min),
        fold(|p| p.0, 1.0, f64::max),
        0.0,
    )?;
    let y = axis(
        fold(|p| p.1, 0.0, f64::min),
        fold(|p| p.1, 0.0, f64::max),
        0.05,
    )?;
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (800, 450)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| e.to_string())?;
        let title = if chart.fid {
            "FID over training"
        } else {
            "losses over training"
        };
        let mut plot = ChartBuilder::on(&root)
            .caption(title, ("sans-serif", 24))
            .margin(16)
            .x_label_area_size(40)
            .y_label_area_size(60)
            .build_cartesian_2d(x, y)
            .map_err(|e| e.to_string())?;
        plot.configure_mesh()
            .x_desc("iteration")
            .draw()
            .map_err(|e| e.to_string())?;
        // A run's moving average shares its raw series' colour, drawn thicker.
        let palette = [BLUE, RED, GREEN, MAGENTA, CYAN, BLACK];
        let mut run = 0;
        for (i, (name, points)) in chart.series.iter().enumerate() {
            let average = name.ends_with("moving average");
            if i > 0 && !average {
                run += 1;
            }
            let style = palette[run % palette.len()].stroke_width(if average { 4 } else { 2 });
            // Dots at the measurements, so that a series of one point shows too.
            plot.draw_series(points.iter().map(|&p| Circle::new(p, 3, style.filled())))
                .map_err(|e| e.to_string())?;
            plot.draw_series(LineSeries::new(points.clone(), style))
                .map_err(|e| e.to_string())?
                .label(name.as_str())
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], style));
        }
        plot.configure_series_labels()
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .draw()
            .map_err(|e| e.to_string())?;
        root.present().map_err(|e| e.to_string())?;
    }
    Ok(svg)
}

/// An axis from `lo` to `hi` plus `margin` of its length above, that holds every point
/// (plotters overflows its pixel arithmetic on points far outside the range) and is
/// never empty: at least a millionth of its magnitude long.
fn axis(lo: f64, hi: f64, margin: f64) -> Result<std::ops::Range<f64>, String> {
    let span = (hi - lo).max(1e-6 * lo.abs().max(hi.abs()).max(1.0));
    let top = lo + span * (1.0 + margin);
    if !top.is_finite() || !(top - lo).is_finite() {
        return Err(format!(
            "values from {lo} to {hi} are too far apart to draw"
        ));
    }
    Ok(lo..top)
}

/// (iteration, value) pairs where both are finite (a row's value may be unmeasured).
fn points(iterations: &[f64], values: &[f64]) -> Vec<(f64, f64)> {
    iterations
        .iter()
        .zip(values)
        .filter(|(i, v)| i.is_finite() && v.is_finite())
        .map(|(&i, &v)| (i, v))
        .collect()
}
