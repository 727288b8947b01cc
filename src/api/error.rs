//! API errors: `{"message": "..."}` with the status dockerd would use.

use std::fmt;

use hyper::StatusCode;
use netcontroller::error::{ErrorKind, Kind};
use serde::Serialize;

use super::response::{json, Response};

/// The one place where an error kind becomes an HTTP status.
///
/// `Unavailable` (no free address or port) answers 500, not 503: dockerd
/// answers 500 for a host port already taken, and a 503 would invite clients
/// to retry what cannot succeed. (An exhausted default pool is `NotFound`,
/// 404, as with dockerd.)
pub fn status_for(kind: ErrorKind) -> StatusCode {
    match kind {
        ErrorKind::NotFound => StatusCode::NOT_FOUND,
        ErrorKind::InvalidArgument => StatusCode::BAD_REQUEST,
        ErrorKind::Conflict => StatusCode::CONFLICT,
        ErrorKind::Forbidden => StatusCode::FORBIDDEN,
        ErrorKind::Unavailable | ErrorKind::System => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

/// An error answer. Handlers return it with `?` from any error that has a
/// [`Kind`], or build one with [`ApiError::new`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    status: StatusCode,
    message: String,
}

#[derive(Serialize)]
struct ErrorBody<'a> {
    message: &'a str,
}

impl ApiError {
    pub fn new(kind: ErrorKind, message: impl fmt::Display) -> ApiError {
        ApiError::with_status(status_for(kind), message)
    }

    pub fn not_found(message: impl fmt::Display) -> ApiError {
        ApiError::new(ErrorKind::NotFound, message)
    }

    pub fn invalid(message: impl fmt::Display) -> ApiError {
        ApiError::new(ErrorKind::InvalidArgument, message)
    }

    pub fn conflict(message: impl fmt::Display) -> ApiError {
        ApiError::new(ErrorKind::Conflict, message)
    }

    pub fn forbidden(message: impl fmt::Display) -> ApiError {
        ApiError::new(ErrorKind::Forbidden, message)
    }

    pub fn system(message: impl fmt::Display) -> ApiError {
        ApiError::new(ErrorKind::System, message)
    }

    /// dockerd's answer for a path it does not serve.
    pub fn page_not_found() -> ApiError {
        ApiError::not_found("page not found")
    }

    /// For protocol-level answers that no error kind describes (405).
    pub(super) fn with_status(status: StatusCode, message: impl fmt::Display) -> ApiError {
        ApiError {
            status,
            message: message.to_string(),
        }
    }

    pub fn status(&self) -> StatusCode {
        self.status
    }

    pub fn message(&self) -> &str {
        &self.message
    }

    pub fn into_response(self) -> Response {
        json(
            self.status,
            &ErrorBody {
                message: &self.message,
            },
        )
    }
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.message, self.status)
    }
}

impl<E: Kind + fmt::Display> From<E> for ApiError {
    fn from(e: E) -> ApiError {
        ApiError::new(e.kind(), e)
    }
}

#[cfg(test)]
mod tests {
    use http_body_util::BodyExt;

    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("network foo not found")]
    struct Missing;

    impl Kind for Missing {
        fn kind(&self) -> ErrorKind {
            ErrorKind::NotFound
        }
    }

    #[test]
    fn every_kind_has_dockerds_status() {
        let cases = [
            (ErrorKind::NotFound, 404),
            (ErrorKind::InvalidArgument, 400),
            (ErrorKind::Conflict, 409),
            (ErrorKind::Forbidden, 403),
            (ErrorKind::Unavailable, 500),
            (ErrorKind::System, 500),
        ];
        for (kind, status) in cases {
            assert_eq!(status_for(kind).as_u16(), status, "{kind:?}");
        }
    }

    #[tokio::test]
    async fn kinded_errors_convert_and_render_as_json() {
        fn lookup() -> Result<(), ApiError> {
            Err(Missing)?;
            Ok(())
        }
        let err = lookup().unwrap_err();
        assert_eq!(err.status(), StatusCode::NOT_FOUND);
        let resp = err.into_response();
        assert_eq!(resp.headers()["content-type"], "application/json");
        let body = resp.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(&body[..], b"{\"message\":\"network foo not found\"}\n");
    }
}
