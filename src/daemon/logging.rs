//! Logging to stderr with a level that SIGHUP can change.

use std::io::IsTerminal;

use tracing::level_filters::LevelFilter;
use tracing_subscriber::filter::Targets;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{fmt, reload, Registry};

/// Changes the log level of the running daemon.
pub struct LogHandle(reload::Handle<Targets, Registry>);

/// Installs the global subscriber at `level`.
pub fn init(level: LevelFilter) -> LogHandle {
    let (filter, handle) = reload::Layer::new(targets(level));
    tracing_subscriber::registry()
        .with(filter)
        .with(
            fmt::layer()
                .with_writer(std::io::stderr)
                .with_ansi(std::io::stderr().is_terminal()),
        )
        .init();
    LogHandle(handle)
}

impl LogHandle {
    pub fn set_level(&self, level: LevelFilter) {
        if let Err(e) = self.0.reload(targets(level)) {
            tracing::warn!(error = %e, "changing the log level");
        }
    }
}

/// `level` for berthd's own crates; the protocol libraries underneath log
/// every frame at debug, so they stay at info at most.
fn targets(level: LevelFilter) -> Targets {
    let quiet = level.min(LevelFilter::INFO);
    Targets::new()
        .with_default(level)
        .with_target("h2", quiet)
        .with_target("tower", quiet)
        .with_target("tonic", quiet)
}
