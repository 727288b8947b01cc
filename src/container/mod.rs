//! Containers: the store and lifecycle ([`manager`]), OCI spec, containerd,
//! root filesystem, logs.
//!
//! Running a container, as the manager does it:
//! 1. a sandbox from the network controller, one endpoint per network in
//!    order, then /etc/hostname, /etc/hosts, /etc/resolv.conf under the
//!    container's directory ([`netfiles`]);
//! 2. [`spec::build_spec`] with the sandbox's namespace and those files;
//! 3. [`rootfs::OverlayRootfs::new`] over the image rootfs, then `prepare`;
//! 4. [`runtime::Containerd::create_container`] with the spec;
//! 5. [`logs::LogCapture::start`], `create_task` with its `task_io()`, then
//!    `attached()`; `start_task`;
//! 6. a watcher `wait`s for the exit, `LogCapture::finish`, `delete_task`,
//!    `delete_container`, the sandbox deleted, then the restart policy.

mod cgroup;
pub mod create;
pub mod error;
pub mod logs;
pub mod manager;
pub mod names;
pub mod netfiles;
pub mod options;
pub mod record;
pub mod rootfs;
pub mod runtime;
pub mod signal;
pub mod spec;
pub mod stale;
pub mod store;
mod supervisor;

pub use error::ContainerError;
pub use manager::{ContainerManager, ManagerConfig, Started};
