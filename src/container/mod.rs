//! Containers: store, lifecycle, OCI spec, containerd.

mod cgroup;
pub mod logs;
pub mod rootfs;
pub mod runtime;
pub mod spec;
mod supervisor;
