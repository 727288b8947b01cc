//! dockerd-compatible configuration: flags merged with daemon.json, validated
//! up front into a typed [`Config`] before anything touches disk or network.

mod flags;
mod listen;
mod pool;
mod settings;

use std::fmt::Display;
use std::net::IpAddr;
use std::path::PathBuf;
use std::str::FromStr;

use ipnetwork::Ipv4Network;
use netcontroller::error::{ErrorKind, Kind};
use tracing::level_filters::LevelFilter;

pub use flags::Flags;
pub use listen::{ListenAddr, DEFAULT_UNIX_SOCKET};
pub use pool::{AddressPool, PoolSpec};
pub use settings::Settings;

pub const DEFAULT_DATA_ROOT: &str = "/var/lib/berth";
pub const DEFAULT_EXEC_ROOT: &str = "/var/run/berth";
pub const DEFAULT_PIDFILE: &str = "/var/run/berth.pid";
pub const DEFAULT_CONFIG_FILE: &str = "/etc/berth/daemon.json";
pub const DEFAULT_MTU: u32 = 1500;
/// The smallest MTU IPv4 allows (RFC 791).
const MIN_MTU: u32 = 68;
const MAX_MTU: u32 = 65535;
/// Linux's limit on interface names (IFNAMSIZ - 1).
const MAX_IFNAME: usize = 15;

/// Why the configuration was refused. Each message is one line and names
/// the flag (or daemon.json) at fault.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("invalid {flag} {value:?}: {reason}")]
    Invalid {
        flag: &'static str,
        value: String,
        reason: String,
    },
    #[error("You specified -b & --bip, mutually exclusive options. Please specify only one")]
    BridgeWithBip,
    #[error("You specified --iptables=false with --icc=false. ICC=false uses iptables to function. Please set --icc or --iptables to true")]
    IccWithoutIptables,
    #[error("unable to configure the daemon with file {}: {reason}", path.display())]
    File { path: PathBuf, reason: String },
}

impl ConfigError {
    fn invalid(flag: &'static str, value: &str, reason: impl Display) -> ConfigError {
        ConfigError::Invalid {
            flag,
            value: value.to_string(),
            reason: reason.to_string(),
        }
    }
}

impl Kind for ConfigError {
    fn kind(&self) -> ErrorKind {
        ErrorKind::InvalidArgument
    }
}

/// `-l/--log-level`, with dockerd's names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogLevel {
    Debug,
    Info,
    Warn,
    Error,
    Fatal,
}

impl FromStr for LogLevel {
    type Err = String;

    fn from_str(s: &str) -> Result<LogLevel, String> {
        match s.to_ascii_lowercase().as_str() {
            "debug" => Ok(LogLevel::Debug),
            "info" => Ok(LogLevel::Info),
            "warn" | "warning" => Ok(LogLevel::Warn),
            "error" => Ok(LogLevel::Error),
            "fatal" => Ok(LogLevel::Fatal),
            _ => Err("expected one of debug, info, warn, error, fatal".into()),
        }
    }
}

/// What `-b` says about the default bridge network.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DefaultBridge {
    /// No `-b`: berthd creates and manages `docker0`.
    Managed,
    /// `-b NAME`: use an existing bridge and leave its address alone.
    Existing(String),
    /// `-b none`: no default bridge network at all.
    Disabled,
}

/// Settings of the default bridge network (docker0).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BridgeConfig {
    pub bridge: DefaultBridge,
    /// `--bip`: the bridge's own address with the subnet's prefix.
    pub bip: Option<Ipv4Network>,
    /// `--fixed-cidr`, host bits cleared.
    pub fixed_cidr: Option<Ipv4Network>,
    pub mtu: u32,
    pub icc: bool,
    pub iptables: bool,
    pub ip_forward: bool,
    pub ip_masq: bool,
    pub userland_proxy: bool,
}

/// The daemon's validated configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    pub hosts: Vec<ListenAddr>,
    pub data_root: PathBuf,
    pub exec_root: PathBuf,
    pub pidfile: PathBuf,
    /// The daemon.json that was read, if any (SIGHUP reads it again).
    pub config_file: Option<PathBuf>,
    pub debug: bool,
    pub log_level: LogLevel,
    /// `--containerd`: use this containerd instead of starting one.
    pub containerd: Option<PathBuf>,
    pub bridge: BridgeConfig,
    /// Empty means the controller's built-in default pools.
    pub default_address_pools: Vec<AddressPool>,
    pub dns: Vec<IpAddr>,
}

impl Config {
    /// Reads the daemon.json the flags point at (the default one only if it
    /// exists), merges it with the flags and validates the result.
    pub fn load(flags: &Flags) -> Result<Config, ConfigError> {
        let (path, explicit) = match &flags.config_file {
            Some(p) => (PathBuf::from(p), true),
            None => (PathBuf::from(DEFAULT_CONFIG_FILE), false),
        };
        let file = match std::fs::read_to_string(&path) {
            Ok(text) => Some((Settings::from_json(&path, &text)?, path)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && !explicit => None,
            Err(e) => {
                return Err(ConfigError::File {
                    path,
                    reason: e.to_string(),
                })
            }
        };
        Config::resolve(flags, file)
    }

    /// Merges flags with an already-read daemon.json (its settings and path)
    /// and validates. A setting given both ways is refused, as dockerd does.
    pub fn resolve(
        flags: &Flags,
        file: Option<(Settings, PathBuf)>,
    ) -> Result<Config, ConfigError> {
        let from_flags = Settings::from_flags(flags)?;
        let (settings, config_file) = match file {
            Some((from_file, path)) => {
                let conflicts = Settings::conflicts(&from_flags, &from_file);
                if !conflicts.is_empty() {
                    return Err(ConfigError::File {
                        path,
                        reason: format!(
                            "the following directives are specified both as a flag and in the configuration file: {}",
                            conflicts.join(", ")
                        ),
                    });
                }
                (Settings::merge(from_flags, from_file), Some(path))
            }
            None => (from_flags, None),
        };
        Config::validate(settings, config_file)
    }

    fn validate(s: Settings, config_file: Option<PathBuf>) -> Result<Config, ConfigError> {
        let hosts = if s.hosts.is_empty() {
            vec![ListenAddr::Unix(DEFAULT_UNIX_SOCKET.into())]
        } else {
            s.hosts
                .iter()
                .map(|h| ListenAddr::parse(h).map_err(|e| ConfigError::invalid("-H/--host", h, e)))
                .collect::<Result<_, _>>()?
        };
        let bip = s
            .bip
            .as_deref()
            .map(|v| parse_cidr("--bip", v))
            .transpose()?;
        let fixed_cidr = s
            .fixed_cidr
            .as_deref()
            .map(|v| parse_cidr("--fixed-cidr", v).map(network_of))
            .transpose()?;
        let bridge = match s.bridge.as_deref() {
            None | Some("") => DefaultBridge::Managed,
            Some("none") => DefaultBridge::Disabled,
            Some(name) => {
                check_ifname(name).map_err(|e| ConfigError::invalid("-b/--bridge", name, e))?;
                DefaultBridge::Existing(name.to_string())
            }
        };
        if bridge != DefaultBridge::Managed && bip.is_some() {
            return Err(ConfigError::BridgeWithBip);
        }
        let mtu = s.mtu.unwrap_or(DEFAULT_MTU);
        if !(MIN_MTU..=MAX_MTU).contains(&mtu) {
            return Err(ConfigError::invalid(
                "--mtu",
                &mtu.to_string(),
                format!("must be between {MIN_MTU} and {MAX_MTU}"),
            ));
        }
        let icc = s.icc.unwrap_or(true);
        let iptables = s.iptables.unwrap_or(true);
        if !iptables && !icc {
            return Err(ConfigError::IccWithoutIptables);
        }
        let log_level = match s.log_level.as_deref() {
            None => LogLevel::Info,
            Some(l) => l
                .parse()
                .map_err(|e| ConfigError::invalid("-l/--log-level", l, e))?,
        };
        let default_address_pools = s
            .default_address_pools
            .iter()
            .map(|p| {
                AddressPool::try_from(p)
                    .map_err(|e| ConfigError::invalid("--default-address-pool", &p.to_string(), e))
            })
            .collect::<Result<_, _>>()?;
        let dns = s
            .dns
            .iter()
            .map(|d| d.parse().map_err(|e| ConfigError::invalid("--dns", d, e)))
            .collect::<Result<_, _>>()?;
        Ok(Config {
            hosts,
            data_root: abs_path("--data-root", s.data_root, DEFAULT_DATA_ROOT)?,
            exec_root: abs_path("--exec-root", s.exec_root, DEFAULT_EXEC_ROOT)?,
            pidfile: abs_path("-p/--pidfile", s.pidfile, DEFAULT_PIDFILE)?,
            config_file,
            debug: s.debug.unwrap_or(false),
            log_level,
            containerd: s.containerd.filter(|c| !c.is_empty()).map(PathBuf::from),
            bridge: BridgeConfig {
                bridge,
                bip,
                fixed_cidr,
                mtu,
                icc,
                iptables,
                ip_forward: s.ip_forward.unwrap_or(true),
                ip_masq: s.ip_masq.unwrap_or(true),
                userland_proxy: s.userland_proxy.unwrap_or(true),
            },
            default_address_pools,
            dns,
        })
    }

    /// The level logs are written at: `-D` wins over `--log-level`, as in dockerd.
    pub fn log_filter(&self) -> LevelFilter {
        if self.debug {
            return LevelFilter::DEBUG;
        }
        match self.log_level {
            LogLevel::Debug => LevelFilter::DEBUG,
            LogLevel::Info => LevelFilter::INFO,
            LogLevel::Warn => LevelFilter::WARN,
            LogLevel::Error | LogLevel::Fatal => LevelFilter::ERROR,
        }
    }
}

/// An IPv4 CIDR that must carry an explicit prefix (a bare address is
/// refused rather than taken as /32).
fn parse_cidr(flag: &'static str, value: &str) -> Result<Ipv4Network, ConfigError> {
    if !value.contains('/') {
        return Err(ConfigError::invalid(
            flag,
            value,
            "expected an IPv4 address with a prefix length, e.g. 172.18.0.1/16",
        ));
    }
    value
        .parse::<Ipv4Network>()
        .map_err(|e| ConfigError::invalid(flag, value, e))
}

fn network_of(net: Ipv4Network) -> Ipv4Network {
    Ipv4Network::new(net.network(), net.prefix()).expect("prefix already validated")
}

fn check_ifname(name: &str) -> Result<(), String> {
    if name.len() > MAX_IFNAME {
        return Err(format!(
            "interface names have at most {MAX_IFNAME} characters"
        ));
    }
    if name == "."
        || name == ".."
        || name.contains(['/', ':'])
        || name.contains(char::is_whitespace)
    {
        return Err("not a valid interface name".into());
    }
    Ok(())
}

fn abs_path(
    flag: &'static str,
    value: Option<String>,
    default: &str,
) -> Result<PathBuf, ConfigError> {
    let path = PathBuf::from(value.unwrap_or_else(|| default.to_string()));
    if !path.is_absolute() {
        return Err(ConfigError::invalid(
            flag,
            &path.display().to_string(),
            "must be an absolute path",
        ));
    }
    Ok(path)
}

#[cfg(test)]
mod tests;
