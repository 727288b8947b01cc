//! System endpoints: `/_ping`, `/version`, `/info`.

use chrono::{DateTime, Local, SecondsFormat, Utc};
use hyper::header::{HeaderName, HeaderValue};
use hyper::{Method, StatusCode};
use serde_json::{json, Value};

use super::hostinfo;
use super::request::Ctx;
use super::response::{ok, text, ApiResult};
use super::router::Router;
use super::version::{
    API_VERSION, BERTH_VERSION, BUILD_UNIX_TIME, ENGINE_VERSION, GIT_COMMIT, MIN_API_VERSION,
    RUSTC_VERSION,
};
use crate::config::ListenAddr;

pub(super) fn routes(router: Router) -> Router {
    router
        .get("/_ping", ping)
        .head("/_ping", ping)
        .get("/version", version)
        .get("/info", info)
}

fn build_time() -> String {
    BUILD_UNIX_TIME
        .parse()
        .ok()
        .and_then(|secs| DateTime::<Utc>::from_timestamp(secs, 0))
        .map(|t| t.to_rfc3339_opts(SecondsFormat::Secs, true))
        .unwrap_or_default()
}

/// `GET|HEAD /_ping`: "OK", with the headers clients negotiate from.
async fn ping(ctx: Ctx) -> ApiResult {
    // dockerd answers HEAD with an empty body (Content-Length: 0).
    let body = if ctx.method() == Method::HEAD {
        ""
    } else {
        "OK"
    };
    let mut resp = text(StatusCode::OK, body);
    let headers = resp.headers_mut();
    for (name, value) in [
        ("cache-control", "no-cache, no-store, must-revalidate"),
        ("pragma", "no-cache"),
        ("swarm", "inactive"),
    ] {
        headers.insert(
            HeaderName::from_static(name),
            HeaderValue::from_static(value),
        );
    }
    Ok(resp)
}

/// `GET /version`.
async fn version(_ctx: Ctx) -> ApiResult {
    let kernel = hostinfo::kernel_version();
    let build_time = build_time();
    ok(&json!({
        "Platform": {"Name": format!("Berth {BERTH_VERSION}")},
        "Components": [{
            "Name": "Engine",
            "Version": ENGINE_VERSION,
            "Details": {
                "ApiVersion": API_VERSION.to_string(),
                "Arch": hostinfo::go_arch(),
                "BuildTime": build_time,
                "Experimental": "false",
                "GitCommit": GIT_COMMIT,
                "GoVersion": RUSTC_VERSION,
                "KernelVersion": kernel,
                "MinAPIVersion": MIN_API_VERSION.to_string(),
                "Os": "linux",
                "BerthVersion": BERTH_VERSION,
            },
        }],
        "Version": ENGINE_VERSION,
        "ApiVersion": API_VERSION.to_string(),
        "MinAPIVersion": MIN_API_VERSION.to_string(),
        "GitCommit": GIT_COMMIT,
        "GoVersion": RUSTC_VERSION,
        "Os": "linux",
        "Arch": hostinfo::go_arch(),
        "KernelVersion": kernel,
        "BuildTime": build_time,
    }))
}

/// `GET /info`: the fields `docker info` prints, with the host's real values.
async fn info(ctx: Ctx) -> ApiResult {
    let config = &ctx.state().config;
    let images = ctx.state().images()?.count();
    let (operating_system, os_version) = hostinfo::os_release();
    let cgroups = hostinfo::cgroups();
    let pools: Vec<Value> = config
        .default_address_pools
        .iter()
        .map(|p| json!({"Base": p.base.to_string(), "Size": p.size}))
        .collect();
    let mut warnings = Vec::new();
    for host in &config.hosts {
        if let ListenAddr::Tcp { .. } = host {
            warnings.push(format!(
                "WARNING: API is accessible on {} without encryption.",
                host.to_string().replacen("tcp://", "http://", 1)
            ));
        }
    }
    if !hostinfo::ipv4_forwarding() {
        warnings.push("WARNING: IPv4 forwarding is disabled".to_string());
    }
    let plugins = json!({
        "Volume": ["local"],
        "Network": ["bridge", "host", "null"],
        "Authorization": null,
        "Log": ["json-file"],
    });
    let registry = json!({
        "AllowNondistributableArtifactsCIDRs": null,
        "AllowNondistributableArtifactsHostnames": null,
        "InsecureRegistryCIDRs": ["::1/128", "127.0.0.0/8"],
        "IndexConfigs": {
            "docker.io": {"Name": "docker.io", "Mirrors": [], "Secure": true, "Official": true}
        },
        "Mirrors": null,
    });
    let swarm = json!({
        "NodeID": "",
        "NodeAddr": "",
        "LocalNodeState": "inactive",
        "ControlAvailable": false,
        "Error": "",
        "RemoteManagers": null,
    });
    let (total, running) = ctx.state().containers().map_or((0, 0), |m| {
        let all = m.store().list();
        let running = all.iter().filter(|e| e.record().state.running()).count();
        (all.len(), running)
    });
    let mut info = json!({
        "ID": ctx.state().engine_id,
        "Containers": total,
        "ContainersRunning": running,
        // berthd does not pause containers.
        "ContainersPaused": 0,
        "ContainersStopped": total - running,
        "Images": images,
        "Driver": "overlayfs",
        "DriverStatus": [["driver-type", "io.containerd.snapshotter.v1"]],
        "Plugins": plugins,
        "MemoryLimit": cgroups.memory,
        "SwapLimit": cgroups.swap,
        "CpuCfsPeriod": cgroups.cpu_cfs_period,
        "CpuCfsQuota": cgroups.cpu_cfs_quota,
        "CPUShares": cgroups.cpu_shares,
        "CPUSet": cgroups.cpuset,
        "PidsLimit": cgroups.pids,
        "IPv4Forwarding": hostinfo::ipv4_forwarding(),
        "Debug": config.debug,
        "NFd": hostinfo::open_fds(),
        "OomKillDisable": false,
        "NGoroutines": hostinfo::threads(),
        "SystemTime": Local::now().to_rfc3339_opts(SecondsFormat::Nanos, false),
        "LoggingDriver": "json-file",
        "CgroupDriver": "cgroupfs",
        "CgroupVersion": cgroups.version,
        "NEventsListener": 0,
    });
    let host = json!({
        "KernelVersion": hostinfo::kernel_version(),
        "OperatingSystem": operating_system,
        "OSVersion": os_version,
        "OSType": "linux",
        "Architecture": hostinfo::machine(),
        "IndexServerAddress": "https://index.docker.io/v1/",
        "RegistryConfig": registry,
        "NCPU": hostinfo::cpus(),
        "MemTotal": hostinfo::mem_total(),
        "GenericResources": null,
        "DockerRootDir": config.data_root.display().to_string(),
        "HttpProxy": hostinfo::proxy_env("HTTP_PROXY"),
        "HttpsProxy": hostinfo::proxy_env("HTTPS_PROXY"),
        "NoProxy": hostinfo::proxy_env("NO_PROXY"),
        "Name": hostinfo::hostname(),
        "Labels": [],
        "ExperimentalBuild": false,
        "ServerVersion": ENGINE_VERSION,
        "Runtimes": {"runc": {"path": "runc"}},
        "DefaultRuntime": "runc",
        "Swarm": swarm,
        "LiveRestoreEnabled": false,
        "Isolation": "",
        "InitBinary": "",
        "ContainerdCommit": {"ID": ""},
        "RuncCommit": {"ID": ""},
        "InitCommit": {"ID": ""},
        "SecurityOptions": [],
        "CDISpecDirs": [],
        "Warnings": warnings,
    });
    if let (Value::Object(info), Value::Object(host)) = (&mut info, host) {
        info.extend(host);
    }
    if !pools.is_empty() {
        info["DefaultAddressPools"] = Value::Array(pools);
    }
    ok(&info)
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;
    use http_body_util::{BodyExt, Full};
    use hyper::Request;

    use super::*;
    use crate::api::state::tests::test_state_with_images;

    async fn call(method: &str, uri: &str) -> (hyper::Response<()>, Bytes) {
        let dir = tempfile::tempdir().unwrap();
        let router = routes(Router::new());
        let req = Request::builder()
            .method(method)
            .uri(uri)
            .body(Full::new(Bytes::new()))
            .unwrap();
        let state = test_state_with_images(dir.path()).await;
        let (parts, body) = router.dispatch(state, req).await.into_parts();
        let bytes = body.collect().await.unwrap().to_bytes();
        (hyper::Response::from_parts(parts, ()), bytes)
    }

    #[tokio::test]
    async fn ping_headers_match_dockerd() {
        let (resp, body) = call("GET", "/_ping").await;
        assert_eq!(resp.status(), 200);
        assert_eq!(&body[..], b"OK");
        let h = resp.headers();
        assert_eq!(h["api-version"], "1.47");
        assert_eq!(h["ostype"], "linux");
        assert_eq!(h["docker-experimental"], "false");
        assert_eq!(h["cache-control"], "no-cache, no-store, must-revalidate");
        assert_eq!(h["pragma"], "no-cache");
        assert_eq!(h["server"], "Docker/27.5.1 (linux)");

        let (resp, body) = call("HEAD", "/v1.24/_ping").await;
        assert_eq!(resp.status(), 200);
        assert!(body.is_empty());
    }

    #[tokio::test]
    async fn version_reports_api_range_and_toolchain() {
        let (_, body) = call("GET", "/v1.47/version").await;
        let v: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v["ApiVersion"], "1.47");
        assert_eq!(v["MinAPIVersion"], "1.24");
        assert_eq!(v["Os"], "linux");
        assert!(v["GoVersion"].as_str().unwrap().starts_with("rustc 1."));
        assert_eq!(v["Components"][0]["Name"], "Engine");
        assert_eq!(v["Components"][0]["Details"]["ApiVersion"], "1.47");
    }

    #[tokio::test]
    async fn info_has_what_the_cli_prints() {
        let (_, body) = call("GET", "/info").await;
        let v: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v["ID"], "test-engine");
        assert_eq!(v["Images"], 0);
        assert_eq!(v["DockerRootDir"], "/var/lib/berth");
        assert_eq!(v["Plugins"]["Network"], json!(["bridge", "host", "null"]));
        assert_eq!(v["Swarm"]["LocalNodeState"], "inactive");
        assert_eq!(v["DefaultRuntime"], "runc");
        assert_eq!(v["OSType"], "linux");
        assert!(v["NCPU"].as_u64().unwrap() >= 1);
        assert!(v["MemTotal"].as_u64().unwrap() > 0);
        assert!(!v["KernelVersion"].as_str().unwrap().is_empty());
    }
}
