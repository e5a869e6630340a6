//! `gan-gpu plot`: a run's `loss.csv` as an SVG chart (FID when the run measured it,
//! else the losses). SVG keeps text as text, so no font files are needed.

use std::path::Path;

use plotters::prelude::*;

use crate::error::{Error, Result};
use crate::train::log::read_columns;

/// Draws FID against iterations (or, without FID columns, the three losses) to `out`.
pub fn plot_run(loss_csv: &Path, out: &Path) -> Result<()> {
    let (header, columns) = read_columns(loss_csv)?;
    let column = |name: &str| header.iter().position(|h| h == name).map(|i| &columns[i]);
    let iterations = column("iteration").ok_or_else(|| {
        Error::InvalidArgument(format!("{} has no iteration column", loss_csv.display()))
    })?;
    let series: Vec<(&str, Vec<(f64, f64)>)> = match column("fid") {
        Some(fid) => vec![("FID to the MNIST test set", points(iterations, fid))],
        // Without FID, every loss the model logs.
        None => header
            .iter()
            .filter(|name| name.contains("loss"))
            .filter_map(|name| Some((name.as_str(), points(iterations, column(name)?))))
            .collect(),
    };
    let all: Vec<&(f64, f64)> = series.iter().flat_map(|(_, p)| p).collect();
    if all.is_empty() {
        return Err(Error::InvalidArgument(format!(
            "{} has no values to plot",
            loss_csv.display()
        )));
    }
    let x_max = all.iter().map(|p| p.0).fold(1.0, f64::max);
    let y_max = all.iter().map(|p| p.1).fold(0.0, f64::max) * 1.05;
    let draw_error = |e: String| Error::InvalidArgument(format!("drawing {}: {e}", out.display()));
    let root = SVGBackend::new(out, (800, 450)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| draw_error(e.to_string()))?;
    let title = if column("fid").is_some() {
        "FID over training"
    } else {
        "losses over training"
    };
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 24))
        .margin(16)
        .x_label_area_size(40)
        .y_label_area_size(60)
        .build_cartesian_2d(0.0..x_max, 0.0..y_max.max(1e-9))
        .map_err(|e| draw_error(e.to_string()))?;
    chart
        .configure_mesh()
        .x_desc("iteration")
        .draw()
        .map_err(|e| draw_error(e.to_string()))?;
    let colors = [BLUE, RED, GREEN];
    for ((name, points), color) in series.into_iter().zip(colors) {
        chart
            .draw_series(LineSeries::new(points, color.stroke_width(2)))
            .map_err(|e| draw_error(e.to_string()))?
            .label(name)
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color));
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()
        .map_err(|e| draw_error(e.to_string()))?;
    root.present().map_err(|e| draw_error(e.to_string()))
}

/// (iteration, value) pairs where the value was measured.
fn points(iterations: &[f64], values: &[f64]) -> Vec<(f64, f64)> {
    iterations
        .iter()
        .zip(values)
        .filter(|(_, v)| v.is_finite())
        .map(|(&i, &v)| (i, v))
        .collect()
}
