//! Container lifecycle: create, start (sandbox, endpoints, network files,
//! spec, task, logs), the exit of a task (teardown, restart policy,
//! AutoRemove), stop, kill, restart, remove, and restore at daemon start.
//!
//! Every step that changes a container runs under its `op` lock; the task's
//! exit is handled by one watcher per run, which does all the teardown, so
//! stop and kill only signal and wait for the watcher to finish.
//!
//! The submodules add to [`ContainerManager`]'s impl and share this
//! module's imports.

mod exit;
mod lifetime;
mod networks;
mod start;

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use netcontroller::controller::{Controller, EndpointOptions, PREDEFINED};
use netcontroller::error::{ErrorKind, Kind};
use nix::sys::signal::Signal;
use tracing::{debug, info, warn};

use super::create::{build_record, with_default_tag};
use super::error::{ContainerError, Result};
use super::logs::LogCapture;
use super::names::{random_name, valid_name};
use super::netfiles::{hosts, resolv_conf, ResolvOptions};
use super::record::{Attachment, ContainerRecord, EndpointState, NetworkMode, Status};
use super::rootfs::OverlayRootfs;
use super::runtime::Containerd;
use super::signal::parse_signal;
use super::spec::{build_spec, BindMount, SpecParams};
use super::store::{ContainerStore, Entry};
use crate::api::container_types::{port_requests, CreateBody, NetworkRequest};
use crate::events::EventBus;
use crate::image::ImageStore;

/// dockerd's default stop timeout.
const DEFAULT_STOP_TIMEOUT: i64 = 10;
/// First delay before a restart-policy restart; doubled per quick exit.
const RESTART_DELAY: Duration = Duration::from_millis(100);

/// What the manager needs from the daemon's configuration.
#[derive(Debug, Clone)]
pub struct ManagerConfig {
    /// `<data-root>/containers`.
    pub root: PathBuf,
    /// `<exec-root>/containers`: the task's FIFOs.
    pub run_root: PathBuf,
    /// The daemon's `--dns`.
    pub dns: Vec<String>,
    /// The network of NetworkMode "default": `bridge`, or `none` with `-b none`.
    pub default_network: String,
    /// Parent cgroup of the containers' cgroups.
    pub cgroup_parent: String,
}

/// The outcome of `start` when nothing had to be done.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Started {
    Now,
    AlreadyRunning,
}

pub struct ContainerManager {
    containerd: Arc<Containerd>,
    controller: Arc<Controller>,
    images: ImageStore,
    events: Arc<EventBus>,
    store: ContainerStore,
    config: ManagerConfig,
    shutting_down: AtomicBool,
}

fn invalid(msg: impl Into<String>) -> ContainerError {
    ContainerError::Invalid(msg.into())
}

impl ContainerManager {
    /// Opens the store under `config.root`; call [`ContainerManager::restore`]
    /// once the network controller is restored.
    pub fn open(
        config: ManagerConfig,
        containerd: Arc<Containerd>,
        controller: Arc<Controller>,
        images: ImageStore,
        events: Arc<EventBus>,
    ) -> Result<Arc<ContainerManager>> {
        let (store, problems) = ContainerStore::open(&config.root)?;
        for p in problems {
            warn!(problem = %p, "container store");
        }
        std::fs::create_dir_all(&config.run_root).map_err(ContainerError::io(&config.run_root))?;
        Ok(Arc::new(ContainerManager {
            containerd,
            controller,
            images,
            events,
            store,
            config,
            shutting_down: AtomicBool::new(false),
        }))
    }

    pub fn store(&self) -> &ContainerStore {
        &self.store
    }

    pub fn controller(&self) -> &Arc<Controller> {
        &self.controller
    }

    pub fn get(&self, key: &str) -> Result<Arc<Entry>> {
        self.store.get(key)
    }

    /// The id of the image `name` names, if any.
    pub fn image_id_of(&self, name: &str) -> Option<String> {
        self.images.get(name).ok().map(|i| i.id)
    }

    // ---- create -----------------------------------------------------------

    /// `POST /containers/create`: returns the new container's id.
    pub fn create(&self, name: Option<&str>, body: CreateBody) -> Result<String> {
        let name = match name {
            Some(n) if !n.is_empty() => {
                let n = n.strip_prefix('/').unwrap_or(n);
                if !valid_name(n) {
                    return Err(ContainerError::BadName(n.to_string()));
                }
                if let Some(id) = self.store.name_taken(n) {
                    return Err(ContainerError::NameInUse {
                        name: n.to_string(),
                        id,
                    });
                }
                n.to_string()
            }
            _ => self.free_name(),
        };
        if body.config.image.is_empty() {
            return Err(invalid("Config.Image: image name is required"));
        }
        let image = match self.images.get(&body.config.image) {
            Ok(image) => image,
            Err(e) if e.kind() == ErrorKind::NotFound => {
                return Err(ContainerError::NoSuchImage(with_default_tag(
                    &body.config.image,
                )))
            }
            Err(e) => return Err(e.into()),
        };
        let id = netcontroller::controller::new_id();
        let record = build_record(
            &id,
            &name,
            body,
            &image,
            &self.controller,
            &self.config.default_network,
        )?;
        if let NetworkMode::Container(other) = record.network_mode() {
            self.store.get(&other)?;
        }
        let entry = self.store.insert(record)?;
        self.events
            .container("create", &id, entry.record().event_attributes());
        info!(id = %&id[..12], %name, "container created");
        Ok(id)
    }

    fn free_name(&self) -> String {
        (0..)
            .map(random_name)
            .find(|n| self.store.name_taken(n).is_none())
            .unwrap_or_default()
    }
    /// `POST /containers/{id}/stop`: false when it was not running.
    pub async fn stop(
        &self,
        key: &str,
        timeout: Option<i64>,
        signal: Option<&str>,
    ) -> Result<bool> {
        let entry = self.store.get(key)?;
        let record = entry.record();
        if record.state.status == Status::Restarting {
            // Waiting for its restart-policy restart: cancelled.
            entry.update(|r| {
                r.state.manually_stopped = true;
                r.state.status = Status::Exited;
            })?;
            return Ok(true);
        }
        if !record.state.running() {
            return Ok(false);
        }
        let signal = match signal.or(record.config.stop_signal.as_deref()) {
            Some(s) => parse_signal(s).map_err(invalid)?,
            None => Signal::SIGTERM,
        };
        let timeout = timeout
            .or(record.config.stop_timeout)
            .unwrap_or(DEFAULT_STOP_TIMEOUT);
        entry.update(|r| r.state.manually_stopped = true)?;
        self.stop_entry(&entry, signal, timeout).await?;
        self.events
            .container("stop", &record.id, record.event_attributes());
        Ok(true)
    }

    /// Sends `signal`, waits up to `timeout` seconds (negative: forever) for
    /// the exit to be handled, then SIGKILLs and waits again.
    async fn stop_entry(&self, entry: &Entry, signal: Signal, timeout: i64) -> Result<()> {
        let mut phase = entry.phase();
        let before = phase.borrow().exits;
        let record = entry.record();
        let mut attrs = record.event_attributes();
        attrs.insert("signal".into(), (signal as i32).to_string());
        self.events.container("kill", &record.id, attrs);
        match self.containerd.kill(&entry.id, signal, false).await {
            Ok(()) => {}
            Err(e) if matches!(e.kind(), ErrorKind::NotFound | ErrorKind::Conflict) => {}
            Err(e) => return Err(e.into()),
        }
        let exited = |p: &super::store::Phase| p.exits > before || !p.running;
        if timeout >= 0 {
            let bound = Duration::from_secs(timeout as u64);
            if tokio::time::timeout(bound, phase.wait_for(exited))
                .await
                .is_ok()
            {
                return Ok(());
            }
            info!(id = %&entry.id[..12], timeout, "container ignored its stop signal, killing it");
            match self.containerd.kill(&entry.id, Signal::SIGKILL, true).await {
                Ok(()) => {}
                Err(e) if matches!(e.kind(), ErrorKind::NotFound | ErrorKind::Conflict) => {}
                Err(e) => return Err(e.into()),
            }
        }
        let _ = phase.wait_for(exited).await;
        Ok(())
    }

    /// `POST /containers/{id}/kill`.
    pub async fn kill(&self, key: &str, signal: Option<&str>) -> Result<()> {
        let entry = self.store.get(key)?;
        let record = entry.record();
        if !record.state.running() {
            return Err(ContainerError::Conflict(format!(
                "Container {} is not running",
                record.id
            )));
        }
        let signal = match signal {
            Some(s) if !s.is_empty() => parse_signal(s).map_err(invalid)?,
            _ => Signal::SIGKILL,
        };
        entry.update(|r| r.state.manually_stopped = true)?;
        let mut attrs = record.event_attributes();
        attrs.insert("signal".into(), (signal as i32).to_string());
        self.events.container("kill", &record.id, attrs);
        self.containerd.kill(&record.id, signal, false).await?;
        Ok(())
    }

    /// `POST /containers/{id}/restart`.
    pub async fn restart(self: &Arc<Self>, key: &str, timeout: Option<i64>) -> Result<()> {
        let entry = self.store.get(key)?;
        let record = entry.record();
        if record.state.running() {
            let timeout = timeout
                .or(record.config.stop_timeout)
                .unwrap_or(DEFAULT_STOP_TIMEOUT);
            let signal = match record.config.stop_signal.as_deref() {
                Some(s) => parse_signal(s).map_err(invalid)?,
                None => Signal::SIGTERM,
            };
            entry.update(|r| r.state.manually_stopped = true)?;
            self.stop_entry(&entry, signal, timeout).await?;
        }
        {
            let _op = entry.op.lock().await;
            self.start_locked(&entry).await?;
        }
        self.events
            .container("restart", &record.id, record.event_attributes());
        Ok(())
    }

    /// `DELETE /containers/{id}`.
    pub async fn remove(&self, key: &str, force: bool) -> Result<()> {
        let entry = self.store.get(key)?;
        if entry.record().state.running() {
            if !force {
                return Err(ContainerError::Conflict(format!("cannot remove container \"/{}\": container is running: stop the container before removing or force remove", entry.record().name)));
            }
            entry.update(|r| r.state.manually_stopped = true)?;
            self.stop_entry(&entry, Signal::SIGKILL, -1).await?;
        }
        self.remove_entry(&entry).await
    }

    async fn remove_entry(&self, entry: &Entry) -> Result<()> {
        let _op = entry.op.lock().await;
        let record = entry.record();
        if record.state.running() {
            return Err(ContainerError::Conflict(format!("cannot remove container \"/{}\": container is running: stop the container before removing or force remove", record.name)));
        }
        if self.store.get(&record.id).is_err() {
            // Removed meanwhile (AutoRemove racing `docker rm`).
            return Ok(());
        }
        let _ = entry.update(|r| r.state.status = Status::Removing);
        self.store.remove(&record.id)?;
        let _ = std::fs::remove_dir_all(self.config.run_root.join(&record.id));
        entry.set_phase(|p| p.removed = true);
        self.events
            .container("destroy", &record.id, record.event_attributes());
        info!(id = %&record.id[..12], "container removed");
        Ok(())
    }

    /// `POST /containers/{id}/rename`.
    pub async fn rename(&self, key: &str, new_name: &str) -> Result<()> {
        let new_name = new_name.strip_prefix('/').unwrap_or(new_name);
        if !valid_name(new_name) {
            return Err(ContainerError::BadName(new_name.to_string()));
        }
        let entry = self.store.get(key)?;
        let _op = entry.op.lock().await;
        let old = entry.record();
        self.store.rename(&entry.id, new_name)?;
        let mut attrs = entry.record().event_attributes();
        attrs.insert("oldName".into(), format!("/{}", old.name));
        self.events.container("rename", &entry.id, attrs);
        Ok(())
    }
}

/// Images a container (running or not) was created from cannot be removed
/// without force, as with dockerd.
impl crate::api::ImageUsers for ContainerManager {
    fn uses_image(&self, image_id: &str) -> bool {
        self.store
            .list()
            .iter()
            .any(|e| e.record().image_id == image_id)
    }
}
