//! A run folder belongs to one run: existing runs are never replaced by accident, a live
//! trainer's folder is locked, signals stop a run with a checkpoint and a telling exit
//! status, and a resumed run continues exactly, from where its checkpoint says, with no
//! row of loss.csv twice.

mod common;

use common::{assert_clean_error, stderr};

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::Duration;

use common::{
    loss_rows_without_seconds, run_cli, send_signal, spawn_cli, wait_for, wait_with_limit,
};
use gan_gpu::io::checkpoint::load_checkpoint;

const PATIENCE: Duration = Duration::from_secs(120);

/// `train` on the CPU with a tiny batch, every row logged and no sample grids, then `extra`.
fn train_args<'a>(run: &'a Path, extra: &[&'a str]) -> Vec<&'a str> {
    let mut args = vec![
        "train",
        "--device",
        "cpu",
        "--batch-size",
        "2",
        "--log-every",
        "1",
        "--sample-every",
        "1000000",
        "--out",
        run.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    args
}

fn train_ok(run: &Path, extra: &[&str]) -> Output {
    let out = run_cli(&train_args(run, extra));
    assert!(out.status.success(), "{}", stderr(&out));
    out
}

/// Every file under `dir` by relative path, with its bytes; the lock file, which names
/// whichever process last held the folder, is left out.
fn snapshot(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut files = BTreeMap::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(d) = pending.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                pending.push(path);
            } else if path.file_name().unwrap() != "train.lock" {
                let bytes = std::fs::read(&path).unwrap();
                files.insert(path.strip_prefix(dir).unwrap().to_path_buf(), bytes);
            }
        }
    }
    files
}

fn data_rows(run: &Path) -> usize {
    std::fs::read_to_string(run.join("loss.csv"))
        .map(|t| t.lines().count().saturating_sub(1))
        .unwrap_or(0)
}

fn checkpoint_iteration(run: &Path) -> u64 {
    load_checkpoint(&run.join("checkpoint.safetensors"))
        .unwrap()
        .metadata["iteration"]
        .parse()
        .unwrap()
}

/// The iteration column of loss.csv.
fn logged_iterations(run: &Path) -> Vec<u64> {
    std::fs::read_to_string(run.join("loss.csv"))
        .unwrap()
        .lines()
        .skip(1)
        .map(|l| l.split(',').next().unwrap().parse().unwrap())
        .collect()
}

fn assert_same_tensors(a: &Path, b: &Path) {
    let a = load_checkpoint(&a.join("checkpoint.safetensors")).unwrap();
    let b = load_checkpoint(&b.join("checkpoint.safetensors")).unwrap();
    assert_eq!(a.tensors.len(), b.tensors.len());
    for t in &a.tensors {
        assert_eq!(
            Some(&t.data),
            b.tensor(&t.name).map(|u| &u.data),
            "{}",
            t.name
        );
    }
}

#[test]
fn an_existing_run_is_refused_and_left_unchanged() {
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("run");
    train_ok(&run, &["--iterations", "3"]);
    let before = snapshot(&run);
    assert!(before.contains_key(Path::new("samples/iter_000003.png")));

    let out = run_cli(&train_args(&run, &["--iterations", "2", "--seed", "9"]));
    assert_clean_error(&out, &[run.to_str().unwrap(), "--resume", "--force"]);
    assert_eq!(snapshot(&run), before, "the refused run changed the folder");
}

#[test]
fn force_moves_the_old_run_aside_and_deletes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("run");
    train_ok(&run, &["--iterations", "3"]);
    let before = snapshot(&run);

    let out = train_ok(&run, &["--iterations", "2", "--seed", "9", "--force"]);
    let moved: Vec<PathBuf> = std::fs::read_dir(&run)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            p.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("replaced-")
        })
        .collect();
    assert_eq!(moved.len(), 1, "{moved:?}");
    assert_eq!(
        snapshot(&moved[0]),
        before,
        "the old run's files, byte for byte"
    );
    assert!(
        String::from_utf8_lossy(&out.stderr).contains(moved[0].to_str().unwrap()),
        "the trainer says where the old files went:\n{}",
        stderr(&out)
    );
    assert_eq!(checkpoint_iteration(&run), 2);
    assert_eq!(logged_iterations(&run), [1, 2]);
}

#[test]
fn a_second_trainer_on_a_live_run_folder_is_refused_naming_the_first() {
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("run");
    let mut first = spawn_cli(
        &train_args(
            &run,
            &["--iterations", "1000000", "--checkpoint-every", "1000000"],
        ),
        &dir.path().join("first.log"),
    );
    wait_for("the first trainer's rows", PATIENCE, || {
        data_rows(&run) >= 2
    });
    let pid = first.id().to_string();
    for extra in [&["--force"][..], &["--seed", "3", "--force"]] {
        let out = run_cli(&train_args(&run, extra));
        assert_clean_error(&out, &[run.to_str().unwrap(), &pid]);
    }
    let out = run_cli(&[
        "train",
        "--device",
        "cpu",
        "--resume",
        run.to_str().unwrap(),
    ]);
    assert_clean_error(&out, &[&pid]);

    send_signal(first.id(), "TERM");
    wait_with_limit(&mut first, PATIENCE);
    // One writer: the first trainer's rows, in order, none twice.
    let logged = logged_iterations(&run);
    assert!(logged.windows(2).all(|w| w[1] == w[0] + 1), "{logged:?}");
}

#[test]
fn sigterm_writes_a_checkpoint_exits_143_and_the_resumed_run_is_identical() {
    let dir = tempfile::tempdir().unwrap();
    let split = dir.path().join("split");
    let mut child = spawn_cli(
        &train_args(
            &split,
            &["--iterations", "100000", "--checkpoint-every", "100000"],
        ),
        &dir.path().join("split.log"),
    );
    wait_for("some rows", PATIENCE, || data_rows(&split) >= 5);
    send_signal(child.id(), "TERM");
    let status = wait_with_limit(&mut child, PATIENCE);
    let log = std::fs::read_to_string(dir.path().join("split.log")).unwrap();
    assert_eq!(status.code(), Some(143), "{status:?}\n{log}");
    let stopped = checkpoint_iteration(&split);
    assert!(stopped >= 5, "stopped at {stopped}");
    assert_eq!(logged_iterations(&split), (1..=stopped).collect::<Vec<_>>());

    let target = stopped + 3;
    let resumed = run_cli(&[
        "train",
        "--device",
        "cpu",
        "--resume",
        split.to_str().unwrap(),
        "--iterations",
        &target.to_string(),
    ]);
    assert!(resumed.status.success(), "{}", stderr(&resumed));
    let whole = dir.path().join("whole");
    train_ok(&whole, &["--iterations", &target.to_string()]);
    assert_eq!(
        loss_rows_without_seconds(&split),
        loss_rows_without_seconds(&whole)
    );
    assert_same_tensors(&split, &whole);
    // The resumed rows' clock goes on from the stopped run's.
    let (header, columns) = gan_gpu::train::log::read_columns(&split.join("loss.csv")).unwrap();
    let seconds = &columns[header.iter().position(|h| h == "seconds").unwrap()];
    assert!(seconds.windows(2).all(|w| w[1] >= w[0]), "{seconds:?}");
}

#[test]
fn ctrl_c_exits_130_and_resume_without_iterations_runs_to_the_runs_own_target() {
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("run");
    let mut child = spawn_cli(
        &train_args(&run, &["--iterations", "300", "--checkpoint-every", "1000"]),
        &dir.path().join("run.log"),
    );
    wait_for("some rows", PATIENCE, || data_rows(&run) >= 2);
    send_signal(child.id(), "INT");
    let status = wait_with_limit(&mut child, PATIENCE);
    assert_eq!(status.code(), Some(130), "{status:?}");
    let stopped = checkpoint_iteration(&run);
    assert!(stopped < 300, "the signal came too late to test: {stopped}");

    let out = run_cli(&[
        "train",
        "--device",
        "cpu",
        "--resume",
        run.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(checkpoint_iteration(&run), 300);
    assert_eq!(logged_iterations(&run), (1..=300).collect::<Vec<_>>());

    // Finished: resuming again has nothing to do, and says so.
    let out = run_cli(&[
        "train",
        "--device",
        "cpu",
        "--resume",
        run.to_str().unwrap(),
    ]);
    assert_clean_error(&out, &["300", "--iterations"]);
}

#[test]
fn resume_drops_the_rows_logged_after_the_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("run");
    // Kill -9 while loss.csv is ahead of the last checkpoint (every 5 iterations).
    let mut child = spawn_cli(
        &train_args(
            &run,
            &["--iterations", "1000000", "--checkpoint-every", "5"],
        ),
        &dir.path().join("run.log"),
    );
    wait_for("rows after a checkpoint", PATIENCE, || {
        let rows = data_rows(&run);
        rows > 5 && rows % 5 >= 2
    });
    child.kill().unwrap();
    child.wait().unwrap();
    let checkpoint = checkpoint_iteration(&run);
    assert!(
        logged_iterations(&run).last().unwrap() > &checkpoint,
        "rows past the checkpoint are what this test is about"
    );

    let target = checkpoint + 4;
    let out = run_cli(&[
        "train",
        "--device",
        "cpu",
        "--resume",
        run.to_str().unwrap(),
        "--iterations",
        &target.to_string(),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(logged_iterations(&run), (1..=target).collect::<Vec<_>>());
}

#[test]
fn kill_9_during_a_checkpoint_write_keeps_the_old_one_and_the_next_start_cleans_up() {
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("run");
    let temporaries = |run: &Path| -> Vec<PathBuf> {
        std::fs::read_dir(run)
            .map(|entries| {
                entries
                    .map(|e| e.unwrap().path())
                    .filter(|p| {
                        let name = p.file_name().unwrap().to_string_lossy();
                        name.starts_with(".checkpoint.safetensors.tmp-")
                    })
                    .collect()
            })
            .unwrap_or_default()
    };
    // A checkpoint every step; kill the trainer the moment a temporary one shows up, until
    // a kill lands while it is still there.
    let mut attempts = 0;
    while temporaries(&run).is_empty() {
        attempts += 1;
        assert!(
            attempts <= 20,
            "never caught a checkpoint write in progress"
        );
        let resume = run.join("checkpoint.safetensors").exists();
        let args: Vec<&str> = if resume {
            vec![
                "train",
                "--device",
                "cpu",
                "--resume",
                run.to_str().unwrap(),
            ]
        } else {
            train_args(
                &run,
                &["--iterations", "1000000", "--checkpoint-every", "1"],
            )
        };
        let mut child = spawn_cli(&args, &dir.path().join("run.log"));
        wait_for("a checkpoint write", PATIENCE, || {
            run.join("checkpoint.safetensors").exists() && !temporaries(&run).is_empty()
        });
        child.kill().unwrap();
        child.wait().unwrap();
    }
    let left = temporaries(&run);
    let checkpoint = checkpoint_iteration(&run);

    let out = run_cli(&[
        "train",
        "--device",
        "cpu",
        "--resume",
        run.to_str().unwrap(),
        "--iterations",
        &(checkpoint + 1).to_string(),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(checkpoint_iteration(&run), checkpoint + 1);
    for temp in left {
        assert!(!temp.exists(), "{} was not cleaned up", temp.display());
    }
}

#[test]
fn flags_that_contradict_the_run_are_errors_naming_them() {
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("run");
    train_ok(&run, &["--iterations", "2"]);
    let resume = |extra: &[&str]| {
        let mut args = vec![
            "train",
            "--device",
            "cpu",
            "--resume",
            run.to_str().unwrap(),
        ];
        args.extend_from_slice(extra);
        run_cli(&args)
    };
    let out = resume(&["--iterations", "4", "--batch-size", "8", "--seed", "3"]);
    assert_clean_error(&out, &["--batch-size 8", "--seed 3", "--resume"]);
    assert_eq!(
        checkpoint_iteration(&run),
        2,
        "a refused resume trains nothing"
    );

    // The same values as the run's, and the settings a run may change, are fine.
    let out = resume(&["--iterations", "4", "--batch-size", "2", "--log-every", "2"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(checkpoint_iteration(&run), 4);
    assert_eq!(logged_iterations(&run), [1, 2, 4]);

    let help = run_cli(&["train", "--help"]);
    let help = String::from_utf8_lossy(&help.stdout);
    assert!(help.contains("may change on --resume"), "{help}");
}

#[test]
fn zero_iterations_is_an_error_that_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("run");
    let out = run_cli(&train_args(&run, &["--iterations", "0"]));
    assert_clean_error(&out, &["--iterations"]);
    assert!(!run.join("checkpoint.safetensors").exists());
    assert!(!run.join("loss.csv").exists());
}

#[test]
fn evaluating_every_zero_iterations_or_on_one_image_is_an_error_that_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("run");
    for (flag, value) in [("--eval-every", "0"), ("--eval-count", "1")] {
        let out = run_cli(&train_args(&run, &["--eval-every", "5", flag, value]));
        // clap's usage error: exit status 2, the flag named.
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(2), "{err}");
        assert!(err.starts_with("error: ") && err.contains(flag), "{err}");
        assert!(!run.exists(), "{flag} {value} created {}", run.display());
    }
}

#[test]
fn a_second_signal_exits_at_once_and_the_last_checkpoint_still_loads() {
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("run");
    let mut child = spawn_cli(
        &train_args(
            &run,
            &["--iterations", "1000000", "--checkpoint-every", "1"],
        ),
        &dir.path().join("run.log"),
    );
    wait_for("a checkpoint", PATIENCE, || {
        run.join("checkpoint.safetensors").exists() && data_rows(&run) >= 3
    });
    send_signal(child.id(), "TERM");
    send_signal(child.id(), "TERM");
    let status = wait_with_limit(&mut child, PATIENCE);
    assert_eq!(status.code(), Some(143), "{status:?}");
    let at = checkpoint_iteration(&run);
    let out = run_cli(&[
        "train",
        "--device",
        "cpu",
        "--resume",
        run.to_str().unwrap(),
        "--iterations",
        &(at + 1).to_string(),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
}
