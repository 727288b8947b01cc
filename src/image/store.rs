//! The image store: import (`docker import`), load (`docker load`), names,
//! lookup and removal.

use std::collections::BTreeMap;
use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};
use tokio::io::AsyncRead;
use tokio_util::io::SyncIoBridge;

use super::extract::{apply_layer, clean_relative, digest, disk_size, resolve, Whiteouts};
use super::reference::Reference;
use super::types::{DeleteItem, History, ImageConfig, RootFs, RunConfig};
use super::view::Image;
use super::ImageError;

type Result<T, E = ImageError> = std::result::Result<T, E>;

const REPOSITORIES: &str = "repositories.json";
const CONFIG: &str = "config.json";
const METADATA: &str = "metadata.json";
const ROOTFS: &str = "rootfs";
const TMP: &str = "tmp";

fn io_at(path: &Path) -> impl FnOnce(io::Error) -> ImageError + '_ {
    move |source| ImageError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Writes a file so that readers see the old or the new content, never a
/// mix, even across a crash.
fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = path.with_extension(format!("tmp-{}", rand::random::<u32>()));
    let write = || -> io::Result<()> {
        let mut f = fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        fs::rename(&tmp, path)
    };
    write().map_err(|e| {
        let _ = fs::remove_file(&tmp);
        io_at(path)(e)
    })
}

/// The image config's `architecture`: Go's name for this machine.
fn go_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        "powerpc64" => "ppc64le",
        other => other,
    }
}

pub(super) fn rfc3339(t: &DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::AutoSi, true)
}

/// What `docker import` may add besides the tarball.
#[derive(Debug, Clone, Default)]
pub struct ImportOptions {
    pub repo: Option<String>,
    pub tag: Option<String>,
    /// The commit message (`-m`), kept as the image comment.
    pub message: Option<String>,
    /// The run config (`--change CMD …` etc., already parsed).
    pub config: Option<RunConfig>,
}

/// An image a `docker load` brought in, and the names it was given.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoadedImage {
    pub id: String,
    pub tags: Vec<String>,
}

/// Kept beside each image's config.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Metadata {
    size: u64,
    #[serde(default)]
    last_tag_time: Option<DateTime<Utc>>,
    /// Content bytes of each layer, bottom first (for `docker history`);
    /// empty for images stored before berthd recorded them.
    #[serde(default)]
    layer_sizes: Vec<u64>,
}

#[derive(Debug, Clone)]
struct Record {
    config: ImageConfig,
    meta: Metadata,
}

/// dockerd's `repositories.json`: repo -> "repo:tag" -> id.
#[derive(Debug, Default, Serialize, Deserialize)]
struct RepositoriesFile {
    #[serde(rename = "Repositories", default)]
    repositories: BTreeMap<String, BTreeMap<String, String>>,
}

#[derive(Debug, Default)]
struct State {
    /// By hex id.
    images: BTreeMap<String, Record>,
    repos: BTreeMap<Reference, String>,
}

struct Inner {
    root: PathBuf,
    state: Mutex<State>,
}

/// The image store; cheap to clone, all clones share the same state.
#[derive(Clone)]
pub struct ImageStore {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for ImageStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ImageStore")
            .field("root", &self.inner.root)
            .finish()
    }
}

/// A hex id from `sha256:<hex>` or `<hex>`.
fn hex_of(id: &str) -> &str {
    id.strip_prefix("sha256:").unwrap_or(id)
}

/// Removes a directory when dropped unless kept.
struct TempDir {
    path: PathBuf,
    keep: bool,
}

impl Drop for TempDir {
    fn drop(&mut self) {
        if !self.keep {
            let _ = fs::remove_dir_all(&self.path);
        }
    }
}

impl Inner {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn image_dir(&self, hex: &str) -> PathBuf {
        self.root.join(hex)
    }

    fn temp_dir(&self) -> Result<TempDir> {
        let path = self
            .root
            .join(TMP)
            .join(format!("{:016x}", rand::random::<u64>()));
        fs::create_dir_all(&path).map_err(io_at(&path))?;
        Ok(TempDir { path, keep: false })
    }

    fn load_state(&self) -> Result<State> {
        let mut state = State::default();
        for entry in fs::read_dir(&self.root).map_err(io_at(&self.root))? {
            let entry = entry.map_err(io_at(&self.root))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.len() != 64 || !name.bytes().all(|b| b.is_ascii_hexdigit()) {
                continue;
            }
            match read_record(&entry.path()) {
                Ok(record) => {
                    state.images.insert(name, record);
                }
                Err(e) => tracing::warn!(image = %name, error = %e, "skipping unreadable image"),
            }
        }
        let path = self.root.join(REPOSITORIES);
        let file: RepositoriesFile = match fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map_err(|e| io_at(&path)(io::Error::new(io::ErrorKind::InvalidData, e)))?,
            Err(e) if e.kind() == io::ErrorKind::NotFound => RepositoriesFile::default(),
            Err(e) => return Err(io_at(&path)(e)),
        };
        for (name, id) in file.repositories.into_values().flatten() {
            let hex = hex_of(&id).to_string();
            match Reference::parse(&name) {
                Ok(r) if state.images.contains_key(&hex) => {
                    state.repos.insert(r, hex);
                }
                _ => tracing::warn!(%name, %id, "dropping name of a missing image"),
            }
        }
        Ok(state)
    }

    fn save_repositories(&self, state: &State) -> Result<()> {
        let mut file = RepositoriesFile::default();
        for (r, hex) in &state.repos {
            file.repositories
                .entry(r.repo.clone())
                .or_default()
                .insert(r.to_string(), format!("sha256:{hex}"));
        }
        // Serializing maps of strings cannot fail.
        let bytes = serde_json::to_vec(&file).unwrap_or_default();
        write_atomic(&self.root.join(REPOSITORIES), &bytes)
    }

    fn save_metadata(&self, hex: &str, meta: &Metadata) -> Result<()> {
        let bytes = serde_json::to_vec(meta).unwrap_or_default();
        write_atomic(&self.image_dir(hex).join(METADATA), &bytes)
    }

    fn image(&self, state: &State, hex: &str) -> Option<Image> {
        let record = state.images.get(hex)?;
        let repo_tags = state
            .repos
            .iter()
            .filter(|(_, h)| *h == hex)
            .map(|(r, _)| r.to_string())
            .collect();
        Some(Image {
            id: format!("sha256:{hex}"),
            config: record.config.clone(),
            repo_tags,
            size: record.meta.size,
            last_tag_time: record.meta.last_tag_time,
            layer_sizes: record.meta.layer_sizes.clone(),
            rootfs: self.image_dir(hex).join(ROOTFS),
        })
    }

    /// Finds an image by name (`busybox`, `busybox:latest`), full id
    /// (`sha256:…`) or unique id prefix; says whether it was found by name.
    fn resolve(&self, state: &State, name: &str) -> Result<(String, Option<Reference>)> {
        let hex = hex_of(name);
        if hex.len() == 64 && state.images.contains_key(hex) {
            return Ok((hex.to_string(), None));
        }
        if let Ok(r) = Reference::parse(name) {
            if let Some(hex) = state.repos.get(&r) {
                return Ok((hex.clone(), Some(r)));
            }
        }
        if !hex.is_empty()
            && hex
                .bytes()
                .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
        {
            let mut matches = state.images.keys().filter(|k| k.starts_with(hex));
            if let Some(first) = matches.next() {
                if matches.next().is_some() {
                    return Err(ImageError::Ambiguous(name.to_string()));
                }
                return Ok((first.clone(), None));
            }
        }
        Err(not_found(name))
    }

    /// Moves a finished image directory into place (another import of the
    /// same content may have won the race; then ours is dropped) and records
    /// it.
    fn commit(&self, mut tmp: TempDir, hex: &str, record: Record) -> Result<()> {
        let dst = self.image_dir(hex);
        let mut state = self.lock();
        if state.images.contains_key(hex) {
            return Ok(());
        }
        if dst.exists() {
            // A leftover of a crash between rename and bookkeeping.
            fs::remove_dir_all(&dst).map_err(io_at(&dst))?;
        }
        fs::rename(&tmp.path, &dst).map_err(io_at(&dst))?;
        tmp.keep = true;
        state.images.insert(hex.to_string(), record);
        Ok(())
    }

    fn set_tag(&self, state: &mut State, r: Reference, hex: &str) -> Result<()> {
        if let Some(old) = state.repos.insert(r.clone(), hex.to_string()) {
            if old != hex {
                tracing::info!(name = %r, old = %old, new = %hex, "name moved to another image");
            }
        }
        let now = Utc::now();
        if let Some(record) = state.images.get_mut(hex) {
            record.meta.last_tag_time = Some(now);
            let meta = record.meta.clone();
            self.save_metadata(hex, &meta)?;
        }
        Ok(())
    }

    fn import(&self, reader: impl io::Read, opts: &ImportOptions) -> Result<Image> {
        let reference = match &opts.repo {
            Some(repo) if !repo.is_empty() => {
                Some(Reference::from_parts(repo, opts.tag.as_deref())?)
            }
            _ => None,
        };
        let tmp = self.temp_dir()?;
        let rootfs = tmp.path.join(ROOTFS);
        fs::create_dir(&rootfs).map_err(io_at(&rootfs))?;
        let layer = apply_layer(&rootfs, reader, Whiteouts::Apply)?;
        let now = rfc3339(&Utc::now());
        let comment = opts
            .message
            .clone()
            .unwrap_or_else(|| "Imported from -".to_string());
        let config = ImageConfig {
            architecture: go_arch().to_string(),
            comment: Some(comment.clone()),
            config: opts.config.clone(),
            created: Some(now.clone()),
            history: vec![History {
                created: Some(now),
                comment: Some(comment),
                ..Default::default()
            }],
            os: "linux".to_string(),
            rootfs: RootFs {
                typ: "layers".to_string(),
                diff_ids: vec![layer.diff_id],
            },
            ..Default::default()
        };
        let bytes = serde_json::to_vec(&config).unwrap_or_default();
        let hex = hex_of(&digest(&bytes)).to_string();
        let meta = Metadata {
            size: disk_size(&rootfs).map_err(io_at(&rootfs))?,
            last_tag_time: None,
            layer_sizes: vec![layer.size],
        };
        write_atomic(&tmp.path.join(CONFIG), &bytes)?;
        write_atomic(
            &tmp.path.join(METADATA),
            &serde_json::to_vec(&meta).unwrap_or_default(),
        )?;
        self.commit(tmp, &hex, Record { config, meta })?;
        let mut state = self.lock();
        if let Some(r) = reference {
            self.set_tag(&mut state, r, &hex)?;
            self.save_repositories(&state)?;
        }
        tracing::debug!(id = %hex, "image imported");
        self.image(&state, &hex)
            .ok_or_else(|| ImageError::NotFound(hex.clone()))
    }

    fn load(&self, reader: impl io::Read) -> Result<Vec<LoadedImage>> {
        let spool = self.temp_dir()?;
        apply_layer(&spool.path, reader, Whiteouts::Refuse)?;
        let manifest_path = spool.path.join("manifest.json");
        let manifest: Vec<ManifestEntry> = match fs::read(&manifest_path) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map_err(|e| ImageError::InvalidArchive(format!("manifest.json: {e}")))?,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(ImageError::InvalidArchive(
                    "no manifest.json: not a docker save archive".to_string(),
                ))
            }
            Err(e) => return Err(io_at(&manifest_path)(e)),
        };
        // Validate every name before changing anything.
        let mut tags_of = Vec::new();
        for entry in &manifest {
            let tags = entry
                .repo_tags
                .iter()
                .flatten()
                .map(|t| Reference::parse(t))
                .collect::<Result<Vec<_>>>()?;
            tags_of.push(tags);
        }
        let mut loaded = Vec::new();
        for (entry, tags) in manifest.iter().zip(tags_of) {
            let hex = self.load_image(&spool.path, entry)?;
            let mut state = self.lock();
            for r in &tags {
                self.set_tag(&mut state, r.clone(), &hex)?;
            }
            self.save_repositories(&state)?;
            loaded.push(LoadedImage {
                id: format!("sha256:{hex}"),
                tags: tags.iter().map(Reference::to_string).collect(),
            });
        }
        Ok(loaded)
    }

    /// Builds one image of a spooled `docker save` archive; returns its hex id.
    fn load_image(&self, spool: &Path, entry: &ManifestEntry) -> Result<String> {
        // Paths may go through symlinks (older docker saves link shared
        // layers): resolve them inside the spool.
        let open = |name: &str| -> Result<(PathBuf, fs::File)> {
            let path = resolve(spool, &clean_relative(Path::new(name))?, false)?;
            let file = fs::File::open(&path).map_err(|e| {
                ImageError::InvalidArchive(format!("{name} missing from the archive: {e}"))
            })?;
            Ok((path, file))
        };
        let (config_path, _) = open(&entry.config)?;
        let bytes = fs::read(&config_path).map_err(io_at(&config_path))?;
        let config: ImageConfig = serde_json::from_slice(&bytes)
            .map_err(|e| ImageError::InvalidArchive(format!("{}: {e}", entry.config)))?;
        let hex = hex_of(&digest(&bytes)).to_string();
        if self.lock().images.contains_key(&hex) {
            return Ok(hex);
        }
        if config.rootfs.diff_ids.len() != entry.layers.len() {
            return Err(ImageError::InvalidArchive(format!(
                "{} lists {} layers, its config {}",
                entry.config,
                entry.layers.len(),
                config.rootfs.diff_ids.len()
            )));
        }
        let tmp = self.temp_dir()?;
        let rootfs = tmp.path.join(ROOTFS);
        fs::create_dir(&rootfs).map_err(io_at(&rootfs))?;
        let mut layer_sizes = Vec::with_capacity(entry.layers.len());
        for (layer, expected) in entry.layers.iter().zip(&config.rootfs.diff_ids) {
            let (_, file) = open(layer)?;
            let applied = apply_layer(&rootfs, io::BufReader::new(file), Whiteouts::Apply)?;
            if &applied.diff_id != expected {
                return Err(ImageError::InvalidArchive(format!(
                    "layer {layer} has digest {}, the config says {expected}",
                    applied.diff_id
                )));
            }
            layer_sizes.push(applied.size);
        }
        let meta = Metadata {
            size: disk_size(&rootfs).map_err(io_at(&rootfs))?,
            last_tag_time: None,
            layer_sizes,
        };
        write_atomic(&tmp.path.join(CONFIG), &bytes)?;
        write_atomic(
            &tmp.path.join(METADATA),
            &serde_json::to_vec(&meta).unwrap_or_default(),
        )?;
        self.commit(tmp, &hex, Record { config, meta })?;
        tracing::debug!(id = %hex, layers = entry.layers.len(), "image loaded");
        Ok(hex)
    }

    /// Applies `docker rmi` to the state; returns what was done and the
    /// image directory to delete, already moved aside.
    fn remove(
        &self,
        name: &str,
        force: bool,
        in_use: bool,
    ) -> Result<(Vec<DeleteItem>, Option<TempDir>)> {
        let mut state = self.lock();
        let (hex, by_name) = self.resolve(&state, name)?;
        let short = &hex[..12];
        let tags: Vec<Reference> = state
            .repos
            .iter()
            .filter(|(_, h)| **h == hex)
            .map(|(r, _)| r.clone())
            .collect();
        let mut items = Vec::new();
        let untag: Vec<Reference> = match by_name {
            Some(r) => {
                if tags.len() == 1 && in_use && !force {
                    return Err(ImageError::Conflict(format!(
                        "unable to remove repository reference \"{name}\" (must force) - a container is using its referenced image {short}"
                    )));
                }
                vec![r]
            }
            None => {
                if tags.len() > 1 && !force {
                    return Err(ImageError::Conflict(format!(
                        "unable to delete {short} (must be forced) - image is referenced in multiple repositories"
                    )));
                }
                if in_use && !force {
                    return Err(ImageError::Conflict(format!(
                        "unable to delete {short} (must be forced) - image is being used by a container"
                    )));
                }
                tags
            }
        };
        for r in &untag {
            state.repos.remove(r);
            items.push(DeleteItem::Untagged(r.to_string()));
        }
        let still_named = state.repos.values().any(|h| *h == hex);
        let mut doomed = None;
        // An image a container still uses stays (untagged) on disk: its
        // rootfs is that container's overlay lower directory.
        if !still_named && !in_use {
            let aside = self.temp_dir()?;
            let dir = self.image_dir(&hex);
            fs::remove_dir(&aside.path).map_err(io_at(&aside.path))?;
            fs::rename(&dir, &aside.path).map_err(io_at(&dir))?;
            state.images.remove(&hex);
            items.push(DeleteItem::Deleted(format!("sha256:{hex}")));
            doomed = Some(aside);
        }
        self.save_repositories(&state)?;
        Ok((items, doomed))
    }
}

/// dockerd's "No such image": a name is shown with its tag (`foo:latest`),
/// a full id as given.
fn not_found(name: &str) -> ImageError {
    let shown = match Reference::parse(name) {
        Ok(r) if hex_of(name).len() != 64 => r.to_string(),
        _ => name.to_string(),
    };
    ImageError::NotFound(shown)
}

fn read_record(dir: &Path) -> Result<Record> {
    let config_path = dir.join(CONFIG);
    let bytes = fs::read(&config_path).map_err(io_at(&config_path))?;
    let config = serde_json::from_slice(&bytes)
        .map_err(|e| io_at(&config_path)(io::Error::new(io::ErrorKind::InvalidData, e)))?;
    let meta_path = dir.join(METADATA);
    let meta = match fs::read(&meta_path) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map_err(|e| io_at(&meta_path)(io::Error::new(io::ErrorKind::InvalidData, e)))?,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            let rootfs = dir.join(ROOTFS);
            Metadata {
                size: disk_size(&rootfs).map_err(io_at(&rootfs))?,
                last_tag_time: None,
                layer_sizes: Vec::new(),
            }
        }
        Err(e) => return Err(io_at(&meta_path)(e)),
    };
    Ok(Record { config, meta })
}

/// An entry of a `docker save` archive's manifest.json.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ManifestEntry {
    config: String,
    #[serde(default)]
    repo_tags: Option<Vec<String>>,
    layers: Vec<String>,
}

/// Runs store work that touches the disk off the async threads.
async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T> + Send + 'static,
) -> Result<T> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| ImageError::Io {
            path: PathBuf::new(),
            source: io::Error::other(e),
        })?
}

impl ImageStore {
    /// Opens (creating) the store at `root` (`<data-root>/image`), dropping
    /// what an interrupted import or load left behind.
    pub async fn open(root: impl Into<PathBuf>) -> Result<ImageStore> {
        let root = root.into();
        blocking(move || {
            fs::create_dir_all(&root).map_err(io_at(&root))?;
            let tmp = root.join(TMP);
            match fs::remove_dir_all(&tmp) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(io_at(&tmp)(e)),
            }
            let inner = Inner {
                root,
                state: Mutex::new(State::default()),
            };
            let state = inner.load_state()?;
            *inner.lock() = state;
            Ok(ImageStore {
                inner: Arc::new(inner),
            })
        })
        .await
    }

    /// `docker import`: a plain rootfs tarball (optionally gzip), named
    /// `repo:tag` when a repo is given.
    pub async fn import<R>(&self, reader: R, repo: Option<&str>, tag: Option<&str>) -> Result<Image>
    where
        R: AsyncRead + Send + Unpin + 'static,
    {
        let opts = ImportOptions {
            repo: repo.map(str::to_string),
            tag: tag.map(str::to_string),
            ..Default::default()
        };
        self.import_with(reader, opts).await
    }

    /// `docker import` with a message and a run config.
    pub async fn import_with<R>(&self, reader: R, opts: ImportOptions) -> Result<Image>
    where
        R: AsyncRead + Send + Unpin + 'static,
    {
        let inner = self.inner.clone();
        let reader = SyncIoBridge::new(reader);
        blocking(move || inner.import(reader, &opts)).await
    }

    /// `docker load`: a `docker save` archive (manifest.json, configs,
    /// layer tarballs applied in order with their whiteouts).
    pub async fn load<R>(&self, reader: R) -> Result<Vec<LoadedImage>>
    where
        R: AsyncRead + Send + Unpin + 'static,
    {
        let inner = self.inner.clone();
        let reader = SyncIoBridge::new(reader);
        blocking(move || inner.load(reader)).await
    }

    /// Every image, newest first.
    /// How many images the store holds (without building their views).
    pub fn count(&self) -> usize {
        self.inner.lock().images.len()
    }

    pub fn list(&self) -> Vec<Image> {
        let state = self.inner.lock();
        let mut images: Vec<Image> = state
            .images
            .keys()
            .filter_map(|hex| self.inner.image(&state, hex))
            .collect();
        images.sort_by_cached_key(|i| (std::cmp::Reverse(i.created()), i.id.clone()));
        images
    }

    /// Looks an image up by `name[:tag]`, `sha256:<id>` or unique id prefix.
    pub fn get(&self, name: &str) -> Result<Image> {
        let state = self.inner.lock();
        let (hex, _) = self.inner.resolve(&state, name)?;
        self.inner
            .image(&state, &hex)
            .ok_or_else(|| ImageError::NotFound(name.to_string()))
    }

    /// `docker tag SOURCE REPO[:TAG]`; an existing name moves to this image.
    pub async fn tag(&self, source: &str, repo: &str, tag: Option<&str>) -> Result<()> {
        let reference = Reference::from_parts(repo, tag)?;
        let inner = self.inner.clone();
        let source = source.to_string();
        blocking(move || {
            let mut state = inner.lock();
            let (hex, _) = inner.resolve(&state, &source)?;
            inner.set_tag(&mut state, reference, &hex)?;
            inner.save_repositories(&state)
        })
        .await
    }

    /// `docker rmi`: untags a name, and deletes the image once no name is
    /// left. `in_use(id)` says whether a container uses the image
    /// (`sha256:…`); then removal is refused unless `force`, and a forced
    /// one only untags.
    pub async fn remove(
        &self,
        name: &str,
        force: bool,
        in_use: impl Fn(&str) -> bool,
    ) -> Result<Vec<DeleteItem>> {
        let id = self.get(name)?.id;
        let used = in_use(&id);
        let inner = self.inner.clone();
        let name = name.to_string();
        blocking(move || {
            let (items, doomed) = inner.remove(&name, force, used)?;
            // Deleting a large rootfs happens after the lock is released.
            drop(doomed);
            Ok(items)
        })
        .await
    }

    /// Where an image's rootfs is (the image named as for [`ImageStore::get`]).
    pub fn rootfs_path(&self, name: &str) -> Result<PathBuf> {
        let state = self.inner.lock();
        let (hex, _) = self.inner.resolve(&state, name)?;
        Ok(self.inner.image_dir(&hex).join(ROOTFS))
    }
}
