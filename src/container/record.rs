//! What the daemon remembers about a container, persisted as
//! `<data-root>/containers/<id>/config.json`.

use std::net::Ipv4Addr;
use std::path::PathBuf;

use chrono::{DateTime, Utc};
use ipnetwork::Ipv4Network;
use netcontroller::model::PortBinding;
use serde::{Deserialize, Serialize};

use crate::api::container_types::{ContainerConfig, HostConfig, NetworkRequest};

/// How a container is networked, from `HostConfig.NetworkMode`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NetworkMode {
    /// Its own sandbox, joined to the networks in [`ContainerRecord::networks`].
    Networks,
    /// `--network host`: the daemon's own namespace.
    Host,
    /// `--network container:<name|id>`: another container's sandbox.
    Container(String),
}

impl NetworkMode {
    pub fn parse(mode: &str) -> NetworkMode {
        match mode {
            "host" => NetworkMode::Host,
            m => match m.strip_prefix("container:") {
                Some(other) => NetworkMode::Container(other.to_string()),
                None => NetworkMode::Networks,
            },
        }
    }
}

/// A network the container is (or will be, at its next start) connected to.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Attachment {
    pub network_id: String,
    /// The network's name when the attachment was made (the key of
    /// `NetworkSettings.Networks`).
    pub network_name: String,
    pub request: NetworkRequest,
    /// Set while the container runs.
    #[serde(default)]
    pub endpoint: Option<EndpointState>,
}

/// The endpoint the controller made for an attachment.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct EndpointState {
    pub endpoint_id: String,
    pub ipv4: Option<Ipv4Network>,
    pub gateway: Option<Ipv4Addr>,
    pub mac: String,
    pub ports: Vec<PortBinding>,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Created,
    Running,
    Restarting,
    Removing,
    Exited,
    Dead,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Created => "created",
            Status::Running => "running",
            Status::Restarting => "restarting",
            Status::Removing => "removing",
            Status::Exited => "exited",
            Status::Dead => "dead",
        }
    }
}

/// `State` of `docker inspect`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct RunState {
    pub status: Status,
    pub pid: u32,
    pub exit_code: i64,
    pub error: String,
    pub started_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
    /// Set by stop/kill so restart policies leave the container down.
    pub manually_stopped: bool,
}

impl Default for RunState {
    fn default() -> RunState {
        RunState {
            status: Status::Created,
            pid: 0,
            exit_code: 0,
            error: String::new(),
            started_at: None,
            finished_at: None,
            manually_stopped: false,
        }
    }
}

impl RunState {
    pub fn running(&self) -> bool {
        matches!(self.status, Status::Running)
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ContainerRecord {
    pub id: String,
    /// Without the leading `/`.
    pub name: String,
    pub created: DateTime<Utc>,
    /// The image as the user named it (`Config.Image`).
    pub image: String,
    /// `sha256:<hex>`.
    pub image_id: String,
    /// The image's unpacked rootfs (the overlay's lower directory).
    pub image_rootfs: PathBuf,
    /// The process: entrypoint and command merged.
    pub path: String,
    pub args: Vec<String>,
    pub config: ContainerConfig,
    pub host_config: HostConfig,
    /// In join order; the first is the primary network (default route, ports).
    pub networks: Vec<Attachment>,
    pub state: RunState,
    pub restart_count: u64,
    /// The controller's sandbox while running (none for `container:` mode).
    #[serde(default)]
    pub sandbox_id: Option<String>,
    /// The sandbox namespace the task runs in, while running.
    #[serde(default)]
    pub netns_path: Option<PathBuf>,
}

impl ContainerRecord {
    pub fn network_mode(&self) -> NetworkMode {
        NetworkMode::parse(&self.host_config.network_mode)
    }

    /// The hostname the container gets: the configured one or the short id.
    pub fn hostname(&self) -> String {
        if self.config.hostname.is_empty() {
            self.id[..12].to_string()
        } else {
            self.config.hostname.clone()
        }
    }

    /// Labels and name/image, as container events carry them.
    pub fn event_attributes(&self) -> std::collections::BTreeMap<String, String> {
        let mut attrs: std::collections::BTreeMap<String, String> = self
            .config
            .labels
            .clone()
            .unwrap_or_default()
            .into_iter()
            .collect();
        attrs.insert("name".into(), self.name.clone());
        attrs.insert("image".into(), self.image.clone());
        attrs
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn network_modes() {
        assert_eq!(NetworkMode::parse("host"), NetworkMode::Host);
        assert_eq!(NetworkMode::parse("bridge"), NetworkMode::Networks);
        assert_eq!(NetworkMode::parse("mynet"), NetworkMode::Networks);
        assert_eq!(
            NetworkMode::parse("container:abc"),
            NetworkMode::Container("abc".into())
        );
    }
}
