//! Container lifecycle: create, start (sandbox, endpoints, network files,
//! spec, task, logs), the exit of a task (teardown, restart policy,
//! AutoRemove), stop, kill, restart, remove, and restore at daemon start.
//!
//! Every step that changes a container runs under its `op` lock; the task's
//! exit is handled by one watcher per run, which does all the teardown, so
//! stop and kill only signal and wait for the watcher to finish.

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
use super::spec::{build_spec, BindMount, SpecParams, UserIds};
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

/// What a start made so far, undone in reverse when a later step fails.
#[derive(Default)]
struct StartUndo {
    sandbox: Option<String>,
    containerd_container: bool,
    task: bool,
    capture: Option<LogCapture>,
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

    // ---- start ------------------------------------------------------------

    /// `POST /containers/{id}/start`.
    pub async fn start(self: &Arc<Self>, key: &str) -> Result<Started> {
        let entry = self.store.get(key)?;
        let _op = entry.op.lock().await;
        let started = self.start_locked(&entry).await?;
        Ok(started)
    }

    async fn start_locked(self: &Arc<Self>, entry: &Arc<Entry>) -> Result<Started> {
        let record = entry.record();
        match record.state.status {
            Status::Running => return Ok(Started::AlreadyRunning),
            Status::Removing | Status::Dead => {
                return Err(ContainerError::Conflict(format!(
                    "container {} is marked for removal and cannot be started",
                    record.id
                )))
            }
            _ => {}
        }
        // The default bridge is made anew at every daemon start, with a new
        // id: attachments whose network id is gone follow the name.
        let controller = &self.controller;
        if record
            .networks
            .iter()
            .any(|a| controller.network(&a.network_id).is_err())
        {
            entry.update(|r| {
                for a in &mut r.networks {
                    if controller.network(&a.network_id).is_err() {
                        if let Ok(net) = controller.network(&a.network_name) {
                            a.network_id = net.id;
                        }
                    }
                }
            })?;
        }
        let record = entry.record();
        let began = Instant::now();
        let mut undo = StartUndo::default();
        match self.start_steps(entry, &record, &mut undo).await {
            Ok(()) => {
                debug!(id = %&record.id[..12], elapsed_ms = began.elapsed().as_millis() as u64, "container started");
                Ok(Started::Now)
            }
            Err(e) => {
                warn!(id = %&record.id[..12], error = %e, "start failed, undoing");
                self.undo_start(&record.id, undo).await;
                let message = e.to_string();
                let _ = entry.update(|r| {
                    r.state.error = message;
                    if r.state.status != Status::Exited {
                        r.state.exit_code = 128;
                    }
                    r.sandbox_id = None;
                    r.netns_path = None;
                    for a in &mut r.networks {
                        a.endpoint = None;
                    }
                });
                Err(e)
            }
        }
    }

    async fn start_steps(
        self: &Arc<Self>,
        entry: &Arc<Entry>,
        record: &ContainerRecord,
        undo: &mut StartUndo,
    ) -> Result<()> {
        let id = &record.id;
        let net_began = Instant::now();
        let (netns, files, endpoints) = self.setup_network(entry, record, undo).await?;
        debug!(id = %&id[..12], elapsed_us = net_began.elapsed().as_micros() as u64, "container network set up");

        let mut mounts = vec![
            BindMount {
                source: files.hostname,
                destination: "/etc/hostname".into(),
                read_only: false,
            },
            BindMount {
                source: files.hosts,
                destination: "/etc/hosts".into(),
                read_only: false,
            },
            BindMount {
                source: files.resolv,
                destination: "/etc/resolv.conf".into(),
                read_only: false,
            },
        ];
        mounts.extend(parse_binds(
            record.host_config.binds.as_deref().unwrap_or(&[]),
        )?);
        let mut args = vec![record.path.clone()];
        args.extend(record.args.iter().cloned());
        let params = SpecParams {
            id: id.clone(),
            args,
            env: record.config.env.clone().unwrap_or_default(),
            cwd: record.config.working_dir.clone(),
            hostname: files.hostname_value,
            user: parse_user(&record.config.user)?,
            netns,
            mounts,
            cgroup_parent: self.config.cgroup_parent.clone(),
        };
        let spec = build_spec(&params)?;

        let rootfs = OverlayRootfs::new(entry.dir(), &record.image_rootfs);
        rootfs
            .prepare()
            .await
            .map_err(ContainerError::io(entry.dir()))?;
        match self.containerd.create_container(id, &spec).await {
            Err(e) if e.kind() == ErrorKind::Conflict => {
                // Left behind by a run whose teardown failed.
                self.containerd.delete_container(id).await?;
                self.containerd.create_container(id, &spec).await?;
            }
            other => other?,
        }
        undo.containerd_container = true;
        let fifo_dir = self.config.run_root.join(id);
        let mut capture = LogCapture::start(&fifo_dir, &entry.log_path()).await?;
        let io = capture.task_io();
        let created = self.containerd.create_task(id, &rootfs, &io).await;
        capture.attached();
        let log_writes = capture.subscribe();
        undo.capture = Some(capture);
        created?;
        undo.task = true;
        let pid = self.containerd.start_task(id).await?;

        let capture = undo.capture.take().expect("capture set above");
        entry.update(|r| {
            r.state.status = Status::Running;
            r.state.pid = pid;
            r.state.exit_code = 0;
            r.state.error.clear();
            r.state.started_at = Some(chrono::Utc::now());
            r.state.manually_stopped = false;
            r.sandbox_id = undo.sandbox.clone();
            r.netns_path = params.netns.clone();
            for (a, ep) in r.networks.iter_mut().zip(endpoints) {
                a.endpoint = ep;
            }
        })?;
        entry.set_log_writes(Some(log_writes));
        entry.set_phase(|p| {
            p.running = true;
            p.starts += 1;
        });
        *undo = StartUndo::default();
        let record = entry.record();
        for a in &record.networks {
            if let Ok(net) = self.controller.network(&a.network_id) {
                self.events
                    .network("connect", &net.id, &net.name, &net.driver, Some(id));
            }
        }
        self.events
            .container("start", id, record.event_attributes());
        let me = self.clone();
        let entry = entry.clone();
        tokio::spawn(me.watch_exit(entry, capture));
        Ok(())
    }

    /// Sandbox, endpoints and the network files. Returns the namespace for
    /// the spec, the files, and the endpoint of each attachment.
    async fn setup_network(
        &self,
        entry: &Entry,
        record: &ContainerRecord,
        undo: &mut StartUndo,
    ) -> Result<(Option<PathBuf>, NetFiles, Vec<Option<EndpointState>>)> {
        let dir = entry.dir();
        match record.network_mode() {
            NetworkMode::Container(other) => {
                let other = self.store.get(&other)?;
                let o = other.record();
                if !o.state.running() {
                    return Err(ContainerError::Conflict(format!(
                        "cannot join network of a non running container: {}",
                        o.id
                    )));
                }
                let files = NetFiles::of(other.dir(), o.hostname());
                return Ok((o.netns_path.clone(), files, vec![]));
            }
            NetworkMode::Host => {
                let sb = self.controller.create_sandbox(&record.id, true).await?;
                undo.sandbox = Some(sb.id.clone());
                let mut eps = Vec::new();
                for a in &record.networks {
                    let ep = self
                        .controller
                        .connect(
                            &sb.id,
                            &a.network_id,
                            self.endpoint_options(record, a, false)?,
                        )
                        .await?;
                    eps.push(Some(endpoint_state(&ep.spec)));
                }
                let hostname = nix::unistd::gethostname()
                    .map(|h| h.to_string_lossy().into_owned())
                    .unwrap_or_else(|_| "localhost".into());
                let host_hosts = std::fs::read_to_string("/etc/hosts").unwrap_or_default();
                let host_resolv = std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
                let files = NetFiles::of(dir, hostname.clone());
                files.write(&hostname, &host_hosts, &host_resolv)?;
                return Ok((None, files, eps));
            }
            NetworkMode::Networks => {}
        }
        let sb = self.controller.create_sandbox(&record.id, false).await?;
        undo.sandbox = Some(sb.id.clone());
        let mut eps = Vec::new();
        let mut own = Vec::new();
        for (i, a) in record.networks.iter().enumerate() {
            let ep = self
                .controller
                .connect(
                    &sb.id,
                    &a.network_id,
                    self.endpoint_options(record, a, i == 0)?,
                )
                .await?;
            if let Some(ip) = ep.spec.ipv4 {
                own.push(ip.ip());
            }
            eps.push(Some(endpoint_state(&ep.spec)));
        }
        let hostname = record.hostname();
        let primary_user_defined = record
            .networks
            .first()
            .is_some_and(|a| !PREDEFINED.contains(&a.network_name.as_str()));
        let mut servers = record.host_config.dns.clone().unwrap_or_default();
        if servers.is_empty() {
            servers = self.config.dns.clone();
        }
        let opts = ResolvOptions {
            servers,
            search: record.host_config.dns_search.clone().unwrap_or_default(),
            options: record.host_config.dns_options.clone().unwrap_or_default(),
            embedded: primary_user_defined,
        };
        let host_resolv = std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
        let files = NetFiles::of(dir, hostname.clone());
        let extra = record.host_config.extra_hosts.clone().unwrap_or_default();
        files.write(
            &hostname,
            &hosts(&hostname, &own, &extra),
            &resolv_conf(&host_resolv, &opts),
        )?;
        Ok((sb.netns_path.clone(), files, eps))
    }

    fn endpoint_options(
        &self,
        record: &ContainerRecord,
        a: &Attachment,
        primary: bool,
    ) -> Result<EndpointOptions> {
        // Ports are published on the primary network when it can carry
        // them (dockerd ignores -p with --network none).
        let bridged = self
            .controller
            .network(&a.network_id)
            .is_ok_and(|n| n.driver == "bridge");
        let ports = if primary && bridged {
            port_requests(&record.config, &record.host_config).map_err(invalid)?
        } else {
            Vec::new()
        };
        endpoint_options(&record.name, &a.request, ports)
    }

    async fn undo_start(&self, id: &str, undo: StartUndo) {
        if undo.task {
            let _ = self.containerd.kill(id, Signal::SIGKILL, true).await;
            let _ = self.containerd.wait(id).await;
            if let Err(e) = self.containerd.delete_task(id).await {
                warn!(id, error = %e, "undo: deleting task");
            }
        }
        if let Some(capture) = undo.capture {
            let _ = capture.finish().await;
        }
        let _ = std::fs::remove_dir_all(self.config.run_root.join(id));
        if undo.containerd_container {
            if let Err(e) = self.containerd.delete_container(id).await {
                warn!(id, error = %e, "undo: deleting container from containerd");
            }
        }
        if let Some(sb) = undo.sandbox {
            if let Err(e) = self.controller.delete_sandbox(&sb).await {
                warn!(id, error = %e, "undo: deleting sandbox");
            }
        }
    }

    // ---- exit -------------------------------------------------------------

    /// Waits for the task to end, tears its run down, then applies the
    /// restart policy or AutoRemove.
    /// Boxed: a restart starts the container again, which spawns another
    /// watcher, and the compiler needs the recursion cut at a named type.
    fn watch_exit(
        self: Arc<Self>,
        entry: Arc<Entry>,
        capture: LogCapture,
    ) -> futures::future::BoxFuture<'static, ()> {
        Box::pin(async move { self.handle_exit(entry, capture).await })
    }

    async fn handle_exit(self: Arc<Self>, entry: Arc<Entry>, capture: LogCapture) {
        let id = entry.id.clone();
        let code = match self.containerd.wait(&id).await {
            Ok(exit) => i64::from(exit.code),
            Err(e) => {
                warn!(id = %&id[..12], error = %e, "waiting for the task failed");
                255
            }
        };
        if let Err(e) = capture.finish().await {
            warn!(id = %&id[..12], error = %e, "log capture");
        }
        let restart = {
            let _op = entry.op.lock().await;
            self.teardown(&entry, code).await;
            self.should_restart(&entry.record())
        };
        if restart {
            let count = entry.update(|r| {
                r.restart_count += 1;
                r.restart_count
            });
            let delay = RESTART_DELAY * 2u32.saturating_pow(count.unwrap_or(1).min(6) as u32 - 1);
            tokio::time::sleep(delay).await;
            let _op = entry.op.lock().await;
            // Stopped, removed or shutting down meanwhile.
            if self.should_restart(&entry.record()) && self.store.get(&id).is_ok() {
                if let Err(e) = self.start_locked(&entry).await {
                    warn!(id = %&id[..12], error = %e, "restart policy: start failed");
                }
            }
            return;
        }
        if entry.record().host_config.auto_remove {
            if let Err(e) = self.remove_entry(&entry).await {
                warn!(id = %&id[..12], error = %e, "auto-remove failed");
            }
        }
    }

    fn should_restart(&self, r: &ContainerRecord) -> bool {
        !self.shutting_down.load(Ordering::SeqCst) && restart_wanted(r)
    }

    /// After the task ended: remove it from containerd, release the network,
    /// record the exit. Keeps going past failures.
    async fn teardown(&self, entry: &Entry, code: i64) {
        let record = entry.record();
        let id = &record.id;
        if let Err(e) = self.containerd.delete_task(id).await {
            if e.kind() != ErrorKind::NotFound {
                warn!(id = %&id[..12], error = %e, "deleting task");
            }
        }
        if let Err(e) = self.containerd.delete_container(id).await {
            if e.kind() != ErrorKind::NotFound {
                warn!(id = %&id[..12], error = %e, "deleting container from containerd");
            }
        }
        let _ = std::fs::remove_dir_all(self.config.run_root.join(id));
        if let Some(sb) = &record.sandbox_id {
            if let Err(e) = self.controller.delete_sandbox(sb).await {
                warn!(id = %&id[..12], error = %e, "deleting sandbox");
            }
            for a in &record.networks {
                if let Ok(net) = self.controller.network(&a.network_id) {
                    self.events
                        .network("disconnect", &net.id, &net.name, &net.driver, Some(id));
                }
            }
        }
        if let Err(e) = entry.update(|r| {
            r.state.status = Status::Exited;
            r.state.pid = 0;
            r.state.exit_code = code;
            r.state.finished_at = Some(chrono::Utc::now());
            r.sandbox_id = None;
            r.netns_path = None;
            for a in &mut r.networks {
                a.endpoint = None;
            }
        }) {
            warn!(id = %&id[..12], error = %e, "persisting the exit");
        }
        entry.set_log_writes(None);
        entry.set_phase(|p| {
            p.running = false;
            p.exits += 1;
            p.exit_code = code;
        });
        let mut attrs = record.event_attributes();
        attrs.insert("exitCode".into(), code.to_string());
        self.events.container("die", id, attrs);
        debug!(id = %&id[..12], code, "container exited");
    }

    // ---- stop / kill / restart / remove -------------------------------------

    /// `POST /containers/{id}/stop`: false when it was not running.
    pub async fn stop(
        &self,
        key: &str,
        timeout: Option<i64>,
        signal: Option<&str>,
    ) -> Result<bool> {
        let entry = self.store.get(key)?;
        let record = entry.record();
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

    // ---- networks of a container --------------------------------------------

    /// `POST /networks/{id}/connect`: live when running, else for next start.
    pub async fn connect(&self, key: &str, network: &str, request: NetworkRequest) -> Result<()> {
        let entry = self.store.get(key)?;
        let net = self.controller.network(network)?;
        let _op = entry.op.lock().await;
        let record = entry.record();
        if record.network_mode() != NetworkMode::Networks
            || ["host", "none"].contains(&net.name.as_str())
            || record
                .networks
                .iter()
                .any(|a| ["host", "none"].contains(&a.network_name.as_str()))
        {
            return Err(ContainerError::Forbidden(format!(
                "container sharing network namespace with another container or host cannot be connected to any other network (or to {})",
                net.name
            )));
        }
        if record.networks.iter().any(|a| a.network_id == net.id) {
            return Err(ContainerError::Forbidden(format!(
                "endpoint with name {} already exists in network {}",
                record.name, net.name
            )));
        }
        if request.ipv4.is_some() && !net.ipv4.first().is_some_and(|p| p.user_subnet) {
            return Err(invalid(
                "user specified IP address is supported only when connecting to networks with user configured subnets",
            ));
        }
        let mut attachment = Attachment {
            network_id: net.id.clone(),
            network_name: net.name.clone(),
            request,
            endpoint: None,
        };
        if let (true, Some(sb)) = (record.state.running(), &record.sandbox_id) {
            let opts = endpoint_options(&record.name, &attachment.request, Vec::new())?;
            let ep = self.controller.connect(sb, &net.id, opts).await?;
            attachment.endpoint = Some(endpoint_state(&ep.spec));
        }
        entry.update(|r| r.networks.push(attachment))?;
        self.events
            .network("connect", &net.id, &net.name, &net.driver, Some(&record.id));
        Ok(())
    }

    /// `POST /networks/{id}/disconnect`.
    pub async fn disconnect(&self, key: &str, network: &str, _force: bool) -> Result<()> {
        let entry = self.store.get(key)?;
        let _op = entry.op.lock().await;
        let record = entry.record();
        let net = self.controller.network(network).ok();
        let index = record.networks.iter().position(|a| match &net {
            Some(n) => a.network_id == n.id,
            None => a.network_name == network || a.network_id == network,
        });
        let Some(index) = index else {
            return Err(ContainerError::Invalid(format!(
                "container {} is not connected to network {network}",
                record.id
            )));
        };
        let a = &record.networks[index];
        if let (Some(_), Some(sb)) = (&a.endpoint, &record.sandbox_id) {
            self.controller.disconnect(sb, &a.network_id).await?;
        }
        entry.update(|r| {
            r.networks.remove(index);
        })?;
        let driver = net.as_ref().map(|n| n.driver.clone()).unwrap_or_default();
        self.events.network(
            "disconnect",
            &a.network_id,
            &a.network_name,
            &driver,
            Some(&record.id),
        );
        Ok(())
    }

    // ---- daemon start and stop ----------------------------------------------

    /// At daemon start, after the controller's restore (which removed every
    /// sandbox and endpoint): containers that were running are recorded as
    /// stopped (exit code 255, the daemon lost them), containerd's
    /// leftovers are removed, and restart policies are applied.
    pub async fn restore(self: &Arc<Self>) {
        if let Err(e) = self.containerd.cleanup_leftovers().await {
            warn!(error = %e, "removing containerd leftovers");
        }
        let mut to_start = Vec::new();
        for entry in self.store.list() {
            let record = entry.record();
            if matches!(
                record.state.status,
                Status::Running | Status::Restarting | Status::Removing
            ) {
                let _ = std::fs::remove_dir_all(self.config.run_root.join(&record.id));
                if let Err(e) = entry.update(|r| {
                    r.state.status = Status::Exited;
                    r.state.pid = 0;
                    r.state.exit_code = 255;
                    r.state.finished_at = Some(chrono::Utc::now());
                    r.sandbox_id = None;
                    r.netns_path = None;
                    for a in &mut r.networks {
                        a.endpoint = None;
                    }
                }) {
                    warn!(id = %&record.id[..12], error = %e, "recording a lost container");
                }
                info!(id = %&record.id[..12], "container was running when the daemon stopped; marked exited");
            }
            let record = entry.record();
            let policy = record.host_config.restart_policy.name.as_str();
            if matches!(policy, "always" | "unless-stopped") && self.should_restart(&record) {
                to_start.push(entry);
            }
        }
        for entry in to_start {
            let _op = entry.op.lock().await;
            match self.start_locked(&entry).await {
                Ok(_) => info!(id = %&entry.id[..12], "container restarted by its restart policy"),
                Err(e) => warn!(id = %&entry.id[..12], error = %e, "restart policy: start failed"),
            }
        }
    }

    /// At daemon shutdown: stops every running container (its stop signal,
    /// SIGKILL after its timeout), all at once, without recording a manual
    /// stop, so restart policies bring them back at the next start.
    pub async fn shutdown(&self) {
        self.shutting_down.store(true, Ordering::SeqCst);
        let stops = self.store.list().into_iter().filter_map(|entry| {
            let record = entry.record();
            if !record.state.running() {
                return None;
            }
            let signal = record
                .config
                .stop_signal
                .as_deref()
                .and_then(|s| parse_signal(s).ok())
                .unwrap_or(Signal::SIGTERM);
            let timeout = record.config.stop_timeout.unwrap_or(DEFAULT_STOP_TIMEOUT);
            Some(async move {
                if let Err(e) = self.stop_entry(&entry, signal, timeout).await {
                    warn!(id = %&entry.id[..12], error = %e, "stopping at shutdown");
                }
            })
        });
        futures::future::join_all(stops).await;
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

/// dockerd's restart policies, after an exit: `always` and
/// `unless-stopped` unless stopped by hand, `on-failure` on a non-zero code
/// while retries are left.
fn restart_wanted(r: &ContainerRecord) -> bool {
    if r.state.manually_stopped {
        return false;
    }
    let p = &r.host_config.restart_policy;
    match p.name.as_str() {
        "always" | "unless-stopped" => true,
        "on-failure" => {
            r.state.exit_code != 0
                && (p.maximum_retry_count == 0 || (r.restart_count as i64) < p.maximum_retry_count)
        }
        _ => false,
    }
}

/// The controller's options for an endpoint of container `name`.
fn endpoint_options(
    name: &str,
    request: &NetworkRequest,
    ports: Vec<netcontroller::controller::PortRequestSpec>,
) -> Result<EndpointOptions> {
    let mac = match &request.mac {
        Some(m) => Some(m.parse().map_err(|e: String| invalid(e))?),
        None => None,
    };
    Ok(EndpointOptions {
        name: name.to_string(),
        ipv4: request.ipv4,
        mac,
        aliases: request.aliases.clone(),
        ports,
    })
}

fn endpoint_state(spec: &netcontroller::model::EndpointSpec) -> EndpointState {
    EndpointState {
        endpoint_id: spec.id.clone(),
        ipv4: spec.ipv4,
        gateway: spec.gateway,
        mac: spec.mac.to_string(),
        ports: spec.port_bindings.clone(),
    }
}

/// The network files of a container, under its directory.
struct NetFiles {
    hostname: PathBuf,
    hosts: PathBuf,
    resolv: PathBuf,
    hostname_value: String,
}

impl NetFiles {
    fn of(dir: &std::path::Path, hostname: String) -> NetFiles {
        NetFiles {
            hostname: dir.join("hostname"),
            hosts: dir.join("hosts"),
            resolv: dir.join("resolv.conf"),
            hostname_value: hostname,
        }
    }

    fn write(&self, hostname: &str, hosts: &str, resolv: &str) -> Result<()> {
        for (path, text) in [
            (&self.hostname, format!("{hostname}\n")),
            (&self.hosts, hosts.to_string()),
            (&self.resolv, resolv.to_string()),
        ] {
            std::fs::write(path, text).map_err(ContainerError::io(path))?;
        }
        Ok(())
    }
}

/// `-v /host:/ctr[:ro]` (bind mounts only; named volumes are not supported).
pub(crate) fn parse_binds(binds: &[String]) -> Result<Vec<BindMount>> {
    binds
        .iter()
        .map(|b| {
            let parts: Vec<&str> = b.split(':').collect();
            let (src, dst, ro) = match parts.as_slice() {
                [s, d] => (*s, *d, false),
                [s, d, mode] => (*s, *d, mode.split(',').any(|m| m == "ro")),
                _ => return Err(invalid(format!("invalid volume specification: '{b}'"))),
            };
            if !src.starts_with('/') {
                return Err(invalid(format!(
                    "invalid volume specification: '{b}': berthd supports bind mounts of absolute host paths only"
                )));
            }
            Ok(BindMount {
                source: src.into(),
                destination: dst.into(),
                read_only: ro,
            })
        })
        .collect()
}

/// `Config.User`: numeric `uid[:gid]`, or `root`.
pub(crate) fn parse_user(user: &str) -> Result<UserIds> {
    if user.is_empty() {
        return Ok(UserIds::default());
    }
    let (u, g) = match user.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (user, None),
    };
    let num = |s: &str| -> Result<u32> {
        match s {
            "root" => Ok(0),
            s => s.parse().map_err(|_| {
                invalid(format!(
                    "unable to find user {s}: berthd resolves numeric ids and root only"
                ))
            }),
        }
    };
    let uid = num(u)?;
    let gid = match g {
        Some(g) => num(g)?,
        None if uid == 0 => 0,
        None => uid,
    };
    Ok(UserIds {
        uid,
        gid,
        additional_gids: vec![],
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(policy: &str, max: i64, code: i64, restarts: u64, manual: bool) -> ContainerRecord {
        let mut host_config = crate::api::container_types::HostConfig::default();
        host_config.restart_policy.name = policy.into();
        host_config.restart_policy.maximum_retry_count = max;
        ContainerRecord {
            id: "a".repeat(64),
            name: "x".into(),
            created: chrono::Utc::now(),
            image: "busybox".into(),
            image_id: String::new(),
            image_rootfs: PathBuf::new(),
            path: "true".into(),
            args: vec![],
            config: Default::default(),
            host_config,
            networks: vec![],
            state: super::super::record::RunState {
                exit_code: code,
                manually_stopped: manual,
                ..Default::default()
            },
            restart_count: restarts,
            sandbox_id: None,
            netns_path: None,
        }
    }

    #[test]
    fn restart_policies() {
        assert!(restart_wanted(&record("always", 0, 0, 5, false)));
        assert!(!restart_wanted(&record("always", 0, 0, 5, true)));
        assert!(restart_wanted(&record("unless-stopped", 0, 1, 0, false)));
        assert!(!restart_wanted(&record("unless-stopped", 0, 1, 0, true)));
        assert!(!restart_wanted(&record("no", 0, 1, 0, false)));
        assert!(!restart_wanted(&record("", 0, 1, 0, false)));
        assert!(!restart_wanted(&record("on-failure", 0, 0, 0, false)));
        assert!(restart_wanted(&record("on-failure", 0, 2, 9, false)));
        assert!(restart_wanted(&record("on-failure", 3, 2, 2, false)));
        assert!(!restart_wanted(&record("on-failure", 3, 2, 3, false)));
    }

    #[test]
    fn binds_and_users() {
        let b = parse_binds(&["/a:/b:ro".to_string(), "/c:/d".to_string()]).unwrap();
        assert!(b[0].read_only && !b[1].read_only);
        assert!(parse_binds(&["vol:/d".to_string()]).is_err());
        assert_eq!(parse_user("1000").unwrap().gid, 1000);
        assert_eq!(parse_user("root").unwrap().uid, 0);
        assert_eq!(parse_user("1:2").unwrap().gid, 2);
        assert!(parse_user("nobody").is_err());
    }
}
