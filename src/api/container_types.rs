//! The Engine API's container JSON: the create body (parsed into what the
//! daemon acts on), and the published-port syntax.
//!
//! `Config` and `HostConfig` are kept as the client sent them (plus the
//! defaults dockerd fills in) so that `docker inspect` shows them back; the
//! fields the daemon acts on are parsed into typed values at once.

use std::collections::{BTreeMap, HashMap};
use std::net::Ipv4Addr;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use netcontroller::controller::PortRequestSpec;
use netcontroller::model::{MacAddr, Proto};

/// `POST /containers/create` body.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct CreateBody {
    #[serde(flatten)]
    pub config: ContainerConfig,
    #[serde(rename = "HostConfig")]
    pub host_config: HostConfig,
    #[serde(rename = "NetworkingConfig")]
    pub networking_config: NetworkingConfig,
}

/// The container's `Config` as dockerd stores and shows it.
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct ContainerConfig {
    pub hostname: String,
    pub domainname: String,
    pub user: String,
    pub attach_stdin: bool,
    pub attach_stdout: bool,
    pub attach_stderr: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exposed_ports: Option<BTreeMap<String, Value>>,
    pub tty: bool,
    pub open_stdin: bool,
    pub stdin_once: bool,
    pub env: Option<Vec<String>>,
    pub cmd: Option<StringOrVec>,
    pub image: String,
    pub volumes: Option<BTreeMap<String, Value>>,
    pub working_dir: String,
    pub entrypoint: Option<StringOrVec>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mac_address: Option<String>,
    pub on_build: Option<Vec<String>>,
    pub labels: Option<BTreeMap<String, String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stop_signal: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stop_timeout: Option<i64>,
}

/// Docker accepts `"Cmd": "sh"` as well as `"Cmd": ["sh"]`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(untagged)]
pub enum StringOrVec {
    One(String),
    Many(Vec<String>),
}

impl StringOrVec {
    pub fn to_vec(&self) -> Vec<String> {
        match self {
            StringOrVec::One(s) => vec![s.clone()],
            StringOrVec::Many(v) => v.clone(),
        }
    }
}

#[derive(Debug, Default, Clone, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct HostConfig {
    pub binds: Option<Vec<String>>,
    pub network_mode: String,
    pub port_bindings: Option<BTreeMap<String, Option<Vec<PortBindingBody>>>>,
    pub restart_policy: RestartPolicy,
    pub auto_remove: bool,
    pub dns: Option<Vec<String>>,
    pub dns_options: Option<Vec<String>>,
    pub dns_search: Option<Vec<String>>,
    pub extra_hosts: Option<Vec<String>>,
    pub publish_all_ports: bool,
    pub privileged: bool,
    #[serde(flatten)]
    pub other: BTreeMap<String, Value>,
}

#[derive(Debug, Default, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "PascalCase", default)]
pub struct RestartPolicy {
    pub name: String,
    pub maximum_retry_count: i64,
}

#[derive(Debug, Default, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "PascalCase", default)]
pub struct PortBindingBody {
    pub host_ip: String,
    pub host_port: String,
}

#[derive(Debug, Default, Clone, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct NetworkingConfig {
    pub endpoints_config: Option<BTreeMap<String, EndpointSettingsBody>>,
}

#[derive(Debug, Default, Clone, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct EndpointSettingsBody {
    #[serde(rename = "IPAMConfig")]
    pub ipam_config: Option<EndpointIpamBody>,
    pub aliases: Option<Vec<String>>,
    pub mac_address: Option<String>,
    pub links: Option<Vec<String>>,
}

#[derive(Debug, Default, Clone, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct EndpointIpamBody {
    #[serde(rename = "IPv4Address")]
    pub ipv4_address: Option<String>,
    #[serde(rename = "IPv6Address")]
    pub ipv6_address: Option<String>,
}

/// A network the container asks for, parsed.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct NetworkRequest {
    pub ipv4: Option<Ipv4Addr>,
    pub mac: Option<String>,
    pub aliases: Vec<String>,
}

impl EndpointSettingsBody {
    pub fn parse(&self) -> Result<NetworkRequest, String> {
        let ipv4 = match self
            .ipam_config
            .as_ref()
            .and_then(|c| c.ipv4_address.as_deref())
        {
            None | Some("") => None,
            Some(s) => Some(
                s.parse::<Ipv4Addr>()
                    .map_err(|_| format!("invalid IPv4 address: {s}"))?,
            ),
        };
        if let Some(v6) = self
            .ipam_config
            .as_ref()
            .and_then(|c| c.ipv6_address.as_deref())
        {
            if !v6.is_empty() {
                return Err("IPv6 addresses are not supported by berthd".into());
            }
        }
        let mac = match self.mac_address.as_deref() {
            None | Some("") => None,
            Some(m) => {
                m.parse::<MacAddr>()?;
                Some(m.to_string())
            }
        };
        Ok(NetworkRequest {
            ipv4,
            mac,
            aliases: self.aliases.clone().unwrap_or_default(),
        })
    }
}

/// Parses `"80/tcp"` into (port, proto).
pub fn parse_port_key(key: &str) -> Result<(u16, Proto), String> {
    let (port, proto) = match key.split_once('/') {
        Some((p, proto)) => (p, proto.parse::<Proto>()?),
        None => (key, Proto::Tcp),
    };
    let port: u16 = port
        .parse()
        .ok()
        .filter(|p| *p != 0)
        .ok_or_else(|| format!("invalid port specification: \"{key}\""))?;
    Ok((port, proto))
}

/// Parses `"8080"`, `"8000-8010"` or `""` (ephemeral) into a host port range.
fn parse_host_port(s: &str) -> Result<(u16, u16), String> {
    if s.is_empty() {
        return Ok((0, 0));
    }
    let bad = || format!("invalid port specification: \"{s}\"");
    match s.split_once('-') {
        Some((a, b)) => {
            let a: u16 = a.parse().map_err(|_| bad())?;
            let b: u16 = b.parse().map_err(|_| bad())?;
            if a == 0 || b < a {
                return Err(bad());
            }
            Ok((a, b))
        }
        None => {
            let p: u16 = s.parse().map_err(|_| bad())?;
            Ok((p, p))
        }
    }
}

/// Every published port the container asks for: `PortBindings`, plus with
/// `PublishAllPorts` every exposed port without a binding on an ephemeral port.
pub fn port_requests(
    config: &ContainerConfig,
    host: &HostConfig,
) -> Result<Vec<PortRequestSpec>, String> {
    let mut out = Vec::new();
    let mut bound: HashMap<(u16, Proto), bool> = HashMap::new();
    for (key, bindings) in host.port_bindings.iter().flatten() {
        let (container_port, proto) = parse_port_key(key)?;
        bound.insert((container_port, proto), true);
        let list = bindings.clone().unwrap_or_default();
        let list = if list.is_empty() {
            vec![PortBindingBody::default()]
        } else {
            list
        };
        for b in list {
            let host_ip = if b.host_ip.is_empty() {
                Ipv4Addr::UNSPECIFIED
            } else {
                b.host_ip
                    .parse::<Ipv4Addr>()
                    .map_err(|_| format!("invalid host IP address {}: IPv4 only", b.host_ip))?
            };
            let (start, end) = parse_host_port(&b.host_port)?;
            out.push(PortRequestSpec {
                proto,
                container_port,
                host_ip,
                host_port_start: start,
                host_port_end: end,
            });
        }
    }
    if host.publish_all_ports {
        for key in config.exposed_ports.iter().flat_map(|m| m.keys()) {
            let (container_port, proto) = parse_port_key(key)?;
            if bound.contains_key(&(container_port, proto)) {
                continue;
            }
            out.push(PortRequestSpec {
                proto,
                container_port,
                host_ip: Ipv4Addr::UNSPECIFIED,
                host_port_start: 0,
                host_port_end: 0,
            });
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn create_body_accepts_string_cmd_and_port_bindings() {
        let body: CreateBody = serde_json::from_str(
            r#"{"Image":"busybox","Cmd":"sh","ExposedPorts":{"80/tcp":{}},
                "HostConfig":{"PortBindings":{"80/tcp":[{"HostIp":"","HostPort":"8080"}],"53/udp":[{"HostPort":"5300-5310"}]}}}"#,
        )
        .unwrap();
        assert_eq!(body.config.cmd.as_ref().unwrap().to_vec(), vec!["sh"]);
        let mut reqs = port_requests(&body.config, &body.host_config).unwrap();
        reqs.sort_by_key(|r| r.container_port);
        assert_eq!(reqs.len(), 2);
        assert_eq!((reqs[0].container_port, reqs[0].proto), (53, Proto::Udp));
        assert_eq!(
            (reqs[0].host_port_start, reqs[0].host_port_end),
            (5300, 5310)
        );
        assert_eq!(
            (reqs[1].host_port_start, reqs[1].host_port_end),
            (8080, 8080)
        );
    }

    #[test]
    fn publish_all_adds_exposed_ports_on_ephemeral_host_ports() {
        let body: CreateBody = serde_json::from_str(
            r#"{"Image":"b","ExposedPorts":{"80/tcp":{},"81/tcp":{}},
                "HostConfig":{"PublishAllPorts":true,"PortBindings":{"80/tcp":[{"HostPort":"8080"}]}}}"#,
        )
        .unwrap();
        let reqs = port_requests(&body.config, &body.host_config).unwrap();
        assert_eq!(reqs.len(), 2);
        assert!(reqs
            .iter()
            .any(|r| r.container_port == 81 && r.host_port_start == 0));
    }

    #[test]
    fn bad_ports_are_refused() {
        for (key, hp) in [
            ("0/tcp", "1"),
            ("80/xyz", "1"),
            ("80", "99999"),
            ("80", "9-1"),
        ] {
            let mut host = HostConfig::default();
            let mut pb = BTreeMap::new();
            pb.insert(
                key.to_string(),
                Some(vec![PortBindingBody {
                    host_ip: String::new(),
                    host_port: hp.into(),
                }]),
            );
            host.port_bindings = Some(pb);
            assert!(
                port_requests(&ContainerConfig::default(), &host).is_err(),
                "{key} {hp}"
            );
        }
    }
}
