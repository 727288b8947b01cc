//! OS layer: network namespaces, netlink, sysctl.
//!
//! Everything the controller and the drivers ask of the kernel goes through
//! here. Namespaces are only ever entered on threads kept for that purpose.

mod error;
mod netlink;
mod netns;
mod rawlink;
mod sysctl;
mod worker;

pub use error::OslError;
pub use netlink::{check_ifname, Link, NetlinkHandle, VethPair};
pub use netns::{create_netns, delete_netns, run_in_netns};
pub use sysctl::{sysctl_get, sysctl_set};

#[cfg(test)]
mod tests;
