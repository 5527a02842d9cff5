//! Traffic to sandbox ports, two ways:
//! - a request whose host is `<port>-<id>.<domain>` (any port but envd's) goes to that port in
//!   that sandbox ([`crate::ports`]), as through the cloud's proxy: with the sandbox's traffic
//!   access token when its network is not public, woken first when it is paused with
//!   `autoResume`, and answered in the proxy's words when the sandbox is gone or nothing listens
//!   on the port. curl and browsers send `*.localhost` names to loopback by themselves.
//! - `POST /sandboxes/{id}/ports/{port}` publishes the port on this machine's loopback, as
//!   `docker run -p 127.0.0.1::PORT` does: a TCP port of its own whose connections are carried
//!   to the sandbox port, whatever they speak. What sandbank's `getHost` gives for a local
//!   sandbox: an address every client reaches without a name to resolve (Node's resolver does
//!   not send `*.localhost` to loopback). Closed when the sandbox is gone.

use super::error::ApiError;
use super::extract;
use super::registry::Route;
use super::AppState;
use axum::extract::{Path, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use hyper_util::rt::TokioIo;
use sandbank_protocol::rest::LogLevel;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Mutex;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::AbortHandle;

/// The headers a request to a private sandbox's port carries its traffic access token in.
const TOKEN_HEADERS: [&str; 2] = ["e2b-traffic-access-token", "novita-traffic-access-token"];

/// The port and sandbox of a request for a sandbox port (not envd's, which is envd traffic).
/// e2b's SDKs with `sandboxUrl` set send every sandbox request to that URL, naming the sandbox
/// and the port in headers (`E2b-Sandbox-Id`, `E2b-Sandbox-Port`): `@e2b/code-interpreter`'s to
/// 49999, its envd calls to envd's port.
pub fn target(headers: &HeaderMap) -> Option<(u16, String)> {
    if let Some(id) = headers.get("e2b-sandbox-id") {
        let port = headers.get("e2b-sandbox-port")?.to_str().ok()?.trim().parse::<u16>().ok()?;
        let id = String::from_utf8_lossy(id.as_bytes()).trim().to_string();
        return (port != 0 && port != sandbank_protocol::ENVD_PORT).then_some((port, id));
    }
    if headers.contains_key("novita-sandbox-id") {
        return None;
    }
    super::host_target(headers).filter(|(port, _)| *port != sandbank_protocol::ENVD_PORT)
}

pub async fn forward(state: &AppState, port: u16, raw_id: &str, req: Request) -> Response {
    let short = extract::short_id(raw_id);
    let shown = short.clone().unwrap_or_else(|| raw_id.to_string());
    let Some(mut route) = short.as_deref().and_then(|id| state.registry.route(id)) else {
        return not_found(&shown);
    };
    if let Some(token) = &route.traffic_token {
        let offered = TOKEN_HEADERS
            .iter()
            .filter_map(|h| req.headers().get(*h))
            .any(|v| super::constant_time_eq(v.as_bytes(), token.as_bytes()));
        if !offered {
            let message =
                "This sandbox's traffic is private (allowPublicTraffic: false): send its traffic access token \
                           as the e2b-traffic-access-token header";
            return answer(StatusCode::FORBIDDEN, message, &shown, Some(port));
        }
    }
    // Paused: the proxy's "not found", unless traffic wakes it.
    if route.paused && !route.auto_resume {
        return not_found(&shown);
    }
    if let Err(e) = super::wake(state, &shown, &mut route).await {
        return e.into_response();
    }
    let host = masked_host(&route, port);
    let method = req.method().to_string();
    match crate::ports::forward(&route.envd_socket, port, req, host).await {
        Ok(res) => {
            let (port_text, status) = (port.to_string(), res.status().as_u16().to_string());
            let fields = [("port", port_text.as_str()), ("method", method.as_str()), ("status", status.as_str())];
            state.logs.record(&shown, LogLevel::Debug, "port request", &fields);
            res
        }
        Err(crate::ports::PortError::Closed(why)) => {
            tracing::debug!(id = %shown, port, "port closed: {why}");
            answer(StatusCode::BAD_GATEWAY, "The sandbox is running but port is not open", &shown, Some(port))
        }
        Err(e) => {
            tracing::debug!(id = %shown, port, "port forward: {e}");
            match state.registry.route(&shown) {
                Some(_) => {
                    answer(StatusCode::BAD_GATEWAY, &format!("Port {port} did not answer: {e}"), &shown, Some(port))
                }
                None => not_found(&shown),
            }
        }
    }
}

/// `maskRequestHost` with `${PORT}` replaced by the port.
fn masked_host(route: &Route, port: u16) -> Option<HeaderValue> {
    let mask = route.mask_request_host.as_deref()?;
    HeaderValue::from_str(&mask.replace("${PORT}", &port.to_string())).ok()
}

fn not_found(id: &str) -> Response {
    answer(StatusCode::BAD_GATEWAY, "The sandbox was not found", id, None)
}

/// The cloud proxy's JSON answer.
fn answer(status: StatusCode, message: &str, id: &str, port: Option<u16>) -> Response {
    let mut body = serde_json::json!({"code": status.as_u16(), "message": message, "sandboxId": id});
    if let Some(port) = port {
        body["port"] = port.into();
    }
    (status, Json(body)).into_response()
}

/// The ports published on loopback, by sandbox: each one a listener task.
#[derive(Debug, Default)]
pub struct Published {
    by_sandbox: Mutex<HashMap<String, HashMap<u16, Listening>>>,
}

/// A published port: its address on loopback, and the task that accepts there.
type Listening = (SocketAddr, AbortHandle);

impl Published {
    /// Stops listening for sandbox `id`'s ports (connections carried already end with it).
    pub fn close(&self, id: &str) {
        for (_, (_, listener)) in self.by_sandbox.lock().unwrap().remove(id).unwrap_or_default() {
            listener.abort();
        }
    }

    pub fn close_all(&self) {
        for (_, ports) in self.by_sandbox.lock().unwrap().drain() {
            ports.into_values().for_each(|(_, listener)| listener.abort());
        }
    }
}

/// `POST /sandboxes/{id}/ports/{port}`: `{"port": PORT, "host": "127.0.0.1:N"}`, the same `N`
/// for as long as the sandbox lives.
pub async fn publish(
    State(state): State<AppState>,
    Path((raw_id, port)): Path<(String, String)>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let id = extract::short_id(&raw_id).ok_or(ApiError::SandboxNotFound(raw_id))?;
    let port: u16 = port
        .parse()
        .ok()
        .filter(|p| *p != 0)
        .ok_or_else(|| ApiError::BadRequest(format!("Invalid port {port:?}: a port is from 1 to 65535")))?;
    if state.registry.route(&id).is_none() {
        return Err(ApiError::SandboxNotFound(id));
    }
    let known = state.published.by_sandbox.lock().unwrap().get(&id).and_then(|p| p.get(&port)).map(|(a, _)| *a);
    let addr = match known {
        Some(addr) => addr,
        None => {
            let listener = TcpListener::bind(("127.0.0.1", 0))
                .await
                .map_err(|e| ApiError::Internal(format!("publishing port {port}: {e}")))?;
            let addr = listener.local_addr().map_err(|e| ApiError::Internal(e.to_string()))?;
            let task = tokio::spawn(accept(state.clone(), id.clone(), port, listener)).abort_handle();
            let mut all = state.published.by_sandbox.lock().unwrap();
            // Gone meanwhile, or published by a concurrent call: keep one listener.
            let winner = state
                .registry
                .route(&id)
                .map(|_| all.entry(id.clone()).or_default().entry(port).or_insert((addr, task.clone())).0);
            if winner != Some(addr) {
                task.abort();
            }
            winner.ok_or(ApiError::SandboxNotFound(id))?
        }
    };
    Ok(Json(serde_json::json!({"port": port, "host": addr.to_string()})))
}

async fn accept(state: AppState, id: String, port: u16, listener: TcpListener) {
    loop {
        match listener.accept().await {
            Ok((tcp, _)) => {
                let _ = tcp.set_nodelay(true);
                tokio::spawn(carry(state.clone(), id.clone(), port, tcp));
            }
            Err(e) => {
                tracing::debug!(%id, port, "published port: {e}");
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            }
        }
    }
}

/// Carries one connection to the sandbox port; closes it when the sandbox is gone (or paused
/// without `autoResume`) or nothing listens on the port.
async fn carry(state: AppState, id: String, port: u16, mut tcp: TcpStream) {
    let Some(mut route) = state.registry.route(&id) else { return };
    if let Err(e) = super::wake(&state, &id, &mut route).await {
        tracing::debug!(%id, port, "published port: {e}");
        return;
    }
    match crate::ports::open(&route.envd_socket, port).await {
        Ok(tunnel) => {
            let _ = tokio::io::copy_bidirectional(&mut tcp, &mut TokioIo::new(tunnel)).await;
        }
        Err(e) => tracing::debug!(%id, port, "published port: {e}"),
    }
}
