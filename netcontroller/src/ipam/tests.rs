//! Example-based tests of pools, subnet choice and address handling.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use ipnetwork::Ipv4Network;

use super::*;
use crate::error::{ErrorKind, Kind};

fn net(s: &str) -> Ipv4Network {
    s.parse().unwrap()
}

fn ip(s: &str) -> Ipv4Addr {
    s.parse().unwrap()
}

fn subnet_req(s: &str) -> IpamRequest {
    IpamRequest {
        subnet: Some(net(s)),
        ..IpamRequest::default()
    }
}

fn pool(s: &str) -> AddressPool {
    s.parse().unwrap()
}

// ---- pools -------------------------------------------------------------

#[test]
fn defaults_are_dockerds() {
    let d = AddressPool::defaults();
    assert_eq!(d.len(), 16);
    assert_eq!(d[0], pool("base=172.17.0.0/16,size=16"));
    assert_eq!(d[14], pool("base=172.31.0.0/16,size=16"));
    assert_eq!(d[15], pool("base=192.168.0.0/16,size=20"));
}

#[test]
fn pool_spec_parses_in_any_order_and_case() {
    let want = AddressPool {
        base: net("10.10.0.0/16"),
        size: 24,
    };
    assert_eq!(pool("base=10.10.0.0/16,size=24"), want);
    assert_eq!(pool("size=24,base=10.10.0.0/16"), want);
    assert_eq!(pool("BASE=10.10.0.0/16, Size=24"), want);
    assert_eq!(want.to_string().parse::<AddressPool>().unwrap(), want);
}

#[test]
fn pool_spec_errors_are_clear() {
    let err = |s: &str| s.parse::<AddressPool>().unwrap_err();
    let cases = [
        ("base=10.10.0.0/16,size=8", "invalid size 8: smaller than the prefix length of base 10.10.0.0/16"),
        ("base=10.10.0.0/16,size=33", "invalid size 33: must not be greater than 32"),
        ("base=10.10.0.0/16,size=300", "invalid size 300: must not be greater than 32"),
        ("base=10.10.0.0/16,size=31", "invalid size 31: a /31 has no room for a gateway and a container; at most 30"),
        ("base=10.10.0.0/16,size=big", "invalid size 'big': must be an integer"),
        ("base=10.10.0.0/16,size=24,mask=8", "unexpected key 'mask' in default address pool (expected base and size)"),
        ("base=10.10.0.0/16", "default address pool is missing 'size'"),
        ("size=24", "default address pool is missing 'base'"),
        ("base=10.10.0.0/16,size=24,size=25", "key 'size' given more than once in default address pool"),
        ("base=10.10.0.0/16,24", "invalid field '24': must be a key=value pair"),
        ("base=10.10.0.0,size=24", "invalid base '10.10.0.0': must be an IPv4 network in CIDR notation, e.g. 10.10.0.0/16"),
        ("base=10.10.300.0/16,size=24", "invalid base '10.10.300.0/16': must be an IPv4 network in CIDR notation, e.g. 10.10.0.0/16"),
        ("base=10.10.1.0/16,size=24", "invalid base 10.10.1.0/16: it should be 10.10.0.0/16"),
    ];
    for (spec, message) in cases {
        let e = err(spec);
        assert_eq!(e.to_string(), message, "for {spec}");
        assert_eq!(e.kind(), ErrorKind::InvalidArgument);
    }
}

#[test]
fn pool_deserializes_from_daemon_json_with_the_same_checks() {
    let p: AddressPool = serde_json::from_str(r#"{"base":"10.10.0.0/16","size":24}"#).unwrap();
    assert_eq!(p, pool("base=10.10.0.0/16,size=24"));
    let bad = serde_json::from_str::<AddressPool>(r#"{"base":"10.10.0.0/16","size":8}"#);
    assert!(bad
        .unwrap_err()
        .to_string()
        .contains("smaller than the prefix length"));
    let unknown = serde_json::from_str::<AddressPool>(r#"{"base":"10.10.0.0/16","size":24,"x":1}"#);
    assert!(unknown.is_err());
}

#[test]
fn hand_built_invalid_pools_are_dropped() {
    let bad = |base: &str, size| AddressPool {
        base: net(base),
        size,
    };
    let ipam = Ipam::new(vec![
        bad("10.0.0.0/8", 4),
        bad("10.0.0.0/8", 31),
        bad("10.0.0.0/8", 40),
        bad("10.0.0.1/8", 16),
        pool("base=10.9.0.0/16,size=24"),
    ]);
    let a = ipam
        .allocate_network("a", &IpamRequest::default(), &[])
        .unwrap();
    assert_eq!(a.subnet, net("10.9.0.0/24"));
}

#[test]
fn subnet_search_jumps_over_blockers_in_huge_pools() {
    // 10.0.0.0/8 in /30s is four million candidates; only the last is free.
    let p = pool("base=10.0.0.0/8,size=30");
    let (lo, hi) = pool::span(net("10.0.0.0/8"));
    let blockers = [(lo, hi - 4), (lo + 8, lo + 9)];
    assert_eq!(p.first_free(&blockers), Some(net("10.255.255.252/30")));
    assert_eq!(p.first_free(&[(lo, hi)]), None);
}

// ---- subnet choice -----------------------------------------------------

#[test]
fn automatic_subnets_come_from_the_pools_in_order() {
    let ipam = Ipam::new(AddressPool::defaults());
    let a = ipam
        .allocate_network("a", &IpamRequest::default(), &[])
        .unwrap();
    assert_eq!(a.subnet, net("172.17.0.0/16"));
    assert_eq!(a.gateway, ip("172.17.0.1"));
    assert!(!a.user_subnet && !a.user_gateway);
    let b = ipam
        .allocate_network("b", &IpamRequest::default(), &[])
        .unwrap();
    assert_eq!(b.subnet, net("172.18.0.0/16"));
}

#[test]
fn automatic_subnets_avoid_routes_and_addresses() {
    let ipam = Ipam::new(AddressPool::defaults());
    // A host address with host bits (an interface address) and a route.
    let avoid = [net("172.17.3.4/24"), net("172.18.0.0/15")];
    let a = ipam
        .allocate_network("a", &IpamRequest::default(), &avoid)
        .unwrap();
    assert_eq!(a.subnet, net("172.20.0.0/16"));
}

#[test]
fn a_single_address_at_either_edge_blocks_a_subnet() {
    for edge in ["172.17.0.0/32", "172.17.255.255/32"] {
        let ipam = Ipam::new(AddressPool::defaults());
        let a = ipam
            .allocate_network("a", &IpamRequest::default(), &[net(edge)])
            .unwrap();
        assert_eq!(a.subnet, net("172.18.0.0/16"), "avoiding {edge}");
    }
}

#[test]
fn a_default_route_in_avoid_is_ignored() {
    let ipam = Ipam::new(AddressPool::defaults());
    let avoid = [net("0.0.0.0/0")];
    let a = ipam
        .allocate_network("a", &IpamRequest::default(), &avoid)
        .unwrap();
    assert_eq!(a.subnet, net("172.17.0.0/16"));
}

#[test]
fn avoid_does_not_apply_to_a_subnet_the_user_named() {
    let ipam = Ipam::new(AddressPool::defaults());
    let avoid = [net("172.17.0.0/16")];
    let a = ipam
        .allocate_network("a", &subnet_req("172.17.0.0/16"), &avoid)
        .unwrap();
    assert!(a.user_subnet);
}

#[test]
fn user_subnets_must_not_overlap_held_ones() {
    let ipam = Ipam::new(AddressPool::defaults());
    ipam.allocate_network("a", &subnet_req("10.1.0.0/16"), &[])
        .unwrap();
    for clash in ["10.1.0.0/16", "10.1.2.0/24", "10.0.0.0/8"] {
        let e = ipam
            .allocate_network("b", &subnet_req(clash), &[])
            .unwrap_err();
        assert_eq!(
            e.to_string(),
            "Pool overlaps with other one on this address space"
        );
        assert_eq!(e.kind(), ErrorKind::Forbidden);
    }
    ipam.allocate_network("b", &subnet_req("10.2.0.0/16"), &[])
        .unwrap();
}

#[test]
fn a_bad_request_is_invalid_even_when_its_subnet_is_taken() {
    let ipam = Ipam::new(AddressPool::defaults());
    ipam.allocate_network("a", &subnet_req("10.1.0.0/16"), &[])
        .unwrap();
    let req = IpamRequest {
        gateway: Some(ip("10.9.0.1")),
        ..subnet_req("10.1.0.0/16")
    };
    let e = ipam.allocate_network("b", &req, &[]).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidArgument, "{e}");
}

#[test]
fn automatic_choice_skips_user_subnets() {
    let ipam = Ipam::new(AddressPool::defaults());
    ipam.allocate_network("u", &subnet_req("172.17.200.0/24"), &[])
        .unwrap();
    let a = ipam
        .allocate_network("a", &IpamRequest::default(), &[])
        .unwrap();
    assert_eq!(a.subnet, net("172.18.0.0/16"));
}

#[test]
fn pools_run_out_with_dockerds_message() {
    let ipam = Ipam::new(vec![pool("base=10.9.0.0/23,size=24")]);
    for id in ["a", "b"] {
        ipam.allocate_network(id, &IpamRequest::default(), &[])
            .unwrap();
    }
    let e = ipam
        .allocate_network("c", &IpamRequest::default(), &[])
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NotFound);
    assert_eq!(
        e.to_string(),
        "could not find an available, non-overlapping IPv4 address pool among the defaults to assign to the network"
    );
    ipam.release_network("a");
    let c = ipam
        .allocate_network("c", &IpamRequest::default(), &[])
        .unwrap();
    assert_eq!(c.subnet, net("10.9.0.0/24"), "a released subnet is reused");
}

#[test]
fn an_id_holds_one_pool() {
    let ipam = Ipam::new(AddressPool::defaults());
    ipam.allocate_network("a", &IpamRequest::default(), &[])
        .unwrap();
    let e = ipam
        .allocate_network("a", &IpamRequest::default(), &[])
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Conflict);
}

// ---- request validation ------------------------------------------------

#[test]
fn invalid_requests_are_refused_and_reserve_nothing() {
    let ipam = Ipam::new(AddressPool::defaults());
    let with = |f: &dyn Fn(&mut IpamRequest)| {
        let mut r = subnet_req("10.0.0.0/24");
        f(&mut r);
        r
    };
    let cases: Vec<(IpamRequest, &str)> = vec![
        (subnet_req("10.0.0.1/24"), "invalid subnet 10.0.0.1/24: it should be 10.0.0.0/24"),
        (subnet_req("10.0.0.0/31"), "invalid subnet 10.0.0.0/31: a /31 or /32 has no room for a gateway and a container address"),
        (with(&|r| r.gateway = Some(ip("10.0.1.1"))), "invalid gateway 10.0.1.1: parent subnet 10.0.0.0/24 doesn't contain this address"),
        (with(&|r| r.gateway = Some(ip("10.0.0.0"))), "invalid gateway 10.0.0.0: it is the network address of subnet 10.0.0.0/24"),
        (with(&|r| r.gateway = Some(ip("10.0.0.255"))), "invalid gateway 10.0.0.255: it is the broadcast address of subnet 10.0.0.0/24"),
        (with(&|r| r.ip_range = Some(net("10.0.1.0/25"))), "invalid ip-range 10.0.1.0/25: parent subnet 10.0.0.0/24 doesn't contain ip-range"),
        (with(&|r| r.ip_range = Some(net("10.0.0.0/23"))), "invalid ip-range 10.0.0.0/23: CIDR block is bigger than its parent subnet 10.0.0.0/24"),
        (with(&|r| r.ip_range = Some(net("10.0.0.130/25"))), "invalid ip-range 10.0.0.130/25: it should be 10.0.0.128/25"),
        (with(&|r| { r.aux_addresses.insert("h".into(), ip("10.0.2.5")); }), "invalid auxiliary address h: parent subnet 10.0.0.0/24 doesn't contain this address"),
        (with(&|r| { r.aux_addresses.insert("h".into(), ip("10.0.0.1")); }), "invalid auxiliary address h: it is the gateway address"),
        (with(&|r| {
            r.aux_addresses.insert("a".into(), ip("10.0.0.9"));
            r.aux_addresses.insert("b".into(), ip("10.0.0.9"));
        }), "invalid auxiliary address b: it is also given for a"),
        (IpamRequest { gateway: Some(ip("10.0.0.1")), ..IpamRequest::default() },
            "gateway given without a subnet: every ip-range, gateway or auxiliary address must have a corresponding subnet"),
        (IpamRequest { ip_range: Some(net("10.0.0.0/25")), ..IpamRequest::default() },
            "ip-range given without a subnet: every ip-range, gateway or auxiliary address must have a corresponding subnet"),
        (IpamRequest { aux_addresses: BTreeMap::from([("h".to_string(), ip("10.0.0.5"))]), ..IpamRequest::default() },
            "auxiliary address given without a subnet: every ip-range, gateway or auxiliary address must have a corresponding subnet"),
    ];
    for (req, message) in cases {
        let e = ipam.allocate_network("n", &req, &[]).unwrap_err();
        assert_eq!(e.to_string(), message);
        assert_eq!(e.kind(), ErrorKind::InvalidArgument, "{message}");
    }
    // None of the refused requests kept the id or the subnet.
    ipam.allocate_network("n", &subnet_req("10.0.0.0/24"), &[])
        .unwrap();
}

#[test]
fn user_gateway_range_and_aux_are_kept() {
    let ipam = Ipam::new(AddressPool::defaults());
    let req = IpamRequest {
        subnet: Some(net("10.0.0.0/24")),
        gateway: Some(ip("10.0.0.254")),
        ip_range: Some(net("10.0.0.128/25")),
        aux_addresses: BTreeMap::from([("router".to_string(), ip("10.0.0.128"))]),
    };
    let p = ipam.allocate_network("n", &req, &[]).unwrap();
    assert_eq!(p.gateway, ip("10.0.0.254"));
    assert!(p.user_subnet && p.user_gateway);
    assert_eq!(p.ip_range, req.ip_range);
    assert_eq!(p.aux_addresses, req.aux_addresses);
    assert!(ipam.is_allocated("n", ip("10.0.0.254")));
    assert!(ipam.is_allocated("n", ip("10.0.0.128")));
    // The first container skips the auxiliary address at the range start.
    assert_eq!(ipam.allocate_address("n", None).unwrap(), ip("10.0.0.129"));
}

// ---- addresses ---------------------------------------------------------

fn one_network(subnet: &str) -> Ipam {
    let ipam = Ipam::new(AddressPool::defaults());
    ipam.allocate_network("n", &subnet_req(subnet), &[])
        .unwrap();
    ipam
}

#[test]
fn addresses_are_handed_out_lowest_first_and_reused_after_release() {
    let ipam = one_network("10.0.0.0/24");
    assert_eq!(ipam.allocate_address("n", None).unwrap(), ip("10.0.0.2"));
    assert_eq!(ipam.allocate_address("n", None).unwrap(), ip("10.0.0.3"));
    assert_eq!(
        ipam.allocate_address("n", Some(ip("10.0.0.4"))).unwrap(),
        ip("10.0.0.4")
    );
    assert_eq!(ipam.allocate_address("n", None).unwrap(), ip("10.0.0.5"));
    ipam.release_address("n", ip("10.0.0.3"));
    assert!(!ipam.is_allocated("n", ip("10.0.0.3")));
    assert_eq!(ipam.allocate_address("n", None).unwrap(), ip("10.0.0.3"));
}

#[test]
fn requested_addresses_are_checked() {
    let ipam = one_network("10.0.0.0/24");
    ipam.allocate_address("n", Some(ip("10.0.0.7"))).unwrap();
    let cases = [
        ("10.0.0.7", ErrorKind::Forbidden, "Address already in use"),
        ("10.0.0.1", ErrorKind::Forbidden, "Address already in use"),
        (
            "10.0.0.0",
            ErrorKind::InvalidArgument,
            "invalid address 10.0.0.0: it is the network address of subnet 10.0.0.0/24",
        ),
        (
            "10.0.0.255",
            ErrorKind::InvalidArgument,
            "invalid address 10.0.0.255: it is the broadcast address of subnet 10.0.0.0/24",
        ),
        (
            "10.0.1.7",
            ErrorKind::InvalidArgument,
            "invalid address 10.0.1.7: it does not belong to the network's subnet 10.0.0.0/24",
        ),
    ];
    for (addr, kind, message) in cases {
        let e = ipam.allocate_address("n", Some(ip(addr))).unwrap_err();
        assert_eq!((e.kind(), e.to_string().as_str()), (kind, message));
    }
}

#[test]
fn a_requested_address_may_lie_outside_the_ip_range() {
    let ipam = Ipam::new(AddressPool::defaults());
    let req = IpamRequest {
        ip_range: Some(net("10.0.0.128/25")),
        ..subnet_req("10.0.0.0/24")
    };
    ipam.allocate_network("n", &req, &[]).unwrap();
    assert_eq!(
        ipam.allocate_address("n", Some(ip("10.0.0.20"))).unwrap(),
        ip("10.0.0.20")
    );
    assert_eq!(ipam.allocate_address("n", None).unwrap(), ip("10.0.0.128"));
}

#[test]
fn an_ip_range_runs_out_even_when_the_subnet_has_room() {
    let ipam = Ipam::new(AddressPool::defaults());
    let req = IpamRequest {
        ip_range: Some(net("10.0.0.248/29")),
        ..subnet_req("10.0.0.0/24")
    };
    ipam.allocate_network("n", &req, &[]).unwrap();
    // .248 to .254: the broadcast address .255 is never a candidate.
    let got: Vec<Ipv4Addr> = (0..7)
        .map(|_| ipam.allocate_address("n", None).unwrap())
        .collect();
    assert_eq!(got.first(), Some(&ip("10.0.0.248")));
    assert_eq!(got.last(), Some(&ip("10.0.0.254")));
    let e = ipam.allocate_address("n", None).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Unavailable);
    assert_eq!(
        e.to_string(),
        "no available IPv4 addresses on this network's address pools: n"
    );
}

#[test]
fn a_slash_30_holds_a_gateway_and_one_container() {
    let ipam = one_network("10.0.0.0/30");
    assert_eq!(ipam.allocate_address("n", None).unwrap(), ip("10.0.0.2"));
    assert_eq!(
        ipam.allocate_address("n", None).unwrap_err().kind(),
        ErrorKind::Unavailable
    );
}

#[test]
fn gateway_and_aux_addresses_survive_a_stray_release() {
    let ipam = Ipam::new(AddressPool::defaults());
    let req = IpamRequest {
        aux_addresses: BTreeMap::from([("h".to_string(), ip("10.0.0.2"))]),
        ..subnet_req("10.0.0.0/24")
    };
    ipam.allocate_network("n", &req, &[]).unwrap();
    ipam.release_address("n", ip("10.0.0.1"));
    ipam.release_address("n", ip("10.0.0.2"));
    assert!(ipam.is_allocated("n", ip("10.0.0.1")));
    assert!(ipam.is_allocated("n", ip("10.0.0.2")));
    assert_eq!(ipam.allocate_address("n", None).unwrap(), ip("10.0.0.3"));
}

#[test]
fn a_slash_8_is_cheap_until_used() {
    let ipam = one_network("10.0.0.0/8");
    assert_eq!(
        ipam.allocate_address("n", Some(ip("10.255.255.254")))
            .unwrap(),
        ip("10.255.255.254")
    );
    for expected in ["10.0.0.2", "10.0.0.3", "10.0.0.4"] {
        assert_eq!(ipam.allocate_address("n", None).unwrap(), ip(expected));
    }
    let networks = ipam.lock();
    assert_eq!(
        networks["n"].used.chunk_count(),
        2,
        "only touched chunks exist"
    );
}

#[test]
fn unknown_networks() {
    let ipam = Ipam::new(AddressPool::defaults());
    let e = ipam.allocate_address("x", None).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NotFound);
    assert_eq!(
        ipam.restore_address("x", ip("10.0.0.2"))
            .unwrap_err()
            .kind(),
        ErrorKind::NotFound
    );
    assert!(!ipam.is_allocated("x", ip("10.0.0.2")));
    ipam.release_address("x", ip("10.0.0.2"));
    ipam.release_network("x");
}

#[test]
fn releasing_a_network_drops_its_addresses() {
    let ipam = one_network("10.0.0.0/24");
    ipam.allocate_address("n", Some(ip("10.0.0.9"))).unwrap();
    ipam.release_network("n");
    assert!(!ipam.is_allocated("n", ip("10.0.0.9")));
    ipam.allocate_network("n", &subnet_req("10.0.0.0/24"), &[])
        .unwrap();
    assert!(!ipam.is_allocated("n", ip("10.0.0.9")));
    assert!(
        ipam.is_allocated("n", ip("10.0.0.1")),
        "the new gateway is reserved"
    );
}

// ---- restore -----------------------------------------------------------

#[test]
fn restore_rebuilds_and_refuses_clashes() {
    let old = one_network("10.0.0.0/24");
    let stored = old
        .allocate_network("m", &IpamRequest::default(), &[])
        .unwrap();
    let a = old.allocate_address("n", None).unwrap();

    let new = Ipam::new(AddressPool::defaults());
    let n_pool = IpamPool {
        subnet: net("10.0.0.0/24"),
        gateway: ip("10.0.0.1"),
        ip_range: None,
        aux_addresses: BTreeMap::new(),
        user_subnet: true,
        user_gateway: false,
    };
    new.restore_network("n", &n_pool).unwrap();
    new.restore_network("m", &stored).unwrap();
    new.restore_address("n", a).unwrap();

    let e = new.restore_address("n", a).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Forbidden);
    let e = new.restore_address("n", ip("10.0.0.1")).unwrap_err();
    assert_eq!(
        e.kind(),
        ErrorKind::Forbidden,
        "the gateway is held by the network"
    );
    let e = new.restore_network("n", &n_pool).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Conflict);
    let overlapping = IpamPool {
        subnet: net("10.0.0.0/16"),
        ..n_pool.clone()
    };
    let e = new.restore_network("o", &overlapping).unwrap_err();
    assert_eq!(
        e.to_string(),
        "Pool overlaps with other one on this address space"
    );
    assert_eq!(e.kind(), ErrorKind::Forbidden);

    // The next automatic subnet skips the restored one.
    let next = new
        .allocate_network("k", &IpamRequest::default(), &[])
        .unwrap();
    assert_eq!(next.subnet, net("172.18.0.0/16"));
}

#[test]
fn restore_refuses_a_damaged_pool() {
    let ipam = Ipam::new(AddressPool::defaults());
    let bad = IpamPool {
        subnet: net("10.0.0.0/24"),
        gateway: ip("10.0.5.1"),
        ip_range: None,
        aux_addresses: BTreeMap::new(),
        user_subnet: true,
        user_gateway: true,
    };
    let e = ipam.restore_network("n", &bad).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidArgument);
    assert_eq!(
        ipam.allocate_address("n", None).unwrap_err().kind(),
        ErrorKind::NotFound,
        "nothing was registered"
    );
}

#[test]
fn shared_between_threads() {
    fn send_sync<T: Send + Sync>() {}
    send_sync::<Ipam>();
    send_sync::<IpamError>();
    send_sync::<AddressPool>();
}
