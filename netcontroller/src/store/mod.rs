//! Persisted state: one JSON document per object, written atomically.
//!
//! `<root>/<kind>/<id>.json`. A write goes to a hidden temp file in the same
//! directory (`.<id>.json.tmp-<random>`), is fsynced, renamed over the
//! document and the directory fsynced, so a crash at any instant leaves
//! either the old document or the new one, plus at worst a temp file that
//! the next [`Store::load_all`] removes. Documents that do not parse are
//! reported and left in place for a human to look at; they never stop the
//! rest from loading.

#[cfg(test)]
mod tests;

use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;
use serde::Serialize;
use tracing::{debug, warn};

use crate::error::{ErrorKind, Kind};

const SUFFIX: &str = ".json";
const TEMP_MARK: &str = ".json.tmp-";

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("invalid store {what} '{value}': {reason}")]
    InvalidName {
        what: &'static str,
        value: String,
        reason: &'static str,
    },
    #[error("cannot {action} {path}: {source}")]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("cannot encode {kind}/{id}: {source}")]
    Encode {
        kind: String,
        id: String,
        #[source]
        source: serde_json::Error,
    },
}

impl Kind for StoreError {
    fn kind(&self) -> ErrorKind {
        match self {
            StoreError::InvalidName { .. } => ErrorKind::InvalidArgument,
            StoreError::Io { .. } | StoreError::Encode { .. } => ErrorKind::System,
        }
    }
}

fn io_err<'a>(action: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> StoreError + 'a {
    move |source| StoreError::Io {
        action,
        path: path.to_path_buf(),
        source,
    }
}

/// A file `load_all` could not use, and what it did about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreProblem {
    pub path: PathBuf,
    pub reason: String,
}

impl fmt::Display for StoreProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path.display(), self.reason)
    }
}

/// Every usable document of a kind, sorted by id, and the files skipped.
#[derive(Debug)]
pub struct Loaded<T> {
    pub items: Vec<(String, T)>,
    pub problems: Vec<StoreProblem>,
}

/// A directory of JSON documents, one subdirectory per kind.
#[derive(Debug, Clone)]
pub struct Store {
    root: PathBuf,
}

/// Kinds and ids become path components: nothing that could leave the
/// directory or pass for a temp file.
fn check_name(what: &'static str, value: &str) -> Result<(), StoreError> {
    let reason = if value.is_empty() {
        Some("must not be empty")
    } else if value.contains('/') {
        Some("must not contain '/'")
    } else if value.contains("..") {
        Some("must not contain '..'")
    } else if value.starts_with('.') {
        Some("must not start with '.'")
    } else if value.contains('\0') {
        Some("must not contain NUL")
    } else {
        None
    };
    match reason {
        Some(reason) => Err(StoreError::InvalidName {
            what,
            value: value.to_string(),
            reason,
        }),
        None => Ok(()),
    }
}

/// Makes a rename or unlink in `dir` durable.
fn sync_dir(dir: &Path) -> Result<(), StoreError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_err("fsync directory", dir))
}

impl Store {
    /// A store rooted at `root`, which is created (with parents) if missing.
    pub fn open(root: impl Into<PathBuf>) -> Result<Store, StoreError> {
        let root = root.into();
        fs::create_dir_all(&root).map_err(io_err("create", &root))?;
        Ok(Store { root })
    }

    /// The directory holding the store.
    pub fn root(&self) -> &Path {
        &self.root
    }

    fn kind_dir(&self, kind: &str) -> Result<PathBuf, StoreError> {
        check_name("kind", kind)?;
        Ok(self.root.join(kind))
    }

    /// Write `value` as `<root>/<kind>/<id>.json`, replacing any previous
    /// version atomically.
    pub fn put<T: Serialize>(&self, kind: &str, id: &str, value: &T) -> Result<(), StoreError> {
        let dir = self.kind_dir(kind)?;
        check_name("id", id)?;
        let body = serde_json::to_vec_pretty(value).map_err(|source| StoreError::Encode {
            kind: kind.to_string(),
            id: id.to_string(),
            source,
        })?;
        if !dir.is_dir() {
            fs::create_dir_all(&dir).map_err(io_err("create", &dir))?;
            sync_dir(&self.root)?;
        }
        let temp = dir.join(format!(".{id}{TEMP_MARK}{:016x}", rand::random::<u64>()));
        let target = dir.join(format!("{id}{SUFFIX}"));
        let written = write_synced(&temp, &body)
            .and_then(|()| fs::rename(&temp, &target).map_err(io_err("rename into place", &temp)));
        if let Err(e) = written {
            // Best effort: load_all would remove it anyway.
            let _ = fs::remove_file(&temp);
            return Err(e);
        }
        sync_dir(&dir)?;
        debug!(kind, id, "store: document written");
        Ok(())
    }

    /// Remove `<root>/<kind>/<id>.json`; absent is fine.
    pub fn delete(&self, kind: &str, id: &str) -> Result<(), StoreError> {
        let dir = self.kind_dir(kind)?;
        check_name("id", id)?;
        let target = dir.join(format!("{id}{SUFFIX}"));
        match fs::remove_file(&target) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(io_err("remove", &target)(e)),
        }
        sync_dir(&dir)?;
        debug!(kind, id, "store: document deleted");
        Ok(())
    }

    /// Every parseable document of `kind`, sorted by id. Files that cannot
    /// be used are reported in `problems`; leftover temp files of an
    /// interrupted write are removed (and reported).
    pub fn load_all<T: DeserializeOwned>(&self, kind: &str) -> Result<Loaded<T>, StoreError> {
        let dir = self.kind_dir(kind)?;
        let mut loaded = Loaded {
            items: Vec::new(),
            problems: Vec::new(),
        };
        let entries = match fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(loaded),
            Err(e) => return Err(io_err("read directory", &dir)(e)),
        };
        let mut removed_temp = false;
        for entry in entries {
            let entry = entry.map_err(io_err("read directory", &dir))?;
            let path = entry.path();
            match load_one(&path) {
                Entry::Document(id, bytes) => match serde_json::from_slice(&bytes) {
                    Ok(value) => loaded.items.push((id, value)),
                    Err(e) => loaded.problems.push(StoreProblem {
                        path,
                        reason: format!("corrupt document, skipped: {e}"),
                    }),
                },
                Entry::Temp => {
                    let reason = match fs::remove_file(&path) {
                        Ok(()) => {
                            removed_temp = true;
                            "leftover of an interrupted write, removed".to_string()
                        }
                        Err(e) => format!("leftover of an interrupted write, cannot remove: {e}"),
                    };
                    loaded.problems.push(StoreProblem { path, reason });
                }
                Entry::Skip(reason) => loaded.problems.push(StoreProblem { path, reason }),
            }
        }
        if removed_temp {
            sync_dir(&dir)?;
        }
        loaded.items.sort_by(|a, b| a.0.cmp(&b.0));
        loaded.problems.sort_by(|a, b| a.path.cmp(&b.path));
        for p in &loaded.problems {
            warn!(problem = %p, "store: file skipped");
        }
        debug!(kind, count = loaded.items.len(), "store: documents loaded");
        Ok(loaded)
    }
}

enum Entry {
    Document(String, Vec<u8>),
    Temp,
    Skip(String),
}

/// Sorts one directory entry into document, temp file or something else.
fn load_one(path: &Path) -> Entry {
    let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
        return Entry::Skip("name is not UTF-8, ignored".into());
    };
    if name.starts_with('.') && name.contains(TEMP_MARK) {
        return Entry::Temp;
    }
    let Some(id) = name.strip_suffix(SUFFIX) else {
        return Entry::Skip("not a store document, ignored".into());
    };
    if check_name("id", id).is_err() {
        return Entry::Skip("not a valid document id, ignored".into());
    }
    if !path.is_file() {
        return Entry::Skip("not a regular file, ignored".into());
    }
    match fs::read(path) {
        Ok(bytes) => Entry::Document(id.to_string(), bytes),
        Err(e) => Entry::Skip(format!("cannot read, skipped: {e}")),
    }
}

/// Creates `path` (which must not exist), writes `body` and fsyncs it.
fn write_synced(path: &Path, body: &[u8]) -> Result<(), StoreError> {
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(io_err("create", path))?;
    file.write_all(body).map_err(io_err("write", path))?;
    file.sync_all().map_err(io_err("fsync", path))
}
