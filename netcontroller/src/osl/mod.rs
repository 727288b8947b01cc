//! OS layer: network namespaces, netlink, sysctl.
