//! `/networks`: list, inspect, create, delete, prune.
//! Connect and disconnect act on containers and live with them
//! (`containers` module), sharing the body types below.

use hyper::StatusCode;
use serde::Deserialize;
use serde_json::json;

use netcontroller::controller::PREDEFINED;

use super::container_types::EndpointSettingsBody;
use super::error::ApiError;
use super::network_types::{
    check_list_filters, matches_list_filters, network_resource, CreateRequest,
};
use super::request::Ctx;
use super::response::{empty, json, ok, ApiResult};
use super::router::Router;
use super::time::parse_time_filter;

pub(super) fn routes(router: Router) -> Router {
    router
        .get("/networks", list)
        .get("/networks/{id}", inspect)
        .post("/networks/create", create)
        .delete("/networks/{id}", remove)
        .post("/networks/prune", prune)
}

/// `POST /networks/{id}/connect` body.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct ConnectBody {
    pub container: String,
    pub endpoint_config: Option<EndpointSettingsBody>,
}

/// `POST /networks/{id}/disconnect` body.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct DisconnectBody {
    pub container: String,
    pub force: bool,
}

async fn list(ctx: Ctx) -> ApiResult {
    let filters = ctx.query().filters()?;
    check_list_filters(&filters)?;
    let controller = ctx.state().network()?;
    let mut out: Vec<_> = controller
        .networks()
        .into_iter()
        .filter(|n| {
            let in_use = !controller.network_endpoints(&n.id).is_empty();
            matches_list_filters(n, &filters, in_use)
        })
        .map(|n| network_resource(&n, &[]))
        .collect();
    out.sort_by(|a, b| a.name.cmp(&b.name));
    ok(&out)
}

async fn inspect(ctx: Ctx) -> ApiResult {
    let controller = ctx.state().network()?;
    if let Some(scope) = ctx.query().get("scope") {
        if !scope.is_empty() && scope != "local" {
            return Err(ApiError::not_found(format!(
                "network {} not found",
                ctx.param("id")
            )));
        }
    }
    let spec = controller.network(ctx.param("id"))?;
    let attached = controller.network_endpoints(&spec.id);
    ok(&network_resource(&spec, &attached))
}

async fn create(mut ctx: Ctx) -> ApiResult {
    let state = ctx.state().clone();
    let body: CreateRequest = ctx.json().await?;
    let request = body.into_controller().map_err(ApiError::invalid)?;
    let controller = state.network()?.clone();
    if PREDEFINED.contains(&request.name.as_str()) && controller.network(&request.name).is_ok() {
        return Err(ApiError::forbidden(format!(
            "operation is not permitted on predefined {} network ",
            request.name
        )));
    }
    let spec = controller.create_network(request).await?;
    state
        .events
        .network("create", &spec.id, &spec.name, &spec.driver, None);
    Ok(json(
        StatusCode::CREATED,
        &json!({"Id": spec.id, "Warning": ""}),
    ))
}

async fn remove(ctx: Ctx) -> ApiResult {
    let state = ctx.state().clone();
    let spec = state.network()?.delete_network(ctx.param("id")).await?;
    state
        .events
        .network("destroy", &spec.id, &spec.name, &spec.driver, None);
    Ok(empty(StatusCode::NO_CONTENT))
}

/// Removes every custom network with no container attached that passes the
/// `label`, `label!` and `until` filters.
async fn prune(ctx: Ctx) -> ApiResult {
    let filters = ctx.query().filters()?;
    filters.validate(&["label", "label!", "until"])?;
    let until = match filters.values("until").as_slice() {
        [] => None,
        [one] => Some(parse_time_filter(one).map_err(ApiError::invalid)?),
        _ => return Err(ApiError::invalid("more than one until filter specified")),
    };
    let state = ctx.state().clone();
    let controller = state.network()?;
    let mut deleted = Vec::new();
    for spec in controller.networks() {
        if PREDEFINED.contains(&spec.name.as_str())
            || !controller.network_endpoints(&spec.id).is_empty()
            || !filters.match_labels("label", &spec.labels)
            || filters.any_label_matches("label!", &spec.labels)
        {
            continue;
        }
        if let Some(until) = until {
            let created = chrono::DateTime::parse_from_rfc3339(&spec.created)
                .map(|t| t.timestamp_nanos_opt().unwrap_or_default())
                .unwrap_or_default();
            if created >= until {
                continue;
            }
        }
        // A network that gained an endpoint meanwhile is skipped, not an error.
        if controller.delete_network(&spec.id).await.is_ok() {
            state
                .events
                .network("destroy", &spec.id, &spec.name, &spec.driver, None);
            deleted.push(spec.name);
        }
    }
    ok(&json!({ "NetworksDeleted": deleted }))
}
