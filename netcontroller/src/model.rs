//! The objects the controller hands to drivers and persists.

use std::collections::BTreeMap;
use std::fmt;
use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::str::FromStr;

use ipnetwork::Ipv4Network;
use serde::{Deserialize, Serialize};

/// One IPv4 pool of a network, fully resolved (subnet chosen, gateway known).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IpamPool {
    pub subnet: Ipv4Network,
    pub gateway: Ipv4Addr,
    /// Container addresses come from this range when set (`--ip-range`, `--fixed-cidr`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip_range: Option<Ipv4Network>,
    /// Addresses reserved by name (`--aux-address host=10.0.0.5`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub aux_addresses: BTreeMap<String, Ipv4Addr>,
    /// True when the user named the subnet, false when the pool chose it.
    #[serde(default)]
    pub user_subnet: bool,
    /// True when the user named the gateway.
    #[serde(default)]
    pub user_gateway: bool,
}

/// A network as drivers see it: identity, resolved addressing and options.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetworkSpec {
    /// 64 lowercase hex characters.
    pub id: String,
    pub name: String,
    pub driver: String,
    pub ipv4: Vec<IpamPool>,
    pub internal: bool,
    pub attachable: bool,
    pub enable_ipv6: bool,
    /// Driver options (`-o key=value`), e.g. `com.docker.network.bridge.name`.
    pub options: BTreeMap<String, String>,
    pub labels: BTreeMap<String, String>,
    /// RFC 3339 with nanoseconds, as dockerd prints it.
    pub created: String,
}

impl NetworkSpec {
    /// The first 12 hex characters, as `docker network ls` shows them.
    pub fn short_id(&self) -> &str {
        &self.id[..12.min(self.id.len())]
    }
}

/// Transport protocol of a published port.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Proto {
    Tcp,
    Udp,
    Sctp,
}

impl Proto {
    pub fn as_str(self) -> &'static str {
        match self {
            Proto::Tcp => "tcp",
            Proto::Udp => "udp",
            Proto::Sctp => "sctp",
        }
    }
}

impl fmt::Display for Proto {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Proto {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "tcp" => Ok(Proto::Tcp),
            "udp" => Ok(Proto::Udp),
            "sctp" => Ok(Proto::Sctp),
            other => Err(format!("invalid proto '{other}'")),
        }
    }
}

/// One published port with its host side resolved to a concrete port.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PortBinding {
    pub proto: Proto,
    pub container_port: u16,
    /// `0.0.0.0` means every host address.
    pub host_ip: Ipv4Addr,
    pub host_port: u16,
}

/// A 48-bit Ethernet address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct MacAddr(pub [u8; 6]);

impl MacAddr {
    /// dockerd's scheme: `02:42:` followed by the four octets of the IPv4 address.
    pub fn from_ipv4(ip: Ipv4Addr) -> Self {
        let o = ip.octets();
        MacAddr([0x02, 0x42, o[0], o[1], o[2], o[3]])
    }
}

impl fmt::Display for MacAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let b = self.0;
        write!(
            f,
            "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
            b[0], b[1], b[2], b[3], b[4], b[5]
        )
    }
}

impl FromStr for MacAddr {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let parts: Vec<&str> = s.split([':', '-']).collect();
        if parts.len() != 6 {
            return Err(format!("invalid MAC address: {s}"));
        }
        let mut out = [0u8; 6];
        for (i, p) in parts.iter().enumerate() {
            if p.len() != 2 {
                return Err(format!("invalid MAC address: {s}"));
            }
            out[i] = u8::from_str_radix(p, 16).map_err(|_| format!("invalid MAC address: {s}"))?;
        }
        Ok(MacAddr(out))
    }
}

impl Serialize for MacAddr {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for MacAddr {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// An endpoint as drivers see it: an interface of one sandbox on one network.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EndpointSpec {
    /// 64 lowercase hex characters.
    pub id: String,
    pub name: String,
    pub network_id: String,
    /// Address and prefix length inside the network's subnet.
    pub ipv4: Option<Ipv4Network>,
    pub gateway: Option<Ipv4Addr>,
    pub mac: MacAddr,
    #[serde(default)]
    pub aliases: Vec<String>,
    #[serde(default)]
    pub port_bindings: Vec<PortBinding>,
}

/// Where and how an endpoint is plugged into a sandbox.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JoinSpec {
    pub sandbox_id: String,
    /// The bind-mounted network namespace of the sandbox.
    pub netns_path: PathBuf,
    /// Name of the interface inside the sandbox: `eth0`, `eth1`, ...
    pub ifname: String,
    /// Whether this endpoint gives the sandbox its default route (first network only).
    pub default_route: bool,
}

/// What a driver created for an endpoint that the controller must remember
/// (so that leave, restore and reconcile can find it again).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct JoinInfo {
    /// Host-side interface name, e.g. `veth1a2b3c4`; empty for drivers with no host side.
    #[serde(default)]
    pub host_ifname: String,
}
