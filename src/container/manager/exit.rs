//! The end of a run: teardown, restart policy, AutoRemove.

use super::*;

impl ContainerManager {
    /// Waits for the task to end, tears its run down, then applies the
    /// restart policy or AutoRemove.
    /// Boxed: a restart starts the container again, which spawns another
    /// watcher, and the compiler needs the recursion cut at a named type.
    pub(super) fn watch_exit(
        self: Arc<Self>,
        entry: Arc<Entry>,
        capture: LogCapture,
    ) -> futures::future::BoxFuture<'static, ()> {
        Box::pin(async move { self.handle_exit(entry, capture).await })
    }

    pub(super) async fn handle_exit(self: Arc<Self>, entry: Arc<Entry>, capture: LogCapture) {
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
        // Decided under the lock, so a stop cannot slip in between.
        let restart = {
            let _op = entry.op.lock().await;
            self.teardown(&entry, code).await;
            if self.should_restart(&entry.record()) {
                Some(entry.update(|r| {
                    r.restart_count += 1;
                    r.state.status = Status::Restarting;
                    r.restart_count
                }))
            } else {
                None
            }
        };
        if let Some(count) = restart {
            let exponent = count.unwrap_or(1).clamp(1, 6) as u32 - 1;
            tokio::time::sleep(RESTART_DELAY * 2u32.pow(exponent)).await;
            let _op = entry.op.lock().await;
            // Stopped (the status is then Exited), started, removed or
            // shutting down meanwhile.
            let record = entry.record();
            if record.state.status != Status::Restarting || self.store.get(&id).is_err() {
                return;
            }
            if self.shutting_down.load(Ordering::SeqCst) {
                let _ = entry.update(|r| r.state.status = Status::Exited);
            } else if let Err(e) = self.start_locked(&entry).await {
                warn!(id = %&id[..12], error = %e, "restart policy: start failed");
            }
            return;
        }
        if entry.record().host_config.auto_remove {
            if let Err(e) = self.remove_entry(&entry).await {
                warn!(id = %&id[..12], error = %e, "auto-remove failed");
            }
        }
    }

    pub(super) fn should_restart(&self, r: &ContainerRecord) -> bool {
        !self.shutting_down.load(Ordering::SeqCst) && restart_wanted(r)
    }

    /// After the task ended: remove it from containerd, release the network,
    /// record the exit. Keeps going past failures.
    pub(super) async fn teardown(&self, entry: &Entry, code: i64) {
        let record = entry.record();
        let id = &record.id;
        // The two halves share nothing once the process is gone, and both
        // mostly wait (containerd's shim; the kernel deleting veths, ~17 ms
        // each): side by side, a stop takes the longer of them, not the sum.
        let containerd_side = async {
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
        };
        let network_side = async {
            let Some(sb) = &record.sandbox_id else {
                return;
            };
            if let Err(e) = self.controller.delete_sandbox(sb).await {
                warn!(id = %&id[..12], error = %e, "deleting sandbox");
            }
            for a in &record.networks {
                if let Ok(net) = self.controller.network(&a.network_id) {
                    self.events
                        .network("disconnect", &net.id, &net.name, &net.driver, Some(id));
                }
            }
        };
        futures::join!(containerd_side, network_side);
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
        // `die` goes out before waiters wake, so a stop's `stop` follows it.
        let mut attrs = record.event_attributes();
        attrs.insert("exitCode".into(), code.to_string());
        self.events.container("die", id, attrs);
        entry.set_log_writes(None);
        entry.set_phase(|p| {
            p.running = false;
            p.exits += 1;
            p.exit_code = code;
        });
        debug!(id = %&id[..12], code, "container exited");
    }
}

/// dockerd's restart policies, after an exit: `always` and
/// `unless-stopped` unless stopped by hand, `on-failure` on a non-zero code
/// while retries are left.
pub(super) fn restart_wanted(r: &ContainerRecord) -> bool {
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

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
            state: crate::container::record::RunState {
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
}
