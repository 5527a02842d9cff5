//! Starts the real `sandbank serve` on 127.0.0.1:0 with a fresh data directory, and talks
//! raw HTTP/1.1 to it.
#![allow(dead_code)]

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{HeaderMap, Request, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::Value;
use std::io::{BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub const KEY: &str = "integration-test-key";
/// Opening the engine builds the `base` template on first use.
const START_TIMEOUT: Duration = Duration::from_secs(120);

pub struct Server {
    pub addr: SocketAddr,
    pub child: Child,
    pub data_dir: PathBuf,
    pub stderr: Arc<Mutex<String>>,
    /// stdout after the `listening on` line: must stay empty.
    pub extra_stdout: Arc<Mutex<Vec<String>>>,
    _tmp: Option<tempfile::TempDir>,
}

pub fn command(data_dir: &Path, key: Option<&str>) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_sandbank"));
    cmd.args(["serve", "--listen", "127.0.0.1:0", "--data-dir"]).arg(data_dir);
    if let Some(k) = key {
        cmd.args(["--api-key", k]);
    }
    cmd.env_remove("SANDBANK_API_KEY").env_remove("SANDBANK_DATA_DIR");
    cmd.env("RUST_LOG", std::env::var("RUST_LOG").unwrap_or_else(|_| "info".into()));
    cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
    cmd
}

impl Server {
    pub fn start() -> Server {
        let tmp = tempfile::tempdir().unwrap();
        let mut s = Server::start_in(tmp.path(), Some(KEY)).unwrap_or_else(|e| panic!("{e}"));
        s._tmp = Some(tmp);
        s
    }

    /// Starts a server; `Err` carries its exit status and stderr when it does not come up.
    pub fn start_in(data_dir: &Path, key: Option<&str>) -> Result<Server, String> {
        let mut child = command(data_dir, key).spawn().expect("spawning sandbank serve");
        let stderr = Arc::new(Mutex::new(String::new()));
        {
            let mut err = child.stderr.take().unwrap();
            let sink = stderr.clone();
            std::thread::spawn(move || {
                let mut buf = [0u8; 4096];
                while let Ok(n) = err.read(&mut buf) {
                    if n == 0 {
                        break;
                    }
                    let s = String::from_utf8_lossy(&buf[..n]).to_string();
                    eprint!("{s}");
                    sink.lock().unwrap().push_str(&s);
                }
            });
        }
        let out = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        let extra_stdout = Arc::new(Mutex::new(Vec::new()));
        let extra = extra_stdout.clone();
        std::thread::spawn(move || {
            let mut lines = BufReader::new(out).lines();
            let first = lines.next();
            let _ = tx.send(first);
            for l in lines.map_while(Result::ok) {
                extra.lock().unwrap().push(l);
            }
        });
        match rx.recv_timeout(START_TIMEOUT) {
            Ok(Some(Ok(line))) => {
                let addr = line
                    .strip_prefix("listening on http://")
                    .unwrap_or_else(|| panic!("first stdout line: {line:?}"))
                    .parse::<SocketAddr>()
                    .unwrap_or_else(|e| panic!("address in {line:?}: {e}"));
                assert_ne!(addr.port(), 0, "the real port, not 0");
                Ok(Server { addr, child, data_dir: data_dir.to_path_buf(), stderr, extra_stdout, _tmp: None })
            }
            Ok(_) => {
                let status = child.wait().unwrap();
                std::thread::sleep(Duration::from_millis(100));
                Err(format!("server exited ({status}) before listening; stderr:\n{}", stderr.lock().unwrap()))
            }
            Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                Err(format!("server did not listen within {START_TIMEOUT:?}; stderr:\n{}", stderr.lock().unwrap()))
            }
        }
    }

    pub fn signal(&self, sig: nix::sys::signal::Signal) {
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(self.child.id() as i32), sig).unwrap();
    }

    /// SIGTERM; asserts a clean exit within 5 s.
    pub fn stop(mut self) -> ExitStatus {
        let t0 = Instant::now();
        self.signal(nix::sys::signal::Signal::SIGTERM);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                assert!(status.success(), "exit status after SIGTERM: {status}");
                std::thread::sleep(Duration::from_millis(50));
                let extra = self.extra_stdout.lock().unwrap().clone();
                assert!(extra.is_empty(), "stdout after the listening line: {extra:?}");
                return status;
            }
            if t0.elapsed() > Duration::from_secs(5) {
                let _ = self.child.kill();
                let _ = self.child.wait();
                panic!("server still running 5 s after SIGTERM");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            self.signal(nix::sys::signal::Signal::SIGTERM);
            let t0 = Instant::now();
            while t0.elapsed() < Duration::from_secs(5) {
                if let Ok(Some(_)) = self.child.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
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

pub fn time(v: &Value) -> chrono::DateTime<chrono::Utc> {
    v.as_str().unwrap_or_else(|| panic!("not a time: {v}")).parse().unwrap()
}
