//! The `host` driver: the sandbox is the daemon's own namespace, so there is
//! no interface to make and no port to publish (a container's listening
//! socket is already on the host, as with dockerd's `--network host`).

use async_trait::async_trait;
use netcontroller::driver::{Driver, DriverResult};
use netcontroller::model::{EndpointSpec, JoinInfo, JoinSpec, NetworkSpec, PortBinding};

#[derive(Debug, Default, Clone, Copy)]
pub struct HostDriver;

#[async_trait]
impl Driver for HostDriver {
    fn name(&self) -> &'static str {
        "host"
    }

    fn uses_host_namespace(&self) -> bool {
        true
    }

    fn validate_network(&self, _net: &NetworkSpec) -> DriverResult<()> {
        Ok(())
    }

    async fn create_network(&self, _net: &NetworkSpec) -> DriverResult<()> {
        Ok(())
    }

    async fn delete_network(&self, _net: &NetworkSpec) -> DriverResult<()> {
        Ok(())
    }

    async fn join(
        &self,
        _net: &NetworkSpec,
        _ep: &EndpointSpec,
        _join: &JoinSpec,
    ) -> DriverResult<JoinInfo> {
        Ok(JoinInfo::default())
    }

    async fn leave(
        &self,
        _net: &NetworkSpec,
        _ep: &EndpointSpec,
        _info: &JoinInfo,
    ) -> DriverResult<()> {
        Ok(())
    }

    async fn program_external_connectivity(
        &self,
        _net: &NetworkSpec,
        _ep: &EndpointSpec,
        _bindings: &[PortBinding],
    ) -> DriverResult<()> {
        Ok(())
    }

    async fn revoke_external_connectivity(
        &self,
        _net: &NetworkSpec,
        _ep: &EndpointSpec,
        _bindings: &[PortBinding],
    ) -> DriverResult<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_sandboxes_are_the_daemon_namespace() {
        assert_eq!(HostDriver.name(), "host");
        assert!(HostDriver.uses_host_namespace());
    }
}
