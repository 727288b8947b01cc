//! The Engine API calls the workload makes, over one daemon's unix socket.
//! Unversioned paths: dockerd and berthd both serve them.

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::{json, Value};

use crate::http::{self, Body, HttpError};

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{method} {path}: {source}")]
    Http {
        method: &'static str,
        path: String,
        source: HttpError,
    },
    #[error("{method} {path}: HTTP {status}: {message}")]
    Status {
        method: &'static str,
        path: String,
        status: u16,
        message: String,
    },
    #[error("{method} {path}: unexpected answer: {detail}")]
    Answer {
        method: &'static str,
        path: String,
        detail: String,
    },
}

/// How long one API call may take; creating a network among 500 takes
/// dockerd a while, so this is generous.
const CALL_TIMEOUT: Duration = Duration::from_secs(120);

pub struct Client {
    sock: PathBuf,
}

impl Client {
    pub fn new(sock: &Path) -> Self {
        Self {
            sock: sock.to_path_buf(),
        }
    }

    /// One call; a non-2xx status becomes `ApiError::Status` carrying the
    /// daemon's `{"message": …}`.
    fn call(
        &self,
        method: &'static str,
        path: &str,
        body: Option<Body<'_>>,
        timeout: Duration,
    ) -> Result<Vec<u8>, ApiError> {
        let resp = http::request(&self.sock, method, path, body, timeout).map_err(|source| {
            ApiError::Http {
                method,
                path: path.to_string(),
                source,
            }
        })?;
        if (200..300).contains(&resp.status) {
            return Ok(resp.body);
        }
        let message = serde_json::from_slice::<Value>(&resp.body)
            .ok()
            .and_then(|v| v.get("message").and_then(Value::as_str).map(str::to_string))
            .unwrap_or_else(|| String::from_utf8_lossy(&resp.body).trim().to_string());
        Err(ApiError::Status {
            method,
            path: path.to_string(),
            status: resp.status,
            message,
        })
    }

    fn json(
        &self,
        method: &'static str,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Value, ApiError> {
        let bytes = body.map(|b| b.to_string().into_bytes());
        let body = bytes.as_deref().map(|bytes| Body {
            content_type: "application/json",
            bytes,
        });
        let raw = self.call(method, path, body, CALL_TIMEOUT)?;
        if raw.iter().all(u8::is_ascii_whitespace) {
            return Ok(Value::Null);
        }
        serde_json::from_slice(&raw).map_err(|e| ApiError::Answer {
            method,
            path: path.to_string(),
            detail: format!("not JSON: {e}"),
        })
    }

    fn id_of(method: &'static str, path: &str, v: &Value) -> Result<String, ApiError> {
        v.get("Id")
            .and_then(Value::as_str)
            .map(str::to_string)
            .ok_or_else(|| ApiError::Answer {
                method,
                path: path.to_string(),
                detail: format!("no Id in {v}"),
            })
    }

    /// `GET /_ping` answering 200 "OK"; short timeout, it is polled.
    pub fn ping(&self) -> Result<(), ApiError> {
        let body = self.call("GET", "/_ping", None, Duration::from_secs(2))?;
        if body.trim_ascii() == b"OK" {
            Ok(())
        } else {
            Err(ApiError::Answer {
                method: "GET",
                path: "/_ping".into(),
                detail: format!("body {:?}", String::from_utf8_lossy(&body)),
            })
        }
    }

    pub fn version(&self) -> Result<Value, ApiError> {
        self.json("GET", "/version", None)
    }

    /// `docker import` of a rootfs tar; the answer is a progress stream whose
    /// lines may carry an error even under status 200.
    pub fn import_image(&self, tar: &[u8], repo: &str, tag: &str) -> Result<(), ApiError> {
        let path = format!("/images/create?fromSrc=-&repo={repo}&tag={tag}");
        let body = Body {
            content_type: "application/x-tar",
            bytes: tar,
        };
        let raw = self.call("POST", &path, Some(body), Duration::from_secs(300))?;
        let stream = serde_json::Deserializer::from_slice(&raw).into_iter::<Value>();
        for item in stream {
            let item = item.map_err(|e| ApiError::Answer {
                method: "POST",
                path: path.clone(),
                detail: format!("progress stream: {e}"),
            })?;
            if let Some(err) = item.get("error").or_else(|| item.get("errorDetail")) {
                return Err(ApiError::Answer {
                    method: "POST",
                    path,
                    detail: err.to_string(),
                });
            }
        }
        Ok(())
    }

    pub fn create_network(&self, name: &str) -> Result<String, ApiError> {
        let path = "/networks/create";
        let v = self.json(
            "POST",
            path,
            Some(&json!({"Name": name, "Driver": "bridge", "CheckDuplicate": true})),
        )?;
        Self::id_of("POST", path, &v)
    }

    pub fn remove_network(&self, id: &str) -> Result<(), ApiError> {
        self.json("DELETE", &format!("/networks/{id}"), None)
            .map(drop)
    }

    pub fn inspect_network(&self, id: &str) -> Result<Value, ApiError> {
        self.json("GET", &format!("/networks/{id}"), None)
    }

    /// `GET /networks`, returning how many networks it listed.
    pub fn list_networks(&self) -> Result<usize, ApiError> {
        let path = "/networks";
        let v = self.json("GET", path, None)?;
        v.as_array().map(Vec::len).ok_or_else(|| ApiError::Answer {
            method: "GET",
            path: path.into(),
            detail: "not a JSON array".into(),
        })
    }

    /// The default `bridge` network's gateway as the API reports it (dockerd
    /// leaves it out unless `--bip` is given) and its Linux bridge's name.
    pub fn default_bridge(&self) -> Result<(Option<Ipv4Addr>, Option<String>), ApiError> {
        let v = self.inspect_network("bridge")?;
        let gateway = v
            .pointer("/IPAM/Config/0/Gateway")
            .and_then(Value::as_str)
            .and_then(|s| s.split('/').next())
            .and_then(|s| s.parse().ok());
        let name = v
            .pointer("/Options/com.docker.network.bridge.name")
            .and_then(Value::as_str)
            .map(str::to_string);
        Ok((gateway, name))
    }

    pub fn create_container(&self, name: &str, spec: &Value) -> Result<String, ApiError> {
        let path = format!("/containers/create?name={name}");
        let v = self.json("POST", &path, Some(spec))?;
        Self::id_of("POST", &path, &v)
    }

    pub fn start(&self, id: &str) -> Result<(), ApiError> {
        self.json("POST", &format!("/containers/{id}/start"), None)
            .map(drop)
    }

    pub fn stop(&self, id: &str, secs: u32) -> Result<(), ApiError> {
        self.json("POST", &format!("/containers/{id}/stop?t={secs}"), None)
            .map(drop)
    }

    pub fn remove_container(&self, id: &str, force: bool) -> Result<(), ApiError> {
        self.json("DELETE", &format!("/containers/{id}?force={force}"), None)
            .map(drop)
    }

    /// The container's address on the default bridge, from inspect.
    pub fn container_ip(&self, id: &str) -> Result<Ipv4Addr, ApiError> {
        let path = format!("/containers/{id}/json");
        let v = self.json("GET", &path, None)?;
        [
            "/NetworkSettings/Networks/bridge/IPAddress",
            "/NetworkSettings/IPAddress",
        ]
        .iter()
        .filter_map(|p| v.pointer(p).and_then(Value::as_str))
        .find_map(|s| s.parse().ok())
        .ok_or_else(|| ApiError::Answer {
            method: "GET",
            path,
            detail: "no IPv4 address on the bridge network".into(),
        })
    }

    pub fn connect(&self, network: &str, container: &str) -> Result<(), ApiError> {
        self.json(
            "POST",
            &format!("/networks/{network}/connect"),
            Some(&json!({"Container": container})),
        )
        .map(drop)
    }

    pub fn disconnect(&self, network: &str, container: &str) -> Result<(), ApiError> {
        self.json(
            "POST",
            &format!("/networks/{network}/disconnect"),
            Some(&json!({"Container": container, "Force": false})),
        )
        .map(drop)
    }
}

/// What `docker create` sends for `busybox CMD…` on the default network,
/// optionally with `-p HOSTPORT:CPORT`.
pub fn container_spec(cmd: &[&str], publish: Option<(u16, u16)>) -> Value {
    let mut spec = json!({
        "Image": "busybox:latest",
        "Cmd": cmd,
        "HostConfig": {"NetworkMode": "default"},
    });
    if let Some((host, ctr)) = publish {
        let key = format!("{ctr}/tcp");
        spec["ExposedPorts"] = json!({ key.clone(): {} });
        spec["HostConfig"]["PortBindings"] =
            json!({ key: [{"HostIp": "", "HostPort": host.to_string()}] });
    }
    spec
}
