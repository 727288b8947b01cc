//! The container JSON dockerd answers with: `GET /containers/{id}/json`
//! (inspect) and the entries of `GET /containers/json` (list).

use std::collections::BTreeMap;

use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::{json, Map, Value};

use netcontroller::controller::PREDEFINED;

use crate::container::record::{Attachment, ContainerRecord, Status};

const ZERO_TIME: &str = "0001-01-01T00:00:00Z";

fn time(t: &Option<DateTime<Utc>>) -> String {
    t.map_or_else(
        || ZERO_TIME.to_string(),
        |t| t.to_rfc3339_opts(SecondsFormat::AutoSi, true),
    )
}

fn state(r: &ContainerRecord) -> Value {
    let s = &r.state;
    json!({
        "Status": s.status.as_str(),
        "Running": s.running(),
        "Paused": false,
        "Restarting": s.status == Status::Restarting,
        "OOMKilled": false,
        "Dead": s.status == Status::Dead,
        "Pid": s.pid,
        "ExitCode": s.exit_code,
        "Error": s.error,
        "StartedAt": time(&s.started_at),
        "FinishedAt": time(&s.finished_at),
    })
}

/// `NetworkSettings.Networks[name]`.
fn endpoint_settings(r: &ContainerRecord, a: &Attachment) -> Value {
    let ep = a.endpoint.as_ref();
    let ipam = a
        .request
        .ipv4
        .map(|ip| json!({"IPv4Address": ip.to_string()}))
        .unwrap_or(Value::Null);
    let aliases = if a.request.aliases.is_empty() {
        Value::Null
    } else {
        json!(a.request.aliases)
    };
    let user_defined = !PREDEFINED.contains(&a.network_name.as_str());
    let dns_names = if user_defined {
        let mut names = vec![r.name.clone(), r.id[..12].to_string()];
        names.extend(a.request.aliases.iter().cloned());
        json!(names)
    } else {
        Value::Null
    };
    json!({
        "IPAMConfig": ipam,
        "Links": null,
        "Aliases": aliases,
        "MacAddress": ep.map(|e| e.mac.clone()).unwrap_or_default(),
        "DriverOpts": null,
        "NetworkID": a.network_id,
        "EndpointID": ep.map(|e| e.endpoint_id.clone()).unwrap_or_default(),
        "Gateway": ep.and_then(|e| e.gateway).map(|g| g.to_string()).unwrap_or_default(),
        "IPAddress": ep.and_then(|e| e.ipv4).map(|n| n.ip().to_string()).unwrap_or_default(),
        "IPPrefixLen": ep.and_then(|e| e.ipv4).map_or(0, |n| n.prefix()),
        "IPv6Gateway": "",
        "GlobalIPv6Address": "",
        "GlobalIPv6PrefixLen": 0,
        "DNSNames": dns_names,
    })
}

/// `NetworkSettings.Ports`: every exposed or published port, with its host
/// bindings while running (null when only exposed).
fn ports(r: &ContainerRecord) -> Value {
    let mut out: BTreeMap<String, Value> = BTreeMap::new();
    if !r.state.running() {
        return json!({});
    }
    for key in r.config.exposed_ports.iter().flat_map(|m| m.keys()) {
        let key = if key.contains('/') {
            key.clone()
        } else {
            format!("{key}/tcp")
        };
        out.insert(key, Value::Null);
    }
    for b in r
        .networks
        .iter()
        .filter_map(|a| a.endpoint.as_ref())
        .flat_map(|e| &e.ports)
    {
        let key = format!("{}/{}", b.container_port, b.proto.as_str());
        let entry = out.entry(key).or_insert_with(|| json!([]));
        if entry.is_null() {
            *entry = json!([]);
        }
        if let Some(list) = entry.as_array_mut() {
            list.push(
                json!({"HostIp": b.host_ip.to_string(), "HostPort": b.host_port.to_string()}),
            );
        }
    }
    json!(out)
}

fn networks(r: &ContainerRecord) -> Value {
    let mut map = Map::new();
    for a in &r.networks {
        map.insert(a.network_name.clone(), endpoint_settings(r, a));
    }
    Value::Object(map)
}

/// `GET /containers/{id}/json`.
pub fn inspect(r: &ContainerRecord, dir: &std::path::Path, log_path: &std::path::Path) -> Value {
    // The top-level address fields describe the default bridge only, as in dockerd.
    let bridge = r
        .networks
        .iter()
        .find(|a| a.network_name == "bridge")
        .and_then(|a| a.endpoint.as_ref());
    let (ip, prefix, gw, mac, ep_id) = match bridge {
        Some(e) => (
            e.ipv4.map(|n| n.ip().to_string()).unwrap_or_default(),
            e.ipv4.map_or(0, |n| n.prefix()),
            e.gateway.map(|g| g.to_string()).unwrap_or_default(),
            e.mac.clone(),
            e.endpoint_id.clone(),
        ),
        None => Default::default(),
    };
    let path_of = |name: &str| {
        if r.state.started_at.is_some() {
            dir.join(name).display().to_string()
        } else {
            String::new()
        }
    };
    json!({
        "Id": r.id,
        "Created": r.created.to_rfc3339_opts(SecondsFormat::AutoSi, true),
        "Path": r.path,
        "Args": r.args,
        "State": state(r),
        "Image": r.image_id,
        "ResolvConfPath": path_of("resolv.conf"),
        "HostnamePath": path_of("hostname"),
        "HostsPath": path_of("hosts"),
        "LogPath": log_path.display().to_string(),
        "Name": format!("/{}", r.name),
        "RestartCount": r.restart_count,
        "Driver": "overlayfs",
        "Platform": "linux",
        "MountLabel": "",
        "ProcessLabel": "",
        "AppArmorProfile": "",
        "ExecIDs": null,
        "HostConfig": host_config_view(&r.host_config),
        "GraphDriver": {
            "Name": "overlayfs",
            "Data": {
                "LowerDir": r.image_rootfs.display().to_string(),
                "UpperDir": dir.join("diff").display().to_string(),
                "WorkDir": dir.join("work").display().to_string(),
            },
        },
        "Mounts": [],
        "Config": config_view(r),
        "NetworkSettings": {
            "Bridge": "",
            "SandboxID": r.sandbox_id.clone().unwrap_or_default(),
            "SandboxKey": r.netns_path.as_ref().map(|p| p.display().to_string()).unwrap_or_default(),
            "Ports": ports(r),
            "HairpinMode": false,
            "LinkLocalIPv6Address": "",
            "LinkLocalIPv6PrefixLen": 0,
            "SecondaryIPAddresses": null,
            "SecondaryIPv6Addresses": null,
            "EndpointID": ep_id,
            "Gateway": gw,
            "GlobalIPv6Address": "",
            "GlobalIPv6PrefixLen": 0,
            "IPAddress": ip,
            "IPPrefixLen": prefix,
            "IPv6Gateway": "",
            "MacAddress": mac,
            "Networks": networks(r),
        },
    })
}

/// Go's `units.HumanDuration`, as `docker ps` shows ages.
pub fn human_duration(d: chrono::Duration) -> String {
    let secs = d.num_seconds();
    let plural = |n: i64, unit: &str| {
        if n == 1 {
            format!("1 {unit}")
        } else {
            format!("{n} {unit}s")
        }
    };
    match secs {
        s if s < 1 => "Less than a second".into(),
        1 => "1 second".into(),
        s if s < 60 => format!("{s} seconds"),
        s if s < 60 * 60 => {
            let m = s / 60;
            if m == 1 {
                "About a minute".into()
            } else {
                format!("{m} minutes")
            }
        }
        s if s < 48 * 3600 => {
            let h = (s as f64 / 3600.0).round() as i64;
            if h == 1 {
                "About an hour".into()
            } else {
                format!("{h} hours")
            }
        }
        s if s < 7 * 24 * 3600 * 2 => plural(s / (24 * 3600), "day"),
        s if s < 30 * 24 * 3600 * 3 => plural(s / (7 * 24 * 3600), "week"),
        s if s < 365 * 24 * 3600 * 2 => plural(s / (30 * 24 * 3600), "month"),
        s => plural(s / (365 * 24 * 3600), "year"),
    }
}

/// The `Status` column of `docker ps`.
fn status_text(r: &ContainerRecord, now: DateTime<Utc>) -> String {
    let s = &r.state;
    match s.status {
        Status::Running => format!("Up {}", human_duration(now - s.started_at.unwrap_or(now))),
        Status::Exited => match s.finished_at {
            Some(t) => format!("Exited ({}) {} ago", s.exit_code, human_duration(now - t)),
            None => format!("Exited ({})", s.exit_code),
        },
        Status::Created => "Created".into(),
        Status::Restarting => "Restarting".into(),
        Status::Removing => "Removal In Progress".into(),
        Status::Dead => "Dead".into(),
    }
}

/// An entry of `GET /containers/json`.
pub fn summary(r: &ContainerRecord) -> Value {
    let mut ports = Vec::new();
    if r.state.running() {
        for b in r
            .networks
            .iter()
            .filter_map(|a| a.endpoint.as_ref())
            .flat_map(|e| &e.ports)
        {
            ports.push(json!({
                "IP": b.host_ip.to_string(),
                "PrivatePort": b.container_port,
                "PublicPort": b.host_port,
                "Type": b.proto.as_str(),
            }));
        }
    }
    let mut command = vec![r.path.clone()];
    command.extend(r.args.iter().cloned());
    json!({
        "Id": r.id,
        "Names": [format!("/{}", r.name)],
        "Image": r.image,
        "ImageID": r.image_id,
        "Command": command.join(" "),
        "Created": r.created.timestamp(),
        "Ports": ports,
        "Labels": r.config.labels.clone().unwrap_or_default(),
        "State": r.state.status.as_str(),
        "Status": status_text(r, Utc::now()),
        "HostConfig": {"NetworkMode": r.host_config.network_mode},
        "NetworkSettings": {"Networks": networks(r)},
        "Mounts": [],
    })
}

/// The host config as dockerd shows it: what was asked, with the defaults
/// dockerd fills in where the client sent none (the SDK reads `LogConfig`
/// to decide whether it can read a container's output).
fn host_config_view(hc: &crate::api::container_types::HostConfig) -> Value {
    let mut view = serde_json::to_value(hc).unwrap_or_else(|_| Value::Object(Default::default()));
    let log_type = view["LogConfig"]["Type"].as_str().unwrap_or_default();
    if log_type.is_empty() {
        view["LogConfig"] = serde_json::json!({"Type": "json-file", "Config": {}});
    }
    if view["Runtime"].as_str().unwrap_or_default().is_empty() {
        view["Runtime"] = Value::from("runc");
    }
    view
}

/// The container's config as dockerd shows it: the hostname it runs with
/// (the short id unless one was given) rather than an empty one.
fn config_view(r: &ContainerRecord) -> Value {
    let mut view =
        serde_json::to_value(&r.config).unwrap_or_else(|_| Value::Object(Default::default()));
    if r.config.hostname.is_empty()
        && !matches!(
            r.network_mode(),
            crate::container::record::NetworkMode::Host
        )
    {
        view["Hostname"] = Value::from(r.hostname());
    }
    view
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn human_durations_match_go() {
        let d = chrono::Duration::seconds;
        assert_eq!(human_duration(d(0)), "Less than a second");
        assert_eq!(human_duration(d(5)), "5 seconds");
        assert_eq!(human_duration(d(90)), "About a minute");
        assert_eq!(human_duration(d(600)), "10 minutes");
        assert_eq!(human_duration(d(3600)), "About an hour");
        assert_eq!(human_duration(d(3 * 24 * 3600)), "3 days");
    }
}
