//! The `null` driver: endpoints without any interface; the sandbox keeps only
//! its loopback (dockerd's `--network none`).

use async_trait::async_trait;
use netcontroller::driver::{Driver, DriverResult};
use netcontroller::model::{EndpointSpec, JoinInfo, JoinSpec, NetworkSpec, PortBinding};

#[derive(Debug, Default, Clone, Copy)]
pub struct NullDriver;

#[async_trait]
impl Driver for NullDriver {
    fn name(&self) -> &'static str {
        "null"
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

    // Nothing can reach a sandbox without interfaces, so there is nothing to publish.
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
    fn null_sandboxes_get_their_own_namespace() {
        assert_eq!(NullDriver.name(), "null");
        assert!(!NullDriver.uses_host_namespace());
    }
}
