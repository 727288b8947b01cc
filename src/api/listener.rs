//! API listeners: unix sockets (mode 0660, group docker) and plain TCP.

use std::fs::{self, Permissions};
use std::io;
use std::net::SocketAddr;
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::{Path, PathBuf};

use netcontroller::error::{ErrorKind, Kind};
use nix::unistd::{chown, Group, Uid};
use tokio::net::{TcpListener, TcpStream, UnixListener, UnixStream};

use crate::config::ListenAddr;

/// Who may use the socket besides root: the `docker` group, as with dockerd.
const SOCKET_GROUP: &str = "docker";
const SOCKET_MODE: u32 = 0o660;

#[derive(Debug, thiserror::Error)]
pub enum ListenError {
    #[error("cannot listen on {addr}: {source}")]
    Io {
        addr: ListenAddr,
        #[source]
        source: io::Error,
    },
    #[error("cannot listen on unix://{}: the path exists and is not a socket", .0.display())]
    NotASocket(PathBuf),
    #[error("cannot listen on unix://{}: another process is serving it", .0.display())]
    InUse(PathBuf),
}

impl Kind for ListenError {
    fn kind(&self) -> ErrorKind {
        match self {
            ListenError::Io { .. } => ErrorKind::System,
            ListenError::NotASocket(_) | ListenError::InUse(_) => ErrorKind::Conflict,
        }
    }
}

/// A bound listener. A unix socket's file is removed when it is dropped.
pub enum Listener {
    Unix {
        listener: UnixListener,
        path: PathBuf,
    },
    Tcp(TcpListener),
}

/// A connection accepted by a [`Listener`].
pub enum Accepted {
    Unix(UnixStream),
    Tcp(TcpStream, SocketAddr),
}

impl Listener {
    pub async fn bind(addr: &ListenAddr) -> Result<Listener, ListenError> {
        let io_err = |source| ListenError::Io {
            addr: addr.clone(),
            source,
        };
        match addr {
            ListenAddr::Unix(path) => {
                if let Some(parent) = path.parent() {
                    fs::create_dir_all(parent).map_err(io_err)?;
                }
                remove_stale_socket(path)?;
                let listener = UnixListener::bind(path).map_err(io_err)?;
                let guard = Listener::Unix {
                    listener,
                    path: path.clone(),
                };
                fs::set_permissions(path, Permissions::from_mode(SOCKET_MODE)).map_err(io_err)?;
                set_socket_group(path).map_err(io_err)?;
                tracing::info!(%addr, "API listening");
                Ok(guard)
            }
            ListenAddr::Tcp { host, port } => {
                let listener = TcpListener::bind((host.as_str(), *port))
                    .await
                    .map_err(io_err)?;
                tracing::warn!(
                    %addr,
                    "WARNING: the API is served on {addr} WITHOUT authentication or encryption: \
                     anyone who can reach this address has root access to this machine"
                );
                Ok(Listener::Tcp(listener))
            }
        }
    }

    pub async fn accept(&self) -> io::Result<Accepted> {
        match self {
            Listener::Unix { listener, .. } => {
                listener.accept().await.map(|(s, _)| Accepted::Unix(s))
            }
            Listener::Tcp(listener) => listener
                .accept()
                .await
                .map(|(s, peer)| Accepted::Tcp(s, peer)),
        }
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        if let Listener::Unix { path, .. } = self {
            if let Err(e) = fs::remove_file(&*path) {
                if e.kind() != io::ErrorKind::NotFound {
                    tracing::warn!(path = %path.display(), error = %e, "removing API socket");
                }
            }
        }
    }
}

/// A socket file left by a daemon that died is replaced; a live one (some
/// process answers on it) or a file that is not a socket is left alone.
fn remove_stale_socket(path: &Path) -> Result<(), ListenError> {
    match fs::symlink_metadata(path) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(source) => Err(ListenError::Io {
            addr: ListenAddr::Unix(path.into()),
            source,
        }),
        Ok(meta) if !meta.file_type().is_socket() => Err(ListenError::NotASocket(path.into())),
        Ok(_) => {
            if std::os::unix::net::UnixStream::connect(path).is_ok() {
                return Err(ListenError::InUse(path.into()));
            }
            tracing::info!(path = %path.display(), "removing stale API socket");
            fs::remove_file(path).map_err(|source| ListenError::Io {
                addr: ListenAddr::Unix(path.into()),
                source,
            })
        }
    }
}

fn set_socket_group(path: &Path) -> io::Result<()> {
    match Group::from_name(SOCKET_GROUP) {
        Ok(Some(group)) => {
            chown(path, Some(Uid::from_raw(0)), Some(group.gid)).map_err(io::Error::from)
        }
        Ok(None) => {
            tracing::debug!("no {SOCKET_GROUP} group: the API socket stays root-only");
            Ok(())
        }
        Err(e) => {
            tracing::warn!(error = %e, "looking up the {SOCKET_GROUP} group");
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::MetadataExt;

    use super::*;

    #[tokio::test]
    async fn unix_socket_mode_stale_and_cleanup() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("run/api.sock");
        let addr = ListenAddr::Unix(path.clone());

        // A stale socket file (nothing listening) is replaced.
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        drop(std::os::unix::net::UnixListener::bind(&path).unwrap());
        assert!(path.exists());

        let listener = Listener::bind(&addr).await.unwrap();
        assert_eq!(fs::metadata(&path).unwrap().mode() & 0o777, 0o660);

        // A live socket is not taken over.
        assert!(matches!(
            Listener::bind(&addr).await,
            Err(ListenError::InUse(_))
        ));

        drop(listener);
        assert!(!path.exists());
    }

    #[tokio::test]
    async fn refuses_to_replace_a_regular_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("api.sock");
        fs::write(&path, "data").unwrap();
        let err = Listener::bind(&ListenAddr::Unix(path.clone())).await;
        assert!(matches!(err, Err(ListenError::NotASocket(_))));
        assert_eq!(fs::read_to_string(&path).unwrap(), "data");
    }
}
