//! The control plane (`core/sandbox/sandboxApi.ts`, modern domains): create, connect, kill,
//! getInfo, setTimeout, list, snapshots, fork (e2b's) and clone (Novita's). One [`Api`] per
//! resolved [`ConnectionConfig`].

use crate::config::{header_map, timeout_to_seconds, Config, ConnectionConfig, DEFAULT_SANDBOX_TIMEOUT_MS};
use crate::error::{from_api_response, from_transport, ApiErrorBody, Error, Result};
use bytes::Bytes;
use chrono::{DateTime, Utc};
use reqwest::header::HeaderMap;
use reqwest::Method;
use sandbank_protocol::rest;
use std::collections::HashMap;
use std::sync::Arc;

pub use sandbank_protocol::rest::SnapshotInfo;

pub const DEFAULT_TEMPLATE: &str = "base";

/// How long `getHost` waits for the local engine to publish a port (it is synchronous).
const PUBLISH_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// `SandboxLifecycle`: what happens when the sandbox times out.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SandboxLifecycle {
    /// `pause` or `kill` (the default when unset).
    pub on_timeout: Option<String>,
    /// Only meaningful with `pause`; default false.
    pub auto_resume: Option<bool>,
}

/// `SandboxOpts` (the sandbox fields; connection fields live in `ConnectionOpts`).
#[derive(Clone, Debug, Default)]
pub struct SandboxCreateOpts {
    /// Default `base`. A snapshot id works too.
    pub template: Option<String>,
    pub metadata: Option<HashMap<String, String>>,
    /// Sandbox-wide environment variables (`envVars`).
    pub envs: Option<HashMap<String, String>>,
    /// Default 300 000; sent in seconds, rounded up.
    pub timeout_ms: Option<u64>,
    /// Default true.
    pub secure: Option<bool>,
    /// Default true.
    pub allow_internet_access: Option<bool>,
    pub lifecycle: Option<SandboxLifecycle>,
    /// Deprecated `betaCreate` option: `true` ≡ lifecycle `{onTimeout:'pause'}`.
    pub auto_pause: Option<bool>,
    /// sandbank: the sandbox's disk limit in MB (sent as `diskSizeMB` only when set; the
    /// cloud takes it from the template).
    pub disk_size_mb: Option<u64>,
}

/// `SandboxConnectOpts` (sandbox fields).
#[derive(Clone, Debug, Default)]
pub struct SandboxConnectOpts {
    /// Default 300 000.
    pub timeout_ms: Option<u64>,
    pub secure: Option<bool>,
}

/// What create/connect return: enough to reach the sandbox's envd.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SandboxConnection {
    pub sandbox_id: String,
    /// The domain the API reported, if any (else the config's domain applies).
    pub sandbox_domain: Option<String>,
    pub envd_version: String,
    pub envd_access_token: Option<String>,
    pub traffic_access_token: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SandboxInfoLifecycle {
    pub on_timeout: String,
    pub auto_resume: bool,
}

/// `SandboxInfo` (plus the `getFullInfo` extras `envd_access_token`, `sandbox_domain`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SandboxInfo {
    pub sandbox_id: String,
    pub template_id: String,
    /// The API's `alias`.
    pub name: Option<String>,
    pub metadata: HashMap<String, String>,
    pub started_at: DateTime<Utc>,
    pub end_at: DateTime<Utc>,
    /// `running` or `paused`.
    pub state: String,
    pub cpu_count: u32,
    pub memory_mb: u64,
    pub envd_version: String,
    pub allow_internet_access: Option<bool>,
    pub lifecycle: Option<SandboxInfoLifecycle>,
    pub envd_access_token: Option<String>,
    pub sandbox_domain: Option<String>,
    /// sandbank's local engine only: root in the sandbox is the host's root (`--no-userns`).
    pub root_is_host_root: Option<bool>,
}

impl From<rest::SandboxDetail> for SandboxInfo {
    fn from(d: rest::SandboxDetail) -> Self {
        SandboxInfo {
            allow_internet_access: d.allow_internet_access,
            lifecycle: d
                .lifecycle
                .map(|l| SandboxInfoLifecycle { on_timeout: l.on_timeout, auto_resume: l.auto_resume }),
            envd_access_token: d.envd_access_token,
            sandbox_domain: d.domain.filter(|d| !d.is_empty()),
            root_is_host_root: d.root_is_host_root,
            ..SandboxInfo::from(d.base)
        }
    }
}

impl From<rest::ListedSandbox> for SandboxInfo {
    fn from(d: rest::ListedSandbox) -> Self {
        SandboxInfo {
            sandbox_id: d.sandbox_id,
            template_id: d.template_id,
            name: d.alias.filter(|a| !a.is_empty()),
            metadata: d.metadata,
            started_at: d.started_at,
            end_at: d.end_at,
            state: d.state.as_str().to_string(),
            cpu_count: d.cpu_count,
            memory_mb: d.memory_mb,
            envd_version: d.envd_version,
            allow_internet_access: None,
            lifecycle: None,
            envd_access_token: None,
            sandbox_domain: None,
            root_is_host_root: None,
        }
    }
}

/// `SandboxMetrics`: one sample of a sandbox's resource usage (bytes for memory and disk).
#[derive(Clone, Debug, PartialEq, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SandboxMetrics {
    pub timestamp: DateTime<Utc>,
    pub cpu_used_pct: f64,
    pub cpu_count: f64,
    pub mem_used: f64,
    pub mem_total: f64,
    pub disk_used: f64,
    pub disk_total: f64,
}

/// `SandboxMetricsOpts`: the time range, as JS `Date` values in epoch milliseconds.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct SandboxMetricsOpts {
    /// Default: the sandbox's start.
    pub start_ms: Option<f64>,
    /// Default: now.
    pub end_ms: Option<f64>,
}

/// `Math.round(ms / 1000)` for a JS `Date`'s time; an invalid date (NaN) is an error naming the
/// option.
fn unix_seconds(name: &str, ms: f64) -> Result<i64> {
    if !ms.is_finite() {
        return Err(Error::InvalidArgument(format!("Invalid {name}: expected a valid Date, got Invalid Date")));
    }
    Ok((ms / 1000.0 + 0.5).floor() as i64)
}

/// The query of `GET /sandboxes/{id}/metrics` (openapi-fetch order: start, end).
pub fn metrics_query(opts: SandboxMetricsOpts) -> Result<String> {
    let mut parts = Vec::new();
    if let Some(ms) = opts.start_ms {
        parts.push(format!("start={}", unix_seconds("start", ms)?));
    }
    if let Some(ms) = opts.end_ms {
        parts.push(format!("end={}", unix_seconds("end", ms)?));
    }
    Ok(parts.join("&"))
}

/// The `lifecycle` create option resolved as `getLifecycle` does (explicit `lifecycle` wins over
/// the deprecated `autoPause`), checked: `(autoPause, autoResume.enabled)` for the request.
pub fn resolve_lifecycle(
    lifecycle: Option<&SandboxLifecycle>,
    auto_pause: Option<bool>,
) -> Result<(bool, Option<bool>)> {
    match (lifecycle, auto_pause) {
        (Some(l), _) => match l.on_timeout.as_deref().unwrap_or("kill") {
            "pause" => Ok((true, Some(l.auto_resume.unwrap_or(false)))),
            "kill" if l.auto_resume == Some(true) => Err(Error::InvalidArgument(
                "Invalid lifecycle: autoResume can be true only when onTimeout is 'pause'".into(),
            )),
            "kill" => Ok((false, None)),
            other => Err(Error::InvalidArgument(format!(
                "Invalid lifecycle.onTimeout: {other:?} (expected 'pause' or 'kill')"
            ))),
        },
        (None, Some(true)) => Ok((true, Some(false))),
        (None, _) => Ok((false, None)),
    }
}

/// `SandboxListOpts`.
#[derive(Clone, Debug, Default)]
pub struct SandboxListOpts {
    /// Metadata filter, in the caller's order.
    pub metadata: Option<Vec<(String, String)>>,
    /// `running` / `paused`.
    pub state: Option<Vec<String>>,
    pub limit: Option<u32>,
    pub next_token: Option<String>,
}

/// `SnapshotListOpts`.
#[derive(Clone, Debug, Default)]
pub struct SnapshotListOpts {
    pub sandbox_id: Option<String>,
    /// Only the snapshot with this name (e2b's; a `:tag` is ignored).
    pub name: Option<String>,
    /// Only snapshots with all these metadata pairs (sandbank's).
    pub metadata: Option<Vec<(String, String)>>,
    pub limit: Option<u32>,
    pub next_token: Option<String>,
}

/// `CreateSnapshotOpts`: e2b's `name`, and sandbank's `metadata` and `ttlMs`.
#[derive(Clone, Debug, Default)]
pub struct CreateSnapshotOpts {
    /// Unique among live snapshots; usable wherever its ID is.
    pub name: Option<String>,
    /// Labels, string to string.
    pub metadata: Option<std::collections::BTreeMap<String, String>>,
    /// Milliseconds until it expires, sent in seconds rounded up; 0: never (whatever the
    /// server's default).
    pub ttl_ms: Option<f64>,
}

/// The body of `POST /sandboxes/{id}/snapshots`: `{}` without options, as the SDKs send it. A
/// `ttlMs` that is not a finite number of milliseconds, 0 or more, is refused here.
pub fn snapshot_body(opts: &CreateSnapshotOpts) -> Result<serde_json::Value> {
    let mut body = serde_json::Map::new();
    if let Some(n) = &opts.name {
        body.insert("name".into(), n.clone().into());
    }
    if let Some(m) = &opts.metadata {
        body.insert("metadata".into(), serde_json::to_value(m).expect("a string map"));
    }
    if let Some(t) = opts.ttl_ms {
        if !t.is_finite() || t < 0.0 {
            return Err(Error::InvalidArgument(format!(
                "Invalid ttlMs {}: expected a number of milliseconds, 0 or more",
                js_number(t)
            )));
        }
        body.insert("ttl".into(), serde_json::Value::from((t / 1000.0).ceil() as u64));
    }
    Ok(serde_json::Value::Object(body))
}

/// `SandboxForkOpts` (e2b; the sandbox fields). Numbers as JS gave them: the server checks the
/// count as the cloud does (1 to 100, a whole number), the SDK what it converts (`timeoutMs`).
#[derive(Clone, Debug, Default)]
pub struct SandboxForkOpts {
    /// How many copies; unset: the server's default, 1.
    pub count: Option<f64>,
    /// The copies' time to live in milliseconds, sent in seconds rounded up; unset: the
    /// server's default (300 s).
    pub timeout_ms: Option<f64>,
}

/// `SandboxCloneOpts` (novita-sandbox; the sandbox fields), numbers as in [`SandboxForkOpts`].
#[derive(Clone, Debug, Default)]
pub struct SandboxCloneOpts {
    /// How many copies. Default 1.
    pub count: Option<f64>,
    /// All copies or none. Default false.
    pub strict: Option<bool>,
    /// The copies' time to live in milliseconds; unset: the server's default.
    pub timeout_ms: Option<f64>,
    /// The node to start the copies on (the cloud's; sent as `nodeID`).
    pub node_id: Option<String>,
    /// The caller's own `requestTimeoutMs`, if any: a clone waits [`CLONE_REQUEST_TIMEOUT_MS`]
    /// otherwise, as novita-sandbox does (not the connection's default).
    pub request_timeout_ms: Option<u64>,
}

/// How long a clone request may take unless the caller says otherwise (novita-sandbox's).
pub const CLONE_REQUEST_TIMEOUT_MS: u64 = 300_000;

/// What `Sandbox.clone` gets: the copies that started, and the snapshot they started from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CloneResult {
    pub sandboxes: Vec<SandboxConnection>,
    /// `<template id>:<tag>`: usable as the template of `Sandbox.create`.
    pub snapshot_template_id: Option<String>,
}

/// A number as JS prints it (`1`, `1.5`, `NaN`, `Infinity`), for error messages.
fn js_number(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v.is_infinite() {
        if v > 0.0 { "Infinity" } else { "-Infinity" }.into()
    } else {
        v.to_string()
    }
}

/// The body of `POST /sandboxes/{id}/fork` and `/clone`: `count` as the caller gave it (a whole
/// number as a JSON integer, anything else as it is, so that the server's 400 names it), and
/// `timeout` in seconds. What JSON cannot carry (a count that is not a finite number) and a
/// timeout that is not a finite number of milliseconds, 0 or more, are refused here.
pub fn copy_body(
    count: Option<f64>,
    timeout_ms: Option<f64>,
    strict: Option<bool>,
    node_id: Option<&str>,
) -> Result<serde_json::Value> {
    let mut body = serde_json::Map::new();
    if let Some(c) = count {
        if !c.is_finite() {
            return Err(Error::InvalidArgument(format!(
                "Invalid count {}: expected a whole number of copies",
                js_number(c)
            )));
        }
        let n = if c.fract() == 0.0 && c.abs() < 9_007_199_254_740_992.0 {
            serde_json::Value::from(c as i64)
        } else {
            serde_json::Value::from(c)
        };
        body.insert("count".into(), n);
    }
    if let Some(s) = strict {
        body.insert("strict".into(), s.into());
    }
    if let Some(n) = node_id {
        body.insert("nodeID".into(), n.into());
    }
    if let Some(t) = timeout_ms {
        if !t.is_finite() || t < 0.0 {
            return Err(Error::InvalidArgument(format!(
                "Invalid timeoutMs {}: expected a number of milliseconds, 0 or more",
                js_number(t)
            )));
        }
        body.insert("timeout".into(), serde_json::Value::from((t / 1000.0).ceil() as u64));
    }
    Ok(serde_json::Value::Object(body))
}

/// A copy as fork and clone answers describe it: only what reaching it takes is required.
#[derive(serde::Deserialize)]
struct CopiedSandbox {
    #[serde(rename = "sandboxID")]
    sandbox_id: String,
    #[serde(rename = "envdVersion", default)]
    envd_version: Option<String>,
    #[serde(rename = "envdAccessToken", default)]
    envd_access_token: Option<String>,
    #[serde(rename = "trafficAccessToken", default)]
    traffic_access_token: Option<String>,
    #[serde(default)]
    domain: Option<String>,
}

impl From<CopiedSandbox> for SandboxConnection {
    fn from(s: CopiedSandbox) -> Self {
        SandboxConnection {
            sandbox_id: s.sandbox_id,
            sandbox_domain: s.domain.filter(|d| !d.is_empty()),
            envd_version: s.envd_version.unwrap_or_else(|| "0.0.0".into()),
            envd_access_token: s.envd_access_token,
            traffic_access_token: s.traffic_access_token.filter(|t| !t.is_empty()),
        }
    }
}

/// Why one copy of a fork did not start (`{code, message}`).
#[derive(serde::Deserialize)]
struct CopyError {
    #[serde(default)]
    code: i64,
    #[serde(default)]
    message: Option<String>,
}

/// One entry of a fork's answer.
#[derive(serde::Deserialize)]
struct ForkEntry {
    #[serde(default)]
    sandbox: Option<CopiedSandbox>,
    #[serde(default)]
    error: Option<CopyError>,
}

/// The entries of a fork's answer, each the copy or why it did not start, mapped as the e2b SDK
/// maps them: a code of 404 is a `NotFoundError`, any other code what the same status of a
/// response would be (401 `AuthenticationError`, 429 `RateLimitError`, else `SandboxError
/// "<code>: <message>"`); an entry with neither is `Failed to start forked sandbox`.
pub fn fork_results(body: &[u8]) -> Result<Vec<Result<SandboxConnection>>> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(Vec::new());
    }
    let entries: Vec<ForkEntry> = serde_json::from_slice(body)
        .map_err(|e| Error::Sandbox(format!("201: invalid response body (fork sandbox): {e}")))?;
    Ok(entries
        .into_iter()
        .map(|entry| match (entry.error, entry.sandbox) {
            (None, Some(sandbox)) => Ok(sandbox.into()),
            (None, None) => Err(Error::Sandbox("Failed to start forked sandbox".into())),
            (Some(CopyError { code: 404, message }), _) => {
                Err(Error::NotFound(format!("404: {}", message.unwrap_or_default())))
            }
            (Some(CopyError { code, message }), _) => {
                let status = u16::try_from(code).unwrap_or(0);
                Err(from_api_response(status, &ApiErrorBody::Text(message.unwrap_or_default())))
            }
        })
        .collect())
}

/// A clone's answer: `{sandboxes, snapshotTemplateId}`.
pub fn clone_result(body: &[u8]) -> Result<CloneResult> {
    #[derive(serde::Deserialize)]
    struct Answer {
        #[serde(default)]
        sandboxes: Option<Vec<CopiedSandbox>>,
        #[serde(rename = "snapshotTemplateId", default)]
        snapshot_template_id: Option<String>,
    }
    let a: Answer = serde_json::from_slice(body)
        .map_err(|e| Error::Sandbox(format!("201: invalid response body (clone sandbox): {e}")))?;
    Ok(CloneResult {
        sandboxes: a.sandboxes.unwrap_or_default().into_iter().map(SandboxConnection::from).collect(),
        snapshot_template_id: a.snapshot_template_id.filter(|s| !s.is_empty()),
    })
}

/// `encodeURIComponent`: everything but `A-Z a-z 0-9 - _ . ! ~ * ' ( )` is percent-encoded.
pub fn encode_uri_component(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.!~*'()".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// `URLSearchParams` serialization of one name or value (application/x-www-form-urlencoded).
fn form_urlencode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"*-._".contains(&b) {
            out.push(b as char);
        } else if b == b' ' {
            out.push('+');
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The `metadata` query value exactly as the JS SDK sends it: each key and value
/// `encodeURIComponent`ed, joined by `URLSearchParams`, and (by openapi-fetch) encoded once more.
pub fn encode_metadata_query(pairs: &[(String, String)]) -> String {
    let joined = pairs
        .iter()
        .map(|(k, v)| {
            format!("{}={}", form_urlencode(&encode_uri_component(k)), form_urlencode(&encode_uri_component(v)))
        })
        .collect::<Vec<_>>()
        .join("&");
    encode_uri_component(&joined)
}

/// The query string of `GET /v2/sandboxes` (openapi-fetch order: metadata, state, limit, nextToken).
pub fn sandbox_list_query(
    metadata: Option<&[(String, String)]>,
    state: Option<&[String]>,
    limit: Option<u32>,
    next_token: Option<&str>,
) -> String {
    let mut parts = Vec::new();
    if let Some(m) = metadata {
        parts.push(format!("metadata={}", encode_metadata_query(m)));
    }
    if let Some(s) = state {
        // Arrays: form style, not exploded: each value encoded, joined by ','.
        parts.push(format!("state={}", s.iter().map(|v| encode_uri_component(v)).collect::<Vec<_>>().join(",")));
    }
    if let Some(l) = limit {
        parts.push(format!("limit={l}"));
    }
    if let Some(t) = next_token {
        parts.push(format!("nextToken={}", encode_uri_component(t)));
    }
    parts.join("&")
}

/// The query string of `GET /snapshots` (e2b's order: sandboxID, name, then sandbank's
/// metadata, encoded as the sandbox list's).
pub fn snapshot_list_query(opts: &SnapshotListOpts, next_token: Option<&str>) -> String {
    let (sandbox_id, limit) = (opts.sandbox_id.as_deref(), opts.limit);
    let mut parts = Vec::new();
    if let Some(s) = sandbox_id {
        parts.push(format!("sandboxID={}", encode_uri_component(s)));
    }
    if let Some(n) = &opts.name {
        parts.push(format!("name={}", encode_uri_component(n)));
    }
    if let Some(m) = opts.metadata.as_deref().filter(|m| !m.is_empty()) {
        parts.push(format!("metadata={}", encode_metadata_query(m)));
    }
    if let Some(l) = limit {
        parts.push(format!("limit={l}"));
    }
    if let Some(t) = next_token {
        parts.push(format!("nextToken={}", encode_uri_component(t)));
    }
    parts.join("&")
}

/// A control-plane response as openapi-fetch sees it.
#[derive(Debug)]
pub(crate) struct ApiResponse {
    pub status: u16,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl ApiResponse {
    /// openapi-fetch's `error`: `None` for 2xx, **and** for any 204 or `Content-Length: 0`
    /// response (a bodyless error counts as success, as in the JS SDK).
    pub fn error(&self) -> Option<ApiErrorBody> {
        let empty = self.status == 204
            || self.headers.get(reqwest::header::CONTENT_LENGTH).is_some_and(|v| v.as_bytes() == b"0");
        if empty || (200..300).contains(&self.status) {
            return None;
        }
        Some(ApiErrorBody::parse(&self.body))
    }

    /// `handleApiError`, or `Ok` when there is no error.
    pub fn check(&self) -> Result<()> {
        match self.error() {
            None => Ok(()),
            Some(body) => Err(from_api_response(self.status, &body)),
        }
    }

    /// Any status but 2xx is an error, with or without a body (the e2b SDK's `handleApiError`,
    /// novita-sandbox's `createRawApiError`): the calls they make outside openapi-fetch's rules.
    pub fn check_status(&self) -> Result<()> {
        if (200..300).contains(&self.status) {
            return Ok(());
        }
        Err(from_api_response(self.status, &ApiErrorBody::parse(&self.body)))
    }

    pub fn json<T: serde::de::DeserializeOwned>(&self, what: &str) -> Result<T> {
        if self.body.is_empty() {
            return Err(Error::Other(format!("{what}: empty response body")));
        }
        serde_json::from_slice(&self.body)
            .map_err(|e| Error::Sandbox(format!("{}: invalid response body ({what}): {e}", self.status)))
    }

    pub fn next_token(&self) -> Option<String> {
        self.headers.get("x-next-token").and_then(|v| v.to_str().ok()).filter(|s| !s.is_empty()).map(str::to_string)
    }
}

/// `compareVersions(v, "0.1.0") < 0` for the SDK's TemplateError check.
fn version_below(v: &str, min: (u64, u64, u64)) -> bool {
    let core = v.trim_start_matches('v').split(['-', '+']).next().unwrap_or("");
    let mut it = core.split('.').map(|p| p.parse::<u64>().unwrap_or(0));
    let got = (it.next().unwrap_or(0), it.next().unwrap_or(0), it.next().unwrap_or(0));
    got < min
}

pub(crate) fn envd_version_at_least(v: &str, min: (u64, u64, u64)) -> bool {
    !version_below(v, min)
}

/// The control-plane client. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Api {
    config: Config,
}

impl Api {
    pub fn new(config: Config) -> Self {
        Self { config }
    }

    pub fn from_config(config: ConnectionConfig) -> Self {
        Self { config: Arc::new(config) }
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    pub(crate) async fn send(
        &self,
        method: Method,
        path: &str,
        query: &str,
        body: Option<serde_json::Value>,
    ) -> Result<ApiResponse> {
        self.send_with_timeout(method, path, query, body, self.config.request_timeout(None)).await
    }

    /// [`Api::send`] with its own request timeout (`None`: none).
    async fn send_with_timeout(
        &self,
        method: Method,
        path: &str,
        query: &str,
        body: Option<serde_json::Value>,
        timeout: Option<std::time::Duration>,
    ) -> Result<ApiResponse> {
        let body = body.map(|b| serde_json::to_vec(&b).expect("JSON"));
        self.send_raw(method, path, query, body, timeout).await
    }

    /// A request whose JSON body is already serialized (to keep a struct's key order, which a
    /// `serde_json::Value` would sort).
    pub(crate) async fn send_raw(
        &self,
        method: Method,
        path: &str,
        query: &str,
        json_body: Option<Vec<u8>>,
        timeout: Option<std::time::Duration>,
    ) -> Result<ApiResponse> {
        let mut url = format!("{}{}", self.config.api_url, path);
        if !query.is_empty() {
            url.push('?');
            url.push_str(query);
        }
        let mut req = self.config.http.request(method, url).headers(header_map(&self.config.api_headers())?);
        if let Some(b) = json_body {
            req = req.header(reqwest::header::CONTENT_TYPE, "application/json").body(b);
        }
        if let Some(t) = timeout {
            req = req.timeout(t);
        }
        let res = req.send().await.map_err(|e| from_transport(&e))?;
        let status = res.status().as_u16();
        let headers = res.headers().clone();
        let body = res.bytes().await.map_err(|e| from_transport(&e))?;
        Ok(ApiResponse { status, headers, body })
    }

    /// `Sandbox.create`: `POST /sandboxes`.
    pub async fn create(&self, opts: SandboxCreateOpts) -> Result<SandboxConnection> {
        let template = opts.template.clone().unwrap_or_else(|| DEFAULT_TEMPLATE.to_string());
        let (auto_pause, auto_resume) = resolve_lifecycle(opts.lifecycle.as_ref(), opts.auto_pause)?;
        let body = rest::NewSandbox {
            template_id: template,
            timeout: Some(timeout_to_seconds(opts.timeout_ms.unwrap_or(DEFAULT_SANDBOX_TIMEOUT_MS))),
            auto_pause: Some(auto_pause),
            auto_resume: auto_resume.map(|enabled| rest::AutoResume { enabled }),
            // Novita's surface has no files-only pause at the end time.
            auto_pause_memory: None,
            // The `network` create option is not in this SDK yet.
            network: None,
            secure: Some(opts.secure.unwrap_or(true)),
            allow_internet_access: Some(opts.allow_internet_access.unwrap_or(true)),
            metadata: opts.metadata.clone(),
            env_vars: opts.envs.clone(),
            disk_size_mb: opts.disk_size_mb,
        };
        let res = self.send(Method::POST, "/sandboxes", "", Some(serde_json::to_value(&body).expect("JSON"))).await?;
        res.check()?;
        let data: rest::Sandbox = res.json("create sandbox")?;
        if version_below(&data.envd_version, (0, 1, 0)) {
            let _ = self.kill(&data.sandbox_id).await;
            return Err(Error::Template(
                "You need to update the template to use the new SDK. You can do this by running `novita-sandbox-cli template build` in the directory with the template.".into(),
            ));
        }
        Ok(connection(data))
    }

    /// `Sandbox.connect`: `POST /sandboxes/{id}/connect` (resumes a paused sandbox).
    pub async fn connect(&self, sandbox_id: &str, opts: SandboxConnectOpts) -> Result<SandboxConnection> {
        let body = rest::ConnectSandbox {
            timeout: timeout_to_seconds(opts.timeout_ms.unwrap_or(DEFAULT_SANDBOX_TIMEOUT_MS)),
            secure: opts.secure,
        };
        let path = format!("/sandboxes/{}/connect", encode_uri_component(sandbox_id));
        let res = self.send(Method::POST, &path, "", Some(serde_json::to_value(&body).expect("JSON"))).await?;
        if res.error().and_then(|e| e.code()) == Some(404) {
            return Err(Error::SandboxNotFound(format!("Paused sandbox {sandbox_id} not found")));
        }
        res.check()?;
        Ok(connection(res.json("connect sandbox")?))
    }

    /// `Sandbox.kill`: `true` when killed, `false` when the API says 404.
    pub async fn kill(&self, sandbox_id: &str) -> Result<bool> {
        let path = format!("/sandboxes/{}", encode_uri_component(sandbox_id));
        let res = self.send(Method::DELETE, &path, "", None).await?;
        if res.error().and_then(|e| e.code()) == Some(404) {
            return Ok(false);
        }
        res.check()?;
        Ok(true)
    }

    /// `Sandbox.getFullInfo` (getInfo drops `envd_access_token` and `sandbox_domain`).
    pub async fn get_info(&self, sandbox_id: &str) -> Result<SandboxInfo> {
        let path = format!("/sandboxes/{}", encode_uri_component(sandbox_id));
        let res = self.send(Method::GET, &path, "", None).await?;
        if res.error().and_then(|e| e.code()) == Some(404) {
            return Err(Error::SandboxNotFound(format!("Sandbox {sandbox_id} not found")));
        }
        res.check()?;
        if res.body.is_empty() {
            return Err(Error::Other("Sandbox not found".into()));
        }
        let detail: rest::SandboxDetail = res.json("sandbox info")?;
        Ok(detail.into())
    }

    /// `Sandbox.setTimeout`: `POST /sandboxes/{id}/timeout {timeout: ceil(ms/1000)}`.
    pub async fn set_timeout(&self, sandbox_id: &str, timeout_ms: u64) -> Result<()> {
        let path = format!("/sandboxes/{}/timeout", encode_uri_component(sandbox_id));
        let body = serde_json::json!({ "timeout": timeout_to_seconds(timeout_ms) });
        let res = self.send(Method::POST, &path, "", Some(body)).await?;
        if res.error().and_then(|e| e.code()) == Some(404) {
            return Err(Error::SandboxNotFound(format!("Sandbox {sandbox_id} not found")));
        }
        res.check()
    }

    /// sandbank's own: publishes a sandbox port on the local engine's loopback
    /// (`POST /sandboxes/{id}/ports/{port}`) and returns its `host:port`.
    pub async fn publish_port(&self, sandbox_id: &str, port: u16) -> Result<String> {
        let path = format!("/sandboxes/{}/ports/{port}", encode_uri_component(sandbox_id));
        let res = self.send_with_timeout(Method::POST, &path, "", None, Some(PUBLISH_TIMEOUT)).await?;
        if res.error().and_then(|e| e.code()) == Some(404) {
            return Err(Error::SandboxNotFound(format!("Sandbox {sandbox_id} not found")));
        }
        res.check()?;
        let published: serde_json::Value = res.json("published port")?;
        published["host"].as_str().map(str::to_string).ok_or_else(|| Error::Other("the server named no host".into()))
    }

    /// sandbank's own: `GET /snapshots/{id}/diff`, what a snapshot changed against its parent.
    pub async fn snapshot_diff(&self, snapshot_id: &str) -> Result<rest::SnapshotDiff> {
        let path = format!("/snapshots/{}/diff", encode_uri_component(snapshot_id));
        let res = self.send(Method::GET, &path, "", None).await?;
        if res.error().and_then(|e| e.code()) == Some(404) {
            return Err(Error::NotFound(format!("Snapshot {snapshot_id} not found")));
        }
        res.check()?;
        res.json("snapshot diff")
    }

    /// sandbank's own `Sandbox.restore(id, snapshotId, {force})`: `POST /sandboxes/{id}/restore`
    /// rolls the sandbox back to a snapshot in place. A 404 names the sandbox or the snapshot;
    /// a refusal (409: paused, another lineage) is a `SandboxError` with the server's reason.
    pub async fn restore(&self, sandbox_id: &str, snapshot_id: &str, force: bool) -> Result<()> {
        if snapshot_id.trim().is_empty() {
            return Err(Error::InvalidArgument(format!(
                "restore: snapshotId {snapshot_id:?} is empty: give the snapshot's ID or name"
            )));
        }
        let body = rest::RestoreSandbox { snapshot_id: snapshot_id.to_string(), force: force.then_some(true) };
        let path = format!("/sandboxes/{}/restore", encode_uri_component(sandbox_id));
        let res = self.send(Method::POST, &path, "", Some(serde_json::to_value(&body).expect("JSON"))).await?;
        match res.error() {
            Some(e) if e.code() == Some(404) => {
                if e.message().contains("napshot") {
                    Err(Error::NotFound(format!("Snapshot {snapshot_id} not found")))
                } else {
                    Err(Error::SandboxNotFound(format!("Sandbox {sandbox_id} not found")))
                }
            }
            _ => res.check(),
        }
    }

    /// `Sandbox.pause`: `true` = paused, `false` = already paused (code 409).
    pub async fn pause(&self, sandbox_id: &str) -> Result<bool> {
        let path = format!("/sandboxes/{}/pause", encode_uri_component(sandbox_id));
        let res = self.send(Method::POST, &path, "", None).await?;
        match res.error().and_then(|e| e.code()) {
            Some(404) => Err(Error::SandboxNotFound(format!("Sandbox {sandbox_id} not found"))),
            Some(409) => Ok(false),
            _ => res.check().map(|()| true),
        }
    }

    /// `Sandbox.getMetrics(id, {start, end})`: `GET /sandboxes/{id}/metrics?start=&end=` (unix
    /// seconds). Errors as `handleApiError` maps them (no not-found special case, as in the SDK).
    pub async fn get_metrics(&self, sandbox_id: &str, opts: SandboxMetricsOpts) -> Result<Vec<SandboxMetrics>> {
        let query = metrics_query(opts)?;
        let path = format!("/sandboxes/{}/metrics", encode_uri_component(sandbox_id));
        let res = self.send(Method::GET, &path, &query, None).await?;
        res.check()?;
        if res.body.is_empty() {
            return Ok(Vec::new());
        }
        res.json("sandbox metrics")
    }

    /// `Sandbox.createSnapshot`: `POST /sandboxes/{id}/snapshots {}`.
    pub async fn create_snapshot(&self, sandbox_id: &str) -> Result<SnapshotInfo> {
        self.create_snapshot_with(sandbox_id, &CreateSnapshotOpts::default()).await
    }

    /// `Sandbox.createSnapshot(id, {name, metadata, ttlMs})`.
    pub async fn create_snapshot_with(&self, sandbox_id: &str, opts: &CreateSnapshotOpts) -> Result<SnapshotInfo> {
        self.refuse_legacy("Sandbox.createSnapshot")?;
        let body = snapshot_body(opts)?;
        let path = format!("/sandboxes/{}/snapshots", encode_uri_component(sandbox_id));
        let res = self.send(Method::POST, &path, "", Some(body)).await?;
        if res.error().and_then(|e| e.code()) == Some(404) {
            return Err(Error::SandboxNotFound(format!("Sandbox {sandbox_id} not found")));
        }
        res.check()?;
        res.json("create snapshot")
    }

    /// `GET /templates`: the templates of the server (the CLI's `templates ls`).
    pub async fn list_templates(&self) -> Result<Vec<sandbank_protocol::rest::TemplateInfo>> {
        let res = self.send(Method::GET, "/templates", "", None).await?;
        res.check()?;
        res.json("list templates")
    }

    /// `Sandbox.deleteSnapshot`: `DELETE /templates/{id}`; `false` when the API says 404.
    pub async fn delete_snapshot(&self, snapshot_id: &str) -> Result<bool> {
        let path = format!("/templates/{}", encode_uri_component(snapshot_id));
        let res = self.send(Method::DELETE, &path, "", None).await?;
        if res.error().and_then(|e| e.code()) == Some(404) {
            return Ok(false);
        }
        res.check()?;
        Ok(true)
    }

    /// `Sandbox.fork` (e2b): `POST /sandboxes/{id}/fork {count, timeout}`. The sandbox is
    /// snapshotted with its memory and goes on; each copy started from that snapshot, or why it
    /// did not ([`fork_results`]). An unknown sandbox is `SandboxNotFoundError`.
    pub async fn fork_sandbox(
        &self,
        sandbox_id: &str,
        opts: SandboxForkOpts,
    ) -> Result<Vec<Result<SandboxConnection>>> {
        let body = copy_body(opts.count, opts.timeout_ms, None, None)?;
        let path = format!("/sandboxes/{}/fork", encode_uri_component(sandbox_id));
        let res = self.send(Method::POST, &path, "", Some(body)).await?;
        if res.status == 404 {
            return Err(Error::SandboxNotFound(format!("Sandbox {sandbox_id} not found")));
        }
        res.check_status()?;
        fork_results(&res.body)
    }

    /// `Sandbox.clone` (novita-sandbox): `POST /sandboxes/{id}/clone {count, strict, timeout}`,
    /// with a request timeout of [`CLONE_REQUEST_TIMEOUT_MS`] unless the caller set one. An
    /// unknown sandbox is `SandboxNotFoundError`.
    pub async fn clone_sandboxes(&self, sandbox_id: &str, opts: SandboxCloneOpts) -> Result<CloneResult> {
        let body = copy_body(
            Some(opts.count.unwrap_or(1.0)),
            opts.timeout_ms,
            Some(opts.strict.unwrap_or(false)),
            opts.node_id.as_deref().filter(|n| !n.is_empty()),
        )?;
        let path = format!("/sandboxes/{}/clone", encode_uri_component(sandbox_id));
        let timeout = self.config.request_timeout(Some(opts.request_timeout_ms.unwrap_or(CLONE_REQUEST_TIMEOUT_MS)));
        let res = self.send_with_timeout(Method::POST, &path, "", Some(body), timeout).await?;
        if res.status == 404 {
            return Err(Error::SandboxNotFound(format!("Sandbox {sandbox_id} not found")));
        }
        res.check_status()?;
        clone_result(&res.body)
    }

    pub(crate) fn refuse_legacy(&self, feature: &str) -> Result<()> {
        if self.config.is_legacy_domain {
            return Err(Error::Sandbox(format!("{feature} is not supported on legacy domains")));
        }
        Ok(())
    }
}

fn connection(data: rest::Sandbox) -> SandboxConnection {
    SandboxConnection {
        sandbox_id: data.sandbox_id,
        sandbox_domain: data.domain.filter(|d| !d.is_empty()),
        envd_version: data.envd_version,
        envd_access_token: data.envd_access_token,
        traffic_access_token: data.traffic_access_token.filter(|t| !t.is_empty()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metadata_is_triple_encoded_like_the_sdk() {
        let m = vec![("a b".to_string(), "c&d".to_string())];
        assert_eq!(encode_metadata_query(&m), "a%252520b%3Dc%252526d");
        // The server's decoder undoes it.
        let once = percent_encoding::percent_decode_str("a%252520b%3Dc%252526d").decode_utf8().unwrap();
        assert_eq!(sandbank_protocol::metadata::decode_filter(&once).unwrap(), m);
        let two = vec![("k1".to_string(), "v1".to_string()), ("k2".to_string(), "x~y(z)'!*".to_string())];
        let q = encode_metadata_query(&two);
        let once = percent_encoding::percent_decode_str(&q).decode_utf8().unwrap();
        assert_eq!(sandbank_protocol::metadata::decode_filter(&once).unwrap(), two);
    }

    #[test]
    fn list_queries_follow_openapi_fetch() {
        let m = vec![("a b".to_string(), "c&d".to_string())];
        let st = vec!["running".to_string(), "paused".to_string()];
        assert_eq!(
            sandbox_list_query(Some(&m), Some(&st), Some(10), Some("t/k=")),
            "metadata=a%252520b%3Dc%252526d&state=running,paused&limit=10&nextToken=t%2Fk%3D"
        );
        assert_eq!(sandbox_list_query(None, None, None, None), "");
        let o = |sandbox_id: Option<&str>, limit| SnapshotListOpts {
            sandbox_id: sandbox_id.map(Into::into),
            limit,
            ..Default::default()
        };
        assert_eq!(snapshot_list_query(&o(None, Some(1)), None), "limit=1");
        assert_eq!(snapshot_list_query(&o(Some("sb1"), Some(1)), Some("tok2")), "sandboxID=sb1&limit=1&nextToken=tok2");
        let filtered = SnapshotListOpts { name: Some("my snap".into()), metadata: Some(m.clone()), ..o(None, None) };
        assert_eq!(snapshot_list_query(&filtered, None), "name=my%20snap&metadata=a%252520b%3Dc%252526d");
    }

    #[test]
    fn snapshot_bodies() {
        assert_eq!(snapshot_body(&CreateSnapshotOpts::default()).unwrap(), serde_json::json!({}));
        let o = CreateSnapshotOpts {
            name: Some("n".into()),
            metadata: Some([("k".to_string(), "v".to_string())].into()),
            ttl_ms: Some(1500.0),
        };
        assert_eq!(snapshot_body(&o).unwrap(), serde_json::json!({"name": "n", "metadata": {"k": "v"}, "ttl": 2}));
        let never = CreateSnapshotOpts { ttl_ms: Some(0.0), ..Default::default() };
        assert_eq!(snapshot_body(&never).unwrap(), serde_json::json!({"ttl": 0}));
        for bad in [-1.0, f64::NAN, f64::INFINITY] {
            let e = snapshot_body(&CreateSnapshotOpts { ttl_ms: Some(bad), ..Default::default() }).unwrap_err();
            assert_eq!(e.kind(), "InvalidArgumentError", "{bad}");
        }
    }

    #[test]
    fn path_params_are_uri_component_encoded() {
        assert_eq!(encode_uri_component("team/snap:default"), "team%2Fsnap%3Adefault");
        assert_eq!(encode_uri_component("abc123"), "abc123");
    }

    #[test]
    fn bodyless_errors_count_as_success_like_openapi_fetch() {
        let mk = |status: u16, cl: Option<&str>, body: &str| {
            let mut headers = HeaderMap::new();
            if let Some(cl) = cl {
                headers.insert(reqwest::header::CONTENT_LENGTH, cl.parse().unwrap());
            }
            ApiResponse { status, headers, body: Bytes::from(body.to_string()) }
        };
        assert!(mk(404, Some("0"), "").error().is_none());
        assert!(mk(204, None, "").error().is_none());
        assert!(mk(200, None, "[]").error().is_none());
        let e = mk(404, None, r#"{"code":404,"message":"gone"}"#).error().unwrap();
        assert_eq!(e.code(), Some(404));
        assert_eq!(mk(500, None, "boom").check().unwrap_err(), Error::Sandbox("500: boom".into()));
    }

    #[test]
    fn lifecycle_resolves_like_get_lifecycle_and_rejects_bad_values() {
        let l = |t: &str, r: Option<bool>| SandboxLifecycle { on_timeout: Some(t.into()), auto_resume: r };
        let unset = SandboxLifecycle { on_timeout: None, auto_resume: None };
        assert_eq!(resolve_lifecycle(Some(&unset), Some(true)).unwrap(), (false, None));
        assert_eq!(resolve_lifecycle(None, None).unwrap(), (false, None));
        assert_eq!(resolve_lifecycle(None, Some(false)).unwrap(), (false, None));
        assert_eq!(resolve_lifecycle(None, Some(true)).unwrap(), (true, Some(false)));
        assert_eq!(resolve_lifecycle(Some(&l("pause", None)), None).unwrap(), (true, Some(false)));
        assert_eq!(resolve_lifecycle(Some(&l("pause", Some(true))), None).unwrap(), (true, Some(true)));
        // An explicit lifecycle wins over autoPause.
        assert_eq!(resolve_lifecycle(Some(&l("kill", None)), Some(true)).unwrap(), (false, None));
        let e = resolve_lifecycle(Some(&l("hibernate", None)), None).unwrap_err();
        assert_eq!(
            e,
            Error::InvalidArgument("Invalid lifecycle.onTimeout: \"hibernate\" (expected 'pause' or 'kill')".into())
        );
        let e = resolve_lifecycle(Some(&l("kill", Some(true))), None).unwrap_err();
        assert_eq!(e.kind(), "InvalidArgumentError");
        // The request body: autoResume only with pause, as novita-sandbox sends it.
        let body = |lc: Option<SandboxLifecycle>, ap: Option<bool>| {
            let (p, r) = resolve_lifecycle(lc.as_ref(), ap).unwrap();
            serde_json::to_value(rest::NewSandbox {
                template_id: "base".into(),
                auto_pause: Some(p),
                auto_resume: r.map(|enabled| rest::AutoResume { enabled }),
                ..Default::default()
            })
            .unwrap()
        };
        assert_eq!(body(None, None), serde_json::json!({"templateID": "base", "autoPause": false}));
        assert_eq!(
            body(Some(l("pause", Some(true))), None),
            serde_json::json!({"templateID": "base", "autoPause": true, "autoResume": {"enabled": true}})
        );
    }

    #[test]
    fn metrics_query_rounds_to_seconds_like_math_round() {
        let q = |s: Option<f64>, e: Option<f64>| metrics_query(SandboxMetricsOpts { start_ms: s, end_ms: e });
        assert_eq!(q(None, None).unwrap(), "");
        assert_eq!(q(Some(1_700_000_000_499.0), Some(1_700_000_000_500.0)).unwrap(), "start=1700000000&end=1700000001");
        assert_eq!(q(None, Some(1_000.0)).unwrap(), "end=1");
        let e = q(Some(f64::NAN), None).unwrap_err();
        assert_eq!(e, Error::InvalidArgument("Invalid start: expected a valid Date, got Invalid Date".into()));
        let m: Vec<SandboxMetrics> = serde_json::from_str(
            r#"[{"timestamp":"2025-01-02T03:04:05Z","timestampUnix":1735787045,"cpuCount":2,"cpuUsedPct":12.5,"memUsed":1048576,"memTotal":2097152,"diskUsed":10,"diskTotal":20}]"#,
        )
        .unwrap();
        assert_eq!(m[0].timestamp.timestamp(), 1_735_787_045);
        assert_eq!((m[0].cpu_used_pct, m[0].cpu_count, m[0].mem_total), (12.5, 2.0, 2_097_152.0));
    }

    #[test]
    fn copy_bodies_carry_what_the_caller_gave() {
        let b = |c, t, s, n| copy_body(c, t, s, n).map(|v| v.to_string());
        // e2b's fork: only what is set.
        assert_eq!(b(None, None, None, None).unwrap(), "{}");
        assert_eq!(b(Some(2.0), Some(120_000.0), None, None).unwrap(), r#"{"count":2,"timeout":120}"#);
        // Seconds rounded up, as timeoutToSeconds does; 0 stays 0.
        assert_eq!(b(None, Some(1.0), None, None).unwrap(), r#"{"timeout":1}"#);
        assert_eq!(b(None, Some(0.0), None, None).unwrap(), r#"{"timeout":0}"#);
        // Novita's clone: strict and the node too.
        assert_eq!(b(Some(1.0), None, Some(true), Some("n1")).unwrap(), r#"{"count":1,"nodeID":"n1","strict":true}"#);
        // The count's range is the server's to check: a bad count goes as it is, so its 400 names it.
        assert_eq!(b(Some(0.0), None, None, None).unwrap(), r#"{"count":0}"#);
        assert_eq!(b(Some(-1.0), None, None, None).unwrap(), r#"{"count":-1}"#);
        assert_eq!(b(Some(1.5), None, None, None).unwrap(), r#"{"count":1.5}"#);
        let served = sandbank_protocol::body::parse_object::<rest::CopyRequest>(br#"{"count":1.5}"#).unwrap_err();
        assert!(served.contains("\"count\"") && served.contains("1.5"), "{served}");
        // What JSON cannot carry, and a timeout that is no number of milliseconds: refused here.
        assert_eq!(
            b(Some(f64::NAN), None, None, None).unwrap_err(),
            Error::InvalidArgument("Invalid count NaN: expected a whole number of copies".into())
        );
        assert_eq!(
            b(Some(f64::INFINITY), None, None, None).unwrap_err().to_string(),
            "Invalid count Infinity: expected a whole number of copies"
        );
        let e = b(None, Some(-1.0), None, None).unwrap_err();
        assert_eq!(
            e,
            Error::InvalidArgument("Invalid timeoutMs -1: expected a number of milliseconds, 0 or more".into())
        );
        assert_eq!(e.kind(), "InvalidArgumentError");
        assert!(b(None, Some(f64::NAN), None, None).unwrap_err().to_string().starts_with("Invalid timeoutMs NaN:"));
    }

    #[test]
    fn fork_entries_map_like_the_e2b_sdk() {
        let body = br#"[
            {"sandbox":{"sandboxID":"a1","templateID":"t","clientID":"c","envdVersion":"0.5.7","envdAccessToken":"tok","trafficAccessToken":"","domain":""}},
            {"error":{"code":404,"message":"gone"}},
            {"error":{"code":429,"message":"slow down"}},
            {"error":{"code":500,"message":"boom"}},
            {"error":{"code":401,"message":"who"},"sandbox":{"sandboxID":"x","envdVersion":"1"}},
            {}
        ]"#;
        let r = fork_results(body).unwrap();
        assert_eq!(r.len(), 6);
        assert_eq!(
            r[0],
            Ok(SandboxConnection {
                sandbox_id: "a1".into(),
                sandbox_domain: None,
                envd_version: "0.5.7".into(),
                envd_access_token: Some("tok".into()),
                traffic_access_token: None,
            })
        );
        assert_eq!(r[1], Err(Error::NotFound("404: gone".into())));
        assert_eq!(r[2], Err(Error::RateLimit("Rate limit exceeded, please try again later - slow down".into())));
        assert_eq!(r[3], Err(Error::Sandbox("500: boom".into())));
        // An error wins over a sandbox.
        assert_eq!(r[4].as_ref().unwrap_err().kind(), "AuthenticationError");
        assert_eq!(r[5], Err(Error::Sandbox("Failed to start forked sandbox".into())));
        assert_eq!(fork_results(b"").unwrap(), vec![]);
        let e = fork_results(br#"{"sandboxes":[]}"#).unwrap_err();
        assert!(e.to_string().starts_with("201: invalid response body (fork sandbox)"), "{e}");
        // The server's own entries, as it writes them.
        let served = vec![
            rest::ForkResult {
                sandbox: Some(rest::Sandbox {
                    sandbox_id: "s1".into(),
                    template_id: "snap".into(),
                    client_id: "sandbank".into(),
                    envd_version: "0.5.7".into(),
                    envd_access_token: Some("k".into()),
                    traffic_access_token: None,
                    domain: None,
                    alias: None,
                }),
                error: None,
            },
            rest::ForkResult {
                sandbox: None,
                error: Some(rest::CodeMessage { code: 507, message: "Not enough space".into() }),
            },
        ];
        let r = fork_results(&serde_json::to_vec(&served).unwrap()).unwrap();
        assert_eq!(r[0].as_ref().unwrap().sandbox_id, "s1");
        assert_eq!(r[0].as_ref().unwrap().envd_access_token.as_deref(), Some("k"));
        assert_eq!(r[1], Err(Error::Sandbox("507: Not enough space".into())));
    }

    #[test]
    fn clone_answers_map_like_novita_sandbox() {
        let served = rest::CloneResult {
            sandboxes: vec![rest::Sandbox {
                sandbox_id: "s1".into(),
                template_id: "snap".into(),
                client_id: "sandbank".into(),
                envd_version: "0.5.7".into(),
                envd_access_token: Some("k".into()),
                traffic_access_token: None,
                domain: Some("example.com".into()),
                alias: None,
            }],
            snapshot_template_id: "snap:default".into(),
        };
        let r = clone_result(&serde_json::to_vec(&served).unwrap()).unwrap();
        assert_eq!(r.snapshot_template_id.as_deref(), Some("snap:default"));
        assert_eq!(r.sandboxes.len(), 1);
        assert_eq!(r.sandboxes[0].sandbox_id, "s1");
        assert_eq!(r.sandboxes[0].sandbox_domain.as_deref(), Some("example.com"));
        // What the cloud may leave out: the envd version (0.0.0, as novita-sandbox assumes), the
        // snapshot, the list.
        let r = clone_result(br#"{"sandboxes":[{"sandboxID":"s2"}]}"#).unwrap();
        assert_eq!((r.sandboxes[0].envd_version.as_str(), r.snapshot_template_id), ("0.0.0", None));
        assert_eq!(clone_result(b"{}").unwrap().sandboxes, vec![]);
        assert_eq!(clone_result(br#""nope""#).unwrap_err().kind(), "SandboxError");
    }

    #[test]
    fn any_status_but_2xx_fails_fork_and_clone() {
        let mk = |status: u16, body: &str| {
            let mut headers = HeaderMap::new();
            headers.insert(reqwest::header::CONTENT_LENGTH, body.len().to_string().parse().unwrap());
            ApiResponse { status, headers, body: Bytes::from(body.to_string()) }
        };
        assert_eq!(mk(201, "[]").check_status(), Ok(()));
        // openapi-fetch's check lets a bodyless error through; this one does not.
        assert_eq!(mk(502, "").check(), Ok(()));
        assert_eq!(mk(502, "").check_status(), Err(Error::Sandbox("502: ".into())));
        assert_eq!(
            mk(400, r#"{"code":400,"message":"Invalid count 0: must be between 1 and 100"}"#).check_status(),
            Err(Error::Sandbox("400: Invalid count 0: must be between 1 and 100".into()))
        );
        assert_eq!(mk(401, r#"{"code":401,"message":"no"}"#).check_status().unwrap_err().kind(), "AuthenticationError");
    }

    #[test]
    fn version_gate() {
        assert!(version_below("0.0.9", (0, 1, 0)));
        assert!(!version_below("0.1.0", (0, 1, 0)));
        assert!(!version_below("0.5.7", (0, 1, 0)));
        assert!(envd_version_at_least("0.5.7", (0, 4, 0)));
        assert!(!envd_version_at_least("0.3.9", (0, 4, 0)));
    }
}
