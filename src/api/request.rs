//! What a handler receives: the request, its path parameters, query string,
//! API version and the daemon's state, with helpers to read them safely.

use std::str::FromStr;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Empty};
use hyper::header::CONTENT_TYPE;
use hyper::{HeaderMap, Method, Request};
use percent_encoding::percent_decode_str;
use serde::de::DeserializeOwned;

use super::error::ApiError;
use super::filters::Filters;
use super::response::BoxError;
use super::state::AppState;
use super::version::ApiVersion;

/// Request bodies as handlers see them.
pub type RequestBody = BoxBody<Bytes, BoxError>;

/// The largest JSON request body accepted. Engine API bodies are small
/// (container create is the largest); uploads (`docker load`) are streamed
/// with [`Ctx::take_body`] instead.
pub const JSON_BODY_LIMIT: usize = 1 << 20;

/// One request being handled.
pub struct Ctx {
    state: Arc<AppState>,
    request: Request<RequestBody>,
    params: Vec<(&'static str, String)>,
    query: Query,
    version: ApiVersion,
}

impl Ctx {
    pub(super) fn new(
        state: Arc<AppState>,
        request: Request<RequestBody>,
        params: Vec<(&'static str, String)>,
        version: ApiVersion,
    ) -> Ctx {
        let query = Query::parse(request.uri().query().unwrap_or(""));
        Ctx {
            state,
            request,
            params,
            query,
            version,
        }
    }

    pub fn state(&self) -> &Arc<AppState> {
        &self.state
    }

    /// The API version the client asked for (`/v1.41/...`), or the newest
    /// one for an unversioned path.
    pub fn version(&self) -> ApiVersion {
        self.version
    }

    pub fn method(&self) -> &Method {
        self.request.method()
    }

    pub fn headers(&self) -> &HeaderMap {
        self.request.headers()
    }

    /// A path parameter named in the route's pattern (`{id}`), percent-decoded.
    ///
    /// # Panics
    /// When the route has no such parameter: a bug in the route table.
    pub fn param(&self, name: &str) -> &str {
        self.params
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.as_str())
            .unwrap_or_else(|| panic!("route has no parameter {{{name}}}"))
    }

    pub fn query(&self) -> &Query {
        &self.query
    }

    /// Reads a JSON body; an empty one is refused.
    pub async fn json<T: DeserializeOwned>(&mut self) -> Result<T, ApiError> {
        self.json_opt()
            .await?
            .ok_or_else(|| ApiError::invalid("got EOF while reading request body"))
    }

    /// Reads a JSON body, `None` when there is none (endpoints whose body is
    /// optional). Checks Content-Type as dockerd does, caps the size at
    /// [`JSON_BODY_LIMIT`] and answers 400 for anything malformed.
    pub async fn json_opt<T: DeserializeOwned>(&mut self) -> Result<Option<T>, ApiError> {
        let content_type = self
            .headers()
            .get(CONTENT_TYPE)
            .map(|v| v.to_str().unwrap_or("?").to_string());
        let bytes = read_capped(self.take_body(), JSON_BODY_LIMIT).await?;
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Ok(None);
        }
        // dockerd's CheckForJSON: a body must be declared as JSON.
        if !content_type.as_deref().is_some_and(is_json) {
            return Err(ApiError::invalid(format!(
                "unsupported Content-Type header ({}): must be 'application/json'",
                content_type.unwrap_or_default()
            )));
        }
        serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| ApiError::invalid(format!("invalid JSON: {e}")))
    }

    /// Takes the raw body for streaming (uploads); later reads see it empty.
    pub fn take_body(&mut self) -> RequestBody {
        std::mem::replace(
            self.request.body_mut(),
            Empty::new().map_err(|never| match never {}).boxed(),
        )
    }

    /// The whole request, for handlers that upgrade the connection
    /// (attach/exec hijacking via `hyper::upgrade::on`).
    pub fn into_request(self) -> Request<RequestBody> {
        self.request
    }
}

fn is_json(content_type: &str) -> bool {
    content_type
        .split(';')
        .next()
        .is_some_and(|m| m.trim().eq_ignore_ascii_case("application/json"))
}

/// Reads a whole body, refusing one larger than `limit`. Frame by frame
/// rather than with `http_body_util::Limited`, whose boxed error conversion
/// keeps handler futures from being provably `Send`.
///
/// A body over the limit is read on and discarded (up to [`DRAIN_LIMIT`])
/// before the 400 goes out: a client still sending would otherwise see the
/// connection closed under it (EPIPE) instead of the answer.
async fn read_capped(mut body: RequestBody, limit: usize) -> Result<Vec<u8>, ApiError> {
    let mut out = Vec::new();
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| ApiError::invalid(format!("reading request body: {e}")))?;
        if let Ok(data) = frame.into_data() {
            if out.len() + data.len() > limit {
                drain(body).await;
                return Err(ApiError::invalid(format!(
                    "request body is larger than {limit} bytes"
                )));
            }
            out.extend_from_slice(&data);
        }
    }
    Ok(out)
}

/// How much of an oversized body is read and thrown away before answering;
/// past it the connection is closed on the client.
pub(super) const DRAIN_LIMIT: usize = 64 << 20;

async fn drain(mut body: RequestBody) {
    let mut drained = 0;
    while drained < DRAIN_LIMIT {
        match body.frame().await {
            Some(Ok(frame)) => drained += frame.data_ref().map_or(0, |d| d.len()),
            _ => return,
        }
    }
}

/// A parsed query string; repeated keys keep every value in order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Query(Vec<(String, String)>);

impl Query {
    pub fn parse(raw: &str) -> Query {
        let decode = |s: &str| {
            percent_decode_str(&s.replace('+', " "))
                .decode_utf8_lossy()
                .into_owned()
        };
        Query(
            raw.split('&')
                .filter(|pair| !pair.is_empty())
                .map(|pair| {
                    let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
                    (decode(k), decode(v))
                })
                .collect(),
        )
    }

    /// The first value of `key`.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    pub fn get_all<'a>(&'a self, key: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.0
            .iter()
            .filter(move |(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// dockerd's `BoolValue`: false when absent, empty, `0`, `no`, `false`
    /// or `none`; true otherwise.
    pub fn bool(&self, key: &str) -> bool {
        self.get(key).is_some_and(|v| {
            !matches!(
                v.trim().to_ascii_lowercase().as_str(),
                "" | "0" | "no" | "false" | "none"
            )
        })
    }

    /// dockerd's `BoolValueOrDefault`: `default` when the key is absent.
    pub fn bool_or(&self, key: &str, default: bool) -> bool {
        match self.get(key) {
            None => default,
            Some(_) => self.bool(key),
        }
    }

    /// A numeric parameter; present but malformed is a 400.
    pub fn parse_value<T: FromStr>(&self, key: &str) -> Result<Option<T>, ApiError> {
        self.get(key)
            .map(|v| {
                v.parse()
                    .map_err(|_| ApiError::invalid(format!("invalid value for {key}: {v:?}")))
            })
            .transpose()
    }

    /// The `filters` parameter.
    pub fn filters(&self) -> Result<Filters, ApiError> {
        Ok(Filters::parse(self.get("filters").unwrap_or(""))?)
    }
}

#[cfg(test)]
mod tests {
    use http_body_util::Full;
    use serde::Deserialize;

    use super::*;
    use crate::api::state::tests::test_state;
    use crate::api::version::API_VERSION;

    fn ctx(content_type: Option<&str>, body: impl Into<Bytes>) -> Ctx {
        let mut builder = Request::builder()
            .method("POST")
            .uri("/networks/create?x=1");
        if let Some(ct) = content_type {
            builder = builder.header(CONTENT_TYPE, ct);
        }
        let body = Full::new(body.into())
            .map_err(|never| match never {})
            .boxed();
        Ctx::new(
            test_state(),
            builder.body(body).unwrap(),
            vec![],
            API_VERSION,
        )
    }

    #[derive(Debug, Deserialize, PartialEq)]
    #[serde(rename_all = "PascalCase")]
    struct Create {
        name: String,
        internal: Option<bool>,
    }

    #[tokio::test]
    async fn reads_json() {
        let mut c = ctx(
            Some("application/json; charset=utf-8"),
            r#"{"Name":"n","Internal":true}"#,
        );
        let create: Create = c.json().await.unwrap();
        assert_eq!(
            create,
            Create {
                name: "n".into(),
                internal: Some(true)
            }
        );
    }

    #[tokio::test]
    async fn malformed_bodies_are_400_with_a_clear_message() {
        let cases = [
            (Some("application/json"), "{\"Name\":", "invalid JSON"),
            (
                Some("application/json"),
                "{\"Name\":5}",
                "invalid JSON: invalid type: integer `5`, expected a string",
            ),
            (
                Some("text/plain"),
                "{\"Name\":\"n\"}",
                "unsupported Content-Type header (text/plain)",
            ),
            (
                None,
                "{\"Name\":\"n\"}",
                "unsupported Content-Type header ()",
            ),
            (
                Some("application/json"),
                "",
                "got EOF while reading request body",
            ),
        ];
        for (ct, body, message) in cases {
            let err = ctx(ct, body).json::<Create>().await.unwrap_err();
            assert_eq!(err.status().as_u16(), 400, "{body}");
            assert!(
                err.message().starts_with(message),
                "{body}: {}",
                err.message()
            );
        }
    }

    #[tokio::test]
    async fn oversized_bodies_are_refused() {
        let big = format!("{{\"Name\":\"{}\"}}", "x".repeat(JSON_BODY_LIMIT));
        let err = ctx(Some("application/json"), big)
            .json::<Create>()
            .await
            .unwrap_err();
        assert_eq!(err.status().as_u16(), 400);
        assert!(err.message().contains("larger than"), "{}", err.message());
    }

    #[tokio::test]
    async fn optional_body_may_be_empty() {
        let none: Option<Create> = ctx(None, "").json_opt().await.unwrap();
        assert_eq!(none, None);
    }

    #[test]
    fn query_values() {
        let q = Query::parse("force=1&v=false&name=a%20b&name=c+d&limit=5&bad=x&flag");
        assert!(q.bool("force"));
        assert!(!q.bool("v"));
        assert!(!q.bool("missing"));
        assert!(!q.bool("flag"));
        assert!(q.bool_or("missing", true));
        assert!(!q.bool_or("v", true));
        assert_eq!(q.get_all("name").collect::<Vec<_>>(), ["a b", "c d"]);
        assert_eq!(q.parse_value::<u32>("limit").unwrap(), Some(5));
        assert_eq!(q.parse_value::<u32>("missing").unwrap(), None);
        assert_eq!(
            q.parse_value::<u32>("bad").unwrap_err().status().as_u16(),
            400
        );
    }

    #[test]
    fn query_filters() {
        let q = Query::parse("filters=%7B%22name%22%3A%7B%22web%22%3Atrue%7D%7D");
        assert_eq!(q.filters().unwrap().values("name"), ["web"]);
        let bad = Query::parse("filters=%7Bnope");
        assert_eq!(bad.filters().unwrap_err().status().as_u16(), 400);
        assert!(Query::parse("").filters().unwrap().is_empty());
    }
}
