//! `/containers`: create, start, stop, restart, kill, wait, remove, rename,
//! list, inspect. Logs and attach are in `container_io`.

use bytes::Bytes;
use hyper::StatusCode;
use serde_json::json;

use super::container_json::{inspect as inspect_json, summary};
use super::container_types::CreateBody;
use super::error::ApiError;
use super::request::Ctx;
use super::response::{byte_stream, empty, json, ok, ApiResult, BoxError};
use super::router::Router;
use super::Filters;
use crate::container::record::{ContainerRecord, Status};
use crate::container::Started;

pub(super) fn routes(router: Router) -> Router {
    router
        .post("/containers/create", create)
        .get("/containers/json", list)
        .get("/containers/{id}/json", inspect)
        .post("/containers/{id}/start", start)
        .post("/containers/{id}/stop", stop)
        .post("/containers/{id}/restart", restart)
        .post("/containers/{id}/kill", kill)
        .post("/containers/{id}/wait", wait)
        .post("/containers/{id}/rename", rename)
        .post("/containers/prune", prune)
        .delete("/containers/{id}", remove)
}

async fn create(mut ctx: Ctx) -> ApiResult {
    let state = ctx.state().clone();
    let name = ctx.query().get("name").map(str::to_string);
    let body: CreateBody = ctx.json().await?;
    let id = state.containers()?.create(name.as_deref(), body)?;
    Ok(json(
        StatusCode::CREATED,
        &json!({"Id": id, "Warnings": []}),
    ))
}

async fn start(ctx: Ctx) -> ApiResult {
    let manager = ctx.state().containers()?.clone();
    match manager.start(ctx.param("id")).await? {
        Started::Now => Ok(empty(StatusCode::NO_CONTENT)),
        Started::AlreadyRunning => Ok(empty(StatusCode::NOT_MODIFIED)),
    }
}

/// `t` (seconds, -1 waits forever) and, from API 1.42, `signal`.
fn stop_timeout(ctx: &Ctx) -> Result<Option<i64>, ApiError> {
    ctx.query().parse_value::<i64>("t")
}

async fn stop(ctx: Ctx) -> ApiResult {
    let manager = ctx.state().containers()?.clone();
    let timeout = stop_timeout(&ctx)?;
    let signal = ctx.query().get("signal").filter(|s| !s.is_empty());
    if manager.stop(ctx.param("id"), timeout, signal).await? {
        Ok(empty(StatusCode::NO_CONTENT))
    } else {
        Ok(empty(StatusCode::NOT_MODIFIED))
    }
}

async fn restart(ctx: Ctx) -> ApiResult {
    let manager = ctx.state().containers()?.clone();
    let timeout = stop_timeout(&ctx)?;
    manager.restart(ctx.param("id"), timeout).await?;
    Ok(empty(StatusCode::NO_CONTENT))
}

async fn kill(ctx: Ctx) -> ApiResult {
    let manager = ctx.state().containers()?.clone();
    manager
        .kill(ctx.param("id"), ctx.query().get("signal"))
        .await?;
    Ok(empty(StatusCode::NO_CONTENT))
}

async fn remove(ctx: Ctx) -> ApiResult {
    let manager = ctx.state().containers()?.clone();
    // `v` (anonymous volumes) has nothing to act on: berthd makes no volumes.
    manager
        .remove(ctx.param("id"), ctx.query().bool("force"))
        .await?;
    Ok(empty(StatusCode::NO_CONTENT))
}

async fn rename(ctx: Ctx) -> ApiResult {
    let manager = ctx.state().containers()?.clone();
    let name = ctx.query().get("name").unwrap_or("").to_string();
    if name.is_empty() {
        return Err(ApiError::invalid("new name cannot be blank"));
    }
    manager.rename(ctx.param("id"), &name).await?;
    Ok(empty(StatusCode::NO_CONTENT))
}

async fn inspect(ctx: Ctx) -> ApiResult {
    let entry = ctx.state().containers()?.get(ctx.param("id"))?;
    ok(&inspect_json(
        &entry.record(),
        entry.dir(),
        &entry.log_path(),
    ))
}

/// `POST /containers/{id}/wait?condition=not-running|next-exit|removed`.
/// The status line goes out at once (the CLI starts the container only
/// after it), the body when the condition is met.
async fn wait(ctx: Ctx) -> ApiResult {
    let entry = ctx.state().containers()?.get(ctx.param("id"))?;
    let condition = ctx.query().get("condition").unwrap_or("not-running");
    let mut phase = entry.phase();
    let now = *phase.borrow();
    let record_code = entry.record().state.exit_code;
    let target: Box<dyn Fn(&crate::container::store::Phase) -> bool + Send + Sync> = match condition
    {
        "" | "not-running" => {
            if !entry.record().state.running() {
                Box::new(|_| true)
            } else {
                Box::new(move |p| p.exits > now.exits || p.removed)
            }
        }
        "next-exit" => Box::new(move |p| p.exits > now.exits || p.removed),
        "removed" => Box::new(|p| p.removed),
        other => return Err(ApiError::invalid(format!("invalid condition: \"{other}\""))),
    };
    let state = ctx.state().clone();
    let body = futures::stream::once(async move {
        let code = tokio::select! {
            r = phase.wait_for(|p| target(p)) => match r {
                Ok(p) if p.exits > now.exits => p.exit_code,
                _ => record_code,
            },
            _ = state.shutting_down() => record_code,
        };
        let mut buf =
            serde_json::to_vec(&json!({"Error": null, "StatusCode": code})).unwrap_or_default();
        buf.push(b'\n');
        Ok::<_, BoxError>(Bytes::from(buf))
    });
    Ok(byte_stream("application/json", body))
}

/// `docker container prune`: removes every stopped container that passes
/// the `label`, `label!` and `until` filters.
async fn prune(ctx: Ctx) -> ApiResult {
    let manager = ctx.state().containers()?.clone();
    let filters = ctx.query().filters()?;
    filters.validate(&["label", "label!", "until"])?;
    let until = filters
        .values("until")
        .iter()
        .map(|u| super::time::parse_time_filter(u).map_err(ApiError::invalid))
        .collect::<Result<Vec<i64>, ApiError>>()?;
    let mut deleted = Vec::new();
    for entry in manager.store().list() {
        let r = entry.record();
        let labels = r.config.labels.clone().unwrap_or_default();
        let created = r.created.timestamp_nanos_opt().unwrap_or_default();
        if r.state.running()
            || !filters.match_labels("label", &labels)
            || filters.any_label_matches("label!", &labels)
            || until.iter().any(|u| created >= *u)
        {
            continue;
        }
        // One started meanwhile is skipped, not an error.
        if manager.remove(&r.id, false).await.is_ok() {
            deleted.push(r.id);
        }
    }
    ok(&json!({"ContainersDeleted": deleted, "SpaceReclaimed": 0}))
}

const LIST_FILTERS: &[&str] = &[
    "id", "name", "label", "status", "network", "ancestor", "exited",
];

async fn list(ctx: Ctx) -> ApiResult {
    let manager = ctx.state().containers()?.clone();
    let q = ctx.query();
    let filters = q.filters()?;
    filters.validate(LIST_FILTERS)?;
    for s in filters.values("status") {
        if ![
            "created",
            "restarting",
            "running",
            "removing",
            "paused",
            "exited",
            "dead",
        ]
        .contains(&s)
        {
            return Err(ApiError::invalid(format!("invalid filter 'status={s}'")));
        }
    }
    let all = q.bool("all") || filters.contains("status") || filters.contains("exited");
    let limit = q.parse_value::<i64>("limit")?.filter(|l| *l > 0);
    let controller = manager.controller();
    let mut out = Vec::new();
    for entry in manager.store().list() {
        let r = entry.record();
        if !all && !r.state.running() {
            continue;
        }
        if !matches_filters(&r, &filters, controller, &manager) {
            continue;
        }
        out.push(summary(&r));
        if limit.is_some_and(|l| out.len() as i64 >= l) {
            break;
        }
    }
    ok(&out)
}

fn matches_filters(
    r: &ContainerRecord,
    f: &Filters,
    controller: &netcontroller::controller::Controller,
    manager: &crate::container::ContainerManager,
) -> bool {
    let any = |name: &str, test: &dyn Fn(&str) -> bool| {
        let values = f.values(name);
        values.is_empty() || values.iter().any(|v| test(v))
    };
    let labels = r.config.labels.clone().unwrap_or_default();
    any("id", &|v| r.id.starts_with(v))
        && any("name", &|v| r.name.contains(v.trim_start_matches('/')))
        && f.match_labels("label", &labels)
        && any("status", &|v| {
            v == r.state.status.as_str() || (v == "exited" && r.state.status == Status::Exited)
        })
        && any("exited", &|v| {
            r.state.status == Status::Exited && v.parse::<i64>().ok() == Some(r.state.exit_code)
        })
        && any("network", &|v| {
            let id = controller.network(v).map(|n| n.id).unwrap_or_default();
            r.networks
                .iter()
                .any(|a| a.network_id == id || a.network_name == v)
        })
        && any("ancestor", &|v| {
            r.image == v
                || r.image_id == v
                || r.image_id.trim_start_matches("sha256:").starts_with(v)
                || manager.image_id_of(v).is_some_and(|id| id == r.image_id)
        })
}
