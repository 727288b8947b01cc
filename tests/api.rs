//! The Engine API's protocol behaviour against the real daemon: answers are
//! JSON with dockerd's statuses and messages, and the daemon keeps serving.

mod common;

use common::{Daemon, HOST_ADDR};
use serde_json::json;

#[test]
fn ping_answers_like_dockerd() {
    let d = Daemon::start();
    let r = d.get("/_ping");
    assert_eq!(r.status, 200);
    assert_eq!(r.text(), "OK");
    assert_eq!(r.header("api-version"), Some("1.47"));
    assert_eq!(r.header("ostype"), Some("linux"));
    assert_eq!(r.header("docker-experimental"), Some("false"));
    assert_eq!(
        r.header("cache-control"),
        Some("no-cache, no-store, must-revalidate")
    );
    assert_eq!(r.header("pragma"), Some("no-cache"));
    assert!(r.header("server").unwrap().starts_with("Docker/"));

    let head = d.request("HEAD", "/v1.24/_ping", None);
    assert_eq!(head.status, 200);
    assert!(head.body.is_empty());
    assert_eq!(head.header("api-version"), Some("1.47"));
}

#[test]
fn errors_are_json_and_the_daemon_keeps_serving() {
    let d = Daemon::start();
    let cases = [
        ("GET", "/no/such/path", 404, "page not found"),
        ("GET", "/v1.47/containers/x/nope", 404, "page not found"),
        ("DELETE", "/_ping", 405, "method DELETE not allowed on /_ping"),
        ("POST", "/v1.40/version", 405, "method POST not allowed on /version"),
        (
            "GET",
            "/v1.99/version",
            400,
            "client version 1.99 is too new. Maximum supported API version is 1.47",
        ),
        (
            "GET",
            "/v1.23/version",
            400,
            "client version 1.23 is too old. Minimum supported API version is 1.24, please upgrade your client to a newer version",
        ),
    ];
    for (method, path, status, message) in cases {
        let r = d.request(method, path, None);
        assert_eq!(r.status, status, "{method} {path}: {}", r.text());
        assert_eq!(r.header("content-type"), Some("application/json"));
        assert_eq!(r.json(), json!({ "message": message }), "{method} {path}");
    }
    let r = d.request_raw("POST", "/_ping", Some("application/json"), b"{not json");
    assert_eq!(r.status, 405);
    assert_eq!(d.get("/_ping").text(), "OK", "still serving");
}

#[test]
fn every_version_in_range_is_served() {
    let d = Daemon::start();
    for minor in 24..=47 {
        let r = d.get(&format!("/v1.{minor}/version"));
        assert_eq!(r.status, 200, "1.{minor}");
        assert_eq!(r.json()["ApiVersion"], "1.47");
    }
    let v = d.get("/version").json();
    assert_eq!(v["MinAPIVersion"], "1.24");
    assert_eq!(v["Os"], "linux");
}

#[test]
fn tcp_listener_serves_with_a_warning() {
    // Inside the test's own namespace: loopback and the uplink address only.
    let d = Daemon::builder()
        .with_world()
        .flags(&["-H", &format!("tcp://{HOST_ADDR}:2375")])
        .start();
    let out = d.world().ns.ok(
        "curl",
        &[
            "-sS",
            "--max-time",
            "60",
            &format!("http://{HOST_ADDR}:2375/_ping"),
        ],
    );
    assert_eq!(out, "OK");
    assert!(d.log().contains("WITHOUT authentication"), "{}", d.log());
    let warnings = d.get("/info").json()["Warnings"].to_string();
    assert!(
        warnings.contains(&format!("http://{HOST_ADDR}:2375 without encryption")),
        "{warnings}"
    );
}
