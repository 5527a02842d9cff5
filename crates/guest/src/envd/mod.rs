//! envd, the data plane inside a sandbox: the `process.Process` and `filesystem.Filesystem`
//! Connect services, `GET/POST /files` and `/health`, served over HTTP on a unix socket.
//!
//! - [`connect`]: the Connect protocol on the server side (codecs, unary and streaming replies).
//! - [`users`]: `/etc/passwd`/`/etc/group` look-ups and the `Authorization: Basic` user.
//! - [`reaper`]: PID 1's child reaper; hands exit statuses to the process service.
//! - [`process`]: the `process.Process` service.
//! - [`filesystem`]: the `filesystem.Filesystem` service.
//! - [`files`]: `GET /files` and `POST /files`.
//! - [`metadata`]: user-defined file metadata, kept in `user.e2b.*` xattrs.
//! - [`pty`]: pseudo-terminals of PTY processes.
//! - [`watch`]: `Filesystem/WatchDir` over inotify.
//! - [`watchers`]: the polling watchers (`Filesystem/CreateWatcher`, `GetWatcherEvents`,
//!   `RemoveWatcher`).

mod connect;
mod creds;
mod fdio;
mod files;
mod filesystem;
mod fsutil;
mod metadata;
mod ports;
mod process;
mod pty;
mod reaper;
mod users;
mod watch;
mod watchers;

#[cfg(test)]
mod tests;

use crate::init::GuestInit;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

/// The user processes and file operations run as when the request names none.
pub(crate) const DEFAULT_USER: &str = "user";

/// What envd needs to serve: the sandbox's identity and env vars, the default user, and how many
/// events a polling watcher keeps between two reads.
pub(crate) struct Options {
    pub sandbox_id: String,
    pub env_vars: BTreeMap<String, String>,
    pub default_user: String,
    /// Where processes start when a request names no `cwd` (a template's last WORKDIR); `None`:
    /// the user's home. (File paths stay relative to the home.)
    pub default_workdir: Option<PathBuf>,
    pub max_watcher_events: usize,
}

/// Shared state of every handler. Dropped when envd stops serving (the last connection gone),
/// which ends its polling watchers.
pub(crate) struct Envd {
    pub opts: Options,
    pub processes: process::Table,
    pub watchers: watchers::Table,
}

pub(crate) type Shared = Arc<Envd>;

/// Serves envd on the listener PID 1 bound, to the server only, until the listener fails.
pub(crate) async fn serve(init: GuestInit) -> anyhow::Result<()> {
    init.listener.set_nonblocking(true)?;
    let listener = OutsideOnly(tokio::net::UnixListener::from_std(init.listener)?);
    let opts = Options {
        sandbox_id: init.sandbox_id,
        env_vars: init.env_vars,
        default_user: init.default_user.unwrap_or_else(|| DEFAULT_USER.to_string()),
        default_workdir: init.default_workdir.map(PathBuf::from),
        max_watcher_events: watchers::MAX_BUFFERED_EVENTS,
    };
    serve_on(listener, opts).await
}

/// Serves envd on `listener` until the listener fails.
pub(crate) async fn serve_on<L>(listener: L, opts: Options) -> anyhow::Result<()>
where
    L: axum::serve::Listener,
    L::Addr: std::fmt::Debug,
{
    let app = router(opts)?;
    axum::serve(listener, app).await?;
    Ok(())
}

/// envd's listener as PID 1 serves it: it accepts connections from outside the sandbox (the
/// server's) and closes the others at once. Its socket is in the sandbox's tree, where root
/// inside could reach it; envd runs what it is asked as any user, and answers to the server
/// only. A peer outside PID 1's PID namespace has no PID in it: the kernel reports 0.
pub(crate) struct OutsideOnly(pub tokio::net::UnixListener);

impl axum::serve::Listener for OutsideOnly {
    type Io = tokio::net::UnixStream;
    type Addr = tokio::net::unix::SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            match self.0.accept().await {
                Ok((stream, addr)) if is_from_outside(&stream) => return (stream, addr),
                Ok(_) => tracing::warn!("refused a connection to envd from inside the sandbox"),
                // What axum's own listeners do: a failed connection is the peer's business; with
                // no descriptors left, wait a little for some to be closed.
                Err(e) if is_connection_error(&e) => {}
                Err(_) => tokio::time::sleep(std::time::Duration::from_millis(100)).await,
            }
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        self.0.local_addr()
    }
}

fn is_from_outside(stream: &tokio::net::UnixStream) -> bool {
    stream.peer_cred().is_ok_and(|cred| cred.pid() == Some(0))
}

fn is_connection_error(e: &std::io::Error) -> bool {
    use std::io::ErrorKind::*;
    matches!(e.kind(), ConnectionRefused | ConnectionAborted | ConnectionReset)
}

pub(crate) fn router(opts: Options) -> anyhow::Result<Router> {
    tracing::debug!(sandbox = %opts.sandbox_id, "envd starting");
    let reaper = reaper::Reaper::start()?;
    let watchers = watchers::Table::new(opts.max_watcher_events);
    let state: Shared = Arc::new(Envd { opts, processes: process::Table::new(reaper), watchers });
    let p = "/process.Process/";
    let f = "/filesystem.Filesystem/";
    Ok(Router::new()
        .route(&format!("{p}Start"), post(process::start))
        .route(&format!("{p}Connect"), post(process::connect))
        .route(&format!("{p}List"), post(process::list))
        .route(&format!("{p}SendInput"), post(process::send_input))
        .route(&format!("{p}SendSignal"), post(process::send_signal))
        .route(&format!("{p}CloseStdin"), post(process::close_stdin))
        .route(&format!("{p}Update"), post(process::update))
        .route(&format!("{p}StreamInput"), post(process::stream_input))
        .route(&format!("{f}Stat"), post(filesystem::stat))
        .route(&format!("{f}MakeDir"), post(filesystem::make_dir))
        .route(&format!("{f}Move"), post(filesystem::move_entry))
        .route(&format!("{f}ListDir"), post(filesystem::list_dir))
        .route(&format!("{f}Remove"), post(filesystem::remove))
        .route(&format!("{f}WatchDir"), post(watch::watch_dir))
        .route(&format!("{f}CreateWatcher"), post(watchers::create_watcher))
        .route(&format!("{f}GetWatcherEvents"), post(watchers::get_watcher_events))
        .route(&format!("{f}RemoveWatcher"), post(watchers::remove_watcher))
        .route("/files", get(files::download).post(files::upload))
        .route(&format!("{}{{port}}", sandbank_protocol::PORT_TUNNEL_PREFIX), get(ports::tunnel))
        .route("/health", get(health))
        .route("/envs", get(envs))
        .method_not_allowed_fallback(method_not_allowed)
        .fallback(not_found)
        .layer(DefaultBodyLimit::disable())
        .with_state(state))
}

async fn health() -> StatusCode {
    StatusCode::NO_CONTENT
}

async fn envs(State(envd): State<Shared>) -> Json<BTreeMap<String, String>> {
    Json(envd.opts.env_vars.clone())
}

/// axum's own 405 has no body; clients expect a JSON error (found by tests/malformed.rs).
async fn method_not_allowed(method: Method, uri: Uri) -> Response {
    let path = uri.path();
    let message = format!("method {method} not allowed on {path}");
    if path.starts_with("/process.") || path.starts_with("/filesystem.") {
        // Connect has no code for it: a Connect RPC is a POST, anything else is a bad request.
        (StatusCode::METHOD_NOT_ALLOWED, Json(serde_json::json!({"code": "invalid_argument", "message": message})))
            .into_response()
    } else {
        (StatusCode::METHOD_NOT_ALLOWED, Json(serde_json::json!({"code": 405, "message": message}))).into_response()
    }
}

async fn not_found(method: Method, uri: Uri) -> Response {
    let path = uri.path();
    let message = format!("no route for {method} {path}");
    if path.starts_with("/process.") || path.starts_with("/filesystem.") {
        // connect-web maps a 404 to `unimplemented`; say so in the body as well.
        (StatusCode::NOT_FOUND, Json(serde_json::json!({"code": "unimplemented", "message": message}))).into_response()
    } else {
        (StatusCode::NOT_FOUND, Json(serde_json::json!({"code": 404, "message": message}))).into_response()
    }
}
