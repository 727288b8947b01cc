//! The command line, named and behaving as dockerd's.
//!
//! Every setting is optional here: `None` (or an empty list) means "not given
//! on the command line", which is what the daemon.json conflict check needs.
//! Defaults are applied after the merge, in [`super::Config::resolve`].

use clap::builder::BoolishValueParser;
use clap::Parser;

/// berthd's flags. Values stay strings until [`super::Config::resolve`]
/// parses them, so that every invalid value gets the same one-line message
/// whether it came from a flag or from daemon.json.
#[derive(Debug, Clone, Default, Parser)]
#[command(
    name = "berthd",
    about = "A dockerd-compatible container daemon built around a libnetwork-style network controller",
    disable_version_flag = true
)]
pub struct Flags {
    /// Daemon socket(s) to listen on: unix:///path or tcp://host:port (repeatable)
    #[arg(short = 'H', long = "host", value_name = "ADDR")]
    pub hosts: Vec<String>,

    /// Root directory of persistent state [default: /var/lib/berth]
    #[arg(long, value_name = "DIR")]
    pub data_root: Option<String>,

    /// Root directory of execution state [default: /var/run/berth]
    #[arg(long, value_name = "DIR")]
    pub exec_root: Option<String>,

    /// Path of the pid file [default: /var/run/berth.pid]
    #[arg(short = 'p', long, value_name = "FILE")]
    pub pidfile: Option<String>,

    /// Daemon configuration file [default: /etc/berth/daemon.json]
    #[arg(long, value_name = "FILE")]
    pub config_file: Option<String>,

    /// Enable debug mode
    #[arg(short = 'D', long, num_args = 0..=1, default_missing_value = "true",
          require_equals = true, value_parser = BoolishValueParser::new(), value_name = "BOOL")]
    pub debug: Option<bool>,

    /// Logging level: debug, info, warn, error, fatal [default: info]
    #[arg(short = 'l', long, value_name = "LEVEL")]
    pub log_level: Option<String>,

    /// containerd socket to use instead of starting a private containerd
    #[arg(long, value_name = "SOCKET")]
    pub containerd: Option<String>,

    /// Attach containers to an existing network bridge ("none" disables the default bridge)
    #[arg(short = 'b', long, value_name = "NAME")]
    pub bridge: Option<String>,

    /// Address and prefix of the default bridge (e.g. 172.18.0.1/16)
    #[arg(long, value_name = "CIDR")]
    pub bip: Option<String>,

    /// Limit container addresses on the default bridge to this range
    #[arg(long, value_name = "CIDR")]
    pub fixed_cidr: Option<String>,

    /// MTU of the default bridge and its containers' interfaces [default: 1500]
    #[arg(long, value_name = "BYTES")]
    pub mtu: Option<String>,

    /// Allow traffic between containers on the default bridge [default: true]
    #[arg(long, num_args = 0..=1, default_missing_value = "true", require_equals = true,
          value_parser = BoolishValueParser::new(), value_name = "BOOL")]
    pub icc: Option<bool>,

    /// Program iptables rules [default: true]
    #[arg(long, num_args = 0..=1, default_missing_value = "true", require_equals = true,
          value_parser = BoolishValueParser::new(), value_name = "BOOL")]
    pub iptables: Option<bool>,

    /// Enable net.ipv4.ip_forward [default: true]
    #[arg(long, num_args = 0..=1, default_missing_value = "true", require_equals = true,
          value_parser = BoolishValueParser::new(), value_name = "BOOL")]
    pub ip_forward: Option<bool>,

    /// Masquerade traffic leaving the default bridge [default: true]
    #[arg(long, num_args = 0..=1, default_missing_value = "true", require_equals = true,
          value_parser = BoolishValueParser::new(), value_name = "BOOL")]
    pub ip_masq: Option<bool>,

    /// Serve loopback access to published ports in userland [default: true]
    #[arg(long, num_args = 0..=1, default_missing_value = "true", require_equals = true,
          value_parser = BoolishValueParser::new(), value_name = "BOOL")]
    pub userland_proxy: Option<bool>,

    /// Pool for networks' subnets: base=CIDR,size=N (repeatable)
    #[arg(long = "default-address-pool", value_name = "SPEC")]
    pub default_address_pools: Vec<String>,

    /// DNS server for containers (repeatable)
    #[arg(long, value_name = "IP")]
    pub dns: Vec<String>,

    /// Print version information and quit
    #[arg(short = 'v', long)]
    pub version: bool,
}
