//! Forwards HTTP to a sandbox port (`<port>-<id>.<domain>` hosts, as the cloud's proxy does):
//! over a fresh tunnel through the sandbox's envd ([`sandbank_protocol::PORT_TUNNEL_PREFIX`]),
//! the request goes out as it came and the response streams back; an upgrade (WebSocket) answered
//! with 101 joins the client's connection to the tunnel.

use axum::body::Body;
use axum::extract::Request;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::Response;
use hyper::upgrade::Upgraded;
use hyper_util::rt::TokioIo;
use sandbank_protocol::{PORT_TUNNEL_PREFIX, PORT_TUNNEL_PROTOCOL};
use std::path::Path;
use tokio::net::UnixStream;

#[derive(Debug, thiserror::Error)]
pub enum PortError {
    /// envd could not be reached (the sandbox is going away).
    #[error("cannot reach envd: {0}")]
    Envd(String),
    /// Nothing listens on the port in the sandbox.
    #[error("{0}")]
    Closed(String),
    /// What listens there did not answer HTTP.
    #[error("the server in the sandbox did not answer: {0}")]
    Upstream(hyper::Error),
}

/// Sends `req` to `port` in the sandbox whose envd is at `socket`, with `host` as its Host when
/// given (`maskRequestHost`).
pub async fn forward(
    socket: &Path,
    port: u16,
    mut req: Request,
    host: Option<HeaderValue>,
) -> Result<Response, PortError> {
    let tunnel = open(socket, port).await?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(tunnel).await.map_err(PortError::Upstream)?;
    tokio::spawn(async move {
        if let Err(e) = conn.with_upgrades().await {
            tracing::debug!(port, "sandbox port connection: {e}");
        }
    });
    let client_upgrade = req.headers().contains_key(header::UPGRADE).then(|| hyper::upgrade::on(&mut req));
    let (mut parts, body) = req.into_parts();
    crate::proxy::to_origin_form(&mut parts.uri);
    if let Some(host) = host {
        parts.headers.insert(header::HOST, host);
    }
    let mut res = sender.send_request(Request::from_parts(parts, body)).await.map_err(PortError::Upstream)?;
    if let (StatusCode::SWITCHING_PROTOCOLS, Some(client_upgrade)) = (res.status(), client_upgrade) {
        let upstream_upgrade = hyper::upgrade::on(&mut res);
        tokio::spawn(async move {
            match tokio::try_join!(client_upgrade, upstream_upgrade) {
                Ok((client, upstream)) => {
                    let _ = tokio::io::copy_bidirectional(&mut TokioIo::new(client), &mut TokioIo::new(upstream)).await;
                }
                Err(e) => tracing::debug!(port, "sandbox port upgrade: {e}"),
            }
        });
    }
    Ok(res.map(Body::new))
}

/// A byte stream to `port` in the sandbox, through envd.
pub async fn open(socket: &Path, port: u16) -> Result<Upgraded, PortError> {
    let stream = UnixStream::connect(socket).await.map_err(|e| PortError::Envd(e.to_string()))?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| PortError::Envd(e.to_string()))?;
    tokio::spawn(async move {
        let _ = conn.with_upgrades().await;
    });
    let req = Request::get(format!("{PORT_TUNNEL_PREFIX}{port}"))
        .header(header::HOST, "envd")
        .header(header::CONNECTION, "upgrade")
        .header(header::UPGRADE, PORT_TUNNEL_PROTOCOL)
        .body(Body::empty())
        .expect("a valid request");
    let mut res = sender.send_request(req).await.map_err(|e| PortError::Envd(e.to_string()))?;
    if res.status() != StatusCode::SWITCHING_PROTOCOLS {
        let body = axum::body::to_bytes(Body::new(res.into_body()), 4096).await.unwrap_or_default();
        let message = serde_json::from_slice::<serde_json::Value>(&body)
            .ok()
            .and_then(|v| v.get("message").and_then(|m| m.as_str()).map(str::to_string))
            .unwrap_or_else(|| String::from_utf8_lossy(&body).into_owned());
        return Err(PortError::Closed(message));
    }
    hyper::upgrade::on(&mut res).await.map_err(|e| PortError::Envd(e.to_string()))
}
