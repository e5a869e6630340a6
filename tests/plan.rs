//! `gan-gpu plan`: the report against the dispatches a training step really records,
//! under both kernel settings; its totals, GEMM FLOPs and width flags; bad input.

mod common;

use std::sync::Arc;

use gan_gpu::bench::plan::{BIG_BYTES, BIG_FLOPS, MAX_LOOP, MIN_WORKGROUPS, width_problems};
use gan_gpu::cpu::AdamConfig;
use gan_gpu::gpu::testing::test_context;
use gan_gpu::gpu::{AdapterRequest, Footprint, KernelChoice};
use gan_gpu::graph::runtime::{DeviceChoice, Runtime};
use gan_gpu::graph::{Dataset, Executor, Instr, RandomStreams};
use gan_gpu::model::{DEFAULT_EMA_DECAY, ModelConfig, PIXELS, kind};
use serde_json::Value;

fn plan_json(model: &str, kernels: &str) -> Value {
    let out = common::run_cli(&["plan", "--model", model, "--kernels", kernels, "--json"]);
    assert!(
        out.status.success(),
        "plan --model {model} --kernels {kernels} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("plan --json prints one JSON object")
}

fn u64_of(v: &Value) -> u64 {
    v.as_u64().expect("an unsigned integer")
}

fn f64_of(v: &Value) -> f64 {
    v.as_f64().expect("a number")
}

/// Compiles `model`'s training step (at `plan`'s batch) with `kernels` and checks the
/// report row by row against the recorded dispatches, then its totals and flags.
fn check_against_recorded(model: &'static str, kernels: KernelChoice, name: &str) {
    let report = plan_json(model, name);
    assert_eq!(report["model"], model);
    assert_eq!(report["kernels"], name);
    let batch = u64_of(&report["batch"]) as usize;

    let runtime =
        Runtime::new(DeviceChoice::Gpu, AdapterRequest::default()).with_kernels(Some(kernels));
    let gan = kind(model)
        .unwrap()
        .build(&ModelConfig {
            batch,
            noise_dim: 100,
            adam: AdamConfig::default(),
            sample_batch: 1,
            ema_decay: DEFAULT_EMA_DECAY,
        })
        .unwrap();
    let dataset = Arc::new(Dataset {
        bytes: vec![0; batch * PIXELS],
        rows: batch,
        row_len: PIXELS,
        labels: Some(vec![0; batch]),
    });
    let step = gan.train_step().unwrap();
    let mut exec = runtime
        .gpu_executor(
            &gan.graph,
            gan.optimizers(),
            RandomStreams { seed: 3 },
            Some(dataset),
        )
        .unwrap();
    let compiled = exec.compile(&step).unwrap();
    let (dispatches, sources) = exec.plan_dispatches(compiled).unwrap();

    let rows = report["rows"].as_array().unwrap();
    assert_eq!(
        rows.len(),
        dispatches.len(),
        "one row per recorded dispatch"
    );
    let (mut flops, mut bytes, mut longest, mut flagged, mut running) = (0.0, 0.0, 0, 0, 0);
    let mut gemms = 0;
    let (mut adam_dispatches, mut adam_groups) = (0, std::collections::HashSet::new());
    for ((row, d), sources) in rows.iter().zip(dispatches).zip(sources) {
        let at = format!("{model}/{name} row {}", row["index"]);
        assert_eq!(row["entry"], d.kernel.entry, "{at}");
        assert_eq!(row["shader"], d.kernel.shader.file_name(), "{at}");
        assert_eq!(u64_of(&row["instruction"]) as usize, sources.start, "{at}");
        assert_eq!(u64_of(&row["instructions"]) as usize, sources.len(), "{at}");
        for instr in &step[sources.clone()] {
            if let Instr::Adam { group, .. } = instr {
                adam_groups.insert(*group);
            }
        }
        adam_dispatches +=
            (d.kernel.shader.file_name() == "adam.wgsl" && d.workgroups() > 0) as usize;
        let groups: Vec<u32> = row["groups"]
            .as_array()
            .unwrap()
            .iter()
            .map(|g| u64_of(g) as u32)
            .collect();
        assert_eq!(groups, d.groups, "{at}");
        let workgroups = u64_of(&row["workgroups"]);
        assert_eq!(
            workgroups,
            groups.iter().map(|&g| g as u64).product::<u64>(),
            "{at}"
        );
        let footprint = Footprint {
            workgroup_size: d.footprint.workgroup_size,
            longest_loop: u64_of(&row["longest_loop"]),
            flops: f64_of(&row["flops"]),
            bytes: f64_of(&row["bytes"]),
        };
        assert_eq!(footprint, d.footprint, "{at}");
        assert!(
            footprint.bytes > 0.0 && footprint.workgroup_size.iter().all(|&s| s > 0),
            "{at}: every dispatch moves bytes and has a workgroup size"
        );

        // The width rule, spelled out again from its constants.
        let big = footprint.bytes > BIG_BYTES || footprint.flops > BIG_FLOPS;
        let narrow = big && workgroups < MIN_WORKGROUPS;
        let long = footprint.longest_loop > MAX_LOOP;
        let problems: Vec<&str> = row["problems"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p.as_str().unwrap())
            .collect();
        assert_eq!(problems.contains(&"few workgroups"), narrow, "{at}");
        assert_eq!(problems.contains(&"long loop"), long, "{at}");
        assert_eq!(problems.len(), narrow as usize + long as usize, "{at}");

        if let Instr::Gemm { m, n, k, .. } = step[sources.start] {
            assert_eq!(footprint.flops, 2.0 * (m * n * k) as f64, "{at}: 2mnk");
            gemms += 1;
        }
        if workgroups > 0 {
            running += 1;
            flops += footprint.flops;
            bytes += footprint.bytes;
            longest = longest.max(footprint.longest_loop);
            flagged += !problems.is_empty() as usize;
        }
    }
    assert!(
        gemms >= 4,
        "{model}/{name}: the dense layers' GEMMs are in the plan"
    );
    // Parameters are packed, so each optimizer group's Adam steps are one dispatch.
    assert_eq!(
        adam_dispatches,
        adam_groups.len(),
        "{model}/{name}: one Adam dispatch per optimizer group"
    );

    let totals = &report["totals"];
    assert_eq!(u64_of(&totals["dispatches"]), running);
    assert_eq!(u64_of(&totals["passes"]), 1);
    assert_eq!(u64_of(&totals["submissions"]), 1);
    let close = |a: f64, b: f64| (a - b).abs() <= 1e-9 * b.abs().max(1.0);
    assert!(
        close(f64_of(&totals["flops"]), flops),
        "{model}/{name} FLOPs"
    );
    assert!(
        close(f64_of(&totals["bytes"]), bytes),
        "{model}/{name} bytes"
    );
    assert_eq!(u64_of(&totals["longest_loop"]), longest);
    assert_eq!(u64_of(&totals["flagged"]) as usize, flagged);
    // The FLOPs are the step's own count: every instruction's work lands in its
    // dispatches (a reduction pass adds its additions on top).
    let step_flops: f64 = step.iter().map(Instr::flops).sum();
    assert!(
        flops >= step_flops,
        "{model}/{name}: {flops} < {step_flops}"
    );
}

#[test]
fn the_plan_reports_every_recorded_dispatch_under_both_kernel_settings() {
    if test_context("plan report").is_none() {
        return;
    }
    check_against_recorded("seed", KernelChoice::Gpu, "gpu");
    check_against_recorded("seed", KernelChoice::Software, "software");
    check_against_recorded("cgan", KernelChoice::Gpu, "gpu");
}

#[test]
fn the_kernel_settings_change_the_plan() {
    if test_context("plan kernel settings").is_none() {
        return;
    }
    let entries = |kernels: &str| -> Vec<String> {
        plan_json("seed", kernels)["rows"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["entry"].as_str().unwrap().to_string())
            .collect()
    };
    let (gpu, software) = (entries("gpu"), entries("software"));
    assert!(gpu.iter().any(|e| e == "gemm_tiled"));
    assert!(!software.iter().any(|e| e == "gemm_tiled"));
    assert!(software.iter().any(|e| e.starts_with("gemm_register")));
}

#[test]
fn the_table_ends_with_the_totals() {
    if test_context("plan table").is_none() {
        return;
    }
    let out = common::run_cli(&["plan", "--kernels", "gpu"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        text.starts_with(&format!(
            "training iteration of {} (batch 100)",
            gan_gpu::model::DEFAULT_MODEL.name
        )),
        "{text}"
    );
    let totals = text.lines().find(|l| l.starts_with("totals: ")).unwrap();
    assert!(
        totals.contains("1 compute pass, 1 queue submission"),
        "{totals}"
    );
    assert!(text.contains("gemm::gemm_tiled"), "{text}");
}

#[test]
fn an_unknown_model_is_refused_by_name() {
    let out = common::run_cli(&["plan", "--model", "nosuch"]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("nosuch") && stderr.contains("seed") && stderr.contains("cgan"));
    let e = kind("nosuch").unwrap_err().to_string();
    assert!(
        e.contains("unknown model \"nosuch\"") && e.contains("cgan, seed, dcgan"),
        "{e}"
    );
}

#[test]
fn the_width_rule_has_sharp_edges() {
    let fp = |bytes: f64, flops: f64, longest_loop: u64| Footprint {
        workgroup_size: [64, 1, 1],
        longest_loop,
        flops,
        bytes,
    };
    let big = BIG_BYTES + 1.0;
    assert!(width_problems(&fp(big, 0.0, 1), MIN_WORKGROUPS).is_empty());
    assert_eq!(
        width_problems(&fp(big, 0.0, 1), MIN_WORKGROUPS - 1),
        ["few workgroups"]
    );
    assert_eq!(
        width_problems(&fp(0.0, BIG_FLOPS + 1.0, 1), 1),
        ["few workgroups"]
    );
    // Small work may run on one workgroup.
    assert!(width_problems(&fp(BIG_BYTES, BIG_FLOPS, MAX_LOOP), 1).is_empty());
    assert_eq!(
        width_problems(&fp(0.0, 0.0, MAX_LOOP + 1), 1000),
        ["long loop"]
    );
    assert_eq!(
        width_problems(&fp(big, 0.0, MAX_LOOP + 1), 2),
        ["few workgroups", "long loop"]
    );
}
