//! Network events as `docker events` and `GET /events` show them while
//! networks are created and deleted.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::{percent_encode, Daemon};
use serde_json::{json, Value};

/// A hang guard for reading the stream, never asserted on.
const LINE_BOUND: Duration = Duration::from_secs(60);

/// Now as docker's `since`/`until` take it: seconds with a nanosecond fraction.
fn timestamp() -> String {
    let t = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
    format!("{}.{:09}", t.as_secs(), t.subsec_nanos())
}

/// `docker events ...` left running; its stdout lines arrive on a channel.
struct Stream {
    child: Child,
    lines: mpsc::Receiver<String>,
}

impl Stream {
    fn start(d: &Daemon, args: &[&str]) -> Stream {
        let mut child = Command::new("docker")
            .arg("-H")
            .arg(format!("unix://{}", d.paths.socket.display()))
            .arg("events")
            .args(args)
            .env("DOCKER_CONFIG", d.paths.root.join("docker-config"))
            .env_remove("DOCKER_HOST")
            .env_remove("DOCKER_CONTEXT")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start docker events");
        let out = child.stdout.take().unwrap();
        let (tx, lines) = mpsc::channel();
        thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Stream { child, lines }
    }

    fn next_json(&self) -> Value {
        let line = self
            .lines
            .recv_timeout(LINE_BOUND)
            .expect("docker events printed a line");
        serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {line}"))
    }
}

impl Drop for Stream {
    fn drop(&mut self) {
        // Only the child this test started.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn assert_network_event(e: &Value, action: &str, id: &str, name: &str) {
    assert_eq!(e["Type"], "network", "{e}");
    assert_eq!(e["Action"], action, "{e}");
    assert_eq!(e["Actor"]["ID"], id, "{e}");
    assert_eq!(e["Actor"]["Attributes"]["name"], name, "{e}");
    assert_eq!(e["Actor"]["Attributes"]["type"], "bridge", "{e}");
    assert_eq!(e["scope"], "local", "{e}");
    let nano = e["timeNano"].as_i64().unwrap();
    assert_eq!(e["time"].as_i64().unwrap(), nano / 1_000_000_000, "{e}");
}

#[test]
fn docker_events_shows_network_create_and_destroy_as_they_happen() {
    let d = Daemon::start();
    // `--since` replays what happened between starting the CLI and its
    // subscription, so nothing is missed however late it subscribes.
    let since = timestamp();
    let stream = Stream::start(
        &d,
        &[
            "--since",
            &since,
            "--filter",
            "type=network",
            "--format",
            "{{json .}}",
        ],
    );
    let id = d
        .docker_ok(&["network", "create", "watched"])
        .trim()
        .to_string();
    let created = stream.next_json();
    assert_network_event(&created, "create", &id, "watched");

    d.docker_ok(&["network", "rm", "watched"]);
    let destroyed = stream.next_json();
    assert_network_event(&destroyed, "destroy", &id, "watched");
    assert!(destroyed["timeNano"].as_i64() >= created["timeNano"].as_i64());

    // The CLI's own line format names the network too.
    let until = timestamp();
    let out = d.docker_ok(&[
        "events",
        "--since",
        &since,
        "--until",
        &until,
        "--filter",
        "type=network",
        "--filter",
        "event=destroy",
    ]);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 1, "{out}");
    assert!(
        lines[0].contains(&format!("network destroy {id} (name=watched, type=bridge)")),
        "{out}"
    );
}

#[test]
fn events_api_with_since_until_and_filters() {
    let d = Daemon::start();
    let since = timestamp();
    let mut ids = std::collections::BTreeMap::new();
    for name in ["evt-alpha", "evt-beta", "other"] {
        let r = d.post("/networks/create", &json!({ "Name": name }));
        assert_eq!(r.status, 201, "{}", r.text());
        ids.insert(name, r.json()["Id"].as_str().unwrap().to_string());
    }
    assert_eq!(d.delete("/networks/evt-alpha").status, 204);
    let until = timestamp();
    // Later events fall after `until`.
    assert_eq!(d.delete("/networks/other").status, 204);

    let events = |filters: Value| -> Vec<(String, String)> {
        let q = percent_encode(&filters.to_string());
        let r = d.get(&format!("/events?since={since}&until={until}&filters={q}"));
        assert_eq!(r.status, 200, "{}", r.text());
        r.text()
            .lines()
            .map(|l| {
                let e: Value = serde_json::from_str(l).unwrap();
                (
                    e["Action"].as_str().unwrap().to_string(),
                    e["Actor"]["Attributes"]["name"]
                        .as_str()
                        .unwrap()
                        .to_string(),
                )
            })
            .collect()
    };
    let pair = |a: &str, n: &str| (a.to_string(), n.to_string());

    assert_eq!(
        events(json!({"type": ["network"]})),
        [
            pair("create", "evt-alpha"),
            pair("create", "evt-beta"),
            pair("create", "other"),
            pair("destroy", "evt-alpha"),
        ]
    );
    // network= matches a prefix of the name or of the id.
    assert_eq!(
        events(json!({"network": ["evt-"]})),
        [
            pair("create", "evt-alpha"),
            pair("create", "evt-beta"),
            pair("destroy", "evt-alpha"),
        ]
    );
    assert_eq!(
        events(json!({"network": [&ids["evt-beta"][..8]]})),
        [pair("create", "evt-beta")]
    );
    assert_eq!(
        events(json!({"type": ["network"], "event": ["destroy"]})),
        [pair("destroy", "evt-alpha")]
    );
    // The legacy JSON form of filters.
    assert_eq!(
        events(json!({"event": {"destroy": true}})),
        [pair("destroy", "evt-alpha")]
    );
    assert!(events(json!({"type": ["container"]})).is_empty());

    // A prune reports each network it removes.
    let since_prune = timestamp();
    let r = d.post("/networks/prune", &json!({}));
    assert_eq!(r.status, 200, "{}", r.text());
    let until_prune = timestamp();
    let q = percent_encode(&json!({"type": ["network"]}).to_string());
    let r = d.get(&format!(
        "/events?since={since_prune}&until={until_prune}&filters={q}"
    ));
    let destroyed: Vec<Value> = r
        .text()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(destroyed.len(), 1, "{}", r.text());
    assert_eq!(destroyed[0]["Action"], "destroy");
    assert_eq!(destroyed[0]["Actor"]["ID"], ids["evt-beta"].as_str());
    assert_eq!(destroyed[0]["Actor"]["Attributes"]["name"], "evt-beta");

    // Without since/until bounds in the past the stream stays open; with an
    // `until` in the past it ends after the history.
    let r = d.get(&format!("/events?until={until}"));
    assert_eq!(r.status, 200);
    assert_eq!(r.text(), "", "no since: no history");

    for (query, message) in [
        ("since=yesterday", "invalid time value"),
        ("filters=%7Bbroken", "invalid filters"),
        (
            "filters=%7B%22colour%22%3A%5B%22red%22%5D%7D",
            "invalid filter 'colour'",
        ),
    ] {
        let r = d.get(&format!("/events?{query}"));
        assert_eq!(r.status, 400, "{query}: {}", r.text());
        let got = r.json()["message"].as_str().unwrap().to_string();
        assert!(got.contains(message), "{query}: {got}");
    }
}
