//! `/images`: import (`POST /images/create?fromSrc=-`), load, list, inspect,
//! tag, remove and prune, over the image store.
//!
//! Pulling (`fromImage`) is not supported: berthd talks to no registry, so
//! it answers 501 with a message naming `docker import` and `docker load`
//! instead of a registry error that would send users looking for a network
//! problem.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use futures::{Stream, StreamExt};
use http_body_util::BodyStream;
use hyper::StatusCode;
use serde_json::json;
use tokio::io::{AsyncRead, ReadBuf};
use tokio::runtime::Handle;
use tokio_util::io::StreamReader;

use super::error::ApiError;
use super::request::{Ctx, RequestBody, DRAIN_LIMIT};
use super::response::{empty, json, json_lines, ok, ApiResult};
use super::router::Router;
use super::state::AppState;
use super::time::parse_time_filter;
use super::version::ApiVersion;
use crate::image::{
    run_config_from_changes, DeleteItem, Image, ImageStore, ImportOptions, Reference,
};

pub(super) fn routes(router: Router) -> Router {
    router
        .post("/images/create", create)
        .post("/images/load", load)
        .get("/images/json", list)
        .get("/images/{name*}/json", inspect)
        .get("/images/{name*}/history", history)
        .post("/images/{name*}/tag", tag)
        .delete("/images/{name*}", remove)
        .post("/images/prune", prune)
}

/// The filters `GET /images/json` accepts (dockerd's list).
const LIST_FILTERS: &[&str] = &["before", "dangling", "label", "reference", "since", "until"];

/// From this version on, an untagged image lists empty `RepoTags` and
/// `RepoDigests` instead of `<none>:<none>` and `<none>@<none>`.
const EMPTY_NONE_TAGS: ApiVersion = ApiVersion::new(1, 43);
/// From this version on, dockerd no longer sends the deprecated `VirtualSize`.
const NO_VIRTUAL_SIZE: ApiVersion = ApiVersion::new(1, 44);
/// From this version on, inspect no longer sends `Container` and
/// `ContainerConfig`.
const NO_CONTAINER_CONFIG: ApiVersion = ApiVersion::new(1, 45);

/// Drops the fields dockerd no longer sends at the request's API version.
fn for_version(value: impl serde::Serialize, version: ApiVersion) -> serde_json::Value {
    let mut value = serde_json::to_value(value).unwrap_or_default();
    if let Some(fields) = value.as_object_mut() {
        if version >= NO_VIRTUAL_SIZE {
            fields.remove("VirtualSize");
        }
        if version >= NO_CONTAINER_CONFIG {
            fields.remove("Container");
            fields.remove("ContainerConfig");
        }
    }
    value
}

type Chunks = Pin<Box<dyn Stream<Item = io::Result<Bytes>> + Send>>;

/// An upload (`docker import`, `docker load`) as a byte reader, read as the
/// store consumes it: it is never held in memory whole. Dropped before its
/// end (the request was refused, or the store stopped at a bad entry), it
/// reads and discards the rest in the background, so a client still sending
/// gets the error answer instead of a broken pipe.
struct Upload {
    reader: Option<StreamReader<Chunks, Bytes>>,
    runtime: Handle,
}

impl Upload {
    fn new(body: RequestBody) -> Upload {
        let chunks = BodyStream::new(body).filter_map(|frame| async move {
            match frame {
                Ok(frame) => frame.into_data().ok().map(Ok),
                Err(e) => Some(Err(io::Error::other(e))),
            }
        });
        Upload {
            reader: Some(StreamReader::new(Box::pin(chunks))),
            runtime: Handle::current(),
        }
    }
}

impl AsyncRead for Upload {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.reader.as_mut() {
            Some(reader) => Pin::new(reader).poll_read(cx, buf),
            None => Poll::Ready(Ok(())),
        }
    }
}

impl Drop for Upload {
    fn drop(&mut self) {
        if let Some(reader) = self.reader.take() {
            let mut rest = reader.into_inner();
            // Capped as any refused body is: past it the client sees a close.
            self.runtime.spawn(async move {
                let mut drained = 0;
                while drained < DRAIN_LIMIT {
                    match rest.next().await {
                        Some(Ok(chunk)) => drained += chunk.len(),
                        _ => break,
                    }
                }
            });
        }
    }
}

/// `POST /images/create`: `fromSrc=-` imports the body as a root filesystem
/// (`docker import`); `fromImage` would pull, which berthd does not do.
async fn create(mut ctx: Ctx) -> ApiResult {
    let upload = Upload::new(ctx.take_body());
    let query = ctx.query().clone();
    if let Some(image) = query.get("fromImage").filter(|s| !s.is_empty()) {
        let name = match query.get("tag").filter(|t| !t.is_empty()) {
            Some(tag) => format!("{image}:{tag}"),
            None => image.to_string(),
        };
        return Err(ApiError::with_status(
            StatusCode::NOT_IMPLEMENTED,
            format!(
                "pull is not supported by berthd (no registry access): cannot pull {name}; \
                 bring the image in with docker import or docker load"
            ),
        ));
    }
    match query.get("fromSrc") {
        Some("-") => {}
        Some(src) if !src.is_empty() => {
            return Err(ApiError::with_status(
                StatusCode::NOT_IMPLEMENTED,
                format!(
                    "import from a URL is not supported by berthd: cannot fetch {src}; \
                     download it and use docker import with a file or -"
                ),
            ))
        }
        _ => return Err(ApiError::invalid("fromImage or fromSrc is required")),
    }
    let changes: Vec<&str> = query.get_all("changes").collect();
    let config = run_config_from_changes(&changes)?;
    let opts = ImportOptions {
        repo: query.get("repo").map(str::to_string),
        tag: query.get("tag").map(str::to_string),
        message: query
            .get("message")
            .filter(|m| !m.is_empty())
            .map(str::to_string),
        config,
    };
    let state = ctx.state().clone();
    let image = state.images()?.import_with(upload, opts).await?;
    state.events.image("import", &image.id, &image.id);
    for name in &image.repo_tags {
        state.events.image("tag", &image.id, name);
    }
    ok(&json!({ "status": image.id }))
}

/// `POST /images/load` (`docker load`): a `docker save` archive. Answers
/// dockerd's stream of `{"stream": "Loaded image: …\n"}` lines; berthd sends
/// no per-layer progress, so `quiet` changes nothing.
async fn load(mut ctx: Ctx) -> ApiResult {
    let upload = Upload::new(ctx.take_body());
    let state = ctx.state().clone();
    let loaded = state.images()?.load(upload).await?;
    let mut lines = Vec::new();
    for image in &loaded {
        state.events.image("load", &image.id, &image.id);
        if image.tags.is_empty() {
            lines.push(format!("Loaded image ID: {}\n", image.id));
        }
        lines.extend(image.tags.iter().map(|t| format!("Loaded image: {t}\n")));
    }
    let stream = futures::stream::iter(lines.into_iter().map(|line| json!({ "stream": line })));
    Ok(json_lines(stream))
}

/// The creation time (nanoseconds) of the image a `before`/`since` filter
/// names.
fn created_nanos(store: &ImageStore, name: &str) -> Result<i64, ApiError> {
    Ok(nanos(&store.get(name)?))
}

fn nanos(image: &Image) -> i64 {
    image
        .created()
        .and_then(|t| t.timestamp_nanos_opt())
        .unwrap_or_default()
}

/// `GET /images/json` (`docker images`). `all` changes nothing (berthd has
/// no intermediate images) and `digests` is ignored (no registry digests).
async fn list(ctx: Ctx) -> ApiResult {
    let filters = ctx.query().filters()?;
    filters.validate(LIST_FILTERS)?;
    let dangling = filters.bool_value("dangling")?;
    let store = ctx.state().images()?;
    let before = filters
        .values("before")
        .into_iter()
        .map(|name| created_nanos(store, name))
        .collect::<Result<Vec<_>, _>>()?;
    let since = filters
        .values("since")
        .into_iter()
        .map(|name| created_nanos(store, name))
        .collect::<Result<Vec<_>, _>>()?;
    let until = filters
        .values("until")
        .into_iter()
        .map(|v| parse_time_filter(v).map_err(ApiError::invalid))
        .collect::<Result<Vec<_>, _>>()?;
    let patterns = filters.values("reference");
    let old_none_tags = ctx.version() < EMPTY_NONE_TAGS;

    let mut out = Vec::new();
    for image in store.list() {
        let created = nanos(&image);
        if before.iter().any(|b| created >= *b)
            || since.iter().any(|s| created <= *s)
            || until.iter().any(|u| created >= *u)
            || dangling.is_some_and(|d| d != image.repo_tags.is_empty())
        {
            continue;
        }
        let mut summary = image.summary();
        if !filters.match_labels("label", &summary.labels) {
            continue;
        }
        if !patterns.is_empty() {
            // Only the names that match are listed; an image with none is not.
            summary.repo_tags.retain(|name| {
                Reference::parse(name).is_ok_and(|r| patterns.iter().any(|p| r.matches(p)))
            });
            if summary.repo_tags.is_empty() {
                continue;
            }
        }
        if old_none_tags && summary.repo_tags.is_empty() {
            summary.repo_tags = vec!["<none>:<none>".to_string()];
            summary.repo_digests = vec!["<none>@<none>".to_string()];
        }
        out.push(for_version(summary, ctx.version()));
    }
    ok(&out)
}

/// `GET /images/{name}/json` (`docker image inspect`).
async fn inspect(ctx: Ctx) -> ApiResult {
    let image = ctx.state().images()?.get(ctx.param("name"))?;
    ok(&for_version(image.inspect(), ctx.version()))
}

/// `GET /images/{name}/history` (`docker history`).
async fn history(ctx: Ctx) -> ApiResult {
    let image = ctx.state().images()?.get(ctx.param("name"))?;
    ok(&image.history())
}

/// `POST /images/{name}/tag?repo=&tag=` (`docker tag`): 201, no body.
async fn tag(ctx: Ctx) -> ApiResult {
    let state = ctx.state().clone();
    let query = ctx.query();
    let repo = query.get("repo").unwrap_or_default();
    if repo.is_empty() {
        return Err(ApiError::invalid(
            "repository name must have at least one component",
        ));
    }
    let tag = query.get("tag").filter(|t| !t.is_empty());
    let reference = Reference::from_parts(repo, tag)?;
    let store = state.images()?;
    let id = store.get(ctx.param("name"))?.id;
    store.tag(&id, repo, tag).await?;
    state.events.image("tag", &id, &reference.to_string());
    Ok(empty(StatusCode::CREATED))
}

/// `DELETE /images/{name}?force=&noprune=` (`docker rmi`). `noprune` changes
/// nothing: berthd images have no parent images to prune.
async fn remove(ctx: Ctx) -> ApiResult {
    let state = ctx.state().clone();
    let force = ctx.query().bool("force");
    let store = state.images()?;
    let id = store.get(ctx.param("name"))?.id;
    let items = store
        .remove(ctx.param("name"), force, |id| state.image_in_use(id))
        .await?;
    announce(&state, &id, &items);
    Ok(json(StatusCode::OK, &items))
}

/// Publishes the `untag` and `delete` events of a removal of image `id`.
fn announce(state: &AppState, id: &str, items: &[DeleteItem]) {
    for item in items {
        match item {
            DeleteItem::Untagged(name) => state.events.image("untag", id, name),
            DeleteItem::Deleted(deleted) => state.events.image("delete", deleted, deleted),
        }
    }
}

/// `POST /images/prune` (`docker image prune [-a]`): removes the images no
/// container uses that pass the filters; by default only untagged ones
/// (`dangling=true`), with `dangling=false` every unused one.
async fn prune(ctx: Ctx) -> ApiResult {
    let filters = ctx.query().filters()?;
    filters.validate(&["dangling", "label", "label!", "until"])?;
    let dangling_only = filters.bool_value("dangling")?.unwrap_or(true);
    let until = filters
        .values("until")
        .into_iter()
        .map(|v| parse_time_filter(v).map_err(ApiError::invalid))
        .collect::<Result<Vec<_>, _>>()?;
    let state = ctx.state().clone();
    let store = state.images()?;
    let mut deleted = Vec::new();
    let mut reclaimed = 0u64;
    for image in store.list() {
        let labels = image.summary().labels;
        if (dangling_only && !image.repo_tags.is_empty())
            || state.image_in_use(&image.id)
            || until.iter().any(|u| nanos(&image) >= *u)
            || !filters.match_labels("label", &labels)
            || filters.any_label_matches("label!", &labels)
        {
            continue;
        }
        // Name by name, then the id, without force: an image a container
        // started using meanwhile is refused (409) and skipped.
        let names = if image.repo_tags.is_empty() {
            vec![image.id.clone()]
        } else {
            image.repo_tags.clone()
        };
        for name in names {
            match store
                .remove(&name, false, |id| state.image_in_use(id))
                .await
            {
                Ok(items) => {
                    announce(&state, &image.id, &items);
                    if items.iter().any(|i| matches!(i, DeleteItem::Deleted(_))) {
                        reclaimed += image.size;
                    }
                    deleted.extend(items);
                }
                Err(e) => tracing::debug!(image = %image.id, error = %e, "not pruned"),
            }
        }
    }
    ok(&json!({ "ImagesDeleted": deleted, "SpaceReclaimed": reclaimed }))
}

#[cfg(test)]
mod tests {
    use std::io::Cursor;
    use std::sync::Arc;

    use bytes::Bytes;
    use clap::Parser;
    use http_body_util::{BodyExt, Full};
    use hyper::Request;
    use tokio::sync::watch;

    use super::*;
    use crate::api::state::{AppState, ImageUsers};
    use crate::config::{Config, Flags};

    /// Says every image is in use, as the container store will for images
    /// of existing containers.
    struct EveryImageUsed;

    impl ImageUsers for EveryImageUsed {
        fn uses_image(&self, _image_id: &str) -> bool {
            true
        }
    }

    fn rootfs_tar() -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Regular);
        h.set_mode(0o644);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(0);
        h.set_size(3);
        b.append_data(&mut h, "etc/motd", &b"hi\n"[..]).unwrap();
        b.into_inner().unwrap()
    }

    async fn call(state: &Arc<AppState>, method: &str, uri: &str) -> (u16, serde_json::Value) {
        let req = Request::builder()
            .method(method)
            .uri(uri)
            .body(Full::new(Bytes::new()))
            .unwrap();
        let resp = routes(Router::new()).dispatch(state.clone(), req).await;
        let status = resp.status().as_u16();
        let body = resp.into_body().collect().await.unwrap().to_bytes();
        (status, serde_json::from_slice(&body).unwrap_or_default())
    }

    #[tokio::test]
    async fn an_image_in_use_is_kept_unless_forced_and_then_only_untagged() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(ImageStore::open(dir.path().join("image")).await.unwrap());
        let image = store
            .import(Cursor::new(rootfs_tar()), Some("app"), None)
            .await
            .unwrap();
        let config = Config::resolve(&Flags::parse_from(["berthd"]), None).unwrap();
        let (_, rx) = watch::channel(false);
        let state = Arc::new(
            AppState::new(Arc::new(config), "test".into(), rx)
                .with_images(store.clone())
                .with_image_users(Arc::new(EveryImageUsed)),
        );

        let (status, body) = call(&state, "DELETE", "/images/app").await;
        assert_eq!(status, 409, "{body}");
        assert!(
            body["message"]
                .as_str()
                .unwrap()
                .contains("a container is using its referenced image"),
            "{body}"
        );
        assert_eq!(store.get("app").unwrap().id, image.id);

        let (status, body) = call(&state, "DELETE", "/images/app?force=1").await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(body, json!([{"Untagged": "app:latest"}]));
        // Untagged but kept: a container's overlay still has it as lower dir.
        assert!(store
            .get(&image.id)
            .unwrap()
            .rootfs
            .join("etc/motd")
            .exists());
    }
}
