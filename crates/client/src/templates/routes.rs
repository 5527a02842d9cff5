//! The control plane's template routes, as e2b 2.51 calls them: each one's errors are its
//! class's (`BuildError` for the build routes, `FileUploadError` for uploads, `TemplateError`
//! for names and tags), with `AuthenticationError` and `RateLimitError` for 401 and 429 as
//! everywhere. Any status but 2xx is an error, with or without a body.

use super::spec::TemplateSpec;
use super::{strip_ansi, LogEntry};
use crate::api::{encode_uri_component, Api, ApiResponse};
use crate::error::{from_api_response, ApiErrorBody, BuildFailure, Error, Result};
use chrono::{DateTime, Utc};
use reqwest::Method;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::time::Duration;

/// The error of a failed response, of class `class` (e2b's `handleApiError`: the body's
/// `message`, else the body, else the status text).
fn check(res: &ApiResponse, class: fn(String) -> Error) -> Result<()> {
    if (200..300).contains(&res.status) {
        return Ok(());
    }
    let mut content = ApiErrorBody::parse(&res.body).message();
    if content.is_empty() {
        let status = reqwest::StatusCode::from_u16(res.status).ok();
        content = status.and_then(|s| s.canonical_reason()).unwrap_or_default().to_string();
    }
    Err(match from_api_response(res.status, &ApiErrorBody::Text(content)) {
        Error::Sandbox(message) => class(message),
        other => other,
    })
}

fn parse<T: serde::de::DeserializeOwned>(res: &ApiResponse, class: fn(String) -> Error, empty: &str) -> Result<T> {
    if res.body.iter().all(u8::is_ascii_whitespace) {
        return Err(class(empty.into()));
    }
    serde_json::from_slice(&res.body)
        .map_err(|e| class(format!("{}: invalid response body ({empty}): {e}", res.status)))
}

fn json<T: Serialize>(v: &T) -> Option<Vec<u8>> {
    Some(serde_json::to_vec(v).expect("JSON"))
}

/// The body of `POST /v3/templates` (undefined keys absent, as the SDK sends it).
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct NewBuild<'a> {
    name: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    tags: Option<&'a [String]>,
    #[serde(skip_serializing_if = "Option::is_none")]
    cpu_count: Option<u32>,
    #[serde(rename = "memoryMB", skip_serializing_if = "Option::is_none")]
    memory_mb: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    min_free_disk_mb: Option<u64>,
}

/// What `POST /v3/templates` answers (the fields the SDK reads).
#[derive(Clone, Debug, Deserialize)]
pub struct Requested {
    #[serde(rename = "templateID")]
    pub template_id: String,
    #[serde(rename = "buildID")]
    pub build_id: String,
    #[serde(default)]
    pub tags: Option<Vec<String>>,
}

/// `POST /v3/templates`: a new build of template `name` (`name:tag` names a tag too).
pub async fn request_build(
    api: &Api,
    name: &str,
    tags: Option<&[String]>,
    cpu_count: Option<u32>,
    memory_mb: Option<u64>,
    min_free_disk_mb: Option<u64>,
) -> Result<Requested> {
    let body = NewBuild { name, tags, cpu_count, memory_mb, min_free_disk_mb };
    let res = api.send_raw(Method::POST, "/v3/templates", "", json(&body), api.config().request_timeout(None)).await?;
    check(&res, Error::build)?;
    parse(&res, Error::build, "Failed to request build")
}

/// Where to upload a COPY step's archive, if the server lacks it.
#[derive(Clone, Debug, Deserialize)]
pub struct UploadLink {
    #[serde(default)]
    pub present: bool,
    #[serde(default)]
    pub url: Option<String>,
    #[serde(default)]
    pub headers: Option<HashMap<String, String>>,
}

/// `GET /templates/{id}/files/{hash}`.
pub async fn upload_link(api: &Api, template_id: &str, files_hash: &str) -> Result<UploadLink> {
    let path = format!("/templates/{}/files/{}", encode_uri_component(template_id), encode_uri_component(files_hash));
    let res = api.send(Method::GET, &path, "", None).await?;
    check(&res, Error::FileUpload)?;
    parse(&res, Error::FileUpload, "Failed to get file upload link")
}

/// `PUT <url>` of an archive of `size` bytes: the link's headers and an exact `Content-Length`;
/// no API key (the URL carries its own authorization) and no `Content-Type`.
pub async fn upload(
    api: &Api,
    link: &UploadLink,
    archive: tokio::fs::File,
    size: u64,
    timeout: Duration,
) -> Result<()> {
    let url = link.url.as_deref().ok_or_else(|| Error::FileUpload("Failed to get file upload link".into()))?;
    let mut req = api.config().http.put(url).timeout(timeout);
    for (k, v) in link.headers.iter().flatten().filter(|(k, _)| !k.eq_ignore_ascii_case("content-length")) {
        req = req.header(k.as_str(), v.as_str());
    }
    let body = reqwest::Body::wrap_stream(tokio_util::io::ReaderStream::new(archive));
    let res = req
        .header(reqwest::header::CONTENT_LENGTH, size)
        .body(body)
        .send()
        .await
        .map_err(|e| Error::FileUpload(format!("Failed to upload file: {}", crate::error::error_chain(&e))))?;
    if !res.status().is_success() {
        let text = res.status().canonical_reason().unwrap_or(res.status().as_str()).to_string();
        return Err(Error::FileUpload(format!("Failed to upload file: {text}")));
    }
    Ok(())
}

/// `POST /v2/templates/{id}/builds/{build}`: the steps; the build starts.
pub async fn trigger_build(api: &Api, template_id: &str, build_id: &str, spec: &TemplateSpec) -> Result<()> {
    let path = format!("/v2/templates/{}/builds/{}", encode_uri_component(template_id), encode_uri_component(build_id));
    let res = api.send_raw(Method::POST, &path, "", json(spec), api.config().request_timeout(None)).await?;
    check(&res, Error::build)
}

/// Why a build is where it is (an error's message, the step that failed).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BuildReason {
    pub message: String,
    pub step: Option<String>,
    pub log_entries: Vec<LogEntry>,
}

/// `Template.getBuildStatus`'s answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BuildStatus {
    pub template_id: String,
    pub build_id: String,
    /// `waiting`, `building`, `ready` or `error`.
    pub status: String,
    pub log_entries: Vec<LogEntry>,
    /// Deprecated raw lines, passed through.
    pub logs: Vec<String>,
    pub reason: Option<BuildReason>,
}

#[derive(Deserialize)]
struct WireEntry {
    timestamp: DateTime<Utc>,
    level: String,
    message: String,
    #[serde(default)]
    step: Option<serde_json::Value>,
}

/// A step name as sent: a string, or (in some servers) a number.
fn step_name(v: Option<serde_json::Value>) -> Option<String> {
    match v? {
        serde_json::Value::String(s) => Some(s),
        serde_json::Value::Null => None,
        other => Some(other.to_string()),
    }
}

impl From<WireEntry> for LogEntry {
    fn from(e: WireEntry) -> Self {
        LogEntry { timestamp: e.timestamp, level: e.level, message: strip_ansi(&e.message), step: step_name(e.step) }
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct WireReason {
    message: String,
    #[serde(default)]
    step: Option<serde_json::Value>,
    #[serde(default)]
    log_entries: Vec<WireEntry>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct WireStatus {
    #[serde(rename = "templateID")]
    template_id: String,
    #[serde(rename = "buildID")]
    build_id: String,
    status: String,
    log_entries: Vec<WireEntry>,
    #[serde(default)]
    logs: Vec<serde_json::Value>,
    #[serde(default)]
    reason: Option<WireReason>,
}

/// `GET /templates/{id}/builds/{build}/status[?logsOffset=N]`.
pub async fn build_status(
    api: &Api,
    template_id: &str,
    build_id: &str,
    logs_offset: Option<u64>,
) -> Result<BuildStatus> {
    let path =
        format!("/templates/{}/builds/{}/status", encode_uri_component(template_id), encode_uri_component(build_id));
    let query = logs_offset.map(|n| format!("logsOffset={n}")).unwrap_or_default();
    let res = api.send(Method::GET, &path, &query, None).await?;
    check(&res, Error::build)?;
    let s: WireStatus = parse(&res, Error::build, "Failed to get build status")?;
    Ok(BuildStatus {
        template_id: s.template_id,
        build_id: s.build_id,
        status: s.status,
        log_entries: s.log_entries.into_iter().map(LogEntry::from).collect(),
        logs: s.logs.into_iter().map(|l| l.as_str().map_or_else(|| l.to_string(), str::to_string)).collect(),
        reason: s.reason.map(|r| BuildReason {
            message: r.message,
            step: step_name(r.step),
            log_entries: r.log_entries.into_iter().map(LogEntry::from).collect(),
        }),
    })
}

impl BuildReason {
    /// The `BuildError` of a build that ended with this reason; `log` is the build's whole log,
    /// of which the failed step's lines go with it when the reason carries none.
    pub fn into_failure(self, log: &[LogEntry]) -> BuildFailure {
        let log_entries = match (self.log_entries.is_empty(), &self.step) {
            (true, Some(step)) => log.iter().filter(|e| e.step.as_ref() == Some(step)).cloned().collect(),
            _ => self.log_entries,
        };
        BuildFailure { message: self.message, step: self.step, log_entries }
    }
}

/// `Template.exists(name)`: `GET /templates/aliases/{name}`: 404 is no, 403 is yes (someone
/// else's), any other error a `TemplateError`.
pub async fn alias_exists(api: &Api, alias: &str) -> Result<bool> {
    let path = format!("/templates/aliases/{}", encode_uri_component(alias));
    let res = api.send(Method::GET, &path, "", None).await?;
    match res.status {
        404 => return Ok(false),
        403 => return Ok(true),
        _ => check(&res, Error::Template)?,
    }
    Ok(res.status != 204 && !res.body.is_empty())
}

/// `Template.assignTags`'s answer.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
pub struct TemplateTagInfo {
    #[serde(rename = "buildID")]
    pub build_id: String,
    pub tags: Vec<String>,
}

/// `POST /templates/tags {target, tags}`.
pub async fn assign_tags(api: &Api, target: &str, tags: &[String]) -> Result<TemplateTagInfo> {
    let body = serde_json::json!({ "target": target, "tags": tags });
    let res = api.send(Method::POST, "/templates/tags", "", Some(body)).await?;
    check(&res, Error::Template)?;
    parse(&res, Error::Template, "Failed to assign tags")
}

/// `DELETE /templates/tags {name, tags}`.
pub async fn remove_tags(api: &Api, name: &str, tags: &[String]) -> Result<()> {
    let body = serde_json::json!({ "name": name, "tags": tags });
    let res = api.send(Method::DELETE, "/templates/tags", "", Some(body)).await?;
    check(&res, Error::Template)
}

/// One tag of a template.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
pub struct TemplateTag {
    pub tag: String,
    #[serde(rename = "buildID")]
    pub build_id: String,
    #[serde(rename = "createdAt")]
    pub created_at: DateTime<Utc>,
}

/// `GET /templates/{id}/tags`.
pub async fn get_tags(api: &Api, template_id: &str) -> Result<Vec<TemplateTag>> {
    let path = format!("/templates/{}/tags", encode_uri_component(template_id));
    let res = api.send(Method::GET, &path, "", None).await?;
    check(&res, Error::Template)?;
    parse(&res, Error::Template, "Failed to get template tags")
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use reqwest::header::HeaderMap;

    fn res(status: u16, body: &str) -> ApiResponse {
        ApiResponse { status, headers: HeaderMap::new(), body: Bytes::from(body.to_string()) }
    }

    #[test]
    fn errors_take_the_class_of_the_route() {
        let e =
            check(&res(400, r#"{"code":400,"message":"Invalid template name \"A B\""}"#), Error::build).unwrap_err();
        assert_eq!((e.kind(), e.to_string().as_str()), ("BuildError", "400: Invalid template name \"A B\""));
        let e = check(&res(500, ""), Error::FileUpload).unwrap_err();
        assert_eq!((e.kind(), e.to_string().as_str()), ("FileUploadError", "500: Internal Server Error"));
        let e = check(&res(404, "gone"), Error::Template).unwrap_err();
        assert_eq!((e.kind(), e.to_string().as_str()), ("TemplateError", "404: gone"));
        assert_eq!(check(&res(401, "{}"), Error::build).unwrap_err().kind(), "AuthenticationError");
        assert_eq!(check(&res(202, ""), Error::build), Ok(()));
        let e = parse::<Requested>(&res(202, ""), Error::build, "Failed to request build").unwrap_err();
        assert_eq!(e.to_string(), "Failed to request build");
    }

    #[test]
    fn the_request_body_has_only_what_was_given() {
        let tags = vec!["v1".to_string()];
        let b =
            NewBuild { name: "x:v0", tags: Some(&tags), cpu_count: None, memory_mb: Some(512), min_free_disk_mb: None };
        assert_eq!(serde_json::to_string(&b).unwrap(), r#"{"name":"x:v0","tags":["v1"],"memoryMB":512}"#);
    }

    #[test]
    fn a_failure_carries_its_steps_log() {
        let at = Utc::now();
        let line = |m: &str, step: Option<&str>| LogEntry {
            timestamp: at,
            level: "info".into(),
            message: m.into(),
            step: step.map(Into::into),
        };
        let log = vec![line("[1/2] RUN true", Some("1")), line("oops", Some("2")), line("Build failed", None)];
        let reason = BuildReason { message: "failed".into(), step: Some("2".into()), log_entries: vec![] };
        let f = reason.into_failure(&log);
        assert_eq!(f.log_entries, vec![line("oops", Some("2"))]);
        let wire: WireStatus = serde_json::from_str(
            r#"{"templateID":"t","buildID":"b","status":"error","logEntries":[{"timestamp":"2025-01-01T00:00:00Z","level":"info","message":"\u001b[1mx\u001b[0m","step":3}],"reason":{"message":"m","step":"3"}}"#,
        )
        .unwrap();
        let e = LogEntry::from(wire.log_entries.into_iter().next().unwrap());
        assert_eq!((e.message.as_str(), e.step.as_deref()), ("x", Some("3")));
    }
}
