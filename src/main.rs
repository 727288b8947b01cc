//! The `berthd` binary: parse flags, validate the configuration, run.
//!
//! Every refusal before the daemon runs is one line on stderr and exit
//! status 1, with nothing created on disk or in the network.

use std::process::ExitCode;

use berthd::api::{API_VERSION, BERTH_VERSION, ENGINE_VERSION, GIT_COMMIT};
use berthd::config::{Config, Flags};
use berthd::daemon;
use clap::error::ErrorKind;
use clap::Parser;

fn main() -> ExitCode {
    let flags = match Flags::try_parse() {
        Ok(flags) => flags,
        Err(e) if matches!(e.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion) => {
            let _ = e.print();
            return ExitCode::SUCCESS;
        }
        Err(e) => return fail(first_line(&e.to_string())),
    };
    if flags.version {
        println!(
            "berthd version {BERTH_VERSION}, build {GIT_COMMIT} (Docker Engine API {API_VERSION}, as Docker {ENGINE_VERSION})"
        );
        return ExitCode::SUCCESS;
    }
    let config = match Config::load(&flags) {
        Ok(config) => config,
        Err(e) => return fail(e),
    };
    let logs = daemon::logging::init(config.log_filter());
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => return fail(format!("starting the async runtime: {e}")),
    };
    match runtime.block_on(daemon::run(config, flags, logs)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => fail(e),
    }
}

fn fail(message: impl std::fmt::Display) -> ExitCode {
    eprintln!("berthd: {message}");
    ExitCode::from(1)
}

/// clap's message without its usage lines and hints, and without "error: ".
fn first_line(rendered: &str) -> String {
    let line = rendered.lines().next().unwrap_or(rendered);
    line.strip_prefix("error: ").unwrap_or(line).to_string()
}
