//! Hostile input against a live berthd: generated request bodies, filters
//! and path ids (no 5xx, nothing created by a refused request, the daemon
//! keeps serving), and slow clients that must not hold up anyone else.
//!
//! The generated run is bounded for CI; a longer one:
//! `BERTH_FUZZ_CASES=20000 cargo test --test hostile -- --nocapture`.

mod common;

use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::time::Duration;

use common::invariants::check_invariants;
use common::{percent_encode, Daemon};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use serde_json::{json, Value};

const DEFAULT_CASES: u32 = 400;

fn cases() -> u32 {
    std::env::var("BERTH_FUZZ_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(DEFAULT_CASES)
}

/// Any JSON value, a few levels deep, with the keys the API knows mixed in
/// so that generated objects reach past the first field check.
fn any_json() -> impl Strategy<Value = Value> {
    let key = prop_oneof![
        Just("Name".to_string()),
        Just("Driver".to_string()),
        Just("IPAM".to_string()),
        Just("Config".to_string()),
        Just("Subnet".to_string()),
        Just("Gateway".to_string()),
        Just("IPRange".to_string()),
        Just("Options".to_string()),
        Just("Labels".to_string()),
        Just("Internal".to_string()),
        Just("Container".to_string()),
        Just("EndpointConfig".to_string()),
        Just("Force".to_string()),
        "\\PC{0,12}",
    ];
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        any::<f64>().prop_map(|f| json!(f)),
        "\\PC{0,40}".prop_map(Value::String),
        Just(json!("10.1.0.0/16")),
        Just(json!("10.1.0.1")),
        Just(json!("bridge")),
        Just(json!("300.1.2.3/33")),
    ];
    leaf.prop_recursive(4, 48, 6, move |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::btree_map(key.clone(), inner, 0..6)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// A plausible network create body with one part replaced by anything.
fn mutated_create() -> impl Strategy<Value = Value> {
    let field = prop_oneof![
        Just("Name"),
        Just("Driver"),
        Just("IPAM"),
        Just("Options"),
        Just("Labels"),
        Just("Internal"),
        Just("EnableIPv6"),
        Just("CheckDuplicate"),
    ];
    (field, any_json(), "[a-z]{1,10}").prop_map(|(field, value, name)| {
        let mut body = json!({
            "Name": format!("fz-{name}"),
            "Driver": "bridge",
            "IPAM": {"Config": [{"Subnet": "10.77.0.0/24", "Gateway": "10.77.0.1"}]},
            "Options": {"com.docker.network.bridge.enable_icc": "true"},
            "Labels": {"fuzz": "1"}
        });
        body[field] = value;
        body
    })
}

/// A create body whose every part is plausible on its own: names with odd
/// characters, subnets, gateways and ranges that may or may not fit
/// together, driver options with valid and invalid values.
fn plausible_create() -> impl Strategy<Value = Value> {
    let cidr =
        (any::<u8>(), any::<u8>(), 8u8..=31).prop_map(|(b, c, p)| format!("10.{b}.{c}.0/{p}"));
    let addr =
        (any::<u8>(), any::<u8>(), any::<u8>()).prop_map(|(b, c, d)| format!("10.{b}.{c}.{d}"));
    let option = prop_oneof![
        Just("com.docker.network.bridge.enable_icc"),
        Just("com.docker.network.bridge.enable_ip_masquerade"),
        Just("com.docker.network.bridge.name"),
        Just("com.docker.network.driver.mtu"),
        Just("com.docker.network.bridge.host_binding_ipv4"),
    ];
    let option_value = prop_oneof![
        Just("true".to_string()),
        Just("false".to_string()),
        Just("1400".to_string()),
        Just("0".to_string()),
        Just("127.0.0.1".to_string()),
        "[a-z0-9-]{1,20}",
    ];
    (
        "[a-zA-Z0-9_.-]{1,12}|\\PC{1,12}",
        prop::option::of(cidr),
        prop::option::of(addr.clone()),
        prop::option::of(addr),
        prop::collection::btree_map(option, option_value, 0..3),
        any::<bool>(),
        prop_oneof![Just("bridge"), Just("null"), Just("host"), Just("nope")],
    )
        .prop_map(
            |(name, subnet, gateway, range, options, internal, driver)| {
                let mut config = json!({});
                if let Some(subnet) = subnet {
                    config["Subnet"] = json!(subnet);
                }
                if let Some(gateway) = gateway {
                    config["Gateway"] = json!(gateway);
                }
                if let Some(range) = range {
                    config["IPRange"] = json!(format!("{range}/28"));
                }
                json!({
                    "Name": name,
                    "Driver": driver,
                    "Internal": internal,
                    "IPAM": {"Config": [config]},
                    "Options": options,
                })
            },
        )
}

/// A container create body with one part replaced by anything.
fn mutated_container() -> impl Strategy<Value = Value> {
    let field = prop_oneof![
        Just("Image"),
        Just("Cmd"),
        Just("Entrypoint"),
        Just("Env"),
        Just("ExposedPorts"),
        Just("HostConfig"),
        Just("NetworkingConfig"),
        Just("Labels"),
        Just("StopSignal"),
        Just("MacAddress"),
    ];
    (field, any_json()).prop_map(|(field, value)| {
        let mut body = json!({
            "Image": "busybox",
            "Cmd": ["true"],
            "ExposedPorts": {"80/tcp": {}},
            "HostConfig": {
                "NetworkMode": "bridge",
                "PortBindings": {"80/tcp": [{"HostPort": "18080"}]},
                "RestartPolicy": {"Name": "no"},
            },
        });
        body[field] = value;
        body
    })
}

#[derive(Debug, Clone)]
enum Body {
    Json(Value),
    Bytes(Vec<u8>),
}

#[derive(Debug, Clone)]
struct Case {
    method: &'static str,
    path: String,
    body: Body,
}

fn any_id() -> impl Strategy<Value = String> {
    prop_oneof![
        "\\PC{0,30}",
        "[0-9a-f]{1,64}",
        Just("..".to_string()),
        Just("bridge".to_string()),
        Just("none".to_string()),
    ]
}

fn any_filters() -> impl Strategy<Value = String> {
    prop_oneof![
        "\\PC{0,60}",
        any_json().prop_map(|v| v.to_string()),
        (
            prop_oneof![
                Just("name"),
                Just("id"),
                Just("driver"),
                Just("label"),
                Just("type"),
                Just("dangling"),
                Just("until"),
                Just("bogus"),
            ],
            "\\PC{0,20}"
        )
            .prop_map(|(k, v)| json!({ k: { v: true } }).to_string()),
    ]
}

fn any_case() -> impl Strategy<Value = Case> {
    let body = prop_oneof![
        any_json().prop_map(Body::Json),
        mutated_create().prop_map(Body::Json),
        plausible_create().prop_map(Body::Json),
        prop::collection::vec(any::<u8>(), 0..200).prop_map(Body::Bytes),
    ];
    prop_oneof![
        body.clone().prop_map(|body| Case {
            method: "POST",
            path: "/networks/create".into(),
            body
        }),
        any_filters().prop_map(|f| Case {
            method: "GET",
            path: format!("/networks?filters={}", percent_encode(&f)),
            body: Body::Bytes(Vec::new()),
        }),
        any_filters().prop_map(|f| Case {
            method: "POST",
            path: format!("/networks/prune?filters={}", percent_encode(&f)),
            body: Body::Bytes(Vec::new()),
        }),
        any_id().prop_map(|id| Case {
            method: "GET",
            path: format!("/networks/{}", percent_encode(&id)),
            body: Body::Bytes(Vec::new()),
        }),
        (
            any_id(),
            prop_oneof![Just("connect"), Just("disconnect")],
            body
        )
            .prop_map(|(id, action, body)| Case {
                method: "POST",
                path: format!("/networks/{}/{action}", percent_encode(&id)),
                body,
            }),
        any_filters().prop_map(|f| Case {
            method: "GET",
            path: format!("/events?until=0&filters={}", percent_encode(&f)),
            body: Body::Bytes(Vec::new()),
        }),
        prop_oneof![
            mutated_container().prop_map(Body::Json),
            any_json().prop_map(Body::Json),
        ]
        .prop_map(|body| Case {
            method: "POST",
            path: "/containers/create".into(),
            body,
        }),
        any_filters().prop_map(|f| Case {
            method: "GET",
            path: format!("/containers/json?all=1&filters={}", percent_encode(&f)),
            body: Body::Bytes(Vec::new()),
        }),
        (
            any_id(),
            prop_oneof![
                Just("json"),
                Just("start"),
                Just("stop"),
                Just("kill"),
                Just("wait")
            ],
            "\\PC{0,12}"
        )
            .prop_map(|(id, action, arg)| Case {
                method: if action == "json" { "GET" } else { "POST" },
                path: format!(
                    "/containers/{}/{action}?signal={}&t={}",
                    percent_encode(&id),
                    percent_encode(&arg),
                    percent_encode(&arg)
                ),
                body: Body::Bytes(Vec::new()),
            }),
    ]
}

fn container_ids(d: &Daemon) -> BTreeSet<String> {
    d.get("/containers/json?all=1")
        .json()
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["Id"].as_str().unwrap().to_string())
        .collect()
}

fn network_names(d: &Daemon) -> BTreeSet<String> {
    d.get("/networks")
        .json()
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["Name"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn generated_requests_get_4xx_and_change_nothing() {
    let d = Daemon::start();
    d.import_busybox();
    let before = network_names(&d);
    let containers_before = container_ids(&d);
    let mut runner = TestRunner::new(Config {
        cases: cases(),
        failure_persistence: None,
        ..Config::default()
    });
    let answered = std::cell::Cell::new(0u32);
    let created = std::cell::Cell::new(0u32);
    runner
        .run(&any_case(), |case| {
            let reply = match &case.body {
                Body::Json(v) => d.request_raw(
                    case.method,
                    &case.path,
                    Some("application/json"),
                    &serde_json::to_vec(v).unwrap(),
                ),
                Body::Bytes(b) => {
                    d.request_raw(case.method, &case.path, Some("application/json"), b)
                }
            };
            answered.set(answered.get() + 1);
            if reply.status >= 500 {
                return Err(TestCaseError::fail(format!(
                    "{} {} -> {} {}",
                    case.method,
                    case.path,
                    reply.status,
                    reply.text()
                )));
            }
            if reply.status >= 400 {
                let message = reply.json()["message"].as_str().map(str::to_owned);
                prop_assert!(
                    message.is_some_and(|m| !m.is_empty()),
                    "error without a message: {}",
                    reply.text()
                );
            }
            // A create that was accepted is a real network: remove it again.
            if case.path == "/networks/create" && reply.status == 201 {
                created.set(created.get() + 1);
                let id = reply.json()["Id"].as_str().unwrap().to_string();
                prop_assert_eq!(d.delete(&format!("/networks/{id}")).status, 204);
            }
            if case.path == "/containers/create" && reply.status == 201 {
                created.set(created.get() + 1);
                let id = reply.json()["Id"].as_str().unwrap().to_string();
                prop_assert_eq!(d.delete(&format!("/containers/{id}?force=1")).status, 204);
            }
            // Whatever was refused left networks and containers as they were.
            prop_assert_eq!(&network_names(&d), &before);
            prop_assert_eq!(&container_ids(&d), &containers_before);
            Ok(())
        })
        .unwrap();
    assert_eq!(d.get("/_ping").status, 200);
    // Nor did any refused request leave a bridge, rule, netns or mount.
    check_invariants(&d, "after the generated requests");
    eprintln!(
        "{} generated requests answered without a 5xx ({} networks or containers created and removed)",
        answered.get(),
        created.get()
    );
}

/// A connection that sends its request one byte at a time.
fn dribble(socket: &std::path::Path, request: &[u8], pause: Duration) -> String {
    let mut stream = UnixStream::connect(socket).unwrap();
    for byte in request {
        stream.write_all(std::slice::from_ref(byte)).unwrap();
        std::thread::sleep(pause);
    }
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    answer
}

#[test]
fn slow_clients_do_not_hold_up_others() {
    let d = Daemon::start();
    let socket = d.paths.socket.clone();
    // Many connections that never finish their headers...
    let stalled: Vec<UnixStream> = (0..64)
        .map(|_| {
            let mut s = UnixStream::connect(&socket).unwrap();
            s.write_all(b"GET /networks HTTP/1.1\r\nHost: d").unwrap();
            s
        })
        .collect();
    // ...and one that dribbles a whole request, a byte every 50 ms.
    let request = b"GET /_ping HTTP/1.1\r\nHost: docker\r\nConnection: close\r\n\r\n";
    let slow = {
        let socket = socket.clone();
        std::thread::spawn(move || dribble(&socket, request, Duration::from_millis(50)))
    };
    // Everyone else is served meanwhile, over and over.
    let mut served = 0;
    while !slow.is_finished() {
        assert_eq!(d.get("/_ping").status, 200);
        assert_eq!(d.get("/networks").status, 200);
        served += 2;
    }
    let answer = slow.join().unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(served >= 2, "no request was served beside the slow client");
    drop(stalled);
    assert_eq!(d.get("/_ping").status, 200);
}
