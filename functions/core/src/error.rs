//! The one error type of the library. `api::error_response` maps it to HTTP.

/// Result with the library's error.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Every failure the core can report. Client-facing variants carry a message that is safe
/// to show; `Unavailable` and `Internal` carry detail that only goes to the log.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum Error {
    /// 400: the request is malformed; the message names the field.
    #[error("invalid request: {0}")]
    InvalidRequest(String),
    /// 401: missing, malformed, expired or badly signed token.
    #[error("unauthorized: {0}")]
    Unauthorized(String),
    /// 403: missing scope or tenant outside the token's tenants.
    #[error("forbidden")]
    Forbidden,
    /// 404: no such route (or no path).
    #[error("not found")]
    NotFound,
    /// 405: the path exists, the method does not.
    #[error("method not allowed")]
    MethodNotAllowed,
    /// 412: an `If-Match` / `If-None-Match` precondition failed.
    #[error("precondition failed: {0}")]
    PreconditionFailed(String),
    /// 413: body over 64 KiB.
    #[error("payload too large")]
    PayloadTooLarge,
    /// 415: a body that is not `application/json`.
    #[error("unsupported media type")]
    UnsupportedMediaType,
    /// 429: rate limited.
    #[error("throttled")]
    Throttled {
        /// Seconds until a retry may succeed.
        retry_after_secs: u64,
    },
    /// 503 `no_available_endpoint`: the route exists but has no candidate.
    #[error("no available endpoint")]
    NoAvailableEndpoint,
    /// 503 `unavailable`: a backend is down (detail is for the log only).
    #[error("backend unavailable: {0}")]
    Unavailable(String),
    /// A conditional write lost a race with another writer (internal; retried).
    #[error("revision conflict")]
    Conflict,
    /// 500: a bug or an unexpected fault (detail is for the log only).
    #[error("internal error: {0}")]
    Internal(String),
}

impl Error {
    /// Shorthand for a 400 naming a field.
    pub fn invalid(field: &str, why: impl std::fmt::Display) -> Self {
        Error::InvalidRequest(format!("{field}: {why}"))
    }
}
