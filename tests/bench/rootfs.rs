//! The busybox image both daemons import: Debian's static /bin/busybox as
//! bin/busybox plus one relative symlink per applet (what
//! `busybox --install -s` makes, minus its absolute host paths), tarred.

use std::fs;
use std::path::Path;
use std::process::Command;

use anyhow::{bail, ensure, Context, Result};
use tar::{Builder, EntryType, Header};

/// Reads `busybox`, checks it is static (it must run inside the container
/// with no libc there) and returns the rootfs tar.
pub fn busybox_tar(busybox: &Path) -> Result<Vec<u8>> {
    let binary = fs::read(busybox).with_context(|| format!("read {}", busybox.display()))?;
    ensure!(
        is_static_elf(&binary),
        "{} is not a static ELF binary (install Debian's busybox-static)",
        busybox.display()
    );
    let out = Command::new(busybox)
        .arg("--list")
        .output()
        .with_context(|| format!("run {} --list", busybox.display()))?;
    if !out.status.success() {
        bail!("{} --list: {}", busybox.display(), out.status);
    }
    let list = String::from_utf8_lossy(&out.stdout);
    let applets: Vec<&str> = list
        .lines()
        .map(str::trim)
        .filter(|a| !a.is_empty())
        .collect();
    build_tar(&binary, &applets).context("build the rootfs tar")
}

pub fn build_tar(busybox: &[u8], applets: &[&str]) -> std::io::Result<Vec<u8>> {
    let mut tar = Builder::new(Vec::new());
    for dir in ["bin", "dev", "etc", "proc", "sys", "tmp", "root"] {
        let mut h = header();
        h.set_entry_type(EntryType::Directory);
        h.set_mode(if dir == "tmp" { 0o1777 } else { 0o755 });
        h.set_size(0);
        tar.append_data(&mut h, dir, std::io::empty())?;
    }
    let mut h = header();
    h.set_entry_type(EntryType::Regular);
    h.set_mode(0o755);
    h.set_size(busybox.len() as u64);
    tar.append_data(&mut h, "bin/busybox", busybox)?;
    for applet in applets
        .iter()
        .filter(|a| **a != "busybox" && !a.contains('/'))
    {
        let mut h = header();
        h.set_entry_type(EntryType::Symlink);
        h.set_mode(0o777);
        h.set_size(0);
        tar.append_link(&mut h, format!("bin/{applet}"), "busybox")?;
    }
    tar.into_inner()
}

/// A header with every numeric field written, owned by root, as `tar`
/// makes them: a fresh header leaves uid, gid and mtime empty, which strict
/// readers refuse ("numeric field was not a number").
fn header() -> Header {
    let mut h = Header::new_gnu();
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(0);
    h
}

/// An ELF file with no PT_INTERP program header needs no dynamic loader.
pub fn is_static_elf(bytes: &[u8]) -> bool {
    const PT_INTERP: u32 = 3;
    let is_elf64_le =
        bytes.len() >= 64 && &bytes[..4] == b"\x7fELF" && bytes[4] == 2 && bytes[5] == 1;
    if !is_elf64_le {
        return false;
    }
    let u16_at = |o: usize| u16::from_le_bytes([bytes[o], bytes[o + 1]]) as usize;
    let phoff = u64::from_le_bytes(bytes[0x20..0x28].try_into().expect("8 bytes")) as usize;
    let (phentsize, phnum) = (u16_at(0x36), u16_at(0x38));
    (0..phnum).all(|i| {
        let at = phoff + i * phentsize;
        bytes
            .get(at..at + 4)
            .is_some_and(|t| u32::from_le_bytes(t.try_into().expect("4 bytes")) != PT_INTERP)
    })
}
