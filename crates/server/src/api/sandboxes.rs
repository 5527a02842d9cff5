//! `/sandboxes…`: create, get, list, kill, timeout, pause, connect (which resumes), metrics.

use super::error::ApiError;
use super::extract::{query_pairs, JsonBody, SandboxId};
use super::registry::{page, Entry, Lifecycle};
use super::AppState;
use axum::extract::{RawQuery, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use chrono::{DateTime, TimeDelta, Utc};
use sandbank_engine::{Resumed, SandboxSpec};
use sandbank_protocol::metadata::decode_filter;
use sandbank_protocol::pagination::{parse_limit, PageToken};
use sandbank_protocol::rest::{
    self as rest, ConnectSandbox, ConnectSandboxV2, ListedSandbox, NewSandbox, ResumedSandbox, Sandbox, SandboxDetail,
    SandboxMetric, SandboxState, TimeoutBody,
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
        envd_access_token: Some(e.access_token.clone()),
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
        state: e.state,
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
        envd_access_token: Some(e.access_token.clone()),
        domain: None,
        allow_internet_access: Some(e.internet),
        lifecycle: Some(rest::Lifecycle {
            auto_resume: e.lifecycle.auto_resume,
            on_timeout: if e.lifecycle.pause_on_timeout { "pause" } else { "kill" }.into(),
        }),
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
    // Novita and E2B send `autoPause` (pause instead of kill at the end time) and, with it,
    // `autoResume.enabled`.
    let pause_on_timeout = req.auto_pause.unwrap_or(false);
    let lifecycle = Lifecycle { pause_on_timeout, auto_resume: pause_on_timeout && req.auto_resume.is_some_and(|a| a.enabled) };
    // Every sandbox is secured, whatever `secure` says: on a shared host, a sandbox ID alone must
    // open nothing (e2b >= 2.5 creates sandboxes without the flag).
    let access_token = super::envd_auth::new_access_token();
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
            state: SandboxState::Running,
            timeout,
            lifecycle,
            access_token,
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
    states: Vec<SandboxState>,
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
        Ok(Filters { metadata, states, template, started_after })
    }

    fn matches(&self, e: &Entry) -> bool {
        (self.states.is_empty() || self.states.contains(&e.state))
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
    // Also here, not only when its PID 1 exits: a sandbox paused before a restart has no
    // process to exit.
    state.cpu_samples.forget(&id);
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
) -> Result<Response, ApiError> {
    connect_or_resume(&state, id, body.timeout).await
}

/// `POST /v2/sandboxes/{id}/connect`: the same, with the timeout optional (default 300 s).
pub async fn connect_v2(
    State(state): State<AppState>,
    SandboxId(id): SandboxId,
    JsonBody(body): JsonBody<ConnectSandboxV2>,
) -> Result<Response, ApiError> {
    connect_or_resume(&state, id, body.timeout.unwrap_or(DEFAULT_TIMEOUT)).await
}

/// A running sandbox: its end time is only ever extended, 200. A paused one is resumed and runs
/// for `timeout` seconds, 201; if the server restarted meanwhile, only its files were kept, and a
/// `Warning` header says so.
async fn connect_or_resume(state: &AppState, id: String, timeout: u64) -> Result<Response, ApiError> {
    let end = deadline(Utc::now(), timeout)?;
    let entry = state.registry.get(&id).ok_or_else(|| ApiError::SandboxNotFound(id.clone()))?;
    if entry.state == SandboxState::Running {
        let entry = state.registry.set_end(&id, end, true).ok_or(ApiError::SandboxNotFound(id))?;
        return Ok(Json(sandbox_body(&entry)).into_response());
    }
    let (entry, restarted) = resume(state, &id, timeout).await?;
    let mut res = (StatusCode::CREATED, Json(sandbox_body(&entry))).into_response();
    if restarted {
        res.headers_mut().insert(header::WARNING, HeaderValue::from_static(RESTARTED_WARNING));
    }
    Ok(res)
}

/// `POST /sandboxes/{id}/resume` (deprecated): 201 when resumed, 409 when it is running.
pub async fn resume_deprecated(
    State(state): State<AppState>,
    SandboxId(id): SandboxId,
    JsonBody(body): JsonBody<ResumedSandbox>,
) -> Result<Response, ApiError> {
    let entry = state.registry.get(&id).ok_or_else(|| ApiError::SandboxNotFound(id.clone()))?;
    if entry.state == SandboxState::Running {
        return Err(ApiError::Conflict(format!("Sandbox \"{id}\" is already running")));
    }
    connect_or_resume(&state, id, body.timeout.unwrap_or(DEFAULT_TIMEOUT)).await
}

/// Told to whoever resumes a sandbox that was paused when the server stopped.
pub const RESTARTED_WARNING: &str =
    "199 sandbank \"the server restarted while the sandbox was paused: its files were kept, its processes were not\"";

/// Resumes a paused sandbox for `timeout` seconds; returns its entry and whether it had to be
/// started again on its files. Also what envd traffic to an auto-resuming sandbox does.
pub async fn resume(state: &AppState, id: &str, timeout: u64) -> Result<(Entry, bool), ApiError> {
    let backend = state.backend.clone();
    let id2 = id.to_string();
    // On its own task: a client that goes away must not leave a half-resumed sandbox.
    let resumed = tokio::spawn(async move { backend.resume(&id2).await })
        .await
        .map_err(|e| ApiError::Internal(format!("resume failed: {e}")))??;
    let end = deadline(Utc::now(), timeout)?;
    let (socket, restarted) = match resumed {
        Resumed::Thawed => (None, false),
        Resumed::Restarted(handle) => {
            state.watch_exit(handle.id.clone(), handle.exited.clone());
            (Some(handle.envd_socket), true)
        }
    };
    let current = state.registry.get(id).ok_or_else(|| ApiError::SandboxNotFound(id.to_string()))?;
    let entry = state
        .registry
        .mark_running(id, end, socket.unwrap_or(current.envd_socket))
        .ok_or_else(|| ApiError::SandboxNotFound(id.to_string()))?;
    tracing::info!(%id, restarted, timeout, "sandbox resumed");
    Ok((entry, restarted))
}

/// `POST /sandboxes/{id}/pause`: freezes every process of the sandbox with its memory; 409 if
/// it is paused already.
pub async fn pause(State(state): State<AppState>, SandboxId(id): SandboxId) -> Result<StatusCode, ApiError> {
    let entry = state.registry.mark_paused(&id).map_err(|already| {
        if already {
            ApiError::Conflict(format!("Sandbox \"{id}\" is already paused"))
        } else {
            ApiError::SandboxNotFound(id.clone())
        }
    })?;
    pause_entry(&state, entry).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Has the engine pause a sandbox the registry marked paused; marks it running again if that
/// fails. Also what the expiry task does for `onTimeout: 'pause'`.
pub async fn pause_entry(state: &AppState, entry: Entry) -> Result<(), ApiError> {
    let id = entry.id.clone();
    let api = serde_json::to_string(&entry).map_err(|e| ApiError::Internal(e.to_string()))?;
    let backend = state.backend.clone();
    let id2 = id.clone();
    let paused = tokio::spawn(async move { backend.pause(&id2, api).await })
        .await
        .map_err(|e| ApiError::Internal(format!("pause failed: {e}")))?;
    match paused {
        Ok(()) => {
            tracing::info!(%id, "sandbox paused");
            Ok(())
        }
        Err(e) => {
            state.registry.mark_running(&id, entry.end_at, entry.envd_socket.clone());
            Err(e.into())
        }
    }
}

/// `GET /sandboxes/{id}/metrics?start=&end=` (unix seconds): one sample, taken now, if now is
/// in the range. CPU use is over the time since the previous sample, or since the start.
pub async fn metrics(
    State(state): State<AppState>,
    SandboxId(id): SandboxId,
    RawQuery(q): RawQuery,
) -> Result<Json<Vec<SandboxMetric>>, ApiError> {
    let pairs = query_pairs(q.as_deref())?;
    let bound = |key: &str| -> Result<Option<i64>, ApiError> {
        match first(&pairs, key).filter(|v| !v.is_empty()) {
            None => Ok(None),
            Some(v) => v.parse::<i64>().map(Some).map_err(|_| {
                ApiError::BadRequest(format!("Invalid {key} {v:?}: must be a unix time in seconds"))
            }),
        }
    };
    let (start, end) = (bound("start")?, bound("end")?);
    let entry = state.registry.get(&id).ok_or_else(|| ApiError::SandboxNotFound(id.clone()))?;
    let usage = state.backend.usage(&id).await?;
    let now = Utc::now();
    let cpu_used_pct = state.cpu_samples.percent(&id, entry.started_at, now, usage.cpu_ns, entry.limits.cpu_count);
    if state.registry.route(&id).is_none() {
        // Killed while its usage was read: whoever removed it may have forgotten its reading
        // before this one was kept.
        state.cpu_samples.forget(&id);
    }
    let t = now.timestamp();
    if start.is_some_and(|s| t < s) || end.is_some_and(|e| t > e) {
        return Ok(Json(Vec::new()));
    }
    Ok(Json(vec![SandboxMetric {
        timestamp: now,
        timestamp_unix: t,
        cpu_count: entry.limits.cpu_count,
        cpu_used_pct,
        mem_used: usage.memory_bytes,
        mem_total: entry.limits.memory_mb * 1024 * 1024,
        disk_used: usage.disk_bytes,
        disk_total: entry.limits.disk_mb * 1024 * 1024,
    }]))
}
