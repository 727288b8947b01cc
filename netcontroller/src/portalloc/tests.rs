//! Example-based tests of host port allocation.

use std::net::Ipv4Addr;

use super::*;
use crate::error::{ErrorKind, Kind};
use crate::model::Proto::{Tcp, Udp};

const ANY: Ipv4Addr = Ipv4Addr::UNSPECIFIED;
const LO: Ipv4Addr = Ipv4Addr::LOCALHOST;
const OTHER: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 1);

#[test]
fn an_exact_port_is_held_once_with_dockerds_message() {
    let pa = PortAllocator::new(49153..=65535);
    assert_eq!(pa.allocate(Tcp, ANY, PortRequest::Exact(8080)), Ok(8080));
    let e = pa.allocate(Tcp, ANY, PortRequest::Exact(8080)).unwrap_err();
    assert_eq!(
        e.to_string(),
        "Bind for 0.0.0.0:8080 failed: port is already allocated"
    );
    assert_eq!(e.kind(), ErrorKind::Conflict);
    assert_eq!(
        pa.allocate(Udp, ANY, PortRequest::Exact(8080)),
        Ok(8080),
        "protocols are apart"
    );
}

#[test]
fn all_addresses_clash_with_every_specific_one() {
    let pa = PortAllocator::new(49153..=65535);
    pa.allocate(Tcp, ANY, PortRequest::Exact(80)).unwrap();
    let e = pa.allocate(Tcp, LO, PortRequest::Exact(80)).unwrap_err();
    assert_eq!(
        e.to_string(),
        "Bind for 127.0.0.1:80 failed: port is already allocated"
    );

    pa.allocate(Tcp, LO, PortRequest::Exact(81)).unwrap();
    assert_eq!(
        pa.allocate(Tcp, OTHER, PortRequest::Exact(81)),
        Ok(81),
        "two specific addresses do not clash"
    );
    let e = pa.allocate(Tcp, ANY, PortRequest::Exact(81)).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Conflict);

    pa.release(Tcp, LO, 81);
    assert!(
        pa.allocate(Tcp, ANY, PortRequest::Exact(81)).is_err(),
        "10.0.0.1 still holds 81"
    );
    pa.release(Tcp, OTHER, 81);
    assert_eq!(pa.allocate(Tcp, ANY, PortRequest::Exact(81)), Ok(81));
}

#[test]
fn invalid_requests() {
    let pa = PortAllocator::new(49153..=65535);
    let cases = [
        (
            PortRequest::Exact(0),
            "invalid host port 0: a published port needs a port number between 1 and 65535",
        ),
        (
            PortRequest::Range(0, 10),
            "invalid host port range 0-10: must be ascending and start above 0",
        ),
        (
            PortRequest::Range(10, 5),
            "invalid host port range 10-5: must be ascending and start above 0",
        ),
        (
            PortRequest::Range(0, 0),
            "invalid host port range 0-0: must be ascending and start above 0",
        ),
    ];
    for (req, message) in cases {
        let e = pa.allocate(Tcp, ANY, req).unwrap_err();
        assert_eq!(
            (e.kind(), e.to_string().as_str()),
            (ErrorKind::InvalidArgument, message)
        );
    }
    assert_eq!(
        pa.restore(Tcp, ANY, 0).unwrap_err().kind(),
        ErrorKind::InvalidArgument
    );
}

#[test]
fn a_range_gives_its_lowest_free_port() {
    let pa = PortAllocator::new(49153..=65535);
    pa.allocate(Tcp, LO, PortRequest::Exact(8000)).unwrap();
    assert_eq!(
        pa.allocate(Tcp, ANY, PortRequest::Range(8000, 8002)),
        Ok(8001)
    );
    assert_eq!(
        pa.allocate(Tcp, ANY, PortRequest::Range(8000, 8002)),
        Ok(8002)
    );
    let e = pa
        .allocate(Tcp, ANY, PortRequest::Range(8000, 8002))
        .unwrap_err();
    assert_eq!(
        e.to_string(),
        "Bind for 0.0.0.0:8000-8002 failed: every port in the range is already allocated"
    );
    assert_eq!(e.kind(), ErrorKind::Conflict);
    pa.release(Tcp, ANY, 8001);
    assert_eq!(
        pa.allocate(Tcp, ANY, PortRequest::Range(8000, 8002)),
        Ok(8001)
    );
}

#[test]
fn a_one_port_range_is_an_exact_request() {
    let pa = PortAllocator::new(49153..=65535);
    assert_eq!(
        pa.allocate(Tcp, ANY, PortRequest::Range(9000, 9000)),
        Ok(9000)
    );
    let e = pa
        .allocate(Tcp, ANY, PortRequest::Range(9000, 9000))
        .unwrap_err();
    assert_eq!(
        e.to_string(),
        "Bind for 0.0.0.0:9000 failed: port is already allocated"
    );
}

#[test]
fn any_goes_round_robin_through_the_ephemeral_range() {
    let pa = PortAllocator::new(100..=104);
    assert_eq!(pa.allocate(Tcp, ANY, PortRequest::Any), Ok(100));
    assert_eq!(pa.allocate(Tcp, ANY, PortRequest::Any), Ok(101));
    pa.release(Tcp, ANY, 100);
    // Held by someone else: skipped.
    pa.allocate(Tcp, LO, PortRequest::Exact(103)).unwrap();
    assert_eq!(
        pa.allocate(Tcp, ANY, PortRequest::Any),
        Ok(102),
        "100 is not reused at once"
    );
    assert_eq!(pa.allocate(Tcp, ANY, PortRequest::Any), Ok(104));
    assert_eq!(
        pa.allocate(Tcp, ANY, PortRequest::Any),
        Ok(100),
        "wraps to the start"
    );
    let e = pa.allocate(Tcp, ANY, PortRequest::Any).unwrap_err();
    assert_eq!(e.to_string(), "all ports are allocated");
    assert_eq!(e.kind(), ErrorKind::Unavailable);
    assert_eq!(
        pa.allocate(Udp, ANY, PortRequest::Any),
        Ok(100),
        "each protocol has its own cursor"
    );
}

#[test]
fn restore_rebuilds_and_refuses_clashes() {
    let pa = PortAllocator::new(100..=104);
    pa.restore(Tcp, LO, 100).unwrap();
    pa.restore(Tcp, OTHER, 100).unwrap();
    assert_eq!(
        pa.restore(Tcp, LO, 100).unwrap_err().kind(),
        ErrorKind::Conflict
    );
    assert_eq!(
        pa.restore(Tcp, ANY, 100).unwrap_err().kind(),
        ErrorKind::Conflict
    );
    assert_eq!(pa.allocate(Tcp, ANY, PortRequest::Any), Ok(101));
}

#[test]
fn releasing_what_is_not_held_changes_nothing() {
    let pa = PortAllocator::new(100..=101);
    pa.release(Tcp, ANY, 100);
    pa.allocate(Tcp, LO, PortRequest::Exact(100)).unwrap();
    pa.release(Tcp, ANY, 100);
    pa.release(Udp, LO, 100);
    assert!(pa.allocate(Tcp, LO, PortRequest::Exact(100)).is_err());
}

#[test]
fn port_zero_and_empty_ranges_are_never_ephemeral() {
    assert_eq!(PortAllocator::new(0..=3).ephemeral(), 1..=3);
    #[allow(clippy::reversed_empty_ranges)]
    let empty = 10..=5;
    assert_eq!(PortAllocator::new(empty).ephemeral(), 49153..=65535);
    let pa = PortAllocator::new(0..=0);
    assert_eq!(pa.ephemeral(), 49153..=65535);
}

#[test]
fn ephemeral_range_follows_dockerd_20_10() {
    let cases = [
        (Some("32768\t60999\n"), 49153..=60999),
        (Some("50000 60000"), 50000..=60000),
        (Some("1024 65535"), 49153..=65535),
        (Some("32768 40000"), 49153..=65535),
        (Some("60000 50000"), 49153..=65535),
        (Some("garbage"), 49153..=65535),
        (Some("1 2 3"), 49153..=65535),
        (None, 49153..=65535),
    ];
    for (text, want) in cases {
        assert_eq!(ephemeral_from_sysctl(text), want, "for {text:?}");
    }
}

#[test]
fn from_kernel_stays_within_dockerds_bounds() {
    let r = PortAllocator::from_kernel().ephemeral();
    assert!(*r.start() >= 49153 && r.start() <= r.end(), "{r:?}");
}

#[test]
fn shared_between_threads() {
    fn send_sync<T: Send + Sync>() {}
    send_sync::<PortAllocator>();
    send_sync::<PortError>();
}
