//! The `gan-gpu` binary as a user meets it: flags, bad input, and the files it writes.

mod common;

use common::{assert_clean_error, stderr};

use common::run_cli;
use std::path::Path;
use std::process::Command;

use gan_gpu::data::{default_data_dir, read_idx_images};

#[test]
fn a_truncated_data_folder_names_the_file_and_the_problem() {
    let dir = tempfile::tempdir().unwrap();
    for name in [
        "train-labels-idx1-ubyte.gz",
        "t10k-images-idx3-ubyte.gz",
        "t10k-labels-idx1-ubyte.gz",
    ] {
        std::fs::copy(default_data_dir().join(name), dir.path().join(name)).unwrap();
    }
    // The images, decompressed and cut short.
    let mut images = Vec::new();
    let gz = std::fs::File::open(default_data_dir().join("train-images-idx3-ubyte.gz")).unwrap();
    std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(gz), &mut images).unwrap();
    std::fs::write(
        dir.path().join("train-images-idx3-ubyte"),
        &images[..1_000_000],
    )
    .unwrap();

    let data = dir.path().to_str().unwrap();
    let out = run_cli(&["dataset", "--data", data]);
    assert_clean_error(&out, &["train-images-idx3-ubyte", "truncated"]);
    let out = run_cli(&[
        "train",
        "--device",
        "cpu",
        "--data",
        data,
        "--out",
        dir.path().join("run").to_str().unwrap(),
    ]);
    assert_clean_error(&out, &["train-images-idx3-ubyte", "truncated"]);
}

#[test]
fn a_missing_data_folder_says_where_it_looked() {
    let out = run_cli(&["dataset", "--data", "/nonexistent/mnist"]);
    assert_clean_error(&out, &["/nonexistent/mnist/train-images-idx3-ubyte.gz"]);
}

#[test]
fn the_bundled_dataset_is_found_from_any_directory() {
    let out = Command::new(env!("CARGO_BIN_EXE_gan-gpu"))
        .arg("dataset")
        .current_dir(std::env::temp_dir())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("train: 60000 images of 28x28"), "{text}");
    assert!(text.contains("t10k: 10000 images"), "{text}");
}

#[test]
fn bad_flags_are_usage_errors() {
    for args in [
        &["train", "--batch-size", "many"][..],
        &["train", "--device", "tpu"],
        &["train", "--adapter", "fastest"],
        &["train", "--resume", "a", "--out", "b"],
        &["sample"],
        &["frobnicate"],
    ] {
        let out = run_cli(args);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", stderr(&out));
        assert!(!stderr(&out).contains("panicked"));
    }
}

#[test]
fn nonsense_settings_are_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("run");
    let out = run_cli(&[
        "train",
        "--device",
        "cpu",
        "--log-every",
        "0",
        "--out",
        run.to_str().unwrap(),
    ]);
    assert_clean_error(&out, &["--log-every"]);
    let out = run_cli(&[
        "train",
        "--device",
        "cpu",
        "--beta1",
        "1.5",
        "--out",
        run.to_str().unwrap(),
    ]);
    assert_clean_error(&out, &["--beta1"]);
}

#[test]
fn bad_checkpoints_are_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let png = dir.path().join("x.png");
    let missing = dir.path().join("missing.safetensors");
    let out = run_cli(&[
        "sample",
        "--checkpoint",
        missing.to_str().unwrap(),
        "--out",
        png.to_str().unwrap(),
    ]);
    assert_clean_error(&out, &["missing.safetensors"]);
    let garbage = dir.path().join("garbage.safetensors");
    std::fs::write(&garbage, b"not a checkpoint at all").unwrap();
    let out = run_cli(&[
        "sample",
        "--checkpoint",
        garbage.to_str().unwrap(),
        "--out",
        png.to_str().unwrap(),
    ]);
    assert_clean_error(&out, &["garbage.safetensors"]);
}

fn train_tiny(run: &Path) {
    train_tiny_with(run, &[]);
}

/// `train_tiny` with more flags, such as another `--model`.
fn train_tiny_with(run: &Path, extra: &[&str]) {
    let mut args = vec![
        "train",
        "--device",
        "cpu",
        "--iterations",
        "3",
        "--batch-size",
        "4",
        "--log-every",
        "1",
        "--out",
        run.to_str().unwrap(),
    ];
    args.extend(extra);
    let out = run_cli(&args);
    assert!(out.status.success(), "{}", stderr(&out));
}

#[test]
fn train_then_sample_to_png_and_idx() {
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("run");
    train_tiny(&run);
    for file in [
        "config.json",
        "loss.csv",
        "checkpoint.safetensors",
        "samples/iter_000003.png",
    ] {
        assert!(run.join(file).exists(), "{file} missing");
    }
    let csv = std::fs::read_to_string(run.join("loss.csv")).unwrap();
    assert!(
        csv.starts_with(
            "iteration,d_loss_real,d_loss_fake,g_loss,d_real_mean,d_fake_mean,seconds\n"
        )
    );
    assert_eq!(csv.lines().count(), 4);

    let ckpt = run.join("checkpoint.safetensors");
    let idx = dir.path().join("digits.idx3-ubyte");
    let out = run_cli(&[
        "sample",
        "--checkpoint",
        ckpt.to_str().unwrap(),
        "--count",
        "10",
        "--out",
        idx.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let (_, count, rows, cols) = read_idx_images(&idx).unwrap();
    assert_eq!((count, rows, cols), (10, 28, 28));
    let png = dir.path().join("digits.png");
    let out = run_cli(&[
        "sample",
        "--checkpoint",
        ckpt.to_str().unwrap(),
        "--out",
        png.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(png.exists());
}

#[test]
fn a_checkpoint_of_another_architecture_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("run");
    let out = run_cli(&[
        "train",
        "--device",
        "cpu",
        "--iterations",
        "1",
        "--batch-size",
        "2",
        "--noise-dim",
        "10",
        "--out",
        run.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    // Rename a tensor so the file no longer matches the generator.
    let ckpt = run.join("checkpoint.safetensors");
    let mut loaded = gan_gpu::io::checkpoint::load_checkpoint(&ckpt).unwrap();
    // Both the raw weight and its moving average.
    loaded
        .tensors
        .retain(|t| !t.name.ends_with("generator.deconv2.kernel"));
    gan_gpu::io::checkpoint::save_checkpoint(&ckpt, &loaded).unwrap();
    let png = dir.path().join("x.png");
    for (flag, missing) in [
        (None, "ema.generator.deconv2.kernel"),
        (Some("--raw"), "tensor generator.deconv2.kernel"),
    ] {
        let mut args = vec![
            "sample",
            "--checkpoint",
            ckpt.to_str().unwrap(),
            "--out",
            png.to_str().unwrap(),
        ];
        args.extend(flag);
        assert_clean_error(&run_cli(&args), &[missing]);
    }
    let out = run_cli(&[
        "train",
        "--device",
        "cpu",
        "--resume",
        run.to_str().unwrap(),
        "--iterations",
        "2",
    ]);
    assert_clean_error(&out, &["generator.deconv2.kernel"]);
}

#[test]
fn adapters_json_is_a_list() {
    let out = run_cli(&["adapters", "--json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let list = v.as_array().unwrap();
    for a in list {
        for key in [
            "index",
            "name",
            "backend",
            "device_type",
            "driver",
            "limits",
            "picked_by",
        ] {
            assert!(a.get(key).is_some(), "{key} missing in {a}");
        }
    }
}

/// `--model cgan`: one row of samples per digit in the run's grids, `sample --digit` for
/// one digit or all, and clear errors for a digit the model cannot draw and for `--digit`
/// on an unconditional checkpoint.
#[test]
fn a_class_conditional_run_draws_the_digits_asked_for() {
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("cgan");
    let out = run_cli(&[
        "train",
        "--model",
        "cgan",
        "--device",
        "cpu",
        "--iterations",
        "2",
        "--batch-size",
        "4",
        "--out",
        run.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let config = std::fs::read_to_string(run.join("config.json")).unwrap();
    assert!(config.contains("\"model\": \"cgan\""), "{config}");
    // A 10x10 grid, a row per digit: 10 cells of 2·28 pixels plus 2-pixel gaps.
    let grid = png::Decoder::new(std::io::BufReader::new(
        std::fs::File::open(run.join("samples/iter_000002.png")).unwrap(),
    ))
    .read_info()
    .unwrap();
    assert_eq!(grid.info().width, 10 * (2 * 28 + 2) + 2);
    assert_eq!(grid.info().height, grid.info().width);

    let ckpt = run.join("checkpoint.safetensors");
    for digit in ["7", "all"] {
        let png = dir.path().join(format!("{digit}.png"));
        let out = run_cli(&[
            "sample",
            "--checkpoint",
            ckpt.to_str().unwrap(),
            "--digit",
            digit,
            "--count",
            "20",
            "--out",
            png.to_str().unwrap(),
        ]);
        assert!(out.status.success(), "--digit {digit}: {}", stderr(&out));
        assert!(png.exists());
    }
    let png = dir.path().join("x.png");
    for (digit, needle) in [("12", "--digit 12"), ("seven", "--digit \"seven\"")] {
        let out = run_cli(&[
            "sample",
            "--checkpoint",
            ckpt.to_str().unwrap(),
            "--digit",
            digit,
            "--out",
            png.to_str().unwrap(),
        ]);
        assert_clean_error(&out, &[needle]);
    }
    let seed_run = dir.path().join("seed");
    train_tiny_with(&seed_run, &["--model", "seed"]);
    let seed_ckpt = seed_run.join("checkpoint.safetensors");
    let out = run_cli(&[
        "sample",
        "--checkpoint",
        seed_ckpt.to_str().unwrap(),
        "--digit",
        "3",
        "--out",
        png.to_str().unwrap(),
    ]);
    assert_clean_error(&out, &["not class-conditional", "seed"]);
    assert!(!png.exists());
}

/// A generator with noise dimension 0 has no input: every command that draws from a
/// checkpoint refuses it by name (it used to panic `sample` and `eval` and export).
#[test]
fn a_checkpoint_with_noise_dimension_0_is_refused_by_sample_eval_and_export_web() {
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("run");
    train_tiny(&run);
    let original =
        gan_gpu::io::checkpoint::load_checkpoint(&run.join("checkpoint.safetensors")).unwrap();
    let zero_in_config = |config: &str| {
        let mut json: serde_json::Value = serde_json::from_str(config).unwrap();
        json["noise_dim"] = 0.into();
        json.to_string()
    };
    let mut with_key = original.clone();
    with_key.metadata.insert("noise_dim".into(), "0".into());
    let mut config_only = original.clone();
    config_only.metadata.remove("noise_dim");
    let config = zero_in_config(&config_only.metadata["config"]);
    config_only.metadata.insert("config".into(), config);
    for (name, ckpt) in [("key", with_key), ("config", config_only)] {
        let path = dir.path().join(format!("{name}.safetensors"));
        gan_gpu::io::checkpoint::save_checkpoint(&path, &ckpt).unwrap();
        let path = path.to_str().unwrap();
        let png = dir.path().join("x.png");
        let classifier = dir.path().join("classifier.safetensors");
        let site = dir.path().join("site");
        for args in [
            vec![
                "sample",
                "--checkpoint",
                path,
                "--out",
                png.to_str().unwrap(),
            ],
            vec![
                "eval",
                "--checkpoint",
                path,
                "--classifier",
                classifier.to_str().unwrap(),
            ],
            vec![
                "export-web",
                "--checkpoint",
                path,
                "--out",
                site.to_str().unwrap(),
            ],
        ] {
            let out = run_cli(&args);
            assert_clean_error(&out, &[path, "noise dimension"]);
        }
        assert!(!png.exists() && !classifier.exists() && !site.join("plan.json").exists());
    }
}

/// `eval --samples` reads and checks the file before it loads, or trains, the classifier.
#[test]
fn eval_refuses_a_bad_samples_file_before_touching_the_classifier() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.idx3-ubyte");
    std::fs::write(&bad, [0, 0, 8, 3, 0, 0, 0, 1, 0, 0, 0, 28]).unwrap();
    let classifier = dir.path().join("classifier.safetensors");
    let start = std::time::Instant::now();
    let out = run_cli(&[
        "eval",
        "--samples",
        bad.to_str().unwrap(),
        "--classifier",
        classifier.to_str().unwrap(),
    ]);
    assert_clean_error(&out, &["bad.idx3-ubyte"]);
    assert!(!classifier.exists(), "the classifier was trained first");
    assert!(start.elapsed() < std::time::Duration::from_secs(20));
}

/// The defaults `train --help` and `sample --help` state by hand are the library's.
#[test]
fn help_states_the_real_defaults_and_limits() {
    let d = gan_gpu::train::TrainConfig::default();
    let help = String::from_utf8(run_cli(&["train", "--help"]).stdout).unwrap();
    let help = help.split_whitespace().collect::<Vec<_>>().join(" ");
    let iterations = |model: &str| gan_gpu::model::kind(model).unwrap().default_iterations;
    for (flag, default) in [
        (
            "--iterations",
            format!(
                "the model's: {} for cgan and seed, {} for dcgan",
                iterations("cgan"),
                iterations("dcgan")
            ),
        ),
        ("--ema-decay", d.ema_decay.to_string()),
        ("--batch-size", d.batch_size.to_string()),
        ("--noise-dim", d.noise_dim.to_string()),
        ("--lr", d.lr.to_string()),
        ("--beta1", d.beta1.to_string()),
        ("--beta2", d.beta2.to_string()),
        ("--seed", d.seed.to_string()),
        ("--log-every", d.log_every.to_string()),
        ("--sample-every", d.sample_every.to_string()),
        ("--checkpoint-every", d.checkpoint_every.to_string()),
        ("--model", d.model.clone()),
    ] {
        let at = help
            .find(&format!("{flag} "))
            .unwrap_or_else(|| panic!("{flag}"));
        let entry = &help[at..];
        let entry = &entry[..entry[2..].find(" --").map_or(entry.len(), |i| i + 2)];
        assert!(entry.contains(&format!("[default: {default}")), "{entry}");
    }
    let capacity = gan_gpu::io::images::grid_capacity(
        28,
        gan_gpu::io::images::DIGIT_COLUMNS,
        gan_gpu::io::images::DIGIT_SCALE,
    );
    let help = String::from_utf8(run_cli(&["sample", "--help"]).stdout).unwrap();
    assert!(help.contains(&format!("at most {capacity}")), "{help}");
}

fn idx_bytes(dir: &Path, name: &str, checkpoint: &Path, extra: &[&str]) -> (Vec<u8>, String) {
    let idx = dir.join(format!("{name}.idx3-ubyte"));
    let mut args = vec![
        "sample",
        "--checkpoint",
        checkpoint.to_str().unwrap(),
        "--count",
        "6",
        "--out",
        idx.to_str().unwrap(),
    ];
    args.extend(extra);
    let out = run_cli(&args);
    assert!(out.status.success(), "{}", stderr(&out));
    let said = String::from_utf8_lossy(&out.stdout).into_owned();
    (std::fs::read(&idx).unwrap(), said)
}

/// A checkpoint keeps the raw weights (`generator.*`) and their moving average
/// (`ema.generator.*`); `sample`, `export-web` and `export-onnx` draw with the average
/// unless given `--raw`, and say which they used; `eval --raw` reaches the loader too.
#[test]
fn checkpoints_keep_raw_and_ema_weights_and_the_tools_use_the_ema_unless_raw() {
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("run");
    train_tiny(&run);
    let ckpt_path = run.join("checkpoint.safetensors");
    let ckpt = gan_gpu::io::checkpoint::load_checkpoint(&ckpt_path).unwrap();
    let raw = &ckpt.tensor("generator.dense.kernel").unwrap().data;
    let ema = &ckpt.tensor("ema.generator.dense.kernel").unwrap().data;
    assert_ne!(
        raw, ema,
        "3 steps of warm-up leave the average off the weights"
    );
    let generator_tensors = ckpt
        .tensors
        .iter()
        .filter(|t| t.name.starts_with("generator."))
        .count();
    let averages = ckpt
        .tensors
        .iter()
        .filter(|t| t.name.starts_with("ema.generator."))
        .count();
    assert_eq!(
        averages, generator_tensors,
        "one average per generator tensor"
    );

    let (by_default, said) = idx_bytes(dir.path(), "default", &ckpt_path, &[]);
    assert!(said.contains("moving average"), "{said}");
    let (by_raw, said) = idx_bytes(dir.path(), "raw", &ckpt_path, &["--raw"]);
    assert!(said.contains("raw weights (--raw)"), "{said}");
    assert_ne!(by_default, by_raw);

    // The web export's weights file holds the average under the generator's names and
    // says so: drawing from it gives the default's digits.
    let site = dir.path().join("site");
    let out = run_cli(&[
        "export-web",
        "--checkpoint",
        ckpt_path.to_str().unwrap(),
        "--out",
        site.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains("moving average"));
    let exported = site.join("generator.safetensors");
    let file = gan_gpu::io::checkpoint::load_checkpoint(&exported).unwrap();
    assert_eq!(file.metadata["weights"], "ema");
    assert_eq!(&file.tensor("generator.dense.kernel").unwrap().data, ema);
    let (from_export, said) = idx_bytes(dir.path(), "export", &exported, &[]);
    assert!(said.contains("moving average"), "{said}");
    assert_eq!(from_export, by_default);
    // Such a file has no raw weights: --raw is refused by name, by sample and eval alike.
    let classifier = dir.path().join("classifier.safetensors");
    for args in [
        vec!["sample", "--out", "x.png"],
        vec!["eval", "--classifier", classifier.to_str().unwrap()],
    ] {
        let mut args = args.clone();
        args.extend(["--checkpoint", exported.to_str().unwrap(), "--raw"]);
        assert_clean_error(&run_cli(&args), &["--raw", "only the moving average"]);
    }
    assert!(
        !classifier.exists(),
        "eval trained a classifier before refusing"
    );

    let out = run_cli(&[
        "export-web",
        "--checkpoint",
        ckpt_path.to_str().unwrap(),
        "--out",
        site.to_str().unwrap(),
        "--raw",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let file = gan_gpu::io::checkpoint::load_checkpoint(&exported).unwrap();
    assert_eq!(file.metadata["weights"], "raw");
    assert_eq!(&file.tensor("generator.dense.kernel").unwrap().data, raw);

    let onnx = dir.path().join("g.onnx");
    for (flag, want) in [(None, "moving average"), (Some("--raw"), "raw weights")] {
        let mut args = vec![
            "export-onnx",
            "--checkpoint",
            ckpt_path.to_str().unwrap(),
            "--out",
            onnx.to_str().unwrap(),
        ];
        args.extend(flag);
        let out = run_cli(&args);
        assert!(out.status.success(), "{}", stderr(&out));
        let said = String::from_utf8_lossy(&out.stdout);
        assert!(said.contains(want), "{said}");
    }
}

/// `--ema-decay 0` keeps no average; such a checkpoint draws with its raw weights and says
/// why. The bundled demo generator holds the average alone.
/// `--ema-decay` outside [0, 1) is refused, and so is changing it on resume.
#[test]
fn without_a_moving_average_the_tools_fall_back_to_the_raw_weights_and_say_so() {
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("run");
    let out = run_cli(&[
        "train",
        "--device",
        "cpu",
        "--iterations",
        "2",
        "--batch-size",
        "4",
        "--ema-decay",
        "0",
        "--out",
        run.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let ckpt_path = run.join("checkpoint.safetensors");
    let ckpt = gan_gpu::io::checkpoint::load_checkpoint(&ckpt_path).unwrap();
    assert!(ckpt.tensors.iter().all(|t| !t.name.starts_with("ema.")));
    let (by_default, said) = idx_bytes(dir.path(), "default", &ckpt_path, &[]);
    assert!(said.contains("holds no moving average"), "{said}");
    let (by_raw, _) = idx_bytes(dir.path(), "raw", &ckpt_path, &["--raw"]);
    assert_eq!(by_default, by_raw);

    // The bundled demo generator is the default model's full run, exported: its moving
    // average alone, so --raw is refused by name.
    let demo = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/demo-generator.safetensors");
    let file = gan_gpu::io::checkpoint::load_checkpoint(&demo).unwrap();
    assert_eq!(file.metadata["model"], gan_gpu::model::DEFAULT_MODEL.name);
    assert_eq!(file.metadata["weights"], "ema");
    assert_eq!(file.metadata["iteration"], "50000");
    let (_, said) = idx_bytes(dir.path(), "demo", &demo, &[]);
    assert!(said.contains("moving average"), "{said}");
    let out = run_cli(&[
        "sample",
        "--checkpoint",
        demo.to_str().unwrap(),
        "--out",
        "x.png",
        "--raw",
    ]);
    assert_clean_error(&out, &["--raw", "only the moving average"]);

    for bad in ["1", "-0.5", "nan"] {
        let out = run_cli(&[
            "train",
            &format!("--ema-decay={bad}"),
            "--out",
            dir.path().join("bad").to_str().unwrap(),
        ]);
        assert_clean_error(&out, &["--ema-decay"]);
    }
    let out = run_cli(&[
        "train",
        "--resume",
        run.to_str().unwrap(),
        "--ema-decay",
        "0.99",
    ]);
    assert_clean_error(&out, &["--ema-decay 0.99", "--ema-decay 0"]);
}
