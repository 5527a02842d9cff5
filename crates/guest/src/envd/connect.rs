//! The server side of the Connect protocol: picking the codec from `Content-Type`, decoding
//! unary and server-streaming requests, writing unary replies, stream envelopes and errors.

use axum::body::Body;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use sandbank_protocol::connect::{self as wire, Code, ConnectError};
use serde::de::DeserializeOwned;
use serde::Serialize;

/// A message of an envd service: JSON (proto3 mapping) and binary protobuf.
pub trait Message: Serialize + DeserializeOwned + prost::Message + Default + 'static {}
impl<T: Serialize + DeserializeOwned + prost::Message + Default + 'static> Message for T {}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Codec {
    Json,
    Proto,
}

fn content_type(headers: &HeaderMap) -> String {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase()
}

impl Codec {
    /// The codec of a unary request (`application/json` or `application/proto`).
    pub fn unary(headers: &HeaderMap) -> Result<Self, ConnectError> {
        match content_type(headers).as_str() {
            "application/json" | "" => Ok(Codec::Json),
            "application/proto" => Ok(Codec::Proto),
            other => Err(ConnectError::new(
                Code::InvalidArgument,
                format!(
                    "unsupported content type {other:?} for a unary call (want application/json or application/proto)"
                ),
            )),
        }
    }

    /// The codec of a streaming request (`application/connect+json` or `+proto`).
    pub fn streaming(headers: &HeaderMap) -> Result<Self, ConnectError> {
        match content_type(headers).as_str() {
            "application/connect+json" => Ok(Codec::Json),
            "application/connect+proto" => Ok(Codec::Proto),
            other => Err(ConnectError::new(
                Code::InvalidArgument,
                format!(
                    "unsupported content type {other:?} for a streaming call (want application/connect+json or application/connect+proto)"
                ),
            )),
        }
    }

    pub fn decode<T: Message>(self, bytes: &[u8]) -> Result<T, ConnectError> {
        match self {
            Codec::Json => {
                if bytes.iter().all(|b| b.is_ascii_whitespace()) {
                    return Ok(T::default());
                }
                // A message is a JSON object in valid UTF-8. serde alone would take `[]` as a
                // struct and skip bad UTF-8 inside fields it ignores.
                if std::str::from_utf8(bytes).is_err() {
                    return Err(ConnectError::new(Code::InvalidArgument, "invalid JSON request message: not UTF-8"));
                }
                if bytes.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
                    return Err(ConnectError::new(
                        Code::InvalidArgument,
                        "invalid JSON request message: not a JSON object",
                    ));
                }
                serde_json::from_slice(bytes)
                    .map_err(|e| ConnectError::new(Code::InvalidArgument, format!("invalid JSON request message: {e}")))
            }
            Codec::Proto => T::decode(bytes).map_err(|e| {
                ConnectError::new(Code::InvalidArgument, format!("invalid protobuf request message: {e}"))
            }),
        }
    }

    pub fn encode<T: Message>(self, msg: &T) -> Vec<u8> {
        match self {
            Codec::Json => serde_json::to_vec(msg).expect("envd messages serialize"),
            Codec::Proto => msg.encode_to_vec(),
        }
    }

    fn unary_content_type(self) -> &'static str {
        match self {
            Codec::Json => "application/json",
            Codec::Proto => "application/proto",
        }
    }

    fn stream_content_type(self) -> &'static str {
        match self {
            Codec::Json => "application/connect+json",
            Codec::Proto => "application/connect+proto",
        }
    }
}

/// Reads a whole (small) request body; a broken body is `invalid_argument`.
pub async fn read_body(body: Body) -> Result<Bytes, ConnectError> {
    axum::body::to_bytes(body, wire::MAX_MESSAGE_BYTES + 5)
        .await
        .map_err(|e| ConnectError::new(Code::InvalidArgument, format!("reading the request body: {e}")))
}

/// Decodes a unary request.
pub async fn unary_request<T: Message>(headers: &HeaderMap, body: Body) -> Result<(Codec, T), ConnectError> {
    let codec = Codec::unary(headers)?;
    let bytes = read_body(body).await?;
    Ok((codec, codec.decode(&bytes)?))
}

/// Decodes a server-streaming request: exactly one message envelope.
pub async fn stream_request<T: Message>(headers: &HeaderMap, body: Body) -> Result<(Codec, T), ConnectError> {
    let codec = Codec::streaming(headers)?;
    let bytes = read_body(body).await?;
    let payload = wire::decode_single_envelope(&bytes)
        .map_err(|e| ConnectError::new(Code::InvalidArgument, format!("invalid request envelope: {e}")))?;
    Ok((codec, codec.decode(&payload)?))
}

/// A unary error: the code's HTTP status and `{"code","message"}`.
pub fn unary_error(err: &ConnectError) -> Response {
    let status = StatusCode::from_u16(err.code.http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let body = serde_json::to_vec(err).expect("errors serialize");
    (status, [(header::CONTENT_TYPE, HeaderValue::from_static("application/json"))], body).into_response()
}

/// A successful unary reply.
pub fn unary_ok<T: Message>(codec: Codec, msg: &T) -> Response {
    let body = codec.encode(msg);
    (StatusCode::OK, [(header::CONTENT_TYPE, HeaderValue::from_static(codec.unary_content_type()))], body)
        .into_response()
}

/// Runs a unary handler: decode, call, encode; errors as unary errors.
pub async fn unary<Req, Resp, F, Fut>(headers: &HeaderMap, body: Body, f: F) -> Response
where
    Req: Message,
    Resp: Message,
    F: FnOnce(Req) -> Fut,
    Fut: std::future::Future<Output = Result<Resp, ConnectError>>,
{
    match unary_request::<Req>(headers, body).await {
        Ok((codec, req)) => match f(req).await {
            Ok(resp) => unary_ok(codec, &resp),
            Err(e) => unary_error(&e),
        },
        Err(e) => unary_error(&e),
    }
}

/// One message envelope.
pub fn envelope<T: Message>(codec: Codec, msg: &T) -> Bytes {
    wire::encode_envelope(0, &codec.encode(msg))
}

/// A streaming reply: HTTP 200 and the envelopes `body` yields (which must end with an
/// end-of-stream envelope).
pub fn stream_response<S>(codec: Codec, body: S) -> Response
where
    S: futures_util::Stream<Item = Result<Bytes, std::convert::Infallible>> + Send + 'static,
{
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, HeaderValue::from_static(codec.stream_content_type()))],
        Body::from_stream(body),
    )
        .into_response()
}

/// A streaming reply that is only an error: HTTP 200 and an end-of-stream envelope.
pub fn stream_error(codec: Codec, err: ConnectError) -> Response {
    let bytes = wire::end_stream_envelope(Some(err));
    (StatusCode::OK, [(header::CONTENT_TYPE, HeaderValue::from_static(codec.stream_content_type()))], bytes)
        .into_response()
}

/// The error of a request that never became a stream: a malformed envelope or content type is
/// a plain HTTP 4xx with a JSON error body; anything later is an end-of-stream error.
pub fn early_stream_error(headers: &HeaderMap, err: ConnectError) -> Response {
    match Codec::streaming(headers) {
        Ok(codec) if err.code != Code::InvalidArgument => stream_error(codec, err),
        _ => unary_error(&err),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sandbank_protocol::process::ListResponse;

    fn headers(ct: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::CONTENT_TYPE, HeaderValue::from_str(ct).unwrap());
        h
    }

    #[test]
    fn codecs_follow_the_content_type() {
        assert_eq!(Codec::unary(&headers("application/json; charset=utf-8")).unwrap(), Codec::Json);
        assert_eq!(Codec::unary(&headers("application/proto")).unwrap(), Codec::Proto);
        assert_eq!(Codec::streaming(&headers("application/connect+proto")).unwrap(), Codec::Proto);
        let err = Codec::streaming(&headers("text/plain")).unwrap_err();
        assert_eq!(err.code, Code::InvalidArgument);
        assert!(err.message.contains("text/plain"), "{}", err.message);
    }

    #[test]
    fn empty_json_is_the_default_message_and_garbage_is_invalid() {
        let m: ListResponse = Codec::Json.decode(b"").unwrap();
        assert!(m.processes.is_empty());
        let err = Codec::Json.decode::<ListResponse>(b"{nope").unwrap_err();
        assert_eq!(err.code, Code::InvalidArgument);
        let err = Codec::Proto.decode::<ListResponse>(&[0xff, 0xff]).unwrap_err();
        assert_eq!(err.code, Code::InvalidArgument);
        // Regressions (found by tests/malformed.rs): both were accepted as an empty message.
        assert_eq!(Codec::Json.decode::<ListResponse>(b" []").unwrap_err().code, Code::InvalidArgument);
        let err = Codec::Json.decode::<ListResponse>(b"{\"x\":\"\xff\"}").unwrap_err();
        assert!(err.message.contains("UTF-8"), "{}", err.message);
    }
}
