//! Inputs the fuzz targets in `fuzz/` found crashing, each replayed through the same
//! calls as its target, now failing cleanly or succeeding.

use std::path::Path;

use gan_gpu::train::log::parse_columns;
use gan_gpu::train::plot::{chart, render_svg};

/// What `fuzz/fuzz_targets/loss_csv.rs` does with a loss.csv's text.
fn plot_text(text: &str) -> Result<String, String> {
    let path = Path::new("loss.csv");
    let (header, columns) = parse_columns(path, text).map_err(|e| e.to_string())?;
    let chart = chart(path, &header, &columns).map_err(|e| e.to_string())?;
    render_svg(&chart)
}

/// loss_csv crash-519a0d3f: every value below zero made the y axis 0..1e-9, and plotters
/// overflowed mapping -2.4 into it (a panic with overflow checks, garbage without).
#[test]
fn a_chart_of_negative_losses_draws() {
    let svg = plot_text("iteration,d_loss_re]l70\n061,-2.438\n").unwrap();
    assert!(svg.contains("<svg"), "{svg}");
}

/// Ranges the same fix must hold for: one point, a flat line, negative iterations, tiny
/// and huge values, values too far apart to draw.
#[test]
fn awkward_ranges_draw_or_fail_cleanly() {
    for text in [
        "iteration,g_loss\n5,0.5\n",
        "iteration,g_loss\n1,3\n2,3\n3,3\n",
        "iteration,g_loss\n-100,1\n-50,2\n",
        "iteration,g_loss\n1,1e-300\n2,2e-300\n",
        "iteration,g_loss\n1,1e300\n1e300,-1e300\n",
        "iteration,g_loss\n0,-7\n",
    ] {
        let svg = plot_text(text).unwrap_or_else(|e| panic!("{text:?}: {e}"));
        assert!(svg.contains("<svg"), "{text:?}");
    }
    let err = plot_text("iteration,g_loss\n1,1.7e308\n2,-1.7e308\n").unwrap_err();
    assert!(err.contains("too far apart"), "{err}");
}
