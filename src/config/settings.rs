//! Raw settings from the two sources (flags, daemon.json), the conflict check
//! between them and their merge. Nothing here validates values: that happens
//! once, on the merged result, in [`super::Config::resolve`].

use std::fmt::Display;
use std::path::Path;

use serde::Deserialize;
use serde_json::{Map, Value};

use super::flags::Flags;
use super::pool::PoolSpec;
use super::ConfigError;

/// The daemon.json keys berthd understands; the same names as dockerd's.
pub const KNOWN_KEYS: &[&str] = &[
    "hosts",
    "data-root",
    "exec-root",
    "pidfile",
    "debug",
    "log-level",
    "containerd",
    "bridge",
    "bip",
    "fixed-cidr",
    "mtu",
    "icc",
    "iptables",
    "ip-forward",
    "ip-masq",
    "userland-proxy",
    "default-address-pools",
    "dns",
];

/// Every setting as given, `None`/empty when not given. Field names are the
/// daemon.json keys.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct Settings {
    #[serde(default)]
    pub hosts: Vec<String>,
    pub data_root: Option<String>,
    pub exec_root: Option<String>,
    pub pidfile: Option<String>,
    pub debug: Option<bool>,
    pub log_level: Option<String>,
    pub containerd: Option<String>,
    pub bridge: Option<String>,
    pub bip: Option<String>,
    pub fixed_cidr: Option<String>,
    pub mtu: Option<u32>,
    pub icc: Option<bool>,
    pub iptables: Option<bool>,
    pub ip_forward: Option<bool>,
    pub ip_masq: Option<bool>,
    pub userland_proxy: Option<bool>,
    #[serde(default)]
    pub default_address_pools: Vec<PoolSpec>,
    #[serde(default)]
    pub dns: Vec<String>,
}

impl Settings {
    /// The command line's settings. Only the values whose flag form differs
    /// from the file form (mtu, pools) are parsed here.
    pub fn from_flags(flags: &Flags) -> Result<Settings, ConfigError> {
        let mtu = flags
            .mtu
            .as_deref()
            .map(|m| {
                m.parse::<u32>()
                    .map_err(|e| ConfigError::invalid("--mtu", m, e))
            })
            .transpose()?;
        let default_address_pools = flags
            .default_address_pools
            .iter()
            .map(|p| {
                PoolSpec::parse_flag(p)
                    .map_err(|e| ConfigError::invalid("--default-address-pool", p, e))
            })
            .collect::<Result<_, _>>()?;
        Ok(Settings {
            hosts: flags.hosts.clone(),
            data_root: flags.data_root.clone(),
            exec_root: flags.exec_root.clone(),
            pidfile: flags.pidfile.clone(),
            debug: flags.debug,
            log_level: flags.log_level.clone(),
            containerd: flags.containerd.clone(),
            bridge: flags.bridge.clone(),
            bip: flags.bip.clone(),
            fixed_cidr: flags.fixed_cidr.clone(),
            mtu,
            icc: flags.icc,
            iptables: flags.iptables,
            ip_forward: flags.ip_forward,
            ip_masq: flags.ip_masq,
            userland_proxy: flags.userland_proxy,
            default_address_pools,
            dns: flags.dns.clone(),
        })
    }

    /// Parses a daemon.json document. Unknown keys are refused all at once,
    /// with dockerd's wording.
    pub fn from_json(path: &Path, text: &str) -> Result<Settings, ConfigError> {
        if text.trim().is_empty() {
            return Ok(Settings::default());
        }
        let file_error = |reason: String| ConfigError::File {
            path: path.to_path_buf(),
            reason,
        };
        let map: Map<String, Value> =
            serde_json::from_str(text).map_err(|e| file_error(format!("invalid JSON: {e}")))?;
        let unknown: Vec<&str> = map
            .keys()
            .map(String::as_str)
            .filter(|k| !KNOWN_KEYS.contains(k))
            .collect();
        if !unknown.is_empty() {
            return Err(file_error(format!(
                "the following directives don't match any configuration option: {}",
                unknown.join(", ")
            )));
        }
        serde_json::from_value(Value::Object(map)).map_err(|e| file_error(e.to_string()))
    }

    /// Each setting with its value as dockerd prints it, `None` when unset.
    fn entries(&self) -> Vec<(&'static str, Option<String>)> {
        fn one<T: Display>(v: &Option<T>) -> Option<String> {
            v.as_ref().map(ToString::to_string)
        }
        fn list<T: Display>(v: &[T]) -> Option<String> {
            (!v.is_empty()).then(|| {
                let items: Vec<String> = v.iter().map(ToString::to_string).collect();
                format!("[{}]", items.join(" "))
            })
        }
        vec![
            ("hosts", list(&self.hosts)),
            ("data-root", one(&self.data_root)),
            ("exec-root", one(&self.exec_root)),
            ("pidfile", one(&self.pidfile)),
            ("debug", one(&self.debug)),
            ("log-level", one(&self.log_level)),
            ("containerd", one(&self.containerd)),
            ("bridge", one(&self.bridge)),
            ("bip", one(&self.bip)),
            ("fixed-cidr", one(&self.fixed_cidr)),
            ("mtu", one(&self.mtu)),
            ("icc", one(&self.icc)),
            ("iptables", one(&self.iptables)),
            ("ip-forward", one(&self.ip_forward)),
            ("ip-masq", one(&self.ip_masq)),
            ("userland-proxy", one(&self.userland_proxy)),
            ("default-address-pools", list(&self.default_address_pools)),
            ("dns", list(&self.dns)),
        ]
    }

    /// Settings given both ways, in dockerd's words:
    /// `bip: (from flag: x, from file: y)`.
    pub fn conflicts(flags: &Settings, file: &Settings) -> Vec<String> {
        flags
            .entries()
            .into_iter()
            .zip(file.entries())
            .filter_map(|((key, flag), (_, file))| match (flag, file) {
                (Some(flag), Some(file)) => {
                    Some(format!("{key}: (from flag: {flag}, from file: {file})"))
                }
                _ => None,
            })
            .collect()
    }

    /// Flags and file combined; callers check [`Settings::conflicts`] first,
    /// so at most one side holds each setting.
    pub fn merge(flags: Settings, file: Settings) -> Settings {
        fn list<T>(a: Vec<T>, b: Vec<T>) -> Vec<T> {
            if a.is_empty() {
                b
            } else {
                a
            }
        }
        Settings {
            hosts: list(flags.hosts, file.hosts),
            data_root: flags.data_root.or(file.data_root),
            exec_root: flags.exec_root.or(file.exec_root),
            pidfile: flags.pidfile.or(file.pidfile),
            debug: flags.debug.or(file.debug),
            log_level: flags.log_level.or(file.log_level),
            containerd: flags.containerd.or(file.containerd),
            bridge: flags.bridge.or(file.bridge),
            bip: flags.bip.or(file.bip),
            fixed_cidr: flags.fixed_cidr.or(file.fixed_cidr),
            mtu: flags.mtu.or(file.mtu),
            icc: flags.icc.or(file.icc),
            iptables: flags.iptables.or(file.iptables),
            ip_forward: flags.ip_forward.or(file.ip_forward),
            ip_masq: flags.ip_masq.or(file.ip_masq),
            userland_proxy: flags.userland_proxy.or(file.userland_proxy),
            default_address_pools: list(flags.default_address_pools, file.default_address_pools),
            dns: list(flags.dns, file.dns),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn json(text: &str) -> Result<Settings, ConfigError> {
        Settings::from_json(Path::new("/etc/berth/daemon.json"), text)
    }

    #[test]
    fn every_known_key_has_an_entry() {
        let keys: Vec<&str> = Settings::default()
            .entries()
            .into_iter()
            .map(|(k, _)| k)
            .collect();
        assert_eq!(keys, KNOWN_KEYS);
    }

    #[test]
    fn reads_dockerd_keys() {
        let s = json(
            r#"{"bip": "10.1.0.1/24", "mtu": 1400, "icc": false, "hosts": ["unix:///x.sock"],
                "default-address-pools": [{"base": "10.20.0.0/16", "size": 24}], "dns": ["1.1.1.1"]}"#,
        )
        .unwrap();
        assert_eq!(s.bip.as_deref(), Some("10.1.0.1/24"));
        assert_eq!(s.mtu, Some(1400));
        assert_eq!(s.icc, Some(false));
        assert_eq!(s.hosts, ["unix:///x.sock"]);
        assert_eq!(s.default_address_pools[0].size, 24);
        assert_eq!(s.dns, ["1.1.1.1"]);
        assert_eq!(json("  \n").unwrap(), Settings::default());
    }

    #[test]
    fn unknown_keys_are_named_together() {
        let err = json(r#"{"bip": "10.1.0.1/24", "colour": 1, "storage-driver": "x"}"#)
            .unwrap_err()
            .to_string();
        assert!(
            err.ends_with(
                "the following directives don't match any configuration option: colour, storage-driver"
            ),
            "{err}"
        );
    }

    #[test]
    fn wrong_types_and_bad_json_are_refused() {
        assert!(json(r#"{"mtu": "big"}"#).is_err());
        assert!(json(r#"{"icc": "yes"}"#).is_err());
        assert!(json(r#"{"default-address-pools": [{"base": "10.0.0.0/8"}]}"#).is_err());
        assert!(json("{not json").is_err());
        assert!(json("[]").is_err());
    }

    #[test]
    fn conflicts_name_both_values() {
        let flags = Settings {
            bip: Some("10.0.0.1/24".into()),
            icc: Some(false),
            ..Settings::default()
        };
        let file = Settings {
            bip: Some("10.1.0.1/24".into()),
            mtu: Some(1400),
            ..Settings::default()
        };
        assert_eq!(
            Settings::conflicts(&flags, &file),
            ["bip: (from flag: 10.0.0.1/24, from file: 10.1.0.1/24)"]
        );
        let merged = Settings::merge(flags, file);
        assert_eq!(merged.icc, Some(false));
        assert_eq!(merged.mtu, Some(1400));
    }
}
