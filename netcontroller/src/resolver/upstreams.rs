//! Which servers the resolver forwards to, chosen as dockerd chooses them.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

/// glibc reads at most three nameservers (MAXNS); dockerd keeps as many.
const MAX_UPSTREAMS: usize = 3;
/// dockerd's fallback when the host names no usable server.
const PUBLIC_DEFAULTS: [Ipv4Addr; 2] = [Ipv4Addr::new(8, 8, 8, 8), Ipv4Addr::new(8, 8, 4, 4)];

/// dockerd's choice of upstreams: `--dns` servers if given, else the nameservers of the host's resolv.conf without 127.x entries, else 8.8.8.8/8.8.4.4.
///
/// Sandboxes have IPv4 only, so IPv6 nameservers of the host are left out
/// too, as dockerd does when IPv6 is off. At most three are kept, port 53.
pub fn upstreams_from(dns_flag: &[Ipv4Addr], host_resolv_conf: &str) -> Vec<SocketAddr> {
    let chosen: Vec<Ipv4Addr> = if !dns_flag.is_empty() {
        dns_flag.to_vec()
    } else {
        let from_host: Vec<Ipv4Addr> = host_nameservers(host_resolv_conf)
            .filter(|ip| !ip.is_loopback())
            .collect();
        if from_host.is_empty() {
            PUBLIC_DEFAULTS.to_vec()
        } else {
            from_host
        }
    };
    chosen
        .into_iter()
        .take(MAX_UPSTREAMS)
        .map(|ip| SocketAddr::from((ip, 53)))
        .collect()
}

/// The IPv4 `nameserver` entries of a resolv.conf, in order.
fn host_nameservers(resolv_conf: &str) -> impl Iterator<Item = Ipv4Addr> + '_ {
    resolv_conf.lines().filter_map(|line| {
        let mut words = line.split_whitespace();
        if words.next() != Some("nameserver") {
            return None;
        }
        match words.next()?.parse::<IpAddr>().ok()? {
            IpAddr::V4(ip) => Some(ip),
            IpAddr::V6(_) => None,
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addrs(list: &[&str]) -> Vec<SocketAddr> {
        list.iter().map(|s| s.parse().unwrap()).collect()
    }

    #[test]
    fn dns_flag_wins_over_host() {
        let got = upstreams_from(&[Ipv4Addr::new(9, 9, 9, 9)], "nameserver 1.1.1.1\n");
        assert_eq!(got, addrs(&["9.9.9.9:53"]));
    }

    #[test]
    fn host_servers_without_loopback_ipv6_and_comments() {
        let conf = "# generated\n\
                    nameserver 127.0.0.53\n\
                    ; nameserver 5.5.5.5\n\
                    #nameserver 6.6.6.6\n\
                    nameserver ::1\n\
                    nameserver 2001:db8::1\n\
                    \tnameserver   1.1.1.1  # trailing\n\
                    search example.com\n\
                    nameserver 192.0.2.53\n\
                    nameserver not-an-ip\n";
        assert_eq!(
            upstreams_from(&[], conf),
            addrs(&["1.1.1.1:53", "192.0.2.53:53"])
        );
    }

    #[test]
    fn only_loopback_or_nothing_falls_back_to_public_defaults() {
        let defaults = addrs(&["8.8.8.8:53", "8.8.4.4:53"]);
        assert_eq!(upstreams_from(&[], "nameserver 127.0.0.53\n"), defaults);
        assert_eq!(upstreams_from(&[], ""), defaults);
    }

    #[test]
    fn at_most_three() {
        let conf =
            "nameserver 1.1.1.1\nnameserver 2.2.2.2\nnameserver 3.3.3.3\nnameserver 4.4.4.4\n";
        assert_eq!(upstreams_from(&[], conf).len(), 3);
        let flag: Vec<Ipv4Addr> = (1..=5).map(|i| Ipv4Addr::new(10, 0, 0, i)).collect();
        assert_eq!(upstreams_from(&flag, "").len(), 3);
    }
}
