//! Ctrl-C, SIGTERM and SIGHUP turn into a flag that every loop checks, so the
//! run unwinds through its Drop guards and removes everything it made.

use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::{bail, Result};
use nix::sys::signal::{sigaction, SaFlags, SigAction, SigHandler, SigSet, Signal};

static INTERRUPTED: AtomicBool = AtomicBool::new(false);
static REPORTED: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: nix::libc::c_int) {
    // Only an atomic store: async-signal-safe.
    INTERRUPTED.store(true, Ordering::SeqCst);
}

/// Installs a handler rather than blocking the signals: a blocked mask would
/// be inherited by the daemons we start, which then ignore SIGTERM. A
/// handler is reset to the default by exec.
pub fn install() -> Result<()> {
    let action = SigAction::new(
        SigHandler::Handler(on_signal),
        SaFlags::SA_RESTART,
        SigSet::empty(),
    );
    for sig in [Signal::SIGINT, Signal::SIGTERM, Signal::SIGHUP] {
        // SAFETY: the handler only stores to an atomic.
        unsafe { sigaction(sig, &action) }?;
    }
    Ok(())
}

/// Fails once a stop was asked for (and says so once).
pub fn check() -> Result<()> {
    if interrupted() {
        if !REPORTED.swap(true, Ordering::SeqCst) {
            eprintln!("compare: interrupted: stopping and cleaning up");
        }
        bail!("interrupted");
    }
    Ok(())
}

pub fn interrupted() -> bool {
    INTERRUPTED.load(Ordering::SeqCst)
}
