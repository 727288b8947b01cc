use clap::Parser;

use super::*;

fn flags(args: &[&str]) -> Flags {
    Flags::try_parse_from(std::iter::once("berthd").chain(args.iter().copied())).unwrap()
}

fn config(args: &[&str]) -> Result<Config, ConfigError> {
    Config::resolve(&flags(args), None)
}

fn error(args: &[&str]) -> String {
    config(args).unwrap_err().to_string()
}

#[test]
fn defaults_are_dockerds() {
    let c = config(&[]).unwrap();
    assert_eq!(c.hosts, [ListenAddr::Unix("/var/run/docker.sock".into())]);
    assert_eq!(c.data_root, PathBuf::from("/var/lib/berth"));
    assert_eq!(c.exec_root, PathBuf::from("/var/run/berth"));
    assert_eq!(c.pidfile, PathBuf::from("/var/run/berth.pid"));
    assert_eq!(c.log_level, LogLevel::Info);
    assert_eq!(c.log_filter(), LevelFilter::INFO);
    let b = &c.bridge;
    assert_eq!(b.bridge, DefaultBridge::Managed);
    assert_eq!((b.bip, b.fixed_cidr, b.mtu), (None, None, 1500));
    assert!(b.icc && b.iptables && b.ip_forward && b.ip_masq && b.userland_proxy);
    assert!(c.default_address_pools.is_empty() && c.dns.is_empty());
}

#[test]
fn boolean_flags_take_bare_and_explicit_forms() {
    let c = config(&["--icc=false", "--ip-masq", "--userland-proxy=0", "-D"]).unwrap();
    assert!(!c.bridge.icc);
    assert!(c.bridge.ip_masq);
    assert!(!c.bridge.userland_proxy);
    assert!(c.debug);
    assert_eq!(c.log_filter(), LevelFilter::DEBUG);
    assert!(!config(&["--debug=false"]).unwrap().debug);
    // pflag's rule: a bool flag's value must be attached with '='.
    assert!(Flags::try_parse_from(["berthd", "--icc", "false"]).is_err());
    assert!(Flags::try_parse_from(["berthd", "--icc=maybe"]).is_err());
}

#[test]
fn typed_values() {
    let c = config(&[
        "-H",
        "unix:///tmp/a.sock",
        "--host=tcp://127.0.0.1:2375",
        "--bip",
        "10.5.0.1/16",
        "--fixed-cidr",
        "10.5.1.7/24",
        "--mtu",
        "9000",
        "--default-address-pool",
        "base=10.10.0.0/16,size=24",
        "--default-address-pool=base=10.20.0.0/16,size=26",
        "--dns",
        "1.1.1.1",
        "--dns",
        "2606:4700::1111",
        "-l",
        "warn",
        "--containerd",
        "/run/containerd/containerd.sock",
        "--data-root=/srv/berth",
    ])
    .unwrap();
    assert_eq!(c.hosts.len(), 2);
    assert_eq!(c.bridge.bip, Some("10.5.0.1/16".parse().unwrap()));
    assert_eq!(c.bridge.fixed_cidr, Some("10.5.1.0/24".parse().unwrap()));
    assert_eq!(c.bridge.mtu, 9000);
    assert_eq!(
        c.default_address_pools,
        [
            AddressPool {
                base: "10.10.0.0/16".parse().unwrap(),
                size: 24
            },
            AddressPool {
                base: "10.20.0.0/16".parse().unwrap(),
                size: 26
            }
        ]
    );
    assert_eq!(c.dns.len(), 2);
    assert_eq!(c.log_filter(), LevelFilter::WARN);
    assert_eq!(
        c.containerd,
        Some(PathBuf::from("/run/containerd/containerd.sock"))
    );
    assert_eq!(c.data_root, PathBuf::from("/srv/berth"));
}

#[test]
fn bridge_modes() {
    assert_eq!(
        config(&["-b", "br0"]).unwrap().bridge.bridge,
        DefaultBridge::Existing("br0".into())
    );
    assert_eq!(
        config(&["--bridge=none"]).unwrap().bridge.bridge,
        DefaultBridge::Disabled
    );
    assert!(error(&["-b", "a-very-long-bridge-name"]).starts_with("invalid -b/--bridge"));
}

#[test]
fn refused_combinations_use_dockerds_words() {
    assert_eq!(
        error(&["-b", "br0", "--bip", "10.0.0.1/24"]),
        "You specified -b & --bip, mutually exclusive options. Please specify only one"
    );
    assert!(error(&["-b", "none", "--bip", "10.0.0.1/24"]).starts_with("You specified -b & --bip"));
    assert_eq!(
        error(&["--iptables=false", "--icc=false"]),
        "You specified --iptables=false with --icc=false. ICC=false uses iptables to function. Please set --icc or --iptables to true"
    );
    assert!(config(&["--iptables=false"]).is_ok());
}

#[test]
fn invalid_values_name_their_flag() {
    let cases: &[(&[&str], &str)] = &[
        (&["--bip", "10.0.0.1/33"], "invalid --bip \"10.0.0.1/33\""),
        (&["--bip", "10.0.0.1"], "invalid --bip \"10.0.0.1\""),
        (&["--bip", "fe80::1/64"], "invalid --bip"),
        (&["--fixed-cidr", "banana"], "invalid --fixed-cidr"),
        (&["--mtu", "67"], "invalid --mtu \"67\""),
        (&["--mtu", "65536"], "invalid --mtu \"65536\""),
        (&["--mtu", "big"], "invalid --mtu \"big\""),
        (
            &["--default-address-pool", "base=10.0.0.0/8"],
            "invalid --default-address-pool",
        ),
        (
            &["--default-address-pool", "base=10.0.0.0/16,size=8"],
            "invalid --default-address-pool",
        ),
        (&["--dns", "1.2.3"], "invalid --dns \"1.2.3\""),
        (&["-H", "fd://"], "invalid -H/--host \"fd://\""),
        (&["--log-level", "loud"], "invalid -l/--log-level \"loud\""),
        (&["--data-root", "relative"], "invalid --data-root"),
        (&["--pidfile", "x.pid"], "invalid -p/--pidfile"),
    ];
    for (args, prefix) in cases {
        let msg = error(args);
        assert!(msg.starts_with(prefix), "{args:?}: {msg}");
        assert!(!msg.contains('\n'), "{args:?}: {msg}");
    }
    assert!(config(&["--mtu", "68"]).is_ok());
    assert!(config(&["--mtu", "65535"]).is_ok());
}

#[test]
fn file_settings_apply_and_conflicts_are_refused() {
    let path = PathBuf::from("/etc/berth/daemon.json");
    let file = Settings::from_json(
        &path,
        r#"{"bip": "10.1.0.1/24", "mtu": 1400, "icc": false}"#,
    )
    .unwrap();

    let c = Config::resolve(&flags(&["--iptables"]), Some((file.clone(), path.clone()))).unwrap();
    assert_eq!(c.bridge.bip, Some("10.1.0.1/24".parse().unwrap()));
    assert_eq!(c.bridge.mtu, 1400);
    assert!(!c.bridge.icc);
    assert_eq!(c.config_file, Some(path.clone()));

    let err = Config::resolve(
        &flags(&["--bip", "10.0.0.1/24", "--mtu=1400"]),
        Some((file.clone(), path.clone())),
    )
    .unwrap_err()
    .to_string();
    assert_eq!(
        err,
        "unable to configure the daemon with file /etc/berth/daemon.json: the following directives are specified both as a flag and in the configuration file: bip: (from flag: 10.0.0.1/24, from file: 10.1.0.1/24), mtu: (from flag: 1400, from file: 1400)"
    );

    // Cross-source checks see the merged result.
    let err = Config::resolve(&flags(&["--iptables=false"]), Some((file, path))).unwrap_err();
    assert!(matches!(err, ConfigError::IccWithoutIptables));
}

#[test]
fn a_named_config_file_must_exist() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nope.json");
    let err = Config::load(&flags(&["--config-file", missing.to_str().unwrap()])).unwrap_err();
    assert!(matches!(err, ConfigError::File { .. }), "{err}");

    let present = dir.path().join("daemon.json");
    std::fs::write(&present, r#"{"dns": ["9.9.9.9"]}"#).unwrap();
    let c = Config::load(&flags(&["--config-file", present.to_str().unwrap()])).unwrap();
    assert_eq!(c.dns, ["9.9.9.9".parse::<IpAddr>().unwrap()]);
}
