//! Reachability probes run from inside a daemon's namespace: ICMP echo to a
//! container's address, and an HTTP exchange with a published port. Both
//! poll until answered or a bounded deadline passes.

use std::io::{self, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, TcpStream};
use std::os::fd::AsRawFd;
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use nix::sys::socket::{
    recvfrom, sendto, setsockopt, socket, sockopt, AddressFamily, MsgFlags, SockFlag, SockProtocol,
    SockType, SockaddrIn,
};
use nix::sys::time::{TimeVal, TimeValLike};

use crate::netns::Netns;
use crate::signals;

/// How long a probe keeps trying before the sample counts as a failure.
pub const PROBE_DEADLINE: Duration = Duration::from_secs(15);

/// Polls `ip` with ICMP echo requests from inside `ns` until one is answered.
pub fn wait_ping(ns: &Netns, ip: Ipv4Addr) -> Result<()> {
    ns.run(move || ping_until_answered(ip))?
}

fn ping_until_answered(ip: Ipv4Addr) -> Result<()> {
    // A raw socket (we are root) needs no ping_group_range in the namespace.
    let fd = socket(
        AddressFamily::Inet,
        SockType::Raw,
        SockFlag::SOCK_CLOEXEC,
        SockProtocol::Icmp,
    )?;
    setsockopt(&fd, sockopt::ReceiveTimeout, &TimeVal::milliseconds(20))?;
    let dest = SockaddrIn::from(SocketAddrV4::new(ip, 0));
    let ident = (std::process::id() as u16) ^ 0x6265;
    let deadline = Instant::now() + PROBE_DEADLINE;
    let mut seq: u16 = 0;
    let mut buf = [0u8; 1500];
    while Instant::now() < deadline {
        signals::check()?;
        seq = seq.wrapping_add(1);
        // Unresolved neighbours make sendto fail for a moment: just retry.
        if sendto(
            fd.as_raw_fd(),
            &echo_request(ident, seq),
            &dest,
            MsgFlags::empty(),
        )
        .is_err()
        {
            thread::sleep(Duration::from_millis(2));
            continue;
        }
        let sent = Instant::now();
        // Drain until our reply arrives or this attempt's 50 ms are up.
        while sent.elapsed() < Duration::from_millis(50) {
            match recvfrom::<SockaddrIn>(fd.as_raw_fd(), &mut buf) {
                Ok((n, Some(from))) if from.ip() == ip && is_echo_reply(&buf[..n], ident) => {
                    return Ok(());
                }
                Ok(_) => {}
                Err(_) => break,
            }
        }
    }
    bail!("{ip} did not answer ping within {PROBE_DEADLINE:?}")
}

/// An ICMP echo request with an 8-byte payload.
pub fn echo_request(ident: u16, seq: u16) -> [u8; 16] {
    let mut pkt = [0u8; 16];
    pkt[0] = 8;
    pkt[4..6].copy_from_slice(&ident.to_be_bytes());
    pkt[6..8].copy_from_slice(&seq.to_be_bytes());
    pkt[8..].copy_from_slice(b"berthbch");
    let sum = checksum(&pkt);
    pkt[2..4].copy_from_slice(&sum.to_be_bytes());
    pkt
}

/// The internet checksum (RFC 1071).
pub fn checksum(data: &[u8]) -> u16 {
    let mut sum: u32 = data
        .chunks(2)
        .map(|c| u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)])))
        .sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// A raw ICMP socket hands us the IP header too.
pub fn is_echo_reply(packet: &[u8], ident: u16) -> bool {
    let Some(first) = packet.first() else {
        return false;
    };
    let ihl = usize::from(first & 0x0f) * 4;
    let icmp = packet.get(ihl..).unwrap_or_default();
    icmp.len() >= 8 && icmp[0] == 0 && icmp[4..6] == ident.to_be_bytes()
}

/// Polls `addr` from inside `ns` until an HTTP server answers there: a TCP
/// connect alone is not enough, since a userland proxy accepts before the
/// container listens.
pub fn wait_http(ns: &Netns, addr: SocketAddrV4) -> Result<()> {
    ns.run(move || http_until_answered(addr))?
}

fn http_until_answered(addr: SocketAddrV4) -> Result<()> {
    let deadline = Instant::now() + PROBE_DEADLINE;
    let mut last = String::from("no attempt");
    while Instant::now() < deadline {
        signals::check()?;
        match http_once(addr) {
            Ok(()) => return Ok(()),
            Err(e) => last = e.to_string(),
        }
        thread::sleep(Duration::from_millis(2));
    }
    bail!("no HTTP answer from {addr} within {PROBE_DEADLINE:?} (last: {last})")
}

fn http_once(addr: SocketAddrV4) -> io::Result<()> {
    let mut s = TcpStream::connect_timeout(&SocketAddr::V4(addr), Duration::from_millis(500))?;
    s.set_read_timeout(Some(Duration::from_secs(1)))?;
    s.set_write_timeout(Some(Duration::from_secs(1)))?;
    s.write_all(b"GET / HTTP/1.0\r\n\r\n")?;
    let mut head = [0u8; 5];
    s.read_exact(&mut head)?;
    if &head == b"HTTP/" {
        Ok(())
    } else {
        Err(io::Error::new(io::ErrorKind::InvalidData, "not HTTP"))
    }
}
