//! The container store: records in memory, each persisted atomically as
//! `<data-root>/containers/<id>/config.json`; names are unique; lookups by
//! full id, name, or unique id prefix (dockerd's order).

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::watch;

use super::error::{ContainerError, Result};
use super::record::ContainerRecord;

const CONFIG_FILE: &str = "config.json";

/// What waiters (`docker wait`, attach, stop) watch for.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Phase {
    pub running: bool,
    /// How many times the container was started / has exited since the
    /// daemon started.
    pub starts: u64,
    pub exits: u64,
    pub exit_code: i64,
    pub removed: bool,
}

/// One container: its record and what synchronises work on it.
pub struct Entry {
    pub id: String,
    record: Mutex<ContainerRecord>,
    dir: PathBuf,
    /// Serialises lifecycle steps (start, exit handling, connect, remove).
    pub op: tokio::sync::Mutex<()>,
    phase: watch::Sender<Phase>,
    /// While running: changes whenever the log capture wrote output.
    log_writes: Mutex<Option<watch::Receiver<u64>>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding the lock leaves plain data behind; keep serving.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl std::fmt::Debug for Entry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Entry").field("id", &self.id).finish()
    }
}

impl Entry {
    fn new(record: ContainerRecord, dir: PathBuf) -> Entry {
        let phase = Phase {
            exit_code: record.state.exit_code,
            ..Phase::default()
        };
        Entry {
            id: record.id.clone(),
            record: Mutex::new(record),
            dir,
            op: tokio::sync::Mutex::new(()),
            phase: watch::channel(phase).0,
            log_writes: Mutex::new(None),
        }
    }

    /// A snapshot of the record.
    pub fn record(&self) -> ContainerRecord {
        lock(&self.record).clone()
    }

    /// `<data-root>/containers/<id>`.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Changes the record and persists it; the change is kept in memory
    /// even when writing fails (the error is returned).
    ///
    /// The write happens under the record's lock: concurrent updates (a stop
    /// racing the exit watcher) reach the disk in the order they were made,
    /// and never share the temp file.
    pub fn update<R>(&self, f: impl FnOnce(&mut ContainerRecord) -> R) -> Result<R> {
        let mut record = lock(&self.record);
        let out = f(&mut record);
        write_record(&self.dir, &record)?;
        Ok(out)
    }

    pub fn phase(&self) -> watch::Receiver<Phase> {
        self.phase.subscribe()
    }

    pub fn set_phase(&self, f: impl FnOnce(&mut Phase)) {
        self.phase.send_modify(f);
    }

    pub fn set_log_writes(&self, rx: Option<watch::Receiver<u64>>) {
        *lock(&self.log_writes) = rx;
    }

    pub fn log_writes(&self) -> Option<watch::Receiver<u64>> {
        lock(&self.log_writes).clone()
    }

    pub fn log_path(&self) -> PathBuf {
        self.dir.join(format!("{}-json.log", self.id))
    }
}

/// Writes `config.json` aside, syncs it and renames it into place.
fn write_record(dir: &Path, record: &ContainerRecord) -> Result<()> {
    let data = serde_json::to_vec_pretty(record).map_err(|source| ContainerError::Encode {
        id: record.id.clone(),
        source,
    })?;
    let tmp = dir.join(format!(".{CONFIG_FILE}.tmp"));
    let path = dir.join(CONFIG_FILE);
    let write = || -> std::io::Result<()> {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(&data)?;
        f.sync_all()?;
        std::fs::rename(&tmp, &path)
    };
    write().map_err(ContainerError::io(&path))
}

#[derive(Default)]
struct Index {
    entries: HashMap<String, Arc<Entry>>,
    /// Name (without `/`) -> id, including names reserved by a create in progress.
    names: HashMap<String, String>,
}

pub struct ContainerStore {
    root: PathBuf,
    index: Mutex<Index>,
}

impl ContainerStore {
    /// Opens `<data-root>/containers`, loading every record; unreadable ones
    /// are reported and skipped.
    pub fn open(root: &Path) -> Result<(ContainerStore, Vec<String>)> {
        std::fs::create_dir_all(root).map_err(ContainerError::io(root))?;
        let mut index = Index::default();
        let mut problems = Vec::new();
        for dirent in std::fs::read_dir(root).map_err(ContainerError::io(root))? {
            let Ok(dirent) = dirent else { continue };
            let path = dirent.path().join(CONFIG_FILE);
            let record: ContainerRecord = match std::fs::read(&path)
                .map_err(|e| e.to_string())
                .and_then(|raw| serde_json::from_slice(&raw).map_err(|e| e.to_string()))
            {
                Ok(r) => r,
                Err(e) => {
                    problems.push(format!("{}: {e}", path.display()));
                    continue;
                }
            };
            index.names.insert(record.name.clone(), record.id.clone());
            index.entries.insert(
                record.id.clone(),
                Arc::new(Entry::new(record, dirent.path())),
            );
        }
        Ok((
            ContainerStore {
                root: root.to_path_buf(),
                index: Mutex::new(index),
            },
            problems,
        ))
    }

    pub fn dir_of(&self, id: &str) -> PathBuf {
        self.root.join(id)
    }

    /// Whether `name` is free.
    pub fn name_taken(&self, name: &str) -> Option<String> {
        lock(&self.index).names.get(name).cloned()
    }

    /// Adds a new container: refuses a taken name, creates its directory
    /// and persists the record.
    pub fn insert(&self, record: ContainerRecord) -> Result<Arc<Entry>> {
        let dir = self.dir_of(&record.id);
        {
            let mut index = lock(&self.index);
            if let Some(id) = index.names.get(&record.name) {
                return Err(ContainerError::NameInUse {
                    name: record.name.clone(),
                    id: id.clone(),
                });
            }
            index.names.insert(record.name.clone(), record.id.clone());
        }
        let made = std::fs::create_dir_all(&dir)
            .map_err(ContainerError::io(&dir))
            .and_then(|()| write_record(&dir, &record));
        if let Err(e) = made {
            lock(&self.index).names.remove(&record.name);
            let _ = std::fs::remove_dir_all(&dir);
            return Err(e);
        }
        let entry = Arc::new(Entry::new(record, dir));
        lock(&self.index)
            .entries
            .insert(entry.id.clone(), entry.clone());
        Ok(entry)
    }

    /// Finds a container by full id, name (with or without `/`), then
    /// unique id prefix.
    pub fn get(&self, key: &str) -> Result<Arc<Entry>> {
        let index = lock(&self.index);
        if let Some(e) = index.entries.get(key) {
            return Ok(e.clone());
        }
        let name = key.strip_prefix('/').unwrap_or(key);
        if let Some(e) = index.names.get(name).and_then(|id| index.entries.get(id)) {
            return Ok(e.clone());
        }
        if !key.is_empty() {
            let mut matches = index.entries.values().filter(|e| e.id.starts_with(key));
            if let Some(first) = matches.next() {
                if matches.next().is_some() {
                    return Err(ContainerError::Ambiguous(key.to_string()));
                }
                return Ok(first.clone());
            }
        }
        Err(ContainerError::NotFound(key.to_string()))
    }

    /// Every container, newest first.
    pub fn list(&self) -> Vec<Arc<Entry>> {
        let mut out: Vec<Arc<Entry>> = lock(&self.index).entries.values().cloned().collect();
        out.sort_by_cached_key(|e| std::cmp::Reverse(e.record().created));
        out
    }

    /// Forgets a container and deletes its directory (log, writable layer,
    /// network files).
    pub fn remove(&self, id: &str) -> Result<()> {
        let entry = {
            let mut index = lock(&self.index);
            let entry = index.entries.remove(id);
            index.names.retain(|_, v| v != id);
            entry
        };
        let dir = entry
            .map(|e| e.dir.clone())
            .unwrap_or_else(|| self.dir_of(id));
        match std::fs::remove_dir_all(&dir) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(ContainerError::io(&dir)(e)),
        }
    }

    /// Gives a container another name.
    pub fn rename(&self, id: &str, new_name: &str) -> Result<()> {
        let entry = {
            let mut index = lock(&self.index);
            if let Some(other) = index.names.get(new_name) {
                return Err(ContainerError::NameInUse {
                    name: new_name.to_string(),
                    id: other.clone(),
                });
            }
            let entry = index
                .entries
                .get(id)
                .cloned()
                .ok_or_else(|| ContainerError::NotFound(id.to_string()))?;
            index.names.retain(|_, v| v != id);
            index.names.insert(new_name.to_string(), id.to_string());
            entry
        };
        entry.update(|r| r.name = new_name.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::container::record::RunState;

    fn record(id: &str, name: &str) -> ContainerRecord {
        ContainerRecord {
            id: id.to_string(),
            name: name.to_string(),
            created: chrono::Utc::now(),
            image: "busybox".into(),
            image_id: "sha256:00".into(),
            image_rootfs: "/nowhere".into(),
            path: "sh".into(),
            args: vec![],
            config: Default::default(),
            host_config: Default::default(),
            networks: vec![],
            state: RunState::default(),
            restart_count: 0,
            sandbox_id: None,
            netns_path: None,
        }
    }

    #[test]
    fn names_are_unique_and_lookups_follow_dockerds_order() {
        let dir = tempfile::tempdir().unwrap();
        let (store, problems) = ContainerStore::open(dir.path()).unwrap();
        assert!(problems.is_empty());
        let a = "a".repeat(64);
        let ab = format!("ab{}", "0".repeat(62));
        store.insert(record(&a, "web")).unwrap();
        store.insert(record(&ab, "db")).unwrap();
        let err = store.insert(record(&"c".repeat(64), "web")).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!("Conflict. The container name \"/web\" is already in use by container \"{a}\". You have to remove (or rename) that container to be able to reuse that name.")
        );
        assert_eq!(store.get("web").unwrap().id, a);
        assert_eq!(store.get("/db").unwrap().id, ab);
        assert_eq!(store.get("ab").unwrap().id, ab);
        assert!(matches!(store.get("a"), Err(ContainerError::Ambiguous(_))));
        assert!(matches!(store.get("zz"), Err(ContainerError::NotFound(_))));

        // Persisted and reloaded.
        store
            .get("web")
            .unwrap()
            .update(|r| r.restart_count = 3)
            .unwrap();
        let (again, problems) = ContainerStore::open(dir.path()).unwrap();
        assert!(problems.is_empty());
        assert_eq!(again.get("web").unwrap().record().restart_count, 3);

        again.rename(&ab, "cache").unwrap();
        assert!(again.get("db").is_err());
        again.remove(&a).unwrap();
        assert!(again.get("web").is_err());
        assert!(!dir.path().join(&a).exists());
        assert_eq!(again.list().len(), 1);
    }
}
