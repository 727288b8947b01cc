//! The `/etc/hosts`, `/etc/resolv.conf` and `/etc/hostname` a container
//! gets, written under its directory and bind-mounted, as dockerd does.

use std::net::Ipv4Addr;

/// dockerd's fallback when the host names only local resolvers.
const DEFAULT_NAMESERVERS: [&str; 2] = ["8.8.8.8", "8.8.4.4"];
/// The embedded DNS server's address inside a container.
pub const EMBEDDED_DNS: &str = "127.0.0.11";

/// `/etc/hosts`: dockerd's fixed header, the container's own address(es)
/// with its hostname, then `--add-host` entries.
pub fn hosts(hostname: &str, own: &[Ipv4Addr], extra: &[String]) -> String {
    let mut out = String::from(
        "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\nfe00::0\tip6-localnet\nff00::0\tip6-mcastprefix\nff02::1\tip6-allnodes\nff02::2\tip6-allrouters\n",
    );
    for entry in extra {
        // `--add-host name:ip` arrives as "name:ip".
        if let Some((name, ip)) = entry.split_once(':') {
            out.push_str(&format!("{ip}\t{name}\n"));
        }
    }
    for ip in own {
        out.push_str(&format!("{ip}\t{hostname}\n"));
    }
    out
}

/// What shapes a container's resolv.conf.
#[derive(Debug, Clone, Default)]
pub struct ResolvOptions {
    /// `--dns` of the container, else of the daemon.
    pub servers: Vec<String>,
    pub search: Vec<String>,
    pub options: Vec<String>,
    /// On a user-defined network the embedded DNS answers at 127.0.0.11 and
    /// forwards the rest upstream.
    pub embedded: bool,
}

/// `/etc/resolv.conf` from the host's and the options. The host's local
/// resolvers (127.x) cannot be reached from a container's namespace and
/// are dropped; if none is left, dockerd's public defaults are used.
pub fn resolv_conf(host: &str, opts: &ResolvOptions) -> String {
    let mut host_servers = Vec::new();
    let mut host_search = Vec::new();
    let mut host_options = Vec::new();
    for line in host.lines() {
        let mut words = line.split_whitespace();
        match words.next() {
            Some("nameserver") => {
                if let Some(s) = words.next() {
                    let local = s
                        .parse::<Ipv4Addr>()
                        .map(|ip| ip.is_loopback())
                        .unwrap_or(s == "::1");
                    if !local {
                        host_servers.push(s.to_string());
                    }
                }
            }
            Some("search") => host_search = words.map(str::to_string).collect(),
            Some("options") => host_options.extend(words.map(str::to_string)),
            _ => {}
        }
    }
    let search = if opts.search.is_empty() {
        host_search
    } else {
        opts.search.clone()
    };
    let mut options = if opts.options.is_empty() {
        host_options
    } else {
        opts.options.clone()
    };
    let servers: Vec<String> = if opts.embedded {
        if !options.iter().any(|o| o.starts_with("ndots:")) {
            options.push("ndots:0".to_string());
        }
        vec![EMBEDDED_DNS.to_string()]
    } else if !opts.servers.is_empty() {
        opts.servers.clone()
    } else if !host_servers.is_empty() {
        host_servers
    } else {
        DEFAULT_NAMESERVERS.iter().map(|s| s.to_string()).collect()
    };
    let mut out = String::new();
    for s in servers {
        out.push_str(&format!("nameserver {s}\n"));
    }
    if !search.is_empty() {
        out.push_str(&format!("search {}\n", search.join(" ")));
    }
    if !options.is_empty() {
        out.push_str(&format!("options {}\n", options.join(" ")));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_has_header_extra_hosts_and_own_address() {
        let text = hosts(
            "abc",
            &[Ipv4Addr::new(172, 17, 0, 2)],
            &["db:10.0.0.5".to_string()],
        );
        assert!(text.starts_with("127.0.0.1\tlocalhost\n"));
        assert!(text.contains("10.0.0.5\tdb\n"));
        assert!(text.ends_with("172.17.0.2\tabc\n"));
    }

    #[test]
    fn default_bridge_drops_local_resolvers() {
        let host =
            "nameserver 127.0.0.53\nnameserver 10.1.1.1\nsearch example.com\noptions edns0\n";
        assert_eq!(
            resolv_conf(host, &ResolvOptions::default()),
            "nameserver 10.1.1.1\nsearch example.com\noptions edns0\n"
        );
        assert_eq!(
            resolv_conf("nameserver 127.0.0.53\n", &ResolvOptions::default()),
            "nameserver 8.8.8.8\nnameserver 8.8.4.4\n"
        );
        let dns = ResolvOptions {
            servers: vec!["1.1.1.1".into()],
            ..Default::default()
        };
        assert_eq!(
            resolv_conf(host, &dns),
            "nameserver 1.1.1.1\nsearch example.com\noptions edns0\n"
        );
    }

    #[test]
    fn user_networks_use_the_embedded_dns() {
        let opts = ResolvOptions {
            embedded: true,
            ..Default::default()
        };
        assert_eq!(
            resolv_conf("nameserver 10.1.1.1\n", &opts),
            "nameserver 127.0.0.11\noptions ndots:0\n"
        );
    }
}
