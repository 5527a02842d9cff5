//! The one error type of the SDK. Each variant is one class of the JS SDK (`core/errors.ts`);
//! [`Error::kind`] names it so a binding can build the matching JS class.
//!
//! The mapping functions mirror the JS SDK's three error paths:
//! [`from_api_response`] (`handleApiError`, control plane), [`from_envd_http`]
//! (`handleEnvdApiError`, envd's `/files` and `/health`) and [`from_rpc`] (`handleRpcError`,
//! envd's Connect services).

use sandbank_protocol::connect::{Code, ConnectError};
use serde::Serialize;

/// What a finished command produced (`CommandResult`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CommandResult {
    pub exit_code: i32,
    /// envd's error text for a non-zero exit or a signal (e.g. `exit status 3`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    pub stdout: String,
    pub stderr: String,
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// `SandboxError`: the generic one (`"<status>: <message>"` for API errors).
    #[error("{0}")]
    Sandbox(String),
    /// `TimeoutError`.
    #[error("{0}")]
    Timeout(String),
    /// `InvalidArgumentError`.
    #[error("{0}")]
    InvalidArgument(String),
    /// `NotEnoughSpaceError`.
    #[error("{0}")]
    NotEnoughSpace(String),
    /// `NotFoundError` (deprecated parent of the two below; envd 404s outside the filesystem).
    #[error("{0}")]
    NotFound(String),
    /// `FileNotFoundError`.
    #[error("{0}")]
    FileNotFound(String),
    /// `SandboxNotFoundError`.
    #[error("{0}")]
    SandboxNotFound(String),
    /// `AuthenticationError` (not a `SandboxError` in the JS hierarchy).
    #[error("{0}")]
    Authentication(String),
    /// `RateLimitError`.
    #[error("{0}")]
    RateLimit(String),
    /// `TemplateError`.
    #[error("{0}")]
    Template(String),
    /// `CommandExitError`: the message is the result's `error`.
    #[error("{}", .0.error.as_deref().unwrap_or(""))]
    CommandExit(CommandResult),
    /// `BuildError` (e2b's; not a `SandboxError`): a template build that failed, with the step
    /// that failed and its log when the server said which.
    #[error("{}", .0.message)]
    Build(BuildFailure),
    /// `FileUploadError` (a `BuildError`): a COPY step's files could not be uploaded.
    #[error("{0}")]
    FileUpload(String),
    /// A plain JS `Error` (e.g. `No more items to fetch`, `Domain cannot be empty`).
    #[error("{0}")]
    Other(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Why a template build failed: the server's reason, the step it names (`base`, `finalize`, or
/// the 1-based number of a step, as E2B counts) and that step's log.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct BuildFailure {
    pub message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub step: Option<String>,
    pub log_entries: Vec<crate::templates::LogEntry>,
}

impl Error {
    /// A `BuildError` that is only a message (an API error, a request that went wrong).
    pub fn build(message: impl Into<String>) -> Error {
        Error::Build(BuildFailure { message: message.into(), ..Default::default() })
    }
}

impl Error {
    /// The JS class name, stable: `SandboxError`, `TimeoutError`, `InvalidArgumentError`,
    /// `NotEnoughSpaceError`, `NotFoundError`, `FileNotFoundError`, `SandboxNotFoundError`,
    /// `AuthenticationError`, `RateLimitError`, `TemplateError`, `CommandExitError`, `BuildError`,
    /// `FileUploadError`, `Error`.
    pub fn kind(&self) -> &'static str {
        match self {
            Error::Sandbox(_) => "SandboxError",
            Error::Timeout(_) => "TimeoutError",
            Error::InvalidArgument(_) => "InvalidArgumentError",
            Error::NotEnoughSpace(_) => "NotEnoughSpaceError",
            Error::NotFound(_) => "NotFoundError",
            Error::FileNotFound(_) => "FileNotFoundError",
            Error::SandboxNotFound(_) => "SandboxNotFoundError",
            Error::Authentication(_) => "AuthenticationError",
            Error::RateLimit(_) => "RateLimitError",
            Error::Template(_) => "TemplateError",
            Error::CommandExit(_) => "CommandExitError",
            Error::Build(_) => "BuildError",
            Error::FileUpload(_) => "FileUploadError",
            Error::Other(_) => "Error",
        }
    }

    /// The message, as the JS error's `message`.
    pub fn message(&self) -> String {
        self.to_string()
    }

    /// The command's result when this is a `CommandExitError`.
    pub fn command_result(&self) -> Option<&CommandResult> {
        match self {
            Error::CommandExit(r) => Some(r),
            _ => None,
        }
    }

    /// `formatSandboxTimeoutError`: envd answered 502 / Connect `unavailable`.
    pub fn sandbox_timeout(message: &str) -> Error {
        Error::Timeout(format!(
            "{message}: This error is likely due to sandbox timeout. You can modify the sandbox timeout by passing 'timeoutMs' when starting the sandbox or calling '.setTimeout' on the sandbox with the desired timeout."
        ))
    }
}

/// The message of a control-plane request that failed before any response (fetch's view).
pub(crate) fn from_transport(e: &reqwest::Error) -> Error {
    if e.is_timeout() {
        // AbortSignal.timeout's DOMException.
        return Error::Timeout("The operation was aborted due to timeout".into());
    }
    Error::Other(format!("fetch failed: {}", error_chain(e)))
}

pub(crate) fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(cause) = src {
        let c = cause.to_string();
        if !s.contains(&c) {
            s.push_str(": ");
            s.push_str(&c);
        }
        src = cause.source();
    }
    s
}

/// A control-plane error body as openapi-fetch hands it over: parsed JSON, or the raw text.
#[derive(Clone, Debug, PartialEq)]
pub enum ApiErrorBody {
    Json(serde_json::Value),
    Text(String),
}

impl ApiErrorBody {
    pub fn parse(body: &[u8]) -> Self {
        let text = String::from_utf8_lossy(body).into_owned();
        match serde_json::from_str::<serde_json::Value>(&text) {
            Ok(v) => ApiErrorBody::Json(v),
            Err(_) => ApiErrorBody::Text(text),
        }
    }

    /// `res.error?.code`: the JSON body's numeric `code` (not the HTTP status).
    pub fn code(&self) -> Option<i64> {
        match self {
            ApiErrorBody::Json(v) => v.get("code").and_then(|c| c.as_i64()),
            ApiErrorBody::Text(_) => None,
        }
    }

    /// `res.error?.message ?? res.error`.
    pub fn message(&self) -> String {
        match self {
            ApiErrorBody::Json(v) => match v.get("message") {
                Some(serde_json::Value::String(s)) => s.clone(),
                Some(serde_json::Value::Null) | None => match v {
                    serde_json::Value::String(s) => s.clone(),
                    other => other.to_string(),
                },
                Some(other) => other.to_string(),
            },
            ApiErrorBody::Text(t) => t.clone(),
        }
    }
}

/// `handleApiError` for a non-success response: 401 → Authentication, 429 → RateLimit,
/// anything else → `SandboxError("<status>: <message>")`.
pub fn from_api_response(status: u16, body: &ApiErrorBody) -> Error {
    let content = body.message();
    match status {
        401 => {
            let m = "Unauthorized, please check your credentials.";
            Error::Authentication(if content.is_empty() { m.into() } else { format!("{m} - {content}") })
        }
        429 => {
            let m = "Rate limit exceeded, please try again later";
            Error::RateLimit(if content.is_empty() { m.into() } else { format!("{m} - {content}") })
        }
        _ => Error::Sandbox(format!("{status}: {content}")),
    }
}

/// `handleEnvdApiError` (envd's plain HTTP endpoints). `files` selects the filesystem map
/// (404 → FileNotFound instead of NotFound). `body` is the raw error body.
pub fn from_envd_http(status: u16, body: &[u8], files: bool) -> Error {
    let text = String::from_utf8_lossy(body).into_owned();
    // `res.error` is the parsed JSON (or the text); `.message || await res.response.text()`.
    let message = match serde_json::from_str::<serde_json::Value>(&text) {
        Ok(serde_json::Value::String(s)) => s,
        Ok(v) => match v.get("message").and_then(|m| m.as_str()) {
            Some(m) if !m.is_empty() => m.to_string(),
            _ => text.clone(),
        },
        Err(_) => text.clone(),
    };
    match status {
        404 if files => Error::FileNotFound(message),
        400 => Error::InvalidArgument(message),
        401 => Error::Authentication(message),
        404 => Error::NotFound(message),
        429 => Error::Sandbox(format!("{message}: The requests are being rate limited.")),
        502 => Error::sandbox_timeout(&message),
        507 => Error::NotEnoughSpace(message),
        _ => Error::Sandbox(format!("{status}: {message}")),
    }
}

/// Connect's numeric code (`Code` enum of connect-es): `SandboxError("<n>: …")` shows it.
pub fn code_number(code: Code) -> u8 {
    match code {
        Code::Canceled => 1,
        Code::Unknown => 2,
        Code::InvalidArgument => 3,
        Code::DeadlineExceeded => 4,
        Code::NotFound => 5,
        Code::AlreadyExists => 6,
        Code::PermissionDenied => 7,
        Code::ResourceExhausted => 8,
        Code::FailedPrecondition => 9,
        Code::Aborted => 10,
        Code::OutOfRange => 11,
        Code::Unimplemented => 12,
        Code::Internal => 13,
        Code::Unavailable => 14,
        Code::DataLoss => 15,
        Code::Unauthenticated => 16,
    }
}

/// connect-es `ConnectError.message`: `[code] message`, or `[code]` when the message is empty.
pub fn connect_message(e: &ConnectError) -> String {
    if e.message.is_empty() {
        format!("[{}]", e.code.as_str())
    } else {
        format!("[{}] {}", e.code.as_str(), e.message)
    }
}

/// `handleRpcError`. `files` selects the filesystem map (not_found → FileNotFound).
pub fn from_rpc(e: &ConnectError, files: bool) -> Error {
    let message = connect_message(e);
    match e.code {
        Code::NotFound if files => Error::FileNotFound(message),
        Code::InvalidArgument => Error::InvalidArgument(message),
        Code::Unauthenticated => Error::Authentication(message),
        Code::NotFound => Error::NotFound(message),
        Code::Unavailable => Error::sandbox_timeout(&message),
        Code::Canceled => Error::Timeout(format!(
            "{message}: This error is likely due to exceeding 'requestTimeoutMs'. You can pass the request timeout value as an option when making the request."
        )),
        Code::DeadlineExceeded => Error::Timeout(format!(
            "{message}: This error is likely due to exceeding 'timeoutMs' \u{2014} the total time a long running request (like command execution or directory watch) can be active. It can be modified by passing 'timeoutMs' when making the request. Use '0' to disable the timeout."
        )),
        other => Error::Sandbox(format!("{}: {message}", code_number(other))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn json(s: &str) -> ApiErrorBody {
        ApiErrorBody::parse(s.as_bytes())
    }

    #[test]
    fn api_errors_map_by_status_with_the_sdk_messages() {
        let e = from_api_response(401, &json(r#"{"code":401,"message":"Invalid API key"}"#));
        assert_eq!(e, Error::Authentication("Unauthorized, please check your credentials. - Invalid API key".into()));
        assert_eq!(e.kind(), "AuthenticationError");
        let e = from_api_response(429, &json(r#"{"code":429,"message":"slow down"}"#));
        assert_eq!(e.to_string(), "Rate limit exceeded, please try again later - slow down");
        assert_eq!(e.kind(), "RateLimitError");
        let e = from_api_response(
            400,
            &json(
                r#"{"code":400,"message":"cannot delete template 'x' because there are running sandboxes using it"}"#,
            ),
        );
        assert_eq!(
            e,
            Error::Sandbox("400: cannot delete template 'x' because there are running sandboxes using it".into())
        );
        // A text body: the text is the message, and there is no `code`.
        let body = json("nope");
        assert_eq!(body.code(), None);
        assert_eq!(from_api_response(404, &body).to_string(), "404: nope");
        assert_eq!(json(r#"{"code":404,"message":"x"}"#).code(), Some(404));
    }

    #[test]
    fn envd_http_errors_map_by_status() {
        let body = br#"{"code":404,"message":"path not found"}"#;
        assert_eq!(from_envd_http(404, body, true), Error::FileNotFound("path not found".into()));
        assert_eq!(from_envd_http(404, body, false), Error::NotFound("path not found".into()));
        assert_eq!(from_envd_http(400, b"bad path", true), Error::InvalidArgument("bad path".into()));
        assert_eq!(from_envd_http(401, b"who", true).kind(), "AuthenticationError");
        assert_eq!(from_envd_http(507, b"full", true), Error::NotEnoughSpace("full".into()));
        assert_eq!(from_envd_http(429, b"x", true), Error::Sandbox("x: The requests are being rate limited.".into()));
        let t = from_envd_http(502, b"gone", false);
        assert_eq!(t.kind(), "TimeoutError");
        assert!(t.to_string().starts_with("gone: This error is likely due to sandbox timeout."), "{t}");
        assert_eq!(from_envd_http(500, br#"{"message":"boom"}"#, true), Error::Sandbox("500: boom".into()));
    }

    #[test]
    fn rpc_errors_map_by_code() {
        let nf = ConnectError::new(Code::NotFound, "no such");
        assert_eq!(from_rpc(&nf, true), Error::FileNotFound("[not_found] no such".into()));
        assert_eq!(from_rpc(&nf, false), Error::NotFound("[not_found] no such".into()));
        assert_eq!(from_rpc(&ConnectError::new(Code::InvalidArgument, "d"), false).kind(), "InvalidArgumentError");
        assert_eq!(from_rpc(&ConnectError::new(Code::Unauthenticated, "u"), false).kind(), "AuthenticationError");
        let c = from_rpc(&ConnectError::new(Code::Canceled, ""), false);
        assert_eq!(c.kind(), "TimeoutError");
        assert!(
            c.to_string().starts_with("[canceled]: This error is likely due to exceeding 'requestTimeoutMs'"),
            "{c}"
        );
        let d = from_rpc(&ConnectError::new(Code::DeadlineExceeded, "late"), false);
        assert!(
            d.to_string().starts_with("[deadline_exceeded] late: This error is likely due to exceeding 'timeoutMs'"),
            "{d}"
        );
        assert_eq!(from_rpc(&ConnectError::new(Code::Unavailable, "x"), false).kind(), "TimeoutError");
        assert_eq!(
            from_rpc(&ConnectError::new(Code::Internal, "boom"), false),
            Error::Sandbox("13: [internal] boom".into())
        );
        assert_eq!(
            from_rpc(&ConnectError::new(Code::AlreadyExists, "e"), true),
            Error::Sandbox("6: [already_exists] e".into())
        );
    }

    #[test]
    fn command_exit_carries_the_result() {
        let r =
            CommandResult { exit_code: 3, error: Some("exit status 3".into()), stdout: "o".into(), stderr: "e".into() };
        let e = Error::CommandExit(r.clone());
        assert_eq!(e.kind(), "CommandExitError");
        assert_eq!(e.to_string(), "exit status 3");
        assert_eq!(e.command_result(), Some(&r));
    }
}
