//! Building responses: JSON documents, plain text, empty answers and streams.

use bytes::Bytes;
use futures::{Stream, StreamExt};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Empty, Full, StreamBody};
use hyper::body::Frame;
use hyper::header::{HeaderValue, CONTENT_TYPE};
use hyper::StatusCode;
use serde::Serialize;

use super::error::ApiError;

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;
/// Every response body: whole or streamed.
pub type Body = UnsyncBoxBody<Bytes, BoxError>;
pub type Response = hyper::Response<Body>;
/// What handlers return.
pub type ApiResult = Result<Response, ApiError>;

const JSON: &str = "application/json";

fn with_body(status: StatusCode, content_type: Option<&'static str>, body: Body) -> Response {
    let mut resp = hyper::Response::new(body);
    *resp.status_mut() = status;
    if let Some(ct) = content_type {
        resp.headers_mut()
            .insert(CONTENT_TYPE, HeaderValue::from_static(ct));
    }
    resp
}

fn full(bytes: impl Into<Bytes>) -> Body {
    Full::new(bytes.into())
        .map_err(|never| match never {})
        .boxed_unsync()
}

/// Serialises one JSON value the way dockerd does (with a final newline).
fn encode<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>, serde_json::Error> {
    let mut buf = serde_json::to_vec(value)?;
    buf.push(b'\n');
    Ok(buf)
}

/// A JSON document with the given status.
pub fn json<T: Serialize + ?Sized>(status: StatusCode, value: &T) -> Response {
    match encode(value) {
        Ok(buf) => with_body(status, Some(JSON), full(buf)),
        // Only a non-string map key or a failing Serialize impl gets here: a bug.
        Err(e) => {
            tracing::error!(error = %e, "response does not serialise");
            with_body(
                StatusCode::INTERNAL_SERVER_ERROR,
                Some(JSON),
                full(&b"{\"message\":\"internal error: response does not serialise\"}\n"[..]),
            )
        }
    }
}

/// `200 OK` with a JSON document: the common answer.
pub fn ok<T: Serialize + ?Sized>(value: &T) -> ApiResult {
    Ok(json(StatusCode::OK, value))
}

/// A plain-text answer (`/_ping`'s "OK").
pub fn text(status: StatusCode, body: &'static str) -> Response {
    with_body(status, Some("text/plain; charset=utf-8"), full(body))
}

/// An answer without a body (204 No Content, 304, ...).
pub fn empty(status: StatusCode) -> Response {
    with_body(
        status,
        None,
        Empty::new().map_err(|never| match never {}).boxed_unsync(),
    )
}

/// A stream of JSON documents, one per line, sent as each arrives
/// (`/events`, pull/load progress). The response ends when the stream does.
pub fn json_lines<S, T>(stream: S) -> Response
where
    S: Stream<Item = T> + Send + 'static,
    T: Serialize,
{
    let frames = stream.map(|item| {
        encode(&item)
            .map(|buf| Frame::data(Bytes::from(buf)))
            .map_err(BoxError::from)
    });
    with_body(
        StatusCode::OK,
        Some(JSON),
        StreamBody::new(frames).boxed_unsync(),
    )
}

/// A stream of raw bytes (container logs, exported tarballs).
pub fn byte_stream<S>(content_type: &'static str, stream: S) -> Response
where
    S: Stream<Item = Result<Bytes, BoxError>> + Send + 'static,
{
    let frames = stream.map(|chunk| chunk.map(Frame::data));
    with_body(
        StatusCode::OK,
        Some(content_type),
        StreamBody::new(frames).boxed_unsync(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn body(resp: Response) -> Bytes {
        resp.into_body().collect().await.unwrap().to_bytes()
    }

    #[tokio::test]
    async fn json_ends_with_a_newline() {
        let resp = json(StatusCode::CREATED, &serde_json::json!({"Id": "abc"}));
        assert_eq!(resp.status(), StatusCode::CREATED);
        assert_eq!(resp.headers()[CONTENT_TYPE], JSON);
        assert_eq!(&body(resp).await[..], b"{\"Id\":\"abc\"}\n");
    }

    #[tokio::test]
    async fn json_lines_sends_one_document_per_item() {
        let items = futures::stream::iter(vec![
            serde_json::json!({"a": 1}),
            serde_json::json!({"b": 2}),
        ]);
        let resp = json_lines(items);
        assert_eq!(&body(resp).await[..], b"{\"a\":1}\n{\"b\":2}\n");
    }

    #[tokio::test]
    async fn byte_stream_passes_chunks_through() {
        let chunks = futures::stream::iter(vec![
            Ok(Bytes::from_static(b"he")),
            Ok(Bytes::from_static(b"llo")),
        ]);
        let resp = byte_stream("application/octet-stream", chunks);
        assert_eq!(&body(resp).await[..], b"hello");
    }

    #[tokio::test]
    async fn empty_has_no_body() {
        let resp = empty(StatusCode::NO_CONTENT);
        assert!(resp.headers().get(CONTENT_TYPE).is_none());
        assert!(body(resp).await.is_empty());
    }
}
