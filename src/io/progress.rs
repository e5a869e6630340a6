//! Progress bars for long preparation steps (hidden when stderr is not a terminal).

pub fn step_bar(what: &str) -> indicatif::ProgressBar {
    let bar = indicatif::ProgressBar::new(1);
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "{msg} {bar:30} {pos}/{len} [{elapsed_precise}<{eta_precise}]",
        )
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    bar.set_message(what.to_string());
    bar
}

/// Runs `job`, which may train the classifier at `path` first (reporting its steps): the
/// notice and a progress bar appear only once training starts (the job checks its inputs
/// first), and the accuracy is reported when it trained one.
pub fn with_classifier_bar<T>(
    path: &std::path::Path,
    job: impl FnOnce(&mut dyn FnMut(u64, u64)) -> crate::Result<(T, Option<f64>)>,
) -> crate::Result<T> {
    let bar = step_bar("training the classifier");
    let mut announced = false;
    let (out, trained) = job(&mut |done, total| {
        if !announced {
            announced = true;
            bar.suspend(|| {
                eprintln!(
                    "no classifier at {}: training one (a few minutes, once)",
                    path.display()
                )
            });
        }
        bar.set_length(total);
        bar.set_position(done);
    })?;
    bar.finish_and_clear();
    if let Some(acc) = trained {
        eprintln!(
            "classifier test accuracy {:.2}%, saved to {}",
            100.0 * acc,
            path.display()
        );
    }
    Ok(out)
}
