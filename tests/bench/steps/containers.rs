//! Container steps on the default bridge: create+start until the address
//! answers, connect/disconnect to a user network, stop+remove, and
//! published ports until a server answers through them.

use std::net::{Ipv4Addr, SocketAddrV4};
use std::process::Command;
use std::time::Instant;

use anyhow::{Context, Result};

use super::lifecycle;
use super::{open_daemon, order, settle, Sides, Step, Timings};
use crate::api::container_spec;
use crate::cli::Args;
use crate::daemon::Daemon;
use crate::probe;
use crate::report::{Kind, Report, Unit};
use crate::signals;

const CREATE: &str = "container create";
const START: &str = "container start";
const CREATE_START: &str = "container create+start";
const PING: &str = "container create -> its address answers ping";
const CONNECT: &str = "network connect (running container)";
const DISCONNECT: &str = "network disconnect (running container)";
const STOP: &str = "container stop (t=0)";
const REMOVE: &str = "container remove";
const STOP_REMOVE: &str = "container stop+remove";

const SLEEP: [&str; 2] = ["/bin/sleep", "3600"];
const HTTPD: [&str; 4] = ["/bin/httpd", "-f", "-p", "80"];

/// Starts `--containers` containers, cycles one of them through a user
/// network `--connects` times, then stops and removes them all.
pub fn start_connect_remove(args: &Args, sides: &mut Sides, report: &mut Report) -> Result<()> {
    if args.containers == 0 {
        eprintln!("compare: container step skipped (--containers 0)");
        return Ok(());
    }
    let ctrs = start_all(args, sides, report)?;
    connect_cycle(args, sides, report, &ctrs)?;
    stop_remove(sides, report, ctrs)
}

fn start_all(args: &Args, sides: &mut Sides, report: &mut Report) -> Result<[Vec<String>; 2]> {
    let ping_note = "until ICMP echo from the daemon's namespace is answered (includes one inspect for the address)";
    let rows = [
        (CREATE, Unit::Ms, "busybox sleep 3600 on the default bridge"),
        (START, Unit::Ms, ""),
        (CREATE_START, Unit::Ms, ""),
        (PING, Unit::Ms, ping_note),
    ];
    let mut step = Step::new(report, sides, &rows, true);
    let mut ctrs: [Vec<String>; 2] = Default::default();
    for i in 0..args.containers {
        signals::check()?;
        for kind in order(i) {
            if let Some(daemon) = open_daemon(&step, sides, kind) {
                settle();
                let r = start_one(daemon, &format!("bench-c-{i}"), &mut ctrs[kind.index()]);
                step.take(kind, r);
            }
        }
    }
    Ok(ctrs)
}

/// Create, start, inspect, ping. The id is kept as soon as it exists, so a
/// later failure still gets the container removed.
fn start_one(daemon: &Daemon, name: &str, ctrs: &mut Vec<String>) -> Result<((), Timings)> {
    let c = daemon.client();
    let t0 = Instant::now();
    let id = c.create_container(name, &container_spec(&SLEEP, None))?;
    let t1 = Instant::now();
    ctrs.push(id.clone());
    c.start(&id)?;
    let t2 = Instant::now();
    let ip = c.container_ip(&id)?;
    probe::wait_ping(daemon.ns(), ip)?;
    let t3 = Instant::now();
    Ok((
        (),
        vec![
            (CREATE, t1 - t0),
            (START, t2 - t1),
            (CREATE_START, t2 - t0),
            (PING, t3 - t0),
        ],
    ))
}

fn connect_cycle(
    args: &Args,
    sides: &mut Sides,
    report: &mut Report,
    ctrs: &[Vec<String>; 2],
) -> Result<()> {
    if args.connects == 0 {
        eprintln!("compare: connect step skipped (--connects 0)");
        return Ok(());
    }
    let rows = [
        (
            CONNECT,
            Unit::Ms,
            "a running container to a user bridge network",
        ),
        (DISCONNECT, Unit::Ms, ""),
    ];
    let mut step = Step::new(report, sides, &rows, true);
    let mut nets: [Option<String>; 2] = Default::default();
    for kind in Kind::ALL {
        let Some(daemon) = open_daemon(&step, sides, kind) else {
            continue;
        };
        if ctrs[kind.index()].is_empty() {
            step.block(kind, "no container was started");
            continue;
        }
        match daemon.client().create_network("bench-connect") {
            Ok(id) => nets[kind.index()] = Some(id),
            Err(e) => step.block(kind, &format!("user network: {e}")),
        }
    }
    for i in 0..args.connects {
        signals::check()?;
        for kind in order(i) {
            let (Some(net), Some(ctr)) = (&nets[kind.index()], ctrs[kind.index()].first()) else {
                continue;
            };
            if let Some(daemon) = open_daemon(&step, sides, kind) {
                settle();
                let r = connect_once(daemon, net, ctr);
                step.take(kind, r);
            }
        }
    }
    for kind in Kind::ALL {
        if let (Some(net), Some(daemon)) = (&nets[kind.index()], sides.daemon(kind)) {
            if !step.open(kind) {
                // A failed cycle may have left the container connected.
                let _ = daemon.client().disconnect(net, &ctrs[kind.index()][0]);
            }
            if let Err(e) = daemon.client().remove_network(net) {
                eprintln!("compare: {}: removing bench-connect: {e}", kind.name());
            }
        }
    }
    Ok(())
}

fn connect_once(daemon: &Daemon, net: &str, ctr: &str) -> Result<((), Timings)> {
    let c = daemon.client();
    let t0 = Instant::now();
    c.connect(net, ctr)?;
    let t1 = Instant::now();
    c.disconnect(net, ctr)?;
    let t2 = Instant::now();
    Ok(((), vec![(CONNECT, t1 - t0), (DISCONNECT, t2 - t1)]))
}

fn stop_remove(sides: &mut Sides, report: &mut Report, ctrs: [Vec<String>; 2]) -> Result<()> {
    let rows = [
        (STOP, Unit::Ms, "POST /containers/ID/stop?t=0"),
        (REMOVE, Unit::Ms, ""),
        (STOP_REMOVE, Unit::Ms, ""),
    ];
    let mut step = Step::new(report, sides, &rows, true);
    for kind in Kind::ALL {
        if step.open(kind) && ctrs[kind.index()].is_empty() {
            step.block(kind, "no container was created");
        }
    }
    let most = ctrs.iter().map(Vec::len).max().unwrap_or(0);
    for i in 0..most {
        signals::check()?;
        for kind in order(i) {
            let Some(id) = ctrs[kind.index()].get(i) else {
                continue;
            };
            if let Some(daemon) = open_daemon(&step, sides, kind) {
                settle();
                let r = stop_remove_one(daemon, id);
                step.take(kind, r);
            }
        }
    }
    // Whatever a failure left behind goes untimed.
    force_remove(sides, &ctrs);
    Ok(())
}

fn stop_remove_one(daemon: &Daemon, id: &str) -> Result<((), Timings)> {
    let c = daemon.client();
    let t0 = Instant::now();
    c.stop(id, 0)?;
    let t1 = Instant::now();
    c.remove_container(id, false)?;
    let t2 = Instant::now();
    Ok((
        (),
        vec![(STOP, t1 - t0), (REMOVE, t2 - t1), (STOP_REMOVE, t2 - t0)],
    ))
}

/// Removes (force) every listed container still known to its daemon.
fn force_remove(sides: &mut Sides, ctrs: &[Vec<String>; 2]) {
    for kind in Kind::ALL {
        let Some(daemon) = sides.daemon(kind) else {
            continue;
        };
        for id in &ctrs[kind.index()] {
            // A 404 here just means it is already gone.
            let _ = daemon.client().remove_container(id, true);
        }
    }
}

const PORT_START: &str = "port container create+start (-p HOSTPORT:80)";
const VIA_GATEWAY: &str = "port container create -> HTTP answer via gateway:HOSTPORT";
const VIA_LOOPBACK: &str = "port container create -> HTTP answer via 127.0.0.1:HOSTPORT";

/// `--containers` containers running `busybox httpd`, each publishing one
/// port; timed until an HTTP answer comes back through the bridge gateway
/// address (DNAT) and through 127.0.0.1 (the userland proxy path). Memory
/// is read while they all run; then they are removed.
pub fn published_ports(args: &Args, sides: &mut Sides, report: &mut Report) -> Result<()> {
    if args.containers == 0 {
        eprintln!("compare: published-port step skipped (--containers 0)");
        return Ok(());
    }
    let rows = [
        (PORT_START, Unit::Ms, "busybox httpd -f -p 80"),
        (
            VIA_GATEWAY,
            Unit::Ms,
            "from the daemon's namespace, through DNAT",
        ),
        (
            VIA_LOOPBACK,
            Unit::Ms,
            "from the daemon's namespace, through the userland proxy",
        ),
    ];
    let mut step = Step::new(report, sides, &rows, true);
    let mut gateways: [Option<Ipv4Addr>; 2] = [None; 2];
    for kind in Kind::ALL {
        if let Some(daemon) = open_daemon(&step, sides, kind) {
            match gateway(daemon) {
                Ok(gw) => gateways[kind.index()] = Some(gw),
                Err(e) => step.block(kind, &format!("bridge gateway: {e:#}")),
            }
        }
    }
    let mut ctrs: [Vec<String>; 2] = Default::default();
    let mut running = [0usize; 2];
    for i in 0..args.containers {
        signals::check()?;
        let port = args.port_base + i as u16;
        for kind in order(i) {
            let Some(gw) = gateways[kind.index()] else {
                continue;
            };
            if let Some(daemon) = open_daemon(&step, sides, kind) {
                let name = format!("bench-p-{i}");
                settle();
                let r = publish_one(daemon, &name, gw, port, &mut ctrs[kind.index()]);
                if step.take(kind, r).is_some() {
                    running[kind.index()] += 1;
                }
            }
        }
    }
    drop(step);
    lifecycle::rss_running(sides, report, running, args.containers)?;
    force_remove(sides, &ctrs);
    Ok(())
}

/// The default bridge's gateway address: from the API, else the kernel's
/// address of the bridge it names, in the daemon's namespace.
fn gateway(daemon: &Daemon) -> Result<Ipv4Addr> {
    let (gateway, bridge) = daemon.client().default_bridge()?;
    if let Some(gw) = gateway {
        return Ok(gw);
    }
    let bridge = bridge.unwrap_or_else(|| "docker0".to_string());
    let out = Command::new("ip")
        .args([
            "-n",
            daemon.ns().name(),
            "-4",
            "-o",
            "addr",
            "show",
            "dev",
            &bridge,
        ])
        .output()
        .context("run ip addr")?;
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .skip_while(|w| *w != "inet")
        .nth(1)
        .and_then(|cidr| cidr.split('/').next()?.parse().ok())
        .with_context(|| format!("no IPv4 address on {bridge}"))
}

fn publish_one(
    daemon: &Daemon,
    name: &str,
    gateway: Ipv4Addr,
    port: u16,
    ctrs: &mut Vec<String>,
) -> Result<((), Timings)> {
    let c = daemon.client();
    let t0 = Instant::now();
    let id = c.create_container(name, &container_spec(&HTTPD, Some((port, 80))))?;
    ctrs.push(id.clone());
    c.start(&id)?;
    let t1 = Instant::now();
    probe::wait_http(daemon.ns(), SocketAddrV4::new(gateway, port))?;
    let t2 = Instant::now();
    probe::wait_http(daemon.ns(), SocketAddrV4::new(Ipv4Addr::LOCALHOST, port))?;
    let t3 = Instant::now();
    Ok((
        (),
        vec![
            (PORT_START, t1 - t0),
            (VIA_GATEWAY, t2 - t0),
            (VIA_LOOPBACK, t3 - t0),
        ],
    ))
}
