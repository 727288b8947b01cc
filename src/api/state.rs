//! The daemon state every handler shares.

use std::sync::Arc;

use netcontroller::controller::Controller;

use crate::container::ContainerManager;
use tokio::sync::watch;

use super::error::ApiError;
use crate::config::Config;
use crate::events::EventBus;
use crate::image::ImageStore;

/// Answers whether a container uses an image, which then cannot be removed
/// without force (`DELETE /images/{name}`). The container store implements
/// it; until one is plugged in, no image is in use.
pub trait ImageUsers: Send + Sync {
    /// `image_id` is `sha256:<hex>`.
    fn uses_image(&self, image_id: &str) -> bool;
}

/// Shared by all handlers through [`super::Ctx::state`]. Later subsystems
/// (network controller, containerd client, container and image stores,
/// event bus) are added here as fields by the daemon at start-up.
pub struct AppState {
    pub config: Arc<Config>,
    /// The engine's stable identity (`/info` ID), kept in `<data-root>/engine-id`.
    pub engine_id: String,
    pub events: Arc<EventBus>,
    /// Absent only in handler unit tests that need no network.
    network: Option<Arc<Controller>>,
    /// Absent only in handler unit tests that need no containers.
    containers: Option<Arc<ContainerManager>>,
    /// Absent only in handler unit tests that need no images.
    images: Option<Arc<ImageStore>>,
    image_users: Option<Arc<dyn ImageUsers>>,
    shutdown: watch::Receiver<bool>,
}

impl AppState {
    pub fn new(
        config: Arc<Config>,
        engine_id: String,
        shutdown: watch::Receiver<bool>,
    ) -> AppState {
        AppState {
            config,
            engine_id,
            events: Arc::new(EventBus::default()),
            network: None,
            containers: None,
            images: None,
            image_users: None,
            shutdown,
        }
    }

    /// Plugs in the network controller (done once at start-up).
    pub fn with_network(mut self, controller: Arc<Controller>) -> AppState {
        self.network = Some(controller);
        self
    }

    /// Plugs in the container manager (done once at start-up).
    pub fn with_containers(mut self, manager: Arc<ContainerManager>) -> AppState {
        self.containers = Some(manager);
        self
    }

    /// The container manager.
    pub fn containers(&self) -> Result<&Arc<ContainerManager>, ApiError> {
        self.containers
            .as_ref()
            .ok_or_else(|| ApiError::system("containers are not available"))
    }

    /// The network controller.
    pub fn network(&self) -> Result<&Arc<Controller>, ApiError> {
        self.network
            .as_ref()
            .ok_or_else(|| ApiError::system("the network controller is not running"))
    }

    /// Plugs in the image store (done once at start-up).
    pub fn with_images(mut self, images: Arc<ImageStore>) -> AppState {
        self.images = Some(images);
        self
    }

    /// The image store.
    pub fn images(&self) -> Result<&Arc<ImageStore>, ApiError> {
        self.images
            .as_ref()
            .ok_or_else(|| ApiError::system("the image store is not open"))
    }

    /// Plugs in what knows which images containers use.
    pub fn with_image_users(mut self, users: Arc<dyn ImageUsers>) -> AppState {
        self.image_users = Some(users);
        self
    }

    /// Whether a container uses the image `image_id` (`sha256:<hex>`).
    pub fn image_in_use(&self, image_id: &str) -> bool {
        self.image_users
            .as_ref()
            .is_some_and(|users| users.uses_image(image_id))
    }

    /// Resolves once the daemon starts shutting down. Long-lived responses
    /// (`/events`, `logs --follow`) end their stream on it, so shutdown is
    /// not held up by them.
    pub async fn shutting_down(&self) {
        let mut rx = self.shutdown.clone();
        // An error means the sender is gone: the daemon is ending anyway.
        let _ = rx.wait_for(|&stopping| stopping).await;
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use clap::Parser;

    use super::*;
    use crate::config::Flags;

    /// A state over the default configuration, for handler tests.
    pub(crate) fn test_state() -> Arc<AppState> {
        let config = Config::resolve(&Flags::parse_from(["berthd"]), None).unwrap();
        let (_, rx) = watch::channel(false);
        Arc::new(AppState::new(Arc::new(config), "test-engine".into(), rx))
    }

    /// [`test_state`] with an empty image store under `dir`.
    pub(crate) async fn test_state_with_images(dir: &std::path::Path) -> Arc<AppState> {
        let config = Config::resolve(&Flags::parse_from(["berthd"]), None).unwrap();
        let (_, rx) = watch::channel(false);
        let images = ImageStore::open(dir.join("image")).await.unwrap();
        Arc::new(
            AppState::new(Arc::new(config), "test-engine".into(), rx).with_images(Arc::new(images)),
        )
    }
}
