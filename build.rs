//! Records what `/version` reports about the build: the compiler, the git
//! commit and when the build ran (dockerd reports its Go version, commit and
//! build time the same way).

use std::path::Path;
use std::process::Command;
use std::time::{SystemTime, UNIX_EPOCH};

fn main() {
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    // "rustc 1.95.0 (59807616e 2026-04-14)" -> "rustc 1.95.0"
    let rustc_version = output(&rustc, &["--version"])
        .map(|v| v.split_whitespace().take(2).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|| "rustc (unknown version)".into());
    let commit =
        output("git", &["rev-parse", "--short=7", "HEAD"]).unwrap_or_else(|| "unknown".into());
    let built = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);

    println!("cargo:rustc-env=BERTH_RUSTC_VERSION={rustc_version}");
    println!("cargo:rustc-env=BERTH_GIT_COMMIT={commit}");
    println!("cargo:rustc-env=BERTH_BUILD_UNIX_TIME={built}");

    println!("cargo:rerun-if-changed=build.rs");
    // Rebuild the commit id when HEAD moves. Only existing paths are named:
    // cargo reruns on every build for a path that does not exist.
    let git_paths = [
        output("git", &["rev-parse", "--git-path", "HEAD"]),
        output("git", &["symbolic-ref", "-q", "HEAD"])
            .and_then(|r| output("git", &["rev-parse", "--git-path", &r])),
        output("git", &["rev-parse", "--git-path", "packed-refs"]),
    ];
    for path in git_paths.into_iter().flatten() {
        if Path::new(&path).exists() {
            println!("cargo:rerun-if-changed={path}");
        }
    }
}

fn output(program: &str, args: &[&str]) -> Option<String> {
    let out = Command::new(program).args(args).output().ok()?;
    if !out.status.success() {
        return None;
    }
    let text = String::from_utf8(out.stdout).ok()?.trim().to_string();
    (!text.is_empty()).then_some(text)
}
