//! The controller as a user meets it through berthd: subnet choice against
//! what the namespace already routes, and a store damaged by a crash.

mod common;

use common::Daemon;
use serde_json::json;

fn subnet_of(d: &Daemon, name: &str) -> String {
    let net = d.get(&format!("/networks/{name}")).json();
    net["IPAM"]["Config"][0]["Subnet"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

#[test]
fn automatic_subnets_skip_routes_and_addresses_already_in_the_namespace() {
    // `-b none` keeps docker0 from taking a pool, so the first user network
    // shows the choice directly.
    let mut d = Daemon::builder().flag("-b").flag("none").prepare();
    // An address in 172.17.0.0/16, and a route to 172.18.0.0/16.
    d.ns_ok(
        "ip",
        &[
            "link", "add", "taken0", "type", "veth", "peer", "name", "taken1",
        ],
    );
    d.ns_ok("ip", &["addr", "add", "172.17.0.5/16", "dev", "taken0"]);
    d.ns_ok("ip", &["link", "set", "taken0", "up"]);
    d.ns_ok("ip", &["link", "set", "taken1", "up"]);
    d.ns_ok("ip", &["route", "add", "172.18.0.0/16", "dev", "taken0"]);
    d.launch();

    let r = d.post("/networks/create", &json!({"Name": "first"}));
    assert_eq!(r.status, 201, "{}", r.text());
    assert_eq!(subnet_of(&d, "first"), "172.19.0.0/16");
    let r = d.post("/networks/create", &json!({"Name": "second"}));
    assert_eq!(r.status, 201, "{}", r.text());
    assert_eq!(subnet_of(&d, "second"), "172.20.0.0/16");

    // A subnet the user names is theirs to choose, even over a route.
    let r = d.post(
        "/networks/create",
        &json!({"Name": "mine", "IPAM": {"Config": [{"Subnet": "172.18.0.0/16"}]}}),
    );
    assert_eq!(r.status, 201, "{}", r.text());
    // ...but never over another network's.
    let r = d.post(
        "/networks/create",
        &json!({"Name": "clash", "IPAM": {"Config": [{"Subnet": "172.19.128.0/17"}]}}),
    );
    assert_eq!(r.status, 403, "{}", r.text());
    assert!(r.text().contains("Pool overlaps"), "{}", r.text());

    // Across a restart the books are rebuilt: nothing is handed out twice.
    d.restart();
    let r = d.post("/networks/create", &json!({"Name": "third"}));
    assert_eq!(r.status, 201, "{}", r.text());
    assert_eq!(subnet_of(&d, "third"), "172.21.0.0/16");
}

#[test]
fn a_damaged_store_is_reported_and_the_rest_is_served() {
    let mut d = Daemon::builder().start();
    for name in ["kept", "damaged"] {
        let r = d.post("/networks/create", &json!({"Name": name}));
        assert_eq!(r.status, 201, "{}", r.text());
    }
    let damaged_id = d.get("/networks/damaged").json()["Id"]
        .as_str()
        .unwrap()
        .to_string();
    let damaged_subnet = subnet_of(&d, "damaged");
    d.kill();

    // What a crash half-way through writes can leave: a truncated document
    // and a temp file that was never renamed into place.
    let dir = d.paths.data_root.join("network").join("networks");
    let doc = dir.join(format!("{damaged_id}.json"));
    let text = std::fs::read_to_string(&doc).unwrap();
    std::fs::write(&doc, &text[..text.len() / 2]).unwrap();
    let leftover = dir.join(format!(".{damaged_id}.json.tmp-00000000deadbeef"));
    std::fs::write(&leftover, "{\"id\": ").unwrap();

    d.launch();
    let log = d.log();
    assert!(log.contains(&format!("{damaged_id}.json")), "{log}");
    assert!(!leftover.exists(), "the temp file is cleaned up");

    let names: Vec<String> = d
        .get("/networks")
        .json()
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["Name"].as_str().unwrap().to_string())
        .collect();
    assert!(names.contains(&"kept".to_string()), "{names:?}");
    assert!(!names.contains(&"damaged".to_string()), "{names:?}");
    // The damaged network's subnet is not held by anyone: a new network may use it.
    let r = d.post(
        "/networks/create",
        &json!({"Name": "reuse", "IPAM": {"Config": [{"Subnet": damaged_subnet}]}}),
    );
    assert_eq!(r.status, 201, "{}", r.text());
}
