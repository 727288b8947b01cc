//! The thread that enters namespaces for the rest of the process.
//!
//! Entering a namespace (`setns`, `unshare`) changes the calling thread for
//! good, so it must happen on a thread of its own. Starting a thread for each
//! entry costs ~3 ms under load on these VMs (the new stack's mappings need
//! TLB shootdowns on the other vCPUs), while `setns` itself costs ~5 µs. So
//! one thread stays alive, runs short jobs that may enter any namespace, and
//! returns to the process's namespace after each one, so that it never keeps
//! a deleted namespace alive.

use std::fs::File;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::mpsc::{self, Sender};
use std::sync::Mutex;

use nix::sched::{setns, CloneFlags};
use tracing::error;

use super::error::OslError;

type Job = Box<dyn FnOnce() + Send>;

/// The worker's queue; replaced if the worker ever stops.
static WORKER: Mutex<Option<Sender<Job>>> = Mutex::new(None);

/// Where the worker rests: the main thread's namespace, i.e. the daemon's.
const HOME_NETNS: &str = "/proc/self/ns/net";

/// Runs `f` on the worker and waits for its result. `f` may enter any
/// namespace; it must be short, as jobs run one at a time.
pub(crate) fn run_blocking<T, F>(f: F) -> Result<T, OslError>
where
    T: Send + 'static,
    F: FnOnce() -> Result<T, OslError> + Send + 'static,
{
    let (tx, rx) = mpsc::sync_channel(1);
    submit(Box::new(move || {
        let _ = tx.send(f());
    }))?;
    rx.recv().map_err(|_| dropped())?
}

/// Like [`run_blocking`], without blocking the async caller's thread.
pub(crate) async fn run_async<T, F>(f: F) -> Result<T, OslError>
where
    T: Send + 'static,
    F: FnOnce() -> Result<T, OslError> + Send + 'static,
{
    let (tx, rx) = tokio::sync::oneshot::channel();
    submit(Box::new(move || {
        let _ = tx.send(f());
    }))?;
    rx.await.map_err(|_| dropped())?
}

fn dropped() -> OslError {
    OslError::Runtime("the namespace worker dropped a job (it panicked)".into())
}

fn submit(job: Job) -> Result<(), OslError> {
    let mut worker = WORKER.lock().unwrap_or_else(|e| e.into_inner());
    let job = match worker.as_ref() {
        Some(tx) => match tx.send(job) {
            Ok(()) => return Ok(()),
            // The worker stopped; a new one takes the job back.
            Err(mpsc::SendError(job)) => job,
        },
        None => job,
    };
    let tx = start()?;
    tx.send(job)
        .map_err(|_| OslError::Runtime("the namespace worker stopped at once".into()))?;
    *worker = Some(tx);
    Ok(())
}

fn start() -> Result<Sender<Job>, OslError> {
    let home = File::open(HOME_NETNS).map_err(|e| OslError::netns("open", HOME_NETNS, e))?;
    let (tx, rx) = mpsc::channel::<Job>();
    std::thread::Builder::new()
        .name("berth-netns".into())
        .spawn(move || {
            for job in rx {
                // A panicking job drops its result sender: its caller gets an error.
                let _ = catch_unwind(AssertUnwindSafe(job));
                if let Err(e) = setns(&home, CloneFlags::CLONE_NEWNET) {
                    // Stop rather than run the next job in a foreign namespace;
                    // the next submit starts a fresh worker.
                    error!(error = %e, "namespace worker cannot return home; stopping");
                    return;
                }
            }
        })
        .map_err(|e| OslError::Runtime(format!("spawn namespace worker: {e}")))?;
    Ok(tx)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::osl::netns::current_netns_label;

    #[test]
    fn worker_returns_home_and_survives_panicking_jobs() {
        let home = std::fs::read_link(HOME_NETNS)
            .unwrap()
            .display()
            .to_string();
        let err = run_blocking::<(), _>(|| panic!("job fails")).unwrap_err();
        assert!(matches!(err, OslError::Runtime(_)));
        let seen = run_blocking(|| {
            nix::sched::unshare(CloneFlags::CLONE_NEWNET).unwrap();
            Ok(current_netns_label())
        })
        .unwrap();
        assert_ne!(seen, home);
        assert_eq!(run_blocking(|| Ok(current_netns_label())).unwrap(), home);
    }
}
