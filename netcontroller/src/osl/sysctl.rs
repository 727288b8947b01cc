//! Kernel parameters through /proc/sys. Network keys (`net.*`) resolve to the
//! calling thread's network namespace, so call these from a thread inside the
//! namespace meant (see [`super::run_in_netns`]).

use std::fs;
use std::path::PathBuf;

use tracing::debug;

use super::error::OslError;

/// Writes `value` to the sysctl `key` (dotted form, e.g. `net.ipv4.ip_forward`).
pub fn sysctl_set(key: &str, value: &str) -> Result<(), OslError> {
    let path = sysctl_path(key)?;
    fs::write(&path, value).map_err(|source| OslError::Sysctl {
        key: key.to_string(),
        source,
    })?;
    debug!(key, value, "sysctl set");
    Ok(())
}

/// Reads the sysctl `key`, without the trailing newline.
pub fn sysctl_get(key: &str) -> Result<String, OslError> {
    let path = sysctl_path(key)?;
    let raw = fs::read_to_string(&path).map_err(|source| OslError::Sysctl {
        key: key.to_string(),
        source,
    })?;
    Ok(raw.trim_end_matches('\n').to_string())
}

/// Maps a dotted key to its /proc/sys file, refusing keys that could name a
/// file outside /proc/sys. Dots separate components; interface names with
/// dots (VLANs) are not expressible in this form and are out of scope.
fn sysctl_path(key: &str) -> Result<PathBuf, OslError> {
    let invalid = |reason: &str| OslError::Invalid {
        what: "sysctl key",
        value: key.to_string(),
        reason: reason.to_string(),
    };
    if key.is_empty() {
        return Err(invalid("empty"));
    }
    let mut path = PathBuf::from("/proc/sys");
    for part in key.split('.') {
        if part.is_empty() {
            return Err(invalid("empty component"));
        }
        if !part
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
        {
            return Err(invalid("only letters, digits, '_' and '-' between dots"));
        }
        path.push(part);
    }
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::{ErrorKind, Kind};
    use crate::osl::netns::run_in_netns;
    use crate::osl::tests::TestNetns;

    #[test]
    fn keys_map_to_proc_sys_files() {
        assert_eq!(
            sysctl_path("net.ipv4.ip_forward").unwrap(),
            PathBuf::from("/proc/sys/net/ipv4/ip_forward")
        );
        assert_eq!(
            sysctl_path("net.ipv4.conf.br-0a1b.route_localnet").unwrap(),
            PathBuf::from("/proc/sys/net/ipv4/conf/br-0a1b/route_localnet")
        );
        for bad in [
            "",
            "net..ipv4",
            "net.ipv4.",
            "net/../../etc/passwd",
            "net.ipv4.a b",
        ] {
            let err = sysctl_path(bad).unwrap_err();
            assert_eq!(err.kind(), ErrorKind::InvalidArgument, "{bad}");
        }
    }

    #[test]
    fn unknown_key_is_not_found() {
        let err = sysctl_get("net.ipv4.berth_no_such_key").unwrap_err();
        assert_eq!(err.kind(), ErrorKind::NotFound);
    }

    #[test]
    fn values_are_per_network_namespace() {
        let (a, b) = (TestNetns::new(), TestNetns::new());
        run_in_netns(a.path(), || sysctl_set("net.ipv4.ip_forward", "1"))
            .unwrap()
            .unwrap();
        run_in_netns(b.path(), || sysctl_set("net.ipv4.ip_forward", "0"))
            .unwrap()
            .unwrap();
        let read = |ns: &TestNetns| {
            run_in_netns(ns.path(), || sysctl_get("net.ipv4.ip_forward"))
                .unwrap()
                .unwrap()
        };
        assert_eq!(read(&a), "1");
        assert_eq!(read(&b), "0");
    }
}
