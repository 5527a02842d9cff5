//! Starts the real `sandbank serve` on 127.0.0.1:0 with a fresh data directory, and talks
//! raw HTTP/1.1 to it.
#![allow(dead_code)]

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{HeaderMap, Request, StatusCode};
use hyper_util::rt::TokioIo;
use sandbank_testkit::{serve_command, ServerProcess};
use serde_json::Value;
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Command, ExitStatus};

pub mod cli;
pub mod host;
pub mod rng;

pub const KEY: &str = "integration-test-key";

/// A running server, with the temporary data dir it owns (if any).
pub struct Server {
    process: ServerProcess,
    _tmp: Option<tempfile::TempDir>,
}

impl std::ops::Deref for Server {
    type Target = ServerProcess;
    fn deref(&self) -> &ServerProcess {
        &self.process
    }
}

impl std::ops::DerefMut for Server {
    fn deref_mut(&mut self) -> &mut ServerProcess {
        &mut self.process
    }
}

pub fn command(data_dir: &Path, key: Option<&str>) -> Command {
    serve_command(Path::new(env!("CARGO_BIN_EXE_sandbank")), data_dir, key, "info")
}

impl Server {
    pub fn start() -> Server {
        let tmp = tempfile::tempdir().unwrap();
        let mut s = Server::start_in(tmp.path(), Some(KEY)).unwrap_or_else(|e| panic!("{e}"));
        s._tmp = Some(tmp);
        s
    }

    /// Starts a server with these extra `serve` arguments, in a fresh data directory.
    pub fn start_with(args: &[&str]) -> Server {
        Server::start_configured(args, &[]).unwrap_or_else(|e| panic!("{e}"))
    }

    /// Starts a server with these extra `serve` arguments and variables, in a fresh data directory.
    pub fn start_configured(args: &[&str], vars: &[(&str, &str)]) -> Result<Server, String> {
        let tmp = tempfile::tempdir().unwrap();
        let mut cmd = command(tmp.path(), Some(KEY));
        cmd.args(args).envs(vars.iter().copied());
        Ok(Server { process: ServerProcess::spawn(cmd, tmp.path())?, _tmp: Some(tmp) })
    }

    /// Starts a server; `Err` carries its exit status and stderr when it does not come up.
    pub fn start_in(data_dir: &Path, key: Option<&str>) -> Result<Server, String> {
        Server::start_in_with(data_dir, key, &[])
    }

    /// The same, with these extra `serve` arguments.
    pub fn start_in_with(data_dir: &Path, key: Option<&str>, args: &[&str]) -> Result<Server, String> {
        let mut cmd = command(data_dir, key);
        cmd.args(args);
        Ok(Server { process: ServerProcess::spawn(cmd, data_dir)?, _tmp: None })
    }

    /// Where its layers and sandboxes' directories are: its btrfs store (seen through its own
    /// mount namespace, the only one it is mounted in), or the data directory (the copy store).
    pub fn store(&self) -> std::path::PathBuf {
        let store = std::path::PathBuf::from(format!("/proc/{}/root{}/cow", self.child.id(), self.data_dir.display()));
        if store.join("layers").is_dir() {
            store
        } else {
            self.data_dir.clone()
        }
    }

    /// SIGTERM; asserts a clean exit within 5 s.
    pub fn stop(self) -> ExitStatus {
        let Server { process, _tmp } = self;
        process.stop()
    }
}

#[derive(Debug)]
pub struct Res {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Res {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {:?}", String::from_utf8_lossy(&self.body)))
    }

    /// Asserts a JSON error `{code: status, message}`; returns the message.
    pub fn error(&self, status: u16) -> String {
        assert_eq!(self.status.as_u16(), status, "body: {}", String::from_utf8_lossy(&self.body));
        let ct = self.headers.get("content-type").map(|v| v.to_str().unwrap().to_string());
        assert_eq!(ct.as_deref(), Some("application/json"));
        let v = self.json();
        assert_eq!(v["code"], status, "{v}");
        v["message"].as_str().expect("a message").to_string()
    }

    pub fn header(&self, name: &str) -> Option<String> {
        self.headers.get(name).map(|v| v.to_str().unwrap().to_string())
    }
}

pub async fn send(addr: SocketAddr, req: Request<Full<Bytes>>) -> Res {
    let stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let (mut tx, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await.unwrap();
    tokio::spawn(conn);
    let res = tx.send_request(req).await.expect("response");
    let (parts, body) = res.into_parts();
    Res { status: parts.status, headers: parts.headers, body: body.collect().await.unwrap().to_bytes() }
}

/// Like [`send`], but a refused connection or a cut-off answer is an `Err`, not a panic (for
/// tests that kill the server, or that expect it to refuse a request).
pub async fn try_send(addr: SocketAddr, req: Request<Full<Bytes>>) -> Result<Res, String> {
    let stream = tokio::net::TcpStream::connect(addr).await.map_err(|e| format!("connect: {e}"))?;
    let (mut tx, conn) =
        hyper::client::conn::http1::handshake(TokioIo::new(stream)).await.map_err(|e| format!("handshake: {e}"))?;
    tokio::spawn(conn);
    let res = tx.send_request(req).await.map_err(|e| format!("no response: {e}"))?;
    let (parts, body) = res.into_parts();
    let body = body.collect().await.map_err(|e| format!("reading the body: {e}"))?.to_bytes();
    Ok(Res { status: parts.status, headers: parts.headers, body })
}

pub fn req(addr: SocketAddr, method: &str, path: &str) -> hyper::http::request::Builder {
    Request::builder().method(method).uri(path).header("host", addr.to_string())
}

/// A control-plane call with the API key.
pub async fn call(addr: SocketAddr, method: &str, path: &str, body: Option<&str>) -> Res {
    let mut b = req(addr, method, path).header("x-api-key", KEY);
    if body.is_some() {
        b = b.header("content-type", "application/json");
    }
    send(addr, b.body(Full::new(Bytes::from(body.unwrap_or("").to_string()))).unwrap()).await
}

pub async fn create(addr: SocketAddr, body: &str) -> String {
    let r = call(addr, "POST", "/sandboxes", Some(body)).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", String::from_utf8_lossy(&r.body));
    r.json()["sandboxID"].as_str().unwrap().to_string()
}

/// Sandbox `id`'s envd access token (every sandbox has one), from `GET /sandboxes/{id}`.
pub async fn token(addr: SocketAddr, id: &str) -> String {
    let r = call(addr, "GET", &format!("/sandboxes/{id}"), None).await;
    assert_eq!(r.status, StatusCode::OK, "{}", String::from_utf8_lossy(&r.body));
    r.json()["envdAccessToken"].as_str().expect("every sandbox has an envdAccessToken").to_string()
}

/// A request to sandbox `id`'s envd, routed by its ID header and carrying its access token.
pub async fn envd_req(addr: SocketAddr, id: &str, method: &str, path: &str) -> hyper::http::request::Builder {
    req(addr, method, path).header("E2b-Sandbox-Id", id).header("X-Access-Token", token(addr, id).await)
}

pub fn time(v: &Value) -> chrono::DateTime<chrono::Utc> {
    v.as_str().unwrap_or_else(|| panic!("not a time: {v}")).parse().unwrap()
}
