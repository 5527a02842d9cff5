//! `/sandboxes…`: create, get, list, kill, timeout, connect.

use super::error::ApiError;
use super::extract::{query_pairs, JsonBody, SandboxId};
use super::registry::{page, Entry};
use super::AppState;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use chrono::{DateTime, TimeDelta, Utc};
use sandbank_engine::SandboxSpec;
use sandbank_protocol::metadata::decode_filter;
use sandbank_protocol::pagination::{parse_limit, PageToken};
use sandbank_protocol::rest::{
    ConnectSandbox, ConnectSandboxV2, ListedSandbox, NewSandbox, Sandbox, SandboxDetail, SandboxState, TimeoutBody,
};
use sandbank_protocol::ENVD_VERSION;

/// The `clientID` every sandbox reports (the cloud's node ID).
pub const CLIENT_ID: &str = "sandbank";
/// Seconds, as the SDKs' default.
pub const DEFAULT_TIMEOUT: u64 = 300;
/// Ten years: more is surely a mistake, and would overflow time arithmetic sooner or later.
pub const MAX_TIMEOUT: u64 = 10 * 365 * 24 * 3600;

fn deadline(now: DateTime<Utc>, timeout: u64) -> Result<DateTime<Utc>, ApiError> {
    if timeout > MAX_TIMEOUT {
        return Err(ApiError::BadRequest(format!("Invalid timeout {timeout}: must be at most {MAX_TIMEOUT} seconds")));
    }
    Ok(now + TimeDelta::seconds(timeout as i64))
}

fn sandbox_body(e: &Entry) -> Sandbox {
    Sandbox {
        sandbox_id: e.id.clone(),
        template_id: e.template.clone(),
        client_id: CLIENT_ID.into(),
        envd_version: ENVD_VERSION.into(),
        envd_access_token: None,
        traffic_access_token: None,
        domain: None,
        alias: None,
    }
}

fn listed(e: &Entry) -> ListedSandbox {
    ListedSandbox {
        sandbox_id: e.id.clone(),
        template_id: e.template.clone(),
        client_id: CLIENT_ID.into(),
        alias: None,
        started_at: e.started_at,
        end_at: e.end_at,
        state: SandboxState::Running,
        cpu_count: e.limits.cpu_count,
        memory_mb: e.limits.memory_mb,
        disk_size_mb: e.limits.disk_mb,
        envd_version: ENVD_VERSION.into(),
        metadata: e.metadata.clone(),
    }
}

fn detail(e: &Entry) -> SandboxDetail {
    SandboxDetail {
        base: listed(e),
        envd_access_token: None,
        domain: None,
        allow_internet_access: Some(e.internet),
        lifecycle: None,
    }
}

pub async fn create(
    State(state): State<AppState>,
    JsonBody(req): JsonBody<NewSandbox>,
) -> Result<(StatusCode, Json<Sandbox>), ApiError> {
    let template = req.template_id.trim().to_string();
    if template.is_empty() {
        return Err(ApiError::BadRequest("Invalid templateID \"\": must not be empty".into()));
    }
    let timeout = req.timeout.unwrap_or(DEFAULT_TIMEOUT);
    deadline(Utc::now(), timeout)?;
    let backend = state.backend.clone();
    let exists = {
        let backend = backend.clone();
        let t = template.clone();
        tokio::task::spawn_blocking(move || backend.template_exists(&t))
            .await
            .map_err(|e| ApiError::Internal(format!("template lookup failed: {e}")))?
    };
    if !exists {
        return Err(ApiError::TemplateNotFound(template));
    }
    let spec = SandboxSpec {
        id: sandbank_engine::id::new_id(),
        template: template.clone(),
        env_vars: req.env_vars.unwrap_or_default().into_iter().collect(),
        limits: backend.default_limits(),
        allow_internet_access: req.allow_internet_access,
    };
    let limits = spec.limits;
    let metadata = req.metadata.unwrap_or_default();
    // The creation runs on its own task: a client that disconnects midway must not leave a
    // half-registered sandbox behind (the sandbox is registered and expires as usual).
    let task = tokio::spawn(async move {
        let handle = state.backend.create(spec).await?;
        let started_at = Utc::now();
        let entry = Entry {
            id: handle.id.clone(),
            // For a snapshot: its ID without the tag, as the cloud reports it.
            template: if handle.template_id.is_empty() { template } else { handle.template_id.clone() },
            started_at,
            end_at: deadline(started_at, timeout)?,
            limits,
            metadata,
            envd_socket: handle.envd_socket.clone(),
            internet: handle.internet,
        };
        state.registry.insert(entry.clone());
        state.watch_exit(handle.id.clone(), handle.exited);
        tracing::info!(id = %entry.id, template = %entry.template, timeout, "sandbox created");
        Ok::<_, ApiError>(entry)
    });
    let entry = task.await.map_err(|e| ApiError::Internal(format!("sandbox creation failed: {e}")))??;
    Ok((StatusCode::CREATED, Json(sandbox_body(&entry))))
}

pub async fn get_one(State(state): State<AppState>, SandboxId(id): SandboxId) -> Result<Json<SandboxDetail>, ApiError> {
    let entry = state.registry.get(&id).ok_or(ApiError::SandboxNotFound(id))?;
    Ok(Json(detail(&entry)))
}

/// The filters common to both lists: `metadata` (all pairs must match) and `state`.
struct Filters {
    metadata: Vec<(String, String)>,
    running: bool,
    /// E2B: a template ID or name.
    template: Option<String>,
    /// E2B: started at or after.
    started_after: Option<DateTime<Utc>>,
}

impl Filters {
    /// `state` may come comma-joined (Novita) or repeated (E2B's `state=running&state=paused`).
    fn parse(pairs: &[(String, String)]) -> Result<Self, ApiError> {
        let mut metadata = Vec::new();
        let mut states = Vec::new();
        let mut template = None;
        let mut started_after = None;
        for (k, v) in pairs {
            match k.as_str() {
                "metadata" => metadata.extend(decode_filter(v).map_err(ApiError::BadRequest)?),
                "template" if !v.is_empty() => template = Some(v.clone()),
                "startedAfter" if !v.is_empty() => {
                    let t = DateTime::parse_from_rfc3339(v).map_err(|e| {
                        ApiError::BadRequest(format!("Invalid startedAfter {v:?}: {e} (expected RFC 3339)"))
                    })?;
                    started_after = Some(t.with_timezone(&Utc));
                }
                "state" | "state[]" => {
                    for s in v.split(',').map(str::trim).filter(|s| !s.is_empty()) {
                        states.push(SandboxState::parse(s).ok_or_else(|| {
                            ApiError::BadRequest(format!("Invalid state {s:?}: must be \"running\" or \"paused\""))
                        })?);
                    }
                }
                _ => {}
            }
        }
        let running = states.is_empty() || states.contains(&SandboxState::Running);
        Ok(Filters { metadata, running, template, started_after })
    }

    fn matches(&self, e: &Entry) -> bool {
        self.running
            && self.metadata.iter().all(|(k, v)| e.metadata.get(k) == Some(v))
            && self.template.as_ref().is_none_or(|t| *t == e.template)
            && self.started_after.is_none_or(|t| e.started_at >= t)
    }
}

fn first<'a>(pairs: &'a [(String, String)], key: &str) -> Option<&'a str> {
    pairs.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
}

/// `GET /v2/sandboxes`: filtered, paginated, newest first, cursor in `X-Next-Token`.
pub async fn list_v2(State(state): State<AppState>, RawQuery(q): RawQuery) -> Result<Response, ApiError> {
    let pairs = query_pairs(q.as_deref())?;
    let filters = Filters::parse(&pairs)?;
    let limit = parse_limit(first(&pairs, "limit")).map_err(ApiError::BadRequest)?;
    let after = match first(&pairs, "nextToken").filter(|t| !t.is_empty()) {
        Some(t) => Some(PageToken::decode(t).map_err(|e| ApiError::BadRequest(e.to_string()))?),
        None => None,
    };
    let entries: Vec<Entry> = state.registry.all().into_iter().filter(|e| filters.matches(e)).collect();
    let oldest_first = match first(&pairs, "order") {
        None | Some("") | Some("desc") => false,
        Some("asc") => true,
        Some(o) => return Err(ApiError::BadRequest(format!("Invalid order {o:?}: must be \"asc\" or \"desc\""))),
    };
    let (items, token) = page(entries, after.as_ref(), limit as usize, oldest_first);
    let body: Vec<ListedSandbox> = items.iter().map(listed).collect();
    let mut headers = HeaderMap::new();
    if let Some(t) = token {
        let v = HeaderValue::from_str(&t.encode()).map_err(|e| ApiError::Internal(e.to_string()))?;
        headers.insert("x-next-token", v);
    }
    Ok((headers, Json(body)).into_response())
}

/// `GET /sandboxes` (deprecated): every running sandbox, newest first, no pagination.
pub async fn list_v1(
    State(state): State<AppState>,
    RawQuery(q): RawQuery,
) -> Result<Json<Vec<ListedSandbox>>, ApiError> {
    let pairs = query_pairs(q.as_deref())?;
    let filters = Filters::parse(&pairs)?;
    let entries: Vec<Entry> = state.registry.all().into_iter().filter(|e| filters.matches(e)).collect();
    let n = entries.len();
    let (items, _) = page(entries, None, n, false);
    Ok(Json(items.iter().map(listed).collect()))
}

pub async fn kill(State(state): State<AppState>, SandboxId(id): SandboxId) -> Result<StatusCode, ApiError> {
    state.registry.remove(&id).ok_or_else(|| ApiError::SandboxNotFound(id.clone()))?;
    let backend = state.backend.clone();
    // Gone from the API at once; the engine's cleanup finishes even if the client goes away.
    let task = tokio::spawn(async move { backend.kill(&id).await.map(|_| id) });
    match task.await {
        Ok(Ok(id)) => {
            tracing::info!(%id, "sandbox killed");
            Ok(StatusCode::NO_CONTENT)
        }
        Ok(Err(e)) => Err(ApiError::Internal(format!("Failed to kill the sandbox: {e}"))),
        Err(e) => Err(ApiError::Internal(format!("Failed to kill the sandbox: {e}"))),
    }
}

pub async fn set_timeout(
    State(state): State<AppState>,
    SandboxId(id): SandboxId,
    JsonBody(body): JsonBody<TimeoutBody>,
) -> Result<StatusCode, ApiError> {
    let end = deadline(Utc::now(), body.timeout)?;
    state.registry.set_end(&id, end, false).ok_or(ApiError::SandboxNotFound(id))?;
    Ok(StatusCode::NO_CONTENT)
}

pub async fn connect(
    State(state): State<AppState>,
    SandboxId(id): SandboxId,
    JsonBody(body): JsonBody<ConnectSandbox>,
) -> Result<Json<Sandbox>, ApiError> {
    let end = deadline(Utc::now(), body.timeout)?;
    let entry = state.registry.set_end(&id, end, true).ok_or(ApiError::SandboxNotFound(id))?;
    Ok(Json(sandbox_body(&entry)))
}

/// `POST /v2/sandboxes/{id}/connect`: the same, with the timeout optional (default 300 s).
pub async fn connect_v2(
    State(state): State<AppState>,
    SandboxId(id): SandboxId,
    JsonBody(body): JsonBody<ConnectSandboxV2>,
) -> Result<Json<Sandbox>, ApiError> {
    let end = deadline(Utc::now(), body.timeout.unwrap_or(DEFAULT_TIMEOUT))?;
    let entry = state.registry.set_end(&id, end, true).ok_or(ApiError::SandboxNotFound(id))?;
    Ok(Json(sandbox_body(&entry)))
}

/// `POST /sandboxes/{id}/pause`: the local engine cannot pause (it would have to keep process
/// memory); an unknown sandbox is still a 404, as the SDKs expect.
pub async fn pause(State(state): State<AppState>, SandboxId(id): SandboxId) -> Result<StatusCode, ApiError> {
    state.registry.get(&id).ok_or_else(|| ApiError::SandboxNotFound(id.clone()))?;
    Err(ApiError::NotImplemented(format!(
        "Sandbox \"{id}\" cannot be paused: the local engine does not support pause; it keeps running"
    )))
}
