//! Stopping a run from outside: SIGINT (Ctrl-C) and SIGTERM (what `kill`, systemd, Docker
//! and batch schedulers send) both ask training to stop after the current step with a
//! checkpoint; a second signal exits at once (the last checkpoint stays loadable: it is
//! replaced atomically). A run stopped so exits with 128 + the signal's number, 130 or 143,
//! as a process the signal killed would, so scripts can tell it from a finished run.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use signal_hook::consts::{SIGINT, SIGTERM};
use signal_hook::flag;

use crate::error::{Error, Result};

pub struct StopSignals {
    received: Arc<AtomicUsize>,
}

impl StopSignals {
    /// Installs the handlers for this process; they set `stop`.
    pub fn install(stop: Arc<AtomicBool>) -> Result<Self> {
        let received = Arc::new(AtomicUsize::new(0));
        let failed = |e: std::io::Error| {
            Error::InvalidArgument(format!("cannot install the signal handlers: {e}"))
        };
        for signal in [SIGINT, SIGTERM] {
            // Registered first, so it sees `stop` as it was before this signal arrived:
            // only a second signal exits here.
            flag::register_conditional_shutdown(signal, 128 + signal, Arc::clone(&stop))
                .map_err(failed)?;
            flag::register_usize(signal, Arc::clone(&received), signal as usize).map_err(failed)?;
            flag::register(signal, Arc::clone(&stop)).map_err(failed)?;
        }
        Ok(StopSignals { received })
    }

    /// The exit status for a run these signals stopped: 128 + the signal's number.
    pub fn exit_status(&self) -> Option<i32> {
        match self.received.load(Ordering::SeqCst) {
            0 => None,
            signal => Some(128 + signal as i32),
        }
    }

    /// The signal's name, for messages.
    pub fn name(&self) -> &'static str {
        match self.received.load(Ordering::SeqCst) as i32 {
            SIGINT => "SIGINT (Ctrl-C)",
            SIGTERM => "SIGTERM",
            _ => "no signal",
        }
    }
}
