//! Network drivers registered into the controller by the daemon.
//!
//! - [`null::NullDriver`] (`none`): the sandbox keeps only `lo`.
//! - [`host::HostDriver`] (`host`): containers share the daemon's namespace.
//! - [`bridge::BridgeDriver`] (`bridge`): a Linux bridge per network, a veth
//!   pair per endpoint.

pub mod bridge;
pub mod host;
pub mod null;
