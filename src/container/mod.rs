//! Containers: OCI spec, containerd, root filesystem, logs.
//!
//! Running a container, as the daemon does it:
//! 1. [`spec::build_spec`] from the container's config;
//! 2. [`rootfs::OverlayRootfs::new`] over the image rootfs, then `prepare`;
//! 3. [`runtime::Containerd::create_container`] with the spec;
//! 4. [`logs::LogCapture::start`], `create_task` with its `task_io()`, then
//!    `attached()`; `start_task`;
//! 5. `wait` for the exit, `LogCapture::finish`, `delete_task`, and
//!    `delete_container` when the container is removed.

mod cgroup;
pub mod logs;
pub mod rootfs;
pub mod runtime;
pub mod spec;
mod supervisor;
