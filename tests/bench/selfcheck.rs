//! What runs under `cargo test --benches`: checks of the harness's own pure
//! logic (statistics, HTTP parsing, the image tar, packet building), no
//! daemons and no namespaces.

use std::process::ExitCode;

use crate::report::{summarize, Kind, Report, Unit};
use crate::{daemon, http, probe, rootfs};

type Check = (&'static str, fn() -> Result<(), String>);

pub fn run() -> ExitCode {
    let checks: &[Check] = &[
        ("median and p95", median_and_p95),
        ("content-length answer", content_length_answer),
        ("chunked answer", chunked_answer),
        ("incomplete answer waits", incomplete_answer_waits),
        ("rootfs tar layout", rootfs_tar_layout),
        ("static ELF detection", static_elf_detection),
        ("ICMP echo checksum", icmp_checksum),
        ("mountinfo unescaping", mountinfo_unescaping),
        ("n/a rows and ratio", na_rows_and_ratio),
    ];
    let mut failed = 0;
    for (name, check) in checks {
        match check() {
            Ok(()) => println!("selfcheck {name} ... ok"),
            Err(why) => {
                failed += 1;
                println!("selfcheck {name} ... FAILED: {why}");
            }
        }
    }
    println!(
        "\ncompare: {} passed, {failed} failed",
        checks.len() - failed
    );
    if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

fn expect<T: PartialEq + std::fmt::Debug>(what: &str, got: T, want: T) -> Result<(), String> {
    if got == want {
        Ok(())
    } else {
        Err(format!("{what}: got {got:?}, want {want:?}"))
    }
}

fn median_and_p95() -> Result<(), String> {
    let samples: Vec<f64> = (1..=20).rev().map(f64::from).collect();
    let s = summarize(&samples).ok_or("no summary")?;
    expect("median", s.median, 10.5)?;
    expect("p95", s.p95, 19.0)?;
    let one = summarize(&[7.0]).ok_or("no summary")?;
    expect("single p95", one.p95, 7.0)?;
    expect("empty", summarize(&[]), None)
}

fn content_length_answer() -> Result<(), String> {
    let raw = b"HTTP/1.1 201 Created\r\nContent-Length: 9\r\n\r\n{\"Id\":1}\n";
    let r = http::parse(raw, false, false)
        .map_err(|e| e.to_string())?
        .ok_or("not complete")?;
    expect("status", r.status, 201)?;
    expect("body", r.body.as_slice(), b"{\"Id\":1}\n".as_slice())
}

fn chunked_answer() -> Result<(), String> {
    let raw = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nWiki\r\n6;x=y\r\npedia \r\n0\r\n\r\n";
    let r = http::parse(raw, false, false)
        .map_err(|e| e.to_string())?
        .ok_or("not complete")?;
    expect("body", r.body.as_slice(), b"Wikipedia ".as_slice())
}

fn incomplete_answer_waits() -> Result<(), String> {
    let partial = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nWi";
    expect(
        "partial chunked",
        http::parse(partial, false, false)
            .map_err(|e| e.to_string())?
            .is_none(),
        true,
    )?;
    let eof_error = http::parse(
        b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nab",
        false,
        true,
    );
    expect("truncated at EOF is an error", eof_error.is_err(), true)?;
    let no_content = http::parse(b"HTTP/1.1 204 No Content\r\n\r\n", false, false)
        .map_err(|e| e.to_string())?
        .ok_or("204 not complete")?;
    expect("204 body", no_content.body.len(), 0)
}

fn rootfs_tar_layout() -> Result<(), String> {
    let tar = rootfs::build_tar(b"\x7fELF-fake", &["busybox", "sh", "sleep", "httpd"])
        .map_err(|e| e.to_string())?;
    let mut archive = tar::Archive::new(tar.as_slice());
    let mut seen = Vec::new();
    for entry in archive.entries().map_err(|e| e.to_string())? {
        let entry = entry.map_err(|e| e.to_string())?;
        let path = entry
            .path()
            .map_err(|e| e.to_string())?
            .display()
            .to_string();
        let link = entry
            .link_name()
            .map_err(|e| e.to_string())?
            .map(|l| l.display().to_string());
        let h = entry.header();
        // Strict readers (tar-rs, berthd's import) refuse empty numeric fields.
        let owner = (h.uid(), h.gid(), h.mtime());
        if owner.0.is_err() || owner.1.is_err() || owner.2.is_err() {
            return Err(format!("{path}: uid/gid/mtime not numbers: {owner:?}"));
        }
        seen.push((path, link, h.mode().unwrap_or(0)));
    }
    let find = |p: &str| {
        seen.iter()
            .find(|e| e.0.trim_end_matches('/') == p)
            .cloned()
    };
    expect(
        "busybox mode",
        find("bin/busybox").map(|e| e.2),
        Some(0o755),
    )?;
    expect(
        "sh link",
        find("bin/sh").and_then(|e| e.1),
        Some("busybox".to_string()),
    )?;
    expect(
        "httpd link",
        find("bin/httpd").and_then(|e| e.1),
        Some("busybox".to_string()),
    )?;
    expect(
        "no self link",
        seen.iter().filter(|e| e.0 == "bin/busybox").count(),
        1,
    )?;
    expect("tmp sticky", find("tmp").map(|e| e.2), Some(0o1777))
}

/// A minimal ELF64 header with one program header of type `ptype`.
fn elf_with(ptype: u32) -> Vec<u8> {
    let mut b = vec![0u8; 64 + 56];
    b[..6].copy_from_slice(b"\x7fELF\x02\x01");
    b[0x20..0x28].copy_from_slice(&64u64.to_le_bytes());
    b[0x36..0x38].copy_from_slice(&56u16.to_le_bytes());
    b[0x38..0x3a].copy_from_slice(&1u16.to_le_bytes());
    b[64..68].copy_from_slice(&ptype.to_le_bytes());
    b
}

fn static_elf_detection() -> Result<(), String> {
    expect("PT_LOAD only", rootfs::is_static_elf(&elf_with(1)), true)?;
    expect("PT_INTERP", rootfs::is_static_elf(&elf_with(3)), false)?;
    expect("not ELF", rootfs::is_static_elf(b"#!/bin/sh\n"), false)
}

fn icmp_checksum() -> Result<(), String> {
    let pkt = probe::echo_request(0x1234, 7);
    expect("type", pkt[0], 8)?;
    // A packet carrying its checksum sums to zero.
    expect("verifies", probe::checksum(&pkt), 0)?;
    let mut reply = vec![0x45u8];
    reply.resize(20, 0);
    reply.extend_from_slice(&pkt);
    reply[20] = 0;
    expect(
        "reply recognised",
        probe::is_echo_reply(&reply, 0x1234),
        true,
    )?;
    expect("other ident", probe::is_echo_reply(&reply, 0x4321), false)
}

fn mountinfo_unescaping() -> Result<(), String> {
    expect(
        "space and backslash",
        daemon::unescape_mountinfo("/tmp/a\\040b\\134c"),
        "/tmp/a b\\c".to_string(),
    )
}

fn na_rows_and_ratio() -> Result<(), String> {
    let mut r = Report::new([true, true]);
    r.declare("op", Unit::Ms, "");
    r.declare("other", Unit::Ms, "");
    for v in [4.0, 6.0] {
        r.add("op", Kind::Dockerd, v);
        r.add("op", Kind::Berthd, v / 2.0);
        r.add("other", Kind::Dockerd, v);
    }
    r.na("other", Kind::Berthd, "HTTP 404: page not found");
    let j = r.to_json();
    expect(
        "ratio",
        j["rows"][0]["ratio_dockerd_over_berthd"].as_f64(),
        Some(2.0),
    )?;
    expect(
        "n/a status",
        j["rows"][1]["berthd"]["status"].as_str(),
        Some("n/a"),
    )?;
    expect(
        "n/a ratio",
        j["rows"][1]["ratio_dockerd_over_berthd"].is_null(),
        true,
    )?;
    let table = r.table();
    expect(
        "table says why",
        table.contains("HTTP 404: page not found"),
        true,
    )
}
