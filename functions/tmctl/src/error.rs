//! The one error type of tmctl and the exit code each kind maps to (docs/tmctl.md lists
//! them; scripts rely on them, so they never change meaning).

/// Exit codes.
pub mod code {
    /// Done.
    pub const OK: i32 = 0;
    /// Any other failure: transport, server error, unexpected answer.
    pub const ERROR: i32 = 1;
    /// Bad command line, bad routes file, bad config.
    pub const USAGE: i32 = 2;
    /// A precondition failed: the route changed since it was read (412), or an abort
    /// found the route changed by someone else.
    pub const CONFLICT: i32 = 3;
    /// The route (or version) does not exist.
    pub const NOT_FOUND: i32 = 4;
    /// The token is missing, invalid, expired (401) or lacks a scope or tenant (403).
    pub const AUTH: i32 = 5;
    /// A shift step's resolve check failed; the recorded weights were restored.
    pub const CHECK_FAILED: i32 = 6;
    /// `plan --detailed-exitcode`: the plan has changes.
    pub const CHANGES: i32 = 7;
}

/// What went wrong.
#[derive(Debug, thiserror::Error)]
pub enum CtlError {
    /// Bad input from the user (flags, routes file, config file).
    #[error("{0}")]
    Usage(String),
    /// A precondition failed.
    #[error("conflict: {0}")]
    Conflict(String),
    /// Not found.
    #[error("not found: {0}")]
    NotFound(String),
    /// 401 or 403.
    #[error("{0}")]
    Auth(String),
    /// A shift check failed (weights restored).
    #[error("check failed: {0}")]
    CheckFailed(String),
    /// The server answered with an error.
    #[error("server answered {status} {code}: {message}")]
    Server {
        /// HTTP status.
        status: u16,
        /// The contract's error code.
        code: String,
        /// The message.
        message: String,
    },
    /// The request did not get an answer.
    #[error("{0}")]
    Transport(String),
    /// Writing output failed, or a local file could not be read or written.
    #[error("{0}")]
    Io(String),
    /// Some changes of an apply failed for reasons other than a conflict.
    #[error("{0}")]
    Incomplete(String),
}

impl CtlError {
    /// The exit code for this error.
    pub fn exit_code(&self) -> i32 {
        match self {
            CtlError::Usage(_) => code::USAGE,
            CtlError::Conflict(_) => code::CONFLICT,
            CtlError::NotFound(_) => code::NOT_FOUND,
            CtlError::Auth(_) => code::AUTH,
            CtlError::CheckFailed(_) => code::CHECK_FAILED,
            CtlError::Server { .. }
            | CtlError::Transport(_)
            | CtlError::Io(_)
            | CtlError::Incomplete(_) => code::ERROR,
        }
    }

    /// Maps a contract error answer to the error kind.
    pub fn from_answer(status: u16, code: &str, message: &str) -> Self {
        match status {
            401 | 403 => CtlError::Auth(format!("{status} {code}: {message}")),
            404 => CtlError::NotFound(message.to_owned()),
            412 => CtlError::Conflict(message.to_owned()),
            400 | 413 | 415 => {
                CtlError::Usage(format!("the server rejected the request: {message}"))
            }
            _ => CtlError::Server {
                status,
                code: code.to_owned(),
                message: message.to_owned(),
            },
        }
    }
}

impl From<std::io::Error> for CtlError {
    fn from(e: std::io::Error) -> Self {
        CtlError::Io(e.to_string())
    }
}

/// tmctl's result.
pub type Result<T> = std::result::Result<T, CtlError>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_contract_status_maps_to_its_documented_exit_code() {
        assert_eq!(
            CtlError::from_answer(412, "precondition_failed", "x").exit_code(),
            3
        );
        assert_eq!(CtlError::from_answer(404, "not_found", "x").exit_code(), 4);
        assert_eq!(
            CtlError::from_answer(401, "unauthorized", "x").exit_code(),
            5
        );
        assert_eq!(CtlError::from_answer(403, "forbidden", "x").exit_code(), 5);
        assert_eq!(
            CtlError::from_answer(400, "invalid_request", "x").exit_code(),
            2
        );
        assert_eq!(
            CtlError::from_answer(503, "unavailable", "x").exit_code(),
            1
        );
        assert_eq!(CtlError::from_answer(500, "internal", "x").exit_code(), 1);
    }
}
