//! Routes envd requests to the sandbox they name: each request is forwarded unchanged (method,
//! path and query, headers, body) over a fresh HTTP/1.1 connection to the sandbox's envd unix
//! socket, and the response streams back as it comes; nothing is buffered.

use axum::body::Body;
use axum::extract::Request;
use axum::http::Uri;
use axum::response::Response;
use hyper_util::rt::TokioIo;
use std::path::Path;
use tokio::net::UnixStream;

#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    #[error("cannot connect to envd at {path}: {source}")]
    Connect { path: String, source: std::io::Error },
    #[error("HTTP handshake with envd failed: {0}")]
    Handshake(hyper::Error),
    #[error("envd did not answer: {0}")]
    Send(hyper::Error),
}

pub async fn forward(socket: &Path, req: Request) -> Result<Response, ProxyError> {
    let stream = UnixStream::connect(socket)
        .await
        .map_err(|source| ProxyError::Connect { path: socket.display().to_string(), source })?;
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake(TokioIo::new(stream)).await.map_err(ProxyError::Handshake)?;
    tokio::spawn(async move {
        if let Err(e) = conn.await {
            tracing::debug!("envd connection: {e}");
        }
    });
    let (mut parts, body) = req.into_parts();
    to_origin_form(&mut parts.uri);
    let res = sender.send_request(Request::from_parts(parts, body)).await.map_err(ProxyError::Send)?;
    Ok(res.map(Body::new))
}

/// An absolute-form request target (`http://host/path?q`) made origin-form (`/path?q`), as the
/// server behind a proxy expects it.
pub fn to_origin_form(uri: &mut Uri) {
    if uri.scheme().is_some() || uri.authority().is_some() {
        let pq = uri.path_and_query().map_or("/", |pq| pq.as_str()).to_string();
        *uri = pq.parse::<Uri>().unwrap_or_else(|_| Uri::from_static("/"));
    }
}
