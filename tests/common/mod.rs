//! Helpers shared by the GPU parity tests. Include with `mod common;`.

// Each test binary compiles its own copy and may use only some helpers.
#![allow(dead_code)]

/// Fails unless `|gpu - cpu| <= atol + rtol * |cpu|` for every element (NaN fails), naming
/// the op, the shape, how many elements fail, and the worst one with both values.
pub fn assert_close(op: &str, shape_desc: &str, gpu: &[f32], cpu: &[f32], atol: f32, rtol: f32) {
    assert_eq!(
        gpu.len(),
        cpu.len(),
        "{op} {shape_desc}: gpu has {} elements, cpu {}",
        gpu.len(),
        cpu.len()
    );
    let excess = |i: usize| (gpu[i] - cpu[i]).abs() - (atol + rtol * cpu[i].abs());
    let failing: Vec<usize> = (0..gpu.len())
        .filter(|&i| excess(i).is_nan() || excess(i) > 0.0)
        .collect();
    // NaN excess sorts above every number under total_cmp, so an unwritten element is "worst".
    let worst = failing
        .iter()
        .copied()
        .max_by(|&a, &b| excess(a).total_cmp(&excess(b)).then(b.cmp(&a)));
    if let Some(i) = worst {
        panic!(
            "{op} {shape_desc}: {} of {} elements outside atol {atol:e} + rtol {rtol:e}; \
             worst at {i}: gpu {} cpu {} (diff {:e})",
            failing.len(),
            gpu.len(),
            gpu[i],
            cpu[i],
            (gpu[i] - cpu[i]).abs()
        );
    }
}

/// Runs the `gan-gpu` binary with `args` (Mesa gets a runtime folder, so it stays quiet).
pub fn run_cli(args: &[&str]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_gan-gpu"))
        .args(args)
        .env("XDG_RUNTIME_DIR", std::env::temp_dir())
        .output()
        .unwrap()
}

/// Starts the `gan-gpu` binary with `args` in the background, its stdout and stderr going
/// to `log` (a pipe could fill up and stall a long run).
pub fn spawn_cli(args: &[&str], log: &std::path::Path) -> std::process::Child {
    let file = std::fs::File::create(log).unwrap();
    std::process::Command::new(env!("CARGO_BIN_EXE_gan-gpu"))
        .args(args)
        .env("XDG_RUNTIME_DIR", std::env::temp_dir())
        .stdout(file.try_clone().unwrap())
        .stderr(file)
        .spawn()
        .unwrap()
}

/// Polls `done` every few milliseconds until it holds; panics naming `what` after `limit`.
pub fn wait_for(what: &str, limit: std::time::Duration, mut done: impl FnMut() -> bool) {
    let start = std::time::Instant::now();
    while !done() {
        assert!(start.elapsed() < limit, "gave up waiting for {what}");
        std::thread::sleep(std::time::Duration::from_millis(2));
    }
}

/// Waits for `child` to exit, killing it (and failing) after `limit`.
pub fn wait_with_limit(
    child: &mut std::process::Child,
    limit: std::time::Duration,
) -> std::process::ExitStatus {
    let start = std::time::Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            panic!("the process did not exit within {limit:?}");
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
}

/// Sends signal `name` (`TERM`, `INT`, `KILL`) to process `pid`.
pub fn send_signal(pid: u32, name: &str) {
    let status = std::process::Command::new("kill")
        .args(["-s", name, &pid.to_string()])
        .status()
        .unwrap();
    assert!(status.success(), "kill -s {name} {pid}");
}

/// The loss.csv rows of a run folder without the `seconds` column (wall time differs
/// between runs), header first.
pub fn loss_rows_without_seconds(run: &std::path::Path) -> Vec<String> {
    let text = std::fs::read_to_string(run.join("loss.csv")).unwrap();
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next().unwrap().split(',').collect();
    let seconds = header.iter().position(|&h| h == "seconds").unwrap();
    std::iter::once(text.lines().next().unwrap())
        .chain(lines)
        .map(|line| {
            line.split(',')
                .enumerate()
                .filter(|&(i, _)| i != seconds)
                .map(|(_, f)| f)
                .collect::<Vec<_>>()
                .join(",")
        })
        .collect()
}

/// A command's standard error, as text.
pub fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// A clean failure: exit status 1, an `error:` paragraph, no panic, naming every needle.
pub fn assert_clean_error(out: &std::process::Output, needles: &[&str]) {
    let err = stderr(out);
    assert_eq!(out.status.code(), Some(1), "stderr:\n{err}");
    assert!(err.starts_with("error: "), "stderr:\n{err}");
    assert!(!err.contains("panicked"), "stderr:\n{err}");
    for needle in needles {
        assert!(err.contains(needle), "expected {needle:?} in:\n{err}");
    }
}
