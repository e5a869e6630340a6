//! `gan-gpu selftest` as a user runs it, under both kernel settings, and `train`'s
//! first-use protection: a kept failing verdict stops training with an error naming the
//! kernel, `--skip-selftest` goes on, and a software adapter without a verdict is skipped
//! with a line saying so. Every run gets its own cache folder.

use std::path::Path;
use std::process::{Command, Output};

use gan_gpu::gpu::testing::REQUIRE_ADAPTER_ENV;

/// The binary with `args`, its cache in `cache`, the kernel settings from `kernels`.
fn gan_gpu(args: &[&str], cache: &Path, kernels: Option<&str>) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_gan-gpu"));
    cmd.args(args)
        .env("XDG_RUNTIME_DIR", std::env::temp_dir())
        .env("XDG_CACHE_HOME", cache)
        .env_remove("GAN_GPU_KERNELS");
    if let Some(k) = kernels {
        cmd.env("GAN_GPU_KERNELS", k);
    }
    cmd.output().unwrap()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Whether the machine has no adapter (after a loud SKIP), failing under CI.
fn no_adapter(out: &Output, what: &str) -> bool {
    let err = stderr(out);
    if !err.contains("no wgpu adapter") {
        return false;
    }
    let required = std::env::var(REQUIRE_ADAPTER_ENV).is_ok_and(|v| v == "1");
    assert!(
        !required,
        "{REQUIRE_ADAPTER_ENV}=1 but {what} found no adapter: {err}"
    );
    eprintln!("SKIP: no wgpu adapter, {what} not run");
    true
}

fn tiny_train(cache: &Path, out: &Path, extra: &[&str]) -> Output {
    let out = out.to_str().unwrap();
    let mut args = vec![
        "train",
        "--device",
        "gpu",
        "--iterations",
        "1",
        "--batch-size",
        "4",
        "--log-every",
        "1",
        "--sample-every",
        "1",
        "--checkpoint-every",
        "1",
        "--out",
        out,
    ];
    args.extend(extra);
    gan_gpu(&args, cache, Some("software"))
}

#[test]
fn selftest_passes_under_both_kernel_settings_and_guards_training() {
    let cache = tempfile::tempdir().unwrap();
    for kernels in ["gpu", "software"] {
        let out = gan_gpu(
            &["selftest", "--json", "--kernels", kernels],
            cache.path(),
            None,
        );
        if no_adapter(&out, "selftest") {
            return;
        }
        assert!(
            out.status.success(),
            "selftest --kernels {kernels}:\n{}",
            stderr(&out)
        );
        let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(report["header"]["kernels"], kernels);
        assert_eq!(report["header"]["kernel_choice"], kernels);
        assert_eq!(report["passed"], true);
        let checks = report["checks"].as_array().unwrap();
        let has = |plan: &str, what: &str| {
            checks
                .iter()
                .any(|c| c["plan"] == plan && c["what"].as_str().unwrap().contains(what))
        };
        for (plan, what) in [
            // A kernel shared by several models is checked under the first that has it.
            ("seed", "iteration: gradients"),
            ("cgan", "conv2d weight grad"),
            ("cgan", "conv_transpose2d input grad"),
            ("cgan", "iteration: gradients"),
            ("cgan", "embedding grad"),
            ("cgan", "row dot"),
            ("classifier step", "iteration: adam updates"),
            ("classifier step", "softmax ce grad"),
            ("awkward conv", "conv2d input grad"),
            ("awkward dense", "gemm"),
            ("long reduction", "conv2d weight grad"),
        ] {
            assert!(has(plan, what), "no {what} check of the {plan}");
        }
        for c in checks {
            assert_eq!(c["passed"], true, "{c}");
            assert!(c["error_ratio"].as_f64().unwrap() <= 1.0, "{c}");
        }
    }
    let verdicts_file = cache.path().join("gan-gpu").join("selftest-verdicts.json");
    let text = std::fs::read_to_string(&verdicts_file).unwrap();
    let mut verdicts: serde_json::Value = serde_json::from_str(&text).unwrap();
    let keys: Vec<String> = verdicts["verdicts"]
        .as_object()
        .unwrap()
        .keys()
        .cloned()
        .collect();
    assert_eq!(keys.len(), 2, "{keys:?}");
    assert!(keys.iter().any(|k| k.contains("kernels gpu")), "{keys:?}");

    // A kept failing verdict stops training, naming the kernel and what to do.
    let key = keys
        .iter()
        .find(|k| k.contains("kernels software"))
        .unwrap();
    verdicts["verdicts"][key]["passed"] = false.into();
    verdicts["verdicts"][key]["failing"] = serde_json::json!(["conv2d forward 1x2x3x4 (test)"]);
    std::fs::write(&verdicts_file, verdicts.to_string()).unwrap();
    let runs = tempfile::tempdir().unwrap();
    let out = tiny_train(cache.path(), &runs.path().join("refused"), &[]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    for needle in [
        "error: the selftest failed on",
        "conv2d forward 1x2x3x4 (test)",
        "gan-gpu selftest --json",
        "--skip-selftest",
        "--device cpu",
    ] {
        assert!(err.contains(needle), "expected {needle:?} in:\n{err}");
    }
    assert!(
        !runs
            .path()
            .join("refused")
            .join("checkpoint.safetensors")
            .exists()
    );
    let out = tiny_train(
        cache.path(),
        &runs.path().join("anyway"),
        &["--skip-selftest"],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stderr(&out).contains("selftest: skipped (--skip-selftest)"));
    assert!(
        runs.path()
            .join("anyway")
            .join("checkpoint.safetensors")
            .exists()
    );
}

#[test]
fn a_software_adapter_without_a_verdict_is_skipped_with_a_line() {
    let cache = tempfile::tempdir().unwrap();
    let runs = tempfile::tempdir().unwrap();
    let out = tiny_train(cache.path(), &runs.path().join("run"), &[]);
    if no_adapter(&out, "train --device gpu") {
        return;
    }
    assert!(out.status.success(), "{}", stderr(&out));
    let err = stderr(&out);
    if err.contains("type Cpu") || err.contains("llvmpipe") {
        assert!(err.contains("selftest: skipped on"), "{err}");
        assert!(err.contains("--selftest runs it here"), "{err}");
    }
}

#[test]
fn an_unknown_kernel_setting_is_a_clear_error() {
    let cache = tempfile::tempdir().unwrap();
    let out = gan_gpu(&["selftest"], cache.path(), Some("fast"));
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("GAN_GPU_KERNELS=\"fast\": expected auto, gpu or software"),
        "{err}"
    );
    let out = gan_gpu(&["selftest", "--kernels", "fast"], cache.path(), None);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
}
