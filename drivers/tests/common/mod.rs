//! Helpers for kernel tests: namespaces that clean up after themselves, specs,
//! and the user's view of a namespace (`ip -j`, `ping`).

// Each test binary uses a different part of the helpers.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::Command;

use drivers::bridge::{BridgeConfig, BridgeDriver};
use ipnetwork::Ipv4Network;
use netcontroller::model::{EndpointSpec, IpamPool, JoinSpec, MacAddr, NetworkSpec};
use netcontroller::osl::{create_netns, delete_netns, NetlinkHandle};
use serde_json::Value;

/// A network namespace bind-mounted under its own temp dir; unmounted and
/// removed on drop, including when the test panics.
pub struct Netns {
    path: PathBuf,
    _dir: tempfile::TempDir,
}

impl Netns {
    pub fn new() -> Self {
        let dir = tempfile::Builder::new()
            .prefix("berth-drivers-test")
            .tempdir()
            .unwrap();
        let path = dir.path().join("netns");
        create_netns(&path).unwrap();
        Netns { path, _dir: dir }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Runs `cmd` through `sh -c` inside the namespace; panics if it fails.
    pub fn sh(&self, cmd: &str) {
        let out = self.command("sh").args(["-c", cmd]).output().unwrap();
        assert!(
            out.status.success(),
            "{cmd}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Runs `cmd` through `sh -c` inside the namespace; true if it succeeded.
    pub fn try_sh(&self, cmd: &str) -> bool {
        self.command("sh")
            .args(["-c", cmd])
            .output()
            .unwrap()
            .status
            .success()
    }

    /// `ip -j ARGS` inside the namespace.
    pub fn ip_json(&self, args: &[&str]) -> Value {
        let out = self.command("ip").arg("-j").args(args).output().unwrap();
        assert!(
            out.status.success(),
            "ip {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        if out.stdout.iter().all(u8::is_ascii_whitespace) {
            return Value::Array(vec![]);
        }
        serde_json::from_slice(&out.stdout).unwrap()
    }

    /// The link named `name` as `ip -j -d link` shows it, if present.
    pub fn link(&self, name: &str) -> Option<Value> {
        let links = self.ip_json(&["-d", "link", "show"]);
        links
            .as_array()
            .unwrap()
            .iter()
            .find(|l| l["ifname"] == name)
            .cloned()
    }

    /// Names of the links of a given kind (`veth`, `bridge`).
    pub fn links_of_kind(&self, kind: &str) -> Vec<String> {
        let links = self.ip_json(&["-d", "link", "show"]);
        links
            .as_array()
            .unwrap()
            .iter()
            .filter(|l| l["linkinfo"]["info_kind"] == kind)
            .map(|l| l["ifname"].as_str().unwrap().to_string())
            .collect()
    }

    /// The IPv4 addresses on `dev` as `ADDR/PREFIX` strings.
    pub fn ipv4_addrs(&self, dev: &str) -> Vec<String> {
        let shown = self.ip_json(&["-4", "addr", "show", "dev", dev]);
        shown
            .as_array()
            .unwrap()
            .iter()
            .flat_map(|l| l["addr_info"].as_array().cloned().unwrap_or_default())
            .map(|a| format!("{}/{}", a["local"].as_str().unwrap(), a["prefixlen"]))
            .collect()
    }

    /// Whether one ping from this namespace to `ip` gets an answer.
    pub fn ping(&self, ip: Ipv4Addr) -> bool {
        let (program, pre): (&str, &[&str]) = if in_path("ping") {
            ("ping", &[])
        } else {
            ("busybox", &["ping"])
        };
        self.command(program)
            .args(pre)
            .args(["-c", "1", "-W", "5", &ip.to_string()])
            .output()
            .unwrap()
            .status
            .success()
    }

    fn command(&self, program: &str) -> Command {
        let mut cmd = Command::new("nsenter");
        cmd.arg(format!("--net={}", self.path.display()))
            .arg("--")
            .arg(program);
        cmd
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = delete_netns(&self.path);
    }
}

fn in_path(program: &str) -> bool {
    std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).any(|d| d.join(program).is_file()))
        .unwrap_or(false)
}

pub fn flags(link: &Value) -> Vec<String> {
    link["flags"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f.as_str().unwrap().to_string())
        .collect()
}

pub fn random_id() -> String {
    (0..4)
        .map(|_| format!("{:016x}", rand::random::<u64>()))
        .collect()
}

/// A bridge network on `subnet` with its first address as gateway.
pub fn network(subnet: &str, options: &[(&str, &str)]) -> NetworkSpec {
    let subnet: Ipv4Network = subnet.parse().unwrap();
    NetworkSpec {
        id: random_id(),
        name: "test".into(),
        driver: "bridge".into(),
        ipv4: vec![IpamPool {
            subnet,
            gateway: subnet.nth(1).unwrap(),
            ip_range: None,
            aux_addresses: BTreeMap::new(),
            user_subnet: true,
            user_gateway: false,
        }],
        internal: false,
        attachable: false,
        enable_ipv6: false,
        options: options
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        labels: BTreeMap::new(),
        created: String::new(),
    }
}

/// An endpoint on `net` with address `ip` (host index in the subnet) and
/// dockerd's MAC scheme.
pub fn endpoint(net: &NetworkSpec, host: u32) -> EndpointSpec {
    let pool = &net.ipv4[0];
    let ip = pool.subnet.nth(host).unwrap();
    EndpointSpec {
        id: random_id(),
        name: format!("ep{host}"),
        network_id: net.id.clone(),
        ipv4: Some(Ipv4Network::new(ip, pool.subnet.prefix()).unwrap()),
        gateway: Some(pool.gateway),
        mac: MacAddr::from_ipv4(ip),
        aliases: vec![],
        port_bindings: vec![],
    }
}

pub fn join_spec(sandbox: &Netns, ifname: &str, default_route: bool) -> JoinSpec {
    JoinSpec {
        sandbox_id: random_id(),
        netns_path: sandbox.path().to_path_buf(),
        ifname: ifname.into(),
        default_route,
    }
}

/// A bridge driver acting in `daemon`'s namespace.
pub async fn driver(daemon: &Netns, config: BridgeConfig) -> BridgeDriver {
    let nl = NetlinkHandle::for_netns(daemon.path()).await.unwrap();
    BridgeDriver::new(config, nl)
}
