//! `GET /events`: past events since `since`, then live ones until `until`
//! (or until the client goes away), filtered as dockerd filters them.

use futures::stream::{self, StreamExt};
use tokio_stream::wrappers::BroadcastStream;

use super::error::ApiError;
use super::request::Ctx;
use super::response::{json_lines, ApiResult};
use super::router::Router;
use super::time::parse_time_filter;
use super::Filters;
use crate::events::Event;

pub(super) fn routes(router: Router) -> Router {
    router.get("/events", events)
}

const FILTERS: [&str; 8] = [
    "type",
    "event",
    "network",
    "container",
    "image",
    "label",
    "scope",
    "daemon",
];

async fn events(ctx: Ctx) -> ApiResult {
    let q = ctx.query();
    let nanos = |key: &str| -> Result<Option<i64>, ApiError> {
        q.get(key)
            .filter(|v| !v.is_empty())
            .map(|v| parse_time_filter(v).map_err(ApiError::invalid))
            .transpose()
    };
    let since = nanos("since")?;
    let until = nanos("until")?;
    let filters = q.filters()?;
    filters.validate(&FILTERS)?;
    let state = ctx.state().clone();
    let (past, rx) = state.events.subscribe();
    let now = chrono::Utc::now().timestamp_nanos_opt().unwrap_or_default();

    let keep = {
        let filters = filters.clone();
        move |e: &Event| matches(e, &filters)
    };
    let history: Vec<Event> = match since {
        Some(since) => past
            .into_iter()
            .filter(|e| e.time_nano >= since && until.is_none_or(|u| e.time_nano <= u))
            .filter(&keep)
            .collect(),
        None => Vec::new(),
    };
    let head = stream::iter(history);
    // An `until` already past ends the stream after the history, as dockerd does.
    if until.is_some_and(|u| u <= now) {
        return Ok(json_lines(head));
    }
    let shutdown = {
        let state = state.clone();
        async move { state.shutting_down().await }
    };
    let deadline = async move {
        match until {
            Some(u) => {
                let wait = u.saturating_sub(now).max(0) as u64;
                tokio::time::sleep(std::time::Duration::from_nanos(wait)).await
            }
            None => std::future::pending().await,
        }
    };
    let live = BroadcastStream::new(rx)
        .filter_map(|r| async move { r.ok() })
        .filter(move |e| std::future::ready(keep(e)))
        .take_until(Box::pin(async move {
            tokio::select! {
                _ = shutdown => {},
                _ = deadline => {},
            }
        }));
    Ok(json_lines(head.chain(live)))
}

/// dockerd's event filter: `network=` and `container=` match a prefix of the
/// actor's id or name (its `FuzzyMatch`); berthd also lets `container=` pick
/// the network events that name the container.
fn matches(e: &Event, f: &Filters) -> bool {
    let attr = |k: &str| e.actor.attributes.get(k).map(String::as_str).unwrap_or("");
    let by_id_or_name = |key: &str, kind: &str| {
        let vals = f.values(key);
        vals.is_empty()
            || (e.kind == kind
                && vals
                    .iter()
                    .any(|v| e.actor.id.starts_with(v) || attr("name").starts_with(v)))
            || (kind == "container"
                && e.kind == "network"
                && vals.iter().any(|v| attr("container").starts_with(v)))
    };
    f.exact_match("type", e.kind)
        && f.exact_match("event", &e.action)
        && f.exact_match("scope", e.scope)
        && by_id_or_name("network", "network")
        && by_id_or_name("container", "container")
        && (f.values("image").is_empty() || f.values("image").contains(&attr("image")))
        && f.match_labels("label", &e.actor.attributes)
}
