//! Facts about the host that `/version` and `/info` report, read from /proc,
//! /sys and /etc as dockerd reads them. A fact that cannot be read is
//! reported empty (or false), never invented.

use std::fs;
use std::path::Path;

/// `uname -r`.
pub fn kernel_version() -> String {
    read_trimmed("/proc/sys/kernel/osrelease")
}

/// /etc/os-release's PRETTY_NAME and VERSION_ID.
pub fn os_release() -> (String, String) {
    let text = fs::read_to_string("/etc/os-release")
        .or_else(|_| fs::read_to_string("/usr/lib/os-release"))
        .unwrap_or_default();
    let field = |key: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(key)?.strip_prefix('='))
            .map(|v| v.trim().trim_matches('"').to_string())
            .unwrap_or_default()
    };
    let pretty = field("PRETTY_NAME");
    (
        if pretty.is_empty() {
            "Linux".into()
        } else {
            pretty
        },
        field("VERSION_ID"),
    )
}

/// `uname -m` of the build target (x86_64, aarch64, ...), as /info reports it.
pub fn machine() -> &'static str {
    std::env::consts::ARCH
}

/// Go's name for the architecture, as /version reports it.
pub fn go_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        "powerpc64" => "ppc64le",
        other => other,
    }
}

pub fn hostname() -> String {
    nix::unistd::gethostname()
        .ok()
        .and_then(|h| h.into_string().ok())
        .unwrap_or_default()
}

/// CPUs this process may run on (Go's runtime.NumCPU honours affinity too).
pub fn cpus() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// MemTotal from /proc/meminfo, in bytes.
pub fn mem_total() -> u64 {
    fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|t| {
            t.lines()
                .find_map(|l| l.strip_prefix("MemTotal:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        })
        .map_or(0, |kb| kb * 1024)
}

/// Open file descriptors of this process.
pub fn open_fds() -> usize {
    fs::read_dir("/proc/self/fd").map_or(0, |d| d.count())
}

/// Threads of this process (reported where dockerd reports goroutines).
pub fn threads() -> usize {
    fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|t| {
            t.lines()
                .find_map(|l| l.strip_prefix("Threads:"))
                .and_then(|v| v.trim().parse().ok())
        })
        .unwrap_or(0)
}

/// net.ipv4.ip_forward in the daemon's network namespace.
pub fn ipv4_forwarding() -> bool {
    read_trimmed("/proc/sys/net/ipv4/ip_forward") == "1"
}

/// What the cgroup hierarchy supports, as /info's resource flags.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Cgroups {
    /// "1" or "2".
    pub version: &'static str,
    pub memory: bool,
    pub swap: bool,
    pub cpu_cfs_period: bool,
    pub cpu_cfs_quota: bool,
    pub cpu_shares: bool,
    pub cpuset: bool,
    pub pids: bool,
}

pub fn cgroups() -> Cgroups {
    cgroups_at(Path::new("/sys/fs/cgroup"))
}

fn cgroups_at(root: &Path) -> Cgroups {
    if let Ok(controllers) = fs::read_to_string(root.join("cgroup.controllers")) {
        let has = |c: &str| controllers.split_whitespace().any(|x| x == c);
        return Cgroups {
            version: "2",
            memory: has("memory"),
            // cgroup v2 memory always carries memory.swap.max when swap
            // accounting is on; the root cgroup has no such file, so ask a child.
            swap: has("memory") && any_child_has(root, "memory.swap.max"),
            cpu_cfs_period: has("cpu"),
            cpu_cfs_quota: has("cpu"),
            cpu_shares: has("cpu"),
            cpuset: has("cpuset"),
            pids: has("pids"),
        };
    }
    let exists = |p: &str| root.join(p).exists();
    Cgroups {
        version: "1",
        memory: exists("memory/memory.limit_in_bytes"),
        swap: exists("memory/memory.memsw.limit_in_bytes"),
        cpu_cfs_period: exists("cpu/cpu.cfs_period_us"),
        cpu_cfs_quota: exists("cpu/cpu.cfs_quota_us"),
        cpu_shares: exists("cpu/cpu.shares"),
        cpuset: exists("cpuset/cpuset.cpus"),
        pids: exists("pids"),
    }
}

fn any_child_has(root: &Path, file: &str) -> bool {
    fs::read_dir(root).is_ok_and(|entries| {
        entries
            .flatten()
            .any(|e| e.path().is_dir() && e.path().join(file).exists())
    })
}

/// A proxy variable from the environment with any password masked, as
/// dockerd reports them.
pub fn proxy_env(name: &str) -> String {
    let value = std::env::var(name)
        .or_else(|_| std::env::var(name.to_ascii_lowercase()))
        .unwrap_or_default();
    mask_password(value)
}

fn mask_password(value: String) -> String {
    match value.split_once("://") {
        Some((scheme, rest)) => match rest.split_once('@') {
            Some((userinfo, host)) if userinfo.contains(':') => {
                let user = userinfo.split(':').next().unwrap_or_default();
                format!("{scheme}://{user}:xxxxx@{host}")
            }
            _ => value,
        },
        None => value,
    }
}

fn read_trimmed(path: &str) -> String {
    fs::read_to_string(path)
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_running_host() {
        assert!(!kernel_version().is_empty());
        assert!(mem_total() > 0);
        assert!(cpus() >= 1);
        assert!(open_fds() > 0);
        assert!(threads() >= 1);
    }

    #[test]
    fn cgroup_v2_from_controllers() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(
            dir.path().join("cgroup.controllers"),
            "cpuset cpu memory pids\n",
        )
        .unwrap();
        fs::create_dir(dir.path().join("system.slice")).unwrap();
        fs::write(dir.path().join("system.slice/memory.swap.max"), "max\n").unwrap();
        let c = cgroups_at(dir.path());
        assert_eq!(c.version, "2");
        assert!(c.memory && c.swap && c.cpu_shares && c.cpuset && c.pids);
    }

    #[test]
    fn cgroup_v1_from_hierarchies() {
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir_all(dir.path().join("memory")).unwrap();
        fs::write(dir.path().join("memory/memory.limit_in_bytes"), "").unwrap();
        let c = cgroups_at(dir.path());
        assert_eq!(c.version, "1");
        assert!(c.memory);
        assert!(!c.swap && !c.pids && !c.cpu_shares);
    }

    #[test]
    fn proxy_passwords_are_masked() {
        assert_eq!(
            mask_password("http://user:secret@proxy:3128".into()),
            "http://user:xxxxx@proxy:3128"
        );
        assert_eq!(
            mask_password("http://proxy:3128".into()),
            "http://proxy:3128"
        );
        assert_eq!(mask_password("".into()), "");
    }
}
