//! End-to-end tests: envd on a unix socket in a temp dir, spoken to over real HTTP/1.1 with the
//! Connect protocol, as the SDKs do. They run as root on the host (the default user is `user`
//! when it exists, else `root`).

use super::{serve_on, users, Options};
use base64::Engine as _;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{HeaderMap, Request, StatusCode};
use hyper_util::rt::TokioIo;
use prost::Message as _;
use sandbank_protocol::connect::{encode_envelope, ConnectError, EndStream, Envelope, EnvelopeDecoder};
use sandbank_protocol::filesystem::{EntryInfo, EntryResponse, FileType, ListDirResponse, PathRequest};
use sandbank_protocol::process::*;
use serde_json::{json, Value};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

struct TestEnvd {
    dir: tempfile::TempDir,
    sock: PathBuf,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for TestEnvd {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn default_user() -> &'static str {
    if users::lookup("user").is_some() {
        "user"
    } else {
        "root"
    }
}

async fn start_envd() -> TestEnvd {
    start_envd_with(super::watchers::MAX_BUFFERED_EVENTS).await
}

/// Tests that create inotify watchers hold this: some count the process's inotify descriptors.
static INOTIFY: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

async fn start_envd_with(max_watcher_events: usize) -> TestEnvd {
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("envd.sock");
    let listener = tokio::net::UnixListener::bind(&sock).unwrap();
    let opts = Options {
        sandbox_id: "test-sandbox".into(),
        env_vars: [("SANDBOX_VAR".to_string(), "from-sandbox".to_string())].into(),
        default_user: default_user().into(),
        default_workdir: None,
        max_watcher_events,
    };
    let task = tokio::spawn(async move {
        serve_on(listener, opts).await.unwrap();
    });
    TestEnvd { dir, sock, task }
}

impl TestEnvd {
    fn tmp(&self) -> &Path {
        self.dir.path()
    }

    async fn send(
        &self,
        method: &str,
        uri: &str,
        headers: &[(&str, &str)],
        body: Vec<u8>,
    ) -> hyper::Response<Incoming> {
        let stream = tokio::net::UnixStream::connect(&self.sock).await.unwrap();
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await.unwrap();
        tokio::spawn(conn);
        let mut req = Request::builder().method(method).uri(uri).header("host", "localhost");
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        sender.send_request(req.body(Full::new(Bytes::from(body))).unwrap()).await.unwrap()
    }

    async fn call(
        &self,
        method: &str,
        uri: &str,
        headers: &[(&str, &str)],
        body: Vec<u8>,
    ) -> (StatusCode, HeaderMap, Bytes) {
        let resp = self.send(method, uri, headers, body).await;
        let (parts, body) = resp.into_parts();
        let bytes = tokio::time::timeout(Duration::from_secs(60), body.collect()).await.unwrap().unwrap().to_bytes();
        (parts.status, parts.headers, bytes)
    }

    /// A unary JSON call; returns the status and the JSON body.
    async fn unary(&self, method: &str, body: Value) -> (StatusCode, Value) {
        let (status, headers, bytes) = self
            .call(
                "POST",
                method,
                &[("content-type", "application/json"), ("connect-protocol-version", "1")],
                body.to_string().into_bytes(),
            )
            .await;
        assert_eq!(headers["content-type"], "application/json");
        (status, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
    }

    async fn stream(&self, method: &str, msg: Value, headers: &[(&str, &str)]) -> EventStream {
        let mut all = vec![("content-type", "application/connect+json"), ("connect-protocol-version", "1")];
        all.extend_from_slice(headers);
        let resp = self.send("POST", method, &all, encode_envelope(0, msg.to_string().as_bytes()).to_vec()).await;
        assert_eq!(resp.status(), StatusCode::OK);
        assert_eq!(resp.headers()["content-type"], "application/connect+json");
        EventStream { body: resp.into_body(), dec: EnvelopeDecoder::default() }
    }

    async fn start(&self, cmd: &str, extra: Value, headers: &[(&str, &str)]) -> EventStream {
        let mut msg = json!({"process": {"cmd": "/bin/bash", "args": ["-l", "-c", cmd]}, "stdin": false});
        merge(&mut msg, extra);
        self.stream("/process.Process/Start", msg, headers).await
    }

    async fn kill(&self, pid: u32) -> (StatusCode, Value) {
        self.unary("/process.Process/SendSignal", json!({"process": {"pid": pid}, "signal": "SIGNAL_SIGKILL"})).await
    }
}

fn merge(a: &mut Value, b: Value) {
    match (a, b) {
        (Value::Object(a), Value::Object(b)) => {
            for (k, v) in b {
                merge(a.entry(k).or_insert(Value::Null), v);
            }
        }
        (a, b) => *a = b,
    }
}

struct EventStream {
    body: Incoming,
    dec: EnvelopeDecoder,
}

#[derive(Debug)]
enum Item {
    Event(Event),
    /// The end-of-stream message.
    End(Option<ConnectError>),
}

impl EventStream {
    async fn envelope(&mut self) -> Option<Envelope> {
        loop {
            if let Some(env) = self.dec.next().unwrap() {
                return Some(env);
            }
            match tokio::time::timeout(Duration::from_secs(30), self.body.frame()).await.expect("stream stalled") {
                Some(Ok(frame)) => {
                    if let Ok(data) = frame.into_data() {
                        self.dec.push(&data);
                    }
                }
                _ => {
                    self.dec.finish().unwrap();
                    return None;
                }
            }
        }
    }

    async fn next(&mut self) -> Option<Item> {
        let env = self.envelope().await?;
        if env.is_end_stream() {
            let end: EndStream = serde_json::from_slice(&env.payload).unwrap();
            return Some(Item::End(end.error));
        }
        let resp: EventResponse = serde_json::from_slice(&env.payload).unwrap();
        Some(Item::Event(resp.event.unwrap().event.unwrap()))
    }

    async fn expect_start(&mut self) -> u32 {
        match self.next().await {
            Some(Item::Event(Event::Start(s))) => {
                assert!(s.pid > 0);
                s.pid
            }
            other => panic!("expected a start event, got {other:?}"),
        }
    }

    /// Reads to the end of the stream.
    async fn finish(&mut self) -> Outcome {
        let mut out = Outcome::default();
        while let Some(item) = self.next().await {
            match item {
                Item::Event(Event::Start(s)) => out.pid = s.pid,
                Item::Event(Event::Data(DataEvent { output: Some(Output::Stdout(d)) })) => out.stdout.extend(d),
                Item::Event(Event::Data(DataEvent { output: Some(Output::Stderr(d)) })) => out.stderr.extend(d),
                Item::Event(Event::Data(_)) => panic!("empty data event"),
                Item::Event(Event::End(e)) => {
                    assert!(out.end.is_none(), "two end events");
                    out.end = Some(e);
                }
                Item::Event(Event::Keepalive(_)) => out.keepalives += 1,
                Item::End(err) => {
                    out.error = err;
                    out.finished = true;
                }
            }
        }
        assert!(out.finished, "no end-of-stream message");
        out
    }
}

#[derive(Debug, Default)]
struct Outcome {
    pid: u32,
    stdout: Vec<u8>,
    stderr: Vec<u8>,
    end: Option<EndEvent>,
    error: Option<ConnectError>,
    keepalives: usize,
    finished: bool,
}

fn basic(user: &str) -> String {
    format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(format!("{user}:")))
}

fn pid_alive(pid: u32) -> bool {
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), None).is_ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn envd_runs_a_command_and_reports_output_and_exit_status() {
    let envd = start_envd().await;
    let mut s = envd.start("echo hello; echo warn >&2; exit 3", json!({}), &[("keepalive-ping-interval", "50")]).await;
    // The first envelope is exactly the start event, in the SDK's wire form.
    let first = s.envelope().await.unwrap();
    let v: Value = serde_json::from_slice(&first.payload).unwrap();
    let pid = v["event"]["start"]["pid"].as_u64().unwrap() as u32;
    assert!(pid > 0);
    let out = s.finish().await;
    assert_eq!(String::from_utf8_lossy(&out.stdout), "hello\n");
    assert_eq!(String::from_utf8_lossy(&out.stderr), "warn\n");
    let end = out.end.unwrap();
    assert_eq!((end.exit_code, end.exited), (3, true));
    assert_eq!(end.status, "exit status 3");
    assert_eq!(end.error.as_deref(), Some("exit status 3"));
    assert!(out.error.is_none());

    let mut s = envd.start("true", json!({}), &[]).await;
    let out = s.finish().await;
    let end = out.end.unwrap();
    assert_eq!((end.exit_code, end.exited, end.status.as_str(), end.error), (0, true, "exit status 0", None));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn envd_sets_env_cwd_and_user() {
    let envd = start_envd().await;
    let cwd = envd.tmp().to_str().unwrap().to_string();
    let cmd = "echo \"$X|$SANDBOX_VAR|$USER|$HOME|$(pwd)|$(id -u)\"";
    let mut s = envd
        .start(cmd, json!({"process": {"envs": {"X": "y"}, "cwd": cwd}}), &[("authorization", &basic("root"))])
        .await;
    let out = s.finish().await;
    assert_eq!(String::from_utf8_lossy(&out.stdout), format!("y|from-sandbox|root|/root|{cwd}|0\n"));
    assert_eq!(out.end.unwrap().exit_code, 0);

    // The default user's home is the default cwd.
    let home = users::lookup(default_user()).unwrap().home;
    let mut s = envd.start("pwd; echo $USER", json!({}), &[]).await;
    let out = s.finish().await;
    assert_eq!(String::from_utf8_lossy(&out.stdout), format!("{}\n{}\n", home.display(), default_user()));

    // Unknown user and a missing cwd are errors naming the value.
    let mut s = envd.start("true", json!({}), &[("authorization", &basic("no-such-user-xyz"))]).await;
    let out = s.finish().await;
    assert!(out.end.is_none());
    let err = out.error.unwrap();
    assert_eq!(err.code.as_str(), "unauthenticated");
    assert!(err.message.contains("no-such-user-xyz"), "{}", err.message);
    let mut s = envd.start("true", json!({"process": {"cwd": "/no/such/dir"}}), &[]).await;
    let err = s.finish().await.error.unwrap();
    assert_eq!(err.code.as_str(), "invalid_argument");
    assert!(err.message.contains("/no/such/dir"), "{}", err.message);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn envd_takes_stdin_and_closes_it() {
    let envd = start_envd().await;
    let mut s = envd.start("cat", json!({"stdin": true}), &[]).await;
    let pid = s.expect_start().await;
    let (status, body) =
        envd.unary("/process.Process/SendInput", json!({"process": {"pid": pid}, "input": {"stdin": "YWJj"}})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body, json!({}));
    match s.next().await {
        Some(Item::Event(Event::Data(DataEvent { output: Some(Output::Stdout(d)) }))) => assert_eq!(d, b"abc"),
        other => panic!("expected stdout data, got {other:?}"),
    }
    let (status, _) = envd.unary("/process.Process/CloseStdin", json!({"process": {"pid": pid}})).await;
    assert_eq!(status, StatusCode::OK);
    let out = s.finish().await;
    assert_eq!(out.end.unwrap().exit_code, 0);

    // Without stdin: true, stdin is /dev/null and SendInput is refused.
    let mut s = envd.start("cat; sleep 30", json!({}), &[]).await;
    let pid = s.expect_start().await;
    let (status, body) =
        envd.unary("/process.Process/SendInput", json!({"process": {"pid": pid}, "input": {"stdin": "YWJj"}})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["code"], "failed_precondition");
    envd.kill(pid).await;
    assert_eq!(s.finish().await.end.unwrap().exit_code, -1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn envd_lists_kills_and_reattaches() {
    let envd = start_envd().await;
    let mut s = envd.start("while true; do echo tick; sleep 0.2; done", json!({"tag": "ticker"}), &[]).await;
    let pid = s.expect_start().await;
    drop(s); // a client disconnect does not kill the process
    tokio::time::sleep(Duration::from_millis(600)).await;

    let (status, body) = envd.unary("/process.Process/List", json!({})).await;
    assert_eq!(status, StatusCode::OK);
    let listed = body["processes"].as_array().unwrap().iter().find(|p| p["pid"] == pid).cloned().expect("listed");
    assert_eq!(listed["tag"], "ticker");
    assert_eq!(listed["config"]["cmd"], "/bin/bash");
    assert_eq!(listed["config"]["args"][2], "while true; do echo tick; sleep 0.2; done");

    let mut c = envd.stream("/process.Process/Connect", json!({"process": {"tag": "ticker"}}), &[]).await;
    assert_eq!(c.expect_start().await, pid);
    match c.next().await {
        Some(Item::Event(Event::Data(DataEvent { output: Some(Output::Stdout(d)) }))) => assert_eq!(d, b"tick\n"),
        other => panic!("expected output, got {other:?}"),
    }
    let (status, body) = envd.kill(pid).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let out = c.finish().await;
    let end = out.end.unwrap();
    assert_eq!((end.exit_code, end.exited), (-1, false));
    assert_eq!(end.status, "signal: killed");
    assert_eq!(end.error.as_deref(), Some("signal: killed"));
    assert!(out.error.is_none());

    // Gone now: signal and connect say not_found.
    let (status, body) = envd.kill(pid).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(body["code"], "not_found");
    assert!(body["message"].as_str().unwrap().contains(&pid.to_string()));
    let mut c = envd.stream("/process.Process/Connect", json!({"process": {"pid": pid}}), &[]).await;
    assert_eq!(c.finish().await.error.unwrap().code.as_str(), "not_found");
    let (_, body) = envd.unary("/process.Process/List", json!({})).await;
    assert!(body.get("processes").is_none_or(|p| !p.as_array().unwrap().iter().any(|p| p["pid"] == pid)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn envd_kills_a_command_at_its_deadline() {
    let envd = start_envd().await;
    let started = std::time::Instant::now();
    let mut s = envd.start("sleep 30", json!({}), &[("connect-timeout-ms", "700")]).await;
    let pid = s.expect_start().await;
    let out = s.finish().await;
    assert_eq!(out.error.unwrap().code.as_str(), "deadline_exceeded");
    assert!(started.elapsed() < Duration::from_secs(10));
    // The whole process group is killed and reaped.
    for _ in 0..50 {
        let (_, body) = envd.unary("/process.Process/List", json!({})).await;
        if body.get("processes").is_none() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (_, body) = envd.unary("/process.Process/List", json!({})).await;
    assert_eq!(body, json!({}), "process {pid} still listed");
    assert!(!pid_alive(pid), "process {pid} still exists");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn envd_streams_ten_megabytes_and_keepalives() {
    let envd = start_envd().await;
    let mut s = envd.start("head -c 10485760 /dev/zero | tr '\\0' a; echo -n E >&2", json!({}), &[]).await;
    let out = s.finish().await;
    assert_eq!(out.stdout.len(), 10 * 1024 * 1024);
    assert!(out.stdout.iter().all(|b| *b == b'a'));
    assert_eq!(out.stderr, b"E");
    assert_eq!(out.end.unwrap().exit_code, 0);

    let mut s = envd.start("sleep 2.5; echo done", json!({}), &[("keepalive-ping-interval", "1")]).await;
    let out = s.finish().await;
    assert!(out.keepalives >= 1, "{out:?}");
    assert_eq!(out.stdout, b"done\n");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn envd_rejects_bad_requests_with_connect_errors() {
    let envd = start_envd().await;
    // A truncated envelope: the length says 10, one byte follows.
    let (status, _, body) = envd
        .call(
            "POST",
            "/process.Process/Start",
            &[("content-type", "application/connect+json")],
            vec![0, 0, 0, 0, 10, b'{'],
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let v: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(v["code"], "invalid_argument");
    assert!(v["message"].as_str().unwrap().contains("truncated"), "{v}");
    // Garbage unary JSON.
    let (status, _, body) = envd
        .call("POST", "/filesystem.Filesystem/Stat", &[("content-type", "application/json")], b"{oops".to_vec())
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(serde_json::from_slice::<Value>(&body).unwrap()["code"], "invalid_argument");
    // Update of an unknown process.
    let (status, body) = envd.unary("/process.Process/Update", json!({"process": {"pid": 999_999_999u32}})).await;
    assert_eq!((status, body["code"].as_str()), (StatusCode::NOT_FOUND, Some("not_found")));
    // Unimplemented methods answer at once.
    let (status, _, body) = envd
        .call("POST", "/process.Process/StreamInput", &[("content-type", "application/connect+json")], vec![])
        .await;
    assert_eq!(status, StatusCode::OK);
    assert!(String::from_utf8_lossy(&body).contains("unimplemented"));
    // Unknown routes: 404 JSON.
    let (status, _, body) = envd.call("GET", "/nope", &[], vec![]).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(serde_json::from_slice::<Value>(&body).unwrap()["code"], 404);
    // Health and env vars.
    let (status, _, body) = envd.call("GET", "/health", &[], vec![]).await;
    assert_eq!((status, body.len()), (StatusCode::NO_CONTENT, 0));
    let (status, _, body) = envd.call("GET", "/envs", &[], vec![]).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(serde_json::from_slice::<Value>(&body).unwrap(), json!({"SANDBOX_VAR": "from-sandbox"}));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn envd_speaks_binary_protobuf() {
    let envd = start_envd().await;
    let path = envd.tmp().join("p.txt");
    std::fs::write(&path, b"12345").unwrap();
    let req = PathRequest { path: path.to_str().unwrap().into() }.encode_to_vec();
    let (status, headers, body) =
        envd.call("POST", "/filesystem.Filesystem/Stat", &[("content-type", "application/proto")], req).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(headers["content-type"], "application/proto");
    let entry = EntryResponse::decode(body).unwrap().entry.unwrap();
    assert_eq!((entry.name.as_str(), entry.size, entry.r#type), ("p.txt", 5, FileType::File as i32));

    let start = StartRequest {
        process: Some(ProcessConfig { cmd: "/bin/echo".into(), args: vec!["proto".into()], ..Default::default() }),
        stdin: Some(false),
        ..Default::default()
    };
    let (status, headers, body) = envd
        .call(
            "POST",
            "/process.Process/Start",
            &[("content-type", "application/connect+proto")],
            encode_envelope(0, &start.encode_to_vec()).to_vec(),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(headers["content-type"], "application/connect+proto");
    let mut dec = EnvelopeDecoder::default();
    dec.push(&body);
    let mut events = Vec::new();
    let mut end_stream = None;
    while let Some(env) = dec.next().unwrap() {
        if env.is_end_stream() {
            end_stream = Some(env.payload);
        } else {
            events.push(EventResponse::decode(env.payload).unwrap().event.unwrap().event.unwrap());
        }
    }
    assert_eq!(end_stream.as_deref(), Some(&b"{}"[..]));
    assert!(matches!(events[0], Event::Start(_)));
    assert!(events.contains(&Event::Data(DataEvent { output: Some(Output::Stdout(b"proto\n".to_vec())) })));
    assert!(matches!(events.last(), Some(Event::End(EndEvent { exited: true, exit_code: 0, .. }))));
}

fn entry(v: &Value) -> EntryInfo {
    serde_json::from_value(v["entry"].clone()).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn envd_filesystem_service() {
    let envd = start_envd().await;
    let root = envd.tmp().join("fs");
    let r = root.to_str().unwrap();

    let (status, body) = envd.unary("/filesystem.Filesystem/MakeDir", json!({"path": format!("{r}/a/b")})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let e = entry(&body);
    assert_eq!((e.name.as_str(), e.r#type), ("b", FileType::Directory as i32));
    assert_eq!(body["entry"]["type"], "FILE_TYPE_DIRECTORY");
    assert!(e.permissions.starts_with('d'), "{}", e.permissions);
    let (status, body) = envd.unary("/filesystem.Filesystem/MakeDir", json!({"path": format!("{r}/a/b")})).await;
    assert_eq!((status, body["code"].as_str()), (StatusCode::CONFLICT, Some("already_exists")));

    std::fs::write(root.join("a/f.txt"), b"hello").unwrap();
    std::fs::write(root.join("a/b/g.txt"), b"x").unwrap();
    let (status, body) = envd.unary("/filesystem.Filesystem/Stat", json!({"path": format!("{r}/a/f.txt")})).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["entry"]["size"], "5");
    assert_eq!(body["entry"]["type"], "FILE_TYPE_FILE");
    assert_eq!(body["entry"]["permissions"].as_str().unwrap().len(), 10);
    assert_eq!(body["entry"]["owner"], "root");
    assert!(body["entry"]["modifiedTime"].as_str().unwrap().ends_with('Z'));

    let list = |depth: u32| {
        let envd = &envd;
        let path = format!("{r}/a");
        async move {
            let (status, body) =
                envd.unary("/filesystem.Filesystem/ListDir", json!({"path": path, "depth": depth})).await;
            assert_eq!(status, StatusCode::OK, "{body}");
            let resp: ListDirResponse = serde_json::from_value(body).unwrap();
            let mut paths: Vec<String> = resp.entries.into_iter().map(|e| e.path).collect();
            paths.sort();
            paths
        }
    };
    assert_eq!(list(1).await, [format!("{r}/a/b"), format!("{r}/a/f.txt")]);
    assert_eq!(list(0).await, list(1).await);
    assert_eq!(list(2).await, [format!("{r}/a/b"), format!("{r}/a/b/g.txt"), format!("{r}/a/f.txt")]);
    let (status, body) = envd.unary("/filesystem.Filesystem/ListDir", json!({"path": format!("{r}/a/f.txt")})).await;
    assert_eq!((status, body["code"].as_str()), (StatusCode::BAD_REQUEST, Some("invalid_argument")));

    let (status, body) = envd
        .unary(
            "/filesystem.Filesystem/Move",
            json!({"source": format!("{r}/a/f.txt"), "destination": format!("{r}/new/dir/moved.txt")}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let e = entry(&body);
    assert_eq!((e.path, e.name.as_str(), e.size), (format!("{r}/new/dir/moved.txt"), "moved.txt", 5));
    assert!(!root.join("a/f.txt").exists());

    let (status, _) = envd.unary("/filesystem.Filesystem/Remove", json!({"path": format!("{r}/a")})).await;
    assert_eq!(status, StatusCode::OK);
    assert!(!root.join("a").exists());
    // Removing what is gone succeeds, as envd's `os.RemoveAll` does.
    let (status, _) = envd.unary("/filesystem.Filesystem/Remove", json!({"path": format!("{r}/a")})).await;
    assert_eq!(status, StatusCode::OK);
    let (status, body) = envd.unary("/filesystem.Filesystem/Stat", json!({"path": format!("{r}/a/f.txt")})).await;
    assert_eq!((status, body["code"].as_str()), (StatusCode::NOT_FOUND, Some("not_found")));
    // Another user's home cannot be named with `~name`.
    let (status, body) = envd.unary("/filesystem.Filesystem/Stat", json!({"path": "~root/x"})).await;
    assert_eq!((status, body["code"].as_str()), (StatusCode::BAD_REQUEST, Some("invalid_argument")));
    assert!(body["message"].as_str().unwrap().contains("another user's home"), "{body}");
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    enc.write_all(data).unwrap();
    enc.finish().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn envd_uploads_and_downloads_files() {
    let envd = start_envd().await;
    let r = envd.tmp().to_str().unwrap().to_string();
    let enc = |p: &str| percent_encoding::utf8_percent_encode(p, percent_encoding::NON_ALPHANUMERIC).to_string();

    // Multipart, two files, destinations from the filenames.
    let boundary = "XBOUNDARYx";
    let mut body = Vec::new();
    for (path, data) in [(format!("{r}/up/one.txt"), "first"), (format!("{r}/up/deep/two.txt"), "second")] {
        write!(body, "--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{path}\"\r\nContent-Type: application/octet-stream\r\n\r\n{data}\r\n").unwrap();
    }
    write!(body, "--{boundary}--\r\n").unwrap();
    let ct = format!("multipart/form-data; boundary={boundary}");
    let (status, _, resp) = envd.call("POST", "/files", &[("content-type", &ct)], body).await;
    assert_eq!(status, StatusCode::OK, "{}", String::from_utf8_lossy(&resp));
    let v: Value = serde_json::from_slice(&resp).unwrap();
    assert_eq!(
        v,
        json!([
            {"path": format!("{r}/up/one.txt"), "name": "one.txt", "type": "file"},
            {"path": format!("{r}/up/deep/two.txt"), "name": "two.txt", "type": "file"},
        ])
    );
    assert_eq!(std::fs::read_to_string(format!("{r}/up/deep/two.txt")).unwrap(), "second");

    // Octet-stream, gzip-encoded, 20 MB, overwriting.
    let big: Vec<u8> = (0..20 * 1024 * 1024u32).map(|i| (i % 251) as u8).collect();
    let target = format!("{r}/up/one.txt");
    let uri = format!("/files?path={}&username=root", enc(&target));
    let (status, _, resp) = envd
        .call("POST", &uri, &[("content-type", "application/octet-stream"), ("content-encoding", "gzip")], gzip(&big))
        .await;
    assert_eq!(status, StatusCode::OK, "{}", String::from_utf8_lossy(&resp));
    assert_eq!(serde_json::from_slice::<Value>(&resp).unwrap()[0]["path"], target);
    assert!(std::fs::read(&target).unwrap() == big);

    // Download, identity then gzip.
    let (status, headers, data) = envd.call("GET", &format!("/files?path={}", enc(&target)), &[], vec![]).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(headers["content-type"], "application/octet-stream");
    assert_eq!(headers["content-length"], big.len().to_string().as_str());
    assert!(data == big);
    let (status, headers, data) =
        envd.call("GET", &format!("/files?path={}", enc(&target)), &[("accept-encoding", "gzip")], vec![]).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(headers["content-encoding"], "gzip");
    let mut plain = Vec::new();
    flate2::read::GzDecoder::new(&data[..]).read_to_end(&mut plain).unwrap();
    assert!(plain == big);
    // Empty file: Content-Length 0.
    std::fs::write(format!("{r}/empty"), b"").unwrap();
    let (status, headers, data) =
        envd.call("GET", &format!("/files?path={}", enc(&format!("{r}/empty"))), &[], vec![]).await;
    assert_eq!((status, headers["content-length"].to_str().unwrap(), data.len()), (StatusCode::OK, "0", 0));

    // Errors: JSON with a numeric code.
    let err =
        |(status, _, body): (StatusCode, HeaderMap, Bytes)| (status, serde_json::from_slice::<Value>(&body).unwrap());
    let (status, v) =
        err(envd.call("GET", &format!("/files?path={}", enc(&format!("{r}/missing"))), &[], vec![]).await);
    assert_eq!((status, v["code"].as_u64()), (StatusCode::NOT_FOUND, Some(404)));
    assert!(v["message"].as_str().unwrap().contains("missing"));
    let (status, v) = err(envd.call("GET", &format!("/files?path={}", enc(&r)), &[], vec![]).await);
    assert_eq!((status, v["code"].as_u64()), (StatusCode::BAD_REQUEST, Some(400)));
    // A relative path is in the user's home, as envd has it; `~name` is refused.
    let (status, v) = err(envd.call("GET", "/files?path=rel/x", &[], vec![]).await);
    assert_eq!((status, v["code"].as_u64()), (StatusCode::NOT_FOUND, Some(404)));
    let home = users::lookup(default_user()).unwrap().home;
    assert!(v["message"].as_str().unwrap().contains(&format!("{}/rel/x", home.display())), "{v}");
    let (status, v) = err(envd.call("GET", "/files?path=~ghost/x", &[], vec![]).await);
    assert_eq!((status, v["code"].as_u64()), (StatusCode::BAD_REQUEST, Some(400)));
    let (status, v) =
        err(envd.call("GET", &format!("/files?path={}&username=nobody-xyz", enc(&target)), &[], vec![]).await);
    assert_eq!((status, v["code"].as_u64()), (StatusCode::UNAUTHORIZED, Some(401)));
    let (status, _) =
        err(envd.call("POST", "/files", &[("content-type", "application/octet-stream")], b"x".to_vec()).await);
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (status, _) = err(envd
        .call(
            "POST",
            &uri,
            &[("content-type", "application/octet-stream"), ("content-encoding", "gzip")],
            b"not gzip".to_vec(),
        )
        .await);
    assert_eq!(status, StatusCode::BAD_REQUEST);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn envd_ends_the_stream_when_a_background_child_keeps_the_pipes() {
    let envd = start_envd().await;
    let started = std::time::Instant::now();
    let mut s = envd.start("sleep 30 & echo hi", json!({}), &[]).await;
    let out = s.finish().await;
    assert!(started.elapsed() < Duration::from_secs(10));
    assert_eq!(out.stdout, b"hi\n");
    assert_eq!(out.end.unwrap().exit_code, 0);
    // The background sleep is in the command's process group: stop it.
    let _ = nix::sys::signal::killpg(nix::unistd::Pid::from_raw(out.pid as i32), nix::sys::signal::Signal::SIGKILL);
}

impl EventStream {
    /// Reads PTY output until it contains `needle`; returns everything read so far.
    async fn pty_until(&mut self, seen: &mut Vec<u8>, needle: &str) -> String {
        loop {
            if String::from_utf8_lossy(seen).contains(needle) {
                return String::from_utf8_lossy(seen).into_owned();
            }
            match self.next().await {
                Some(Item::Event(Event::Data(DataEvent { output: Some(Output::Pty(d)) }))) => seen.extend(d),
                Some(Item::Event(Event::Keepalive(_))) => {}
                other => panic!(
                    "expected pty output containing {needle:?}, got {other:?} after {:?}",
                    String::from_utf8_lossy(seen)
                ),
            }
        }
    }

    /// Skips the remaining output up to the end event and the end of the stream.
    async fn pty_end(&mut self) -> EndEvent {
        let mut end = None;
        while let Some(item) = self.next().await {
            match item {
                Item::Event(Event::End(e)) => end = Some(e),
                Item::End(err) => assert!(err.is_none(), "{err:?}"),
                Item::Event(Event::Data(DataEvent { output: Some(Output::Pty(_)) }))
                | Item::Event(Event::Keepalive(_)) => {}
                other => panic!("unexpected {other:?}"),
            }
        }
        end.expect("an end event")
    }
}

fn pty_input(data: &str) -> Value {
    json!({"pty": base64::engine::general_purpose::STANDARD.encode(data)})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn envd_runs_a_process_on_a_terminal() {
    let envd = start_envd().await;
    let script = "echo \"term:$TERM tty:$(tty)\"; echo \"size:$(stty size)\"; read a; echo \"got:$a\"; read b; echo \"size:$(stty size)\"; exit 4";
    let req =
        json!({"process": {"cmd": "/bin/bash", "args": ["-c", script]}, "pty": {"size": {"cols": 100, "rows": 30}}});
    let mut s = envd.stream("/process.Process/Start", req, &[]).await;
    let pid = s.expect_start().await;
    let mut seen = Vec::new();
    let out = s.pty_until(&mut seen, "size:30 100").await;
    assert!(out.contains("term:xterm-256color tty:/dev/pts/"), "{out}");
    // What is typed goes through the terminal (echoed, with \r\n) to the program.
    let (status, body) =
        envd.unary("/process.Process/SendInput", json!({"process": {"pid": pid}, "input": pty_input("hello\n")})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let out = s.pty_until(&mut seen, "got:hello\r\n").await;
    assert!(out.contains("hello\r\n"), "{out}");
    // A resize is what the program sees next.
    let (status, body) = envd
        .unary("/process.Process/Update", json!({"process": {"pid": pid}, "pty": {"size": {"cols": 120, "rows": 40}}}))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    envd.unary("/process.Process/SendInput", json!({"process": {"pid": pid}, "input": pty_input("\n")})).await;
    s.pty_until(&mut seen, "size:40 120").await;
    let end = s.pty_end().await;
    assert_eq!((end.exit_code, end.status.as_str()), (4, "exit status 4"));

    // The SDK's interactive login shell: input, a second stream through Connect, kill.
    let req = json!({"process": {"cmd": "/bin/bash", "args": ["-i", "-l"], "envs": {"TERM": "dumb"}}, "pty": {"size": {"cols": 80, "rows": 24}}});
    let mut s = envd.stream("/process.Process/Start", req, &[]).await;
    let pid = s.expect_start().await;
    let mut c = envd.stream("/process.Process/Connect", json!({"process": {"pid": pid}}), &[]).await;
    assert_eq!(c.expect_start().await, pid);
    envd.unary(
        "/process.Process/SendInput",
        json!({"process": {"pid": pid}, "input": pty_input("echo \"v=$((6*7)) $TERM\"\n")}),
    )
    .await;
    let (mut a, mut b) = (Vec::new(), Vec::new());
    s.pty_until(&mut a, "v=42 dumb").await;
    c.pty_until(&mut b, "v=42 dumb").await;
    // stdin input and a non-terminal process's resize are refused.
    let (status, body) =
        envd.unary("/process.Process/SendInput", json!({"process": {"pid": pid}, "input": {"stdin": "YWJj"}})).await;
    assert_eq!((status, body["code"].as_str()), (StatusCode::BAD_REQUEST, Some("failed_precondition")));
    let mut plain = envd.start("sleep 30", json!({}), &[]).await;
    let plain_pid = plain.expect_start().await;
    let (status, body) = envd
        .unary(
            "/process.Process/Update",
            json!({"process": {"pid": plain_pid}, "pty": {"size": {"cols": 1, "rows": 1}}}),
        )
        .await;
    assert_eq!((status, body["code"].as_str()), (StatusCode::BAD_REQUEST, Some("failed_precondition")));
    let (status, body) =
        envd.unary("/process.Process/SendInput", json!({"process": {"pid": plain_pid}, "input": pty_input("x")})).await;
    assert_eq!((status, body["code"].as_str()), (StatusCode::BAD_REQUEST, Some("failed_precondition")));
    envd.kill(plain_pid).await;
    plain.finish().await;

    let (status, _) = envd.kill(pid).await;
    assert_eq!(status, StatusCode::OK);
    let end = s.pty_end().await;
    assert_eq!((end.exit_code, end.status.as_str()), (-1, "signal: killed"));
    assert_eq!(c.pty_end().await.status, "signal: killed");
    assert!(!pid_alive(pid));
}

struct WatchStream(EventStream);

#[derive(Debug, PartialEq)]
enum Watched {
    Start,
    Fs(String, &'static str),
    Keepalive,
    End(Option<String>),
}

impl WatchStream {
    async fn open(envd: &TestEnvd, path: &Path, recursive: bool, headers: &[(&str, &str)]) -> Self {
        let msg = json!({"path": path.to_str().unwrap(), "recursive": recursive});
        WatchStream(envd.stream("/filesystem.Filesystem/WatchDir", msg, headers).await)
    }

    async fn next(&mut self) -> Option<Watched> {
        let env = self.0.envelope().await?;
        if env.is_end_stream() {
            let end: EndStream = serde_json::from_slice(&env.payload).unwrap();
            return Some(Watched::End(end.error.map(|e| e.code.as_str().to_string())));
        }
        let v: Value = serde_json::from_slice(&env.payload).unwrap();
        Some(if v.get("start").is_some() {
            Watched::Start
        } else if v.get("keepalive").is_some() {
            Watched::Keepalive
        } else {
            let ty = match v["filesystem"]["type"].as_str().unwrap() {
                "EVENT_TYPE_CREATE" => "create",
                "EVENT_TYPE_WRITE" => "write",
                "EVENT_TYPE_REMOVE" => "remove",
                "EVENT_TYPE_RENAME" => "rename",
                "EVENT_TYPE_CHMOD" => "chmod",
                other => panic!("unexpected event type {other}"),
            };
            Watched::Fs(v["filesystem"]["name"].as_str().unwrap().to_string(), ty)
        })
    }

    /// Reads events until `(name, type)` arrives; returns every file-system event read.
    async fn until(&mut self, name: &str, ty: &str) -> Vec<(String, &'static str)> {
        let mut seen = Vec::new();
        loop {
            match self.next().await {
                Some(Watched::Fs(n, t)) => {
                    let hit = n == name && t == ty;
                    seen.push((n, t));
                    if hit {
                        return seen;
                    }
                }
                Some(Watched::Keepalive) => {}
                other => panic!("waiting for {ty} {name}: got {other:?} after {seen:?}"),
            }
        }
    }
}

fn inotify_fds() -> usize {
    std::fs::read_dir("/proc/self/fd")
        .unwrap()
        .flatten()
        .filter(|e| std::fs::read_link(e.path()).map(|l| l.to_string_lossy().contains("inotify")).unwrap_or(false))
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn envd_watches_directories() {
    let _inotify = INOTIFY.lock().await;
    let envd = start_envd().await;
    let root = envd.tmp().join("w");
    std::fs::create_dir(&root).unwrap();
    let before = inotify_fds();

    let mut w = WatchStream::open(&envd, &root, false, &[]).await;
    assert_eq!(w.next().await, Some(Watched::Start));
    std::fs::write(root.join("a.txt"), "one").unwrap();
    let seen = w.until("a.txt", "write").await;
    assert_eq!(seen[0], ("a.txt".to_string(), "create"));
    std::fs::set_permissions(root.join("a.txt"), std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    w.until("a.txt", "chmod").await;
    std::fs::rename(root.join("a.txt"), root.join("b.txt")).unwrap();
    let seen = w.until("b.txt", "create").await;
    assert!(seen.contains(&("a.txt".to_string(), "rename")), "{seen:?}");
    std::fs::remove_file(root.join("b.txt")).unwrap();
    w.until("b.txt", "remove").await;
    // Not recursive: a file in a subdirectory is not seen, only the directory.
    std::fs::create_dir(root.join("sub")).unwrap();
    w.until("sub", "create").await;
    std::fs::write(root.join("sub/inner.txt"), "x").unwrap();
    std::fs::write(root.join("marker"), "x").unwrap();
    let seen = w.until("marker", "write").await;
    assert!(seen.iter().all(|(n, _)| !n.contains("inner")), "{seen:?}");
    assert_eq!(inotify_fds(), before + 1);
    // The client going away closes the inotify descriptor.
    drop(w);
    let gone = async {
        while inotify_fds() != before {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(10), gone).await.expect("the inotify descriptor is closed");

    // Recursive: existing and new subdirectories, with names relative to the watched dir.
    let mut w = WatchStream::open(&envd, &root, true, &[]).await;
    assert_eq!(w.next().await, Some(Watched::Start));
    std::fs::write(root.join("sub/inner.txt"), "y").unwrap();
    w.until("sub/inner.txt", "write").await;
    std::fs::create_dir_all(root.join("new/deeper")).unwrap();
    std::fs::write(root.join("new/deeper/f.txt"), "z").unwrap();
    let seen = w.until("new/deeper/f.txt", "create").await;
    assert!(seen.contains(&("new".to_string(), "create")), "{seen:?}");
    std::fs::write(root.join("new/deeper/g.txt"), "z").unwrap();
    w.until("new/deeper/g.txt", "write").await;
    drop(w);

    // Deadline and keepalives.
    let mut w =
        WatchStream::open(&envd, &root, false, &[("connect-timeout-ms", "1500"), ("keepalive-ping-interval", "1")])
            .await;
    assert_eq!(w.next().await, Some(Watched::Start));
    assert_eq!(w.next().await, Some(Watched::Keepalive));
    loop {
        match w.next().await {
            Some(Watched::Keepalive) => {}
            Some(Watched::End(code)) => {
                assert_eq!(code.as_deref(), Some("deadline_exceeded"));
                break;
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(w.next().await, None);

    // A symlink to a directory is watched as the directory.
    let link = envd.tmp().join("link");
    std::os::unix::fs::symlink(&root, &link).unwrap();
    let mut w = WatchStream::open(&envd, &link, false, &[]).await;
    assert_eq!(w.next().await, Some(Watched::Start));
    std::fs::write(root.join("via-link"), "x").unwrap();
    w.until("via-link", "write").await;
    drop(w);

    // A missing path and a file.
    let mut w = WatchStream::open(&envd, &root.join("nope"), false, &[]).await;
    assert_eq!(w.next().await, Some(Watched::End(Some("not_found".into()))));
    std::fs::write(root.join("file"), "x").unwrap();
    let mut w = WatchStream::open(&envd, &root.join("file"), false, &[]).await;
    assert_eq!(w.next().await, Some(Watched::End(Some("invalid_argument".into()))));
}

/// A chunked multipart upload whose last chunk comes after the closing boundary (Node's `fetch`
/// sends FormData so): envd answers once the whole body is read and keeps the connection. It
/// used to answer at the boundary and close, and a client still sending the last chunk (the
/// server's proxy) got a broken pipe instead of the answer: about 1 upload in 20 through the SDKs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chunked_multipart_is_read_to_its_end_before_the_answer() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let envd = start_envd().await;
    let dest = envd.tmp().join("chunked.txt");
    let mut sock = tokio::net::UnixStream::connect(&envd.sock).await.unwrap();
    let boundary = "XyZ";
    let part = format!(
        "--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"x\"\r\n\r\nchunked body\r\n--{boundary}--\r\n"
    );
    let head = format!(
        "POST /files?path={} HTTP/1.1\r\nhost: localhost\r\ncontent-type: multipart/form-data; boundary={boundary}\r\ntransfer-encoding: chunked\r\n\r\n{:x}\r\n{part}\r\n",
        dest.display(),
        part.len()
    );
    sock.write_all(head.as_bytes()).await.unwrap();
    // No answer before the body has ended.
    let mut buf = vec![0u8; 4096];
    let early = tokio::time::timeout(Duration::from_millis(300), sock.read(&mut buf)).await;
    assert!(
        early.is_err(),
        "answered before the last chunk: {:?}",
        early.map(|r| r.map(|n| String::from_utf8_lossy(&buf[..n]).into_owned()))
    );
    sock.write_all(b"0\r\n\r\n").await.expect("the last chunk is read, not refused");
    let n = tokio::time::timeout(Duration::from_secs(10), sock.read(&mut buf)).await.unwrap().unwrap();
    let answer = String::from_utf8_lossy(&buf[..n]).into_owned();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert_eq!(std::fs::read_to_string(&dest).unwrap(), "chunked body");
    // The connection is kept: a second request on it is answered.
    sock.write_all(b"GET /health HTTP/1.1\r\nhost: localhost\r\n\r\n").await.unwrap();
    let n = tokio::time::timeout(Duration::from_secs(10), sock.read(&mut buf)).await.unwrap().unwrap();
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 204"), "{}", String::from_utf8_lossy(&buf[..n]));
}

fn xattr(path: &Path, name: &str) -> Option<Vec<u8>> {
    let mut buf = vec![0u8; 4096];
    rustix::fs::getxattr(path, name, &mut buf[..]).ok().map(|n| buf[..n].to_vec())
}

/// Metadata (envd 0.6.2): `X-Metadata-*` upload headers become `user.e2b.*` xattrs, replacing the
/// file's set, and every `EntryInfo` reports them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn envd_keeps_file_metadata_in_xattrs() {
    let envd = start_envd().await;
    let r = envd.tmp().to_str().unwrap().to_string();
    let enc = |p: &str| percent_encoding::utf8_percent_encode(p, percent_encoding::NON_ALPHANUMERIC).to_string();
    let upload = |path: String, headers: Vec<(&'static str, &'static str)>, data: &'static str| {
        let envd = &envd;
        async move {
            let uri = format!("/files?path={}", enc(&path));
            let mut all = vec![("content-type", "application/octet-stream")];
            all.extend(headers);
            let (status, _, body) = envd.call("POST", &uri, &all, data.as_bytes().to_vec()).await;
            (status, serde_json::from_slice::<Value>(&body).unwrap())
        }
    };
    let stat = |path: String| {
        let envd = &envd;
        async move {
            let (status, body) = envd.unary("/filesystem.Filesystem/Stat", json!({"path": path})).await;
            assert_eq!(status, StatusCode::OK, "{body}");
            body["entry"].clone()
        }
    };

    // Octet-stream: any case, the first of a repeated header, answered as read back from the disk.
    let f = format!("{r}/m/a.txt");
    let (status, v) = upload(
        f.clone(),
        vec![("X-Metadata-Author", "me"), ("x-metadata-author", "not me"), ("X-METADATA-Purpose", "a test")],
        "one",
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{v}");
    let both = json!({"author": "me", "purpose": "a test"});
    assert_eq!(v, json!([{"path": f, "name": "a.txt", "type": "file", "metadata": both}]));
    assert_eq!(xattr(Path::new(&f), "user.e2b.author").as_deref(), Some(&b"me"[..]));
    assert_eq!(stat(f.clone()).await["metadata"], both);

    // Overwriting replaces the whole set; other `user.*` xattrs are kept and not reported, and
    // `user.e2b.*` set by other means is.
    rustix::fs::setxattr(&f, "user.other", b"x", rustix::fs::XattrFlags::empty()).unwrap();
    let (_, v) = upload(f.clone(), vec![("x-metadata-purpose", "another")], "two").await;
    assert_eq!(v[0]["metadata"], json!({"purpose": "another"}));
    assert_eq!(xattr(Path::new(&f), "user.e2b.author"), None);
    rustix::fs::setxattr(&f, "user.e2b.by-hand", b"yes", rustix::fs::XattrFlags::empty()).unwrap();
    assert_eq!(stat(f.clone()).await["metadata"], json!({"purpose": "another", "by-hand": "yes"}));
    // No header clears it: no `metadata` in the answers.
    let (_, v) = upload(f.clone(), vec![], "three").await;
    assert_eq!(v, json!([{"path": f, "name": "a.txt", "type": "file"}]));
    let e = stat(f.clone()).await;
    assert!(e.get("metadata").is_none(), "{e}");
    assert_eq!(xattr(Path::new(&f), "user.other").as_deref(), Some(&b"x"[..]));

    // Multipart: every file gets the metadata.
    let boundary = "XBOUNDARYx";
    let mut body = Vec::new();
    for (path, data) in [(format!("{r}/m/one.txt"), "first"), (format!("{r}/m/deep/two.txt"), "second")] {
        write!(
            body,
            "--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{path}\"\r\n\r\n{data}\r\n"
        )
        .unwrap();
    }
    write!(body, "--{boundary}--\r\n").unwrap();
    let ct = format!("multipart/form-data; boundary={boundary}");
    let (status, _, resp) =
        envd.call("POST", "/files", &[("content-type", &ct), ("x-metadata-source", "suite")], body).await;
    assert_eq!(status, StatusCode::OK, "{}", String::from_utf8_lossy(&resp));
    let v: Value = serde_json::from_slice(&resp).unwrap();
    assert_eq!(v.as_array().unwrap().len(), 2);
    for item in v.as_array().unwrap() {
        assert_eq!(item["metadata"], json!({"source": "suite"}), "{v}");
    }

    // ListDir, Move and binary protobuf report it too.
    let (_, list) = envd.unary("/filesystem.Filesystem/ListDir", json!({"path": format!("{r}/m"), "depth": 2})).await;
    let two = list["entries"].as_array().unwrap().iter().find(|e| e["name"] == "two.txt").unwrap().clone();
    assert_eq!(two["metadata"], json!({"source": "suite"}));
    let (status, moved) = envd
        .unary(
            "/filesystem.Filesystem/Move",
            json!({"source": format!("{r}/m/one.txt"), "destination": format!("{r}/m/moved.txt")}),
        )
        .await;
    assert_eq!((status, &moved["entry"]["metadata"]), (StatusCode::OK, &json!({"source": "suite"})));
    let req = PathRequest { path: format!("{r}/m/moved.txt") }.encode_to_vec();
    let (status, _, bytes) =
        envd.call("POST", "/filesystem.Filesystem/Stat", &[("content-type", "application/proto")], req).await;
    assert_eq!(status, StatusCode::OK);
    let entry = EntryResponse::decode(bytes).unwrap().entry.unwrap();
    assert_eq!(entry.metadata, [("source".to_string(), "suite".to_string())].into());

    // Invalid metadata: 400 before anything is written.
    let g = format!("{r}/m/rejected.txt");
    for (header, value, message) in [
        (
            "x-metadata-k",
            "tab\there",
            "invalid metadata: metadata value for key \"k\" contains non-printable-ASCII byte 0x09 at offset 3",
        ),
        ("x-metadata-big", &*"v".repeat(4096).leak(), "invalid metadata: total metadata size 4108 exceeds 4096 bytes"),
    ] {
        let (status, v) = upload(g.clone(), vec![(header, value)], "x").await;
        assert_eq!((status, v["code"].as_u64()), (StatusCode::BAD_REQUEST, Some(400)), "{v}");
        assert_eq!(v["message"], message);
    }
    assert!(!Path::new(&g).exists());
}

/// One WatchDir stream read as JSON values (`start`, `filesystem`, `keepalive`, or the end).
struct RawWatch(EventStream);

impl RawWatch {
    async fn open(envd: &TestEnvd, msg: Value) -> Self {
        let mut w = RawWatch(envd.stream("/filesystem.Filesystem/WatchDir", msg, &[]).await);
        let first = w.next().await;
        assert!(first.get("start").is_some(), "{first}");
        w
    }

    async fn next(&mut self) -> Value {
        let env = self.0.envelope().await.expect("the stream ended");
        let v: Value = serde_json::from_slice(&env.payload).unwrap();
        if env.is_end_stream() {
            json!({"end": v})
        } else {
            v
        }
    }

    /// File-system events until one named `name` of type `ty` (`EVENT_TYPE_…`), which is last.
    async fn until(&mut self, name: &str, ty: &str) -> Vec<Value> {
        let mut seen = Vec::new();
        loop {
            let v = self.next().await;
            if v.get("keepalive").is_some() {
                continue;
            }
            let ev = v
                .get("filesystem")
                .unwrap_or_else(|| panic!("waiting for {ty} {name}: got {v} after {seen:?}"))
                .clone();
            let hit = ev["name"] == name && ev["type"] == ty;
            seen.push(ev);
            if hit {
                return seen;
            }
        }
    }
}

/// `includeEntry` (envd 0.6.3): create, write and chmod events carry the entry; remove and rename
/// never do. `allowNetworkMounts` (0.6.4) is taken, and changes nothing on a local directory.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn envd_watch_events_carry_entries_when_asked() {
    let _inotify = INOTIFY.lock().await;
    let envd = start_envd().await;
    let root = envd.tmp().join("we");
    std::fs::create_dir(&root).unwrap();
    let r = root.to_str().unwrap();
    let mut w = RawWatch::open(&envd, json!({"path": r, "includeEntry": true, "allowNetworkMounts": true})).await;
    let mut plain = RawWatch::open(&envd, json!({"path": r})).await;

    let (status, _, body) = envd
        .call(
            "POST",
            &format!("/files?path={r}/a.txt"),
            &[("content-type", "application/octet-stream"), ("x-metadata-k", "v")],
            b"hello".to_vec(),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{}", String::from_utf8_lossy(&body));
    let seen = w.until("a.txt", "EVENT_TYPE_WRITE").await;
    assert_eq!(seen[0]["type"], "EVENT_TYPE_CREATE", "{seen:?}");
    for ev in &seen {
        let e = &ev["entry"];
        assert_eq!(
            (e["name"].as_str(), e["path"].as_str(), e["type"].as_str()),
            (Some("a.txt"), Some(&*format!("{r}/a.txt")), Some("FILE_TYPE_FILE")),
            "{ev}"
        );
    }
    // The entry is read when the event is handled: the whole file and its metadata (the upload's
    // own chown and xattrs are chmod events before ours).
    std::fs::set_permissions(root.join("a.txt"), std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    let chmod = loop {
        let ev = w.until("a.txt", "EVENT_TYPE_CHMOD").await.pop().unwrap();
        if ev["entry"]["permissions"] == "-rw-------" {
            break ev;
        }
    };
    assert_eq!(
        (chmod["entry"]["size"].as_str(), &chmod["entry"]["metadata"]),
        (Some("5"), &json!({"k": "v"})),
        "{chmod}"
    );
    std::fs::create_dir(root.join("sub")).unwrap();
    let sub = w.until("sub", "EVENT_TYPE_CREATE").await.pop().unwrap();
    assert_eq!(sub["entry"]["type"], "FILE_TYPE_DIRECTORY", "{sub}");
    // Gone from the path: no entry, even when something is at the path again.
    std::fs::rename(root.join("a.txt"), root.join("b.txt")).unwrap();
    std::fs::write(root.join("a.txt"), "new").unwrap();
    let seen = w.until("a.txt", "EVENT_TYPE_WRITE").await;
    let rename = seen.iter().find(|e| e["type"] == "EVENT_TYPE_RENAME").unwrap_or_else(|| panic!("{seen:?}"));
    assert!(rename.get("entry").is_none(), "{rename}");
    std::fs::remove_file(root.join("b.txt")).unwrap();
    let removed = w.until("b.txt", "EVENT_TYPE_REMOVE").await.pop().unwrap();
    assert!(removed.get("entry").is_none(), "{removed}");

    // Without includeEntry, no event has one.
    let seen = plain.until("b.txt", "EVENT_TYPE_REMOVE").await;
    assert!(seen.len() >= 8 && seen.iter().all(|e| e.get("entry").is_none()), "{seen:?}");
}

/// The polling watchers (CreateWatcher, GetWatcherEvents, RemoveWatcher) of the sync Python SDK.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn envd_polling_watchers() {
    let _inotify = INOTIFY.lock().await;
    let before = inotify_fds();
    let envd = start_envd().await;
    let root = envd.tmp().join("pw");
    std::fs::create_dir(&root).unwrap();
    let r = root.to_str().unwrap();
    let fs = |m: &str| format!("/filesystem.Filesystem/{m}");

    let (status, v) =
        envd.unary(&fs("CreateWatcher"), json!({"path": r, "recursive": true, "includeEntry": true})).await;
    assert_eq!(status, StatusCode::OK, "{v}");
    let id = v["watcherId"].as_str().unwrap().to_string();
    assert!(id.starts_with('w') && id.len() == 21, "{id}");
    assert_eq!(inotify_fds(), before + 1);
    let events = |id: String| {
        let envd = &envd;
        async move {
            let (status, v) = envd.unary("/filesystem.Filesystem/GetWatcherEvents", json!({"watcherId": id})).await;
            (status, v)
        }
    };
    // Nothing yet: an empty answer.
    assert_eq!(events(id.clone()).await, (StatusCode::OK, json!({})));

    // Polls until an event named `name` of type `ty` came; returns every event got.
    let poll_until = |name: &'static str, ty: &'static str| {
        let (events, id) = (&events, id.clone());
        async move {
            let mut got = Vec::new();
            let deadline = std::time::Instant::now() + Duration::from_secs(10);
            while !got.iter().any(|e: &Value| e["name"] == name && e["type"] == ty) {
                assert!(std::time::Instant::now() < deadline, "waiting for {ty} {name}: {got:?}");
                let (status, v) = events(id.clone()).await;
                assert_eq!(status, StatusCode::OK, "{v}");
                got.extend(v["events"].as_array().cloned().unwrap_or_default());
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            got
        }
    };
    std::fs::create_dir(root.join("d")).unwrap();
    let got = poll_until("d", "EVENT_TYPE_CREATE").await;
    assert_eq!(got[0]["entry"]["path"], format!("{r}/d"), "{got:?}");
    // Recursive: in the new directory too, names relative to the watched one.
    std::fs::write(root.join("d/f.txt"), "x").unwrap();
    std::fs::remove_file(root.join("d/f.txt")).unwrap();
    let got = poll_until("d/f.txt", "EVENT_TYPE_REMOVE").await;
    assert_eq!((&got[0]["name"], &got[0]["type"]), (&json!("d/f.txt"), &json!("EVENT_TYPE_CREATE")), "{got:?}");
    // Handed out once: the next call has only what happened since.
    assert_eq!(events(id.clone()).await, (StatusCode::OK, json!({})));

    // Binary protobuf, as the Python SDK speaks it.
    std::fs::write(root.join("p"), "x").unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let req = sandbank_protocol::filesystem::WatcherId { watcher_id: id.clone() }.encode_to_vec();
    let (status, _, bytes) =
        envd.call("POST", &fs("GetWatcherEvents"), &[("content-type", "application/proto")], req.clone()).await;
    assert_eq!(status, StatusCode::OK);
    let resp = sandbank_protocol::filesystem::GetWatcherEventsResponse::decode(bytes).unwrap();
    assert!(
        resp.events.iter().any(|e| e.name == "p" && e.entry.as_ref().is_some_and(|e| e.name == "p")),
        "{:?}",
        resp.events
    );

    // Removed: the descriptor is closed (by the aborted pump task, as it is dropped: a moment
    // later), and the id is unknown from then on, as is any other.
    let (status, v) = envd.unary(&fs("RemoveWatcher"), json!({"watcherId": id})).await;
    assert_eq!((status, v), (StatusCode::OK, json!({})));
    let closed = async {
        while inotify_fds() != before {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(10), closed).await.expect("RemoveWatcher closes the descriptor");
    for method in ["GetWatcherEvents", "RemoveWatcher"] {
        let (status, v) = envd.unary(&fs(method), json!({"watcherId": id})).await;
        assert_eq!((status, v["code"].as_str()), (StatusCode::NOT_FOUND, Some("not_found")), "{method}");
        assert_eq!(v["message"], format!("watcher with id {id} not found"));
    }
    // What WatchDir refuses, CreateWatcher refuses.
    let (status, v) = envd.unary(&fs("CreateWatcher"), json!({"path": format!("{r}/nope")})).await;
    assert_eq!((status, v["code"].as_str()), (StatusCode::NOT_FOUND, Some("not_found")), "{v}");
    std::fs::write(root.join("file"), "x").unwrap();
    let (status, v) = envd.unary(&fs("CreateWatcher"), json!({"path": format!("{r}/file")})).await;
    assert_eq!((status, v["code"].as_str()), (StatusCode::BAD_REQUEST, Some("invalid_argument")), "{v}");

    // Watchers end with their envd.
    for _ in 0..2 {
        let (status, v) = envd.unary(&fs("CreateWatcher"), json!({"path": r})).await;
        assert_eq!(status, StatusCode::OK, "{v}");
    }
    assert_eq!(inotify_fds(), before + 2);
    drop(envd);
    let gone = async {
        while inotify_fds() != before {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(10), gone).await.expect("the watchers are closed with their envd");
}

/// Past its bound, a polling watcher fails for good instead of silently dropping events.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn envd_polling_watcher_fails_past_its_bound() {
    let _inotify = INOTIFY.lock().await;
    let before = inotify_fds();
    let envd = start_envd_with(10).await;
    let root = envd.tmp().join("bound");
    std::fs::create_dir(&root).unwrap();
    let (status, v) = envd.unary("/filesystem.Filesystem/CreateWatcher", json!({"path": root})).await;
    assert_eq!(status, StatusCode::OK, "{v}");
    let id = v["watcherId"].clone();
    let get = || envd.unary("/filesystem.Filesystem/GetWatcherEvents", json!({"watcherId": id}));
    for i in 0..10 {
        std::fs::create_dir(root.join(i.to_string())).unwrap();
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (status, v) = get().await;
    assert_eq!((status, v["events"].as_array().map(Vec::len)), (StatusCode::OK, Some(10)), "10 fit: {v}");
    for i in 10..21 {
        std::fs::create_dir(root.join(i.to_string())).unwrap();
    }
    // The watcher stops reading: its descriptor is closed.
    let closed = async {
        while inotify_fds() != before {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(10), closed).await.expect("the overflowing watcher is closed");
    for _ in 0..2 {
        let (status, v) = get().await;
        assert_eq!((status, v["code"].as_str()), (StatusCode::INTERNAL_SERVER_ERROR, Some("internal")), "{v}");
        assert!(v["message"].as_str().unwrap().contains("more than 10 events since the last GetWatcherEvents"), "{v}");
    }
    let (status, _) = envd.unary("/filesystem.Filesystem/RemoveWatcher", json!({"watcherId": id})).await;
    assert_eq!(status, StatusCode::OK);
}

/// A FUSE file system of one empty directory, served by a thread from `/dev/fuse` (just INIT,
/// GETATTR and STATFS): a mount whose `statfs` says FUSE, as a network mount's says NFS or CIFS.
struct FuseMount {
    dir: PathBuf,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl FuseMount {
    fn new(dir: PathBuf) -> std::io::Result<Self> {
        use std::os::fd::AsRawFd;
        let dev = std::fs::OpenOptions::new().read(true).write(true).open("/dev/fuse")?;
        std::fs::create_dir_all(&dir)?;
        let opts = format!("fd={},rootmode=40000,user_id=0,group_id=0", dev.as_raw_fd());
        nix::mount::mount(
            Some("sandbank-test"),
            &dir,
            Some("fuse"),
            nix::mount::MsFlags::MS_NOSUID | nix::mount::MsFlags::MS_NODEV,
            Some(opts.as_str()),
        )?;
        let thread = std::thread::spawn(move || Self::serve(dev));
        Ok(Self { dir, thread: Some(thread) })
    }

    fn serve(mut dev: std::fs::File) {
        const GETATTR: u32 = 3;
        const STATFS: u32 = 17;
        const INIT: u32 = 26;
        let mut buf = vec![0u8; (1 << 20) + 4096];
        // Until the mount is gone (ENODEV).
        while let Ok(n) = dev.read(&mut buf) {
            if n < 40 {
                continue;
            }
            let opcode = u32::from_ne_bytes(buf[4..8].try_into().unwrap());
            let unique = u64::from_ne_bytes(buf[8..16].try_into().unwrap());
            let (error, body): (i32, Vec<u8>) = match opcode {
                INIT => {
                    // fuse_init_out: major 7, minor 31, max_readahead, flags, …, max_write.
                    let mut out = vec![0u8; 64];
                    out[0..4].copy_from_slice(&7u32.to_ne_bytes());
                    out[4..8].copy_from_slice(&31u32.to_ne_bytes());
                    out[16..20].copy_from_slice(&(1u32 << 20).to_ne_bytes());
                    (0, out)
                }
                GETATTR => {
                    // fuse_attr_out: valid for 0 s; attr: ino 1, mode drwxr-xr-x, nlink 2.
                    let mut out = vec![0u8; 104];
                    out[16..24].copy_from_slice(&1u64.to_ne_bytes());
                    out[76..80].copy_from_slice(&(libc::S_IFDIR | 0o755).to_ne_bytes());
                    out[80..84].copy_from_slice(&2u32.to_ne_bytes());
                    (0, out)
                }
                STATFS => (0, vec![0u8; 80]),
                _ => (-libc::ENOSYS, Vec::new()),
            };
            let mut reply = Vec::with_capacity(16 + body.len());
            reply.extend_from_slice(&(16 + body.len() as u32).to_ne_bytes());
            reply.extend_from_slice(&error.to_ne_bytes());
            reply.extend_from_slice(&unique.to_ne_bytes());
            reply.extend_from_slice(&body);
            if dev.write_all(&reply).is_err() {
                return;
            }
        }
    }
}

impl Drop for FuseMount {
    fn drop(&mut self) {
        let _ = nix::mount::umount2(&self.dir, nix::mount::MntFlags::MNT_DETACH);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// `allowNetworkMounts` (envd 0.6.4): a directory on a network file system (here FUSE, which envd
/// counts as one) is refused by WatchDir and CreateWatcher unless the request allows it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn envd_watches_network_mounts_only_when_allowed() {
    let _inotify = INOTIFY.lock().await;
    let envd = start_envd().await;
    let mnt = envd.tmp().join("fuse");
    let fuse = match FuseMount::new(mnt.clone()) {
        Ok(f) => f,
        Err(e) => {
            eprintln!("skipped: no FUSE mount here ({e})");
            return;
        }
    };
    assert_eq!(rustix::fs::statfs(&mnt).unwrap().f_type, 0x6573_5546, "a FUSE mount");
    let m = mnt.to_str().unwrap();
    let refused = format!("cannot watch path on network filesystem: {m}");

    let mut w = WatchStream::open(&envd, &mnt, false, &[]).await;
    let env = w.0.envelope().await.unwrap();
    assert!(
        env.is_end_stream(),
        "the watch of a FUSE mount was not refused: {}",
        String::from_utf8_lossy(&env.payload)
    );
    let e = serde_json::from_slice::<EndStream>(&env.payload).unwrap().error.unwrap();
    assert_eq!((e.code.as_str(), e.message.as_str()), ("invalid_argument", refused.as_str()));
    let (status, v) = envd.unary("/filesystem.Filesystem/CreateWatcher", json!({"path": m})).await;
    assert_eq!(
        (status, v["code"].as_str(), v["message"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_argument"), Some(refused.as_str()))
    );

    let w = RawWatch::open(&envd, json!({"path": m, "allowNetworkMounts": true})).await;
    drop(w);
    let (status, v) =
        envd.unary("/filesystem.Filesystem/CreateWatcher", json!({"path": m, "allowNetworkMounts": true})).await;
    assert_eq!(status, StatusCode::OK, "{v}");
    let (status, _) = envd.unary("/filesystem.Filesystem/RemoveWatcher", json!({"watcherId": v["watcherId"]})).await;
    assert_eq!(status, StatusCode::OK);
    drop(fuse);
}
