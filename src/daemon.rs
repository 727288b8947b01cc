//! Start-up and shutdown, in dockerd's order (DESIGN.md, "Start-up").

pub mod logging;
pub mod network;
mod notify;
mod pidfile;

use std::fs::{self, DirBuilder};
use std::io;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use netcontroller::error::{ErrorKind, Kind};
use nix::sys::stat::{umask, Mode};
use nix::unistd::{geteuid, Uid};
use tokio::signal::unix::{signal, Signal, SignalKind};
use tokio::sync::watch;

use crate::api::{self, AppState, ListenError, Listener, Server};
use crate::config::{Config, Flags};
use crate::container::runtime::{Containerd, RuntimeError};
use crate::container::{ContainerError, ContainerManager, ManagerConfig};
use crate::image::{ImageError, ImageStore};
use logging::LogHandle;
pub use pidfile::PidfileError;

/// How long in-flight API requests get to finish at shutdown.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);
const DATA_ROOT_MODE: u32 = 0o711;
const EXEC_ROOT_MODE: u32 = 0o700;
const ENGINE_ID_FILE: &str = "engine-id";
/// The image store's directory under data-root.
const IMAGE_DIR: &str = "image";

#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error("berthd needs to be started with root privileges")]
    NotRoot,
    #[error("berthd runs on Linux only")]
    NotLinux,
    #[error("creating {what} {}: {source}", path.display())]
    CreateDir {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error(transparent)]
    Pidfile(#[from] PidfileError),
    #[error("engine id {}: {source}", path.display())]
    EngineId {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error(transparent)]
    Listen(#[from] ListenError),
    #[error("installing signal handlers: {0}")]
    Signals(#[source] io::Error),
    #[error(transparent)]
    Network(Box<network::NetworkSetupError>),
    #[error(transparent)]
    Containerd(#[from] RuntimeError),
    #[error("containers: {0}")]
    Containers(Box<ContainerError>),
    #[error("opening the image store: {0}")]
    Images(#[from] ImageError),
}

impl From<network::NetworkSetupError> for DaemonError {
    fn from(e: network::NetworkSetupError) -> Self {
        DaemonError::Network(Box::new(e))
    }
}

impl Kind for DaemonError {
    fn kind(&self) -> ErrorKind {
        match self {
            DaemonError::NotRoot => ErrorKind::Forbidden,
            DaemonError::NotLinux => ErrorKind::InvalidArgument,
            DaemonError::Pidfile(e) => e.kind(),
            DaemonError::Listen(e) => e.kind(),
            DaemonError::Network(e) => e.kind(),
            DaemonError::Containerd(e) => e.kind(),
            DaemonError::Containers(e) => e.kind(),
            DaemonError::Images(e) => e.kind(),
            DaemonError::CreateDir { .. }
            | DaemonError::EngineId { .. }
            | DaemonError::Signals(_) => ErrorKind::System,
        }
    }
}

/// Runs the daemon until SIGINT, SIGTERM or SIGQUIT. `flags` are kept to
/// re-read daemon.json on SIGHUP.
pub async fn run(config: Config, flags: Flags, logs: LogHandle) -> Result<(), DaemonError> {
    check_platform(geteuid())?;
    // Signals are caught from here on, so one arriving during start-up ends
    // the daemon through the same clean path.
    let mut signals = Signals::install().map_err(DaemonError::Signals)?;

    umask(Mode::from_bits_truncate(0o022));
    create_dir("data-root", &config.data_root, DATA_ROOT_MODE)?;
    create_dir("exec-root", &config.exec_root, EXEC_ROOT_MODE)?;
    let _pidfile = pidfile::Pidfile::create(&config.pidfile)?;
    let engine_id = engine_id(&config.data_root)?;

    let mut listeners = Vec::with_capacity(config.hosts.len());
    for addr in &config.hosts {
        listeners.push(Listener::bind(addr).await?);
    }

    // Containerd: connect to --containerd, or start and supervise a private one.
    let containerd = Arc::new(match &config.containerd {
        Some(address) => Containerd::connect(address).await?,
        None => Containerd::start_private(&config.data_root, &config.exec_root).await?,
    });
    let opened = async {
        let controller = network::start(&config).await?;
        let images = ImageStore::open(config.data_root.join(IMAGE_DIR)).await?;
        Ok::<_, DaemonError>((controller, images))
    };
    let (controller, images) = match opened.await {
        Ok(opened) => opened,
        Err(e) => {
            containerd.shutdown().await;
            return Err(e);
        }
    };
    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    let state = AppState::new(
        Arc::new(config.clone()),
        engine_id.clone(),
        shutdown_rx.clone(),
    )
    .with_network(controller.clone());
    // Containers: restore them, starting those whose restart policy says so.
    let containers = match open_containers(
        &config,
        &engine_id,
        &containerd,
        controller,
        images.clone(),
        &state,
    ) {
        Ok(m) => m,
        Err(e) => {
            containerd.shutdown().await;
            return Err(e);
        }
    };
    containers.restore().await;
    let state = Arc::new(
        state
            .with_images(Arc::new(images))
            .with_image_users(containers.clone())
            .with_containers(containers.clone()),
    );
    let server = Server::start(listeners, Arc::new(api::router()), state, shutdown_rx);
    if let Err(e) = notify::notify("READY=1") {
        tracing::warn!(error = %e, "notifying the service manager");
    }
    tracing::info!(pid = std::process::id(), "berthd is serving the API");

    signals.wait_for_stop(config, &flags, &logs).await;

    tracing::info!("shutting down");
    if let Err(e) = notify::notify("STOPPING=1") {
        tracing::debug!(error = %e, "notifying the service manager");
    }
    // Stop accepting, let in-flight requests finish, remove the sockets.
    let _ = shutdown_tx.send(true);
    server.drain(SHUTDOWN_GRACE).await;
    containers.shutdown().await;
    containerd.shutdown().await;
    tracing::info!("berthd stopped");
    Ok(())
}

/// The container manager over the image store, with a cgroup parent of
/// this daemon's own (`/berth-<engine id prefix>`): daemons sharing a host
/// then never remove each other's parent cgroup.
fn open_containers(
    config: &Config,
    engine_id: &str,
    containerd: &Arc<Containerd>,
    controller: Arc<netcontroller::controller::Controller>,
    images: ImageStore,
    state: &AppState,
) -> Result<Arc<ContainerManager>, DaemonError> {
    let default_network = match config.bridge.bridge {
        crate::config::DefaultBridge::Disabled => "none",
        _ => "bridge",
    };
    let manager = ContainerManager::open(
        ManagerConfig {
            root: config.data_root.join("containers"),
            run_root: config.exec_root.join("containers"),
            dns: config.dns.iter().map(|ip| ip.to_string()).collect(),
            default_network: default_network.to_string(),
            cgroup_parent: format!("/berth-{}", &engine_id[..8]),
        },
        containerd.clone(),
        controller,
        images,
        state.events.clone(),
    )
    .map_err(|e| DaemonError::Containers(Box::new(e)))?;
    Ok(manager)
}

fn check_platform(euid: Uid) -> Result<(), DaemonError> {
    if !cfg!(target_os = "linux") {
        return Err(DaemonError::NotLinux);
    }
    if !euid.is_root() {
        return Err(DaemonError::NotRoot);
    }
    Ok(())
}

fn create_dir(what: &'static str, path: &Path, mode: u32) -> Result<(), DaemonError> {
    DirBuilder::new()
        .recursive(true)
        .mode(mode)
        .create(path)
        .map_err(|source| DaemonError::CreateDir {
            what,
            path: path.into(),
            source,
        })
}

/// The engine's identity, created once and kept across restarts (dockerd
/// keeps it in `<data-root>/engine-id` too).
fn engine_id(data_root: &Path) -> Result<String, DaemonError> {
    let path = data_root.join(ENGINE_ID_FILE);
    let err = |source| DaemonError::EngineId {
        path: path.clone(),
        source,
    };
    match fs::read_to_string(&path) {
        // Anything else than our own UUID is replaced: the id names cgroups.
        Ok(id) if is_uuid(id.trim()) => return Ok(id.trim().to_string()),
        Ok(_) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(err(e)),
    }
    let id = new_uuid();
    // Written aside and renamed, so a crash never leaves a half-written id.
    let tmp = data_root.join(format!(".{ENGINE_ID_FILE}.tmp"));
    fs::write(&tmp, format!("{id}\n"))
        .and_then(|()| fs::rename(&tmp, &path))
        .map_err(err)?;
    Ok(id)
}

/// Whether `s` looks like what [`new_uuid`] writes.
fn is_uuid(s: &str) -> bool {
    s.len() == 36
        && s.bytes().enumerate().all(|(i, b)| {
            if matches!(i, 8 | 13 | 18 | 23) {
                b == b'-'
            } else {
                b.is_ascii_hexdigit()
            }
        })
}

/// A random (version 4) UUID.
fn new_uuid() -> String {
    let mut b: [u8; 16] = rand::random();
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h = hex::encode(b);
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

struct Signals {
    interrupt: Signal,
    terminate: Signal,
    quit: Signal,
    hangup: Signal,
}

impl Signals {
    fn install() -> io::Result<Signals> {
        Ok(Signals {
            interrupt: signal(SignalKind::interrupt())?,
            terminate: signal(SignalKind::terminate())?,
            quit: signal(SignalKind::quit())?,
            hangup: signal(SignalKind::hangup())?,
        })
    }

    /// Returns on SIGINT, SIGTERM or SIGQUIT; handles SIGHUP (reload) meanwhile.
    async fn wait_for_stop(&mut self, mut current: Config, flags: &Flags, logs: &LogHandle) {
        loop {
            let name = tokio::select! {
                _ = self.interrupt.recv() => "SIGINT",
                _ = self.terminate.recv() => "SIGTERM",
                _ = self.quit.recv() => "SIGQUIT",
                _ = self.hangup.recv() => {
                    current = reload(current, flags, logs);
                    continue;
                }
            };
            tracing::info!(signal = name, "received signal");
            return;
        }
    }
}

/// SIGHUP: reads daemon.json again and applies what can change at run time
/// (debug, log-level); the rest takes effect at the next start.
fn reload(current: Config, flags: &Flags, logs: &LogHandle) -> Config {
    tracing::info!("SIGHUP received: reloading configuration");
    let new = match Config::load(flags) {
        Ok(new) => new,
        Err(e) => {
            tracing::error!(error = %e, "reload failed; keeping the running configuration");
            return current;
        }
    };
    logs.set_level(new.log_filter());
    let unchanged_elsewhere = Config {
        debug: current.debug,
        log_level: current.log_level,
        ..new.clone()
    } == current;
    if !unchanged_elsewhere {
        tracing::warn!("settings other than debug and log-level take effect when berthd restarts");
    }
    tracing::info!(debug = new.debug, log_level = ?new.log_level, "configuration reloaded");
    Config {
        debug: new.debug,
        log_level: new.log_level,
        ..current
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_root_may_start() {
        assert!(matches!(
            check_platform(Uid::from_raw(1000)),
            Err(DaemonError::NotRoot)
        ));
        assert!(check_platform(Uid::from_raw(0)).is_ok());
    }

    #[test]
    fn engine_id_is_created_once() {
        let dir = tempfile::tempdir().unwrap();
        let id = engine_id(dir.path()).unwrap();
        assert_eq!(id.len(), 36);
        assert_eq!(&id[14..15], "4");
        assert_eq!(engine_id(dir.path()).unwrap(), id);
        assert_ne!(new_uuid(), new_uuid());
    }
}
