//! The API's HTTP/1.1 server: hyper's connections, each with a deadline for a request's headers.
//!
//! `axum::serve` gives hyper no timer, so a client that opens connections and never finishes a
//! request's headers (or leaves keep-alive connections idle) holds a task and a descriptor per
//! connection for as long as it likes. Here hyper's header read timeout runs whenever a
//! connection waits for a request, new or kept alive, until its last header line.
//!
//! Connections may be upgraded (a WebSocket to a sandbox port, `crate::ports`); hyper-util's
//! graceful shutdown does not take those, so a connection here is told to finish by a token.
//!
//! Request bodies have no timeout: they are read only after the API key or access token is
//! checked, and a client stream (envd's `StreamInput`) may rightly be quiet for a long time.

use axum::Router;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use std::future::Future;
use std::io;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// The default for `sandbank serve --header-timeout-secs` (hyper's own default, and nginx's
/// `client_header_timeout` is 60 s): plenty for any client that means to send a request.
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(30);

/// Accepts connections and serves `app` on each until `stop` completes; then accepts no more,
/// and each open connection closes once its request in flight is answered (a command stream's
/// when its sandbox is killed), so no new request starts while the engine shuts down.
pub async fn serve(listener: TcpListener, app: Router, header_timeout: Duration, stop: impl Future<Output = ()>) {
    let (open, stopping) = (TaskTracker::new(), CancellationToken::new());
    tokio::pin!(stop);
    loop {
        let accepted = tokio::select! {
            _ = &mut stop => {
                stopping.cancel();
                open.close();
                open.wait().await;
                return;
            }
            accepted = listener.accept() => accepted,
        };
        let (tcp, peer) = match accepted {
            Ok(conn) => conn,
            Err(e) if is_connection_error(&e) => continue,
            Err(e) => {
                // Out of descriptors or memory: wait for some to come back rather than spin.
                tracing::warn!("accepting a connection: {e}");
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        // Command streams are many small writes: without TCP_NODELAY, Nagle's algorithm holds each
        // one back until the client's delayed ACK (40 ms).
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::debug!("TCP_NODELAY: {e}");
        }
        let service = TowerToHyperService::new(app.clone());
        let conn = http1::Builder::new()
            .timer(TokioTimer::new())
            .header_read_timeout(header_timeout)
            .serve_connection(TokioIo::new(tcp), service)
            // A sandbox port's WebSocket (crate::ports) takes the connection over.
            .with_upgrades();
        let stopping = stopping.clone();
        open.spawn(async move {
            tokio::pin!(conn);
            let closed = tokio::select! {
                closed = conn.as_mut() => closed,
                _ = stopping.cancelled() => {
                    conn.as_mut().graceful_shutdown();
                    conn.await
                }
            };
            if let Err(e) = closed {
                tracing::debug!(%peer, "connection closed: {e}");
            }
        });
    }
}

/// Errors of one connection that went away before it was accepted; the listener is fine.
fn is_connection_error(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionRefused | io::ErrorKind::ConnectionAborted | io::ErrorKind::ConnectionReset
    )
}
