//! The bridge driver's network options (`docker network create -o KEY=VALUE`),
//! parsed once into a struct; unknown keys are ignored, as dockerd does.

use std::net::Ipv4Addr;

use netcontroller::driver::{DriverError, DriverResult};
use netcontroller::model::NetworkSpec;
use netcontroller::osl::check_ifname;

pub const OPT_BRIDGE_NAME: &str = "com.docker.network.bridge.name";
pub const OPT_ENABLE_ICC: &str = "com.docker.network.bridge.enable_icc";
pub const OPT_ENABLE_IP_MASQUERADE: &str = "com.docker.network.bridge.enable_ip_masquerade";
pub const OPT_HOST_BINDING_IPV4: &str = "com.docker.network.bridge.host_binding_ipv4";
pub const OPT_MTU: &str = "com.docker.network.driver.mtu";
pub const OPT_DEFAULT_BRIDGE: &str = "com.docker.network.bridge.default_bridge";

/// Smallest MTU the kernel accepts for IPv4 (RFC 791), as dockerd checks.
pub const MIN_MTU: u32 = 68;
pub const MAX_MTU: u32 = 65535;

/// A bridge network's settings, with defaults filled in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BridgeOptions {
    /// The Linux bridge: `br-` + the first 12 hex of the network id unless named.
    pub bridge_name: String,
    /// Whether containers on this network may talk to each other.
    pub enable_icc: bool,
    /// Whether traffic leaving the host from this network is masqueraded.
    pub enable_ip_masquerade: bool,
    /// Default host address for published ports (`0.0.0.0`: all).
    pub host_binding_ipv4: Ipv4Addr,
    /// MTU of the bridge and of every container interface on it.
    pub mtu: u32,
    /// True for the daemon's default `bridge` network (docker0).
    pub default_bridge: bool,
}

impl BridgeOptions {
    /// Reads `net.options`; any present key with a bad value is an
    /// [`DriverError::InvalidOption`] naming the key.
    pub fn parse(net: &NetworkSpec, default_mtu: u32) -> DriverResult<Self> {
        let opt = |key: &str| net.options.get(key).map(String::as_str);
        let bridge_name = match opt(OPT_BRIDGE_NAME) {
            Some(name) => {
                check_ifname(name).map_err(|e| invalid(OPT_BRIDGE_NAME, e.to_string()))?;
                name.to_string()
            }
            None => default_bridge_name(&net.id),
        };
        Ok(BridgeOptions {
            bridge_name,
            enable_icc: parse_bool(OPT_ENABLE_ICC, opt(OPT_ENABLE_ICC), true)?,
            enable_ip_masquerade: parse_bool(
                OPT_ENABLE_IP_MASQUERADE,
                opt(OPT_ENABLE_IP_MASQUERADE),
                true,
            )?,
            host_binding_ipv4: match opt(OPT_HOST_BINDING_IPV4) {
                Some(v) => v.parse().map_err(|_| {
                    invalid(
                        OPT_HOST_BINDING_IPV4,
                        format!("'{v}' is not an IPv4 address"),
                    )
                })?,
                None => Ipv4Addr::UNSPECIFIED,
            },
            mtu: match opt(OPT_MTU) {
                Some(v) => parse_mtu(v)?,
                None => default_mtu,
            },
            default_bridge: parse_bool(OPT_DEFAULT_BRIDGE, opt(OPT_DEFAULT_BRIDGE), false)?,
        })
    }
}

/// `br-` followed by the first 12 hex characters of the network id.
pub fn default_bridge_name(network_id: &str) -> String {
    format!("br-{}", &network_id[..12.min(network_id.len())])
}

fn invalid(key: &str, reason: String) -> DriverError {
    DriverError::InvalidOption {
        key: key.to_string(),
        reason,
    }
}

/// Go's `strconv.ParseBool`, which dockerd uses for these options.
fn parse_bool(key: &str, value: Option<&str>, default: bool) -> DriverResult<bool> {
    match value {
        None => Ok(default),
        Some("1" | "t" | "T" | "true" | "TRUE" | "True") => Ok(true),
        Some("0" | "f" | "F" | "false" | "FALSE" | "False") => Ok(false),
        Some(v) => Err(invalid(key, format!("'{v}' is not a boolean"))),
    }
}

fn parse_mtu(value: &str) -> DriverResult<u32> {
    match value.parse::<u32>() {
        Ok(mtu) if (MIN_MTU..=MAX_MTU).contains(&mtu) => Ok(mtu),
        _ => Err(invalid(
            OPT_MTU,
            format!("'{value}' is not an MTU between {MIN_MTU} and {MAX_MTU}"),
        )),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use netcontroller::error::{ErrorKind, Kind};

    use super::*;

    const ID: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    fn spec(options: &[(&str, &str)]) -> NetworkSpec {
        NetworkSpec {
            id: ID.into(),
            name: "n".into(),
            driver: "bridge".into(),
            ipv4: vec![],
            internal: false,
            attachable: false,
            enable_ipv6: false,
            options: options
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect::<BTreeMap<_, _>>(),
            labels: BTreeMap::new(),
            created: String::new(),
        }
    }

    #[test]
    fn defaults_match_dockerd() {
        let o = BridgeOptions::parse(&spec(&[]), 1500).unwrap();
        assert_eq!(
            o,
            BridgeOptions {
                bridge_name: "br-0123456789ab".into(),
                enable_icc: true,
                enable_ip_masquerade: true,
                host_binding_ipv4: Ipv4Addr::UNSPECIFIED,
                mtu: 1500,
                default_bridge: false,
            }
        );
        assert_eq!(BridgeOptions::parse(&spec(&[]), 9000).unwrap().mtu, 9000);
    }

    #[test]
    fn every_option_is_read() {
        let o = BridgeOptions::parse(
            &spec(&[
                (OPT_BRIDGE_NAME, "docker0"),
                (OPT_ENABLE_ICC, "false"),
                (OPT_ENABLE_IP_MASQUERADE, "0"),
                (OPT_HOST_BINDING_IPV4, "127.0.0.1"),
                (OPT_MTU, "1400"),
                (OPT_DEFAULT_BRIDGE, "true"),
                ("com.example.unknown", "whatever"),
            ]),
            1500,
        )
        .unwrap();
        assert_eq!(o.bridge_name, "docker0");
        assert!(!o.enable_icc);
        assert!(!o.enable_ip_masquerade);
        assert_eq!(o.host_binding_ipv4, Ipv4Addr::LOCALHOST);
        assert_eq!(o.mtu, 1400);
        assert!(o.default_bridge);
    }

    #[test]
    fn go_booleans_are_accepted() {
        for (v, want) in [
            ("1", true),
            ("t", true),
            ("True", true),
            ("F", false),
            ("FALSE", false),
        ] {
            let o = BridgeOptions::parse(&spec(&[(OPT_ENABLE_ICC, v)]), 1500).unwrap();
            assert_eq!(o.enable_icc, want, "{v}");
        }
    }

    #[test]
    fn bad_values_name_their_key() {
        let cases = [
            (OPT_BRIDGE_NAME, "br-0123456789abcd"),
            (OPT_BRIDGE_NAME, ""),
            (OPT_BRIDGE_NAME, "a/b"),
            (OPT_BRIDGE_NAME, "my bridge"),
            (OPT_ENABLE_ICC, "yes"),
            (OPT_ENABLE_IP_MASQUERADE, ""),
            (OPT_HOST_BINDING_IPV4, "::1"),
            (OPT_HOST_BINDING_IPV4, "256.0.0.1"),
            (OPT_MTU, "67"),
            (OPT_MTU, "65536"),
            (OPT_MTU, "-1"),
            (OPT_MTU, "big"),
            (OPT_DEFAULT_BRIDGE, "2"),
        ];
        for (key, value) in cases {
            let err = BridgeOptions::parse(&spec(&[(key, value)]), 1500).unwrap_err();
            assert_eq!(err.kind(), ErrorKind::InvalidArgument, "{key}={value}");
            assert!(
                matches!(&err, DriverError::InvalidOption { key: k, .. } if k == key),
                "{err}"
            );
        }
        for ok in ["68", "65535"] {
            assert!(BridgeOptions::parse(&spec(&[(OPT_MTU, ok)]), 1500).is_ok());
        }
    }
}
