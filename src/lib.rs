//! berthd: a dockerd-compatible daemon built around the netcontroller crate.

pub mod api;
pub mod config;
pub mod container;
pub mod daemon;
pub mod events;
pub mod image;
