//! `docker create`: the request checked and merged with the image's config
//! into a container record, as dockerd's `merge` and `verifyContainerSettings` do.

use std::collections::BTreeMap;

use netcontroller::controller::{Controller, PREDEFINED};

use super::error::{ContainerError, Result};
use super::options::{parse_binds, parse_user};
use super::record::{Attachment, ContainerRecord, NetworkMode, RunState};
use crate::api::container_types::{port_requests, CreateBody, StringOrVec};
use crate::image::{Image, RunConfig};

/// The image's run config under the container's: dockerd's `merge`.
pub fn merge_image_config(body: &mut CreateBody, image: &Image) {
    let Some(img) = image.config.config.as_ref() else {
        return;
    };
    let c = &mut body.config;
    merge_env(c.env.get_or_insert_with(Vec::new), img);
    // A user entrypoint drops the image's command as well (dockerd).
    if c.entrypoint.is_none() {
        if c.cmd.is_none() {
            c.cmd = img.cmd.clone().map(StringOrVec::Many);
        }
        c.entrypoint = img.entrypoint.clone().map(StringOrVec::Many);
    }
    if c.working_dir.is_empty() {
        c.working_dir = img.working_dir.clone();
    }
    if c.user.is_empty() {
        c.user = img.user.clone();
    }
    if c.stop_signal.is_none() {
        c.stop_signal = img.stop_signal.clone();
    }
    if let Some(ports) = &img.exposed_ports {
        let mine = c.exposed_ports.get_or_insert_with(BTreeMap::new);
        for key in ports.keys() {
            mine.entry(key.clone())
                .or_insert_with(|| serde_json::json!({}));
        }
    }
    if let Some(labels) = &img.labels {
        let mine = c.labels.get_or_insert_with(BTreeMap::new);
        for (k, v) in labels {
            mine.entry(k.clone()).or_insert_with(|| v.clone());
        }
    }
}

/// Image variables first, the container's replacing those with the same key.
fn merge_env(env: &mut Vec<String>, img: &RunConfig) {
    let key = |e: &str| e.split_once('=').map_or(e, |(k, _)| k).to_string();
    let mine: Vec<String> = env.iter().map(|e| key(e)).collect();
    let mut merged: Vec<String> = img
        .env
        .iter()
        .flatten()
        .filter(|e| !mine.contains(&key(e)))
        .cloned()
        .collect();
    merged.append(env);
    *env = merged;
}

/// Checks the request and builds the record. `default_network` is the
/// network of `NetworkMode` "" / "default" (`bridge`, or `none` with `-b none`).
pub fn build_record(
    id: &str,
    name: &str,
    mut body: CreateBody,
    image: &Image,
    controller: &Controller,
    default_network: &str,
) -> Result<ContainerRecord> {
    let invalid = |m: String| ContainerError::Invalid(m);
    merge_image_config(&mut body, image);
    let mut command: Vec<String> = body
        .config
        .entrypoint
        .as_ref()
        .map(|e| e.to_vec())
        .unwrap_or_default();
    command.extend(
        body.config
            .cmd
            .as_ref()
            .map(|c| c.to_vec())
            .unwrap_or_default(),
    );
    if command.is_empty() {
        return Err(invalid("No command specified".into()));
    }
    if !body.config.working_dir.is_empty() && !body.config.working_dir.starts_with('/') {
        return Err(invalid(format!(
            "the working directory '{}' is invalid, it needs to be an absolute path",
            body.config.working_dir
        )));
    }
    let ports = port_requests(&body.config, &body.host_config).map_err(invalid)?;
    // Checked now rather than at the first start, as dockerd does.
    parse_binds(body.host_config.binds.as_deref().unwrap_or(&[]))?;
    parse_user(&body.config.user)?;
    let policy = &body.host_config.restart_policy;
    match policy.name.as_str() {
        "" | "no" | "always" | "unless-stopped" | "on-failure" => {}
        other => return Err(invalid(format!("invalid restart policy: unknown policy '{other}'; use one of 'no', 'always', 'on-failure', or 'unless-stopped'"))),
    }
    if policy.maximum_retry_count != 0 && policy.name != "on-failure" {
        return Err(invalid(
            "invalid restart policy: maximum retry count can only be used with 'on-failure'".into(),
        ));
    }
    if body.host_config.auto_remove && !matches!(policy.name.as_str(), "" | "no") {
        return Err(invalid(
            "can't create 'AutoRemove' container with restart policy".into(),
        ));
    }
    if body.config.tty {
        return Err(invalid("berthd does not support TTYs (-t) yet".into()));
    }

    let requested_mode = body.host_config.network_mode.clone();
    let mode = match requested_mode.as_str() {
        "" | "default" => default_network.to_string(),
        m => m.to_string(),
    };
    body.host_config.network_mode = mode.clone();
    let mut endpoints = body
        .networking_config
        .endpoints_config
        .clone()
        .unwrap_or_default();
    let mut networks = Vec::new();
    match NetworkMode::parse(&mode) {
        NetworkMode::Container(_) => {
            if !ports.is_empty() {
                return Err(invalid(
                    "conflicting options: port publishing and the container type network mode"
                        .into(),
                ));
            }
            if !body.config.hostname.is_empty() {
                return Err(invalid(
                    "conflicting options: hostname and the network mode".into(),
                ));
            }
        }
        NetworkMode::Host | NetworkMode::Networks => {
            // The mode's network first (default route, published ports),
            // then any other endpoint the request names (API >= 1.44).
            let primary = controller.network(&mode)?;
            // The CLI keys the endpoint settings by the mode as given ("default").
            let settings = endpoints
                .remove(&requested_mode)
                .or_else(|| endpoints.remove(&mode))
                .or_else(|| endpoints.remove(&primary.name))
                .or_else(|| endpoints.remove(&primary.id))
                .unwrap_or_default();
            let mut ordered = vec![(primary, settings)];
            for (key, settings) in endpoints {
                ordered.push((controller.network(&key)?, settings));
            }
            for (net, settings) in ordered {
                let mut request = settings.parse().map_err(invalid)?;
                if let Some(mac) = &body.config.mac_address {
                    if request.mac.is_none() && networks.is_empty() && !mac.is_empty() {
                        request.mac = Some(mac.clone());
                    }
                }
                if request.ipv4.is_some()
                    && (PREDEFINED.contains(&net.name.as_str())
                        || !net.ipv4.first().is_some_and(|p| p.user_subnet))
                {
                    return Err(invalid(
                        "user specified IP address is supported on user defined networks only"
                            .into(),
                    ));
                }
                if !request.aliases.is_empty() && PREDEFINED.contains(&net.name.as_str()) {
                    return Err(invalid(
                        "network-scoped alias is supported only for containers in user defined networks"
                            .into(),
                    ));
                }
                if networks.iter().any(|a: &Attachment| a.network_id == net.id) {
                    continue;
                }
                networks.push(Attachment {
                    network_id: net.id.clone(),
                    network_name: net.name.clone(),
                    request,
                    endpoint: None,
                });
            }
        }
    }

    let path = command.remove(0);
    Ok(ContainerRecord {
        id: id.to_string(),
        name: name.to_string(),
        created: chrono::Utc::now(),
        image: body.config.image.clone(),
        image_id: image.id.clone(),
        image_rootfs: image.rootfs.clone(),
        path,
        args: command,
        config: body.config,
        host_config: body.host_config,
        networks,
        state: RunState::default(),
        restart_count: 0,
        sandbox_id: None,
        netns_path: None,
    })
}

/// "busybox" -> "busybox:latest" for messages, as dockerd reports a missing image.
pub fn with_default_tag(name: &str) -> String {
    let last = name.rsplit('/').next().unwrap_or(name);
    if name.contains('@') || last.contains(':') || name.starts_with("sha256:") {
        name.to_string()
    } else {
        format!("{name}:latest")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_tag_in_messages() {
        assert_eq!(with_default_tag("busybox"), "busybox:latest");
        assert_eq!(with_default_tag("busybox:1"), "busybox:1");
        assert_eq!(with_default_tag("reg:5000/x"), "reg:5000/x:latest");
    }

    #[test]
    fn container_env_replaces_image_env() {
        let img = RunConfig {
            env: Some(vec!["PATH=/bin".into(), "A=1".into()]),
            ..Default::default()
        };
        let mut env = vec!["A=2".into(), "B=3".into()];
        merge_env(&mut env, &img);
        assert_eq!(env, vec!["PATH=/bin", "A=2", "B=3"]);
    }
}
