//! `POST /networks/{id}/connect` and `/disconnect`: act on the container
//! live when it runs (an interface appears or goes), or on what its next
//! start joins.

use hyper::StatusCode;

use super::error::ApiError;
use super::networks::{ConnectBody, DisconnectBody};
use super::request::Ctx;
use super::response::{empty, ApiResult};
use super::router::Router;

pub(super) fn routes(router: Router) -> Router {
    router
        .post("/networks/{id}/connect", connect)
        .post("/networks/{id}/disconnect", disconnect)
}

async fn connect(mut ctx: Ctx) -> ApiResult {
    let state = ctx.state().clone();
    let network = ctx.param("id").to_string();
    let body: ConnectBody = ctx.json().await?;
    if body.container.is_empty() {
        return Err(ApiError::invalid("container is required"));
    }
    let request = body
        .endpoint_config
        .unwrap_or_default()
        .parse()
        .map_err(ApiError::invalid)?;
    state
        .containers()?
        .connect(&body.container, &network, request)
        .await?;
    Ok(empty(StatusCode::OK))
}

async fn disconnect(mut ctx: Ctx) -> ApiResult {
    let state = ctx.state().clone();
    let network = ctx.param("id").to_string();
    let body: DisconnectBody = ctx.json().await?;
    if body.container.is_empty() {
        return Err(ApiError::invalid("container is required"));
    }
    state
        .containers()?
        .disconnect(&body.container, &network, body.force)
        .await?;
    Ok(empty(StatusCode::OK))
}
