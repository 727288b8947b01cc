//! berthd: a dockerd-compatible daemon built around the netcontroller crate.

pub mod container;
pub mod image;
