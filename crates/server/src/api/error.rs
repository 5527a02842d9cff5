//! The control plane's one error type and its JSON response `{"code": <status>, "message": …}`.
//! The SDKs test the body's `code` (404, 409), so no error response is ever bodyless.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use sandbank_engine::EngineError;
use sandbank_protocol::rest::ErrorBody;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    Unauthorized(String),
    #[error("{0}")]
    BadRequest(String),
    #[error("Sandbox \"{0}\" doesn't exist or you don't have access to it")]
    SandboxNotFound(String),
    #[error("Template \"{0}\" not found")]
    TemplateNotFound(String),
    #[error("Template alias \"{0}\" not found")]
    TemplateAliasNotFound(String),
    /// E2B's wording for `DELETE /templates/{id}`.
    #[error("template '{0}' not found")]
    SnapshotNotFound(String),
    #[error("Route {method} {path} not found")]
    RouteNotFound { method: String, path: String },
    /// A route the SDKs call that this server does not serve (yet): 501, never a 404 that an SDK
    /// would read as "sandbox not found".
    #[error("{method} {route} is not implemented by sandbank serve")]
    NotImplemented { method: String, route: String },
    #[error("Method {method} not allowed on {path}")]
    MethodNotAllowed { method: String, path: String },
    #[error("Request body is larger than the limit of {limit} bytes")]
    PayloadTooLarge { limit: usize },
    /// envd traffic for a sandbox that is gone (or never was), in the words of the cloud's proxy,
    /// which the SDKs read as "not running" ("was not found").
    #[error("The sandbox \"{0}\" was not found")]
    NotRunning(String),
    /// envd traffic for a listed sandbox whose envd did not answer: the proxy's "port is not open".
    #[error("The sandbox \"{0}\" is running but port is not open: its envd did not answer")]
    EnvdUnreachable(String),
    #[error("Sandbox failed to start: {0}")]
    StartFailed(String),
    #[error("{0}")]
    Conflict(String),
    /// envd traffic to a paused sandbox that does not resume by itself.
    /// "was not found", as the cloud's proxy says of a paused sandbox: the SDKs read it as "not
    /// running" (anything else as "state unknown").
    #[error("The sandbox \"{0}\" was not found: it is paused; connect to it (Sandbox.connect) to resume it")]
    Paused(String),
    /// The data directory's filesystem is full.
    #[error("{0}")]
    InsufficientStorage(String),
    /// What this machine cannot do (a snapshot with memory without CRIU): 501 (a 503 would have
    /// the SDKs say "please retry").
    #[error("{0}")]
    Unsupported(String),
    #[error("{0}")]
    Internal(String),
}

impl ApiError {
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::SandboxNotFound(_)
            | ApiError::TemplateNotFound(_)
            | ApiError::TemplateAliasNotFound(_)
            | ApiError::SnapshotNotFound(_)
            | ApiError::RouteNotFound { .. } => StatusCode::NOT_FOUND,
            ApiError::MethodNotAllowed { .. } => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::NotImplemented { .. } => StatusCode::NOT_IMPLEMENTED,
            ApiError::PayloadTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::NotRunning(_) | ApiError::EnvdUnreachable(_) | ApiError::Paused(_) => StatusCode::BAD_GATEWAY,
            ApiError::Conflict(_) => StatusCode::CONFLICT,
            ApiError::InsufficientStorage(_) => StatusCode::INSUFFICIENT_STORAGE,
            ApiError::Unsupported(_) => StatusCode::NOT_IMPLEMENTED,
            ApiError::StartFailed(_) | ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

impl From<EngineError> for ApiError {
    fn from(e: EngineError) -> Self {
        match e {
            EngineError::TemplateNotFound(t) => ApiError::TemplateNotFound(t),
            EngineError::SandboxNotFound(id) => ApiError::SandboxNotFound(id),
            EngineError::StartFailed(m) => ApiError::StartFailed(m),
            EngineError::SnapshotNotFound(id) => ApiError::SnapshotNotFound(id),
            e @ (EngineError::AlreadyPaused(_) | EngineError::NameTaken(_)) => ApiError::Conflict(e.to_string()),
            e @ (EngineError::SnapshotInUse { .. } | EngineError::InvalidName(_)) => {
                ApiError::BadRequest(e.to_string())
            }
            e @ EngineError::NoSpace { .. } => ApiError::InsufficientStorage(e.to_string()),
            // Any other step that ran out of space (a new sandbox's files on a full store).
            EngineError::Sys(e)
                if matches!(e.source.kind(), std::io::ErrorKind::StorageFull | std::io::ErrorKind::QuotaExceeded) =>
            {
                ApiError::InsufficientStorage(format!("not enough space: {e}"))
            }
            e @ EngineError::Egress { .. } => ApiError::Internal(e.to_string()),
            e @ EngineError::NoCriu(_) => ApiError::Unsupported(e.to_string()),
            other => ApiError::Internal(other.to_string()),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        if status == StatusCode::INTERNAL_SERVER_ERROR {
            tracing::error!(status = status.as_u16(), "{self}");
        } else if status.is_server_error() {
            tracing::info!(status = status.as_u16(), "{self}");
        } else {
            tracing::debug!(status = status.as_u16(), "{self}");
        }
        let body = ErrorBody { code: status.as_u16(), message: self.to_string() };
        let bytes = serde_json::to_vec(&body).unwrap_or_else(|_| b"{\"code\":500,\"message\":\"\"}".to_vec());
        let mut res = (status, bytes).into_response();
        res.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
        if status == StatusCode::UNAUTHORIZED {
            res.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        res
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_follow_the_cloud() {
        assert_eq!(
            ApiError::SandboxNotFound("abc".into()).to_string(),
            "Sandbox \"abc\" doesn't exist or you don't have access to it"
        );
        // The SDKs tell "gone" from "unreachable" by these words of the cloud's proxy.
        assert!(ApiError::NotRunning("abc".into()).to_string().contains("was not found"));
        assert!(ApiError::EnvdUnreachable("abc".into()).to_string().contains("port is not open"));
        assert!(ApiError::Paused("abc".into()).to_string().contains("was not found"));
        assert_eq!(ApiError::NotRunning("x".into()).status(), StatusCode::BAD_GATEWAY);
        let e: ApiError = EngineError::TemplateNotFound("nope".into()).into();
        assert_eq!(e.status(), StatusCode::NOT_FOUND);
        assert!(e.to_string().contains("\"nope\""));
        let e: ApiError =
            EngineError::NoSpace { id: "x".into(), reason: "No space left on device (os error 28)".into() }.into();
        assert_eq!(e.status(), StatusCode::INSUFFICIENT_STORAGE);
    }
}
