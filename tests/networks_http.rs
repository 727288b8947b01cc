//! The network endpoints over raw HTTP: malformed and oversized bodies,
//! dockerd's statuses and messages, and concurrent creates.

mod common;

use std::collections::BTreeSet;
use std::sync::Barrier;
use std::thread;

use common::{http, percent_encode, Daemon, Reply};
use serde_json::{json, Value};

/// Names of every network, sorted.
fn names(d: &Daemon) -> Vec<String> {
    let list = d.get("/networks").json();
    let mut out: Vec<String> = list
        .as_array()
        .expect("network list is an array")
        .iter()
        .map(|n| n["Name"].as_str().unwrap().to_string())
        .collect();
    out.sort();
    out
}

fn create_raw(d: &Daemon, body: &[u8]) -> Reply {
    d.request_raw("POST", "/networks/create", Some("application/json"), body)
}

fn assert_error(r: &Reply, status: u16, message: &str) {
    assert_eq!(r.status, status, "{}", r.text());
    assert_eq!(r.header("content-type"), Some("application/json"));
    let got = r.json()["message"].as_str().unwrap_or_default().to_string();
    assert!(
        got.contains(message),
        "message {got:?} does not contain {message:?}"
    );
}

/// `POST /networks/create` from many threads at once, each on its own
/// connection, started together.
fn create_in_parallel(d: &Daemon, bodies: Vec<Value>) -> Vec<Reply> {
    let barrier = Barrier::new(bodies.len());
    let socket = &d.paths.socket;
    thread::scope(|s| {
        let handles: Vec<_> = bodies
            .into_iter()
            .map(|body| {
                let barrier = &barrier;
                s.spawn(move || {
                    barrier.wait();
                    http(
                        socket,
                        "POST",
                        "/networks/create",
                        Some("application/json"),
                        serde_json::to_vec(&body).unwrap(),
                    )
                    .expect("create answered")
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    })
}

#[test]
fn malformed_bodies_are_400_and_change_nothing() {
    let d = Daemon::start();
    let before = names(&d);
    let cases: [(&[u8], &str); 8] = [
        (b"{\"Name\":\"a\",", "invalid JSON"),
        (b"not json", "invalid JSON"),
        (b"{\"Name\":5}", "invalid JSON"),
        (b"{\"Name\":\"a\",\"Internal\":\"yes\"}", "invalid JSON"),
        (b"{\"Name\":\"a\",\"Labels\":{\"k\":1}}", "invalid JSON"),
        (b"{\"Name\":\"a\",\"IPAM\":{\"Config\":{}}}", "invalid JSON"),
        (b"{\"Name\":\"a\",\"Options\":[\"x\"]}", "invalid JSON"),
        (b"", "EOF"),
    ];
    for (body, message) in cases {
        let r = create_raw(&d, body);
        assert_error(&r, 400, message);
    }
    // A JSON body must say so.
    let r = d.request_raw(
        "POST",
        "/networks/create",
        Some("text/plain"),
        br#"{"Name":"a"}"#,
    );
    assert_error(&r, 400, "unsupported Content-Type header (text/plain)");
    // No name at all.
    assert_error(&create_raw(&d, b"{}"), 400, "network name is required");
    assert_eq!(names(&d), before);
}

#[test]
fn unknown_fields_are_ignored_as_dockerd_does() {
    let d = Daemon::start();
    let r = create_raw(
        &d,
        br#"{"Name":"extra","NoSuchField":{"deep":[1,2,{"x":null}]},"Another":true,"IPAM":{"Config":[{"Subnet":"10.31.0.0/24","Unknown":"x"}]}}"#,
    );
    assert_eq!(r.status, 201, "{}", r.text());
    let created = r.json();
    assert_eq!(created["Warning"], "");
    let id = created["Id"].as_str().unwrap();
    assert_eq!(id.len(), 64);
    let net = d.get("/networks/extra").json();
    assert_eq!(net["Id"], id);
    assert_eq!(net["IPAM"]["Config"][0]["Subnet"], "10.31.0.0/24");
}

#[test]
fn an_oversized_body_is_400_and_nothing_is_created() {
    let d = Daemon::start();
    let before = names(&d);
    let body = json!({"Name": "big", "Labels": {"filler": "x".repeat(2 << 20)}});
    let r = create_raw(&d, &serde_json::to_vec(&body).unwrap());
    assert_error(&r, 400, "request body is larger than 1048576 bytes");
    assert_eq!(names(&d), before);
    assert_eq!(d.get("/networks/big").status, 404);
    assert_eq!(d.get("/_ping").text(), "OK", "still serving");
}

#[test]
fn invalid_ipam_and_options_are_400_with_dockerds_words() {
    let d = Daemon::start();
    let before = names(&d);
    let ipam = |config: Value| json!({"Name": "bad", "IPAM": {"Config": [config]}});
    let cases = [
        (
            ipam(json!({"Subnet": "10.40.0.0/33"})),
            "invalid subnet 10.40.0.0/33: invalid CIDR block notation",
        ),
        (
            ipam(json!({"Subnet": "banana"})),
            "invalid subnet banana: invalid CIDR block notation",
        ),
        (
            ipam(json!({"Subnet": "10.40.0.1/24"})),
            "invalid subnet 10.40.0.1/24: it should be 10.40.0.0/24",
        ),
        (
            ipam(json!({"Subnet": "10.40.0.0/24", "Gateway": "10.41.0.1"})),
            "invalid gateway 10.41.0.1: parent subnet 10.40.0.0/24 doesn't contain this address",
        ),
        (
            ipam(json!({"Subnet": "10.40.0.0/24", "Gateway": "not-an-ip"})),
            "invalid gateway not-an-ip: invalid address",
        ),
        (
            ipam(json!({"Subnet": "10.40.0.0/24", "IPRange": "10.41.0.0/25"})),
            "invalid ip-range 10.41.0.0/25: parent subnet 10.40.0.0/24 doesn't contain ip-range",
        ),
        (
            ipam(json!({"Subnet": "10.40.0.0/24", "AuxiliaryAddresses": {"r": "10.42.0.9"}})),
            "invalid auxiliary address r: parent subnet 10.40.0.0/24 doesn't contain this address",
        ),
        (
            json!({"Name": "bad", "Options": {"com.docker.network.driver.mtu": "9"}}),
            "com.docker.network.driver.mtu",
        ),
        (
            json!({"Name": "bad", "Options": {"com.docker.network.bridge.enable_icc": "maybe"}}),
            "com.docker.network.bridge.enable_icc",
        ),
        (
            // Longer than IFNAMSIZ-1: refused by the driver's option
            // validation before anything asks the kernel about it.
            json!({"Name": "bad", "Options": {"com.docker.network.bridge.name": "a-bridge-name-too-long"}}),
            "com.docker.network.bridge.name",
        ),
    ];
    for (body, message) in cases {
        let r = d.post("/networks/create", &body);
        assert_error(&r, 400, message);
    }
    assert_eq!(names(&d), before);
    let links = d.ip_json(&["link"]);
    assert!(
        !links.to_string().contains("a-bridge-name"),
        "no link was made: {links}"
    );
}

#[test]
fn refusals_have_dockerds_statuses() {
    let d = Daemon::start();
    let r = d.post(
        "/networks/create",
        &json!({"Name": "first", "IPAM": {"Config": [{"Subnet": "10.44.0.0/16"}]}}),
    );
    assert_eq!(r.status, 201, "{}", r.text());
    let before = names(&d);
    let cases = [
        (
            json!({"Name": "first"}),
            409,
            "network with name first already exists",
        ),
        (
            json!({"Name": "clash", "IPAM": {"Config": [{"Subnet": "10.44.3.0/24"}]}}),
            403,
            "Pool overlaps with other one on this address space",
        ),
        (
            json!({"Name": "odd", "Driver": "nosuchdriver"}),
            404,
            "plugin \"nosuchdriver\" not found",
        ),
        (
            json!({"Name": "bridge"}),
            403,
            "operation is not permitted on predefined bridge network",
        ),
        (
            json!({"Name": "host", "Driver": "host"}),
            403,
            "operation is not permitted on predefined host network",
        ),
        (
            json!({"Name": "none", "Driver": "null"}),
            403,
            "operation is not permitted on predefined none network",
        ),
        (
            json!({"Name": "host2", "Driver": "host"}),
            403,
            "only one instance of \"host\" network is allowed",
        ),
        (
            json!({"Name": "none2", "Driver": "null"}),
            403,
            "only one instance of \"null\" network is allowed",
        ),
    ];
    for (body, status, message) in cases {
        let r = d.post("/networks/create", &body);
        assert_error(&r, status, message);
    }
    assert_eq!(names(&d), before);

    assert_error(
        &d.delete("/networks/nosuch"),
        404,
        "network nosuch not found",
    );
    for name in ["bridge", "host", "none"] {
        assert_error(
            &d.delete(&format!("/networks/{name}")),
            403,
            &format!("{name} is a pre-defined network and cannot be removed"),
        );
    }
    assert_error(&d.get("/networks/nosuch"), 404, "network nosuch not found");
    assert_error(
        &d.get("/networks/first?scope=swarm"),
        404,
        "network first not found",
    );
    assert_eq!(d.get("/networks/first?scope=local").status, 200);
    assert_eq!(names(&d), before);
}

#[test]
fn an_exhausted_pool_answers_dockerds_message() {
    // Room for exactly two /24s, and no docker0 to take one.
    let d = Daemon::builder()
        .flags(&[
            "-b",
            "none",
            "--default-address-pool",
            "base=10.77.0.0/23,size=24",
        ])
        .start();
    for name in ["one", "two"] {
        let r = d.post("/networks/create", &json!({ "Name": name }));
        assert_eq!(r.status, 201, "{}", r.text());
    }
    let before = names(&d);
    let r = d.post("/networks/create", &json!({"Name": "three"}));
    // dockerd answers 404 here (libnetwork's "not found" kind).
    assert_error(
        &r,
        404,
        "could not find an available, non-overlapping IPv4 address pool among the defaults to assign to the network",
    );
    assert_eq!(names(&d), before);
    // Freeing one makes room again.
    assert_eq!(d.delete("/networks/one").status, 204);
    let r = d.post("/networks/create", &json!({"Name": "three"}));
    assert_eq!(r.status, 201, "{}", r.text());
}

#[test]
fn fifty_parallel_creates_all_succeed_with_distinct_subnets() {
    let d = Daemon::builder()
        .flags(&["--default-address-pool", "base=10.128.0.0/16,size=24"])
        .start();
    let bodies = (0..50)
        .map(|i| json!({"Name": format!("par{i}")}))
        .collect();
    let replies = create_in_parallel(&d, bodies);
    for r in &replies {
        assert_eq!(r.status, 201, "{}\n{}", r.text(), d.log());
    }
    let ids: BTreeSet<String> = replies
        .iter()
        .map(|r| r.json()["Id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(ids.len(), 50);

    let list = d.get("/networks").json();
    let mut subnets = BTreeSet::new();
    let mut ours = 0;
    for net in list.as_array().unwrap() {
        for config in net["IPAM"]["Config"].as_array().unwrap() {
            let subnet = config["Subnet"].as_str().unwrap().to_string();
            assert!(subnets.insert(subnet.clone()), "{subnet} given twice");
        }
        if net["Name"].as_str().unwrap().starts_with("par") {
            ours += 1;
            assert!(ids.contains(net["Id"].as_str().unwrap()));
        }
    }
    assert_eq!(ours, 50);
    // Each has its bridge in the kernel.
    let links = d.ip_json(&["link", "show", "type", "bridge"]);
    let bridges = links
        .as_array()
        .unwrap()
        .iter()
        .filter(|l| l["ifname"].as_str().unwrap().starts_with("br-"))
        .count();
    assert_eq!(bridges, 50, "{links}");
}

#[test]
fn twenty_parallel_creates_of_one_name_have_exactly_one_winner() {
    let d = Daemon::start();
    let bodies = (0..20).map(|_| json!({"Name": "contested"})).collect();
    let replies = create_in_parallel(&d, bodies);
    let won: Vec<&Reply> = replies.iter().filter(|r| r.status == 201).collect();
    assert_eq!(won.len(), 1, "{replies:?}");
    for r in replies.iter().filter(|r| r.status != 201) {
        assert_error(r, 409, "network with name contested already exists");
    }
    let net = d.get("/networks/contested").json();
    assert_eq!(net["Id"], won[0].json()["Id"]);
    let count = names(&d).iter().filter(|n| *n == "contested").count();
    assert_eq!(count, 1);
    let bridges = d.ip_json(&["link", "show", "type", "bridge"]);
    let ours = bridges
        .as_array()
        .unwrap()
        .iter()
        .filter(|l| l["ifname"].as_str().unwrap().starts_with("br-"))
        .count();
    assert_eq!(ours, 1, "losers left no bridge behind: {bridges}");
}

#[test]
fn list_filters_over_the_api() {
    let d = Daemon::start();
    for (name, labels) in [
        ("web-front", json!({"tier": "web", "env": "prod"})),
        ("web-back", json!({"tier": "web"})),
        ("db", json!({"env": "prod"})),
    ] {
        let r = d.post("/networks/create", &json!({"Name": name, "Labels": labels}));
        assert_eq!(r.status, 201, "{}", r.text());
    }
    let id_of_db = d.get("/networks/db").json()["Id"]
        .as_str()
        .unwrap()
        .to_string();
    let listed = |filters: Value| -> Vec<String> {
        let q: String = percent_encode(&filters.to_string());
        let r = d.get(&format!("/networks?filters={q}"));
        assert_eq!(r.status, 200, "{filters}: {}", r.text());
        let mut out: Vec<String> = r
            .json()
            .as_array()
            .unwrap()
            .iter()
            .map(|n| n["Name"].as_str().unwrap().to_string())
            .collect();
        out.sort();
        out
    };
    // Both JSON forms of `filters`.
    assert_eq!(listed(json!({"name": ["web"]})), ["web-back", "web-front"]);
    assert_eq!(
        listed(json!({"name": {"web": true}})),
        ["web-back", "web-front"]
    );
    // name and id are matched as dockerd matches them: regular expressions.
    assert_eq!(listed(json!({"name": ["^web-f"]})), ["web-front"]);
    assert_eq!(listed(json!({"name": ["back$"]})), ["web-back"]);
    assert_eq!(listed(json!({"name": ["^db$"]})), ["db"]);
    assert_eq!(listed(json!({"name": ["^d$"]})), Vec::<String>::new());
    assert_eq!(listed(json!({"id": [&id_of_db[..10]]})), ["db"]);
    assert_eq!(
        listed(json!({"id": [format!("^{}", &id_of_db[..6])]})),
        ["db"]
    );
    assert_eq!(listed(json!({"id": [&id_of_db]})), ["db"]);
    assert_eq!(
        listed(json!({"label": ["env=prod", "tier"]})),
        ["web-front"]
    );
    assert_eq!(
        listed(json!({"type": ["builtin"]})),
        ["bridge", "host", "none"]
    );
    assert_eq!(listed(json!({"driver": ["null"]})), ["none"]);
    assert_eq!(listed(json!({"scope": ["swarm"]})), Vec::<String>::new());
    assert_eq!(
        listed(json!({"dangling": ["true"]})),
        ["db", "web-back", "web-front"]
    );

    for (filters, message) in [
        (json!({"colour": ["red"]}), "invalid filter 'colour'"),
        (json!({"type": ["weird"]}), "invalid filter: 'type'='weird'"),
        (
            json!({"dangling": ["perhaps"]}),
            r#"invalid value for filter 'dangling', must be "true" (or "1"), or "false" (or "0")"#,
        ),
        (
            json!({"dangling": ["true", "false"]}),
            r#"got more than one value for filter key "dangling""#,
        ),
    ] {
        let q = percent_encode(&filters.to_string());
        assert_error(&d.get(&format!("/networks?filters={q}")), 400, message);
    }
    assert_error(
        &d.get("/networks?filters=%7Bbroken"),
        400,
        "invalid filters",
    );
}

#[test]
fn prune_over_the_api_honours_label_and_until() {
    let d = Daemon::start();
    for (name, labels) in [
        ("keep", json!({"keep": "yes"})),
        ("drop1", json!({"keep": "no"})),
        ("drop2", json!({})),
    ] {
        let r = d.post("/networks/create", &json!({"Name": name, "Labels": labels}));
        assert_eq!(r.status, 201, "{}", r.text());
    }
    // `until` in the past: nothing is old enough.
    let r = d.post(
        "/networks/prune?filters=%7B%22until%22%3A%5B%221000000000%22%5D%7D",
        &json!({}),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json(), json!({"NetworksDeleted": []}));

    let q = percent_encode(&json!({"label!": ["keep=yes"]}).to_string());
    let r = d.post(&format!("/networks/prune?filters={q}"), &json!({}));
    assert_eq!(r.status, 200, "{}", r.text());
    let mut deleted: Vec<String> = serde_json::from_value(r.json()["NetworksDeleted"].clone())
        .expect("NetworksDeleted is a list of names");
    deleted.sort();
    assert_eq!(deleted, ["drop1", "drop2"]);
    assert_eq!(names(&d), ["bridge", "host", "keep", "none"]);

    let q = percent_encode(&json!({"colour": ["x"]}).to_string());
    assert_error(
        &d.post(&format!("/networks/prune?filters={q}"), &json!({})),
        400,
        "invalid filter 'colour'",
    );
}

#[test]
fn an_ambiguous_id_prefix_is_400_and_changes_nothing() {
    let d = Daemon::builder()
        .flags(&["--default-address-pool", "base=10.129.0.0/16,size=24"])
        .start();
    // With 17 ids (and the predefined 3), two must share a first hex digit.
    for i in 0..17 {
        let r = d.post("/networks/create", &json!({ "Name": format!("amb{i}") }));
        assert_eq!(r.status, 201, "{}", r.text());
    }
    let list = d.get("/networks").json();
    let ids: Vec<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["Id"].as_str().unwrap())
        .collect();
    let shared = (b'0'..=b'9')
        .chain(b'a'..=b'f')
        .map(|c| (c as char).to_string())
        .find(|p| ids.iter().filter(|id| id.starts_with(p.as_str())).count() > 1)
        .expect("two ids share a first digit");
    let matching = ids.iter().filter(|id| id.starts_with(&shared)).count();
    let message =
        format!("network {shared} is ambiguous ({matching} matches found based on ID prefix)");
    let before = names(&d);
    assert_error(&d.get(&format!("/networks/{shared}")), 400, &message);
    assert_error(&d.delete(&format!("/networks/{shared}")), 400, &message);
    assert_eq!(names(&d), before);
}
