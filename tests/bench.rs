//! `gan-gpu bench --device cpu`: a row for every distinct instruction of the model's
//! training step, each CPU GFLOP/s row as a fraction of the FMA peak measured first in the
//! same run, and the whole step last. Quick runs: the figures are not checked, only that
//! they are there and consistent with each other.

mod common;

use gan_gpu::bench::cases::plan_cases;
use gan_gpu::model::{ModelConfig, kind};
use serde_json::Value;

fn bench_rows(model: &str) -> Vec<Value> {
    let out = common::run_cli(&[
        "bench", "--device", "cpu", "--quick", "--json", "--model", model,
    ]);
    assert!(
        out.status.success(),
        "bench --model {model} failed: {}",
        common::stderr(&out)
    );
    let rows: Value = serde_json::from_slice(&out.stdout).expect("bench --json prints an array");
    rows.as_array().expect("an array of rows").clone()
}

fn text<'a>(row: &'a Value, field: &str) -> &'a str {
    row[field].as_str().unwrap_or_default()
}

#[test]
fn every_instruction_of_the_step_has_a_cpu_row_against_the_peak() {
    for model in ["seed", "cgan"] {
        let rows = bench_rows(model);
        let peak = &rows[0];
        assert_eq!(text(peak, "kernel"), "fp32 FMA peak", "{model}: {peak}");
        let peak_gflops = peak["gflops"].as_f64().unwrap();
        assert!(peak_gflops > 0.0, "{model}: {peak}");

        for row in &rows[1..] {
            assert_eq!(text(row, "executor"), "cpu", "{row}");
            let ms = row["median_ms"].as_f64().unwrap();
            assert!(ms.is_finite() && ms > 0.0, "{row}");
            match (row["gflops"].as_f64(), row["gbps"].as_f64()) {
                (Some(gflops), None) => {
                    let fraction = row["fraction_of_peak"].as_f64().unwrap();
                    assert!((fraction - gflops / peak_gflops).abs() < 1e-9, "{row}");
                }
                (None, Some(gbps)) => assert!(gbps > 0.0, "{row}"),
                _ => panic!("a row has a rate in GFLOP/s or in GB/s: {row}"),
            }
        }
        let shapes: Vec<&str> = rows
            .iter()
            .filter(|r| text(r, "kernel") == "gemm" && text(r, "layer").is_empty())
            .map(|r| text(r, "shape"))
            .collect();
        assert_eq!(
            shapes,
            ["256x256x256 NN", "512x512x512 NN"],
            "--quick: no 1024³"
        );

        let step = rows.last().unwrap();
        assert_eq!(
            text(step, "kernel"),
            "train_step",
            "{model}: the step comes last"
        );
        let images_per_s = step["images_per_s"].as_f64().unwrap();
        let ms = step["median_ms"].as_f64().unwrap();
        assert!((images_per_s - 100.0 / (ms * 1e-3)).abs() < 1e-6 * images_per_s);

        let built = kind(model)
            .unwrap()
            .build(&ModelConfig::new(100, 100))
            .unwrap();
        let step = built.train_step().unwrap();
        for case in plan_cases(&built.graph, &step) {
            assert!(
                rows.iter().any(|r| text(r, "kernel") == case.kernel
                    && text(r, "shape") == case.shape
                    && text(r, "layer") == case.layer),
                "{model}: no row for {} {} ({})",
                case.kernel,
                case.shape,
                case.layer
            );
        }
    }
}
