//! `/sandboxes…`: create, get, list, kill, timeout, pause, connect (which resumes), metrics.

use super::backend::Backend;
use super::error::ApiError;
use super::extract::{query_pairs, JsonBody, JsonBodyOrDefault, SandboxId};
use super::registry::{page, Entry, Lifecycle};
use super::AppState;
use axum::extract::{RawQuery, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use chrono::{DateTime, TimeDelta, Utc};
use sandbank_engine::{Limits, RestoreError, RestoreRefused, Resumed, SandboxSpec, SnapshotMode};
use sandbank_protocol::metadata::decode_filter;
use sandbank_protocol::pagination::{parse_limit, PageToken};
use sandbank_protocol::rest::{
    self as rest, ConnectSandbox, ConnectSandboxV2, CopyRequest, ListedSandbox, LogLevel, NewSandbox, PauseBody,
    RefreshBody, ResumedSandbox, Sandbox, SandboxDetail, SandboxMetric, SandboxState, SandboxesWithMetrics,
    TimeoutBody,
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

/// The create/connect answer; `domain` is the server's ([`AppState::domain`]).
fn sandbox_body(e: &Entry, domain: Option<&str>) -> Sandbox {
    Sandbox {
        sandbox_id: e.id.clone(),
        template_id: e.template.clone(),
        client_id: CLIENT_ID.into(),
        envd_version: ENVD_VERSION.into(),
        envd_access_token: Some(e.access_token.clone()),
        traffic_access_token: e.traffic_token.clone(),
        domain: domain.map(str::to_string),
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

fn detail(e: &Entry, root_is_host_root: bool) -> SandboxDetail {
    SandboxDetail {
        base: listed(e),
        envd_access_token: Some(e.access_token.clone()),
        domain: None,
        allow_internet_access: Some(e.internet),
        network: e.network.clone(),
        root_is_host_root: Some(root_is_host_root),
        lifecycle: Some(rest::Lifecycle {
            auto_resume: e.lifecycle.auto_resume,
            on_timeout: if e.lifecycle.pause_on_timeout { "pause" } else { "kill" }.into(),
        }),
    }
}

/// How long a create waits for the ready command of a template whose sandboxes run its start
/// command as they start (its snapshot kept files only).
const START_READY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(60);

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
    // A built-in template (the code interpreter's) not built yet is built now: the create waits.
    crate::templates::builtin::ensure(&state.templates, &backend, &template).await?;
    // A template built here starts from its build's snapshot, with its variables (the
    // request's win).
    let built = state.templates.resolve(&template);
    if built.is_some() {
        state.templates.count_start(&template);
    }
    let exists = built.is_some() || {
        let backend = backend.clone();
        let t = template.clone();
        tokio::task::spawn_blocking(move || backend.template_exists(&t))
            .await
            .map_err(|e| ApiError::Internal(format!("template lookup failed: {e}")))?
    };
    if !exists {
        return Err(ApiError::TemplateNotFound(template));
    }
    let egress = super::network::egress_of(req.network.as_ref()).await?;
    let network = req.network.clone();
    let built_here = built.is_some();
    // A template whose snapshot kept its files only: its start command runs now.
    let start_commands = built
        .as_ref()
        .filter(|b| b.start_on_create)
        .and_then(|b| Some((b.start_cmd.clone()?, b.ready_cmd.clone(), b.user.clone(), b.workdir.clone())));
    let (start_from, mut env_vars, default_user, default_workdir) = match built {
        Some(b) => (b.snapshot, b.envs, b.user, b.workdir),
        None => (template.clone(), Default::default(), None, None),
    };
    env_vars.extend(req.env_vars.unwrap_or_default());
    let start_envs = start_commands.as_ref().map(|_| env_vars.clone()).unwrap_or_default();
    let spec = SandboxSpec {
        id: sandbank_engine::id::new_id(),
        template: start_from,
        env_vars,
        default_user,
        default_workdir,
        limits: limits(backend.as_ref(), req.disk_size_mb)?,
        allow_internet_access: req.allow_internet_access,
        egress,
    };
    let metadata = req.metadata.unwrap_or_default();
    // Novita and E2B send `autoPause` (pause instead of kill at the end time) and, with it,
    // `autoResume.enabled`.
    let pause_on_timeout = req.auto_pause.unwrap_or(false);
    let auto_resume = pause_on_timeout && req.auto_resume.is_some_and(|a| a.enabled);
    // E2B's `autoPauseMemory: false`: the pause at the end time keeps files only, and such a
    // sandbox resumes only when asked (traffic cannot wake it).
    let files_only_on_timeout = pause_on_timeout && req.auto_pause_memory == Some(false);
    if files_only_on_timeout && auto_resume {
        return Err(ApiError::BadRequest(
            "Invalid lifecycle: autoResume cannot be combined with autoPauseMemory false (a files-only pause resumes only on connect)".into(),
        ));
    }
    let lifecycle = Lifecycle { pause_on_timeout, auto_resume, files_only_on_timeout };
    let start = Start { spec, template, built_here, timeout, metadata, lifecycle, network };
    // The creation runs on its own task: a client that disconnects midway must not leave a
    // half-registered sandbox behind (the sandbox is registered and expires as usual).
    let domain = state.domain.clone();
    let entry = tokio::spawn(async move {
        let entry = start_sandbox(state.clone(), start).await?;
        if let Some(commands) = start_commands {
            run_start_command(&state, &entry, commands, start_envs).await?;
        }
        Ok::<_, ApiError>(entry)
    })
    .await
    .map_err(|e| ApiError::Internal(format!("sandbox creation failed: {e}")))??;
    Ok((StatusCode::CREATED, Json(sandbox_body(&entry, domain.as_deref()))))
}

/// A template's start command, ready command, user and working directory.
type StartCommands = (String, Option<String>, Option<String>, Option<String>);

/// Runs the start command of a template whose snapshot kept its files only in its new sandbox,
/// and waits for its ready command; kills the sandbox and says why when that fails.
async fn run_start_command(
    state: &AppState,
    entry: &Entry,
    (start, ready, user, workdir): StartCommands,
    envs: std::collections::BTreeMap<String, String>,
) -> Result<(), ApiError> {
    let user = user.unwrap_or_else(|| "user".into());
    let envs = envs.into_iter().collect();
    let started = crate::templates::envd::start_and_wait(
        &entry.envd_socket,
        &user,
        workdir.as_deref(),
        &envs,
        &start,
        ready.as_deref(),
        START_READY_TIMEOUT,
    )
    .await;
    let Err(why) = started else { return Ok(()) };
    tracing::warn!(id = %entry.id, "the template's start command failed: {why}; the sandbox is killed");
    if state.registry.remove(&entry.id).is_some() {
        state.forget_extras(&entry.id);
        let _ = state.backend.kill(&entry.id).await;
    }
    Err(ApiError::Internal(format!("sandbox {}: {why}", entry.id)))
}

/// A new sandbox's limits: the server's defaults, with the disk limit the request asks for.
fn limits(backend: &dyn Backend, disk_size_mb: Option<u64>) -> Result<Limits, ApiError> {
    let defaults = backend.default_limits();
    match disk_size_mb {
        None => Ok(defaults),
        Some(0) => Err(ApiError::BadRequest("diskSizeMB must be at least 1, got 0".into())),
        Some(mb) if !backend.disk_limits() => Err(ApiError::Unsupported(format!(
            "diskSizeMB {mb}: this server's sandboxes have no disk limit (they need the btrfs layer store; see `sandbank doctor`)"
        ))),
        Some(mb) => Ok(Limits { disk_mb: mb, ..defaults }),
    }
}

/// A sandbox to start: a create's, or a copy's of a fork or a clone.
struct Start {
    spec: SandboxSpec,
    /// As asked for (a snapshot's may carry its tag).
    template: String,
    /// `template` is one built here (`crate::templates`): sandboxes report it, not its snapshot.
    built_here: bool,
    timeout: u64,
    metadata: std::collections::HashMap<String, String>,
    lifecycle: Lifecycle,
    network: Option<rest::SandboxNetwork>,
}

/// Starts a sandbox and registers it.
async fn start_sandbox(state: AppState, start: Start) -> Result<Entry, ApiError> {
    let Start { spec, template, built_here, timeout, metadata, lifecycle, network } = start;
    let limits = spec.limits;
    // Every sandbox is secured, whatever `secure` says: on a shared host, a sandbox ID alone must
    // open nothing (e2b >= 2.5 creates sandboxes without the flag).
    let access_token = super::envd_auth::new_access_token();
    let handle = state.backend.create(spec).await?;
    let started_at = Utc::now();
    let entry = Entry {
        id: handle.id.clone(),
        // For a snapshot: its ID without the tag, as the cloud reports it.
        template: if handle.template_id.is_empty() || built_here { template } else { handle.template_id.clone() },
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
        files_only: false,
        incarnation: 0,
        traffic_token: network
            .as_ref()
            .is_some_and(|n| n.allow_public_traffic == Some(false))
            .then(super::envd_auth::new_access_token),
        network,
    };
    state.registry.insert(entry.clone());
    state.watch_exit(handle.id.clone(), handle.exited);
    tracing::info!(id = %entry.id, template = %entry.template, timeout, "sandbox created");
    state.logs.record(
        &entry.id,
        LogLevel::Info,
        "sandbox created",
        &[("template", &entry.template), ("timeout", &timeout.to_string())],
    );
    Ok(entry)
}

pub async fn get_one(State(state): State<AppState>, SandboxId(id): SandboxId) -> Result<Json<SandboxDetail>, ApiError> {
    let entry = state.registry.get(&id).ok_or(ApiError::SandboxNotFound(id))?;
    Ok(Json(detail(&entry, state.backend.root_is_host_root())))
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
    let task = tokio::spawn(async move { kill_entry(&state, &id).await });
    task.await.map_err(|e| ApiError::Internal(format!("Failed to kill the sandbox: {e}")))??;
    Ok(StatusCode::NO_CONTENT)
}

/// Kills sandbox `id`: gone from the API at once, then from the engine.
async fn kill_entry(state: &AppState, id: &str) -> Result<(), ApiError> {
    state.registry.remove(id).ok_or_else(|| ApiError::SandboxNotFound(id.to_string()))?;
    // Also here, not only when its PID 1 exits: a sandbox paused before a restart has no
    // process to exit.
    state.forget_extras(id);
    state.backend.kill(id).await.map_err(|e| ApiError::Internal(format!("Failed to kill the sandbox: {e}")))?;
    tracing::info!(%id, "sandbox killed");
    Ok(())
}

pub async fn set_timeout(
    State(state): State<AppState>,
    SandboxId(id): SandboxId,
    JsonBody(body): JsonBody<TimeoutBody>,
) -> Result<StatusCode, ApiError> {
    let end = deadline(Utc::now(), body.timeout)?;
    state.registry.set_end(&id, end, false).ok_or_else(|| ApiError::SandboxNotFound(id.clone()))?;
    state.logs.record(&id, LogLevel::Info, "timeout set", &[("timeout", &body.timeout.to_string())]);
    Ok(StatusCode::NO_CONTENT)
}

/// Most copies one fork or clone may ask for (E2B's limit).
const MAX_COPIES: i64 = 100;

/// `POST /sandboxes/{id}/fork` (E2B) and `/clone` (Novita): the running sandbox is snapshotted
/// with its memory (frozen meanwhile, then it goes on), and `count` sandboxes are started from
/// that snapshot at once, each going on where the origin was. The request is checked as the cloud
/// checks it (a count of 1 to 100, even before the API key; then the key; then a sandbox that
/// runs). The copies have the origin's metadata, internet access and network rules, and the
/// timeout asked for. E2B's answer: one entry per copy, its sandbox or its error. Novita's: the
/// copies that started (all or none with `strict`) and the snapshot's ID.
pub async fn copy(
    State(state): State<AppState>,
    headers: HeaderMap,
    route: axum::extract::MatchedPath,
    id: Result<SandboxId, ApiError>,
    JsonBodyOrDefault(body): JsonBodyOrDefault<CopyRequest>,
) -> Result<Response, ApiError> {
    // The body first, as the cloud does: a bad count is a 400 whatever the sandbox.
    if let Some(count) = body.count.filter(|c| !(1..=MAX_COPIES).contains(c)) {
        return Err(ApiError::BadRequest(format!("Invalid count {count}: must be between 1 and {MAX_COPIES}")));
    }
    if let Some(timeout) = body.timeout.filter(|t| *t < 0) {
        return Err(ApiError::BadRequest(format!("Invalid timeout {timeout}: must not be negative")));
    }
    state.authorize(&headers)?;
    let SandboxId(id) = id?;
    let origin =
        state.registry.get(&id).filter(|e| e.state == SandboxState::Running).ok_or(ApiError::SandboxNotFound(id))?;
    let count = body.count.unwrap_or(1) as usize;
    let timeout = body.timeout.map_or(DEFAULT_TIMEOUT, |t| t as u64);
    deadline(Utc::now(), timeout)?;
    let strict = body.strict.unwrap_or(false);
    let novita = route.as_str().ends_with("/clone");
    let egress = super::network::egress_of(origin.network.as_ref()).await?;
    let domain = state.domain.clone();
    // On its own task: a client that goes away must not leave copies half made.
    let task = tokio::spawn(async move {
        let snapshot = state.backend.snapshot(&origin.id, None, Some(SnapshotMode::Full)).await?;
        let snapshot_id = super::snapshots::record_created(&state, &snapshot);
        let starts = (0..count).map(|_| {
            let spec = SandboxSpec {
                id: sandbank_engine::id::new_id(),
                template: snapshot.id.clone(),
                env_vars: Default::default(),
                default_user: None,
                default_workdir: None,
                limits: origin.limits,
                allow_internet_access: Some(origin.internet),
                egress: egress.clone(),
            };
            let start = Start {
                spec,
                template: snapshot.id.clone(),
                built_here: false,
                timeout,
                metadata: origin.metadata.clone(),
                lifecycle: Lifecycle::default(),
                network: origin.network.clone(),
            };
            start_sandbox(state.clone(), start)
        });
        let copies = futures_util::future::join_all(starts).await;
        if strict && copies.iter().any(Result::is_err) {
            for copy in copies.iter().flatten() {
                let _ = kill_entry(&state, &copy.id).await;
            }
            let first = copies.into_iter().find_map(Result::err).expect("one failed");
            return Err(first);
        }
        Ok::<_, ApiError>((snapshot_id, copies))
    });
    let (snapshot_id, copies) = task.await.map_err(|e| ApiError::Internal(format!("copy failed: {e}")))??;
    let response = if novita {
        let sandboxes = copies.iter().flatten().map(|c| sandbox_body(c, domain.as_deref())).collect();
        Json(rest::CloneResult { sandboxes, snapshot_template_id: snapshot_id }).into_response()
    } else {
        let results: Vec<rest::ForkResult> = copies
            .iter()
            .map(|c| match c {
                Ok(entry) => rest::ForkResult { sandbox: Some(sandbox_body(entry, domain.as_deref())), error: None },
                Err(e) => rest::ForkResult {
                    sandbox: None,
                    error: Some(rest::CodeMessage { code: e.status().as_u16(), message: e.to_string() }),
                },
            })
            .collect();
        Json(results).into_response()
    };
    Ok((StatusCode::CREATED, response).into_response())
}

/// `POST /sandboxes/{id}/refreshes`: the sandbox lives at least `duration` seconds more (E2B's
/// default and minimum: 15); an end time already later stays.
pub async fn refresh(
    State(state): State<AppState>,
    SandboxId(id): SandboxId,
    JsonBodyOrDefault(body): JsonBodyOrDefault<RefreshBody>,
) -> Result<StatusCode, ApiError> {
    const MIN_REFRESH: u64 = 15;
    let end = deadline(Utc::now(), body.duration.unwrap_or(MIN_REFRESH).max(MIN_REFRESH))?;
    state.registry.set_end(&id, end, true).ok_or(ApiError::SandboxNotFound(id))?;
    Ok(StatusCode::NO_CONTENT)
}

pub async fn connect(
    State(state): State<AppState>,
    SandboxId(id): SandboxId,
    JsonBody(body): JsonBody<ConnectSandbox>,
) -> Result<Response, ApiError> {
    connect_or_resume(&state, id, body.timeout, false).await
}

/// `POST /v2/sandboxes/{id}/connect`: the same, with the timeout optional (default 300 s).
pub async fn connect_v2(
    State(state): State<AppState>,
    SandboxId(id): SandboxId,
    JsonBody(body): JsonBody<ConnectSandboxV2>,
) -> Result<Response, ApiError> {
    // `memory: false` (e2b's `onResume: 'reboot'`): a paused sandbox starts again on its files.
    connect_or_resume(&state, id, body.timeout.unwrap_or(DEFAULT_TIMEOUT), body.memory == Some(false)).await
}

/// A running sandbox: its end time is only ever extended, 200. A paused one is resumed and runs
/// for `timeout` seconds, 201; if the server restarted meanwhile, only its files were kept, and a
/// `Warning` header says so.
async fn connect_or_resume(state: &AppState, id: String, timeout: u64, reboot: bool) -> Result<Response, ApiError> {
    let end = deadline(Utc::now(), timeout)?;
    let entry = state.registry.get(&id).ok_or_else(|| ApiError::SandboxNotFound(id.clone()))?;
    if entry.state == SandboxState::Running {
        let entry = state.registry.set_end(&id, end, true).ok_or(ApiError::SandboxNotFound(id))?;
        return Ok(Json(sandbox_body(&entry, state.domain.as_deref())).into_response());
    }
    let (entry, restarted) = resume(state, &id, timeout, reboot).await?;
    let mut res = (StatusCode::CREATED, Json(sandbox_body(&entry, state.domain.as_deref()))).into_response();
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
    connect_or_resume(&state, id, body.timeout.unwrap_or(DEFAULT_TIMEOUT), false).await
}

/// Told to whoever resumes a sandbox that was paused when the server stopped.
pub const RESTARTED_WARNING: &str =
    "199 sandbank \"the server restarted while the sandbox was paused: its files were kept, its processes were not\"";

/// Resumes a paused sandbox for `timeout` seconds (starting it again on its files with `reboot`);
/// returns its entry and whether it was started again on its files unasked (it was paused with
/// its memory when the server stopped). Also what envd traffic to an auto-resuming sandbox does.
pub async fn resume(state: &AppState, id: &str, timeout: u64, reboot: bool) -> Result<(Entry, bool), ApiError> {
    let backend = state.backend.clone();
    let id2 = id.to_string();
    // On its own task: a client that goes away must not leave a half-resumed sandbox.
    let resumed = tokio::spawn(async move { backend.resume(&id2, reboot).await })
        .await
        .map_err(|e| ApiError::Internal(format!("resume failed: {e}")))??;
    let end = deadline(Utc::now(), timeout)?;
    let (handle, restarted_on_files) = match resumed {
        Resumed::Thawed => (None, false),
        Resumed::Restarted(handle) => (Some(handle), true),
        Resumed::Restored(handle) => (Some(handle), false),
    };
    let socket = handle.map(|h| {
        state.registry.next_incarnation(id);
        state.watch_exit(h.id.clone(), h.exited.clone());
        h.envd_socket
    });
    let current = state.registry.get(id).ok_or_else(|| ApiError::SandboxNotFound(id.to_string()))?;
    // Started again unasked only when it was paused with its memory, which did not come back
    // (no CRIU when the server stopped), and no reboot was asked for.
    let restarted = restarted_on_files && !current.files_only && !reboot;
    let socket = socket.unwrap_or(current.envd_socket);
    let entry =
        state.registry.mark_running(id, end, socket).ok_or_else(|| ApiError::SandboxNotFound(id.to_string()))?;
    tracing::info!(%id, restarted, timeout, "sandbox resumed");
    state.logs.record(id, LogLevel::Info, "sandbox resumed", &[("restarted", &restarted.to_string())]);
    Ok((entry, restarted))
}

/// `POST /sandboxes/{id}/pause`: freezes every process of the sandbox with its memory (with
/// `{"memory": false}`: ends them and keeps its files only); 409 if it is paused already.
pub async fn pause(
    State(state): State<AppState>,
    SandboxId(id): SandboxId,
    JsonBodyOrDefault(body): JsonBodyOrDefault<PauseBody>,
) -> Result<StatusCode, ApiError> {
    let keep_memory = match super::snapshots::parse_mode(body.mode.as_deref())? {
        Some(SnapshotMode::Filesystem) => false,
        None | Some(SnapshotMode::Full) => body.memory != Some(false),
    };
    let entry = state.registry.mark_paused(&id, !keep_memory).map_err(|already| {
        if already {
            ApiError::Conflict(format!("Sandbox \"{id}\" is already paused"))
        } else {
            ApiError::SandboxNotFound(id.clone())
        }
    })?;
    pause_entry(&state, entry, keep_memory).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Has the engine pause a sandbox the registry marked paused; marks it running again if that
/// fails. Also what the expiry task does for `onTimeout: 'pause'`.
pub async fn pause_entry(state: &AppState, entry: Entry, keep_memory: bool) -> Result<(), ApiError> {
    let id = entry.id.clone();
    let api = serde_json::to_string(&entry).map_err(|e| ApiError::Internal(e.to_string()))?;
    let backend = state.backend.clone();
    let id2 = id.clone();
    let paused = tokio::spawn(async move { backend.pause(&id2, api, keep_memory).await })
        .await
        .map_err(|e| ApiError::Internal(format!("pause failed: {e}")))?;
    match paused {
        Ok(()) => {
            tracing::info!(%id, "sandbox paused");
            state.logs.record(&id, LogLevel::Info, "sandbox paused", &[("memory", &keep_memory.to_string())]);
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
            Some(v) => v
                .parse::<i64>()
                .map(Some)
                .map_err(|_| ApiError::BadRequest(format!("Invalid {key} {v:?}: must be a unix time in seconds"))),
        }
    };
    let (start, end) = (bound("start")?, bound("end")?);
    let sample = sample(&state, &id).await?;
    if start.is_some_and(|s| sample.timestamp_unix < s) || end.is_some_and(|e| sample.timestamp_unix > e) {
        return Ok(Json(Vec::new()));
    }
    Ok(Json(vec![sample]))
}

/// One metrics sample of a sandbox, taken now. CPU use is over the time since the previous
/// sample, or since the start.
async fn sample(state: &AppState, id: &str) -> Result<SandboxMetric, ApiError> {
    let entry = state.registry.get(id).ok_or_else(|| ApiError::SandboxNotFound(id.to_string()))?;
    let usage = state.backend.usage(id).await?;
    let now = Utc::now();
    let cpu_used_pct = state.cpu_samples.percent(id, entry.started_at, now, usage.cpu_ns, entry.limits.cpu_count);
    if state.registry.route(id).is_none() {
        // Killed while its usage was read: whoever removed it may have forgotten its reading
        // before this one was kept.
        state.forget_extras(id);
    }
    Ok(SandboxMetric {
        timestamp: now,
        timestamp_unix: now.timestamp(),
        cpu_count: entry.limits.cpu_count,
        cpu_used_pct,
        mem_used: usage.memory_bytes,
        mem_total: entry.limits.memory_mb * 1024 * 1024,
        mem_cache: usage.memory_cache_bytes,
        disk_used: usage.disk_bytes,
        disk_total: entry.limits.disk_mb * 1024 * 1024,
    })
}

/// At most this many sandboxes in one `GET /sandboxes/metrics`, as E2B's spec has it.
const MAX_METRICS_IDS: usize = 100;

/// `GET /sandboxes/metrics?sandbox_ids=a,b`: a sample now of each running sandbox named; the
/// others (paused, gone, unknown) are left out.
pub async fn metrics_many(
    State(state): State<AppState>,
    RawQuery(q): RawQuery,
) -> Result<Json<SandboxesWithMetrics>, ApiError> {
    let pairs = query_pairs(q.as_deref())?;
    let mut ids: Vec<String> = Vec::new();
    for (k, v) in pairs.iter().filter(|(k, _)| k == "sandbox_ids") {
        for id in v.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            let id = super::extract::short_id(id)
                .ok_or_else(|| ApiError::BadRequest(format!("Invalid {k} entry {id:?}: not a sandbox ID")))?;
            if !ids.contains(&id) {
                ids.push(id);
            }
        }
    }
    if ids.is_empty() {
        return Err(ApiError::BadRequest("sandbox_ids is required: a comma-separated list of sandbox IDs".into()));
    }
    if ids.len() > MAX_METRICS_IDS {
        return Err(ApiError::BadRequest(format!("Invalid sandbox_ids: {} IDs, at most {MAX_METRICS_IDS}", ids.len())));
    }
    let mut sandboxes = std::collections::BTreeMap::new();
    for id in ids {
        if state.registry.get(&id).is_none_or(|e| e.state != SandboxState::Running) {
            continue;
        }
        match sample(&state, &id).await {
            Ok(m) => {
                sandboxes.insert(id, m);
            }
            // Killed meanwhile: left out like any sandbox that does not run.
            Err(ApiError::SandboxNotFound(_)) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(Json(SandboxesWithMetrics { sandboxes }))
}

/// `POST /sandboxes/{id}/restore` `{"snapshotID", "force"?}`: rolls a running sandbox back to a
/// snapshot in place: the same ID, access token, end time, metadata and network; the snapshot's
/// files, and its processes when it has memory. 409 for a paused sandbox and for a snapshot not
/// of its lineage (unless `force`), nothing changed.
pub async fn restore(
    State(state): State<AppState>,
    SandboxId(id): SandboxId,
    JsonBody(body): JsonBody<rest::RestoreSandbox>,
) -> Result<Json<Sandbox>, ApiError> {
    let snapshot = body.snapshot_id.trim().to_string();
    if snapshot.is_empty() {
        return Err(ApiError::BadRequest("Invalid snapshotID \"\": the snapshot to restore is required".into()));
    }
    // Marked paused while it starts again, so that the end of its old processes does not
    // remove it (see `watch_exit`).
    let before = state.registry.mark_paused(&id, false).map_err(|paused| {
        if paused {
            ApiError::Conflict(format!("Sandbox \"{id}\" is paused: resume it before restoring a snapshot into it"))
        } else {
            ApiError::SandboxNotFound(id.clone())
        }
    })?;
    let (backend, id2, snap2) = (state.backend.clone(), id.clone(), snapshot.clone());
    let force = body.force.unwrap_or(false);
    // On its own task: a client that goes away must not leave it half restored.
    let restored = tokio::spawn(async move { backend.restore(&id2, &snap2, force).await })
        .await
        .map_err(|e| ApiError::Internal(format!("restore failed: {e}")));
    let back_as_it_was = || state.registry.mark_running(&id, before.end_at, before.envd_socket.clone());
    match restored? {
        Ok(handle) => {
            state.registry.next_incarnation(&id);
            state.watch_exit(handle.id.clone(), handle.exited.clone());
            let entry = state
                .registry
                .mark_running(&id, before.end_at, handle.envd_socket)
                .ok_or_else(|| ApiError::SandboxNotFound(id.clone()))?;
            tracing::info!(%id, %snapshot, "sandbox restored");
            state.logs.record(&id, LogLevel::Info, "sandbox restored", &[("snapshot", &snapshot)]);
            Ok(Json(sandbox_body(&entry, state.domain.as_deref())))
        }
        Err(RestoreError::Refused(refused)) => {
            back_as_it_was();
            Err(match refused {
                RestoreRefused::NotFound(_) => ApiError::SnapshotNotFound(snapshot),
                refused => ApiError::Conflict(refused.to_string()),
            })
        }
        Err(RestoreError::Unchanged(e)) => {
            back_as_it_was();
            Err(e.into())
        }
        Err(RestoreError::Lost(e)) => {
            state.registry.remove(&id);
            state.forget_extras(&id);
            tracing::warn!(%id, %snapshot, "restore failed after the sandbox stopped; it is gone: {e}");
            Err(ApiError::Internal(format!(
                "restoring snapshot {snapshot:?} into sandbox {id:?} failed, and the sandbox is gone: {e}"
            )))
        }
    }
}
