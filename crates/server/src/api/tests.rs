//! The control plane against a fake engine whose "sandboxes" are small HTTP servers on unix
//! sockets: everything but the real sandboxes, without root.

use super::backend::{Backend, BoxFuture};
use super::{envd_auth, router, AppState};
use axum::body::Body;
use axum::http::{HeaderMap, Method, Request, StatusCode};
use bytes::Bytes;
use http_body_util::BodyExt;
use hyper_util::rt::TokioIo;
use sandbank_engine::snapshot_archive::ArchiveError;
use sandbank_engine::{EngineError, Limits, SandboxHandle, SandboxSpec};
use serde_json::Value;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const KEY: &str = "test-key-123";

struct FakeSandbox {
    exited: tokio::sync::watch::Sender<bool>,
    server: tokio::task::JoinHandle<()>,
}

struct Fake {
    dir: tempfile::TempDir,
    running: Mutex<HashMap<String, FakeSandbox>>,
    killed: Mutex<Vec<String>>,
    specs: Mutex<Vec<SandboxSpec>>,
    snapshots: Mutex<Vec<sandbank_engine::SnapshotInfo>>,
    /// (sandbox, keep_memory) of each pause; (sandbox, reboot) of each resume.
    pauses: Mutex<Vec<(String, bool)>>,
    resumes: Mutex<Vec<(String, bool)>>,
    egress: Mutex<Vec<(String, sandbank_engine::egress::Egress)>>,
}

impl Fake {
    fn new() -> Arc<Self> {
        Arc::new(Fake {
            dir: tempfile::tempdir().unwrap(),
            running: Mutex::default(),
            killed: Mutex::default(),
            specs: Mutex::default(),
            snapshots: Mutex::default(),
            pauses: Mutex::default(),
            resumes: Mutex::default(),
            egress: Mutex::default(),
        })
    }

    /// Simulates the sandbox's PID 1 dying on its own.
    fn die(&self, id: &str) {
        let sb = self.running.lock().unwrap().remove(id).unwrap();
        sb.server.abort();
        let _ = sb.exited.send(true);
    }

    fn killed(&self) -> Vec<String> {
        self.killed.lock().unwrap().clone()
    }
}

/// The fake envd: echoes what it got; `/big?n=` streams n bytes; `/slow` streams forever.
async fn fake_envd(req: axum::extract::Request) -> axum::response::Response {
    let (parts, body) = req.into_parts();
    let path = parts.uri.path().to_string();
    if path == "/big" {
        let n: usize = parts.uri.query().unwrap().trim_start_matches("n=").parse().unwrap();
        let chunks = (0..n.div_ceil(65536)).map(move |i| {
            let len = (n - i * 65536).min(65536);
            Ok::<_, std::io::Error>(Bytes::from(vec![b'x'; len]))
        });
        return axum::response::Response::new(Body::from_stream(futures_util::stream::iter(chunks)));
    }
    if path == "/slow" {
        let s = futures_util::stream::unfold(0u32, |i| async move {
            tokio::time::sleep(Duration::from_millis(20)).await;
            Some((Ok::<_, std::io::Error>(Bytes::from(format!("tick{i}\n"))), i + 1))
        });
        return axum::response::Response::new(Body::from_stream(s));
    }
    let body = body.collect().await.unwrap().to_bytes();
    let headers: HashMap<String, String> =
        parts.headers.iter().map(|(k, v)| (k.to_string(), String::from_utf8_lossy(v.as_bytes()).into())).collect();
    axum::Json(serde_json::json!({
        "method": parts.method.to_string(),
        "uri": parts.uri.to_string(),
        "headers": headers,
        "body_len": body.len(),
        "body_head": String::from_utf8_lossy(&body[..body.len().min(64)]),
    }))
    .into_response_helper()
}

trait IntoResp {
    fn into_response_helper(self) -> axum::response::Response;
}
impl<T: axum::response::IntoResponse> IntoResp for T {
    fn into_response_helper(self) -> axum::response::Response {
        self.into_response()
    }
}

impl Backend for Fake {
    fn template_exists(&self, name: &str) -> bool {
        name == "base"
    }

    fn base_image_id(&self) -> String {
        "fake-base".into()
    }

    fn default_limits(&self) -> Limits {
        Limits { cpu_count: 2, memory_mb: 512, pids: 256, disk_mb: 4096 }
    }

    fn disk_limits(&self) -> bool {
        true
    }

    fn root_is_host_root(&self) -> bool {
        false
    }

    fn create(&self, spec: SandboxSpec) -> BoxFuture<'_, Result<SandboxHandle, EngineError>> {
        Box::pin(async move {
            let sock = self.dir.path().join(format!("{}.sock", spec.id));
            let listener = tokio::net::UnixListener::bind(&sock).unwrap();
            let app = axum::Router::new().fallback(fake_envd);
            let server = tokio::spawn(async move {
                let _ = axum::serve(listener, app).await;
            });
            let (tx, rx) = tokio::sync::watch::channel(false);
            self.running.lock().unwrap().insert(spec.id.clone(), FakeSandbox { exited: tx, server });
            self.specs.lock().unwrap().push(spec.clone());
            let internet = spec.allow_internet_access != Some(false);
            Ok(SandboxHandle { id: spec.id, template_id: spec.template, envd_socket: sock, exited: rx, internet })
        })
    }

    fn kill<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<bool, EngineError>> {
        Box::pin(async move {
            self.killed.lock().unwrap().push(id.to_string());
            let Some(sb) = self.running.lock().unwrap().remove(id) else { return Ok(false) };
            sb.server.abort();
            let _ = sb.exited.send(true);
            Ok(true)
        })
    }

    fn pause<'a>(&'a self, id: &'a str, _api: String, keep_memory: bool) -> BoxFuture<'a, Result<(), EngineError>> {
        Box::pin(async move {
            if !self.running.lock().unwrap().contains_key(id) {
                return Err(EngineError::SandboxNotFound(id.into()));
            }
            self.pauses.lock().unwrap().push((id.to_string(), keep_memory));
            Ok(())
        })
    }

    fn resume<'a>(&'a self, id: &'a str, reboot: bool) -> BoxFuture<'a, Result<sandbank_engine::Resumed, EngineError>> {
        Box::pin(async move {
            self.resumes.lock().unwrap().push((id.to_string(), reboot));
            Ok(sandbank_engine::Resumed::Thawed)
        })
    }

    /// Snapshot `other-lineage` is refused without `any_lineage`; `missing` is not found; any
    /// other restores: the sandbox's fake envd ends (its exit fires) and a new one starts.
    fn restore<'a>(
        &'a self,
        id: &'a str,
        snapshot: &'a str,
        any_lineage: bool,
    ) -> BoxFuture<'a, super::backend::Restored> {
        Box::pin(async move {
            use sandbank_engine::{RestoreError, RestoreRefused};
            if snapshot == "missing" {
                return Err(RestoreRefused::NotFound(snapshot.into()).into());
            }
            if snapshot == "other-lineage" && !any_lineage {
                let sandbox = id.into();
                return Err(RestoreRefused::OtherLineage {
                    snapshot: snapshot.into(),
                    sandbox,
                    origin: "elsewhere".into(),
                }
                .into());
            }
            let spec = self.specs.lock().unwrap().iter().rev().find(|s| s.id == id).cloned();
            let spec = spec.ok_or_else(|| RestoreError::Unchanged(EngineError::SandboxNotFound(id.into())))?;
            let _ = self.kill(id).await;
            self.killed.lock().unwrap().pop();
            let _ = std::fs::remove_file(self.dir.path().join(format!("{id}.sock")));
            if snapshot == "unstartable" {
                return Err(RestoreError::Lost(EngineError::StartFailed("it would not start".into())));
            }
            self.create(SandboxSpec { template: snapshot.into(), ..spec }).await.map_err(RestoreError::Lost)
        })
    }

    fn set_egress<'a>(
        &'a self,
        id: &'a str,
        rules: sandbank_engine::egress::Egress,
    ) -> BoxFuture<'a, Result<(), EngineError>> {
        Box::pin(async move {
            if !self.running.lock().unwrap().contains_key(id) {
                return Err(EngineError::SandboxNotFound(id.into()));
            }
            self.egress.lock().unwrap().push((id.to_string(), rules));
            Ok(())
        })
    }

    fn paused(&self) -> Vec<sandbank_engine::PausedSandbox> {
        Vec::new()
    }

    fn usage<'a>(&'a self, _id: &'a str) -> BoxFuture<'a, Result<sandbank_engine::SandboxUsage, EngineError>> {
        Box::pin(async move {
            Ok(sandbank_engine::SandboxUsage {
                cpu_ns: 1_000_000,
                memory_bytes: 4096,
                memory_cache_bytes: 2048,
                disk_bytes: 8192,
            })
        })
    }

    fn snapshot_with<'a>(
        &'a self,
        sandbox_id: &'a str,
        opts: sandbank_engine::SnapshotOptions,
    ) -> BoxFuture<'a, Result<sandbank_engine::SnapshotInfo, EngineError>> {
        Box::pin(async move {
            let mut all = self.snapshots.lock().unwrap();
            let now = fake_now();
            let live = |s: &sandbank_engine::SnapshotInfo| s.expires_at.is_none_or(|t| t > now);
            if let Some(name) = &opts.name {
                if all.iter().any(|s| live(s) && s.names.contains(name)) && !opts.name_moves {
                    return Err(EngineError::NameTaken(name.clone()));
                }
                all.iter_mut().for_each(|s| s.names.retain(|n| n != name));
            }
            let created_at = 1_700_000_000_000_000_000 + all.len() as i64 * 1000;
            let s = sandbank_engine::SnapshotInfo {
                id: sandbank_engine::id::new_id(),
                names: opts.name.into_iter().collect(),
                sandbox_id: sandbox_id.to_string(),
                parent_id: None,
                created_at,
                size_bytes: 0,
                // As the engine with CRIU: with memory unless asked otherwise.
                mode: opts.mode.unwrap_or(sandbank_engine::SnapshotMode::Full),
                metadata: opts.metadata,
                expires_at: opts.expires_at,
            };
            all.push(s.clone());
            if let Some(keep) = opts.keep_last {
                let mut mine: Vec<_> = all.iter_mut().filter(|o| o.sandbox_id == sandbox_id && live(o)).collect();
                mine.sort_by(|a, b| (b.created_at, &b.id).cmp(&(a.created_at, &a.id)));
                mine.into_iter().skip(keep as usize).for_each(|o| o.expires_at = Some(now));
            }
            Ok(s)
        })
    }

    fn sweep_expired_snapshots(&self) -> Result<Vec<String>, EngineError> {
        let now = fake_now();
        let mut all = self.snapshots.lock().unwrap();
        // A snapshot whose name is "inuse" stands for one a sandbox was started from.
        let (gone, kept): (Vec<_>, Vec<_>) =
            all.drain(..).partition(|s| s.expires_at.is_some_and(|t| t <= now) && !s.metadata.contains_key("inuse"));
        *all = kept;
        Ok(gone.into_iter().map(|s| s.id).collect())
    }

    fn list_snapshots(
        &self,
        filter: &sandbank_engine::ListFilter<'_>,
        after: Option<(i64, &str)>,
        limit: u32,
    ) -> Result<Vec<sandbank_engine::SnapshotInfo>, EngineError> {
        let now = fake_now();
        let mut v: Vec<_> = self
            .snapshots
            .lock()
            .unwrap()
            .iter()
            .filter(|s| filter.origin.is_none_or(|id| s.sandbox_id == id))
            .filter(|s| filter.name.is_none_or(|n| s.names.iter().any(|m| m == n)))
            .filter(|s| filter.metadata.iter().all(|(k, v)| s.metadata.get(k) == Some(v)))
            .filter(|s| s.expires_at.is_none_or(|t| t > now))
            .cloned()
            .collect();
        v.sort_by(|a, b| (b.created_at, &b.id).cmp(&(a.created_at, &a.id)));
        if let Some((t, id)) = after {
            v.retain(|s| (s.created_at, s.id.as_str()) < (t, id));
        }
        v.truncate(limit as usize);
        Ok(v)
    }

    /// A fixed change list for any snapshot the fake has.
    fn snapshot_diff(
        &self,
        id_or_name: &str,
    ) -> Result<Option<(sandbank_engine::SnapshotInfo, sandbank_engine::diff::LayerDiff)>, EngineError> {
        let base = id_or_name.rsplit_once(':').map_or(id_or_name, |(b, _)| b);
        let found =
            self.snapshots.lock().unwrap().iter().find(|s| s.id == base || s.names.iter().any(|n| n == base)).cloned();
        let changes = sandbank_engine::diff::LayerDiff {
            added: vec!["/home/user/new.txt".into()],
            changed: vec!["/etc/hosts".into()],
            removed: vec!["/tmp/old".into()],
        };
        Ok(found.map(|s| (s, changes)))
    }

    fn delete_snapshot(&self, id_or_name: &str) -> Result<bool, EngineError> {
        let base = id_or_name.rsplit_once(':').map_or(id_or_name, |(b, _)| b);
        if base == "inuse" {
            return Err(EngineError::SnapshotInUse { id: "inuse".into(), sandboxes: vec!["x".into()] });
        }
        let mut all = self.snapshots.lock().unwrap();
        let n = all.len();
        all.retain(|s| s.id != base && !s.names.iter().any(|n| n == base));
        Ok(all.len() != n)
    }

    fn pull_image<'a>(
        &'a self,
        reference: &'a str,
        _credentials: &'a sandbank_engine::oci::Credentials,
        progress: &'a (dyn Fn(String) + Send + Sync),
    ) -> BoxFuture<'a, Result<super::backend::PulledImage, EngineError>> {
        Box::pin(async move {
            progress(format!("Pulling {reference}"));
            let message = "not found in the fake's registry".to_string();
            Err(sandbank_engine::oci::ImageError { reference: reference.into(), message }.into())
        })
    }

    /// A real archive (the engine's format) of one fake layer holding the snapshot's ID.
    fn export_snapshot(&self, id_or_name: &str) -> Result<super::backend::ExportJob, ArchiveError> {
        use sandbank_engine::snapshot_archive::{ArchiveWriter, Manifest, ManifestSnapshot, FORMAT, FORMAT_VERSION};
        let base = id_or_name.rsplit_once(':').map_or(id_or_name, |(b, _)| b);
        let all = self.snapshots.lock().unwrap();
        let s = all
            .iter()
            .find(|s| s.id == base || s.names.iter().any(|n| n == base))
            .ok_or_else(|| ArchiveError::NotFound(id_or_name.to_string()))?
            .clone();
        let manifest = Manifest {
            format: FORMAT.into(),
            version: FORMAT_VERSION,
            snapshot: ManifestSnapshot {
                id: s.id.clone(),
                names: s.names.clone(),
                metadata: s.metadata.clone(),
                origin_sandbox: s.sandbox_id.clone(),
                created_at: s.created_at,
                size_bytes: s.size_bytes,
                mode: "filesystem".into(),
                source_mode: "filesystem".into(),
            },
            template: "base".into(),
            base_image: "fake-image".into(),
            layers: 1,
            exporter: "fake".into(),
            exported_at: 0,
        };
        let write = move |out: &mut dyn std::io::Write| -> Result<String, ArchiveError> {
            let io = ArchiveError::io("write");
            let mut w = ArchiveWriter::new(out, &manifest).map_err(ArchiveError::io("write"))?;
            let mut layer = w.layer().map_err(ArchiveError::io("write"))?;
            std::io::Write::write_all(&mut layer, format!("layer of {}", manifest.snapshot.id).as_bytes())
                .map_err(ArchiveError::io("write"))?;
            layer.finish().map_err(ArchiveError::io("write"))?;
            w.finish().map(|(_, digest)| digest).map_err(io)
        };
        Ok(super::backend::ExportJob { snapshot_id: s.id, write: Box::new(write) })
    }

    /// Reads the archive as the engine does (the same checks); its template must be `base`.
    fn import_snapshot(
        &self,
        input: Box<dyn std::io::Read + Send>,
    ) -> Result<sandbank_engine::engine::ImportedSnapshot, ArchiveError> {
        let (mut r, m) = sandbank_engine::snapshot_archive::ArchiveReader::open(input)?;
        if m.template != "base" {
            return Err(ArchiveError::TemplateMissing(m.template));
        }
        while let Some(mut layer) = r.next_layer()? {
            std::io::copy(&mut layer, &mut std::io::sink()).map_err(ArchiveError::from_read)?;
        }
        let mut all = self.snapshots.lock().unwrap();
        let taken = |n: &String| all.iter().any(|s| s.names.contains(n));
        let dropped_name = m.snapshot.names.first().filter(|n| taken(n)).cloned();
        let info = sandbank_engine::SnapshotInfo {
            id: sandbank_engine::id::new_id(),
            names: m.snapshot.names.iter().filter(|n| !taken(n)).cloned().collect(),
            sandbox_id: sandbank_engine::engine::IMPORTED_ORIGIN.into(),
            parent_id: None,
            created_at: fake_now(),
            size_bytes: m.snapshot.size_bytes,
            mode: sandbank_engine::SnapshotMode::Filesystem,
            metadata: m.snapshot.metadata,
            expires_at: None,
        };
        all.push(info.clone());
        Ok(sandbank_engine::engine::ImportedSnapshot { info, dropped_name })
    }

    fn shutdown(&self) -> BoxFuture<'_, ()> {
        Box::pin(async move {
            let ids: Vec<String> = self.running.lock().unwrap().keys().cloned().collect();
            for id in ids {
                let _ = self.kill(&id).await;
            }
        })
    }
}

fn fake_now() -> i64 {
    chrono::Utc::now().timestamp_nanos_opt().unwrap()
}

async fn start() -> (SocketAddr, Arc<Fake>, AppState) {
    start_with(super::snapshots::SnapshotPolicy::default()).await
}

async fn start_with(policy: super::snapshots::SnapshotPolicy) -> (SocketAddr, Arc<Fake>, AppState) {
    let fake = Fake::new();
    let mut state = AppState::new(fake.clone(), KEY, crate::templates::Templates::in_memory(), None);
    state.snapshot_policy = policy;
    state.spawn_expiry();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = router(state.clone());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (addr, fake, state)
}

struct Res {
    status: StatusCode,
    headers: HeaderMap,
    body: Bytes,
}

impl Res {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {:?}", String::from_utf8_lossy(&self.body)))
    }

    /// An error response: JSON `{code, message}` with `code` = the status; returns the message.
    fn error(&self, status: u16) -> String {
        assert_eq!(self.status.as_u16(), status, "body: {}", String::from_utf8_lossy(&self.body));
        assert_eq!(self.headers["content-type"], "application/json");
        let v = self.json();
        assert_eq!(v["code"], status, "{v}");
        v["message"].as_str().expect("message").to_string()
    }
}

async fn send(addr: SocketAddr, req: Request<Body>) -> Res {
    let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (mut tx, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await.unwrap();
    tokio::spawn(conn);
    let res = tx.send_request(req).await.unwrap();
    let (parts, body) = res.into_parts();
    Res { status: parts.status, headers: parts.headers, body: body.collect().await.unwrap().to_bytes() }
}

async fn call(addr: SocketAddr, method: &str, path: &str, body: Option<&str>) -> Res {
    let mut b = Request::builder().method(method).uri(path).header("host", addr.to_string()).header("x-api-key", KEY);
    if body.is_some() {
        b = b.header("content-type", "application/json");
    }
    send(addr, b.body(body.map_or_else(Body::empty, |s| Body::from(s.to_string()))).unwrap()).await
}

async fn create(addr: SocketAddr, body: &str) -> String {
    let r = call(addr, "POST", "/sandboxes", Some(body)).await;
    assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
    r.json()["sandboxID"].as_str().unwrap().to_string()
}

#[tokio::test]
async fn auth_is_required_except_for_health() {
    let (addr, _, _) = start().await;
    let r = send(addr, Request::get("/health").body(Body::empty()).unwrap()).await;
    assert_eq!(r.status, StatusCode::OK);
    for path in ["/v2/sandboxes", "/sandboxes", "/sandboxes/abcdefghij0123456789"] {
        let r = send(addr, Request::get(path).body(Body::empty()).unwrap()).await;
        assert!(r.error(401).contains("Missing API key"), "{path}");
        let r = send(addr, Request::get(path).header("X-API-KEY", "wrong").body(Body::empty()).unwrap()).await;
        assert_eq!(r.error(401), "Invalid API key");
        let r =
            send(addr, Request::get(path).header("Authorization", "Bearer wrong").body(Body::empty()).unwrap()).await;
        r.error(401);
    }
    let r = send(addr, Request::post("/sandboxes").body(Body::from(r#"{"templateID":"base"}"#)).unwrap()).await;
    r.error(401);
    let r = send(
        addr,
        Request::get("/v2/sandboxes").header("authorization", format!("Bearer {KEY}")).body(Body::empty()).unwrap(),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.json(), serde_json::json!([]));
    let r = send(addr, Request::get("/v2/sandboxes").header("X-Api-Key", KEY).body(Body::empty()).unwrap()).await;
    assert_eq!(r.status, StatusCode::OK);
}

#[tokio::test]
async fn lifecycle_create_get_list_timeout_connect_kill() {
    let (addr, fake, _) = start().await;
    let before = chrono::Utc::now();
    let r = call(addr, "POST", "/sandboxes", Some(r#"{"templateID":"base","metadata":{"k":"v"},"envVars":{"A":"1"},"timeout":120,"secure":true,"allow_internet_access":true,"autoPause":false}"#)).await;
    assert_eq!(r.status, StatusCode::CREATED);
    let v = r.json();
    let id = v["sandboxID"].as_str().unwrap().to_string();
    assert!(sandbank_engine::id::is_valid(&id), "{id}");
    assert_eq!(v["templateID"], "base");
    assert_eq!(v["envdVersion"], "0.6.4");
    assert_eq!(v["clientID"], "sandbank");
    assert!(v["domain"].is_null() && v.as_object().unwrap().contains_key("domain"));
    // Secure: a 128-bit token that envd requests must carry.
    let token = v["envdAccessToken"].as_str().unwrap().to_string();
    assert!(token.len() == 32 && token.chars().all(|c| c.is_ascii_hexdigit()), "{token}");
    let spec = fake.specs.lock().unwrap()[0].clone();
    assert_eq!(spec.env_vars.get("A").map(String::as_str), Some("1"));
    assert_eq!(spec.template, "base");
    assert_eq!(spec.allow_internet_access, Some(true));

    let d = call(addr, "GET", &format!("/sandboxes/{id}"), None).await.json();
    assert_eq!(d["sandboxID"], id.as_str());
    assert_eq!(d["allowInternetAccess"], true);
    assert_eq!(d["state"], "running");
    assert_eq!(d["cpuCount"], 2);
    assert_eq!(d["memoryMB"], 512);
    assert_eq!(d["diskSizeMB"], 4096);
    assert_eq!(d["metadata"], serde_json::json!({"k": "v"}));
    assert_eq!(d["envdAccessToken"], token.as_str());
    assert_eq!(d["allowInternetAccess"], true);
    assert_eq!(d["lifecycle"], serde_json::json!({"autoResume": false, "onTimeout": "kill"}));
    let started: chrono::DateTime<chrono::Utc> = d["startedAt"].as_str().unwrap().parse().unwrap();
    let end: chrono::DateTime<chrono::Utc> = d["endAt"].as_str().unwrap().parse().unwrap();
    assert!(started >= before - chrono::TimeDelta::seconds(1));
    assert_eq!((end - started).num_seconds(), 120);
    // Long form `<id>-<clientID>`.
    let r = call(addr, "GET", &format!("/sandboxes/{id}-sandbank"), None).await;
    assert_eq!(r.status, StatusCode::OK);

    // Timeout: may shorten.
    let r = call(addr, "POST", &format!("/sandboxes/{id}/timeout"), Some(r#"{"timeout":60}"#)).await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    let d = call(addr, "GET", &format!("/sandboxes/{id}"), None).await.json();
    let end: chrono::DateTime<chrono::Utc> = d["endAt"].as_str().unwrap().parse().unwrap();
    let left = (end - chrono::Utc::now()).num_seconds();
    assert!((58..=60).contains(&left), "{left}");

    // Connect: only extends.
    let r = call(addr, "POST", &format!("/sandboxes/{id}/connect"), Some(r#"{"timeout":10}"#)).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.json()["sandboxID"], id.as_str());
    assert_eq!(r.json()["envdVersion"], "0.6.4");
    let d = call(addr, "GET", &format!("/sandboxes/{id}"), None).await.json();
    let end2: chrono::DateTime<chrono::Utc> = d["endAt"].as_str().unwrap().parse().unwrap();
    assert_eq!(end2, end, "connect with a shorter timeout must not shorten");
    call(addr, "POST", &format!("/sandboxes/{id}/connect"), Some(r#"{"timeout":600}"#)).await;
    let d = call(addr, "GET", &format!("/sandboxes/{id}"), None).await.json();
    let end3: chrono::DateTime<chrono::Utc> = d["endAt"].as_str().unwrap().parse().unwrap();
    assert!((end3 - chrono::Utc::now()).num_seconds() >= 598);

    // Both lists.
    for path in ["/v2/sandboxes", "/sandboxes"] {
        let l = call(addr, "GET", path, None).await.json();
        assert_eq!(l.as_array().unwrap().len(), 1, "{path}");
        assert_eq!(l[0]["sandboxID"], id.as_str());
        assert_eq!(l[0]["state"], "running");
        assert_eq!(l[0]["metadata"]["k"], "v");
        assert_eq!(l[0]["memoryMB"], 512);
    }

    // Metrics: one sample now, from the engine's usage and the sandbox's limits.
    let m = call(addr, "GET", &format!("/sandboxes/{id}/metrics"), None).await.json();
    assert_eq!(m.as_array().unwrap().len(), 1, "{m}");
    assert_eq!((m[0]["memUsed"].as_u64(), m[0]["memTotal"].as_u64()), (Some(4096), Some(512 << 20)));
    assert_eq!((m[0]["diskUsed"].as_u64(), m[0]["diskTotal"].as_u64()), (Some(8192), Some(4096 << 20)));
    assert_eq!(m[0]["cpuCount"], 2);
    assert!(m[0]["cpuUsedPct"].as_f64().unwrap() >= 0.0);
    let past = call(addr, "GET", &format!("/sandboxes/{id}/metrics?start=1&end=2"), None).await.json();
    assert_eq!(past, serde_json::json!([]));
    let bad = call(addr, "GET", &format!("/sandboxes/{id}/metrics?start=yesterday"), None).await.error(400);
    assert!(bad.contains("\"yesterday\""), "{bad}");

    // Pause: 204, then 409; listed as paused; no end time runs out; connect resumes with 201.
    assert_eq!(call(addr, "POST", &format!("/sandboxes/{id}/pause"), None).await.status, StatusCode::NO_CONTENT);
    let m = call(addr, "POST", &format!("/sandboxes/{id}/pause"), None).await.error(409);
    assert!(m.contains(&id) && m.contains("already paused"), "{m}");
    assert_eq!(call(addr, "GET", &format!("/sandboxes/{id}"), None).await.json()["state"], "paused");
    let paused = call(addr, "GET", "/v2/sandboxes?state=paused", None).await.json();
    assert_eq!(paused.as_array().unwrap().len(), 1);
    let running = call(addr, "GET", "/v2/sandboxes?state=running", None).await.json();
    assert_eq!(running, serde_json::json!([]));
    let r = call(addr, "POST", &format!("/sandboxes/{id}/connect"), Some(r#"{"timeout":30}"#)).await;
    assert_eq!(r.status, StatusCode::CREATED);
    assert_eq!(r.json()["envdAccessToken"], token.as_str());
    assert_eq!(call(addr, "GET", &format!("/sandboxes/{id}"), None).await.json()["state"], "running");
    assert_eq!(
        call(addr, "POST", &format!("/sandboxes/{id}/resume"), Some("{}")).await.error(409),
        format!("Sandbox \"{id}\" is already running")
    );

    // Kill, then everything about it is 404 with the cloud's message.
    let r = call(addr, "DELETE", &format!("/sandboxes/{id}"), None).await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    assert_eq!(fake.killed(), vec![id.clone()]);
    let msg = format!("Sandbox \"{id}\" doesn't exist or you don't have access to it");
    assert_eq!(call(addr, "DELETE", &format!("/sandboxes/{id}"), None).await.error(404), msg);
    assert_eq!(call(addr, "GET", &format!("/sandboxes/{id}"), None).await.error(404), msg);
    assert_eq!(call(addr, "POST", &format!("/sandboxes/{id}/timeout"), Some(r#"{"timeout":5}"#)).await.error(404), msg);
    assert_eq!(call(addr, "POST", &format!("/sandboxes/{id}/connect"), Some(r#"{"timeout":5}"#)).await.error(404), msg);
    assert_eq!(call(addr, "POST", &format!("/sandboxes/{id}/pause"), None).await.error(404), msg);
    assert_eq!(call(addr, "GET", "/v2/sandboxes", None).await.json(), serde_json::json!([]));
}

#[tokio::test]
async fn default_timeout_is_300_seconds() {
    let (addr, _, _) = start().await;
    let id = create(addr, r#"{"templateID":"base"}"#).await;
    let d = call(addr, "GET", &format!("/sandboxes/{id}"), None).await.json();
    let s: chrono::DateTime<chrono::Utc> = d["startedAt"].as_str().unwrap().parse().unwrap();
    let e: chrono::DateTime<chrono::Utc> = d["endAt"].as_str().unwrap().parse().unwrap();
    assert_eq!((e - s).num_seconds(), 300);
    assert_eq!(d["metadata"], serde_json::json!({}));
}

#[tokio::test]
async fn sandboxes_expire_within_a_second_of_their_end() {
    let (addr, fake, _) = start().await;
    let long = create(addr, r#"{"templateID":"base","timeout":100}"#).await;
    let short = create(addr, r#"{"templateID":"base","timeout":2}"#).await;
    // Shortening the long one's timeout must wake the expiry task.
    let t0 = Instant::now();
    call(addr, "POST", &format!("/sandboxes/{long}/timeout"), Some(r#"{"timeout":1}"#)).await;
    let mut gone_long = None;
    let mut gone_short = None;
    while t0.elapsed() < Duration::from_secs(5) && (gone_long.is_none() || gone_short.is_none()) {
        if gone_long.is_none()
            && call(addr, "GET", &format!("/sandboxes/{long}"), None).await.status == StatusCode::NOT_FOUND
        {
            gone_long = Some(t0.elapsed());
        }
        if gone_short.is_none()
            && call(addr, "GET", &format!("/sandboxes/{short}"), None).await.status == StatusCode::NOT_FOUND
        {
            gone_short = Some(t0.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (gl, gs) = (gone_long.expect("long never expired"), gone_short.expect("short never expired"));
    assert!(gl >= Duration::from_millis(900) && gl < Duration::from_secs(2), "{gl:?}");
    assert!(gs >= Duration::from_millis(1800) && gs < Duration::from_secs(3), "{gs:?}");
    tokio::time::sleep(Duration::from_millis(100)).await;
    let mut killed = fake.killed();
    killed.sort();
    let mut want = vec![long, short];
    want.sort();
    assert_eq!(killed, want);
}

#[tokio::test]
async fn a_sandbox_whose_pid1_dies_is_dropped() {
    let (addr, fake, _) = start().await;
    let id = create(addr, r#"{"templateID":"base"}"#).await;
    fake.die(&id);
    let t0 = Instant::now();
    loop {
        let r = call(addr, "GET", &format!("/sandboxes/{id}"), None).await;
        if r.status == StatusCode::NOT_FOUND {
            break;
        }
        assert!(t0.elapsed() < Duration::from_secs(2), "still listed");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(call(addr, "GET", "/v2/sandboxes", None).await.json(), serde_json::json!([]));
}

/// A metrics call keeps a CPU reading per sandbox: it must go with the sandbox, also for one
/// with no process whose exit would say so (paused before a restart: only its files are left).
#[tokio::test]
async fn cpu_readings_go_with_their_sandbox() {
    let (addr, fake, state) = start().await;
    let id = create(addr, r#"{"templateID":"base"}"#).await;
    call(addr, "GET", &format!("/sandboxes/{id}/metrics"), None).await.json();
    let dormant = "dormantsandbox000001".to_string();
    let entry = state.registry.get(&id).unwrap();
    state.registry.insert(super::registry::Entry { id: dormant.clone(), ..entry });
    call(addr, "GET", &format!("/sandboxes/{dormant}/metrics"), None).await.json();
    assert_eq!(state.cpu_samples.len(), 2);
    for id in [&id, &dormant] {
        assert_eq!(call(addr, "DELETE", &format!("/sandboxes/{id}"), None).await.status, StatusCode::NO_CONTENT);
    }
    assert_eq!(fake.killed(), vec![id, dormant]);
    assert_eq!(state.cpu_samples.len(), 0);
}

#[tokio::test]
async fn list_pagination_and_filters() {
    let (addr, _, _) = start().await;
    let mut ids = Vec::new();
    for i in 0..5 {
        let md = if i % 2 == 0 { r#"{"a b":"c&d","n":"even"}"# } else { r#"{"n":"odd"}"# };
        ids.push(create(addr, &format!(r#"{{"templateID":"base","metadata":{md}}}"#)).await);
    }
    let newest_first: Vec<String> = ids.iter().rev().cloned().collect();
    // Pages of 2: 2, 2, 1; the token is absent on the last page.
    let mut seen = Vec::new();
    let mut token: Option<String> = None;
    let mut pages = 0;
    loop {
        let path = match &token {
            Some(t) => format!("/v2/sandboxes?limit=2&nextToken={t}"),
            None => "/v2/sandboxes?limit=2".to_string(),
        };
        let r = call(addr, "GET", &path, None).await;
        assert_eq!(r.status, StatusCode::OK);
        pages += 1;
        let items = r.json();
        for it in items.as_array().unwrap() {
            seen.push(it["sandboxID"].as_str().unwrap().to_string());
        }
        token = r.headers.get("x-next-token").map(|v| v.to_str().unwrap().to_string());
        if pages == 1 {
            // A sandbox created between pages (newer) must not appear in later pages, and
            // nothing may be skipped or repeated.
            create(addr, r#"{"templateID":"base","metadata":{"n":"late"}}"#).await;
        }
        if token.is_none() {
            break;
        }
        assert_eq!(items.as_array().unwrap().len(), 2);
    }
    assert_eq!(pages, 3);
    assert_eq!(seen, newest_first);

    // Exactly `limit` items left: no token.
    let r = call(addr, "GET", "/v2/sandboxes?limit=6", None).await;
    assert_eq!(r.json().as_array().unwrap().len(), 6);
    assert!(r.headers.get("x-next-token").is_none());
    let r = call(addr, "GET", "/v2/sandboxes", None).await;
    assert_eq!(r.json().as_array().unwrap().len(), 6);

    // The SDK's triple-encoded metadata filter: {'a b': 'c&d'} and {n: 'even'}.
    let r = call(addr, "GET", "/v2/sandboxes?metadata=a%252520b%3Dc%252526d", None).await;
    let got: Vec<String> =
        r.json().as_array().unwrap().iter().map(|v| v["sandboxID"].as_str().unwrap().to_string()).collect();
    assert_eq!(got, vec![ids[4].clone(), ids[2].clone(), ids[0].clone()]);
    let r = call(addr, "GET", "/v2/sandboxes?metadata=n%3Dodd%26a%252520b%3Dc%252526d", None).await;
    assert_eq!(r.json(), serde_json::json!([]));
    let r = call(addr, "GET", "/v2/sandboxes?metadata=n%3Dodd", None).await;
    assert_eq!(r.json().as_array().unwrap().len(), 2);
    let r = call(addr, "GET", "/sandboxes?metadata=n%3Dlate", None).await;
    assert_eq!(r.json().as_array().unwrap().len(), 1);

    // State filter.
    let r = call(addr, "GET", "/v2/sandboxes?state=paused", None).await;
    assert_eq!(r.json(), serde_json::json!([]));
    let r = call(addr, "GET", "/v2/sandboxes?state=running,paused", None).await;
    assert_eq!(r.json().as_array().unwrap().len(), 6);
    // E2B repeats the key.
    let r = call(addr, "GET", "/v2/sandboxes?state=running&state=paused", None).await;
    assert_eq!(r.json().as_array().unwrap().len(), 6);
    let r = call(addr, "GET", "/v2/sandboxes?state=paused&state=running", None).await;
    assert_eq!(r.json().as_array().unwrap().len(), 6);
    // E2B's extra filters and order.
    let r = call(addr, "GET", "/v2/sandboxes?template=base", None).await;
    assert_eq!(r.json().as_array().unwrap().len(), 6);
    let r = call(addr, "GET", "/v2/sandboxes?template=other", None).await;
    assert_eq!(r.json(), serde_json::json!([]));
    let r = call(addr, "GET", "/v2/sandboxes?startedAfter=2000-01-01T00%3A00%3A00.000Z", None).await;
    assert_eq!(r.json().as_array().unwrap().len(), 6);
    let r = call(addr, "GET", "/v2/sandboxes?startedAfter=2999-01-01T00%3A00%3A00.000Z", None).await;
    assert_eq!(r.json(), serde_json::json!([]));
    let m = call(addr, "GET", "/v2/sandboxes?startedAfter=yesterday", None).await.error(400);
    assert!(m.contains("yesterday"), "{m}");
    let r = call(addr, "GET", "/v2/sandboxes?order=asc&limit=4", None).await;
    let asc: Vec<String> =
        r.json().as_array().unwrap().iter().map(|v| v["sandboxID"].as_str().unwrap().to_string()).collect();
    assert_eq!(asc, ids[..4]);
    let t = r.headers.get("x-next-token").unwrap().to_str().unwrap().to_string();
    let r = call(addr, "GET", &format!("/v2/sandboxes?order=asc&limit=4&nextToken={t}"), None).await;
    assert_eq!(r.json().as_array().unwrap().len(), 2);
    assert_eq!(r.json()[0]["sandboxID"], ids[4].as_str());
    assert!(call(addr, "GET", "/v2/sandboxes?order=sideways", None).await.error(400).contains("sideways"));
    let m = call(addr, "GET", "/v2/sandboxes?state=sleeping", None).await.error(400);
    assert!(m.contains("\"sleeping\""), "{m}");
}

#[tokio::test]
async fn bad_input_is_a_json_4xx_naming_the_value() {
    let (addr, _, _) = start().await;
    let m = call(addr, "POST", "/sandboxes", Some(r#"{"templateID": "base""#)).await.error(400);
    assert!(m.contains("not valid JSON"), "{m}");
    let m = call(addr, "POST", "/sandboxes", Some(r#"{"templateID":"base","timeout":"soon"}"#)).await.error(400);
    assert!(m.contains("timeout") && m.contains("soon"), "{m}");
    let m = call(addr, "POST", "/sandboxes", Some(r#"{"templateID":"base","timeout":-5}"#)).await.error(400);
    assert!(m.contains("-5"), "{m}");
    let m = call(addr, "POST", "/sandboxes", Some(r#"{"timeout":30}"#)).await.error(400);
    assert!(m.contains("templateID"), "{m}");
    let m = call(addr, "POST", "/sandboxes", Some(r#"{"templateID":""}"#)).await.error(400);
    assert!(m.contains("templateID"), "{m}");
    let m = call(addr, "POST", "/sandboxes", None).await.error(400);
    assert!(m.contains("empty"), "{m}");
    let m = call(addr, "POST", "/sandboxes", Some(r#"{"templateID":"no-such-tpl"}"#)).await.error(404);
    assert!(m.contains("\"no-such-tpl\""), "{m}");
    let m =
        call(addr, "POST", "/sandboxes", Some(r#"{"templateID":"base","timeout":99999999999999}"#)).await.error(400);
    assert!(m.contains("99999999999999"), "{m}");
    for bad in ["0", "101", "abc", "-1", ""] {
        let m = call(addr, "GET", &format!("/v2/sandboxes?limit={bad}"), None).await.error(400);
        assert!(m.contains(&format!("{bad:?}")), "{m}");
    }
    let m = call(addr, "GET", "/v2/sandboxes?nextToken=garbage!!", None).await.error(400);
    assert!(m.starts_with("Invalid next token") && m.contains("garbage!!"), "{m}");
    let m = call(addr, "GET", "/v2/sandboxes?metadata=novalue", None).await.error(400);
    assert!(m.contains("novalue"), "{m}");
    let m = call(addr, "GET", "/sandboxes/abcdefghij0123456789", None).await.error(404);
    assert!(m.contains("abcdefghij0123456789"), "{m}");
    for bad in ["ABCDEFGHIJ0123456789", "..%2F..%2Fetc", "x%20y", "a.b"] {
        let m = call(addr, "GET", &format!("/sandboxes/{bad}"), None).await.error(404);
        let decoded = percent_encoding::percent_decode_str(bad).decode_utf8().unwrap();
        assert!(m.contains(&*decoded), "{m}");
    }
    let m = call(addr, "DELETE", "/sandboxes/%FF%FE", None).await.error(400);
    assert!(m.contains("sandbox ID"), "{m}");
    let m = call(addr, "GET", "/no/such/route", None).await.error(404);
    assert!(m.contains("/no/such/route"), "{m}");
    let m = call(addr, "PUT", "/sandboxes", None).await.error(405);
    assert!(m.contains("PUT"), "{m}");
    let m = call(addr, "GET", "/sandboxes/abcdefghij0123456789/timeout", None).await.error(405);
    assert!(m.contains("GET"), "{m}");
    // Still serving.
    assert_eq!(call(addr, "GET", "/v2/sandboxes", None).await.status, StatusCode::OK);
}

#[tokio::test]
async fn a_huge_body_is_refused_without_being_read() {
    let (addr, _, _) = start().await;
    // Declared length.
    let stream = futures_util::stream::iter((0..1600).map(|_| Ok::<_, std::io::Error>(Bytes::from(vec![b' '; 65536]))));
    let req = Request::post("/sandboxes")
        .header("x-api-key", KEY)
        .header("content-length", (1600 * 65536).to_string())
        .body(Body::from_stream(stream))
        .unwrap();
    let t0 = Instant::now();
    let r = send_lenient(addr, req).await;
    assert!(r.error(413).contains("1048576"));
    assert!(t0.elapsed() < Duration::from_secs(5));
    // Chunked, no declared length: the limit still holds.
    let stream = futures_util::stream::iter((0..1600).map(|_| Ok::<_, std::io::Error>(Bytes::from(vec![b' '; 65536]))));
    let req = Request::post("/sandboxes").header("x-api-key", KEY).body(Body::from_stream(stream)).unwrap();
    send_lenient(addr, req).await.error(413);
    assert_eq!(call(addr, "GET", "/health", None).await.status, StatusCode::OK);
}

/// Like `send`, but the server may stop reading the request body: the response still counts.
async fn send_lenient(addr: SocketAddr, req: Request<Body>) -> Res {
    let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (mut tx, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await.unwrap();
    tokio::spawn(conn);
    let res = tx.send_request(req).await.expect("a response before the body was sent");
    let (parts, body) = res.into_parts();
    Res { status: parts.status, headers: parts.headers, body: body.collect().await.unwrap().to_bytes() }
}

#[tokio::test]
async fn envd_traffic_is_proxied_by_header_or_host() {
    let (addr, _, _) = start().await;
    let id = create(addr, r#"{"templateID":"base"}"#).await;
    let token = call(addr, "GET", &format!("/sandboxes/{id}"), None).await.json()["envdAccessToken"]
        .as_str()
        .unwrap()
        .to_string();
    // By header, with the sandbox's token and no API key; method, path, query, headers and body
    // pass unchanged.
    for header in ["Novita-Sandbox-Id", "E2b-Sandbox-Id"] {
        let req = Request::post("/process.Process/Start?x=1&y=%2F")
            .header("host", "whatever:1")
            .header(header, &id)
            .header("x-access-token", &token)
            .header("x-custom", "kept")
            .header("content-type", "application/connect+json")
            .body(Body::from("payload-123"))
            .unwrap();
        let r = send(addr, req).await;
        assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
        let v = r.json();
        assert_eq!(v["method"], "POST");
        assert_eq!(v["uri"], "/process.Process/Start?x=1&y=%2F");
        assert_eq!(v["headers"]["x-custom"], "kept");
        assert_eq!(v["headers"]["content-type"], "application/connect+json");
        assert_eq!(v["body_head"], "payload-123");
    }
    // `/health` with the header goes to envd, not the control plane.
    let r = send(
        addr,
        Request::get("/health")
            .header("e2b-sandbox-id", &id)
            .header("x-access-token", &token)
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(r.json()["uri"], "/health");
    // By host, and the long form of the ID.
    let r = send(
        addr,
        Request::get("/files?path=/a")
            .header("host", format!("49983-{id}.localhost:3000"))
            .header("x-access-token", &token)
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(r.json()["uri"], "/files?path=/a");
    let r = send(
        addr,
        Request::get("/x")
            .header("host", format!("49983-{id}-sandbank.example.com"))
            .header("x-access-token", &token)
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(r.json()["uri"], "/x");
    let r = send(
        addr,
        Request::get("/x")
            .header("novita-sandbox-id", format!("{id}-sandbank"))
            .header("x-access-token", &token)
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(r.json()["uri"], "/x");
    // Big request and response bodies stream through.
    let big = vec![b'y'; 5 << 20];
    let r = send(
        addr,
        Request::post("/upload")
            .header("e2b-sandbox-id", &id)
            .header("x-access-token", &token)
            .body(Body::from(big))
            .unwrap(),
    )
    .await;
    assert_eq!(r.json()["body_len"], 5 << 20);
    let r = send(
        addr,
        Request::get("/big?n=20971520")
            .header("e2b-sandbox-id", &id)
            .header("x-access-token", &token)
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(r.body.len(), 20971520);
    // A long-lived stream delivers its chunks as they come.
    let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (mut tx, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await.unwrap();
    tokio::spawn(conn);
    let res = tx
        .send_request(
            Request::get("/slow")
                .header("e2b-sandbox-id", &id)
                .header("x-access-token", &token)
                .body(Body::empty())
                .unwrap(),
        )
        .await
        .unwrap();
    let mut body = res.into_body();
    let first = tokio::time::timeout(Duration::from_secs(2), body.frame()).await.expect("first chunk in time");
    assert_eq!(first.unwrap().unwrap().into_data().unwrap(), Bytes::from("tick0\n"));
    drop(body);

    // Unknown, malformed, dead: 502 JSON naming the sandbox.
    let r = send(
        addr,
        Request::get("/health").header("e2b-sandbox-id", "abcdefghij0123456789").body(Body::empty()).unwrap(),
    )
    .await;
    assert_eq!(r.error(502), "The sandbox \"abcdefghij0123456789\" was not found");
    let r = send(addr, Request::get("/health").header("novita-sandbox-id", "NOPE").body(Body::empty()).unwrap()).await;
    assert!(r.error(502).contains("\"NOPE\""));
    call(addr, "DELETE", &format!("/sandboxes/{id}"), None).await;
    let r = send(
        addr,
        Request::get("/health")
            .header("e2b-sandbox-id", &id)
            .header("x-access-token", &token)
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(r.error(502), format!("The sandbox \"{id}\" was not found"));
    let r = send(
        addr,
        Request::get("/health").header("host", format!("49983-{id}.localhost")).body(Body::empty()).unwrap(),
    )
    .await;
    r.error(502);
}

/// Every sandbox has an envd access token, whichever create route made it and whatever `secure`
/// said: its ID alone opens nothing, by header or by host.
#[tokio::test]
async fn every_sandbox_is_secured_whatever_the_route_and_flag() {
    let (addr, _, _) = start().await;
    for route in ["/sandboxes", "/v2/sandboxes"] {
        for secure in ["", r#","secure":true"#, r#","secure":false"#] {
            let what = format!("POST {route} with {secure:?}");
            let r = call(addr, "POST", route, Some(&format!(r#"{{"templateID":"base"{secure}}}"#))).await;
            assert_eq!(r.status, StatusCode::CREATED, "{what}");
            let v = r.json();
            let id = v["sandboxID"].as_str().unwrap().to_string();
            let token = v["envdAccessToken"].as_str().unwrap_or_else(|| panic!("{what}: no token in {v}")).to_string();
            assert!(token.len() == 32 && token.chars().all(|c| c.is_ascii_hexdigit()), "{what}: {token}");
            let by_header = |b: axum::http::request::Builder| b.header("e2b-sandbox-id", &id);
            let by_host = |b: axum::http::request::Builder| b.header("host", format!("49983-{id}.localhost"));
            for (how, route_to) in [("header", &by_header as &dyn Fn(_) -> _), ("host", &by_host)] {
                for (method, path) in [
                    ("GET", "/files?path=/etc/hostname"),
                    ("POST", "/process.Process/Start"),
                    ("POST", "/files?path=/tmp/x"),
                ] {
                    let req = |token: Option<&str>| {
                        let mut b = route_to(Request::builder().method(method).uri(path));
                        if let Some(t) = token {
                            b = b.header("x-access-token", t);
                        }
                        b.body(Body::from("x")).unwrap()
                    };
                    let m = send(addr, req(None)).await.error(401);
                    assert!(m.contains("X-Access-Token"), "{what}, by {how}, {method} {path}: {m}");
                    let m = send(addr, req(Some("0123456789abcdef0123456789abcdef"))).await.error(401);
                    assert!(m.contains("Invalid X-Access-Token"), "{what}, by {how}: {m}");
                    let r = send(addr, req(Some(&token))).await;
                    assert_eq!(r.status, StatusCode::OK, "{what}, by {how}, {method} {path}: {:?}", r.body);
                }
            }
            // A URL signed with its token opens `/files` without the header, and names the sandbox.
            let sig = envd_auth::sign("/etc/hostname", "read", "", &token, None);
            let enc = percent_encoding::utf8_percent_encode(&sig, percent_encoding::NON_ALPHANUMERIC);
            let r = send(
                addr,
                Request::get(format!("/files?path=%2Fetc%2Fhostname&signature={enc}")).body(Body::empty()).unwrap(),
            )
            .await;
            assert_eq!(r.status, StatusCode::OK, "{what}: signed URL: {:?}", r.body);
            assert_eq!(r.json()["uri"], format!("/files?path=%2Fetc%2Fhostname&signature={enc}"));
            call(addr, "DELETE", &format!("/sandboxes/{id}"), None).await;
        }
    }
}

#[tokio::test]
async fn shutdown_kills_everything() {
    let (addr, fake, state) = start().await;
    let a = create(addr, r#"{"templateID":"base"}"#).await;
    let b = create(addr, r#"{"templateID":"base"}"#).await;
    state.shutdown().await;
    let mut k = fake.killed();
    k.sort();
    let mut want = vec![a, b];
    want.sort();
    assert_eq!(k, want);
    assert_eq!(state.registry.len(), 0);
}

#[test]
fn envd_target_parsing() {
    let h = |pairs: &[(&str, &str)]| {
        let mut m = HeaderMap::new();
        for (k, v) in pairs {
            m.insert(axum::http::HeaderName::from_bytes(k.as_bytes()).unwrap(), v.parse().unwrap());
        }
        super::envd_target(&m)
    };
    assert_eq!(h(&[("host", "localhost:3000")]), None);
    assert_eq!(h(&[("host", "49983-abc.x.y")]).as_deref(), Some("abc"));
    assert_eq!(h(&[("host", "3000-abc.x.y")]), None);
    assert_eq!(h(&[("host", "49983-abc")]), None);
    assert_eq!(h(&[("NOVITA-SANDBOX-ID", "q"), ("host", "49983-abc.x")]).as_deref(), Some("q"));
    let _ = Method::GET;
}

#[tokio::test]
async fn e2b_v2_create_and_connect() {
    let (addr, _, _) = start().await;
    let r = call(
        addr,
        "POST",
        "/v2/sandboxes",
        Some(r#"{"templateID":"base","envVars":{"A":"b"},"network":{"allowOut":[]},"iam":null}"#),
    )
    .await;
    assert_eq!(r.status, StatusCode::CREATED);
    let id = r.json()["sandboxID"].as_str().unwrap().to_string();
    let d = call(addr, "GET", &format!("/sandboxes/{id}"), None).await.json();
    let end: chrono::DateTime<chrono::Utc> = d["endAt"].as_str().unwrap().parse().unwrap();
    // No timeout: the default, and never shorter than before.
    let r = call(addr, "POST", &format!("/v2/sandboxes/{id}/connect"), Some("{}")).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.json()["sandboxID"], id.as_str());
    let d = call(addr, "GET", &format!("/sandboxes/{id}"), None).await.json();
    let end2: chrono::DateTime<chrono::Utc> = d["endAt"].as_str().unwrap().parse().unwrap();
    assert!(end2 >= end);
    let r =
        call(addr, "POST", &format!("/v2/sandboxes/{id}/connect"), Some(r#"{"timeout":1000,"memory":false}"#)).await;
    assert_eq!(r.status, StatusCode::OK);
    let d = call(addr, "GET", &format!("/sandboxes/{id}"), None).await.json();
    let end3: chrono::DateTime<chrono::Utc> = d["endAt"].as_str().unwrap().parse().unwrap();
    assert!((end3 - chrono::Utc::now()).num_seconds() >= 998);
    let m = call(addr, "POST", "/v2/sandboxes/abcdefghij0123456789/connect", Some("{}")).await.error(404);
    assert!(m.contains("abcdefghij0123456789"));
    let m = call(addr, "POST", &format!("/v2/sandboxes/{id}/connect"), Some(r#"{"timeout":"x"}"#)).await.error(400);
    assert!(m.contains("timeout"), "{m}");
}

/// What a pause keeps: the memory unless `memory: false` or `mode: "filesystem"`; a bad mode is
/// named, and the sandbox stays running.
#[tokio::test]
async fn pause_keeps_memory_unless_asked_not_to() {
    let (addr, fake, _) = start().await;
    let bodies = [None, Some(r#"{"mode":"full"}"#), Some(r#"{"memory":false}"#), Some(r#"{"mode":"filesystem"}"#)];
    for body in bodies {
        let id = create(addr, r#"{"templateID":"base"}"#).await;
        assert_eq!(call(addr, "POST", &format!("/sandboxes/{id}/pause"), body).await.status, StatusCode::NO_CONTENT);
    }
    let kept: Vec<bool> = fake.pauses.lock().unwrap().iter().map(|(_, memory)| *memory).collect();
    assert_eq!(kept, [true, true, false, false]);
    let id = create(addr, r#"{"templateID":"base"}"#).await;
    let m = call(addr, "POST", &format!("/sandboxes/{id}/pause"), Some(r#"{"mode":"ram"}"#)).await.error(400);
    assert!(m.contains("\"ram\""), "{m}");
    assert_eq!(call(addr, "GET", &format!("/sandboxes/{id}"), None).await.json()["state"], "running");
}

#[tokio::test]
async fn snapshots_create_list_delete() {
    let (addr, fake, _) = start().await;
    let a = create(addr, r#"{"templateID":"base"}"#).await;
    let b = create(addr, r#"{"templateID":"base"}"#).await;
    // Novita sends `{}`; a bodyless POST works too; E2B may name it.
    let r = call(addr, "POST", &format!("/sandboxes/{a}/snapshots"), Some("{}")).await;
    assert_eq!(r.status, StatusCode::CREATED);
    let s1 = r.json();
    let id1 = s1["snapshotID"].as_str().unwrap().to_string();
    assert!(id1.ends_with(":default") && sandbank_engine::id::is_valid(&id1[..20]), "{id1}");
    assert_eq!(s1["names"], serde_json::json!([]));
    let r = call(addr, "POST", &format!("/sandboxes/{a}/snapshots"), None).await;
    assert_eq!(r.status, StatusCode::CREATED);
    let id2 = r.json()["snapshotID"].as_str().unwrap().to_string();
    let r = call(addr, "POST", &format!("/sandboxes/{b}/snapshots"), Some(r#"{"name":"my-snap"}"#)).await;
    let named = r.json();
    let id3 = named["snapshotID"].as_str().unwrap().to_string();
    assert!(id3.ends_with(":default") && sandbank_engine::id::is_valid(&id3[..20]), "{id3}");
    assert_eq!(named["names"], serde_json::json!(["my-snap"]));
    assert_eq!(named["sandboxID"], b.as_str());
    assert_eq!(named["mode"], "full", "with memory unless asked otherwise");
    assert!(named["createdAt"].as_str().unwrap().parse::<chrono::DateTime<chrono::Utc>>().is_ok(), "{named}");
    let m = call(addr, "POST", &format!("/sandboxes/{b}/snapshots"), Some(r#"{"name":"bad/name"}"#)).await.error(400);
    assert!(m.contains("bad/name"), "{m}");
    let m = call(addr, "POST", "/sandboxes/abcdefghij0123456789/snapshots", Some("{}")).await.error(404);
    assert!(m.contains("abcdefghij0123456789"));
    assert_eq!(fake.snapshots.lock().unwrap().len(), 3);

    // Newest first, pages of 2, filter by sandbox.
    let r = call(addr, "GET", "/snapshots?limit=2", None).await;
    let ids: Vec<String> =
        r.json().as_array().unwrap().iter().map(|v| v["snapshotID"].as_str().unwrap().to_string()).collect();
    assert_eq!(ids, vec![id3.clone(), id2.clone()]);
    let t = r.headers.get("x-next-token").expect("token").to_str().unwrap().to_string();
    let r = call(addr, "GET", &format!("/snapshots?limit=2&nextToken={t}"), None).await;
    let ids: Vec<String> =
        r.json().as_array().unwrap().iter().map(|v| v["snapshotID"].as_str().unwrap().to_string()).collect();
    assert_eq!(ids, vec![id1.clone()]);
    assert!(r.headers.get("x-next-token").is_none());
    let r = call(addr, "GET", &format!("/snapshots?sandboxID={a}"), None).await;
    assert_eq!(r.json().as_array().unwrap().len(), 2);
    // By name (e2b's `listSnapshots({ name })`), with or without a tag; an unknown name: empty.
    for q in ["name=my-snap", "name=my-snap%3Adefault", &format!("name=my-snap&sandboxID={b}")] {
        let r = call(addr, "GET", &format!("/snapshots?{q}"), None).await;
        let ids: Vec<String> =
            r.json().as_array().unwrap().iter().map(|v| v["snapshotID"].as_str().unwrap().to_string()).collect();
        assert_eq!(ids, vec![id3.clone()], "{q}");
    }
    for q in ["name=nope", &format!("name=my-snap&sandboxID={a}")] {
        assert_eq!(call(addr, "GET", &format!("/snapshots?{q}"), None).await.json(), serde_json::json!([]), "{q}");
    }
    call(addr, "GET", "/snapshots?limit=0", None).await.error(400);
    assert!(call(addr, "GET", "/snapshots?nextToken=zz", None).await.error(400).contains("Invalid next token"));

    // Delete: the tag is ignored, URL-encoded IDs work, unknown is 404 with E2B's wording.
    let r = call(addr, "DELETE", &format!("/templates/{}", id1.replace(':', "%3A")), None).await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    assert_eq!(
        call(addr, "DELETE", &format!("/templates/{id1}"), None).await.error(404),
        format!("template '{id1}' not found")
    );
    assert_eq!(call(addr, "DELETE", "/templates/my-snap%3Adefault", None).await.status, StatusCode::NO_CONTENT);
    let m = call(addr, "DELETE", "/templates/inuse:default", None).await.error(400);
    assert!(m.contains("running sandboxes"), "{m}");
    assert_eq!(fake.snapshots.lock().unwrap().len(), 1);
}

fn snapshot_ids(r: &Res) -> Vec<String> {
    r.json().as_array().unwrap().iter().map(|v| v["snapshotID"].as_str().unwrap().to_string()).collect()
}

/// Names are unique among live snapshots (409 naming it); labels are a string map, checked
/// (400 naming the key), reported, and filtered on with the sandbox list's encoding.
#[tokio::test]
async fn snapshot_names_clash_and_labels_filter() {
    let (addr, _, _) = start().await;
    let a = create(addr, r#"{"templateID":"base"}"#).await;
    let b = create(addr, r#"{"templateID":"base"}"#).await;
    let post = |sb: &str, body: &str| {
        let path = format!("/sandboxes/{sb}/snapshots");
        let body = body.to_string();
        async move { call(addr, "POST", &path, Some(&body)).await }
    };
    let r = post(&a, r#"{"name":"prod","metadata":{"env":"prod","team":"a b&c=d"}}"#).await;
    assert_eq!(r.status, StatusCode::CREATED);
    let prod = r.json();
    assert_eq!(prod["names"], serde_json::json!(["prod"]));
    assert_eq!(prod["metadata"], serde_json::json!({"env": "prod", "team": "a b&c=d"}));
    assert_eq!(prod["expiresAt"], Value::Null);
    // The same name again, from any sandbox: 409 naming it; nothing made.
    let m = post(&b, r#"{"name":"prod"}"#).await.error(409);
    assert!(m.contains("\"prod\"") && m.contains("exists already"), "{m}");
    let dev = post(&b, r#"{"metadata":{"env":"dev","team":"a b&c=d"}}"#).await.json();
    let unlabelled = post(&b, "{}").await.json();
    assert_eq!(unlabelled["metadata"], serde_json::json!({}));

    // Bad labels: 400 naming the key or value.
    for (body, needle) in [
        (r#"{"metadata":{"n":5}}"#, "\"n\""),
        (r#"{"metadata":{"x":null}}"#, "\"x\""),
        (r#"{"metadata":{"":"v"}}"#, "key \"\""),
        (&format!(r#"{{"metadata":{{"{}":"v"}}}}"#, "k".repeat(200)), "kkkk"),
        (&format!(r#"{{"metadata":{{"big":"{}"}}}}"#, "v".repeat(2000)), "\"big\""),
        (r#"{"metadata":["a"]}"#, "metadata"),
        (r#"{"ttl":-1}"#, "ttl"),
    ] {
        let m = post(&a, body).await.error(400);
        assert!(m.contains(needle), "{body}: {m}");
    }
    let many: serde_json::Map<String, Value> = (0..65).map(|i| (format!("k{i}"), Value::from("v"))).collect();
    let m = post(&a, &serde_json::json!({ "metadata": many }).to_string()).await.error(400);
    assert!(m.contains("at most 64"), "{m}");

    // Filters: one pair, all pairs, with the other filters, page by page.
    let id = |v: &Value| v["snapshotID"].as_str().unwrap().to_string();
    let list = |q: String| async move { snapshot_ids(&call(addr, "GET", &format!("/snapshots?{q}"), None).await) };
    assert_eq!(list("metadata=env%3Dprod".into()).await, [id(&prod)]);
    // `team=a b&c=d` as the SDKs encode it: each part, the whole, then the query.
    let team = "metadata=team%253Da%252520b%252526c%25253Dd";
    assert_eq!(list(team.into()).await, [id(&dev), id(&prod)]);
    assert_eq!(list(format!("{team}&limit=1")).await, [id(&dev)]);
    let r = call(addr, "GET", &format!("/snapshots?{team}&limit=1"), None).await;
    let t = r.headers.get("x-next-token").unwrap().to_str().unwrap().to_string();
    assert_eq!(list(format!("{team}&limit=1&nextToken={t}")).await, [id(&prod)]);
    assert_eq!(list("metadata=env%3Dprod%26team%3Da%252520b%252526c%25253Dd".into()).await, [id(&prod)]);
    assert_eq!(list("metadata=env%3Ddev%26team%3Dnope".into()).await, Vec::<String>::new());
    assert_eq!(list(format!("metadata=env%3Dprod&sandboxID={b}")).await, Vec::<String>::new());
    assert_eq!(list("metadata=env%3Dprod&name=prod".into()).await, [id(&prod)]);
    assert!(call(addr, "GET", "/snapshots?metadata=novalue", None).await.error(400).contains("novalue"));
    assert_eq!(list(String::new()).await, [id(&unlabelled), id(&dev), id(&prod)]);

    // Deleted, the name is free again.
    assert_eq!(call(addr, "DELETE", "/templates/prod", None).await.status, StatusCode::NO_CONTENT);
    assert_eq!(post(&b, r#"{"name":"prod"}"#).await.status, StatusCode::CREATED);
}

/// `ttl` (seconds; 0: never), the server's default TTL and keep-last: an expired snapshot is
/// not listed, its name is free, and the sweep deletes it unless a sandbox uses it.
#[tokio::test]
async fn snapshot_expiry_default_ttl_and_keep_last() {
    use super::snapshots::SnapshotPolicy;
    let policy = SnapshotPolicy { default_ttl: Some(std::time::Duration::from_secs(3600)), keep_last: Some(2) };
    let (addr, fake, _) = start_with(policy).await;
    let a = create(addr, r#"{"templateID":"base"}"#).await;
    let post = |body: &'static str| {
        let path = format!("/sandboxes/{a}/snapshots");
        async move { call(addr, "POST", &path, Some(body)).await.json() }
    };
    let in_a_second = chrono::Utc::now() + chrono::Duration::seconds(1);
    let short = post(r#"{"name":"short","ttl":1,"metadata":{"inuse":"yes"}}"#).await;
    let expires = short["expiresAt"].as_str().unwrap().parse::<chrono::DateTime<chrono::Utc>>().unwrap();
    assert!((expires - in_a_second).num_milliseconds().abs() < 500, "{short}");
    let forever = post(r#"{"ttl":0}"#).await;
    assert_eq!(forever["expiresAt"], Value::Null, "ttl 0 overrides the server's default");
    let id = |v: &Value| v["snapshotID"].as_str().unwrap().to_string();
    assert_eq!(snapshot_ids(&call(addr, "GET", "/snapshots", None).await), [id(&forever), id(&short)]);

    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    assert_eq!(snapshot_ids(&call(addr, "GET", "/snapshots", None).await), [id(&forever)]);
    // Its name is free (the expired snapshot keeps living while a sandbox uses it).
    let reuse = post(r#"{"name":"short"}"#).await;
    let default_expiry = reuse["expiresAt"].as_str().unwrap().parse::<chrono::DateTime<chrono::Utc>>().unwrap();
    assert!((default_expiry - chrono::Utc::now() - chrono::Duration::hours(1)).num_seconds().abs() < 5);
    assert_eq!(fake.sweep_expired_snapshots().unwrap(), Vec::<String>::new(), "in use: kept");
    assert_eq!(fake.snapshots.lock().unwrap().len(), 3);

    // keep-last 2: a third live one expires the oldest live one ("forever"), and the sweep
    // deletes it.
    let third = post("{}").await;
    assert_eq!(snapshot_ids(&call(addr, "GET", "/snapshots", None).await), [id(&third), id(&reuse)]);
    let swept = fake.sweep_expired_snapshots().unwrap();
    assert_eq!(swept, [id(&forever).trim_end_matches(":default").to_string()]);
}

/// `Template.exists` (e2b): a template or snapshot the engine knows is an alias; anything else 404.
#[tokio::test]
async fn template_aliases_are_the_engines_templates() {
    let (addr, _, _) = start().await;
    let r = call(addr, "GET", "/templates/aliases/base", None).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.json(), serde_json::json!({"templateID": "base", "public": false}));
    let m = call(addr, "GET", "/templates/aliases/no-such-template", None).await.error(404);
    assert!(m.contains("\"no-such-template\""), "{m}");
    call(addr, "GET", "/templates/aliases/base", None).await;
    let r = send(addr, Request::get("/templates/aliases/base").body(Body::empty()).unwrap()).await;
    r.error(401);
}

/// E2B's template build routes, up to the build (which needs a real engine: `__test__/templates.test.mjs`):
/// a build is requested with a name and tags checked as the cloud does, is an alias at once, and
/// bad requests name what is wrong.
#[tokio::test]
async fn template_builds_are_requested_and_bad_input_named() {
    let (addr, _, _) = start().await;
    let r = call(addr, "POST", "/v3/templates", Some(r#"{"name":"My-Tpl:v1","tags":["stable"]}"#)).await;
    assert_eq!(r.status, StatusCode::ACCEPTED);
    let v = r.json();
    assert_eq!(v["tags"], serde_json::json!(["v1", "stable"]));
    assert_eq!(v["names"], serde_json::json!(["my-tpl:v1", "my-tpl:stable"]));
    let (id, build) = (v["templateID"].as_str().unwrap().to_string(), v["buildID"].as_str().unwrap().to_string());
    assert_eq!(build.len(), 36, "a UUID: {build}");
    // The same name again: another build of the same template; no tag means `default`.
    let again = call(addr, "POST", "/v3/templates", Some(r#"{"name":"my-tpl"}"#)).await.json();
    assert_eq!(
        (again["templateID"].as_str(), again["tags"].clone()),
        (Some(id.as_str()), serde_json::json!(["default"]))
    );
    assert_eq!(call(addr, "GET", "/templates/aliases/my-tpl", None).await.status, StatusCode::OK);
    let status = call(addr, "GET", &format!("/templates/{id}/builds/{build}/status?logsOffset=0"), None).await.json();
    assert_eq!((status["status"].as_str(), status["logEntries"].clone()), (Some("waiting"), serde_json::json!([])));
    let m = call(addr, "GET", &format!("/templates/{id}/builds/{build}/status?logsOffset=-1"), None).await.error(400);
    assert!(m.contains("\"-1\""), "{m}");

    for (body, named) in [
        (r#"{"name":"bad name"}"#, "\"bad name\""),
        (r#"{"name":"ok:bad tag"}"#, "\"bad tag\""),
        (r#"{"name":""}"#, "a name is required"),
        (r#"{"name":"ok","cpuCount":0}"#, "cpuCount Some(0)"),
    ] {
        let m = call(addr, "POST", "/v3/templates", Some(body)).await.error(400);
        assert!(m.contains(named), "{body}: {m}");
    }
    // Upload links: a hash is 64 hex digits; the upload needs the link's token, once.
    let m = call(addr, "GET", &format!("/templates/{id}/files/xyz"), None).await.error(400);
    assert!(m.contains("\"xyz\""), "{m}");
    let m = call(addr, "GET", &format!("/templates/nope/files/{}", "a".repeat(64)), None).await.error(404);
    assert!(m.contains("\"nope\""), "{m}");
    let r = send(
        addr,
        Request::put(format!("/templates/{id}/files/{}/upload?token=forged", "a".repeat(64)))
            .body(Body::from("x"))
            .unwrap(),
    )
    .await;
    r.error(401);
    // A build that does not exist, a trigger twice, tags of an unknown template.
    call(addr, "GET", &format!("/templates/{id}/builds/nope/status"), None).await.error(404);
    call(addr, "POST", "/templates/tags", Some(r#"{"target":"nope:v1","tags":["x"]}"#)).await.error(404);
    let m = call(addr, "POST", "/templates/tags", Some(r#"{"target":"my-tpl:v1","tags":[":bad"]}"#)).await.error(400);
    assert!(m.contains("\":bad\""), "{m}");
    call(addr, "GET", "/templates/nope/tags", None).await.error(404);
}

/// Routes the SDKs call that are not served yet: 501 JSON naming the route (a 404 would read as
/// "sandbox not found" in the SDKs), and still behind the API key.
#[tokio::test]
async fn unserved_sdk_routes_answer_501_naming_them() {
    let (addr, _, _) = start().await;
    let id = create(addr, r#"{"templateID":"base"}"#).await;
    // Fork and clone are checked as the cloud checks them first: the count, then the sandbox.
    for route in ["fork", "clone"] {
        call(addr, "POST", &format!("/sandboxes/{id}/{route}"), Some(r#"{"timeout":-1}"#)).await.error(400);
        for sandbox in ["abcdefghij0123456789", "sbx-test"] {
            let m =
                call(addr, "POST", &format!("/sandboxes/{sandbox}/{route}"), Some(r#"{"count":0}"#)).await.error(400);
            assert!(m.contains("Invalid count 0"), "{m}");
        }
        // Even without the key (E2B's own test sends a made-up one); with a good count, the key.
        let bad_key = |body: &'static str| {
            Request::post(format!("/sandboxes/sbx-test/{route}"))
                .header("x-api-key", "e2b_0000")
                .header("content-type", "application/json")
                .body(Body::from(body))
                .unwrap()
        };
        send(addr, bad_key(r#"{"count":0}"#)).await.error(400);
        send(addr, bad_key(r#"{"count":1}"#)).await.error(401);
        call(addr, "POST", &format!("/sandboxes/{id}/{route}"), Some(r#"{"count":101}"#)).await.error(400);
        call(addr, "POST", &format!("/sandboxes/abcdefghij0123456789/{route}"), Some("{}")).await.error(404);
    }
    for (method, path, route) in [
        ("POST", "/v2/templates".to_string(), "/v2/templates"),
        ("GET", "/templates/abc/builds/xyz/logs".to_string(), "/templates/{id}/builds/{build}/logs"),
        ("GET", "/templates/abc".to_string(), "/templates/{id}"),
        ("GET", "/volumes".to_string(), "/volumes"),
        ("DELETE", "/secrets/s1".to_string(), "/secrets/{id}"),
    ] {
        let m = call(addr, method, &path, Some("{}")).await.error(501);
        assert_eq!(m, format!("{method} {route} is not implemented by sandbank serve"));
        let r = send(addr, Request::builder().method(method).uri(&path).body(Body::empty()).unwrap()).await;
        r.error(401);
    }
    // A route nobody calls is still a 404.
    call(addr, "GET", "/no/such/route", None).await.error(404);
}

/// Fork (E2B) and clone (Novita): one snapshot with memory, then the copies, each registered with
/// the origin's metadata; each wire format as its SDK reads it.
#[tokio::test]
async fn fork_and_clone_start_copies_from_one_snapshot_with_memory() {
    let (addr, _, _) = start().await;
    let id = create(addr, r#"{"templateID":"base","metadata":{"who":"origin"}}"#).await;
    let r = call(addr, "POST", &format!("/sandboxes/{id}/fork"), Some(r#"{"count":2,"timeout":60}"#)).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", String::from_utf8_lossy(&r.body));
    let forks = r.json();
    let forks = forks.as_array().unwrap();
    assert_eq!(forks.len(), 2);
    let mut ids = Vec::new();
    for f in forks {
        let sandbox = &f["sandbox"];
        assert!(f.get("error").is_none(), "{f}");
        assert!(sandbox["envdAccessToken"].as_str().is_some_and(|t| !t.is_empty()), "{f}");
        ids.push(sandbox["sandboxID"].as_str().unwrap().to_string());
    }
    assert_ne!(ids[0], ids[1]);
    for copy in &ids {
        let info = call(addr, "GET", &format!("/sandboxes/{copy}"), None).await.json();
        assert_eq!(info["metadata"]["who"], "origin", "{info}");
    }
    let snaps = call(addr, "GET", &format!("/snapshots?sandboxID={id}"), None).await.json();
    assert_eq!(snaps.as_array().unwrap().len(), 1, "one snapshot for both: {snaps}");
    assert_eq!(snaps[0]["mode"], "full");
    let template = snaps[0]["snapshotID"].as_str().unwrap().to_string();

    let r = call(addr, "POST", &format!("/sandboxes/{id}/clone"), Some(r#"{"count":1,"strict":true}"#)).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", String::from_utf8_lossy(&r.body));
    let clone = r.json();
    assert_eq!(clone["sandboxes"].as_array().unwrap().len(), 1, "{clone}");
    let snapshot_template = clone["snapshotTemplateId"].as_str().unwrap();
    assert!(snapshot_template.ends_with(":default") && snapshot_template != template, "{clone}");
    // A snapshot's mode as asked for; a bad one is named.
    let r = call(addr, "POST", &format!("/sandboxes/{id}/snapshots"), Some(r#"{"mode":"full"}"#)).await;
    assert_eq!(r.json()["mode"], "full");
    let r = call(addr, "POST", &format!("/sandboxes/{id}/snapshots"), Some(r#"{"mode":"filesystem"}"#)).await;
    assert_eq!(r.json()["mode"], "filesystem");
    let r = call(addr, "POST", &format!("/sandboxes/{id}/snapshots"), Some("{}")).await;
    assert_eq!(r.json()["mode"], "full");
    let m = call(addr, "POST", &format!("/sandboxes/{id}/snapshots"), Some(r#"{"mode":"memory"}"#)).await.error(400);
    assert!(m.contains("\"memory\""), "{m}");
}

/// What E2B's Python SDK calls beyond the JS SDKs: metrics of many sandboxes (with `memCache`,
/// which its client requires), refreshes, and the sandbox logs (v1 and v2).
#[tokio::test]
async fn metrics_of_many_refreshes_and_logs() {
    let (addr, _, _) = start().await;
    let a = create(addr, r#"{"templateID":"base"}"#).await;
    let b = create(addr, r#"{"templateID":"base"}"#).await;
    let m = call(addr, "GET", &format!("/sandboxes/{a}/metrics"), None).await.json();
    assert_eq!(m[0]["memCache"], 2048, "{m}");

    // Many: running ones only; unknown IDs left out; a malformed one or none is a 400.
    let r = call(addr, "GET", &format!("/sandboxes/metrics?sandbox_ids={a},{b},abcdefghij0123456789"), None).await;
    assert_eq!(r.status, StatusCode::OK);
    let all = r.json();
    let keys: Vec<&String> = all["sandboxes"].as_object().unwrap().keys().collect();
    assert_eq!(keys.len(), 2, "{all}");
    assert_eq!(all["sandboxes"][&a]["memTotal"], 512 << 20);
    assert_eq!(all["sandboxes"][&b]["memCache"], 2048);
    assert!(call(addr, "GET", "/sandboxes/metrics?sandbox_ids=bad%20id", None).await.error(400).contains("\"bad id\""));
    call(addr, "GET", "/sandboxes/metrics", None).await.error(400);
    call(addr, "POST", &format!("/sandboxes/{b}/pause"), None).await;
    let r = call(addr, "GET", &format!("/sandboxes/metrics?sandbox_ids={a}&sandbox_ids={b}"), None).await.json();
    assert_eq!(
        r["sandboxes"].as_object().unwrap().keys().collect::<Vec<_>>(),
        vec![&a],
        "a paused sandbox is left out"
    );

    // Refresh: at least 15 s more, never shorter.
    call(addr, "POST", &format!("/sandboxes/{a}/timeout"), Some(r#"{"timeout":1}"#)).await;
    let r = call(addr, "POST", &format!("/sandboxes/{a}/refreshes"), None).await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    let end = |v: Value| v["endAt"].as_str().unwrap().parse::<chrono::DateTime<chrono::Utc>>().unwrap();
    let left =
        (end(call(addr, "GET", &format!("/sandboxes/{a}"), None).await.json()) - chrono::Utc::now()).num_seconds();
    assert!((13..=15).contains(&left), "{left}");
    call(addr, "POST", &format!("/sandboxes/{a}/refreshes"), Some(r#"{"duration":600}"#)).await;
    call(addr, "POST", &format!("/sandboxes/{a}/refreshes"), Some(r#"{"duration":20}"#)).await;
    let left =
        (end(call(addr, "GET", &format!("/sandboxes/{a}"), None).await.json()) - chrono::Utc::now()).num_seconds();
    assert!(left >= 598, "a refresh never shortens: {left}");
    call(addr, "POST", "/sandboxes/abcdefghij0123456789/refreshes", None).await.error(404);

    // Logs: what the server saw, oldest first in v1, newest first by default in v2.
    let v1 = call(addr, "GET", &format!("/sandboxes/{a}/logs"), None).await.json();
    let messages: Vec<&str> =
        v1["logEntries"].as_array().unwrap().iter().map(|e| e["message"].as_str().unwrap()).collect();
    assert_eq!(messages, ["sandbox created", "timeout set"], "{v1}");
    assert_eq!(v1["logs"][0]["line"], "sandbox created template=base timeout=300");
    assert_eq!(v1["logEntries"][1]["level"], "info");
    let v2 = call(addr, "GET", &format!("/v2/sandboxes/{a}/logs"), None).await.json();
    assert_eq!(v2["logs"][0]["message"], "timeout set", "{v2}");
    let v2 = call(addr, "GET", &format!("/v2/sandboxes/{a}/logs?direction=forward&limit=1"), None).await.json();
    assert_eq!(v2["logs"].as_array().unwrap().len(), 1);
    assert_eq!(v2["logs"][0]["message"], "sandbox created");
    let v2 = call(addr, "GET", &format!("/v2/sandboxes/{a}/logs?search=timeout&level=info"), None).await.json();
    assert_eq!(v2["logs"].as_array().unwrap().len(), 1);
    let v2 = call(addr, "GET", &format!("/v2/sandboxes/{a}/logs?level=error"), None).await.json();
    assert_eq!(v2["logs"], serde_json::json!([]));
    let v2 = call(addr, "GET", &format!("/v2/sandboxes/{a}/logs?cursor=1000&direction=backward"), None).await.json();
    assert_eq!(v2["logs"], serde_json::json!([]), "nothing before 1970-01-01T00:00:01");
    assert!(call(addr, "GET", &format!("/v2/sandboxes/{a}/logs?level=loud"), None)
        .await
        .error(400)
        .contains("\"loud\""));
    assert!(call(addr, "GET", &format!("/v2/sandboxes/{a}/logs?direction=up"), None)
        .await
        .error(400)
        .contains("\"up\""));
    // Gone with the sandbox.
    call(addr, "DELETE", &format!("/sandboxes/{a}"), None).await;
    call(addr, "GET", &format!("/sandboxes/{a}/logs"), None).await.error(404);
    call(addr, "GET", &format!("/v2/sandboxes/{a}/logs"), None).await.error(404);
}

/// Egress rules: `network` on create and `PUT /sandboxes/{id}/network` reach the engine as
/// addresses (domains resolved), are reported, and bad entries are 400s naming them.
#[tokio::test]
async fn egress_rules_reach_the_engine_and_bad_ones_are_refused() {
    let (addr, fake, _) = start().await;
    let r = call(
        addr,
        "POST",
        "/v2/sandboxes",
        Some(r#"{"templateID":"base","network":{"denyOut":["0.0.0.0/0"],"allowOut":["192.0.2.7","localhost"]}}"#),
    )
    .await;
    assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
    let id = r.json()["sandboxID"].as_str().unwrap().to_string();
    let spec = fake.specs.lock().unwrap()[0].clone();
    let nets = |v: &[ipnet::IpNet]| v.iter().map(|n| n.to_string()).collect::<Vec<_>>();
    assert_eq!(nets(&spec.egress.deny), ["0.0.0.0/0"]);
    let allowed = nets(&spec.egress.allow);
    assert!(
        allowed.contains(&"192.0.2.7/32".to_string()) && allowed.contains(&"127.0.0.1/32".to_string()),
        "{allowed:?}"
    );
    let d = call(addr, "GET", &format!("/sandboxes/{id}"), None).await.json();
    assert_eq!(d["network"], serde_json::json!({"denyOut": ["0.0.0.0/0"], "allowOut": ["192.0.2.7", "localhost"]}));

    // Replaced: what the update leaves out is cleared.
    let r = call(addr, "PUT", &format!("/sandboxes/{id}/network"), Some(r#"{"denyOut":["198.51.100.0/24"]}"#)).await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    let (to, rules) = fake.egress.lock().unwrap().last().cloned().unwrap();
    assert_eq!(
        (to.as_str(), nets(&rules.deny), rules.allow.len()),
        (id.as_str(), vec!["198.51.100.0/24".to_string()], 0)
    );
    assert_eq!(
        call(addr, "GET", &format!("/sandboxes/{id}"), None).await.json()["network"],
        serde_json::json!({"denyOut": ["198.51.100.0/24"]})
    );

    for (body, named) in [
        (r#"{"denyOut":["example.com"]}"#, "example.com"),
        (r#"{"denyOut":["10.0.0.0/33"]}"#, "10.0.0.0/33"),
        (r#"{"allowOut":["*.example.com"],"denyOut":["0.0.0.0/0"]}"#, "*.example.com"),
        (r#"{"allowOut":["no such host!"]}"#, "no such host!"),
    ] {
        let m = call(addr, "PUT", &format!("/sandboxes/{id}/network"), Some(body)).await.error(400);
        assert!(m.contains(&format!("{named:?}")), "{body}: {m}");
        let m = call(addr, "POST", "/sandboxes", Some(&format!(r#"{{"templateID":"base","network":{body}}}"#)))
            .await
            .error(400);
        assert!(m.contains(&format!("{named:?}")), "{body}: {m}");
    }
    call(addr, "PUT", "/sandboxes/abcdefghij0123456789/network", Some("{}")).await.error(404);
    assert_eq!(fake.specs.lock().unwrap().len(), 1, "no sandbox was made from a bad request");
}

#[tokio::test]
async fn internet_access_is_passed_on_and_reported() {
    let (addr, fake, _) = start().await;
    let id = create(addr, r#"{"templateID":"base","allow_internet_access":false}"#).await;
    assert_eq!(fake.specs.lock().unwrap()[0].allow_internet_access, Some(false));
    assert_eq!(call(addr, "GET", &format!("/sandboxes/{id}"), None).await.json()["allowInternetAccess"], false);
    create(addr, r#"{"templateID":"base"}"#).await;
    assert_eq!(fake.specs.lock().unwrap()[1].allow_internet_access, None, "absent stays absent");
}

#[tokio::test]
async fn publishing_a_port_names_a_bad_port_and_an_unknown_sandbox() {
    let (addr, _, _) = start().await;
    let id = create(addr, r#"{"templateID":"base"}"#).await;
    for bad in ["0", "65536", "http"] {
        let r = call(addr, "POST", &format!("/sandboxes/{id}/ports/{bad}"), None).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{bad}");
        assert!(r.json()["message"].as_str().unwrap().contains(&format!("\"{bad}\"")), "{:?}", r.body);
    }
    let r = call(addr, "POST", "/sandboxes/nosuchsandbox0000000/ports/8000", None).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    // The fake's sandbox has no envd: the port is published all the same, once.
    let a = call(addr, "POST", &format!("/sandboxes/{id}/ports/8000"), None).await.json();
    let b = call(addr, "POST", &format!("/sandboxes/{id}/ports/8000"), None).await.json();
    assert!(a["host"].as_str().unwrap().starts_with("127.0.0.1:"), "{a}");
    assert_eq!(a, b);
    assert_eq!(a["port"], 8000);
}

/// `POST /sandboxes/{id}/restore`: the same sandbox (ID, state) after a restore, even though its
/// old processes' end fires; refusals and failures before its processes end leave it as it was,
/// a failure after them removes it; bad input is named.
#[tokio::test]
async fn restore_keeps_the_sandbox_or_says_why_not() {
    let (addr, _, _) = start().await;
    let id = create(addr, r#"{"templateID":"base"}"#).await;
    let path = format!("/sandboxes/{id}/restore");
    let restore = |body: &'static str| call(addr, "POST", &path, Some(body));
    let m = restore(r#"{"snapshotID":"  "}"#).await.error(400);
    assert!(m.contains("snapshotID"), "{m}");
    let m = restore(r#"{"snapshotID":"other-lineage"}"#).await.error(409);
    assert!(m.contains("lineage") && m.contains("force"), "{m}");
    call(addr, "POST", "/sandboxes/nope0000000000000000/restore", Some(r#"{"snapshotID":"x"}"#)).await.error(404);
    let m = restore(r#"{"snapshotID":"missing"}"#).await.error(404);
    assert!(m.contains("missing"), "{m}");
    assert_eq!(call(addr, "GET", &format!("/sandboxes/{id}"), None).await.json()["state"], "running");

    let r = restore(r#"{"snapshotID":"other-lineage","force":true}"#).await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.json());
    assert_eq!(r.json()["sandboxID"], id.as_str());
    // Its old processes' end (fired by the restore) did not remove it.
    tokio::time::sleep(Duration::from_millis(100)).await;
    let got = call(addr, "GET", &format!("/sandboxes/{id}"), None).await.json();
    assert_eq!(got["state"], "running", "{got}");

    call(addr, "POST", &format!("/sandboxes/{id}/pause"), None).await;
    let m = restore(r#"{"snapshotID":"x"}"#).await.error(409);
    assert!(m.contains("paused"), "{m}");
    call(addr, "POST", &format!("/sandboxes/{id}/connect"), Some(r#"{"timeout":60}"#)).await;

    let m = restore(r#"{"snapshotID":"unstartable"}"#).await.error(500);
    assert!(m.contains("gone"), "{m}");
    call(addr, "GET", &format!("/sandboxes/{id}"), None).await.error(404);
}

#[tokio::test]
async fn snapshot_export_then_import_round_trips_and_bad_archives_are_400s_naming_why() {
    let (addr, _fake, _) = start().await;
    let sb = create(addr, r#"{"templateID":"base"}"#).await;
    let r = call(addr, "POST", &format!("/sandboxes/{sb}/snapshots"), Some(r#"{"name":"keep","metadata":{"k":"v"}}"#))
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
    let id = r.json()["snapshotID"].as_str().unwrap().to_string();

    let r = call(addr, "GET", &format!("/snapshots/{id}/export"), None).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.headers["content-type"], "application/zstd");
    assert!(r.headers["content-disposition"].to_str().unwrap().contains("attachment"));
    let archive = r.body.clone();
    // By name too; an unknown one is a 404.
    assert_eq!(call(addr, "GET", "/snapshots/keep/export", None).await.status, StatusCode::OK);
    assert!(call(addr, "GET", "/snapshots/nope/export", None).await.error(404).contains("nope"));

    let import = |body: Bytes| {
        let req = Request::post("/snapshots/import").header("x-api-key", KEY).body(Body::from(body)).unwrap();
        send(addr, req)
    };
    // Its name is taken here (the snapshot is still there): imported without it, and said so.
    let r = import(archive.clone()).await;
    assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
    let v = r.json();
    assert_ne!(v["snapshotID"].as_str().unwrap(), id);
    assert_eq!(v["names"], serde_json::json!([]));
    assert_eq!(v["metadata"]["k"], "v");
    assert_eq!(r.headers["x-sandbank-dropped-name"], "keep");
    let listed = call(addr, "GET", "/snapshots", None).await.json();
    assert!(listed.as_array().unwrap().iter().any(|s| s["snapshotID"] == v["snapshotID"]), "{listed}");

    let before = call(addr, "GET", "/snapshots", None).await.json().as_array().unwrap().len();
    let truncated = archive.slice(..archive.len() - 7);
    assert!(import(truncated).await.error(400).contains("truncated"));
    let mut flipped = archive.to_vec();
    let at = flipped.len() / 2;
    flipped[at] ^= 0x01;
    let why = import(Bytes::from(flipped)).await.error(400);
    assert!(why.contains("corrupted") || why.contains("truncated"), "{why}");
    assert!(import(Bytes::from_static(b"{\"not\": \"an archive\"}"))
        .await
        .error(400)
        .contains("not a sandbank snapshot archive"));
    assert!(import(Bytes::new()).await.error(400).contains("not a sandbank snapshot archive"));
    let after = call(addr, "GET", "/snapshots", None).await.json().as_array().unwrap().len();
    assert_eq!(before, after, "a refused archive publishes nothing");
}

/// `GET /snapshots/{id}/diff`: the snapshot's changes by its ID (tagged or not) or name; 404
/// naming an unknown one.
#[tokio::test]
async fn snapshot_diff_answers_the_changes_or_404() {
    let (addr, _, _) = start().await;
    let id = create(addr, r#"{"templateID":"base"}"#).await;
    let snap = call(addr, "POST", &format!("/sandboxes/{id}/snapshots"), Some(r#"{"name":"diffed"}"#)).await.json();
    let snapshot_id = snap["snapshotID"].as_str().unwrap().to_string();
    for reference in [snapshot_id.as_str(), snapshot_id.trim_end_matches(":default"), "diffed"] {
        let got = call(addr, "GET", &format!("/snapshots/{reference}/diff"), None).await;
        assert_eq!(got.status, StatusCode::OK, "{reference}");
        let v = got.json();
        assert_eq!(v["snapshotID"], snapshot_id.as_str());
        assert_eq!(v["added"], serde_json::json!(["/home/user/new.txt"]));
        assert_eq!(v["changed"], serde_json::json!(["/etc/hosts"]));
        assert_eq!(v["removed"], serde_json::json!(["/tmp/old"]));
    }
    let m = call(addr, "GET", "/snapshots/nosuchsnapshot/diff", None).await.error(404);
    assert!(m.contains("nosuchsnapshot"), "{m}");
}
