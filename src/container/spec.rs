//! The OCI runtime spec of a container, shaped like the one dockerd hands to
//! containerd (moby's `oci.DefaultSpec` plus `daemon/oci_linux.go`).
//!
//! Left out on purpose, for now: seccomp and AppArmor profiles, user-name
//! resolution (the caller passes numeric ids), resource limits.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use netcontroller::error::{ErrorKind, Kind};
use oci_spec::runtime::{
    Capability, LinuxBuilder, LinuxCapabilitiesBuilder, LinuxDeviceCgroup,
    LinuxDeviceCgroupBuilder, LinuxDeviceType, LinuxNamespaceBuilder, LinuxNamespaceType,
    LinuxResourcesBuilder, Mount, MountBuilder, PosixRlimitBuilder, PosixRlimitType,
    ProcessBuilder, RootBuilder, Spec, SpecBuilder, UserBuilder,
};

/// The PATH a container gets when neither the image nor the user sets one
/// (dockerd's `system.DefaultPathEnv`).
pub const DEFAULT_PATH_ENV: &str =
    "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Default parent of containers' cgroups (dockerd uses `/docker`).
pub const CGROUP_PARENT: &str = "/berth";

/// The file-descriptor limit containers get: the daemon's hard limit, as
/// both soft and hard. Under dockerd containers inherit containerd's
/// (systemd's LimitNOFILE); going above our own hard limit would need
/// CAP_SYS_RESOURCE, which a daemon in a restricted environment lacks.
fn nofile_limit() -> u64 {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit only writes the struct we pass.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } == 0 {
        limit.rlim_max
    } else {
        1024
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SpecError {
    #[error("invalid container spec: {0}")]
    Invalid(String),
    #[error("building the OCI spec: {0}")]
    Build(#[from] oci_spec::OciSpecError),
}

impl Kind for SpecError {
    fn kind(&self) -> ErrorKind {
        match self {
            SpecError::Invalid(_) => ErrorKind::InvalidArgument,
            SpecError::Build(_) => ErrorKind::System,
        }
    }
}

/// A bind mount from the host into the container (`-v /host:/ctr[:ro]`, and
/// the daemon's /etc/hosts, /etc/resolv.conf, /etc/hostname).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BindMount {
    pub source: PathBuf,
    pub destination: PathBuf,
    pub read_only: bool,
}

/// Numeric identity the container's process runs as.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UserIds {
    pub uid: u32,
    pub gid: u32,
    pub additional_gids: Vec<u32>,
}

/// Everything the daemon decides about a container that ends up in its spec.
#[derive(Debug, Clone, Default)]
pub struct SpecParams {
    /// Container id; names the cgroup (`<cgroup_parent>/<id>`).
    pub id: String,
    /// Entrypoint and command, already merged.
    pub args: Vec<String>,
    /// `KEY=VALUE` entries; a default PATH is added when none is given.
    pub env: Vec<String>,
    /// Working directory; empty means `/`.
    pub cwd: String,
    pub hostname: String,
    pub user: UserIds,
    /// Network namespace to join; `None` shares the daemon's (`--network host`).
    pub netns: Option<PathBuf>,
    /// Bind mounts, applied after the default mounts in this order.
    pub mounts: Vec<BindMount>,
    /// Absolute cgroup the container's cgroup goes under (dockerd's
    /// `--cgroup-parent`); empty means [`CGROUP_PARENT`]. Daemons that share
    /// a host can each take their own.
    pub cgroup_parent: String,
}

/// Builds the spec containerd gets for a container. The root filesystem is
/// `rootfs` relative to the bundle: containerd mounts the task's rootfs there.
pub fn build_spec(params: &SpecParams) -> Result<Spec, SpecError> {
    validate(params)?;

    let cwd = if params.cwd.is_empty() {
        "/"
    } else {
        &params.cwd
    };
    let mut env = params.env.clone();
    if !env.iter().any(|e| e.starts_with("PATH=")) {
        env.insert(0, DEFAULT_PATH_ENV.to_string());
    }
    let caps: HashSet<Capability> = default_capabilities().into_iter().collect();
    let process = ProcessBuilder::default()
        .terminal(false)
        .user(
            UserBuilder::default()
                .uid(params.user.uid)
                .gid(params.user.gid)
                .additional_gids(params.user.additional_gids.clone())
                .build()?,
        )
        .args(params.args.clone())
        .env(env)
        .cwd(cwd)
        .capabilities(
            LinuxCapabilitiesBuilder::default()
                .bounding(caps.clone())
                .effective(caps.clone())
                .permitted(caps)
                .build()?,
        )
        .rlimits(vec![PosixRlimitBuilder::default()
            .typ(PosixRlimitType::RlimitNofile)
            .hard(nofile_limit())
            .soft(nofile_limit())
            .build()?])
        .no_new_privileges(false)
        .build()?;

    let mut mounts = default_mounts()?;
    for bind in &params.mounts {
        let mut options = vec!["rbind".to_string(), "rprivate".to_string()];
        if bind.read_only {
            options.push("ro".to_string());
        }
        mounts.push(
            MountBuilder::default()
                .destination(&bind.destination)
                .typ("bind")
                .source(&bind.source)
                .options(options)
                .build()?,
        );
    }

    let mut namespaces = Vec::new();
    for typ in [
        LinuxNamespaceType::Pid,
        LinuxNamespaceType::Ipc,
        LinuxNamespaceType::Uts,
        LinuxNamespaceType::Mount,
    ] {
        namespaces.push(LinuxNamespaceBuilder::default().typ(typ).build()?);
    }
    if let Some(path) = &params.netns {
        namespaces.push(
            LinuxNamespaceBuilder::default()
                .typ(LinuxNamespaceType::Network)
                .path(path)
                .build()?,
        );
    }

    let linux = LinuxBuilder::default()
        .namespaces(namespaces)
        .cgroups_path(cgroups_path(params))
        .resources(
            LinuxResourcesBuilder::default()
                .devices(default_device_rules()?)
                .build()?,
        )
        .masked_paths(to_strings(MASKED_PATHS))
        .readonly_paths(to_strings(READONLY_PATHS))
        .build()?;

    let spec = SpecBuilder::default()
        .version("1.0.2-dev")
        .root(
            RootBuilder::default()
                .path("rootfs")
                .readonly(false)
                .build()?,
        )
        .hostname(params.hostname.clone())
        .process(process)
        .mounts(mounts)
        .linux(linux)
        .build()?;
    Ok(spec)
}

fn cgroups_path(params: &SpecParams) -> PathBuf {
    let parent = if params.cgroup_parent.is_empty() {
        CGROUP_PARENT
    } else {
        params.cgroup_parent.trim_end_matches('/')
    };
    PathBuf::from(format!("{parent}/{}", params.id))
}

fn validate(params: &SpecParams) -> Result<(), SpecError> {
    let invalid = |msg: String| Err(SpecError::Invalid(msg));
    if params.id.is_empty()
        || !params
            .id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
    {
        return invalid(format!("bad container id {:?}", params.id));
    }
    let parent = Path::new(&params.cgroup_parent);
    if !params.cgroup_parent.is_empty()
        && (!parent.is_absolute()
            || parent
                .components()
                .any(|c| matches!(c, std::path::Component::ParentDir)))
    {
        return invalid(format!(
            "cgroup parent {:?} must be an absolute path without ..",
            params.cgroup_parent
        ));
    }
    if params.args.is_empty() {
        return invalid("no command specified".to_string());
    }
    if !params.cwd.is_empty() && !params.cwd.starts_with('/') {
        return invalid(format!(
            "the working directory '{}' is invalid, it needs to be an absolute path",
            params.cwd
        ));
    }
    if let Some(bad) = params.env.iter().find(|e| !e.contains('=')) {
        return invalid(format!("environment entry {bad:?} is not KEY=VALUE"));
    }
    for bind in &params.mounts {
        if !bind.source.is_absolute() {
            return invalid(format!(
                "bind source path {:?} must be absolute",
                bind.source
            ));
        }
        if !bind.destination.is_absolute() || bind.destination == Path::new("/") {
            return invalid(format!(
                "invalid mount destination {:?}: must be an absolute path other than /",
                bind.destination
            ));
        }
    }
    Ok(())
}

/// dockerd's default capability set (moby `caps.DefaultCapabilities`).
fn default_capabilities() -> Vec<Capability> {
    vec![
        Capability::Chown,
        Capability::DacOverride,
        Capability::Fsetid,
        Capability::Fowner,
        Capability::Mknod,
        Capability::NetRaw,
        Capability::Setgid,
        Capability::Setuid,
        Capability::Setfcap,
        Capability::Setpcap,
        Capability::NetBindService,
        Capability::SysChroot,
        Capability::Kill,
        Capability::AuditWrite,
    ]
}

const MASKED_PATHS: &[&str] = &[
    "/proc/asound",
    "/proc/acpi",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/sys/firmware",
];

const READONLY_PATHS: &[&str] = &[
    "/proc/bus",
    "/proc/fs",
    "/proc/irq",
    "/proc/sys",
    "/proc/sysrq-trigger",
];

fn to_strings(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| s.to_string()).collect()
}

fn mount(dest: &str, typ: &str, source: &str, options: &[&str]) -> Result<Mount, SpecError> {
    Ok(MountBuilder::default()
        .destination(dest)
        .typ(typ)
        .source(source)
        .options(to_strings(options))
        .build()?)
}

/// The mounts every dockerd container gets, in moby's order.
fn default_mounts() -> Result<Vec<Mount>, SpecError> {
    Ok(vec![
        mount("/proc", "proc", "proc", &["nosuid", "noexec", "nodev"])?,
        mount(
            "/dev",
            "tmpfs",
            "tmpfs",
            &["nosuid", "strictatime", "mode=755", "size=65536k"],
        )?,
        mount(
            "/dev/pts",
            "devpts",
            "devpts",
            &[
                "nosuid",
                "noexec",
                "newinstance",
                "ptmxmode=0666",
                "mode=0620",
                "gid=5",
            ],
        )?,
        mount(
            "/sys",
            "sysfs",
            "sysfs",
            &["nosuid", "noexec", "nodev", "ro"],
        )?,
        mount(
            "/sys/fs/cgroup",
            "cgroup",
            "cgroup",
            &["ro", "nosuid", "noexec", "nodev"],
        )?,
        mount(
            "/dev/mqueue",
            "mqueue",
            "mqueue",
            &["nosuid", "noexec", "nodev"],
        )?,
        mount(
            "/dev/shm",
            "tmpfs",
            "shm",
            &["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"],
        )?,
    ])
}

/// Deny every device, then allow the ones runc creates in /dev plus ptys and
/// tun (moby's default device cgroup rules).
fn default_device_rules() -> Result<Vec<LinuxDeviceCgroup>, SpecError> {
    let mut rules = vec![LinuxDeviceCgroupBuilder::default()
        .allow(false)
        .access("rwm")
        .build()?];
    let allowed: &[(i64, Option<i64>)] = &[
        (1, Some(3)),    // null
        (1, Some(5)),    // zero
        (1, Some(7)),    // full
        (1, Some(8)),    // random
        (1, Some(9)),    // urandom
        (5, Some(0)),    // tty
        (5, Some(1)),    // console
        (5, Some(2)),    // ptmx
        (136, None),     // pts/*
        (10, Some(200)), // net/tun
    ];
    for &(major, minor) in allowed {
        let mut rule = LinuxDeviceCgroupBuilder::default()
            .allow(true)
            .typ(LinuxDeviceType::C)
            .major(major)
            .access("rwm");
        if let Some(minor) = minor {
            rule = rule.minor(minor);
        }
        rules.push(rule.build()?);
    }
    Ok(rules)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    fn params() -> SpecParams {
        SpecParams {
            id: "abc123".into(),
            args: vec!["sh".into(), "-c".into(), "echo hi".into()],
            env: vec!["FOO=bar".into()],
            hostname: "abc123".into(),
            user: UserIds {
                uid: 1000,
                gid: 100,
                additional_gids: vec![],
            },
            netns: Some("/var/run/berth/netns/sb1".into()),
            mounts: vec![
                BindMount {
                    source: "/var/lib/berth/containers/abc123/hosts".into(),
                    destination: "/etc/hosts".into(),
                    read_only: false,
                },
                BindMount {
                    source: "/srv/data".into(),
                    destination: "/data".into(),
                    read_only: true,
                },
            ],
            ..Default::default()
        }
    }

    fn json(params: &SpecParams) -> Value {
        serde_json::to_value(build_spec(params).unwrap()).unwrap()
    }

    #[test]
    fn process_section_has_docker_defaults() {
        let v = json(&params());
        let p = &v["process"];
        assert_eq!(p["args"], serde_json::json!(["sh", "-c", "echo hi"]));
        assert_eq!(p["cwd"], "/");
        assert_eq!(p["user"]["uid"], 1000);
        assert_eq!(p["user"]["gid"], 100);
        let env: Vec<&str> = p["env"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e.as_str().unwrap())
            .collect();
        assert_eq!(env, vec![DEFAULT_PATH_ENV, "FOO=bar"]);
        let mut bounding: Vec<&str> = p["capabilities"]["bounding"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c.as_str().unwrap())
            .collect();
        bounding.sort();
        assert_eq!(
            bounding,
            vec![
                "CAP_AUDIT_WRITE",
                "CAP_CHOWN",
                "CAP_DAC_OVERRIDE",
                "CAP_FOWNER",
                "CAP_FSETID",
                "CAP_KILL",
                "CAP_MKNOD",
                "CAP_NET_BIND_SERVICE",
                "CAP_NET_RAW",
                "CAP_SETFCAP",
                "CAP_SETGID",
                "CAP_SETPCAP",
                "CAP_SETUID",
                "CAP_SYS_CHROOT",
            ]
        );
        assert_eq!(p["capabilities"]["effective"].as_array().unwrap().len(), 14);
        assert_eq!(p["rlimits"][0]["type"], "RLIMIT_NOFILE");
        assert_eq!(p["rlimits"][0]["soft"], nofile_limit());
        assert_eq!(p["rlimits"][0]["hard"], nofile_limit());
    }

    #[test]
    fn user_path_is_kept() {
        let mut p = params();
        p.env = vec!["PATH=/opt/bin".into()];
        p.cwd = "/work".into();
        let v = json(&p);
        assert_eq!(v["process"]["env"], serde_json::json!(["PATH=/opt/bin"]));
        assert_eq!(v["process"]["cwd"], "/work");
    }

    #[test]
    fn mounts_are_defaults_then_binds() {
        let v = json(&params());
        let dests: Vec<&str> = v["mounts"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["destination"].as_str().unwrap())
            .collect();
        assert_eq!(
            dests,
            vec![
                "/proc",
                "/dev",
                "/dev/pts",
                "/sys",
                "/sys/fs/cgroup",
                "/dev/mqueue",
                "/dev/shm",
                "/etc/hosts",
                "/data"
            ]
        );
        let data = &v["mounts"][8];
        assert_eq!(data["type"], "bind");
        assert_eq!(data["source"], "/srv/data");
        assert_eq!(
            data["options"],
            serde_json::json!(["rbind", "rprivate", "ro"])
        );
        assert_eq!(
            v["mounts"][7]["options"],
            serde_json::json!(["rbind", "rprivate"])
        );
        assert_eq!(v["mounts"][3]["options"][3], "ro");
    }

    #[test]
    fn linux_section() {
        let v = json(&params());
        let l = &v["linux"];
        assert_eq!(l["cgroupsPath"], "/berth/abc123");
        let ns: Vec<(&str, Option<&str>)> = l["namespaces"]
            .as_array()
            .unwrap()
            .iter()
            .map(|n| (n["type"].as_str().unwrap(), n["path"].as_str()))
            .collect();
        assert_eq!(
            ns,
            vec![
                ("pid", None),
                ("ipc", None),
                ("uts", None),
                ("mount", None),
                ("network", Some("/var/run/berth/netns/sb1")),
            ]
        );
        assert!(l["maskedPaths"]
            .as_array()
            .unwrap()
            .contains(&Value::from("/proc/kcore")));
        assert!(l["readonlyPaths"]
            .as_array()
            .unwrap()
            .contains(&Value::from("/proc/sys")));
        let devices = l["resources"]["devices"].as_array().unwrap();
        assert_eq!(
            devices[0],
            serde_json::json!({"allow": false, "access": "rwm"})
        );
        assert!(devices.contains(&serde_json::json!(
            {"allow": true, "type": "c", "major": 1, "minor": 3, "access": "rwm"}
        )));
        assert_eq!(v["root"]["path"], "rootfs");
        assert_eq!(v["hostname"], "abc123");

        let mut p = params();
        p.cgroup_parent = "/berth-daemon2/".into();
        assert_eq!(json(&p)["linux"]["cgroupsPath"], "/berth-daemon2/abc123");
    }

    #[test]
    fn host_network_has_no_network_namespace() {
        let mut p = params();
        p.netns = None;
        let v = json(&p);
        assert!(!v["linux"]["namespaces"]
            .as_array()
            .unwrap()
            .iter()
            .any(|n| n["type"] == "network"));
    }

    #[test]
    fn rejects_bad_input() {
        let cases: [fn(&mut SpecParams); 9] = [
            |p| p.cgroup_parent = "relative".into(),
            |p| p.cgroup_parent = "/a/../b".into(),
            |p| p.args.clear(),
            |p| p.id = "../x".into(),
            |p| p.cwd = "relative".into(),
            |p| p.env.push("NOEQUALS".into()),
            |p| p.mounts[0].destination = "etc/hosts".into(),
            |p| p.mounts[0].destination = "/".into(),
            |p| p.mounts[0].source = "data".into(),
        ];
        for change in cases {
            let mut p = params();
            change(&mut p);
            let err = build_spec(&p).unwrap_err();
            assert_eq!(err.kind(), ErrorKind::InvalidArgument, "{err}");
        }
    }
}
