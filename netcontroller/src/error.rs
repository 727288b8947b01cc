//! The kinds every error in the controller and its drivers is sorted into.
//!
//! Each module has its own typed error; each of them answers `kind()`, and the
//! API maps a kind to an HTTP status in exactly one place (moby's errdefs idea).

/// What sort of failure an error is, independent of where it came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// The object asked for does not exist.
    NotFound,
    /// The request is malformed or names impossible values.
    InvalidArgument,
    /// The request clashes with existing state (duplicate name, taken address or port).
    Conflict,
    /// The request is understood but not allowed (predefined network, network in use).
    Forbidden,
    /// A resource ran out (no free subnet, no free address, no free port).
    Unavailable,
    /// Something failed in the system underneath (netlink, iptables, disk).
    System,
}

/// Implemented by every error type of the controller and its drivers.
pub trait Kind {
    fn kind(&self) -> ErrorKind;
}
