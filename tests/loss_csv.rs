//! loss.csv after a crash: resuming keeps the header and the rows up to the checkpoint,
//! drops the rest (logged again after the resume) and a last row cut short.

use std::path::Path;

use gan_gpu::train::log::{LossSchema, parse_columns, rows_through, seconds_so_far, widened};

const CSV: &str = "iteration,g_loss,seconds\n1,0.5,0.1\n2,0.4,0.2\n3,0.3,0.3\n4,0.2,0.4\n";

fn kept(text: &str, through: u64) -> &str {
    &text[..rows_through(Path::new("loss.csv"), text, through).unwrap()]
}

#[test]
fn rows_after_the_checkpoint_are_dropped() {
    assert_eq!(kept(CSV, 4), CSV);
    assert_eq!(kept(CSV, 9), CSV);
    assert_eq!(
        kept(CSV, 2),
        "iteration,g_loss,seconds\n1,0.5,0.1\n2,0.4,0.2\n"
    );
    assert_eq!(kept(CSV, 0), "iteration,g_loss,seconds\n");
}

#[test]
fn a_row_cut_short_is_dropped() {
    let cut = format!("{CSV}5,0.1");
    assert_eq!(kept(&cut, 9), CSV);
    // Cut inside the iteration number itself.
    let cut = format!("{CSV}1");
    assert_eq!(kept(&cut, 100), CSV);
}

#[test]
fn damage_is_an_error_naming_the_line() {
    let path = Path::new("run/loss.csv");
    let err = rows_through(path, "iteration,g_loss\n1,0.5\nxyz,0.4\n", 5).unwrap_err();
    assert!(err.to_string().contains("run/loss.csv line 3"), "{err}");
    let err = rows_through(path, "iteration,g_loss", 5).unwrap_err();
    assert!(err.to_string().contains("no complete header"), "{err}");
    let err = parse_columns(path, "a,b\n1,2,3\n").unwrap_err();
    assert!(err.to_string().contains("line 2: 3 fields"), "{err}");
}

#[test]
fn a_resumed_run_keeps_its_clock_and_can_gain_the_averages_columns() {
    let path = Path::new("run/loss.csv");
    assert_eq!(seconds_so_far(path, kept(CSV, 2)).unwrap(), 0.2);
    assert_eq!(seconds_so_far(path, kept(CSV, 0)).unwrap(), 0.0);
    let err = seconds_so_far(path, "iteration,seconds\n1,soon\n").unwrap_err();
    assert!(
        err.to_string().contains("line 2: seconds \"soon\""),
        "{err}"
    );

    let schema = LossSchema {
        logged: vec!["g_loss"],
        eval: true,
        ema: true,
    };
    let old = "iteration,g_loss,seconds,fid,class_entropy,confident_fraction\n\
               1,0.5,0.1,,,\n2,0.4,0.2,9.5,2.3,0.9\n";
    let wide = widened(old, &schema);
    assert_eq!(
        wide,
        format!(
            "{}\n1,0.5,0.1,,,,,,\n2,0.4,0.2,9.5,2.3,0.9,,,\n",
            schema.header()
        )
    );
    let (header, columns) = parse_columns(path, &wide).unwrap();
    assert_eq!(header.last().unwrap(), "ema_confident_fraction");
    assert!(columns[6][1].is_nan());
}
