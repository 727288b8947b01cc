//! Errors of controller operations, each with its kind.

use crate::driver::DriverError;
use crate::error::{ErrorKind, Kind};
use crate::ipam::IpamError;
use crate::osl::OslError;
use crate::portalloc::PortError;
use crate::store::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum ControllerError {
    #[error("network {0} not found")]
    NetworkNotFound(String),
    #[error("endpoint {0} not found")]
    EndpointNotFound(String),
    #[error("sandbox {0} not found")]
    SandboxNotFound(String),
    #[error("network {0} is ambiguous ({1} matches found based on ID prefix)")]
    AmbiguousNetwork(String, usize),
    #[error("plugin \"{0}\" not found")]
    DriverNotFound(String),
    #[error("network with name {0} already exists")]
    DuplicateName(String),
    #[error("operation is not permitted on predefined {0} network ")]
    Predefined(String),
    /// `endpoints` lists `name:"…" id:"…"` of each, as current dockerd does.
    #[error("error while removing network: network {name} has active endpoints ({})", endpoints.join(", "))]
    InUse {
        name: String,
        endpoints: Vec<String>,
    },
    #[error("container is already attached to network {0}")]
    AlreadyAttached(String),
    #[error("container is not connected to network {0}")]
    NotAttached(String),
    #[error("{0}")]
    Invalid(String),
    #[error("{0}")]
    Forbidden(String),
    #[error(transparent)]
    Ipam(#[from] IpamError),
    #[error(transparent)]
    Port(#[from] PortError),
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Boxed: the OS layer's errors are large and this path is rare.
    #[error(transparent)]
    Os(Box<OslError>),
    #[error("{context}: {source}")]
    Driver {
        context: String,
        #[source]
        source: DriverError,
    },
}

impl ControllerError {
    pub(crate) fn driver(context: impl Into<String>, source: DriverError) -> Self {
        ControllerError::Driver {
            context: context.into(),
            source,
        }
    }
}

impl From<OslError> for ControllerError {
    fn from(e: OslError) -> Self {
        ControllerError::Os(Box::new(e))
    }
}

impl Kind for ControllerError {
    fn kind(&self) -> ErrorKind {
        match self {
            ControllerError::NetworkNotFound(_)
            | ControllerError::EndpointNotFound(_)
            | ControllerError::SandboxNotFound(_)
            | ControllerError::DriverNotFound(_) => ErrorKind::NotFound,
            ControllerError::AmbiguousNetwork(..) | ControllerError::Invalid(_) => {
                ErrorKind::InvalidArgument
            }
            ControllerError::DuplicateName(_) | ControllerError::AlreadyAttached(_) => {
                ErrorKind::Conflict
            }
            ControllerError::Predefined(_)
            | ControllerError::InUse { .. }
            | ControllerError::Forbidden(_) => ErrorKind::Forbidden,
            ControllerError::NotAttached(_) => ErrorKind::NotFound,
            ControllerError::Ipam(e) => e.kind(),
            ControllerError::Port(e) => e.kind(),
            ControllerError::Store(e) => e.kind(),
            ControllerError::Os(e) => e.kind(),
            ControllerError::Driver { source, .. } => source.kind(),
        }
    }
}

pub type Result<T, E = ControllerError> = std::result::Result<T, E>;
