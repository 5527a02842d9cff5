//! Our own extractors, so that none of axum's plain-text rejections reaches a client.

use super::error::ApiError;
use axum::extract::{FromRequest, FromRequestParts, Path, Request};
use axum::http::{header, request::Parts};
use http_body_util::{BodyExt, LengthLimitError, Limited};
use percent_encoding::percent_decode_str;
use serde::de::DeserializeOwned;

/// Control-plane JSON bodies are small; anything larger is refused without being buffered.
pub const BODY_LIMIT: usize = 1024 * 1024;

/// A JSON body of at most [`BODY_LIMIT`] bytes. The content type is not checked (clients that
/// send none still get their JSON read); malformed JSON and wrong types are 400s naming the value.
#[derive(Debug)]
pub struct JsonBody<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, _state: &S) -> Result<Self, ApiError> {
        parse_json(&read_body(req).await?).map(JsonBody)
    }
}

/// Like [`JsonBody`], but an empty body means `T::default()` (bodyless POSTs).
#[derive(Debug)]
pub struct JsonBodyOrDefault<T>(pub T);

impl<T: DeserializeOwned + Default, S: Send + Sync> FromRequest<S> for JsonBodyOrDefault<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, _state: &S) -> Result<Self, ApiError> {
        let bytes = read_body(req).await?;
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Ok(JsonBodyOrDefault(T::default()));
        }
        parse_json(&bytes).map(JsonBodyOrDefault)
    }
}

/// The body, refused with a 413 as soon as it is known to exceed [`BODY_LIMIT`].
async fn read_body(req: Request) -> Result<bytes::Bytes, ApiError> {
    {
        let too_large = ApiError::PayloadTooLarge { limit: BODY_LIMIT };
        let declared =
            req.headers().get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<u64>().ok());
        if declared.is_some_and(|n| n > BODY_LIMIT as u64) {
            return Err(too_large);
        }
        match Limited::new(req.into_body(), BODY_LIMIT).collect().await {
            Ok(c) => Ok(c.to_bytes()),
            Err(e) if e.downcast_ref::<LengthLimitError>().is_some() => Err(too_large),
            Err(e) => Err(ApiError::BadRequest(format!("Failed to read the request body: {e}"))),
        }
    }
}

/// Malformed JSON and wrong types are 400s naming the field and value (see
/// [`sandbank_protocol::body`], which the fuzz targets exercise).
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    sandbank_protocol::body::parse_object(bytes).map_err(ApiError::BadRequest)
}

/// The `{id}` of a `/sandboxes/{id}…` route, in its short form: the cloud accepts
/// `<sandboxID>-<clientID>` and drops the suffix.
#[derive(Debug)]
pub struct SandboxId(pub String);

impl<S: Send + Sync> FromRequestParts<S> for SandboxId {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let Path(raw) = Path::<String>::from_request_parts(parts, state)
            .await
            .map_err(|e| ApiError::BadRequest(format!("Invalid sandbox ID in the path: {}", e.body_text())))?;
        short_id(&raw).map(SandboxId).ok_or(ApiError::SandboxNotFound(raw))
    }
}

/// `<id>` or `<id>-<clientID>` → `<id>`, if it is an ID this engine could have made.
pub fn short_id(raw: &str) -> Option<String> {
    let id = raw.split_once('-').map_or(raw, |(id, _)| id);
    sandbank_engine::id::is_valid(id).then(|| id.to_string())
}

/// The query string's pairs, decoded once as any HTTP framework does (`+` is a space).
pub fn query_pairs(raw: Option<&str>) -> Result<Vec<(String, String)>, ApiError> {
    let Some(raw) = raw else { return Ok(Vec::new()) };
    let decode = |s: &str| {
        percent_decode_str(&s.replace('+', " "))
            .decode_utf8()
            .map(|c| c.into_owned())
            .map_err(|_| ApiError::BadRequest(format!("Invalid query string {raw:?}: not UTF-8 after decoding")))
    };
    raw.split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            Ok((decode(k)?, decode(v)?))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use sandbank_protocol::rest::NewSandbox;

    #[test]
    fn json_errors_name_field_and_value() {
        let e = parse_json::<NewSandbox>(br#"{"templateID":"base","timeout":"soon"}"#).unwrap_err();
        let m = e.to_string();
        assert!(m.contains("\"timeout\"") && m.contains("soon"), "{m}");
        let m = parse_json::<NewSandbox>(br#"{"timeout":3}"#).unwrap_err().to_string();
        assert!(m.contains("templateID"), "{m}");
        let m = parse_json::<NewSandbox>(br#"{"templateID":"#).unwrap_err().to_string();
        assert!(m.contains("not valid JSON"), "{m}");
        let m = parse_json::<NewSandbox>(b"[1]").unwrap_err().to_string();
        assert!(m.contains("[1]"), "{m}");
        assert!(parse_json::<NewSandbox>(b"").is_err());
        assert_eq!(parse_json::<NewSandbox>(br#"{"templateID":"t","x":1}"#).unwrap().template_id, "t");
    }

    #[test]
    fn ids_and_queries() {
        assert_eq!(short_id("abcdefghij0123456789").as_deref(), Some("abcdefghij0123456789"));
        assert_eq!(short_id("abcdefghij0123456789-sandbank").as_deref(), Some("abcdefghij0123456789"));
        assert_eq!(short_id("ABCDEFGHIJ0123456789"), None);
        assert_eq!(short_id("../etc"), None);
        let q = query_pairs(Some("metadata=a%252520b%3Dc%252526d&limit=5&x")).unwrap();
        assert_eq!(q[0], ("metadata".into(), "a%2520b=c%2526d".into()));
        assert_eq!(q[1], ("limit".into(), "5".into()));
        assert_eq!(q[2], ("x".into(), "".into()));
    }
}
