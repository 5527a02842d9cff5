//! envd transport: the Connect protocol with JSON (unary and server-streaming), as
//! `@connectrpc/connect-web` speaks it, plus envd's plain HTTP endpoints (`/files`, `/health`).

use crate::config::{basic_auth, header_map, Config, ENVD_PORT, KEEPALIVE_PING_HEADER, KEEPALIVE_PING_INTERVAL_SEC};
use crate::error::error_chain;
use bytes::Bytes;
use futures_util::{Stream, StreamExt as _};
use sandbank_protocol::connect::{encode_envelope, Code, ConnectError, EndStream, EnvelopeDecoder};
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

/// envd version gates (`core/envd/versions.ts`).
pub const ENVD_DEFAULT_USER: (u64, u64, u64) = (0, 4, 0);
pub const ENVD_COMMANDS_STDIN: (u64, u64, u64) = (0, 3, 0);
pub const ENVD_OCTET_STREAM_UPLOAD: (u64, u64, u64) = (0, 5, 7);
pub const ENVD_RECURSIVE_WATCH: (u64, u64, u64) = (0, 1, 4);
/// `getMetrics` needs envd ≥ 0.1.5.
pub const ENVD_METRICS: (u64, u64, u64) = (0, 1, 5);

/// The default `timeoutMs` of commands and watches (`Connect-Timeout-Ms`).
pub const DEFAULT_STREAM_TIMEOUT_MS: u64 = 60_000;

/// connect-es `codeFromHttpStatus`.
pub fn code_from_http_status(status: u16) -> Code {
    match status {
        400 => Code::Internal,
        401 => Code::Unauthenticated,
        403 => Code::PermissionDenied,
        404 => Code::Unimplemented,
        429 | 502 | 503 | 504 => Code::Unavailable,
        _ => Code::Unknown,
    }
}

/// A transport failure in connect-web's terms: a timeout/abort is `canceled`, the rest `unknown`.
fn transport_error(e: &reqwest::Error) -> ConnectError {
    if e.is_timeout() {
        ConnectError::new(Code::Canceled, "This operation was aborted")
    } else {
        ConnectError::new(Code::Unknown, format!("fetch failed: {}", error_chain(e)))
    }
}

pub(crate) fn canceled() -> ConnectError {
    ConnectError::new(Code::Canceled, "This operation was aborted")
}

/// Decodes a unary error body (`{"code","message"}`), falling back to the HTTP status.
pub fn unary_error(status: u16, content_type: Option<&str>, body: &[u8]) -> ConnectError {
    let fallback = ConnectError::new(code_from_http_status(status), format!("HTTP {status}"));
    let is_json = content_type.is_some_and(|ct| {
        let ct = ct.split(';').next().unwrap_or("").trim();
        ct.eq_ignore_ascii_case("application/json")
    });
    if !is_json {
        return fallback;
    }
    #[derive(serde::Deserialize)]
    struct Body {
        code: Option<String>,
        #[serde(default)]
        message: Option<String>,
    }
    match serde_json::from_slice::<Body>(body) {
        Ok(Body { code: Some(code), message }) => match Code::from_str_name(&code) {
            Some(code) => ConnectError::new(code, message.unwrap_or_default()),
            None => fallback,
        },
        _ => fallback,
    }
}

/// One sandbox's envd endpoint. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Envd {
    inner: Arc<EnvdInner>,
}

#[derive(Debug)]
struct EnvdInner {
    config: Config,
    base_url: String,
    sandbox_id: String,
    access_token: Option<String>,
    version: String,
}

type ByteStream = Pin<Box<dyn Stream<Item = reqwest::Result<Bytes>> + Send>>;

impl Envd {
    pub fn new(
        config: Config,
        sandbox_id: &str,
        sandbox_domain: Option<&str>,
        envd_version: &str,
        access_token: Option<String>,
    ) -> Self {
        let base_url = config.sandbox_url(sandbox_id, sandbox_domain);
        Self {
            inner: Arc::new(EnvdInner {
                config,
                base_url,
                sandbox_id: sandbox_id.to_string(),
                access_token: access_token.filter(|t| !t.is_empty()),
                version: envd_version.to_string(),
            }),
        }
    }

    pub fn base_url(&self) -> &str {
        &self.inner.base_url
    }

    pub fn version(&self) -> &str {
        &self.inner.version
    }

    pub fn config(&self) -> &Config {
        &self.inner.config
    }

    /// The user envd should act as: the given one, or `user` for envd older than 0.4.0.
    pub fn effective_user(&self, user: Option<&str>) -> Option<String> {
        match user {
            Some(u) => Some(u.to_string()),
            None if !crate::api::envd_version_at_least(&self.inner.version, ENVD_DEFAULT_USER) => {
                Some(crate::config::DEFAULT_USERNAME.to_string())
            }
            None => None,
        }
    }

    fn sandbox_headers(&self) -> Vec<(String, String)> {
        let id = self.inner.sandbox_id.clone();
        let port = ENVD_PORT.to_string();
        let mut h = vec![
            ("Novita-Sandbox-Id".to_string(), id.clone()),
            ("Novita-Sandbox-Port".to_string(), port.clone()),
            ("E2b-Sandbox-Id".to_string(), id),
            ("E2b-Sandbox-Port".to_string(), port),
        ];
        if let Some(t) = &self.inner.access_token {
            h.push(("X-Access-Token".into(), t.clone()));
        }
        h
    }

    /// Headers of an RPC: config headers, call headers, sandbox headers, access token.
    pub fn rpc_headers(&self, call: &[(String, String)]) -> Vec<(String, String)> {
        let mut h = self.inner.config.headers.clone();
        h.extend(call.iter().cloned());
        h.extend(self.sandbox_headers());
        h
    }

    /// Headers of envd's plain HTTP endpoints: User-Agent, sandbox headers, access token.
    pub fn http_headers(&self) -> Vec<(String, String)> {
        let mut h = vec![("User-Agent".to_string(), self.inner.config.sdk.user_agent.clone())];
        h.extend(self.sandbox_headers());
        h
    }

    /// `authenticationHeader(envdVersion, user)`.
    pub fn user_header(&self, user: Option<&str>) -> Vec<(String, String)> {
        basic_auth(self.effective_user(user).as_deref()).into_iter().collect()
    }

    /// A unary Connect call: `POST <base>/<service>/<method>` with a JSON body.
    pub async fn unary<Req: Serialize, Res: DeserializeOwned>(
        &self,
        method: &str,
        req: &Req,
        user: Option<&str>,
        request_timeout_ms: Option<u64>,
    ) -> Result<Res, ConnectError> {
        let url = format!("{}/{}", self.inner.base_url, method);
        let mut call = self.user_header(user);
        call.push(("Content-Type".into(), "application/json".into()));
        call.push(("Connect-Protocol-Version".into(), "1".into()));
        let headers = header_map(&self.rpc_headers(&call))
            .map_err(|e| ConnectError::new(Code::InvalidArgument, e.to_string()))?;
        let body = serde_json::to_vec(req).expect("request serializes");
        let mut rb = self.inner.config.http.post(url).headers(headers).body(body);
        if let Some(t) = self.inner.config.request_timeout(request_timeout_ms) {
            rb = rb.timeout(t);
        }
        let res = rb.send().await.map_err(|e| transport_error(&e))?;
        let status = res.status().as_u16();
        let ct = res.headers().get(reqwest::header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).map(str::to_string);
        let body = res.bytes().await.map_err(|e| transport_error(&e))?;
        if status != 200 {
            return Err(unary_error(status, ct.as_deref(), &body));
        }
        serde_json::from_slice(&body)
            .map_err(|e| ConnectError::new(Code::Internal, format!("cannot decode response message: {e}")))
    }

    /// Opens a server-streaming Connect call. `timeout_ms` (0 = none) goes out as
    /// `Connect-Timeout-Ms` and is also enforced here as a deadline.
    pub async fn open_stream<Req: Serialize>(
        &self,
        method: &str,
        req: &Req,
        user: Option<&str>,
        timeout_ms: u64,
    ) -> Result<RpcStream, ConnectError> {
        let url = format!("{}/{}", self.inner.base_url, method);
        let mut call = self.user_header(user);
        call.push((KEEPALIVE_PING_HEADER.into(), KEEPALIVE_PING_INTERVAL_SEC.to_string()));
        call.push(("Content-Type".into(), "application/connect+json".into()));
        call.push(("Connect-Protocol-Version".into(), "1".into()));
        if timeout_ms > 0 {
            call.push(("Connect-Timeout-Ms".into(), timeout_ms.to_string()));
        }
        let headers = header_map(&self.rpc_headers(&call))
            .map_err(|e| ConnectError::new(Code::InvalidArgument, e.to_string()))?;
        let json = serde_json::to_vec(req).expect("request serializes");
        let body = encode_envelope(0, &json);
        let deadline = (timeout_ms > 0).then(|| Instant::now() + Duration::from_millis(timeout_ms));
        let send = self.inner.config.http.post(url).headers(headers).body(body).send();
        let res = match deadline {
            Some(d) => tokio::time::timeout_at(d, send).await.map_err(|_| deadline_exceeded())?,
            None => send.await,
        }
        .map_err(|e| transport_error(&e))?;
        let status = res.status().as_u16();
        if status != 200 {
            return Err(ConnectError::new(code_from_http_status(status), format!("HTTP {status}")));
        }
        let ct =
            res.headers().get(reqwest::header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
        let base = ct.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
        if base != "application/connect+json" {
            let code = if ct.is_empty() { Code::Unknown } else { Code::Internal };
            return Err(ConnectError::new(code, format!("unsupported content type {ct}")));
        }
        Ok(RpcStream {
            body: Box::pin(res.bytes_stream()),
            decoder: EnvelopeDecoder::default(),
            deadline,
            ended: false,
        })
    }

    /// `GET <base>/<path>` or `POST` on envd's plain HTTP API; returns the raw response.
    pub(crate) fn http(&self, method: reqwest::Method, path_and_query: &str) -> reqwest::RequestBuilder {
        let url = format!("{}{}", self.inner.base_url, path_and_query);
        let rb = self.inner.config.http.request(method, url);
        match header_map(&self.http_headers()) {
            Ok(h) => rb.headers(h),
            Err(_) => rb,
        }
    }
}

fn deadline_exceeded() -> ConnectError {
    ConnectError::new(Code::DeadlineExceeded, "the operation timed out")
}

/// The response side of a server-streaming call: envelopes decoded as they arrive.
pub struct RpcStream {
    body: ByteStream,
    decoder: EnvelopeDecoder,
    deadline: Option<Instant>,
    ended: bool,
}

impl std::fmt::Debug for RpcStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RpcStream").field("deadline", &self.deadline).field("ended", &self.ended).finish()
    }
}

impl RpcStream {
    /// The next message; `Ok(None)` after a clean end-of-stream; the end-of-stream's error,
    /// a missing end-of-stream, or the deadline as `Err`.
    pub async fn next<T: DeserializeOwned>(&mut self) -> Result<Option<T>, ConnectError> {
        if self.ended {
            return Ok(None);
        }
        loop {
            match self.decoder.next() {
                Err(e) => return Err(ConnectError::new(Code::InvalidArgument, e.to_string())),
                Ok(Some(env)) => {
                    if env.is_end_stream() {
                        self.ended = true;
                        let end: EndStream = serde_json::from_slice(&env.payload).map_err(|e| {
                            ConnectError::new(Code::InvalidArgument, format!("cannot decode end-of-stream: {e}"))
                        })?;
                        return match end.error {
                            // The server's deadline is ours (it came in Connect-Timeout-Ms); whichever
                            // side noticed first, report it the one way the JS SDKs do.
                            Some(err) if err.code == Code::DeadlineExceeded && self.deadline.is_some() => {
                                Err(deadline_exceeded())
                            }
                            Some(err) => Err(err),
                            None => Ok(None),
                        };
                    }
                    return serde_json::from_slice(&env.payload)
                        .map(Some)
                        .map_err(|e| ConnectError::new(Code::Internal, format!("cannot decode message: {e}")));
                }
                Ok(None) => {}
            }
            let chunk = match self.deadline {
                Some(d) => tokio::time::timeout_at(d, self.body.next()).await.map_err(|_| deadline_exceeded())?,
                None => self.body.next().await,
            };
            match chunk {
                Some(Ok(bytes)) => self.decoder.push(&bytes),
                Some(Err(e)) => {
                    if self.deadline.is_some_and(|d| Instant::now() >= d) {
                        return Err(deadline_exceeded());
                    }
                    return Err(transport_error(&e));
                }
                None => {
                    self.ended = true;
                    return Err(ConnectError::new(Code::InvalidArgument, "protocol error: missing EndStreamResponse"));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{ConnectionConfig, ConnectionOpts};

    #[test]
    fn unary_errors_decode_json_or_fall_back_to_the_status() {
        let e = unary_error(404, Some("application/json"), br#"{"code":"not_found","message":"no such"}"#);
        assert_eq!(e, ConnectError::new(Code::NotFound, "no such"));
        let e =
            unary_error(409, Some("application/json; charset=utf-8"), br#"{"code":"already_exists","message":"x"}"#);
        assert_eq!(e.code, Code::AlreadyExists);
        assert_eq!(unary_error(404, Some("text/plain"), b"nope"), ConnectError::new(Code::Unimplemented, "HTTP 404"));
        assert_eq!(unary_error(502, None, b""), ConnectError::new(Code::Unavailable, "HTTP 502"));
        assert_eq!(unary_error(400, Some("application/json"), b"{}").code, Code::Internal);
        assert_eq!(unary_error(500, Some("application/json"), br#"{"code":"bogus"}"#).code, Code::Unknown);
    }

    fn envd(version: &str, token: Option<&str>) -> Envd {
        let opts = ConnectionOpts {
            sandbox_url: Some("http://127.0.0.1:1".into()),
            headers: vec![("X-Extra".into(), "1".into())],
            ..Default::default()
        };
        let config = Arc::new(ConnectionConfig::with_env(&opts, |_| None).unwrap());
        Envd::new(config, "sb123", None, version, token.map(str::to_string))
    }

    #[test]
    fn envd_header_sets() {
        let e = envd("0.6.4", Some("tok"));
        let h = header_map(&e.rpc_headers(&e.user_header(Some("root")))).unwrap();
        assert_eq!(h["novita-sandbox-id"], "sb123");
        assert_eq!(h["novita-sandbox-port"], "49983");
        assert_eq!(h["e2b-sandbox-id"], "sb123");
        assert_eq!(h["e2b-sandbox-port"], "49983");
        assert_eq!(h["x-access-token"], "tok");
        assert_eq!(h["authorization"], "Basic cm9vdDo=");
        assert_eq!(h["x-extra"], "1");
        assert!(h.contains_key("x-novita-sdk-version"));
        assert!(!h.contains_key("x-api-key"));
        let h = header_map(&e.http_headers()).unwrap();
        assert!(h["user-agent"].to_str().unwrap().starts_with("sandbank-sdk-rust/"));
        assert!(!h.contains_key("x-extra"));
        // No user: no Authorization on envd ≥ 0.4.0; `user` before.
        assert!(e.user_header(None).is_empty());
        assert_eq!(
            envd("0.3.0", None).user_header(None),
            vec![("Authorization".to_string(), "Basic dXNlcjo=".to_string())]
        );
        assert!(!header_map(&envd("0.6.4", None).http_headers()).unwrap().contains_key("x-access-token"));
        assert_eq!(e.base_url(), "http://127.0.0.1:1");
    }

    #[tokio::test]
    async fn stream_decodes_envelopes_across_chunks_and_end_stream_errors() {
        use sandbank_protocol::connect::end_stream_envelope;
        let mut all = encode_envelope(0, br#"{"a":1}"#).to_vec();
        all.extend_from_slice(&encode_envelope(0, br#"{"a":2}"#));
        all.extend_from_slice(&end_stream_envelope(Some(ConnectError::new(Code::DeadlineExceeded, "late"))));
        let chunks: Vec<reqwest::Result<Bytes>> = all.chunks(3).map(|c| Ok(Bytes::copy_from_slice(c))).collect();
        let mut s = RpcStream {
            body: Box::pin(futures_util::stream::iter(chunks)),
            decoder: EnvelopeDecoder::default(),
            deadline: None,
            ended: false,
        };
        let a: serde_json::Value = s.next().await.unwrap().unwrap();
        assert_eq!(a["a"], 1);
        let b: serde_json::Value = s.next().await.unwrap().unwrap();
        assert_eq!(b["a"], 2);
        assert_eq!(s.next::<serde_json::Value>().await.unwrap_err(), ConnectError::new(Code::DeadlineExceeded, "late"));
        assert!(s.next::<serde_json::Value>().await.unwrap().is_none());

        let chunks: Vec<reqwest::Result<Bytes>> = vec![Ok(encode_envelope(0, b"{}"))];
        let mut s = RpcStream {
            body: Box::pin(futures_util::stream::iter(chunks)),
            decoder: EnvelopeDecoder::default(),
            deadline: None,
            ended: false,
        };
        assert!(s.next::<serde_json::Value>().await.unwrap().is_some());
        let e = s.next::<serde_json::Value>().await.unwrap_err();
        assert_eq!(e.message, "protocol error: missing EndStreamResponse");
    }

    #[tokio::test]
    async fn the_servers_deadline_reads_as_the_clients_own() {
        use sandbank_protocol::connect::end_stream_envelope;
        let end = || {
            end_stream_envelope(Some(ConnectError::new(
                Code::DeadlineExceeded,
                "the command's deadline (Connect-Timeout-Ms) was exceeded",
            )))
        };
        // With a deadline of ours, the server only got there first: the same error either way.
        let mut s = RpcStream {
            body: Box::pin(futures_util::stream::iter(vec![Ok(end())])),
            decoder: EnvelopeDecoder::default(),
            deadline: Some(Instant::now() + Duration::from_secs(60)),
            ended: false,
        };
        assert_eq!(s.next::<serde_json::Value>().await.unwrap_err(), deadline_exceeded());
        // Without one, the server's own words pass through.
        let mut s = RpcStream {
            body: Box::pin(futures_util::stream::iter(vec![Ok(end())])),
            decoder: EnvelopeDecoder::default(),
            deadline: None,
            ended: false,
        };
        let e = s.next::<serde_json::Value>().await.unwrap_err();
        assert_eq!(e.message, "the command's deadline (Connect-Timeout-Ms) was exceeded");
    }
}
