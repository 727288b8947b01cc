//! Root filesystem tarballs for tests: a busybox rootfs and helpers to
//! write tar entries. Shared by the harness (`tests/common`) and the
//! runtime tests (`tests/runtime_support`, which include this file).

use std::process::Command;

fn header(kind: tar::EntryType, mode: u32, size: u64) -> tar::Header {
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(kind);
    h.set_mode(mode);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(1_700_000_000);
    h.set_size(size);
    h
}

pub fn add_dir(b: &mut tar::Builder<Vec<u8>>, path: &str, mode: u32) {
    let mut h = header(tar::EntryType::Directory, mode, 0);
    b.append_data(&mut h, path, std::io::empty()).unwrap();
}

pub fn add_file(b: &mut tar::Builder<Vec<u8>>, path: &str, mode: u32, data: &[u8]) {
    let mut h = header(tar::EntryType::Regular, mode, data.len() as u64);
    b.append_data(&mut h, path, data).unwrap();
}

pub fn add_symlink(b: &mut tar::Builder<Vec<u8>>, path: &str, target: &str) {
    let mut h = header(tar::EntryType::Symlink, 0o777, 0);
    b.append_link(&mut h, path, target).unwrap();
}

/// A busybox root filesystem as a tarball: bin/busybox (the host's static
/// busybox) with a relative symlink per applet (what `busybox --install -s`
/// makes, minus its absolute host paths), and a minimal etc/.
pub fn busybox_tar() -> Vec<u8> {
    let busybox = std::fs::read("/bin/busybox").expect("busybox-static installed");
    let list = Command::new("/bin/busybox").arg("--list").output().unwrap();
    let mut b = tar::Builder::new(Vec::new());
    for dir in ["bin", "etc", "dev", "proc", "sys", "root"] {
        add_dir(&mut b, dir, 0o755);
    }
    add_dir(&mut b, "tmp", 0o1777);
    add_file(&mut b, "bin/busybox", 0o755, &busybox);
    for applet in String::from_utf8(list.stdout).unwrap().lines() {
        if applet != "busybox" && !applet.is_empty() {
            add_symlink(&mut b, &format!("bin/{applet}"), "busybox");
        }
    }
    add_file(
        &mut b,
        "etc/passwd",
        0o644,
        b"root:x:0:0:root:/root:/bin/sh\n",
    );
    add_file(&mut b, "etc/group", 0o644, b"root:x:0:\n");
    add_file(&mut b, "etc/hostname", 0o644, b"busybox\n");
    b.into_inner().unwrap()
}
