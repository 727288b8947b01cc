//! Errors of the OS layer, each naming the object and namespace involved.

use std::io;
use std::path::PathBuf;

use nix::errno::Errno;

use crate::error::{ErrorKind, Kind};

/// Why an OS-layer operation failed.
#[derive(Debug, thiserror::Error)]
pub enum OslError {
    /// The link asked for does not exist in that namespace.
    #[error("link {name} not found in {netns}")]
    LinkNotFound { name: String, netns: String },
    /// A link of that name already exists in that namespace.
    #[error("link {name} already exists in {netns}")]
    LinkExists { name: String, netns: String },
    /// A name, key or value the kernel would refuse, caught before asking it.
    #[error("invalid {what} '{value}': {reason}")]
    Invalid {
        what: &'static str,
        value: String,
        reason: String,
    },
    /// A netlink request failed; `errno` is the kernel's answer when it gave one.
    #[error("{op} in {netns}: {source}")]
    Netlink {
        op: String,
        netns: String,
        errno: Option<Errno>,
        #[source]
        source: rtnetlink::Error,
    },
    /// Creating, entering or removing a network namespace failed.
    #[error("{op} {}: {source}", path.display())]
    Netns {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// Reading or writing a sysctl failed.
    #[error("sysctl {key}: {source}")]
    Sysctl {
        key: String,
        #[source]
        source: io::Error,
    },
    /// A helper thread or the async runtime was not available.
    #[error("{0}")]
    Runtime(String),
}

impl OslError {
    /// Wraps an rtnetlink error, keeping the kernel's errno so callers can
    /// tell "exists" and "no such device" from real failures.
    pub(crate) fn netlink(op: impl Into<String>, netns: &str, source: rtnetlink::Error) -> Self {
        OslError::Netlink {
            op: op.into(),
            netns: netns.to_string(),
            errno: netlink_errno(&source),
            source,
        }
    }

    pub(crate) fn netns(op: &'static str, path: impl Into<PathBuf>, source: io::Error) -> Self {
        OslError::Netns {
            op,
            path: path.into(),
            source,
        }
    }

    /// The kernel's errno behind this error, if there is one.
    pub fn errno(&self) -> Option<Errno> {
        match self {
            OslError::Netlink { errno, .. } => *errno,
            OslError::Netns { source, .. } | OslError::Sysctl { source, .. } => {
                source.raw_os_error().map(Errno::from_raw)
            }
            _ => None,
        }
    }
}

/// The errno a netlink NACK carries (the kernel sends it negated).
pub(crate) fn netlink_errno(e: &rtnetlink::Error) -> Option<Errno> {
    match e {
        rtnetlink::Error::NetlinkError(msg) => msg.code.map(|c| Errno::from_raw(-c.get())),
        _ => None,
    }
}

impl Kind for OslError {
    fn kind(&self) -> ErrorKind {
        match self {
            OslError::LinkNotFound { .. } => ErrorKind::NotFound,
            OslError::LinkExists { .. } => ErrorKind::Conflict,
            OslError::Invalid { .. } => ErrorKind::InvalidArgument,
            OslError::Runtime(_) => ErrorKind::System,
            _ => match self.errno() {
                Some(Errno::ENOENT | Errno::ENODEV) => ErrorKind::NotFound,
                Some(Errno::EEXIST | Errno::EBUSY | Errno::EADDRINUSE) => ErrorKind::Conflict,
                _ => ErrorKind::System,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use std::num::NonZeroI32;

    use rtnetlink::packet_core::ErrorMessage;

    use super::*;

    fn nl_error(errno: i32) -> rtnetlink::Error {
        let mut msg = ErrorMessage::default();
        msg.code = NonZeroI32::new(-errno);
        rtnetlink::Error::NetlinkError(msg)
    }

    #[test]
    fn kernel_answers_map_to_kinds() {
        let exists = OslError::netlink("add link", "ns", nl_error(Errno::EEXIST as i32));
        assert_eq!(exists.kind(), ErrorKind::Conflict);
        assert_eq!(exists.errno(), Some(Errno::EEXIST));
        let gone = OslError::netlink("del link", "ns", nl_error(Errno::ENODEV as i32));
        assert_eq!(gone.kind(), ErrorKind::NotFound);
        let other = OslError::netlink("add route", "ns", nl_error(Errno::ENETUNREACH as i32));
        assert_eq!(other.kind(), ErrorKind::System);
        let missing = OslError::netns(
            "open",
            "/nope",
            io::Error::from_raw_os_error(Errno::ENOENT as i32),
        );
        assert_eq!(missing.kind(), ErrorKind::NotFound);
    }

    #[test]
    fn messages_name_the_object_and_namespace() {
        let e = OslError::LinkNotFound {
            name: "br-0123".into(),
            netns: "/run/x".into(),
        };
        assert_eq!(e.to_string(), "link br-0123 not found in /run/x");
    }
}
