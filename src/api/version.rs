//! API versions: what berthd reports and how `/vX.Y/` prefixes are judged.

use std::cmp::Ordering;
use std::fmt;

use hyper::StatusCode;

use super::error::ApiError;

/// The Engine API version berthd implements (Docker Engine 27.x).
pub const API_VERSION: ApiVersion = ApiVersion::new(1, 47);
/// The oldest API version accepted, as dockerd.
pub const MIN_API_VERSION: ApiVersion = ApiVersion::new(1, 24);
/// What `/version` reports as the server version: the Docker Engine release
/// whose API berthd serves, so that tools gating on the engine version act
/// as they would against that dockerd. Berth's own version is reported next
/// to it (Platform.Name and the Engine component's details).
pub const ENGINE_VERSION: &str = "27.5.1";
/// Berth's own release.
pub const BERTH_VERSION: &str = env!("CARGO_PKG_VERSION");
/// The compiler that built berthd (reported where dockerd reports Go's version).
pub const RUSTC_VERSION: &str = env!("BERTH_RUSTC_VERSION");
/// The commit berthd was built from, "unknown" outside a git checkout.
pub const GIT_COMMIT: &str = env!("BERTH_GIT_COMMIT");
/// Seconds since the epoch when the build script last ran.
pub(super) const BUILD_UNIX_TIME: &str = env!("BERTH_BUILD_UNIX_TIME");

/// An API version `MAJOR.MINOR`, ordered numerically (1.9 < 1.24).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ApiVersion {
    pub major: u32,
    pub minor: u32,
}

impl ApiVersion {
    pub const fn new(major: u32, minor: u32) -> ApiVersion {
        ApiVersion { major, minor }
    }

    /// Parses `1.47` or `1`; anything else is not a version.
    pub fn parse(s: &str) -> Option<ApiVersion> {
        let (major, minor) = s.split_once('.').unwrap_or((s, "0"));
        let digits = |p: &str| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit());
        if !digits(major) || !digits(minor) {
            return None;
        }
        Some(ApiVersion::new(major.parse().ok()?, minor.parse().ok()?))
    }

    /// The version a request asked for in its path, if within range; the
    /// errors carry dockerd's messages.
    pub fn negotiate(requested: &str) -> Result<ApiVersion, ApiError> {
        let version = ApiVersion::parse(requested).ok_or_else(ApiError::page_not_found)?;
        if version < MIN_API_VERSION {
            return Err(ApiError::with_status(
                StatusCode::BAD_REQUEST,
                format!(
                    "client version {requested} is too old. Minimum supported API version is {MIN_API_VERSION}, please upgrade your client to a newer version"
                ),
            ));
        }
        if version > API_VERSION {
            return Err(ApiError::with_status(
                StatusCode::BAD_REQUEST,
                format!(
                    "client version {requested} is too new. Maximum supported API version is {API_VERSION}"
                ),
            ));
        }
        Ok(version)
    }
}

impl Ord for ApiVersion {
    fn cmp(&self, other: &Self) -> Ordering {
        (self.major, self.minor).cmp(&(other.major, other.minor))
    }
}

impl PartialOrd for ApiVersion {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl fmt::Display for ApiVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.major, self.minor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_orders_numerically() {
        assert_eq!(ApiVersion::parse("1.47"), Some(ApiVersion::new(1, 47)));
        assert_eq!(ApiVersion::parse("1"), Some(ApiVersion::new(1, 0)));
        assert!(ApiVersion::parse("1.9").unwrap() < ApiVersion::parse("1.24").unwrap());
        for bad in ["", "1.", ".4", "1.2.3", "a.b", "1.-2", "1.4x"] {
            assert_eq!(ApiVersion::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn negotiation_bounds() {
        assert_eq!(ApiVersion::negotiate("1.24").unwrap(), MIN_API_VERSION);
        assert_eq!(ApiVersion::negotiate("1.47").unwrap(), API_VERSION);
        let too_new = ApiVersion::negotiate("1.99").unwrap_err();
        assert_eq!(too_new.status(), StatusCode::BAD_REQUEST);
        assert_eq!(
            too_new.message(),
            "client version 1.99 is too new. Maximum supported API version is 1.47"
        );
        let too_old = ApiVersion::negotiate("1.23").unwrap_err();
        assert_eq!(too_old.status(), StatusCode::BAD_REQUEST);
        assert!(too_old
            .message()
            .starts_with("client version 1.23 is too old."));
        assert_eq!(
            ApiVersion::negotiate("x").unwrap_err().status(),
            StatusCode::NOT_FOUND
        );
    }
}
