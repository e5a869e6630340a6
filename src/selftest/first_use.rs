//! `train`'s protection: before the GPU executor first trains on an adapter + driver +
//! gan-gpu version (+ kernel settings), the quick selftest runs and its verdict is kept in
//! the cache folder (beside `eval`'s classifier). A failing verdict stops training with
//! an error naming the failing kernels; `--skip-selftest` goes on anyway. Software
//! adapters without a kept verdict are skipped with a line saying so, unless
//! `--selftest` asks.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::gpu::GpuContext;
use crate::io::atomic::write_atomically;
use crate::selftest::Report;

/// What to do when the GPU executor is created for training.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum FirstUse {
    /// Run the quick selftest once per adapter, driver and version; skip software adapters.
    #[default]
    Auto,
    /// Run it now, whatever is kept and whatever the adapter.
    Always,
    /// Never run it, and ignore a failing verdict.
    Skip,
}

/// The process's policy: set once by the command line, `Auto` for library callers.
static POLICY: AtomicU8 = AtomicU8::new(0);

pub fn set_policy(policy: FirstUse) {
    let code = match policy {
        FirstUse::Auto => 0,
        FirstUse::Always => 1,
        FirstUse::Skip => 2,
    };
    POLICY.store(code, Ordering::Relaxed);
}

fn policy() -> FirstUse {
    match POLICY.load(Ordering::Relaxed) {
        1 => FirstUse::Always,
        2 => FirstUse::Skip,
        _ => FirstUse::Auto,
    }
}

/// The flags of the commands that train on the GPU executor.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct FirstUseArgs {
    /// Train without the first-use selftest of the adapter's kernels, even after it failed
    #[arg(long, conflicts_with = "selftest")]
    pub skip_selftest: bool,
    /// Run the quick selftest before training, also on a software adapter or when a
    /// verdict is kept
    #[arg(long)]
    pub selftest: bool,
}

impl FirstUseArgs {
    /// Makes these flags the process's policy.
    pub fn apply(&self) {
        set_policy(match (self.skip_selftest, self.selftest) {
            (true, _) => FirstUse::Skip,
            (false, true) => FirstUse::Always,
            (false, false) => FirstUse::Auto,
        });
    }
}

/// Where verdicts are kept: `$XDG_CACHE_HOME/gan-gpu/selftest-verdicts.json` (or the
/// platform's cache folder), beside the classifier.
pub fn verdicts_path() -> PathBuf {
    dirs::cache_dir()
        .unwrap_or_else(std::env::temp_dir)
        .join("gan-gpu")
        .join("selftest-verdicts.json")
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct Verdicts {
    /// By [`key`].
    verdicts: BTreeMap<String, Verdict>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Verdict {
    passed: bool,
    failing: Vec<String>,
    checks: usize,
    quick: bool,
    date: String,
}

/// What a verdict holds for: the adapter, its driver, the kernel settings and this build.
fn key(ctx: &GpuContext) -> String {
    let i = &ctx.info;
    format!(
        "{} | {:?} | vendor {:#06x} device {:#06x} | driver {} {} | kernels {} | gan-gpu {}",
        i.name,
        i.backend,
        i.vendor,
        i.device,
        i.driver,
        i.driver_info,
        ctx.kernel_settings().name(),
        env!("CARGO_PKG_VERSION")
    )
}

/// The kept verdicts; a missing or unreadable file holds none.
fn load() -> Verdicts {
    std::fs::read(verdicts_path())
        .ok()
        .and_then(|bytes| serde_json::from_slice(&bytes).ok())
        .unwrap_or_default()
}

/// Keeps `report`'s verdict for `ctx`'s adapter. Best effort: a cache folder that cannot
/// be written only costs a rerun next time, so it is reported, not fatal.
pub fn remember(ctx: &GpuContext, report: &Report) {
    let mut all = load();
    all.verdicts.insert(
        key(ctx),
        Verdict {
            passed: report.passed,
            failing: report.failing().iter().map(|c| c.name()).collect(),
            checks: report.checks.len(),
            quick: report.quick,
            date: chrono::Local::now().to_rfc3339(),
        },
    );
    let path = verdicts_path();
    let stored = serde_json::to_vec_pretty(&all)
        .map_err(|e| Error::InvalidArgument(e.to_string()))
        .and_then(|bytes| write_atomically(&path, &[&bytes]));
    if let Err(e) = stored {
        eprintln!(
            "selftest: could not keep the verdict in {}: {e}",
            path.display()
        );
    }
}

fn refuse(ctx: &GpuContext, failing: Vec<String>, kept: Option<&str>) -> Error {
    let again = match kept {
        Some(date) => {
            format!(" (verdict kept from {date}; `gan-gpu selftest` or `--selftest` checks again)")
        }
        None => String::new(),
    };
    Error::Selftest {
        adapter: ctx.describe(),
        failing,
        advice: format!(
            "{again}. Training here would give wrong results. Please report it with the \
             output of `gan-gpu selftest --json` and `gan-gpu adapters --json`; \
             `--skip-selftest` trains anyway, `--device cpu` trains on the CPU executor"
        ),
    }
}

/// The verdict keys already settled in this process (a classifier trains in two
/// phases, each creating an executor): checked or skipped once is enough.
static SETTLED: Mutex<BTreeSet<String>> = Mutex::new(BTreeSet::new());

/// Called where the GPU executor is created for training: runs the quick selftest on
/// first use of this adapter (as [`set_policy`] says) and refuses a failing one.
pub fn protect(ctx: &Arc<GpuContext>) -> Result<()> {
    let key = key(ctx);
    if SETTLED.lock().unwrap().contains(&key) {
        return Ok(());
    }
    settle(ctx, &key)?;
    SETTLED.lock().unwrap().insert(key);
    Ok(())
}

fn settle(ctx: &Arc<GpuContext>, key: &str) -> Result<()> {
    let name = &ctx.info.name;
    let policy = policy();
    if policy == FirstUse::Skip {
        eprintln!("selftest: skipped (--skip-selftest); the kernels on {name} are unchecked");
        return Ok(());
    }
    // A kept verdict holds on any adapter; skipping software adapters only saves time.
    if policy == FirstUse::Auto {
        if let Some(v) = load().verdicts.get(key) {
            return match v.passed {
                true => Ok(()),
                false => Err(refuse(ctx, v.failing.clone(), Some(&v.date))),
            };
        }
        if ctx.is_software() {
            eprintln!(
                "selftest: skipped on {name}, a software adapter (CI checks its kernels under \
                 both kernel settings); --selftest runs it here"
            );
            return Ok(());
        }
    }
    eprintln!(
        "selftest: first use of {} with gan-gpu {}: checking every kernel against the CPU \
         reference (the quick selftest)...",
        ctx.describe(),
        env!("CARGO_PKG_VERSION")
    );
    let report = super::run(ctx, true, &mut |check| {
        if !check.passed {
            eprintln!("{}", check.render());
        }
    })?;
    remember(ctx, &report);
    eprintln!(
        "{}; verdict kept in {}",
        report.summary(),
        verdicts_path().display()
    );
    if report.passed {
        Ok(())
    } else {
        let failing = report.failing().iter().map(|c| c.name()).collect();
        Err(refuse(ctx, failing, None))
    }
}
