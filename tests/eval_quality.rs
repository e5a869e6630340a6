//! FID and class statistics through our classifier: real digits score far better than
//! noise and than an untrained generator, and `gan-gpu eval` reports both lines.

mod common;

use common::run_cli;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use gan_gpu::data::{Split, default_data_dir, load_mnist};
use gan_gpu::eval::classifier::{
    ClassifierConfig, ClassifierRunner, scaled_images, train_classifier,
};
use gan_gpu::eval::quality::{quality, reference};
use gan_gpu::graph::runtime::Runtime;
use gan_gpu::graph::{Buf, RandomStreams};
use gan_gpu::model::classifier::{ClassifierWeights, save_classifier};
use gan_gpu::model::sample::Sampler;
use gan_gpu::model::seed::SEED;
use rand::{RngExt, SeedableRng, rngs::StdRng};

/// A briefly trained classifier (about 97% accurate): enough to rank image sets, and
/// quick. The 99% one is checked in classifier.rs.
fn classifier() -> &'static (ClassifierWeights, PathBuf) {
    static CLASSIFIER: OnceLock<(ClassifierWeights, PathBuf)> = OnceLock::new();
    CLASSIFIER.get_or_init(|| {
        let cfg = ClassifierConfig {
            iterations: 400,
            ..ClassifierConfig::default()
        };
        let weights =
            train_classifier(&Runtime::cpu(), &default_data_dir(), &cfg, &mut |_, _| {}).unwrap();
        // Cargo's scratch folder for integration tests: nothing is left in /tmp.
        let path = Path::new(env!("CARGO_TARGET_TMPDIR")).join("eval-test-classifier.safetensors");
        save_classifier(&path, &weights, 0.0).unwrap();
        (weights, path)
    })
}

#[test]
fn real_digits_score_far_better_than_noise_and_an_untrained_generator() {
    let (weights, _) = classifier();
    let runtime = Runtime::cpu();
    let mut runner = ClassifierRunner::new(&runtime, weights).unwrap();
    let test = load_mnist(&default_data_dir(), Split::Test).unwrap();
    let train = load_mnist(&default_data_dir(), Split::Train).unwrap();
    let reference = reference(&mut runner, &test).unwrap();
    let real = quality(
        "real",
        &mut runner,
        &scaled_images(&train, 5000),
        None,
        &reference,
    )
    .unwrap();

    let mut rng = StdRng::seed_from_u64(1);
    let noise: Vec<f32> = (0..2000 * 784)
        .map(|_| rng.random_range(-1.0..1.0))
        .collect();
    let noise = quality("noise", &mut runner, &noise, None, &reference).unwrap();

    let (graph, generator) = SEED.generator_graph(500, 100).unwrap();
    let mut exec = runtime
        .executor(&graph, vec![], RandomStreams { seed: 0 }, None)
        .unwrap();
    for (id, values) in graph.init_params(&mut rng) {
        exec.write(Buf::Value(id), &values).unwrap();
    }
    let sampler = Sampler::compile(exec.as_mut(), &graph, &generator).unwrap();
    let z = gan_gpu::cpu::normal_noise(3, 0, 2000 * 100);
    let images = sampler.generate(exec.as_mut(), &z, None).unwrap();
    let untrained = quality("untrained", &mut runner, &images, None, &reference).unwrap();

    eprintln!(
        "FID real {:.3}, noise {:.3}, untrained generator {:.3}",
        real.fid, noise.fid, untrained.fid
    );
    assert!(
        real.fid * 10.0 < noise.fid,
        "real {} vs noise {}",
        real.fid,
        noise.fid
    );
    assert!(
        real.fid * 10.0 < untrained.fid,
        "real {} vs untrained {}",
        real.fid,
        untrained.fid
    );
    // Real digits spread over all ten classes, most of them confidently.
    assert!(
        real.classes.entropy > 0.95 * 10f64.ln(),
        "{:?}",
        real.classes
    );
    assert!(real.classes.confident_fraction > 0.8, "{:?}", real.classes);
}

#[test]
fn eval_scores_a_checkpoint_and_an_idx_file() {
    let (_, classifier_path) = classifier();
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("run");
    let out = run_cli(&[
        "train",
        "--device",
        "cpu",
        "--iterations",
        "2",
        "--batch-size",
        "8",
        "--out",
        run.to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let ckpt = run.join("checkpoint.safetensors");
    let c = classifier_path.to_str().unwrap();
    let out = run_cli(&[
        "eval",
        "--checkpoint",
        ckpt.to_str().unwrap(),
        "--count",
        "500",
        "--classifier",
        c,
        "--json",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let (g, r) = (&v["generated"], &v["real"]);
    assert_eq!(g["count"], 500);
    assert!(g["fid"].as_f64().unwrap() > r["fid"].as_f64().unwrap());
    assert_eq!(g["classes"]["histogram"].as_array().unwrap().len(), 10);

    let idx = dir.path().join("digits.idx3-ubyte");
    let out = run_cli(&[
        "sample",
        "--checkpoint",
        ckpt.to_str().unwrap(),
        "--count",
        "300",
        "--out",
        idx.to_str().unwrap(),
    ]);
    assert!(out.status.success());
    let out = run_cli(&[
        "eval",
        "--samples",
        idx.to_str().unwrap(),
        "--classifier",
        c,
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(
        table.contains("digits.idx3-ubyte (300 images)") && table.contains("MNIST training images"),
        "{table}"
    );
    // The columns line up under their headings, however long the file's path.
    let lines: Vec<&str> = table.lines().take(3).collect();
    let end = lines[0].find("count").unwrap() + "count".len();
    for row in &lines[1..] {
        assert!(
            row[..end].ends_with(|c: char| c.is_ascii_digit()) && row[end..].starts_with(' '),
            "{table}"
        );
    }
}

#[test]
fn training_with_eval_every_adds_quality_columns() {
    let (_, classifier_path) = classifier();
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("run");
    let out = run_cli(&[
        "train",
        "--device",
        "cpu",
        "--iterations",
        "4",
        "--batch-size",
        "8",
        "--log-every",
        "1",
        "--eval-every",
        "2",
        "--eval-count",
        "200",
        "--classifier",
        classifier_path.to_str().unwrap(),
        "--out",
        run.to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let csv = std::fs::read_to_string(run.join("loss.csv")).unwrap();
    let lines: Vec<&str> = csv.lines().collect();
    // The raw generator's figures, then its moving average's.
    assert!(
        lines[0].ends_with(
            ",fid,class_entropy,confident_fraction,ema_fid,ema_class_entropy,ema_confident_fraction"
        ),
        "{csv}"
    );
    assert!(
        lines[1].ends_with(",,,,,,"),
        "iteration 1 has no evaluation: {csv}"
    );
    let row: Vec<&str> = lines[2].split(',').collect();
    for column in [7, 10] {
        let fid: f64 = row[column].parse().unwrap();
        assert!(fid > 0.0, "{csv}");
    }

    let out = run_cli(&["plot", "--run", run.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let svg = std::fs::read_to_string(run.join("fid.svg")).unwrap();
    assert!(
        svg.starts_with("<svg")
            && svg.contains("FID over training")
            && svg.contains("FID, moving average"),
        "{svg}"
    );
    assert!(!Path::new(&run.join("losses.svg")).exists());

    // Several runs go on one chart, each series named after its folder; it needs --out.
    let other = run.with_file_name("other-run");
    std::fs::create_dir(&other).unwrap();
    std::fs::copy(run.join("loss.csv"), other.join("loss.csv")).unwrap();
    let both = other.join("both.svg");
    let out = run_cli(&[
        "plot",
        "--run",
        run.to_str().unwrap(),
        "--run",
        other.to_str().unwrap(),
        "--out",
        both.to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let svg = std::fs::read_to_string(&both).unwrap();
    let name = run.file_name().unwrap().to_str().unwrap();
    for series in [
        format!("{name}: FID, raw weights"),
        format!("{name}: FID, moving average"),
        "other-run: FID, raw weights".to_string(),
        "other-run: FID, moving average".to_string(),
    ] {
        assert!(svg.contains(&series), "{series} missing: {svg}");
    }
    let out = run_cli(&[
        "plot",
        "--run",
        run.to_str().unwrap(),
        "--run",
        other.to_str().unwrap(),
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && stderr.contains("--out"),
        "{stderr}"
    );
}

/// `eval` of a class-conditional checkpoint reports how often each requested digit is
/// what the classifier sees; `--digit` asks for one.
#[test]
fn eval_reports_the_requested_digits_of_a_cgan() {
    let (_, classifier_path) = classifier();
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("run");
    let out = run_cli(&[
        "train",
        "--model",
        "cgan",
        "--device",
        "cpu",
        "--iterations",
        "2",
        "--batch-size",
        "8",
        "--out",
        run.to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let ckpt = run.join("checkpoint.safetensors");
    let c = classifier_path.to_str().unwrap();
    let eval = |extra: &[&str]| -> serde_json::Value {
        let mut args = vec![
            "eval",
            "--checkpoint",
            ckpt.to_str().unwrap(),
            "--count",
            "200",
            "--classifier",
            c,
            "--json",
        ];
        args.extend(extra);
        let out = run_cli(&args);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).unwrap()
    };
    let all = eval(&[]);
    let requested = &all["generated"]["requested"];
    let per_digit = requested["per_digit"].as_array().unwrap();
    assert_eq!(per_digit.len(), 10, "{requested}");
    assert!(per_digit.iter().all(|d| d[1] == 20), "{requested}");
    let accuracy = requested["accuracy"].as_f64().unwrap();
    assert!((0.0..=1.0).contains(&accuracy));
    assert!(all["real"].get("requested").is_none());
    let three = eval(&["--digit", "3"]);
    let per_digit = three["generated"]["requested"]["per_digit"]
        .as_array()
        .unwrap();
    assert_eq!(per_digit.len(), 1);
    assert_eq!(
        (per_digit[0][0].as_u64(), per_digit[0][1].as_u64()),
        (Some(3), Some(200))
    );
}
