//! systemd's readiness protocol: a datagram to `$NOTIFY_SOCKET`.

use std::io;
use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{SocketAddr, UnixDatagram};

const NOTIFY_SOCKET: &str = "NOTIFY_SOCKET";

/// Sends `state` (e.g. "READY=1") when `$NOTIFY_SOCKET` is set; does
/// nothing otherwise.
pub fn notify(state: &str) -> io::Result<()> {
    let Some(target) = std::env::var_os(NOTIFY_SOCKET) else {
        return Ok(());
    };
    let target = target
        .into_string()
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "NOTIFY_SOCKET is not UTF-8"))?;
    let addr = socket_addr(&target)?;
    let socket = UnixDatagram::unbound()?;
    socket.send_to_addr(state.as_bytes(), &addr)?;
    tracing::debug!(state, socket = %target, "notified service manager");
    Ok(())
}

/// A path, or `@name` for an abstract socket.
fn socket_addr(target: &str) -> io::Result<SocketAddr> {
    match target.strip_prefix('@') {
        Some(name) => SocketAddr::from_abstract_name(name.as_bytes()),
        None => SocketAddr::from_pathname(target),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn abstract_and_path_addresses() {
        let abs = socket_addr("@/org/freedesktop/systemd1/notify").unwrap();
        assert_eq!(
            abs.as_abstract_name(),
            Some(&b"/org/freedesktop/systemd1/notify"[..])
        );
        let path = socket_addr("/run/systemd/notify").unwrap();
        assert_eq!(
            path.as_pathname(),
            Some(std::path::Path::new("/run/systemd/notify"))
        );
    }
}
