//! The route table: version prefix, path patterns, method dispatch, common
//! headers, request logging.
//!
//! A route is one line: `router.get("/networks/{id}", networks::inspect)`,
//! where the handler is `async fn(Ctx) -> ApiResult`. Patterns are literal
//! segments, `{name}` (one segment) and `{name*}` (one or more segments, for
//! image references that contain `/`).

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::body::Body as HttpBody;
use hyper::header::{HeaderName, HeaderValue, ALLOW};
use hyper::{Method, Request, StatusCode};
use percent_encoding::percent_decode_str;
use tracing::Instrument;

use super::error::ApiError;
use super::request::Ctx;
use super::response::{ApiResult, BoxError, Response};
use super::state::AppState;
use super::version::{ApiVersion, API_VERSION, ENGINE_VERSION};

type BoxFuture = Pin<Box<dyn Future<Output = ApiResult> + Send>>;
type Handler = Arc<dyn Fn(Ctx) -> BoxFuture + Send + Sync>;

#[derive(Debug, Clone)]
enum Segment {
    Literal(&'static str),
    Param(&'static str),
    Rest(&'static str),
}

struct Route {
    method: Method,
    pattern: Vec<Segment>,
    handler: Handler,
}

/// The Engine API's routes.
#[derive(Default)]
pub struct Router {
    routes: Vec<Route>,
    next_request: AtomicU64,
}

impl Router {
    pub fn new() -> Router {
        Router::default()
    }

    /// Adds a route.
    ///
    /// # Panics
    /// On a malformed pattern or a route registered twice: bugs in the table,
    /// caught by the router's own tests.
    pub fn route<H, F>(mut self, method: Method, path: &'static str, handler: H) -> Router
    where
        H: Fn(Ctx) -> F + Send + Sync + 'static,
        F: Future<Output = ApiResult> + Send + 'static,
    {
        let pattern = parse_pattern(path);
        assert!(
            !self
                .routes
                .iter()
                .any(|r| r.method == method && same_shape(&r.pattern, &pattern)),
            "route {method} {path} registered twice"
        );
        self.routes.push(Route {
            method,
            pattern,
            handler: Arc::new(move |ctx| Box::pin(handler(ctx))),
        });
        self
    }

    pub fn get<H, F>(self, path: &'static str, handler: H) -> Router
    where
        H: Fn(Ctx) -> F + Send + Sync + 'static,
        F: Future<Output = ApiResult> + Send + 'static,
    {
        self.route(Method::GET, path, handler)
    }

    pub fn head<H, F>(self, path: &'static str, handler: H) -> Router
    where
        H: Fn(Ctx) -> F + Send + Sync + 'static,
        F: Future<Output = ApiResult> + Send + 'static,
    {
        self.route(Method::HEAD, path, handler)
    }

    pub fn post<H, F>(self, path: &'static str, handler: H) -> Router
    where
        H: Fn(Ctx) -> F + Send + Sync + 'static,
        F: Future<Output = ApiResult> + Send + 'static,
    {
        self.route(Method::POST, path, handler)
    }

    pub fn put<H, F>(self, path: &'static str, handler: H) -> Router
    where
        H: Fn(Ctx) -> F + Send + Sync + 'static,
        F: Future<Output = ApiResult> + Send + 'static,
    {
        self.route(Method::PUT, path, handler)
    }

    pub fn delete<H, F>(self, path: &'static str, handler: H) -> Router
    where
        H: Fn(Ctx) -> F + Send + Sync + 'static,
        F: Future<Output = ApiResult> + Send + 'static,
    {
        self.route(Method::DELETE, path, handler)
    }

    /// Answers one request: never fails, errors become JSON answers.
    pub async fn dispatch<B>(&self, state: Arc<AppState>, request: Request<B>) -> Response
    where
        B: HttpBody<Data = Bytes> + Send + Sync + 'static,
        B::Error: Into<BoxError>,
    {
        let id = self.next_request.fetch_add(1, Ordering::Relaxed);
        let span = tracing::debug_span!(
            "request",
            id,
            method = %request.method(),
            path = %request.uri().path(),
        );
        async move {
            let started = Instant::now();
            let request = request.map(|b| b.map_err(Into::into).boxed());
            let mut response = match self.handle(state, request).await {
                Ok(r) => r,
                Err(e) => e.into_response(),
            };
            add_common_headers(&mut response);
            tracing::debug!(
                status = response.status().as_u16(),
                elapsed_us = started.elapsed().as_micros() as u64,
                "answered"
            );
            response
        }
        .instrument(span)
        .await
    }

    async fn handle(
        &self,
        state: Arc<AppState>,
        request: Request<super::request::RequestBody>,
    ) -> ApiResult {
        let (version, path) = split_version(request.uri().path())?;
        let segments: Vec<String> = path
            .split('/')
            .skip(1)
            .map(|s| percent_decode_str(s).decode_utf8_lossy().into_owned())
            .collect();

        let mut allowed = Vec::new();
        for route in &self.routes {
            let mut params = Vec::new();
            if !match_segments(&route.pattern, &segments, &mut params) {
                continue;
            }
            if route.method != request.method() {
                allowed.push(route.method.clone());
                continue;
            }
            let ctx = Ctx::new(state, request, params, version);
            return (route.handler)(ctx).await;
        }
        if allowed.is_empty() {
            return Err(ApiError::page_not_found());
        }
        let allow = allowed
            .iter()
            .map(Method::as_str)
            .collect::<Vec<_>>()
            .join(", ");
        let mut response = ApiError::with_status(
            StatusCode::METHOD_NOT_ALLOWED,
            format!("method {} not allowed on {path}", request.method()),
        )
        .into_response();
        if let Ok(value) = HeaderValue::from_str(&allow) {
            response.headers_mut().insert(ALLOW, value);
        }
        Ok(response)
    }
}

/// Splits `/v1.41/rest` into the negotiated version and `/rest`; an
/// unversioned path gets the newest version.
fn split_version(path: &str) -> Result<(ApiVersion, &str), ApiError> {
    let Some(after) = path.strip_prefix("/v") else {
        return Ok((API_VERSION, path));
    };
    let end = after.find('/').unwrap_or(after.len());
    let candidate = &after[..end];
    // dockerd's matcher: /v{version:[0-9.]+}; anything else is a plain path.
    if candidate.is_empty() || !candidate.bytes().all(|b| b.is_ascii_digit() || b == b'.') {
        return Ok((API_VERSION, path));
    }
    let version = ApiVersion::negotiate(candidate)?;
    Ok((version, &after[end..]))
}

fn parse_pattern(path: &'static str) -> Vec<Segment> {
    assert!(path.starts_with('/'), "route {path} must start with '/'");
    path[1..]
        .split('/')
        .map(
            |seg| match seg.strip_prefix('{').and_then(|s| s.strip_suffix('}')) {
                Some(name) => match name.strip_suffix('*') {
                    Some(rest) if !rest.is_empty() => Segment::Rest(rest),
                    _ if !name.is_empty() && !name.contains('*') => Segment::Param(name),
                    _ => panic!("route {path}: bad parameter {seg}"),
                },
                None => {
                    assert!(!seg.contains(['{', '}']), "route {path}: bad segment {seg}");
                    Segment::Literal(seg)
                }
            },
        )
        .collect()
}

/// Whether two patterns match the same paths (parameter names aside).
fn same_shape(a: &[Segment], b: &[Segment]) -> bool {
    a.len() == b.len()
        && a.iter().zip(b).all(|pair| match pair {
            (Segment::Literal(x), Segment::Literal(y)) => x == y,
            (Segment::Param(_), Segment::Param(_)) | (Segment::Rest(_), Segment::Rest(_)) => true,
            _ => false,
        })
}

/// Matches path segments against a pattern, collecting parameters; a
/// `{name*}` segment takes as many segments as lets the rest match.
fn match_segments(
    pattern: &[Segment],
    path: &[String],
    params: &mut Vec<(&'static str, String)>,
) -> bool {
    match pattern.split_first() {
        None => path.is_empty(),
        Some((Segment::Literal(lit), rest)) => {
            path.first().is_some_and(|p| p == lit) && match_segments(rest, &path[1..], params)
        }
        Some((Segment::Param(name), rest)) => match path.first() {
            Some(p) if !p.is_empty() => {
                params.push((name, p.clone()));
                if match_segments(rest, &path[1..], params) {
                    return true;
                }
                params.pop();
                false
            }
            _ => false,
        },
        Some((Segment::Rest(name), rest)) => {
            for take in (1..=path.len()).rev() {
                let joined = path[..take].join("/");
                if joined.is_empty() {
                    continue;
                }
                let mark = params.len();
                params.push((name, joined));
                if match_segments(rest, &path[take..], params) {
                    return true;
                }
                params.truncate(mark);
            }
            false
        }
    }
}

/// Headers dockerd puts on every answer.
fn add_common_headers(response: &mut Response) {
    let headers = response.headers_mut();
    let mut set = |name: &'static str, value: String| {
        if let Ok(v) = HeaderValue::from_str(&value) {
            headers.insert(HeaderName::from_static(name), v);
        }
    };
    set("api-version", API_VERSION.to_string());
    set("docker-experimental", "false".into());
    set("ostype", "linux".into());
    set("server", format!("Docker/{ENGINE_VERSION} (linux)"));
}

#[cfg(test)]
mod tests {
    use http_body_util::{BodyExt, Full};

    use super::*;
    use crate::api::response::ok;
    use crate::api::state::tests::test_state;

    async fn echo(ctx: Ctx) -> ApiResult {
        ok(&serde_json::json!({"version": ctx.version().to_string()}))
    }

    async fn echo_id(ctx: Ctx) -> ApiResult {
        ok(&serde_json::json!({"version": ctx.version().to_string(), "id": ctx.param("id")}))
    }

    async fn echo_name(ctx: Ctx) -> ApiResult {
        ok(&serde_json::json!({"name": ctx.param("name")}))
    }

    fn router() -> Router {
        Router::new()
            .get("/_ping", echo)
            .head("/_ping", echo)
            .get("/networks/{id}", echo_id)
            .delete("/networks/{id}", echo_id)
            .post("/networks/{id}/connect", echo_id)
            .get("/images/{name*}/json", echo_name)
    }

    async fn call(method: &str, uri: &str) -> (u16, serde_json::Value, Response) {
        let req = Request::builder()
            .method(method)
            .uri(uri)
            .body(Full::new(Bytes::new()))
            .unwrap();
        let resp = router().dispatch(test_state(), req).await;
        let status = resp.status().as_u16();
        let (parts, body) = resp.into_parts();
        let bytes = body.collect().await.unwrap().to_bytes();
        let json = serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null);
        (
            status,
            json,
            Response::from_parts(parts, Default::default()),
        )
    }

    #[tokio::test]
    async fn params_and_versions() {
        let (status, body, resp) = call("GET", "/v1.41/networks/abc").await;
        assert_eq!(status, 200);
        assert_eq!(body["version"], "1.41");
        assert_eq!(body["id"], "abc");
        assert_eq!(resp.headers()["api-version"], "1.47");
        assert_eq!(resp.headers()["ostype"], "linux");

        let (_, body, _) = call("GET", "/networks/my%20net").await;
        assert_eq!(body["version"], "1.47");
        assert_eq!(body["id"], "my net");
    }

    #[tokio::test]
    async fn rest_params_span_segments() {
        let (status, body, _) = call("GET", "/v1.47/images/registry:5000/team/app:1.0/json").await;
        assert_eq!(status, 200);
        assert_eq!(body["name"], "registry:5000/team/app:1.0");
        assert_eq!(call("GET", "/images/json").await.0, 404);
    }

    #[tokio::test]
    async fn unknown_paths_are_404_json() {
        for uri in [
            "/nope",
            "/networks",
            "/networks/a/b",
            "/vx/_ping",
            "/_ping/",
            "/",
        ] {
            let (status, body, resp) = call("GET", uri).await;
            assert_eq!(status, 404, "{uri}");
            assert_eq!(
                body,
                serde_json::json!({"message": "page not found"}),
                "{uri}"
            );
            assert_eq!(resp.headers()["content-type"], "application/json");
        }
    }

    #[tokio::test]
    async fn wrong_method_is_405_with_allow() {
        let (status, body, resp) = call("PUT", "/networks/abc").await;
        assert_eq!(status, 405);
        assert!(body["message"].as_str().unwrap().contains("not allowed"));
        assert_eq!(resp.headers()[ALLOW], "GET, DELETE");
    }

    #[tokio::test]
    async fn versions_out_of_range_are_400() {
        let (status, body, _) = call("GET", "/v1.99/_ping").await;
        assert_eq!(status, 400);
        assert_eq!(
            body["message"],
            "client version 1.99 is too new. Maximum supported API version is 1.47"
        );
        let (status, body, _) = call("GET", "/v1.12/nope").await;
        assert_eq!(status, 400);
        assert!(body["message"].as_str().unwrap().contains("too old"));
        assert_eq!(call("GET", "/v1.24/_ping").await.0, 200);
    }

    #[test]
    #[should_panic(expected = "registered twice")]
    fn duplicate_routes_are_refused() {
        let _ = Router::new().get("/a/{x}", echo).get("/a/{y}", echo);
    }

    #[test]
    #[should_panic(expected = "bad parameter")]
    fn malformed_patterns_are_refused() {
        let _ = Router::new().get("/a/{}", echo);
    }
}
