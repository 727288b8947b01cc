//! API listen addresses (`-H`), parsed as dockerd parses them.

use std::fmt;
use std::path::PathBuf;

/// The unix socket dockerd (and so berthd) listens on when no `-H` is given.
pub const DEFAULT_UNIX_SOCKET: &str = "/var/run/docker.sock";
/// dockerd's port for plain-HTTP TCP listeners.
const DEFAULT_TCP_PORT: u16 = 2375;
/// dockerd binds `tcp://:PORT` to localhost, not to every address.
const DEFAULT_TCP_HOST: &str = "127.0.0.1";

/// Where the Engine API is served.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ListenAddr {
    Unix(PathBuf),
    /// `host` is a name or an address (IPv6 without brackets).
    Tcp {
        host: String,
        port: u16,
    },
}

impl ListenAddr {
    /// Parses `unix:///path`, `unix://`, `tcp://host:port`, `tcp://:port`,
    /// `tcp://host` and a bare `host:port` (taken as tcp, as dockerd does).
    pub fn parse(spec: &str) -> Result<ListenAddr, String> {
        let (scheme, rest) = spec.split_once("://").unwrap_or(("tcp", spec));
        match scheme {
            "unix" => {
                if rest.is_empty() {
                    return Ok(ListenAddr::Unix(DEFAULT_UNIX_SOCKET.into()));
                }
                if !rest.starts_with('/') {
                    return Err("the socket path must be absolute (unix:///path)".into());
                }
                Ok(ListenAddr::Unix(rest.into()))
            }
            "tcp" => parse_tcp(rest),
            "fd" | "npipe" | "ssh" => Err(format!("{scheme}:// listeners are not supported")),
            _ => Err(format!("unknown scheme {scheme:?} (use unix:// or tcp://)")),
        }
    }
}

fn parse_tcp(hostport: &str) -> Result<ListenAddr, String> {
    if hostport.contains('/') {
        return Err("a tcp address takes no path".into());
    }
    let (host, port) = if let Some(bracketed) = hostport.strip_prefix('[') {
        let (host, after) = bracketed
            .split_once(']')
            .ok_or("missing ']' in IPv6 address")?;
        match after {
            "" => (host, None),
            _ => (
                host,
                Some(after.strip_prefix(':').ok_or("expected ':' after ']'")?),
            ),
        }
    } else {
        match hostport.rsplit_once(':') {
            Some((host, _)) if host.contains(':') => {
                return Err("put an IPv6 address in brackets: tcp://[::1]:2375".into())
            }
            Some((host, port)) => (host, Some(port)),
            None => (hostport, None),
        }
    };
    let port = match port {
        None | Some("") => DEFAULT_TCP_PORT,
        Some(p) => match p.parse::<u16>() {
            Ok(0) | Err(_) => return Err(format!("invalid port {p:?}")),
            Ok(n) => n,
        },
    };
    let host = if host.is_empty() {
        DEFAULT_TCP_HOST
    } else {
        host
    };
    Ok(ListenAddr::Tcp {
        host: host.to_string(),
        port,
    })
}

impl fmt::Display for ListenAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ListenAddr::Unix(path) => write!(f, "unix://{}", path.display()),
            ListenAddr::Tcp { host, port } if host.contains(':') => {
                write!(f, "tcp://[{host}]:{port}")
            }
            ListenAddr::Tcp { host, port } => write!(f, "tcp://{host}:{port}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tcp(host: &str, port: u16) -> ListenAddr {
        ListenAddr::Tcp {
            host: host.into(),
            port,
        }
    }

    #[test]
    fn unix_forms() {
        assert_eq!(
            ListenAddr::parse("unix:///run/b.sock"),
            Ok(ListenAddr::Unix("/run/b.sock".into()))
        );
        assert_eq!(
            ListenAddr::parse("unix://"),
            Ok(ListenAddr::Unix(DEFAULT_UNIX_SOCKET.into()))
        );
        assert!(ListenAddr::parse("unix://relative.sock").is_err());
    }

    #[test]
    fn tcp_forms() {
        assert_eq!(
            ListenAddr::parse("tcp://0.0.0.0:2376"),
            Ok(tcp("0.0.0.0", 2376))
        );
        assert_eq!(ListenAddr::parse("tcp://:4243"), Ok(tcp("127.0.0.1", 4243)));
        assert_eq!(ListenAddr::parse("tcp://example"), Ok(tcp("example", 2375)));
        assert_eq!(ListenAddr::parse("10.0.0.1:99"), Ok(tcp("10.0.0.1", 99)));
        assert_eq!(ListenAddr::parse("tcp://[::1]:2375"), Ok(tcp("::1", 2375)));
        assert_eq!(ListenAddr::parse("tcp://[::1]"), Ok(tcp("::1", 2375)));
    }

    #[test]
    fn bad_addresses() {
        for bad in [
            "tcp://host:port",
            "tcp://host:0",
            "tcp://host:70000",
            "tcp://h:1/path",
            "tcp://::1:2375",
            "fd://",
            "http://x:1",
        ] {
            assert!(ListenAddr::parse(bad).is_err(), "{bad} accepted");
        }
    }

    #[test]
    fn display_round_trips() {
        for spec in ["unix:///a/b.sock", "tcp://1.2.3.4:5", "tcp://[::1]:2375"] {
            assert_eq!(ListenAddr::parse(spec).unwrap().to_string(), spec);
        }
    }
}
