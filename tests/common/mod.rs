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
