//! Errors of container operations, each with the kind the API maps to a status.

use netcontroller::controller::ControllerError;
use netcontroller::error::{ErrorKind, Kind};

use super::logs::LogError;
use super::runtime::RuntimeError;
use super::spec::SpecError;
use crate::image::ImageError;

#[derive(Debug, thiserror::Error)]
pub enum ContainerError {
    #[error("No such container: {0}")]
    NotFound(String),
    #[error("multiple containers match {0:?}, give more of the id")]
    Ambiguous(String),
    #[error("Conflict. The container name \"/{name}\" is already in use by container \"{id}\". You have to remove (or rename) that container to be able to reuse that name.")]
    NameInUse { name: String, id: String },
    #[error("Invalid container name ({0}), only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed")]
    BadName(String),
    #[error("{0}")]
    Invalid(String),
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    Forbidden(String),
    #[error("No such image: {0}")]
    NoSuchImage(String),
    #[error(transparent)]
    Image(#[from] ImageError),
    #[error(transparent)]
    Network(#[from] ControllerError),
    #[error(transparent)]
    Runtime(#[from] RuntimeError),
    #[error(transparent)]
    Spec(#[from] SpecError),
    #[error(transparent)]
    Logs(#[from] LogError),
    #[error("{}: {source}", path.display())]
    Io {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
    #[error("encoding container {id}: {source}")]
    Encode {
        id: String,
        source: serde_json::Error,
    },
}

impl ContainerError {
    pub(crate) fn io(path: &std::path::Path) -> impl FnOnce(std::io::Error) -> ContainerError + '_ {
        move |source| ContainerError::Io {
            path: path.to_path_buf(),
            source,
        }
    }
}

impl Kind for ContainerError {
    fn kind(&self) -> ErrorKind {
        match self {
            ContainerError::NotFound(_) | ContainerError::NoSuchImage(_) => ErrorKind::NotFound,
            ContainerError::Ambiguous(_)
            | ContainerError::BadName(_)
            | ContainerError::Invalid(_) => ErrorKind::InvalidArgument,
            ContainerError::NameInUse { .. } | ContainerError::Conflict(_) => ErrorKind::Conflict,
            ContainerError::Forbidden(_) => ErrorKind::Forbidden,
            ContainerError::Image(e) => e.kind(),
            ContainerError::Network(e) => e.kind(),
            ContainerError::Runtime(e) => e.kind(),
            ContainerError::Spec(e) => e.kind(),
            ContainerError::Logs(e) => e.kind(),
            ContainerError::Io { .. } | ContainerError::Encode { .. } => ErrorKind::System,
        }
    }
}

pub type Result<T, E = ContainerError> = std::result::Result<T, E>;
