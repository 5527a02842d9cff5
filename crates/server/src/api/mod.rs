//! The control plane: the Novita/E2B REST API, and the dispatch of envd traffic to the proxy.

pub mod backend;
pub mod cpu;
pub mod envd_auth;
pub mod error;
pub mod extract;
pub mod logs;
pub mod network;
pub mod ports;
pub mod registry;
pub mod sandboxes;
pub mod snapshot_archive;
pub mod snapshots;
pub mod templates;

use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, Method, Uri};
use axum::middleware::{from_fn_with_state, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use backend::Backend;
use chrono::Utc;
use error::ApiError;
use registry::{Entry, Expired, Registry};
use sandbank_protocol::rest::{LogLevel, SandboxState};
use std::sync::Arc;
use std::time::Duration;

#[derive(Clone)]
pub struct AppState {
    pub backend: Arc<dyn Backend>,
    pub registry: Arc<Registry>,
    pub cpu_samples: Arc<cpu::CpuSamples>,
    pub logs: Arc<logs::Logs>,
    /// Template builds and what they made.
    pub templates: Arc<crate::templates::Templates>,
    /// The sandbox ports published on this machine's loopback ([`ports::Published`]).
    pub published: Arc<ports::Published>,
    /// The domain of sandbox hosts (`<port>-<id>.<domain>`) reported to the SDKs:
    /// `localhost:<the API's port>`, whose names curl and browsers send to loopback.
    pub domain: Option<Arc<str>>,
    /// Default expiry and keep-last of the snapshots users take.
    pub snapshot_policy: snapshots::SnapshotPolicy,
    api_key: Arc<str>,
}

impl std::fmt::Debug for AppState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppState").field("sandboxes", &self.registry.len()).finish_non_exhaustive()
    }
}

impl AppState {
    pub fn new(
        backend: Arc<dyn Backend>,
        api_key: &str,
        templates: crate::templates::Templates,
        domain: Option<String>,
    ) -> Self {
        Self {
            backend,
            registry: Arc::new(Registry::default()),
            cpu_samples: Arc::default(),
            logs: Arc::default(),
            templates: Arc::new(templates),
            published: Arc::default(),
            domain: domain.map(Into::into),
            snapshot_policy: snapshots::SnapshotPolicy::default(),
            api_key: api_key.into(),
        }
    }

    /// Lists again the sandboxes that were paused when the server last stopped (the engine kept
    /// their files and what the API stored with them).
    pub fn restore_paused(&self) {
        for p in self.backend.paused() {
            match serde_json::from_str::<Entry>(&p.api) {
                Ok(entry) => {
                    let entry = Entry { state: SandboxState::Paused, envd_socket: p.envd_socket, ..entry };
                    tracing::info!(id = %entry.id, "paused sandbox kept from before the restart");
                    self.registry.insert(entry);
                }
                Err(e) => tracing::error!(id = %p.id, "unreadable paused sandbox ({e}); it stays in the engine"),
            }
        }
    }

    /// Whether the request carries the API key (for the routes that check it themselves).
    pub fn authorize(&self, headers: &HeaderMap) -> Result<(), ApiError> {
        check_api_key(headers, &self.api_key)
    }

    /// Forgets what the API keeps beside a sandbox's entry (its last CPU reading, its log): it
    /// left the registry.
    pub fn forget_extras(&self, id: &str) {
        self.cpu_samples.forget(id);
        self.logs.forget(id);
        self.published.close(id);
    }

    /// When the sandbox's PID 1 exits on its own, forget it (and let the engine clean up). For
    /// its current incarnation: one started again calls [`Registry::next_incarnation`] first.
    pub fn watch_exit(&self, id: String, mut exited: tokio::sync::watch::Receiver<bool>) {
        let state = self.clone();
        let incarnation = self.registry.incarnation(&id).unwrap_or_default();
        tokio::spawn(async move {
            // An error means the engine dropped the sender: the sandbox is gone too.
            let _ = exited.wait_for(|e| *e).await;
            // A sandbox paused with its files only ends its processes on purpose: it stays.
            if state.registry.remove_running(&id, incarnation).is_some() {
                state.forget_extras(&id);
                tracing::info!(%id, "sandbox exited on its own");
                if let Err(e) = state.backend.kill(&id).await {
                    tracing::warn!(%id, "cleanup of an exited sandbox failed: {e}");
                }
            }
        });
    }

    /// The one expiry task: sleeps until the earliest end time (or a change), kills what is due.
    pub fn spawn_expiry(&self) -> tokio::task::JoinHandle<()> {
        let state = self.clone();
        tokio::spawn(async move {
            loop {
                for expired in state.registry.take_expired(Utc::now()) {
                    let state = state.clone();
                    tokio::spawn(async move {
                        match expired {
                            Expired::Kill(entry) => {
                                tracing::info!(id = %entry.id, "sandbox timed out");
                                state.forget_extras(&entry.id);
                                if let Err(e) = state.backend.kill(&entry.id).await {
                                    tracing::warn!(id = %entry.id, "killing a timed-out sandbox failed: {e}");
                                }
                            }
                            Expired::Pause(entry) => {
                                tracing::info!(id = %entry.id, "sandbox timed out: pausing it");
                                let id = entry.id.clone();
                                let keep_memory = !entry.lifecycle.files_only_on_timeout;
                                if let Err(e) = sandboxes::pause_entry(&state, entry, keep_memory).await {
                                    // Its time is up either way: it goes, rather than expiring
                                    // again and again.
                                    tracing::warn!(%id, "pausing a timed-out sandbox failed ({e}): killing it");
                                    state.registry.remove(&id);
                                    state.forget_extras(&id);
                                    if let Err(e) = state.backend.kill(&id).await {
                                        tracing::warn!(%id, "killing it failed too: {e}");
                                    }
                                }
                            }
                        }
                    });
                }
                let wait = match state.registry.next_deadline() {
                    Some(d) => (d - Utc::now()).to_std().unwrap_or(Duration::ZERO).min(Duration::from_secs(3600)),
                    None => Duration::from_secs(3600),
                };
                tokio::select! {
                    _ = tokio::time::sleep(wait) => {}
                    _ = state.registry.deadlines_changed() => {}
                }
            }
        })
    }

    /// Forgets every sandbox and has the engine kill them all.
    pub async fn shutdown(&self) {
        let n = self.registry.drain().len();
        self.published.close_all();
        tracing::info!(sandboxes = n, "shutting down the engine");
        self.backend.shutdown().await;
    }
}

pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/sandboxes", post(sandboxes::create).get(sandboxes::list_v1))
        // The E2B SDK creates and connects through the v2 paths.
        .route("/v2/sandboxes", get(sandboxes::list_v2).post(sandboxes::create))
        .route("/v2/sandboxes/{id}/connect", post(sandboxes::connect_v2))
        .route("/sandboxes/{id}", get(sandboxes::get_one).delete(sandboxes::kill))
        .route("/sandboxes/{id}/timeout", post(sandboxes::set_timeout))
        .route("/sandboxes/{id}/connect", post(sandboxes::connect))
        .route("/sandboxes/{id}/pause", post(sandboxes::pause))
        .route("/sandboxes/{id}/restore", post(sandboxes::restore))
        .route("/sandboxes/{id}/resume", post(sandboxes::resume_deprecated))
        .route("/sandboxes/{id}/metrics", get(sandboxes::metrics))
        .route("/sandboxes/metrics", get(sandboxes::metrics_many))
        .route("/sandboxes/{id}/refreshes", post(sandboxes::refresh))
        .route("/sandboxes/{id}/logs", get(logs::v1))
        .route("/sandboxes/{id}/network", axum::routing::put(network::update))
        .route("/v2/sandboxes/{id}/logs", get(logs::v2))
        .route("/sandboxes/{id}/snapshots", post(snapshots::create))
        .route("/snapshots", get(snapshots::list))
        .route("/snapshots/import", post(snapshot_archive::import))
        .route("/snapshots/{id}/export", get(snapshot_archive::export))
        .route("/snapshots/{id}/diff", get(snapshots::diff))
        .route("/templates/aliases/{alias}", get(templates::alias))
        .route("/templates/{id}", axum::routing::delete(templates::delete).get(not_implemented))
        .route("/v3/templates", post(templates::request_build))
        .route("/templates", get(templates::list).post(not_implemented))
        .route("/templates/{id}/files/{hash}", get(templates::upload_link))
        .route("/templates/{id}/builds/{build}", post(templates::start_build))
        .route("/v2/templates/{id}/builds/{build}", post(templates::start_build))
        .route("/templates/{id}/builds/{build}/status", get(templates::build_status))
        .route("/templates/tags", post(templates::assign_tags).delete(templates::remove_tags))
        .route("/sandboxes/{id}/ports/{port}", post(ports::publish))
        .route("/templates/{id}/tags", get(templates::tags))
        .merge(not_implemented_routes())
        .route_layer(from_fn_with_state(state.clone(), require_api_key))
        // Their body is checked before the key, as the cloud does (`sandboxes::copy`).
        .route("/sandboxes/{id}/fork", post(sandboxes::copy))
        .route("/sandboxes/{id}/clone", post(sandboxes::copy))
        // The SDK uploads a COPY step's files with no key: the link's token stands for it.
        .route("/templates/{id}/files/{hash}/upload", axum::routing::put(templates::upload))
        .route("/health", get(health))
        .method_not_allowed_fallback(method_not_allowed)
        .fallback(not_found)
        // Outermost: envd traffic never reaches the control plane's routes or its auth.
        .layer(from_fn_with_state(state.clone(), dispatch_envd))
        .with_state(state)
}

/// Routes the published SDKs call that this server does not serve yet: 501 naming the route.
fn not_implemented_routes() -> Router<AppState> {
    let ni = not_implemented;
    Router::new()
        // Sandboxes: Novita's reset, memory, volumes, commit, quota, events.
        .route("/sandboxes/{id}/reset", post(ni))
        .route("/sandboxes/{id}/hotplug-memory", post(ni))
        .route("/sandboxes/{id}/volume-mounts", post(ni).delete(ni))
        .route("/sandboxes/{id}/commit", post(ni))
        .route("/sandboxes/quota", get(ni))
        .route("/sandboxes/events", get(ni))
        // Templates (E2B's build API).
        .route("/v2/templates", post(ni))
        .route("/templates/{id}/builds/{build}/logs", get(ni))
        // Volumes and secrets.
        .route("/volumes", get(ni).post(ni))
        .route("/volumes/{id}", get(ni).delete(ni))
        .route("/volumecontent/{id}/{*rest}", get(ni).post(ni).put(ni).patch(ni).delete(ni))
        .route("/secrets", get(ni).post(ni))
        .route("/secrets/{id}", get(ni).post(ni).delete(ni))
}

async fn not_implemented(method: Method, route: axum::extract::MatchedPath) -> ApiError {
    ApiError::NotImplemented { method: method.to_string(), route: route.as_str().to_string() }
}

async fn health() -> Response {
    Json(serde_json::json!({"status": "ok"})).into_response()
}

async fn not_found(method: Method, uri: Uri) -> ApiError {
    ApiError::RouteNotFound { method: method.to_string(), path: uri.path().to_string() }
}

async fn method_not_allowed(method: Method, uri: Uri) -> ApiError {
    ApiError::MethodNotAllowed { method: method.to_string(), path: uri.path().to_string() }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// `X-API-KEY: <key>` (any spelling of the name) or `Authorization: Bearer <key>`.
fn check_api_key(headers: &HeaderMap, key: &str) -> Result<(), ApiError> {
    let mut offered = headers.get_all("x-api-key").iter().map(|v| v.as_bytes().trim_ascii()).collect::<Vec<_>>();
    for v in headers.get_all(header::AUTHORIZATION) {
        let v = v.as_bytes().trim_ascii();
        if v.len() > 7 && v[..7].eq_ignore_ascii_case(b"bearer ") {
            offered.push(v[7..].trim_ascii());
        }
    }
    if offered.is_empty() {
        return Err(ApiError::Unauthorized("Missing API key: send it as X-API-KEY or Authorization: Bearer".into()));
    }
    if offered.iter().any(|o| constant_time_eq(o, key.as_bytes())) {
        Ok(())
    } else {
        Err(ApiError::Unauthorized("Invalid API key".into()))
    }
}

async fn require_api_key(State(state): State<AppState>, req: Request, next: Next) -> Response {
    match check_api_key(req.headers(), &state.api_key) {
        Ok(()) => next.run(req).await,
        Err(e) => e.into_response(),
    }
}

/// The sandbox an envd request is for: the `Novita-Sandbox-Id` / `E2b-Sandbox-Id` header, or
/// a `49983-<id>.<domain>` host. Returned as sent (possibly in `<id>-<clientID>` form).
pub fn envd_target(headers: &HeaderMap) -> Option<String> {
    for name in ["novita-sandbox-id", "e2b-sandbox-id"] {
        if let Some(v) = headers.get(name) {
            return Some(String::from_utf8_lossy(v.as_bytes()).trim().to_string());
        }
    }
    host_target(headers).and_then(|(port, id)| (port == sandbank_protocol::ENVD_PORT).then_some(id))
}

/// The port and sandbox a `<port>-<id>.<domain>` host names, as the cloud's sandbox hosts do.
pub fn host_target(headers: &HeaderMap) -> Option<(u16, String)> {
    let host = headers.get(header::HOST)?.to_str().ok()?;
    let (label, _) = host.split_once('.')?;
    let (port, id) = label.split_once('-')?;
    let port = port.parse().ok().filter(|p| *p != 0)?;
    (!id.is_empty()).then(|| (port, id.to_string()))
}

async fn dispatch_envd(State(state): State<AppState>, req: Request, next: Next) -> Response {
    if let Some((port, id)) = ports::target(req.headers()) {
        return ports::forward(&state, port, &id, req).await;
    }
    // A signed `/files` URL (from `uploadUrl`/`downloadUrl`) names no sandbox: its signature,
    // made with one sandbox's access token, tells which.
    let signed = req.uri().path() == "/files" && req.uri().query().is_some_and(|q| q.contains("signature="));
    let target = envd_target(req.headers()).or_else(|| {
        let all = signed.then(|| state.registry.all())?;
        all.into_iter().find(|e| envd_auth::signed_with(&req, &e.access_token)).map(|e| e.id)
    });
    let Some(raw) = target else {
        if signed {
            let e = ApiError::Unauthorized(
                "Invalid signature: no sandbox's access token made it for this path, user and operation (or the sandbox is gone)".into(),
            );
            return refuse(req, e).await;
        }
        return next.run(req).await;
    };
    let short = extract::short_id(&raw);
    let route = short.as_deref().and_then(|id| state.registry.route(id));
    let shown = short.unwrap_or(raw);
    let Some(mut route) = route else {
        return refuse(req, ApiError::NotRunning(shown)).await;
    };
    if let Err(e) = envd_auth::check(&req, &route.access_token) {
        return refuse(req, e).await;
    }
    if let Err(e) = wake(&state, &shown, &mut route).await {
        return refuse(req, e).await;
    }
    let (method, path) = (req.method().to_string(), req.uri().path().to_string());
    match crate::proxy::forward(&route.envd_socket, req).await {
        Ok(res) => {
            let status = res.status().as_u16().to_string();
            let fields = [("method", method.as_str()), ("path", path.as_str()), ("status", status.as_str())];
            state.logs.record(&shown, LogLevel::Debug, "envd request", &fields);
            res
        }
        Err(e) => {
            tracing::debug!(id = %shown, "envd proxy: {e:?}");
            // Killed while the request was on its way, or listed with an envd that did not answer.
            if state.registry.route(&shown).is_some() {
                ApiError::EnvdUnreachable(shown).into_response()
            } else {
                ApiError::NotRunning(shown).into_response()
            }
        }
    }
}

/// Resumes a paused sandbox that traffic wakes (`autoResume`); `Err` for one it does not.
async fn wake(state: &AppState, id: &str, route: &mut registry::Route) -> Result<(), ApiError> {
    if !route.paused {
        return Ok(());
    }
    if !route.auto_resume {
        return Err(ApiError::Paused(id.to_string()));
    }
    let (resumed, _) = sandboxes::resume(state, id, route.timeout, false).await?;
    route.envd_socket = resumed.envd_socket;
    Ok(())
}

/// Answers an envd request with `e` after reading what it sends (up to 8 MiB, for 5 s at most):
/// a client still sending an upload would otherwise see its connection reset, not the answer.
async fn refuse(req: Request, e: ApiError) -> Response {
    const DRAIN_LIMIT: usize = 8 << 20;
    let _ = tokio::time::timeout(Duration::from_secs(5), axum::body::to_bytes(req.into_body(), DRAIN_LIMIT)).await;
    e.into_response()
}

#[cfg(test)]
mod tests;
