//! The contract between the controller and a network driver.
//!
//! The controller does all bookkeeping (ids, names, subnets, addresses, host
//! ports, persistence) before it calls a driver, and passes fully resolved
//! specs; a driver only does kernel work (links, addresses, routes, rules).
//!
//! Rules every driver follows:
//! - **All or nothing.** A method that fails undoes whatever it already did
//!   before returning the error: after an `Err`, the kernel holds exactly what
//!   it held before the call.
//! - **Teardown keeps going.** `delete_*`, `leave` and `revoke_*` continue past
//!   individual failures and report them together, so one stuck rule does not
//!   leave a link behind. Tearing down something already gone is not an error.
//! - **Idempotent set-up on restore.** `restore_*` may find the kernel objects
//!   already present (daemon restart) or absent (host reboot, crash): it makes
//!   them exactly as the spec says, without duplicates.
//! - Calls for one network are serialised by the controller; calls for
//!   different networks may run concurrently.

use async_trait::async_trait;

use crate::error::{ErrorKind, Kind};
use crate::model::{EndpointSpec, JoinInfo, JoinSpec, NetworkSpec, PortBinding};

/// Why a driver call failed.
#[derive(Debug, thiserror::Error)]
pub enum DriverError {
    /// A driver option or network setting is not acceptable.
    #[error("invalid value for {key}: {reason}")]
    InvalidOption { key: String, reason: String },
    /// The request clashes with state outside the controller's books
    /// (a bridge name already used, a host port already bound).
    #[error("{0}")]
    Conflict(String),
    /// The driver does not know the network or endpoint named.
    #[error("{what} {id} not found")]
    NotFound { what: &'static str, id: String },
    /// The operation is meaningless for this driver (e.g. a second endpoint on `host`).
    #[error("{0}")]
    Forbidden(String),
    /// The kernel or a system tool refused.
    #[error("{context}: {source}")]
    System {
        context: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// Several teardown steps failed; each message is kept.
    #[error("{}", .0.join("; "))]
    Teardown(Vec<String>),
}

impl DriverError {
    pub fn system(
        context: impl Into<String>,
        source: impl Into<Box<dyn std::error::Error + Send + Sync>>,
    ) -> Self {
        DriverError::System {
            context: context.into(),
            source: source.into(),
        }
    }
}

impl Kind for DriverError {
    fn kind(&self) -> ErrorKind {
        match self {
            DriverError::InvalidOption { .. } => ErrorKind::InvalidArgument,
            DriverError::Conflict(_) => ErrorKind::Conflict,
            DriverError::NotFound { .. } => ErrorKind::NotFound,
            DriverError::Forbidden(_) => ErrorKind::Forbidden,
            DriverError::System { .. } | DriverError::Teardown(_) => ErrorKind::System,
        }
    }
}

pub type DriverResult<T> = Result<T, DriverError>;

/// A network driver: `null`, `host`, `bridge`, ...
#[async_trait]
pub trait Driver: Send + Sync {
    /// The name users pass as `--driver`.
    fn name(&self) -> &'static str;

    /// True for drivers whose sandboxes are the daemon's own namespace (`host`):
    /// the controller then makes no namespace for the sandbox.
    fn uses_host_namespace(&self) -> bool {
        false
    }

    /// Checks options before anything is allocated or created. Called by the
    /// controller before a network is reserved; must not touch the kernel.
    fn validate_network(&self, net: &NetworkSpec) -> DriverResult<()>;

    /// Creates the kernel side of a new network (bridge, address, rules).
    async fn create_network(&self, net: &NetworkSpec) -> DriverResult<()>;

    /// Removes everything `create_network` made. Called only when the network
    /// has no endpoints left.
    async fn delete_network(&self, net: &NetworkSpec) -> DriverResult<()>;

    /// Plugs an endpoint into a sandbox: makes its interface inside the
    /// sandbox namespace (`join.ifname`), with address, MAC, MTU and, when
    /// `join.default_route`, the default route via the gateway.
    async fn join(
        &self,
        net: &NetworkSpec,
        ep: &EndpointSpec,
        join: &JoinSpec,
    ) -> DriverResult<JoinInfo>;

    /// Unplugs an endpoint: removes what `join` made.
    async fn leave(
        &self,
        net: &NetworkSpec,
        ep: &EndpointSpec,
        info: &JoinInfo,
    ) -> DriverResult<()>;

    /// Publishes the endpoint's ports on the host (NAT rules, proxies).
    /// Called after `join`, with host ports already allocated by the controller.
    async fn program_external_connectivity(
        &self,
        net: &NetworkSpec,
        ep: &EndpointSpec,
        bindings: &[PortBinding],
    ) -> DriverResult<()>;

    /// Removes what `program_external_connectivity` made.
    async fn revoke_external_connectivity(
        &self,
        net: &NetworkSpec,
        ep: &EndpointSpec,
        bindings: &[PortBinding],
    ) -> DriverResult<()>;

    /// Makes the kernel match a stored network after a daemon restart:
    /// creates what is missing, keeps what is right, corrects what differs.
    async fn restore_network(&self, net: &NetworkSpec) -> DriverResult<()> {
        self.create_network(net).await
    }
}
