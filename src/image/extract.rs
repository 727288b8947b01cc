//! Safe application of a layer tarball onto a root directory.
//!
//! Every path is resolved inside the root, following symlinks as the
//! container will see them (an absolute link target is taken relative to the
//! root, `..` stops at the root), so no entry, link or whiteout can reach
//! outside. Modes, ownership, mtimes, xattrs, symlinks, hard links and device
//! nodes are kept: the daemon runs as root and containers need them.
//! Whiteouts follow the OCI layer spec: `.wh.NAME` deletes NAME from lower
//! layers, `.wh..wh..opq` empties its directory of lower-layer content.

use std::collections::HashSet;
use std::ffi::{OsStr, OsString};
use std::fs;
use std::io::{self, BufRead, BufReader, Read};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};

use sha2::{Digest, Sha256};
use tar::EntryType;

use super::ImageError;

const WHITEOUT_PREFIX: &str = ".wh.";
const OPAQUE: &str = ".wh..wh..opq";
/// AUFS bookkeeping entries (`.wh..wh.plnk`, …) that carry no content.
const AUFS_META_PREFIX: &str = ".wh..wh.";
/// Symlinks followed while resolving one path before giving up (as Linux).
const MAX_LINKS: usize = 40;

fn bad(msg: String) -> ImageError {
    ImageError::InvalidArchive(msg)
}

fn io_at(path: &Path) -> impl FnOnce(io::Error) -> ImageError + '_ {
    move |source| ImageError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Hashes everything read through it.
struct HashingReader<R> {
    inner: R,
    hasher: Sha256,
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }
}

/// `sha256:<hex>` of some bytes.
pub(crate) fn digest(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

/// Reads a tar stream, gzip-compressed or not, and returns a reader of the
/// plain tar.
fn decompressed<'a, R: Read + 'a>(reader: R) -> io::Result<Box<dyn Read + 'a>> {
    let mut buffered = BufReader::new(reader);
    let head = buffered.fill_buf()?;
    if head.starts_with(&[0x1f, 0x8b]) {
        Ok(Box::new(flate2::read::MultiGzDecoder::new(buffered)))
    } else {
        Ok(Box::new(buffered))
    }
}

/// Whether whiteout entries are applied (image layers) or refused (plain
/// archives such as a `docker save` wrapper).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Whiteouts {
    Apply,
    Refuse,
}

/// What applying a layer found out about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct AppliedLayer {
    /// `sha256:` of the uncompressed tar, all of it.
    pub diff_id: String,
    /// Bytes of content the layer adds (regular files and symlink targets,
    /// hard links once), as dockerd measures a layer for `docker history`.
    pub size: u64,
}

/// Applies the tar stream in `reader` onto `root`.
pub(crate) fn apply_layer<R: Read>(
    root: &Path,
    reader: R,
    whiteouts: Whiteouts,
) -> Result<AppliedLayer, ImageError> {
    let plain = decompressed(reader).map_err(|e| bad(format!("reading archive: {e}")))?;
    let hashing = HashingReader {
        inner: plain,
        hasher: Sha256::new(),
    };
    let mut archive = tar::Archive::new(hashing);
    archive.set_preserve_permissions(true);
    archive.set_preserve_ownerships(true);
    archive.set_preserve_mtime(true);
    archive.set_unpack_xattrs(true);
    archive.set_overwrite(true);
    let mut layer = Layer {
        root,
        whiteouts,
        created: HashSet::new(),
        size: 0,
    };
    let entries = archive
        .entries()
        .map_err(|e| bad(format!("reading archive: {e}")))?;
    for entry in entries {
        let mut entry = entry.map_err(|e| bad(format!("reading archive: {e}")))?;
        layer.apply(&mut entry)?;
    }
    // The diff id covers the whole stream, end-of-archive blocks included.
    let mut rest = archive.into_inner();
    io::copy(&mut rest, &mut io::sink()).map_err(|e| bad(format!("reading archive: {e}")))?;
    Ok(AppliedLayer {
        diff_id: format!("sha256:{}", hex::encode(rest.hasher.finalize())),
        size: layer.size,
    })
}

struct Layer<'a> {
    root: &'a Path,
    whiteouts: Whiteouts,
    /// Paths (relative, as in the tar) this layer has written: an opaque
    /// whiteout must keep them.
    created: HashSet<PathBuf>,
    /// Content bytes written so far (see [`AppliedLayer::size`]).
    size: u64,
}

impl Layer<'_> {
    fn apply<R: Read>(&mut self, entry: &mut tar::Entry<'_, R>) -> Result<(), ImageError> {
        let kind = entry.header().entry_type();
        if matches!(
            kind,
            EntryType::XGlobalHeader
                | EntryType::XHeader
                | EntryType::GNULongName
                | EntryType::GNULongLink
        ) {
            return Ok(());
        }
        let raw_path = entry
            .path()
            .map_err(|e| bad(format!("bad entry path: {e}")))?
            .into_owned();
        let rel = clean_relative(&raw_path)?;
        let Some(name) = rel.file_name().map(OsStr::to_os_string) else {
            // The archive's own root ("./"): take its mode and owner.
            return unpack(entry, self.root);
        };
        let parent_rel = rel.parent().unwrap_or(Path::new(""));
        if let Some(hidden) = name.as_bytes().strip_prefix(WHITEOUT_PREFIX.as_bytes()) {
            if self.whiteouts == Whiteouts::Refuse {
                return Err(bad(format!("unexpected whiteout {}", rel.display())));
            }
            let parent = resolve(self.root, parent_rel, false)?;
            if name.as_bytes() == OPAQUE.as_bytes() {
                return self.opaque(&parent, parent_rel);
            }
            if name.as_bytes().starts_with(AUFS_META_PREFIX.as_bytes()) {
                return Ok(());
            }
            let target = parent.join(OsStr::from_bytes(hidden));
            tracing::debug!(path = %target.display(), "whiteout");
            return remove_any(&target);
        }

        let parent = resolve(self.root, parent_rel, true)?;
        let dst = parent.join(&name);
        let is_dir = kind == EntryType::Directory;
        match fs::symlink_metadata(&dst) {
            Ok(meta) if meta.is_dir() && is_dir => {}
            Ok(_) => remove_any(&dst)?,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(io_at(&dst)(e)),
        }
        self.size += match kind {
            EntryType::Regular | EntryType::Continuous => entry.header().size().unwrap_or(0),
            EntryType::Symlink => entry
                .link_name_bytes()
                .map_or(0, |target| target.len() as u64),
            _ => 0,
        };
        match kind {
            EntryType::Link => self.hard_link(entry, &dst)?,
            EntryType::Char | EntryType::Block | EntryType::Fifo => make_node(entry, &dst)?,
            _ => unpack(entry, &dst)?,
        }
        self.created.insert(rel);
        Ok(())
    }

    /// Removes the lower layers' content of `dir`, keeping what this layer
    /// already put there.
    fn opaque(&self, dir: &Path, dir_rel: &Path) -> Result<(), ImageError> {
        let entries = match fs::read_dir(dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(io_at(dir)(e)),
        };
        for child in entries {
            let child = child.map_err(io_at(dir))?;
            if !self.created.contains(&dir_rel.join(child.file_name())) {
                remove_any(&child.path())?;
            }
        }
        Ok(())
    }

    fn hard_link<R: Read>(&self, entry: &tar::Entry<'_, R>, dst: &Path) -> Result<(), ImageError> {
        let target = entry
            .link_name()
            .map_err(|e| bad(format!("bad link name: {e}")))?
            .ok_or_else(|| bad(format!("hard link {} has no target", dst.display())))?;
        let target_rel = clean_relative(&target)?;
        let name = target_rel
            .file_name()
            .ok_or_else(|| bad(format!("hard link {} to the root", dst.display())))?;
        // The link's own last component is not followed: a hard link to a
        // symlink links the symlink.
        let src = resolve(
            self.root,
            target_rel.parent().unwrap_or(Path::new("")),
            false,
        )?
        .join(name);
        fs::hard_link(&src, dst).map_err(|e| {
            bad(format!(
                "hard link {} -> {}: {e}",
                dst.display(),
                target_rel.display()
            ))
        })
    }
}

/// Lets the tar crate write a directory, regular file or symlink at exactly
/// `dst` (whose parent we resolved), with mode, owner, mtime and xattrs.
fn unpack<R: Read>(entry: &mut tar::Entry<'_, R>, dst: &Path) -> Result<(), ImageError> {
    entry
        .unpack(dst)
        .map(|_| ())
        .map_err(|e| bad(format!("unpacking {}: {e}", dst.display())))
}

fn make_node<R: Read>(entry: &tar::Entry<'_, R>, dst: &Path) -> Result<(), ImageError> {
    use nix::sys::stat::{makedev, mknod, Mode, SFlag};
    let header = entry.header();
    let kind = match header.entry_type() {
        EntryType::Char => SFlag::S_IFCHR,
        EntryType::Block => SFlag::S_IFBLK,
        _ => SFlag::S_IFIFO,
    };
    let mode = header.mode().map_err(|e| bad(format!("bad mode: {e}")))?;
    let major = header.device_major().ok().flatten().unwrap_or(0);
    let minor = header.device_minor().ok().flatten().unwrap_or(0);
    match mknod(
        dst,
        kind,
        Mode::from_bits_truncate(mode & 0o7777),
        makedev(major.into(), minor.into()),
    ) {
        Ok(()) => {}
        // Without CAP_MKNOD (a user namespace) dockerd skips device nodes too.
        Err(nix::errno::Errno::EPERM) if kind != SFlag::S_IFIFO => {
            tracing::warn!(path = %dst.display(), "cannot create device node, skipped");
            return Ok(());
        }
        Err(e) => return Err(io_at(dst)(io::Error::from(e))),
    }
    let uid = header.uid().unwrap_or(0);
    let gid = header.gid().unwrap_or(0);
    std::os::unix::fs::lchown(dst, Some(uid as u32), Some(gid as u32)).map_err(io_at(dst))?;
    fs::set_permissions(dst, fs::Permissions::from_mode(mode & 0o7777)).map_err(io_at(dst))
}

/// Removes whatever is at `path` (file, symlink or whole directory); the
/// path itself is never followed.
fn remove_any(path: &Path) -> Result<(), ImageError> {
    let result = match fs::symlink_metadata(path) {
        Ok(meta) if meta.is_dir() => fs::remove_dir_all(path),
        Ok(_) => fs::remove_file(path),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    };
    result.map_err(io_at(path))
}

/// A tar path as a relative path without `.`; `..` and anything that could
/// leave the root is refused.
pub(crate) fn clean_relative(path: &Path) -> Result<PathBuf, ImageError> {
    let mut out = PathBuf::new();
    for component in path.components() {
        match component {
            Component::Normal(part) => out.push(part),
            Component::CurDir | Component::RootDir => {}
            Component::ParentDir | Component::Prefix(_) => {
                return Err(bad(format!("path {} leaves the root", path.display())))
            }
        }
    }
    Ok(out)
}

/// Resolves `rel` inside `root` as the container would see it: symlinks
/// followed with `root` as `/`. Missing directories are
/// created (mode 0755) when `create` is set, otherwise the path is returned
/// as far as it can be resolved.
pub(crate) fn resolve(root: &Path, rel: &Path, create: bool) -> Result<PathBuf, ImageError> {
    let mut pending: Vec<OsString> = rel
        .components()
        .rev()
        .filter_map(|c| match c {
            Component::Normal(p) => Some(p.to_os_string()),
            _ => None,
        })
        .collect();
    let mut current = root.to_path_buf();
    let mut depth = 0usize;
    let mut links = 0usize;
    while let Some(part) = pending.pop() {
        if part == ".." {
            if depth > 0 {
                current.pop();
                depth -= 1;
            }
            continue;
        }
        if part == "." {
            continue;
        }
        let next = current.join(&part);
        match fs::symlink_metadata(&next) {
            Ok(meta) if meta.file_type().is_symlink() => {
                links += 1;
                if links > MAX_LINKS {
                    return Err(bad(format!("too many symlinks under {}", rel.display())));
                }
                let target = fs::read_link(&next).map_err(io_at(&next))?;
                if target.is_absolute() {
                    current = root.to_path_buf();
                    depth = 0;
                }
                for c in target.components().rev() {
                    match c {
                        Component::Normal(p) => pending.push(p.to_os_string()),
                        Component::ParentDir => pending.push(OsString::from("..")),
                        _ => {}
                    }
                }
            }
            Ok(meta) if meta.is_dir() => {
                current = next;
                depth += 1;
            }
            // A file at the end: the caller asked for a file's real path.
            Ok(_) if pending.is_empty() => return Ok(next),
            Ok(_) => {
                return Err(bad(format!(
                    "{} is not a directory",
                    Path::new(OsStr::from_bytes(part.as_bytes())).display()
                )))
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                if !create {
                    // Nothing below exists either: keep the literal rest.
                    current = next;
                    while let Some(part) = pending.pop() {
                        current.push(part);
                    }
                    return Ok(current);
                }
                fs::create_dir(&next).map_err(io_at(&next))?;
                fs::set_permissions(&next, fs::Permissions::from_mode(0o755))
                    .map_err(io_at(&next))?;
                current = next;
                depth += 1;
            }
            Err(e) => return Err(io_at(&next)(e)),
        }
    }
    Ok(current)
}

/// Bytes of the files (and symlinks) under `root`, hard links counted once.
pub(crate) fn disk_size(root: &Path) -> io::Result<u64> {
    let mut seen = HashSet::new();
    let mut total = 0u64;
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for child in fs::read_dir(&dir)? {
            let child = child?;
            let meta = child.metadata()?;
            if meta.is_dir() {
                stack.push(child.path());
            } else if meta.nlink() < 2 || seen.insert((meta.dev(), meta.ino())) {
                total += meta.len();
            }
        }
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    fn tar_of(build: impl FnOnce(&mut tar::Builder<Vec<u8>>)) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        build(&mut b);
        b.into_inner().unwrap()
    }

    fn header(kind: EntryType, mode: u32) -> tar::Header {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(kind);
        h.set_mode(mode);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(1_700_000_000);
        h.set_size(0);
        h
    }

    fn file(b: &mut tar::Builder<Vec<u8>>, path: &str, data: &[u8]) {
        let mut h = header(EntryType::Regular, 0o640);
        h.set_size(data.len() as u64);
        h.set_uid(1234);
        h.set_gid(5678);
        b.append_data(&mut h, path, data).unwrap();
    }

    fn special(b: &mut tar::Builder<Vec<u8>>, path: &str, kind: EntryType, target: &str) {
        let mut h = header(kind, 0o777);
        b.append_link(&mut h, path, target).unwrap();
    }

    fn dir(b: &mut tar::Builder<Vec<u8>>, path: &str) {
        let mut h = header(EntryType::Directory, 0o755);
        b.append_data(&mut h, path, io::empty()).unwrap();
    }

    #[test]
    fn keeps_metadata_links_and_digest() {
        let root = tempfile::tempdir().unwrap();
        let data = tar_of(|b| {
            dir(b, "bin");
            file(b, "bin/tool", b"hello");
            special(b, "bin/alias", EntryType::Symlink, "/bin/tool");
            special(b, "bin/hard", EntryType::Link, "bin/tool");
        });
        let applied = apply_layer(root.path(), &data[..], Whiteouts::Apply).unwrap();
        let id = applied.diff_id;
        assert_eq!(id, digest(&data));
        assert_eq!(applied.size, 5 + "/bin/tool".len() as u64);
        let meta = fs::metadata(root.path().join("bin/tool")).unwrap();
        assert_eq!(
            (meta.uid(), meta.gid(), meta.mode() & 0o7777),
            (1234, 5678, 0o640)
        );
        assert_eq!(
            fs::read_link(root.path().join("bin/alias")).unwrap(),
            Path::new("/bin/tool")
        );
        assert_eq!(
            fs::metadata(root.path().join("bin/hard")).unwrap().ino(),
            meta.ino()
        );
        assert_eq!(
            disk_size(root.path()).unwrap(),
            5 + "/bin/tool".len() as u64
        );

        // The same layer gzip-compressed has the same diff id.
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        io::Write::write_all(&mut gz, &data).unwrap();
        let other = tempfile::tempdir().unwrap();
        let gz_id = apply_layer(other.path(), &gz.finish().unwrap()[..], Whiteouts::Apply)
            .unwrap()
            .diff_id;
        assert_eq!(gz_id, id);
    }

    #[test]
    fn symlinks_cannot_lead_outside() {
        let outside = tempfile::tempdir().unwrap();
        fs::write(outside.path().join("victim"), b"keep").unwrap();
        let root = tempfile::tempdir().unwrap();
        let target = outside.path().to_str().unwrap().to_string();
        let data = tar_of(|b| {
            special(b, "escape", EntryType::Symlink, &target);
            special(b, "up", EntryType::Symlink, "../../../../..");
            file(b, "escape/victim", b"pwned");
            file(b, "up/new", b"x");
        });
        apply_layer(root.path(), &data[..], Whiteouts::Apply).unwrap();
        assert_eq!(fs::read(outside.path().join("victim")).unwrap(), b"keep");
        // Both writes landed inside the root, where the links point there.
        assert_eq!(
            fs::read(
                root.path()
                    .join(outside.path().strip_prefix("/").unwrap())
                    .join("victim")
            )
            .unwrap(),
            b"pwned"
        );
        assert_eq!(fs::read(root.path().join("new")).unwrap(), b"x");

        let whiteout_out = tar_of(|b| file(b, "escape/.wh.victim", b""));
        apply_layer(root.path(), &whiteout_out[..], Whiteouts::Apply).unwrap();
        assert!(outside.path().join("victim").exists());

        let dotdot = tar_of(|b| {
            let mut h = header(EntryType::Regular, 0o644);
            h.set_size(1);
            // append_data refuses "..": write the name into the header.
            h.as_gnu_mut().unwrap().name[..9].copy_from_slice(b"../../evi");
            h.set_cksum();
            b.append(&h, &b"x"[..]).unwrap();
        });
        assert!(matches!(
            apply_layer(root.path(), &dotdot[..], Whiteouts::Apply),
            Err(ImageError::InvalidArchive(_))
        ));
    }

    #[test]
    fn whiteouts_remove_lower_content() {
        let root = tempfile::tempdir().unwrap();
        let lower = tar_of(|b| {
            dir(b, "etc");
            file(b, "etc/a", b"a");
            file(b, "etc/b", b"b");
            dir(b, "opt");
            file(b, "opt/old", b"o");
            file(b, "gone", b"g");
        });
        apply_layer(root.path(), &lower[..], Whiteouts::Apply).unwrap();
        let upper = tar_of(|b| {
            file(b, ".wh.gone", b"");
            file(b, "etc/.wh.a", b"");
            dir(b, "opt");
            file(b, "opt/new", b"n");
            file(b, "opt/.wh..wh..opq", b"");
            // A file replacing a directory.
            file(b, "etc", b"now a file");
        });
        apply_layer(root.path(), &upper[..], Whiteouts::Apply).unwrap();
        assert!(!root.path().join("gone").exists());
        assert!(!root.path().join("opt/old").exists());
        assert_eq!(fs::read(root.path().join("opt/new")).unwrap(), b"n");
        assert_eq!(fs::read(root.path().join("etc")).unwrap(), b"now a file");
        assert!(!root.path().join(".wh.gone").exists());

        let refused = tar_of(|b| file(b, ".wh.x", b""));
        assert!(apply_layer(root.path(), &refused[..], Whiteouts::Refuse).is_err());
    }

    #[test]
    fn resolve_stays_in_root() {
        let root = tempfile::tempdir().unwrap();
        fs::create_dir(root.path().join("real")).unwrap();
        symlink("/real", root.path().join("abs")).unwrap();
        symlink("../../real", root.path().join("rel")).unwrap();
        symlink("loop", root.path().join("loop")).unwrap();
        let r = root.path();
        assert_eq!(resolve(r, Path::new("abs"), false).unwrap(), r.join("real"));
        assert_eq!(resolve(r, Path::new("rel"), false).unwrap(), r.join("real"));
        assert_eq!(
            resolve(r, Path::new("abs/x/y"), true).unwrap(),
            r.join("real/x/y")
        );
        assert!(r.join("real/x/y").is_dir());
        assert!(resolve(r, Path::new("loop/a"), false).is_err());
    }
}
