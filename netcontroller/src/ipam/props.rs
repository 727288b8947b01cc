//! Property and concurrency tests: nothing is ever handed out twice, across
//! releases, restarts and threads.

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;
use std::thread;

use ipnetwork::Ipv4Network;
use proptest::prelude::*;

use super::pool::span;
use super::*;
use crate::error::{ErrorKind, Kind};

fn net(a: u32, prefix: u8) -> Ipv4Network {
    let masked = if prefix == 0 {
        0
    } else {
        a & (u32::MAX << (32 - prefix))
    };
    Ipv4Network::new(Ipv4Addr::from(masked), prefix).unwrap()
}

/// Independent of the code under test: aligned blocks overlap exactly when
/// one contains the other's first address.
fn overlap(a: Ipv4Network, b: Ipv4Network) -> bool {
    a.contains(b.network()) || b.contains(a.network())
}

// ---- addresses ---------------------------------------------------------

#[derive(Debug, Clone)]
enum AddrOp {
    Any,
    /// Offset into the subnet (may hit network, broadcast, gateway, aux).
    Exact(u32),
    /// Index into the addresses held, modulo their number.
    Release(usize),
}

fn addr_op() -> impl Strategy<Value = AddrOp> {
    prop_oneof![
        3 => Just(AddrOp::Any),
        1 => (0u32..64).prop_map(AddrOp::Exact),
        2 => any::<usize>().prop_map(AddrOp::Release),
    ]
}

/// A small network so that runs reach exhaustion: /26 to /28, maybe with an
/// ip-range and an auxiliary address.
fn small_request() -> impl Strategy<Value = IpamRequest> {
    (26u8..=28, any::<bool>(), prop::option::of(2u32..15)).prop_map(|(prefix, ranged, aux)| {
        let subnet = net(0x0a00_0000, prefix);
        let base = u32::from(subnet.network());
        IpamRequest {
            subnet: Some(subnet),
            gateway: None,
            ip_range: ranged.then(|| net(base + 8, 29)),
            aux_addresses: aux
                .map(|o| BTreeMap::from([("aux".to_string(), Ipv4Addr::from(base + o))]))
                .unwrap_or_default(),
        }
    })
}

/// Applies `ops` to network "n" of `ipam`, checking each answer against the
/// set of addresses handed out so far (`held`), which it keeps up to date.
fn run_addr_ops(
    ipam: &Ipam,
    pool: &IpamPool,
    held: &mut BTreeSet<Ipv4Addr>,
    ops: &[AddrOp],
) -> Result<(), TestCaseError> {
    let (net_addr, bcast) = span(pool.subnet);
    let reserved: BTreeSet<Ipv4Addr> = pool
        .aux_addresses
        .values()
        .copied()
        .chain([pool.gateway])
        .collect();
    let (mut lo, mut hi) = (net_addr + 1, bcast - 1);
    if let Some(r) = pool.ip_range {
        lo = lo.max(span(r).0);
        hi = hi.min(span(r).1);
    }
    for op in ops {
        match op {
            AddrOp::Any => {
                let lowest_free = (lo..=hi)
                    .map(|a| Ipv4Addr::from(a as u32))
                    .find(|a| !held.contains(a) && !reserved.contains(a));
                match ipam.allocate_address("n", None) {
                    Ok(a) => {
                        prop_assert_eq!(Some(a), lowest_free);
                        prop_assert!(held.insert(a), "{} handed out twice", a);
                    }
                    Err(e) => {
                        prop_assert_eq!(lowest_free, None, "refused with room left: {}", e);
                        prop_assert_eq!(e.kind(), ErrorKind::Unavailable);
                    }
                }
            }
            AddrOp::Exact(offset) => {
                let a = Ipv4Addr::from((net_addr as u32).wrapping_add(*offset));
                let got = ipam.allocate_address("n", Some(a));
                let expected = if !pool.subnet.contains(a)
                    || u64::from(u32::from(a)) == net_addr
                    || u64::from(u32::from(a)) == bcast
                {
                    Some(ErrorKind::InvalidArgument)
                } else if held.contains(&a) || reserved.contains(&a) {
                    Some(ErrorKind::Forbidden)
                } else {
                    None
                };
                prop_assert_eq!(got.as_ref().err().map(Kind::kind), expected);
                if got.is_ok() {
                    held.insert(a);
                }
            }
            AddrOp::Release(i) => {
                if held.is_empty() {
                    continue;
                }
                let a = *held.iter().nth(i % held.len()).unwrap();
                ipam.release_address("n", a);
                held.remove(&a);
                prop_assert!(!ipam.is_allocated("n", a));
                // Released means reusable: asking for it again succeeds.
                prop_assert_eq!(ipam.allocate_address("n", Some(a)), Ok(a));
                ipam.release_address("n", a);
            }
        }
        for a in held.iter().chain(&reserved) {
            prop_assert!(ipam.is_allocated("n", *a));
        }
    }
    Ok(())
}

proptest! {
    /// Addresses are never handed out twice, the automatic one is always the
    /// lowest free candidate, exhaustion is reported only when nothing is
    /// left, and all of it still holds after a restart rebuilt from what the
    /// first manager gave out.
    #[test]
    fn addresses_are_unique_across_release_and_restart(
        req in small_request(),
        before in prop::collection::vec(addr_op(), 0..120),
        after in prop::collection::vec(addr_op(), 0..120),
    ) {
        let ipam = Ipam::new(AddressPool::defaults());
        let pool = ipam.allocate_network("n", &req, &[]).unwrap();
        let mut held = BTreeSet::new();
        run_addr_ops(&ipam, &pool, &mut held, &before)?;

        let restarted = Ipam::new(AddressPool::defaults());
        restarted.restore_network("n", &pool).unwrap();
        for a in &held {
            restarted.restore_address("n", *a).unwrap();
        }
        run_addr_ops(&restarted, &pool, &mut held, &after)?;
    }
}

// ---- subnets -----------------------------------------------------------

#[derive(Debug, Clone)]
enum NetOp {
    Auto,
    User(Ipv4Network),
    Release(usize),
}

fn small_net() -> impl Strategy<Value = Ipv4Network> {
    // Inside 10.0.0.0/14 so that pools and requests collide often.
    (0u32..(1 << 12), 14u8..=26).prop_map(|(low, prefix)| net(0x0a00_0000 | (low << 6), prefix))
}

/// Routes and interface addresses (some with host bits set): anything from
/// a /14 down to one host, often on the first or last address of a 1 KiB
/// block, where an off-by-one in the overlap test would show.
fn avoid_net() -> impl Strategy<Value = Ipv4Network> {
    let low = prop_oneof![
        (0u32..256).prop_map(|k| k << 10),
        (1u32..=256).prop_map(|k| (k << 10) - 1),
        0u32..(1 << 18),
    ];
    (low, prop_oneof![14u8..=32, Just(32)], any::<bool>()).prop_map(|(low, prefix, address)| {
        let a = 0x0a00_0000 | low;
        if address {
            Ipv4Network::new(Ipv4Addr::from(a), prefix).unwrap()
        } else {
            net(a, prefix)
        }
    })
}

fn net_op() -> impl Strategy<Value = NetOp> {
    prop_oneof![
        4 => Just(NetOp::Auto),
        1 => small_net().prop_map(NetOp::User),
        2 => any::<usize>().prop_map(NetOp::Release),
    ]
}

fn pools() -> impl Strategy<Value = Vec<AddressPool>> {
    let one = (0u32..4, 14u8..=16, 0u8..=6).prop_map(|(quarter, prefix, extra)| {
        let base = net(0x0a00_0000 | (quarter << 16), prefix);
        AddressPool::new(base, prefix + 2 + extra).unwrap()
    });
    prop::collection::vec(one, 1..4)
}

/// The subnet a correct manager must choose: the lowest free one of the
/// first pool that has any, found by trying every candidate.
fn brute_force_choice(pools: &[AddressPool], taken: &[Ipv4Network]) -> Option<Ipv4Network> {
    pools.iter().find_map(|p| {
        let (start, end) = span(p.base);
        let step = 1u64 << (32 - p.size);
        (0..)
            .map(|i| start + i * step)
            .take_while(|c| *c <= end)
            .map(|c| net(c as u32, p.size))
            .find(|cand| taken.iter().all(|t| !overlap(*cand, *t)))
    })
}

fn run_net_ops(
    ipam: &Ipam,
    pools: &[AddressPool],
    avoid: &[Ipv4Network],
    held: &mut BTreeMap<String, Ipv4Network>,
    next_id: &mut usize,
    ops: &[NetOp],
) -> Result<(), TestCaseError> {
    let avoid_effective: Vec<Ipv4Network> =
        avoid.iter().copied().filter(|a| a.prefix() > 0).collect();
    for op in ops {
        match op {
            NetOp::Auto => {
                let mut taken: Vec<Ipv4Network> = held.values().copied().collect();
                taken.extend(&avoid_effective);
                let expected = brute_force_choice(pools, &taken);
                let id = format!("n{next_id}");
                *next_id += 1;
                match ipam.allocate_network(&id, &IpamRequest::default(), avoid) {
                    Ok(p) => {
                        prop_assert_eq!(Some(p.subnet), expected);
                        held.insert(id, p.subnet);
                    }
                    Err(e) => {
                        prop_assert_eq!(expected, None, "refused with room left: {}", e);
                        prop_assert_eq!(e, IpamError::NoSubnetAvailable);
                    }
                }
            }
            NetOp::User(subnet) => {
                let clash = held.values().any(|h| overlap(*h, *subnet));
                let id = format!("n{next_id}");
                *next_id += 1;
                let req = IpamRequest {
                    subnet: Some(*subnet),
                    ..IpamRequest::default()
                };
                match ipam.allocate_network(&id, &req, avoid) {
                    Ok(p) => {
                        prop_assert!(!clash, "{} granted over a held subnet", subnet);
                        held.insert(id, p.subnet);
                    }
                    Err(e) => {
                        prop_assert!(clash, "{} refused without a clash: {}", subnet, e);
                        prop_assert_eq!(e.kind(), ErrorKind::Forbidden);
                    }
                }
            }
            NetOp::Release(i) => {
                if held.is_empty() {
                    continue;
                }
                let id = held.keys().nth(i % held.len()).unwrap().clone();
                ipam.release_network(&id);
                held.remove(&id);
            }
        }
        let all: Vec<_> = held.values().collect();
        for (i, a) in all.iter().enumerate() {
            for b in &all[i + 1..] {
                prop_assert!(!overlap(**a, **b), "{} and {} overlap", a, b);
            }
        }
    }
    Ok(())
}

proptest! {
    /// Held subnets never overlap each other, automatic ones never overlap
    /// `avoid` and are exactly the lowest free pool subnet, pools are
    /// reported exhausted only when they are, and a restarted manager
    /// rebuilt from the held networks keeps all of that.
    #[test]
    fn subnets_never_overlap_across_release_and_restart(
        pools in pools(),
        avoid in prop::collection::vec(avoid_net(), 0..6),
        with_default_route in any::<bool>(),
        before in prop::collection::vec(net_op(), 0..40),
        after in prop::collection::vec(net_op(), 0..40),
    ) {
        let mut avoid = avoid;
        if with_default_route {
            avoid.push(net(0, 0));
        }
        let ipam = Ipam::new(pools.clone());
        let mut held = BTreeMap::new();
        let mut next_id = 0;
        run_net_ops(&ipam, &pools, &avoid, &mut held, &mut next_id, &before)?;

        let restarted = Ipam::new(pools.clone());
        for (id, subnet) in &held {
            let pool = IpamPool {
                subnet: *subnet,
                gateway: Ipv4Addr::from(u32::from(subnet.network()) + 1),
                ip_range: None,
                aux_addresses: BTreeMap::new(),
                user_subnet: false,
                user_gateway: false,
            };
            restarted.restore_network(id, &pool).unwrap();
        }
        run_net_ops(&restarted, &pools, &avoid, &mut held, &mut next_id, &after)?;
    }
}

// ---- threads -----------------------------------------------------------

const THREADS: usize = 8;

#[test]
fn concurrent_address_allocation_never_collides() {
    let ipam = Ipam::new(AddressPool::defaults());
    // A /22 has 1021 candidates; 8 threads ask for 160 each, and every
    // thread gives back a third of what it got along the way.
    ipam.allocate_network(
        "n",
        &IpamRequest {
            subnet: Some(net(0x0a00_0000, 22)),
            ..IpamRequest::default()
        },
        &[],
    )
    .unwrap();
    let kept: Vec<Vec<Ipv4Addr>> = thread::scope(|s| {
        let workers: Vec<_> = (0..THREADS)
            .map(|_| {
                s.spawn(|| {
                    let mut mine = Vec::new();
                    for i in 0..160 {
                        let a = ipam.allocate_address("n", None).unwrap();
                        if i % 3 == 0 {
                            ipam.release_address("n", a);
                        } else {
                            mine.push(a);
                        }
                    }
                    mine
                })
            })
            .collect();
        workers.into_iter().map(|w| w.join().unwrap()).collect()
    });
    let mut seen = BTreeSet::new();
    for a in kept.iter().flatten() {
        assert!(seen.insert(*a), "{a} held by two threads");
        assert!(ipam.is_allocated("n", *a));
    }
    assert_eq!(seen.len(), THREADS * 106);
}

#[test]
fn concurrent_exhaustion_hands_out_each_address_once() {
    let ipam = Ipam::new(AddressPool::defaults());
    // 13 candidates (.2 to .14) for 8 threads asking 4 times each.
    ipam.allocate_network(
        "n",
        &IpamRequest {
            subnet: Some(net(0x0a00_0000, 28)),
            ..IpamRequest::default()
        },
        &[],
    )
    .unwrap();
    let results: Vec<Result<Ipv4Addr, IpamError>> = thread::scope(|s| {
        let workers: Vec<_> = (0..THREADS)
            .map(|_| {
                s.spawn(|| {
                    (0..4)
                        .map(|_| ipam.allocate_address("n", None))
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        workers
            .into_iter()
            .flat_map(|w| w.join().unwrap())
            .collect()
    });
    let got: BTreeSet<Ipv4Addr> = results.iter().filter_map(|r| r.clone().ok()).collect();
    assert_eq!(got.len(), 13);
    assert_eq!(
        results.iter().filter(|r| r.is_ok()).count(),
        13,
        "no duplicates"
    );
    assert!(results
        .iter()
        .filter_map(|r| r.as_ref().err())
        .all(|e| e.kind() == ErrorKind::Unavailable));
}

#[test]
fn concurrent_subnet_allocation_never_overlaps() {
    // The defaults hold 15 + 16 = 31 subnets; 8 threads ask for 5 each.
    let ipam = Ipam::new(AddressPool::defaults());
    let results: Vec<Result<Ipv4Network, IpamError>> = thread::scope(|s| {
        let ipam = &ipam;
        let workers: Vec<_> = (0..THREADS)
            .map(|t| {
                s.spawn(move || {
                    (0..5)
                        .map(|i| {
                            ipam.allocate_network(&format!("{t}-{i}"), &IpamRequest::default(), &[])
                                .map(|p| p.subnet)
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        workers
            .into_iter()
            .flat_map(|w| w.join().unwrap())
            .collect()
    });
    let subnets: Vec<Ipv4Network> = results.iter().filter_map(|r| r.clone().ok()).collect();
    assert_eq!(subnets.len(), 31);
    for (i, a) in subnets.iter().enumerate() {
        for b in &subnets[i + 1..] {
            assert!(!overlap(*a, *b), "{a} and {b} overlap");
        }
    }
    let refused: Vec<ErrorKind> = results
        .iter()
        .filter_map(|r| r.as_ref().err().map(Kind::kind))
        .collect();
    assert_eq!(refused, vec![ErrorKind::NotFound; 9]);
}
