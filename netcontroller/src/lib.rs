//! A libnetwork-style network controller.
//!
//! The controller owns networks, endpoints and sandboxes, hands out subnets,
//! addresses and host ports, persists everything it owns, and delegates the
//! kernel work of each network type to a [`driver::Driver`] registered by the
//! daemon. It never names a concrete driver.

pub mod controller;
pub mod driver;
pub mod error;
pub mod firewall;
pub mod ipam;
pub mod model;
pub mod osl;
pub mod portalloc;
pub mod proxy;
pub mod resolver;
pub mod store;
