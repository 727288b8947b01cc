//! The Docker Engine API server.
//!
//! Adding an endpoint: write `async fn handler(ctx: Ctx) -> ApiResult` in the
//! resource's module and add one line to its `routes` function; a new
//! resource module adds one line to [`router`]. Handlers read the request
//! through [`Ctx`] (path parameters, query, filters, JSON body, state), answer
//! with the [`response`] helpers, and fail with `?` on any error that has a
//! [`netcontroller::error::Kind`]: [`status_for`] maps kinds to statuses.

mod container_io;
mod container_json;
pub mod container_types;
mod containers;
mod error;
mod events;
mod filters;
mod hostinfo;
mod images;
mod listener;
mod network_connect;
pub mod network_types;
pub mod networks;
mod request;
pub mod response;
mod router;
mod server;
mod state;
mod system;
mod time;
mod version;

pub use error::{status_for, ApiError};
pub use filters::{Filters, FiltersError};
pub use listener::{ListenError, Listener};
pub use request::{Ctx, Query, RequestBody, JSON_BODY_LIMIT};
pub use response::{ApiResult, Response};
pub use router::Router;
pub use server::Server;
pub use state::{AppState, ImageUsers};
pub use version::{
    ApiVersion, API_VERSION, BERTH_VERSION, ENGINE_VERSION, GIT_COMMIT, MIN_API_VERSION,
    RUSTC_VERSION,
};

/// Every route berthd serves.
pub fn router() -> Router {
    let router = system::routes(Router::new());
    let router = networks::routes(router);
    let router = images::routes(router);
    let router = network_connect::routes(router);
    let router = containers::routes(router);
    let router = container_io::routes(router);
    events::routes(router)
}
