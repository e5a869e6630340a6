//! Every size a flag or a file sets is checked before anything that size is allocated: a
//! clear error naming the flag and the limit, never an abort, a "capacity overflow" panic
//! or a read that runs until memory runs out.

mod common;

use common::stderr;

use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use common::run_cli;

/// A clean failure, fast: the size was refused before any work was done.
fn assert_refused(args: &[&str], needles: &[&str]) {
    let start = Instant::now();
    let out = run_cli(args);
    let err = stderr(&out);
    assert_eq!(
        out.status.code(),
        Some(1),
        "{args:?}: {:?}\n{err}",
        out.status
    );
    assert!(err.starts_with("error: "), "{args:?}:\n{err}");
    assert!(!err.contains("panicked"), "{args:?}:\n{err}");
    for needle in needles {
        assert!(
            err.contains(needle),
            "{args:?}: expected {needle:?} in:\n{err}"
        );
    }
    // Generous for a loaded CI machine; the failures this replaces took 39 s or never ended.
    assert!(
        start.elapsed() < Duration::from_secs(20),
        "{args:?} took {:?} to refuse",
        start.elapsed()
    );
}

fn checkpoint() -> &'static Path {
    static RUN: OnceLock<(tempfile::TempDir, PathBuf)> = OnceLock::new();
    let (_, path) = RUN.get_or_init(|| {
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
            "--out",
            run.to_str().unwrap(),
        ]);
        assert!(out.status.success(), "{}", stderr(&out));
        (dir, run.join("checkpoint.safetensors"))
    });
    path
}

#[test]
fn training_sizes_beyond_this_machine_name_the_flag() {
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("run");
    let run = run.to_str().unwrap();
    let train = |flag: &'static str, value: &'static str| {
        vec!["train", "--device", "cpu", "--out", run, flag, value]
    };
    assert_refused(
        &train("--batch-size", "100000"),
        &["--batch-size 100000", "memory"],
    );
    assert_refused(
        &train("--noise-dim", "1000000"),
        &["--noise-dim 1000000", "memory"],
    );
    // Sizes whose products overflow 64 bits.
    assert_refused(
        &train("--noise-dim", "4611686018427387904"),
        &["--noise-dim", "at most"],
    );
    assert_refused(
        &train("--batch-size", "4611686018427387904"),
        &["--batch-size", "at most"],
    );
    let mut eval = train("--eval-every", "1");
    eval.extend(["--eval-count", "1000000000000"]);
    assert_refused(&eval, &["--eval-count 1000000000000", "memory"]);
    assert!(!Path::new(run).join("checkpoint.safetensors").exists());
}

#[test]
fn sample_counts_are_checked_against_the_output_format() {
    let dir = tempfile::tempdir().unwrap();
    let ckpt = checkpoint().to_str().unwrap();
    let png = dir.path().join("x.png");
    let idx = dir.path().join("x.idx3-ubyte");
    let sample = |count: &'static str, out: &Path| {
        let out = out.to_str().unwrap().to_string();
        move || {
            let args = [
                "sample",
                "--device",
                "cpu",
                "--checkpoint",
                ckpt,
                "--count",
                count,
                "--out",
                &out,
            ];
            args.map(str::to_string)
        }
    };
    for (make, needles) in [
        (
            sample("10000000", &png),
            &["--count 10000000", "PNG", "idx3-ubyte"][..],
        ),
        (sample("0", &png), &["--count"]),
        (sample("0", &idx), &["--count"]),
        (sample("18446744073709551615", &idx), &["--count", "IDX"]),
        (sample("10000000000", &idx), &["--count 10000000000", "IDX"]),
    ] {
        let args = make();
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        assert_refused(&args, needles);
    }
    assert!(!png.exists() && !idx.exists());
}

#[test]
fn eval_counts_are_checked_before_sampling() {
    let dir = tempfile::tempdir().unwrap();
    let classifier = dir.path().join("classifier.safetensors");
    for count in ["1000000000000", "18446744073709551615"] {
        assert_refused(
            &[
                "eval",
                "--device",
                "cpu",
                "--checkpoint",
                checkpoint().to_str().unwrap(),
                "--count",
                count,
                "--classifier",
                classifier.to_str().unwrap(),
            ],
            &["--count", "memory"],
        );
    }
    assert!(
        !classifier.exists(),
        "no classifier is trained for a refused eval"
    );
}

#[test]
fn non_regular_files_are_refused_before_reading() {
    let dir = tempfile::tempdir().unwrap();
    let png = dir.path().join("x.png");
    assert_refused(
        &[
            "sample",
            "--device",
            "cpu",
            "--checkpoint",
            "/dev/zero",
            "--out",
            png.to_str().unwrap(),
        ],
        &["/dev/zero", "not a regular file"],
    );
    assert_refused(
        &[
            "eval",
            "--device",
            "cpu",
            "--samples",
            "/dev/zero",
            "--classifier",
            dir.path().join("c.safetensors").to_str().unwrap(),
        ],
        &["/dev/zero", "not a regular file"],
    );
    let run = dir.path().join("run");
    std::fs::create_dir(&run).unwrap();
    std::os::unix::fs::symlink("/dev/zero", run.join("loss.csv")).unwrap();
    assert_refused(
        &["plot", "--run", run.to_str().unwrap()],
        &["loss.csv", "not a regular file"],
    );
}

#[test]
fn a_checkpoint_longer_than_its_header_says_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let padded = dir.path().join("padded.safetensors");
    std::fs::copy(checkpoint(), &padded).unwrap();
    // A sparse gigabyte past the end: refused from the header and the file's length.
    let file = std::fs::OpenOptions::new()
        .write(true)
        .open(&padded)
        .unwrap();
    file.set_len(file.metadata().unwrap().len() + (1 << 30))
        .unwrap();
    assert_refused(
        &[
            "sample",
            "--device",
            "cpu",
            "--checkpoint",
            padded.to_str().unwrap(),
            "--out",
            dir.path().join("x.png").to_str().unwrap(),
        ],
        &["padded.safetensors", "bytes"],
    );
}
