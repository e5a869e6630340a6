//! Where a run keeps its files, and the folder's ownership: one trainer at a time holds
//! its lock, and a run's files are only ever moved aside, never replaced by a new run.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// The lock file in a run folder. It holds the pid of the trainer that last used the
/// folder; the lock itself is an OS advisory lock (flock), which the OS releases when its
/// process ends however it ends, so a killed trainer never leaves the folder locked.
pub const LOCK_FILE: &str = "train.lock";
/// The prefix of the folder `--force` moves an old run's files into.
pub const REPLACED_PREFIX: &str = "replaced-";

pub struct RunDir {
    pub root: PathBuf,
}

/// The lock on a run folder, held while this value lives.
#[derive(Debug)]
pub struct RunLock {
    _file: File,
}

impl RunDir {
    pub fn checkpoint(&self) -> PathBuf {
        self.root.join("checkpoint.safetensors")
    }
    pub fn config(&self) -> PathBuf {
        self.root.join("config.json")
    }
    pub fn losses(&self) -> PathBuf {
        self.root.join("loss.csv")
    }
    pub fn samples(&self) -> PathBuf {
        self.root.join("samples")
    }
    pub fn sample(&self, iteration: u64) -> PathBuf {
        self.samples().join(format!("iter_{iteration:06}.png"))
    }
    /// The same grid drawn by the moving average of the generator.
    pub fn ema_sample(&self, iteration: u64) -> PathBuf {
        self.samples().join(format!("iter_{iteration:06}_ema.png"))
    }

    fn error(&self, problem: String) -> Error {
        Error::RunFolder {
            dir: self.root.clone(),
            problem,
        }
    }

    /// Takes the folder's lock (the folder must exist), or says which process holds it.
    pub fn lock(&self) -> Result<RunLock> {
        let path = self.root.join(LOCK_FILE);
        let io_error = |e| Error::io(&path, e);
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(io_error)?;
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                let mut holder = String::new();
                let _ = file.read_to_string(&mut holder);
                let holder = match holder.trim() {
                    "" => "another process".to_string(),
                    pid => format!("process {pid}"),
                };
                return Err(self.error(format!(
                    "in use by {holder}, a trainer that is still running (it holds {LOCK_FILE}); \
                     wait for it to finish or stop it, or use another folder"
                )));
            }
            Err(TryLockError::Error(e)) => return Err(io_error(e)),
        }
        file.set_len(0)
            .and_then(|()| file.seek(SeekFrom::Start(0)))
            .and_then(|_| writeln!(file, "{}", std::process::id()))
            .map_err(io_error)?;
        Ok(RunLock { _file: file })
    }

    /// The files of a run that the folder holds: config.json, loss.csv, the checkpoint,
    /// the charts `plot` draws, and samples/ when it is not empty.
    pub fn run_files(&self) -> Vec<PathBuf> {
        let mut files: Vec<PathBuf> = [
            self.config(),
            self.losses(),
            self.checkpoint(),
            self.root.join("fid.svg"),
            self.root.join("losses.svg"),
        ]
        .into_iter()
        .filter(|p| p.symlink_metadata().is_ok())
        .collect();
        if std::fs::read_dir(self.samples()).is_ok_and(|mut d| d.next().is_some()) {
            files.push(self.samples());
        }
        files
    }

    /// Refuses to start a new run over the run this folder holds.
    pub fn check_empty(&self) -> Result<()> {
        let files = self.run_files();
        if files.is_empty() {
            return Ok(());
        }
        let names: Vec<String> = files.iter().map(|f| file_name(f)).collect();
        Err(self.error(format!(
            "already holds a run ({}); continue it with `--resume {}`, or choose another \
             --out (--force starts over here, moving the old files into a {REPLACED_PREFIX}* \
             folder)",
            names.join(", "),
            self.root.display()
        )))
    }

    /// Moves the run's files (see [`RunDir::run_files`]) into a new folder
    /// `replaced-<date>_<time>` inside this one and returns it, or `None` when there were
    /// none. Nothing is deleted.
    pub fn move_aside(&self) -> Result<Option<PathBuf>> {
        let files = self.run_files();
        if files.is_empty() {
            return Ok(None);
        }
        let stamp = chrono::Local::now().format("%Y-%m-%d_%H-%M-%S").to_string();
        let mut aside = self.root.join(format!("{REPLACED_PREFIX}{stamp}"));
        let mut n = 1;
        while aside.symlink_metadata().is_ok() {
            n += 1;
            aside = self.root.join(format!("{REPLACED_PREFIX}{stamp}-{n}"));
        }
        std::fs::create_dir(&aside).map_err(|e| Error::io(&aside, e))?;
        for file in files {
            let to = aside.join(file_name(&file));
            std::fs::rename(&file, &to).map_err(|e| Error::io(&file, e))?;
        }
        Ok(Some(aside))
    }
}

fn file_name(path: &Path) -> String {
    path.file_name()
        .unwrap_or_default()
        .to_string_lossy()
        .into_owned()
}
