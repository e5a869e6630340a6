//! Writes respect what is at the output path: devices, FIFOs, sockets and directories are
//! refused and left alone; a symlink is followed and its target replaced atomically, the
//! link itself kept.

mod common;

use common::{assert_clean_error, stderr};

use std::os::unix::fs::FileTypeExt;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::sync::OnceLock;

use common::run_cli;

/// A generator checkpoint, trained once for all the tests here.
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

fn sample_to(out: &Path) -> Output {
    run_cli(&[
        "sample",
        "--device",
        "cpu",
        "--checkpoint",
        checkpoint().to_str().unwrap(),
        "--count",
        "4",
        "--out",
        out.to_str().unwrap(),
    ])
}

fn is_png(path: &Path) -> bool {
    std::fs::read(path).unwrap().starts_with(b"\x89PNG")
}

#[test]
fn dev_null_as_out_is_refused_and_left_alone() {
    let out = sample_to(Path::new("/dev/null"));
    assert_clean_error(&out, &["/dev/null", "not a regular file"]);
    let meta = std::fs::symlink_metadata("/dev/null").unwrap();
    assert!(meta.file_type().is_char_device(), "/dev/null was replaced");
}

#[test]
fn a_fifo_a_device_and_a_directory_are_refused_and_left_alone() {
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("fifo.png");
    assert!(
        std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap()
            .success()
    );
    assert_clean_error(&sample_to(&fifo), &["fifo.png", "not a regular file"]);
    assert!(
        std::fs::symlink_metadata(&fifo)
            .unwrap()
            .file_type()
            .is_fifo()
    );

    // A second /dev/null where creating device nodes is allowed (as root).
    let null = dir.path().join("null.png");
    let made = std::process::Command::new("mknod")
        .arg(&null)
        .args(["c", "1", "3"])
        .status()
        .is_ok_and(|s| s.success());
    if made {
        assert_clean_error(&sample_to(&null), &["null.png", "not a regular file"]);
        assert!(
            std::fs::symlink_metadata(&null)
                .unwrap()
                .file_type()
                .is_char_device()
        );
    }

    let folder = dir.path().join("folder.idx");
    std::fs::create_dir(&folder).unwrap();
    assert_clean_error(&sample_to(&folder), &["folder.idx", "directory"]);
    assert!(folder.is_dir());
}

#[test]
fn a_symlink_is_followed_and_its_target_replaced() {
    let dir = tempfile::tempdir().unwrap();
    let target_dir = dir.path().join("elsewhere");
    std::fs::create_dir(&target_dir).unwrap();
    let target = target_dir.join("digits.png");
    std::fs::write(&target, b"old").unwrap();
    let link = dir.path().join("link.png");
    std::os::unix::fs::symlink("elsewhere/digits.png", &link).unwrap();

    let out = sample_to(&link);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        std::fs::symlink_metadata(&link)
            .unwrap()
            .file_type()
            .is_symlink()
    );
    assert_eq!(
        std::fs::read_link(&link).unwrap(),
        Path::new("elsewhere/digits.png")
    );
    assert!(is_png(&target), "the link's target holds the new image");
    // The temporary file was made beside the target, and is gone.
    let names: Vec<_> = std::fs::read_dir(&target_dir).unwrap().collect();
    assert_eq!(names.len(), 1, "{names:?}");
}

#[test]
fn a_symlink_to_a_fifo_or_to_nothing_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("fifo");
    assert!(
        std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap()
            .success()
    );
    let link = dir.path().join("to-fifo.png");
    std::os::unix::fs::symlink(&fifo, &link).unwrap();
    assert_clean_error(&sample_to(&link), &["to-fifo.png", "not a regular file"]);
    assert!(
        std::fs::symlink_metadata(&fifo)
            .unwrap()
            .file_type()
            .is_fifo()
    );

    let dangling = dir.path().join("dangling.png");
    std::os::unix::fs::symlink(dir.path().join("missing/x.png"), &dangling).unwrap();
    assert_clean_error(&sample_to(&dangling), &["dangling.png", "symlink"]);
    assert!(
        std::fs::symlink_metadata(&dangling)
            .unwrap()
            .file_type()
            .is_symlink()
    );
}
