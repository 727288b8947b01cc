//! Command-line flags (after `cargo bench --bench compare --`).

use std::path::PathBuf;

use clap::{Parser, ValueEnum};

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Only {
    Dockerd,
    Berthd,
}

/// Runs the same Engine API workload against dockerd and berthd, each in a
/// network namespace of its own, and prints median/p95 and dockerd/berthd.
#[derive(Parser, Debug)]
#[command(name = "compare")]
pub struct Args {
    /// Run one daemon only.
    #[arg(long, value_enum)]
    pub only: Option<Only>,
    /// The berthd binary (default: the one cargo built with this bench).
    #[arg(long, default_value = env!("CARGO_BIN_EXE_berthd"))]
    pub berthd: PathBuf,
    #[arg(long, default_value = "dockerd")]
    pub dockerd: PathBuf,
    /// The containerd started for dockerd.
    #[arg(long, default_value = "containerd")]
    pub containerd: PathBuf,
    /// A static busybox for the image's rootfs.
    #[arg(long, default_value = "/bin/busybox")]
    pub busybox: PathBuf,
    /// Where the JSON results go (logs go to a logs/ folder beside it).
    #[arg(long, default_value = concat!(env!("CARGO_MANIFEST_DIR"), "/target/bench/compare.json"))]
    pub json: PathBuf,
    /// Daemon launches measured for the cold start.
    #[arg(long, default_value_t = 5)]
    pub cold_runs: usize,
    /// Networks created, listed and deleted in the network step.
    #[arg(long, default_value_t = 50)]
    pub networks: usize,
    /// Containers in the container and published-port steps (0 skips both,
    /// and the connect step with them).
    #[arg(long, default_value_t = 20)]
    pub containers: usize,
    /// Connect/disconnect cycles of one running container (0 skips them).
    #[arg(long, default_value_t = 20)]
    pub connects: usize,
    /// Networks in the scale step (below 10 skips it).
    #[arg(long, default_value_t = 500)]
    pub scale: usize,
    /// First host port published (one per container, upwards).
    #[arg(long, default_value_t = 18080)]
    pub port_base: u16,
    /// Passed by `cargo bench`; without it (under `cargo test`) only the
    /// harness's self-checks run.
    #[arg(long, hide = true)]
    pub bench: bool,
}

impl Args {
    pub fn runs(&self, which: Only) -> bool {
        self.only.is_none_or(|o| o == which)
    }
}
