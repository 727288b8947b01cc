//! Property and concurrency tests: no host port is ever held twice, across
//! releases, restarts and threads.

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;
use std::thread;

use proptest::prelude::*;

use super::*;
use crate::error::{ErrorKind, Kind};

const EPHEMERAL: RangeInclusive<u16> = 1000..=1011;

type Held = BTreeSet<(Proto, Ipv4Addr, u16)>;

/// The rule, stated independently of the code: the same protocol and port
/// clash when the addresses are equal or either is 0.0.0.0.
fn clashes(held: &Held, proto: Proto, ip: Ipv4Addr, port: u16) -> bool {
    held.iter().any(|(p, i, n)| {
        *p == proto && *n == port && (*i == ip || i.is_unspecified() || ip.is_unspecified())
    })
}

#[derive(Debug, Clone)]
enum Op {
    Alloc(Proto, Ipv4Addr, PortRequest),
    Release(usize),
}

fn op() -> impl Strategy<Value = Op> {
    let proto = prop_oneof![Just(Proto::Tcp), Just(Proto::Udp)];
    let ip = prop_oneof![
        Just(Ipv4Addr::UNSPECIFIED),
        Just(Ipv4Addr::LOCALHOST),
        Just(Ipv4Addr::new(10, 0, 0, 1)),
    ];
    // Exact and range requests overlap the ephemeral range and go past it.
    let req = prop_oneof![
        3 => Just(PortRequest::Any),
        2 => (995u16..1016).prop_map(PortRequest::Exact),
        1 => (995u16..1016, 0u16..6).prop_map(|(lo, len)| PortRequest::Range(lo, lo + len)),
    ];
    prop_oneof![
        3 => (proto, ip, req).prop_map(|(p, i, r)| Op::Alloc(p, i, r)),
        1 => any::<usize>().prop_map(Op::Release),
    ]
}

fn run(pa: &PortAllocator, held: &mut Held, ops: &[Op]) -> Result<(), TestCaseError> {
    // The cursor of the round robin, per protocol; a new allocator starts afresh.
    let mut last: BTreeMap<Proto, u16> = BTreeMap::new();
    for op in ops {
        match *op {
            Op::Alloc(proto, ip, req) => {
                let free = |p: &u16| !clashes(held, proto, ip, *p);
                let expected: Result<u16, ErrorKind> = match req {
                    PortRequest::Exact(p) => {
                        if free(&p) {
                            Ok(p)
                        } else {
                            Err(ErrorKind::Conflict)
                        }
                    }
                    PortRequest::Range(lo, hi) => (lo..=hi).find(free).ok_or(ErrorKind::Conflict),
                    PortRequest::Any => {
                        let (lo, hi) = (*EPHEMERAL.start(), *EPHEMERAL.end());
                        let from = last.get(&proto).copied().unwrap_or(hi);
                        (1..=hi - lo + 1)
                            .map(|i| lo + (from - lo + i) % (hi - lo + 1))
                            .find(free)
                            .ok_or(ErrorKind::Unavailable)
                    }
                };
                let got = pa.allocate(proto, ip, req).map_err(|e| e.kind());
                prop_assert_eq!(got, expected, "{:?} on {}/{}", req, ip, proto);
                if let Ok(port) = got {
                    held.insert((proto, ip, port));
                    if req == PortRequest::Any {
                        last.insert(proto, port);
                    }
                }
            }
            Op::Release(i) => {
                if held.is_empty() {
                    continue;
                }
                let entry = *held.iter().nth(i % held.len()).unwrap();
                held.remove(&entry);
                let (proto, ip, port) = entry;
                pa.release(proto, ip, port);
                // Released means reusable.
                prop_assert_eq!(pa.allocate(proto, ip, PortRequest::Exact(port)), Ok(port));
                pa.release(proto, ip, port);
            }
        }
    }
    Ok(())
}

proptest! {
    /// Every answer is the one the clash rule dictates (exact, lowest in
    /// range, next round-robin ephemeral port, or the right refusal), so no
    /// port is ever held twice; and a restarted allocator rebuilt from what
    /// was held behaves the same.
    #[test]
    fn ports_are_unique_across_release_and_restart(
        before in prop::collection::vec(op(), 0..150),
        after in prop::collection::vec(op(), 0..150),
    ) {
        let pa = PortAllocator::new(EPHEMERAL);
        let mut held = Held::new();
        run(&pa, &mut held, &before)?;

        let restarted = PortAllocator::new(EPHEMERAL);
        for (proto, ip, port) in &held {
            restarted.restore(*proto, *ip, *port).unwrap();
        }
        run(&restarted, &mut held, &after)?;
    }
}

const THREADS: usize = 8;

#[test]
fn concurrent_allocation_never_collides() {
    let pa = PortAllocator::new(40000..=41999);
    // Threads alternate between all addresses and loopback, and give back
    // every third port, so the clash rule is exercised under contention.
    let kept: Vec<Vec<(Ipv4Addr, u16)>> = thread::scope(|s| {
        let workers: Vec<_> = (0..THREADS)
            .map(|t| {
                let pa = &pa;
                s.spawn(move || {
                    let ip = if t % 2 == 0 {
                        Ipv4Addr::UNSPECIFIED
                    } else {
                        Ipv4Addr::LOCALHOST
                    };
                    let mut mine = Vec::new();
                    for i in 0..150 {
                        let port = pa.allocate(Proto::Tcp, ip, PortRequest::Any).unwrap();
                        if i % 3 == 0 {
                            pa.release(Proto::Tcp, ip, port);
                        } else {
                            mine.push((ip, port));
                        }
                    }
                    mine
                })
            })
            .collect();
        workers.into_iter().map(|w| w.join().unwrap()).collect()
    });
    let mut held = Held::new();
    for (ip, port) in kept.into_iter().flatten() {
        assert!(
            !clashes(&held, Proto::Tcp, ip, port),
            "{ip}:{port} held twice"
        );
        held.insert((Proto::Tcp, ip, port));
    }
    assert_eq!(held.len(), THREADS * 100);
}

#[test]
fn concurrent_exhaustion_hands_out_each_port_once() {
    let pa = PortAllocator::new(EPHEMERAL);
    let results: Vec<Result<u16, PortError>> = thread::scope(|s| {
        let workers: Vec<_> = (0..THREADS)
            .map(|_| {
                s.spawn(|| {
                    (0..3)
                        .map(|_| pa.allocate(Proto::Udp, Ipv4Addr::UNSPECIFIED, PortRequest::Any))
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        workers
            .into_iter()
            .flat_map(|w| w.join().unwrap())
            .collect()
    });
    let ports: BTreeSet<u16> = results.iter().filter_map(|r| r.clone().ok()).collect();
    assert_eq!(ports, EPHEMERAL.collect::<BTreeSet<u16>>());
    assert_eq!(
        results.iter().filter(|r| r.is_ok()).count(),
        12,
        "no duplicates"
    );
    let refused: Vec<ErrorKind> = results
        .iter()
        .filter_map(|r| r.as_ref().err().map(Kind::kind))
        .collect();
    assert_eq!(refused, vec![ErrorKind::Unavailable; 12]);
}
