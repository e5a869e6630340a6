//! Kernel tuning: every candidate setting a launcher offers `gan-gpu tune` matches the CPU
//! reference (so any setting some adapter keeps has run in CI, under the kernel settings
//! of the run: CI runs this file under both), a tuned knob reaches the dispatch, tables
//! are kept per adapter and build, and `tune` itself, end to end, leaves a table that
//! `plan` then says it uses.

use std::path::Path;
use std::process::Command;

use gan_gpu::geometry::Conv2dGeometry;
use gan_gpu::gpu::testing::test_context;
use gan_gpu::gpu::tuning::{self, Knobs, TunedSite, Tuning};
use gan_gpu::kernels::conv::conv2d_backward_weight;
use gan_gpu::selftest::plans;
use gan_gpu::tune::{check_candidates, table};

#[test]
fn every_candidate_matches_the_cpu_reference() {
    let Some(ctx) = test_context("every_candidate_matches_the_cpu_reference") else {
        return;
    };
    let mut all = plans::awkward().unwrap();
    all.extend(plans::model_steps(5, 7).unwrap());
    let mut sites = 0;
    let mut failures = Vec::new();
    for plan in &all {
        let checks = check_candidates(&ctx, plan).unwrap();
        sites += checks.len();
        for (site, knobs, check) in checks {
            if !check.passed {
                failures.push(format!(
                    "{site} with {}: {}",
                    knobs.describe(),
                    check.render()
                ));
            }
        }
    }
    eprintln!("{sites} (site, candidate) pairs checked");
    assert!(sites > 50, "only {sites} candidates checked");
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn a_tuned_knob_reaches_the_dispatch() {
    let Some(ctx) = test_context("a_tuned_knob_reaches_the_dispatch") else {
        return;
    };
    let g = Conv2dGeometry {
        batch: 3,
        in_h: 9,
        in_w: 7,
        in_c: 4,
        out_c: 8,
        k_h: 3,
        k_w: 3,
        stride_h: 2,
        stride_w: 2,
        pad_top: 1,
        pad_bottom: 1,
        pad_left: 1,
        pad_right: 1,
    };
    let x = ctx.storage("x", (3 * 9 * 7 * 4 * 4) as u64);
    let dy = ctx.storage("dy", (3 * 5 * 4 * 8 * 4) as u64);
    let dw = ctx.storage("dw", (3 * 3 * 4 * 8 * 4) as u64);
    ctx.take_sites();
    let default = conv2d_backward_weight(&ctx, &g, &x, &dy, &dw, false).unwrap();
    let sites = ctx.take_sites();
    let (site, candidates) = sites
        .iter()
        .find(|(site, _)| site.starts_with("conv_weight_grad_vec4 3x9x7x4 k3x3 s2x2"))
        .expect("the launcher names its site");
    let wg = candidates
        .iter()
        .find_map(|k| k.workgroup)
        .expect("a workgroup candidate");
    assert_ne!(default[0].footprint.workgroup_size[0], wg);
    ctx.set_knobs(
        site,
        Knobs {
            workgroup: Some(wg),
            ..Knobs::default()
        },
    );
    let tuned = conv2d_backward_weight(&ctx, &g, &x, &dy, &dw, false).unwrap();
    ctx.set_knobs(site, Knobs::default());
    assert_eq!(tuned[0].footprint.workgroup_size[0], wg);
    // A value the shader does not offer (a hand-edited file) falls back to the default.
    ctx.set_knobs(
        site,
        Knobs {
            workgroup: Some(48),
            ..Knobs::default()
        },
    );
    let odd = conv2d_backward_weight(&ctx, &g, &x, &dy, &dw, false).unwrap();
    ctx.set_knobs(site, Knobs::default());
    assert_eq!(odd[0].footprint, default[0].footprint);
}

#[test]
fn tables_are_kept_per_adapter_and_a_bad_file_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tuning.json");
    let key = |adapter: &str| tuning::TuningKey {
        adapter: adapter.into(),
        backend: "Vulkan".into(),
        driver: "d 1".into(),
        kernels: "gpu".into(),
        shaders: tuning::shader_hash(),
    };
    let mut table = Tuning::default();
    table.sites.insert(
        "conv_forward_vec4 1x2x3".into(),
        TunedSite {
            knobs: Knobs {
                workgroup: Some(32),
                ..Knobs::default()
            },
            default_ms: 2.0,
            tuned_ms: 1.0,
        },
    );
    assert_eq!(tuning::load(&path, &key("a")).unwrap(), None);
    table::store(&path, &key("a"), &table).unwrap();
    table::store(&path, &key("b"), &Tuning::default()).unwrap();
    assert_eq!(tuning::load(&path, &key("a")).unwrap(), Some(table.clone()));
    assert_eq!(
        tuning::load(&path, &key("b")).unwrap(),
        Some(Tuning::default())
    );
    let mut other_build = key("a");
    other_build.shaders = "00000000".into();
    assert_eq!(tuning::load(&path, &other_build).unwrap(), None);

    std::fs::write(&path, b"{ not json").unwrap();
    let err = tuning::load(&path, &key("a")).unwrap_err().to_string();
    assert!(
        err.contains("tuning.json") && err.contains("not a gan-gpu tuning file"),
        "{err}"
    );
    assert!(
        table::store(&path, &key("a"), &table).is_err(),
        "a file it cannot read must not be overwritten"
    );
    assert_eq!(std::fs::read(&path).unwrap(), b"{ not json");
}

fn gan_gpu(args: &[&str], cache: &Path) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_gan-gpu"))
        .args(args)
        .env("XDG_RUNTIME_DIR", std::env::temp_dir())
        .env("XDG_CACHE_HOME", cache)
        .env_remove("GAN_GPU_TUNING")
        .output()
        .unwrap()
}

#[test]
fn tune_keeps_a_table_that_plan_then_uses() {
    if test_context("tune_keeps_a_table_that_plan_then_uses").is_none() {
        return;
    }
    let cache = tempfile::tempdir().unwrap();
    let before = gan_gpu(&["plan", "--model", "seed"], cache.path());
    let text = String::from_utf8_lossy(&before.stderr).into_owned()
        + &String::from_utf8_lossy(&before.stdout);
    assert!(before.status.success(), "{text}");
    assert!(text.contains("tuning: built-in defaults"), "{text}");

    let out = gan_gpu(
        &["tune", "--model", "seed", "--quick", "--json"],
        cache.path(),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let sites = report["sites"].as_array().unwrap();
    assert!(sites.len() >= 8, "{report}");
    for s in sites {
        let (default, tuned) = (
            s["default_ms"].as_f64().unwrap(),
            s["tuned_ms"].as_f64().unwrap(),
        );
        assert!(tuned <= default, "{s}");
        assert!(s["rejected"].as_array().unwrap().is_empty(), "{s}");
    }
    assert!(cache.path().join("gan-gpu/tuning.json").is_file());

    let after = gan_gpu(&["plan", "--model", "seed"], cache.path());
    let text = String::from_utf8_lossy(&after.stderr).into_owned()
        + &String::from_utf8_lossy(&after.stdout);
    assert!(after.status.success(), "{text}");
    assert!(
        text.contains(&format!("tuning: {} kernels tuned (", sites.len())),
        "{text}"
    );
}

#[test]
fn train_tunes_first_within_its_budget_when_asked() {
    if test_context("train_tunes_first_within_its_budget_when_asked").is_none() {
        return;
    }
    let cache = tempfile::tempdir().unwrap();
    let run = cache.path().join("run");
    let out = gan_gpu(
        &[
            "train",
            "--device",
            "gpu",
            "--model",
            "seed",
            "--iterations",
            "1",
            "--tune",
            "always",
            "--tune-seconds",
            "45",
            "--out",
            run.to_str().unwrap(),
        ],
        cache.path(),
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    let tuned = err
        .lines()
        .find(|l| l.starts_with("tuning: ") && l.contains("kernels measured in"))
        .unwrap_or_else(|| panic!("no line about tuning: {err}"));
    assert!(tuned.contains("kept in"), "{tuned}");
    // "tuning: N of M kernels measured in ...": a slow machine may reach none in time.
    let counts: Vec<usize> = tuned
        .split_whitespace()
        .filter_map(|w| w.parse().ok())
        .take(2)
        .collect();
    assert!(counts.len() == 2 && counts[1] >= 8, "{tuned}");
    // The executor line comes after tuning and names the table it uses.
    let executor = err
        .lines()
        .find(|l| l.starts_with("executor: gpu"))
        .unwrap_or_else(|| panic!("no executor line: {err}"));
    if counts[0] > 0 {
        assert!(executor.contains("kernels tuned ("), "{executor}");
        assert!(cache.path().join("gan-gpu/tuning.json").is_file());
    } else {
        eprintln!("no kernel tuned within the budget on this machine: {tuned}");
    }
    assert!(run.join("checkpoint.safetensors").is_file() || run.join("loss.csv").is_file());
}
