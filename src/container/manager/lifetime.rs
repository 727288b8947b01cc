//! The daemon's start and stop: restore, restart policies, stopping all.

use super::*;

impl ContainerManager {
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
                let lost = record.state.status == Status::Running;
                if let Err(e) = entry.update(|r| {
                    r.state.status = Status::Exited;
                    r.state.pid = 0;
                    // A restarting one had already exited with its own code.
                    if lost {
                        r.state.exit_code = 255;
                        r.state.finished_at = Some(chrono::Utc::now());
                    }
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
            // At daemon start `always` brings back even a container stopped
            // by hand (dockerd's documented rule); `unless-stopped` does not.
            let wanted = match policy {
                "always" => true,
                "unless-stopped" => !record.state.manually_stopped,
                _ => false,
            };
            if wanted {
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
