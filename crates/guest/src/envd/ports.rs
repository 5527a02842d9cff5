//! The tunnel to a sandbox port ([`sandbank_protocol::PORT_TUNNEL_PREFIX`]): envd runs in the
//! sandbox's network, so it connects to the port on the sandbox's loopback (IPv4, then IPv6:
//! servers bound to `0.0.0.0`, `127.0.0.1` or `::` are all found), and joins that connection
//! to the upgraded one from the server.

use axum::body::Body;
use axum::extract::{Path, Request};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use hyper_util::rt::TokioIo;
use sandbank_protocol::PORT_TUNNEL_PROTOCOL;
use std::io;
use tokio::net::TcpStream;

pub(super) async fn tunnel(Path(port): Path<u16>, req: Request) -> Response {
    let asked = req.headers().get(header::UPGRADE).is_some_and(|v| v.as_bytes() == PORT_TUNNEL_PROTOCOL.as_bytes());
    if !asked || port == 0 {
        let message = format!("a port tunnel is a GET with Upgrade: {PORT_TUNNEL_PROTOCOL} to a port from 1 to 65535");
        return (StatusCode::BAD_REQUEST, Json(serde_json::json!({"code": 400, "message": message}))).into_response();
    }
    let mut stream = match connect(port).await {
        Ok(stream) => stream,
        Err(e) => {
            let message = format!("nothing listens on port {port} in the sandbox ({e})");
            return (StatusCode::BAD_GATEWAY, Json(serde_json::json!({"code": 502, "message": message})))
                .into_response();
        }
    };
    let upgrade = hyper::upgrade::on(req);
    tokio::spawn(async move {
        match upgrade.await {
            Ok(upgraded) => {
                let _ = tokio::io::copy_bidirectional(&mut TokioIo::new(upgraded), &mut stream).await;
            }
            Err(e) => tracing::debug!(port, "port tunnel: the upgrade failed: {e}"),
        }
    });
    Response::builder()
        .status(StatusCode::SWITCHING_PROTOCOLS)
        .header(header::CONNECTION, "upgrade")
        .header(header::UPGRADE, PORT_TUNNEL_PROTOCOL)
        .body(Body::empty())
        .expect("a valid response")
}

async fn connect(port: u16) -> io::Result<TcpStream> {
    let stream = match TcpStream::connect(("127.0.0.1", port)).await {
        Ok(stream) => stream,
        Err(v4) => TcpStream::connect(("::1", port)).await.map_err(|_| v4)?,
    };
    stream.set_nodelay(true)?;
    Ok(stream)
}
