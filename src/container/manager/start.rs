//! Starting a container: sandbox, endpoints, network files, spec, task, logs;
//! undone in reverse when a step fails.

use super::*;
use crate::container::options::{parse_binds, parse_user};

/// What a start made so far, undone in reverse when a later step fails.
#[derive(Default)]
pub(super) struct StartUndo {
    sandbox: Option<String>,
    containerd_container: bool,
    task: bool,
    capture: Option<LogCapture>,
}

impl ContainerManager {
    /// `POST /containers/{id}/start`.
    pub async fn start(self: &Arc<Self>, key: &str) -> Result<Started> {
        let entry = self.store.get(key)?;
        let op = entry.op.lock().await;
        let result = self.start_locked(&entry).await;
        drop(op);
        // A container that was to be removed at its exit is removed when it
        // cannot start at all, as dockerd does.
        if result.is_err() && entry.record().host_config.auto_remove {
            if let Err(e) = self.remove_entry(&entry).await {
                warn!(id = %&entry.id[..12], error = %e, "auto-remove after a failed start");
            }
        }
        result
    }

    pub(super) async fn start_locked(self: &Arc<Self>, entry: &Arc<Entry>) -> Result<Started> {
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
                let code = start_failure_code(&message);
                let _ = entry.update(|r| {
                    r.state.error = message;
                    r.state.exit_code = code;
                    // Recording the start itself may be what failed, or a
                    // restart-policy start after its backoff did.
                    if matches!(r.state.status, Status::Running | Status::Restarting) {
                        r.state.status = Status::Exited;
                        r.state.pid = 0;
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

    pub(super) async fn start_steps(
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
    pub(super) async fn setup_network(
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
        // A container's --dns is where its embedded DNS forwards, as dockerd's.
        let own_dns: Vec<std::net::IpAddr> = record
            .host_config
            .dns
            .iter()
            .flatten()
            .filter_map(|s| s.parse().ok())
            .collect();
        if !own_dns.is_empty() {
            self.controller.set_sandbox_upstreams(&sb.id, &own_dns)?;
        }
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

    pub(super) fn endpoint_options(
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

    pub(super) async fn undo_start(&self, id: &str, undo: StartUndo) {
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
}

/// The controller's options for an endpoint of container `name`.
pub(super) fn endpoint_options(
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

pub(super) fn endpoint_state(spec: &netcontroller::model::EndpointSpec) -> EndpointState {
    EndpointState {
        endpoint_id: spec.id.clone(),
        ipv4: spec.ipv4,
        gateway: spec.gateway,
        mac: spec.mac.to_string(),
        ports: spec.port_bindings.clone(),
    }
}

/// The network files of a container, under its directory.
pub(super) struct NetFiles {
    hostname: PathBuf,
    hosts: PathBuf,
    resolv: PathBuf,
    hostname_value: String,
}

impl NetFiles {
    pub(super) fn of(dir: &std::path::Path, hostname: String) -> NetFiles {
        NetFiles {
            hostname: dir.join("hostname"),
            hosts: dir.join("hosts"),
            resolv: dir.join("resolv.conf"),
            hostname_value: hostname,
        }
    }

    pub(super) fn write(&self, hostname: &str, hosts: &str, resolv: &str) -> Result<()> {
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

/// The exit code dockerd records when a start fails: 127 for a command
/// that cannot be found, 126 for one that cannot be run, 128 otherwise.
pub(super) fn start_failure_code(message: &str) -> i64 {
    if message.contains("executable file not found")
        || message.contains("no such file or directory")
    {
        127
    } else if message.contains("permission denied") {
        126
    } else {
        128
    }
}
