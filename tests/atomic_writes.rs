//! `write_atomically` and `AtomicFile`: what is at the output path is respected, a failed
//! write leaves no trace, and temporary files left by killed writers are cleaned up while
//! those of live writers are not.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use gan_gpu::error::Error;
use gan_gpu::io::atomic::{AtomicFile, remove_stale_temporaries, write_atomically};

fn names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

/// The pid of a process that has exited (and been reaped).
fn dead_pid() -> u32 {
    let mut child = std::process::Command::new("true").spawn().unwrap();
    let pid = child.id();
    child.wait().unwrap();
    pid
}

#[test]
fn replacing_a_file_keeps_its_permissions() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("out.png");
    fs::write(&path, b"old").unwrap();
    fs::set_permissions(&path, fs::Permissions::from_mode(0o640)).unwrap();
    write_atomically(&path, &[b"new"]).unwrap();
    assert_eq!(fs::read(&path).unwrap(), b"new");
    assert_eq!(
        fs::metadata(&path).unwrap().permissions().mode() & 0o777,
        0o640
    );
}

#[test]
fn an_uncommitted_file_leaves_no_trace() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("out.idx");
    fs::write(&path, b"old").unwrap();
    let mut file = AtomicFile::create(&path).unwrap();
    file.write_all(b"half of it").unwrap();
    assert_eq!(
        names(dir.path()).len(),
        2,
        "the temporary file is beside the target"
    );
    drop(file);
    assert_eq!(names(dir.path()), ["out.idx"]);
    assert_eq!(fs::read(&path).unwrap(), b"old");
}

#[test]
fn writing_through_a_symlink_replaces_its_target() {
    let dir = tempfile::tempdir().unwrap();
    fs::create_dir(dir.path().join("real")).unwrap();
    let target = dir.path().join("real/data.bin");
    fs::write(&target, b"old").unwrap();
    let link = dir.path().join("link.bin");
    std::os::unix::fs::symlink(&target, &link).unwrap();
    write_atomically(&link, &[b"new"]).unwrap();
    assert!(
        fs::symlink_metadata(&link)
            .unwrap()
            .file_type()
            .is_symlink()
    );
    assert_eq!(fs::read(&target).unwrap(), b"new");
}

#[test]
fn special_files_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("fifo");
    assert!(
        std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap()
            .success()
    );
    for path in [fifo.as_path(), Path::new("/dev/null"), dir.path()] {
        let err = write_atomically(path, &[b"x"]).unwrap_err();
        assert!(
            matches!(err, Error::NotARegularFile { .. }),
            "{path:?}: {err:?}"
        );
    }
    assert_eq!(names(dir.path()), ["fifo"]);
}

#[test]
fn stale_temporaries_are_removed_and_live_ones_kept() {
    let dir = tempfile::tempdir().unwrap();
    let dead = format!(".checkpoint.safetensors.tmp-{}-0", dead_pid());
    // This process is alive, and so is pid 1.
    let mine = format!(".checkpoint.safetensors.tmp-{}-7", std::process::id());
    let init = ".loss.csv.tmp-1-0".to_string();
    for name in [&dead, &mine, &init, &"notes.tmp-123-4".to_string()] {
        fs::write(dir.path().join(name), b"partial").unwrap();
    }
    let removed = remove_stale_temporaries(dir.path()).unwrap();
    assert_eq!(removed, [dir.path().join(&dead)]);
    let mut left = vec![mine, init, "notes.tmp-123-4".to_string()];
    left.sort();
    assert_eq!(names(dir.path()), left);

    // A write cleans up stale leftovers of its own file.
    let stale = format!(".out.png.tmp-{}-3", dead_pid());
    fs::write(dir.path().join(&stale), b"partial").unwrap();
    write_atomically(&dir.path().join("out.png"), &[b"png"]).unwrap();
    assert!(!dir.path().join(stale).exists());
}
