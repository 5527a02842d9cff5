//! Traffic to sandbox ports: a request whose host is `<port>-<id>.<domain>` (any port but
//! envd's) goes to that port in that sandbox ([`crate::ports`]), as through the cloud's proxy:
//! with the sandbox's traffic access token when its network is not public, woken first when it
//! is paused with `autoResume`, and answered in the proxy's words when the sandbox is gone or
//! nothing listens on the port.

use super::registry::Route;
use super::{extract, AppState};
use axum::extract::Request;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use sandbank_protocol::rest::LogLevel;

/// The headers a request to a private sandbox's port carries its traffic access token in.
const TOKEN_HEADERS: [&str; 2] = ["e2b-traffic-access-token", "novita-traffic-access-token"];

/// The port and sandbox of a request for a sandbox port (not envd's, which is envd traffic).
pub fn target(headers: &HeaderMap) -> Option<(u16, String)> {
    if headers.contains_key("e2b-sandbox-id") || headers.contains_key("novita-sandbox-id") {
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
        let offered =
            TOKEN_HEADERS.iter().filter_map(|h| req.headers().get(*h)).any(|v| v.as_bytes() == token.as_bytes());
        if !offered {
            let message =
                "This sandbox's traffic is private (allowPublicTraffic: false): send its traffic access token \
                           as the e2b-traffic-access-token header";
            return answer(StatusCode::FORBIDDEN, message, &shown, Some(port));
        }
    }
    if route.paused {
        if !route.auto_resume {
            return not_found(&shown);
        }
        if let Err(e) = super::wake(state, &shown, &mut route).await {
            return e.into_response();
        }
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
