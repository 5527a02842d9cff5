//! Every malformed input gets a 4xx JSON answer: malformed bodies, headers, paths and queries
//! sent to every REST route and every envd route of the real server (with a real sandbox behind
//! the envd routes). Each answer must come within a few seconds, be a 4xx, and carry a JSON
//! error: `{code: <status>, message}` for the REST API and `/files`, the Connect error
//! `{code: "invalid_argument" | …, message}` for envd's RPCs (or, for a streaming RPC that got
//! as far as starting, an HTTP 200 whose end-of-stream message holds such an error). Never a
//! 5xx, never an `internal`/`unknown` Connect code. Afterwards the server and the sandbox still
//! serve. Needs root (the engine).
//!
//! Two kinds of answers are allowed by contract rather than by this rule:
//! - envd traffic naming a sandbox that does not run is a 502 JSON (the SDKs' `isRunning` maps
//!   502 to `false`; the cloud's proxy does the same);
//! - requests that are not HTTP/1.1 at all (a garbage request line, a 100 KB URI, a
//!   non-numeric Content-Length) are refused by hyper's parser before any handler runs: a 4xx
//!   with an empty body and `connection: close`. They are checked for a 4xx and no hang.

mod common;
use common::rng::XorShift;

use bytes::Bytes;
use common::*;
use http_body_util::Full;
use hyper::StatusCode;
use sandbank_protocol::connect::{encode_envelope, EnvelopeDecoder, FLAG_COMPRESSED};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// No answer may take longer (the slowest legitimate one here is a snapshot of a small sandbox).
const ANSWER_WITHIN: Duration = Duration::from_secs(10);

/// How an error body must look.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Shape {
    /// REST and `/files`: 4xx, `{"code": <status>, "message": "…"}`.
    Rest,
    /// An envd RPC: a 4xx with `{"code": "<connect code>", "message"}`, or for a stream an
    /// HTTP 200 with an end-of-stream error of such a code.
    Connect,
    /// envd traffic for a sandbox that does not run: 502 `{"code": 502, "message"}`.
    NotRunning,
    /// A stream whose odd headers are ignored: HTTP 200, a `start` event, an end-of-stream.
    StreamOk,
}

struct Case {
    class: &'static str,
    method: &'static str,
    path: String,
    headers: Vec<(&'static str, Vec<u8>)>,
    body: Vec<u8>,
    shape: Shape,
}

impl Case {
    fn new(class: &'static str, method: &'static str, path: impl Into<String>, shape: Shape) -> Self {
        Case { class, method, path: path.into(), headers: Vec::new(), body: Vec::new(), shape }
    }
    fn header(mut self, name: &'static str, value: impl Into<Vec<u8>>) -> Self {
        self.headers.push((name, value.into()));
        self
    }
    fn body(mut self, body: impl Into<Vec<u8>>) -> Self {
        self.body = body.into();
        self
    }
    /// A REST call with the key and a JSON content type.
    fn rest(class: &'static str, method: &'static str, path: impl Into<String>) -> Self {
        Case::new(class, method, path, Shape::Rest).header("x-api-key", KEY).header("content-type", "application/json")
    }
    /// A unary envd RPC on sandbox `id`.
    fn unary(class: &'static str, id: &str, rpc: &str) -> Self {
        Case::new(class, "POST", format!("/{rpc}"), Shape::Connect)
            .header("e2b-sandbox-id", id.to_string())
            .header("content-type", "application/json")
            .header("connect-protocol-version", "1")
    }
    /// A server-streaming envd RPC on sandbox `id` (the body must be an envelope).
    fn stream(class: &'static str, id: &str, rpc: &str) -> Self {
        Case::new(class, "POST", format!("/{rpc}"), Shape::Connect)
            .header("e2b-sandbox-id", id.to_string())
            .header("content-type", "application/connect+json")
            .header("connect-protocol-version", "1")
    }
    fn describe(&self) -> String {
        let body = String::from_utf8_lossy(&self.body);
        let body: String = body.chars().take(80).collect();
        format!("[{}] {} {} {:?}", self.class, self.method, self.path.chars().take(100).collect::<String>(), body)
    }
}

/// Sends one case; `Err` says what was wrong with the answer.
/// Sends a case and reads the answer; `Err` when there is none.
async fn fetch(a: SocketAddr, case: &Case) -> Result<Res, String> {
    if case.body.len() > 1 << 20 {
        return fetch_raw(a, case).await;
    }
    let mut b = req(a, case.method, &case.path);
    for (k, v) in &case.headers {
        b = b.header(*k, hyper::header::HeaderValue::from_bytes(v).unwrap());
    }
    let request = b.body(Full::new(Bytes::from(case.body.clone()))).map_err(|e| format!("building: {e}"))?;
    try_send(a, request).await
}

/// For bodies the server refuses unread (over its limit): writes on a raw socket while reading
/// the answer, which may come (and the connection close) long before the body is written.
async fn fetch_raw(a: SocketAddr, case: &Case) -> Result<Res, String> {
    let mut head =
        format!("{} {} HTTP/1.1\r\nhost: {a}\r\ncontent-length: {}\r\n", case.method, case.path, case.body.len());
    for (k, v) in &case.headers {
        head.push_str(&format!("{k}: {}\r\n", String::from_utf8_lossy(v)));
    }
    head.push_str("\r\n");
    let mut sock = tokio::net::TcpStream::connect(a).await.map_err(|e| e.to_string())?;
    let (mut rd, mut wr) = sock.split();
    let writer = async {
        let _ = wr.write_all(head.as_bytes()).await;
        let _ = wr.write_all(&case.body).await;
    };
    let reader = async {
        let mut buf = Vec::new();
        let mut tmp = [0u8; 4096];
        loop {
            let n = rd.read(&mut tmp).await.unwrap_or(0);
            if n == 0 {
                return buf;
            }
            buf.extend_from_slice(&tmp[..n]);
            if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                let headers = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
                let len = headers
                    .lines()
                    .find_map(|l| l.strip_prefix("content-length:"))
                    .and_then(|v| v.trim().parse::<usize>().ok());
                if len.is_some_and(|len| buf.len() >= end + 4 + len) {
                    return buf;
                }
            }
        }
    };
    let (_, buf) = tokio::join!(writer, reader);
    let end = buf
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| format!("no response: {:?}", String::from_utf8_lossy(&buf)))?;
    let head = String::from_utf8_lossy(&buf[..end]).to_string();
    let status: u16 =
        head.split(' ').nth(1).and_then(|s| s.parse().ok()).ok_or_else(|| format!("bad status line: {head:?}"))?;
    let mut headers = hyper::HeaderMap::new();
    for line in head.lines().skip(1) {
        if let Some((k, v)) = line.split_once(':') {
            if let (Ok(k), Ok(v)) = (k.trim().parse::<hyper::header::HeaderName>(), v.trim().parse()) {
                headers.insert(k, v);
            }
        }
    }
    Ok(Res { status: StatusCode::from_u16(status).unwrap(), headers, body: Bytes::copy_from_slice(&buf[end + 4..]) })
}

/// Sends one case; `Err` says what was wrong with the answer.
async fn check(a: SocketAddr, case: &Case) -> Result<(), String> {
    let t0 = Instant::now();
    let r = tokio::time::timeout(ANSWER_WITHIN, fetch(a, case))
        .await
        .map_err(|_| format!("no answer within {ANSWER_WITHIN:?}"))??;
    let took = t0.elapsed();
    let text = String::from_utf8_lossy(&r.body).chars().take(300).collect::<String>();
    let status = r.status.as_u16();
    let ct = r.header("content-type").unwrap_or_default();
    match case.shape {
        Shape::Rest | Shape::NotRunning => {
            let ok_status = if case.shape == Shape::Rest { (400..500).contains(&status) } else { status == 502 };
            if !ok_status {
                return Err(format!("status {status}: {text}"));
            }
            let v: serde_json::Value =
                serde_json::from_slice(&r.body).map_err(|_| format!("{status}, not JSON: {text:?}"))?;
            if ct != "application/json" || v["code"] != status || !v["message"].is_string() {
                return Err(format!("{status} {ct}: not a {{code, message}} error: {text}"));
            }
        }
        Shape::StreamOk => {
            let mut dec = EnvelopeDecoder::default();
            dec.push(&r.body);
            let mut envs = Vec::new();
            while let Ok(Some(env)) = dec.next() {
                envs.push(env);
            }
            let whole = envs.first().is_some_and(|e| e.payload.windows(7).any(|w| w == b"\"start\""))
                && envs.last().is_some_and(|e| e.is_end_stream());
            if status != 200 || ct != "application/connect+json" || !whole {
                return Err(format!("status {status} {ct}: not a whole stream: {text:?}"));
            }
        }
        Shape::Connect if status == 200 => {
            // A stream that started: the last envelope must be an end-of-stream error.
            if ct != "application/connect+json" {
                return Err(format!("200 with content type {ct:?}: {text}"));
            }
            let mut dec = EnvelopeDecoder::default();
            dec.push(&r.body);
            let mut last = None;
            while let Some(env) = dec.next().map_err(|e| format!("bad stream: {e}"))? {
                last = Some(env);
            }
            let end = last.filter(|e| e.is_end_stream()).ok_or_else(|| format!("no end-of-stream: {text}"))?;
            let v: serde_json::Value =
                serde_json::from_slice(&end.payload).map_err(|e| format!("end-of-stream: {e}"))?;
            let code = v["error"]["code"].as_str().unwrap_or("");
            if !client_code(code) {
                return Err(format!("stream ended with {v}"));
            }
        }
        Shape::Connect => {
            if !(400..500).contains(&status) {
                return Err(format!("status {status}: {text}"));
            }
            let v: serde_json::Value =
                serde_json::from_slice(&r.body).map_err(|_| format!("{status}, not JSON: {text:?}"))?;
            let code = v["code"].as_str().unwrap_or("");
            if ct != "application/json" || !client_code(code) || !v["message"].is_string() {
                return Err(format!("{status} {ct}: not a Connect client error: {text}"));
            }
        }
    }
    if took > ANSWER_WITHIN / 2 {
        return Err(format!("answered, but only after {took:?}"));
    }
    Ok(())
}

/// Connect codes that blame the request, not the server.
fn client_code(code: &str) -> bool {
    matches!(
        code,
        "invalid_argument"
            | "not_found"
            | "already_exists"
            | "permission_denied"
            | "failed_precondition"
            | "out_of_range"
            | "unauthenticated"
            | "unimplemented"
            | "resource_exhausted"
    )
}

/// A JSON body of 80 000 unknown fields and one bad one (`bad`), under the 1 MB limit.
fn many_fields(bad: &str) -> Vec<u8> {
    let mut s = String::from("{");
    for i in 0..80_000 {
        s.push_str(&format!("\"f{i}\":0,"));
    }
    s.push_str(bad);
    s.push('}');
    s.into_bytes()
}

/// Bodies no JSON route accepts.
fn bad_json_bodies() -> Vec<(&'static str, Vec<u8>)> {
    vec![
        ("bad JSON", b"{\"timeout\":".to_vec()),
        ("bad JSON", b"{,}".to_vec()),
        ("bad JSON", b"{'timeout':5}".to_vec()),
        ("bad JSON", b"\xef\xbb\xbf{}".to_vec()),       // a byte-order mark
        ("bad JSON", "[".repeat(100_000).into_bytes()), // deeper than any parser should go
        ("not an object", b"[]".to_vec()),
        ("not an object", b"\"templateID\"".to_vec()),
        ("not an object", b"null".to_vec()),
        ("not an object", b"5".to_vec()),
        ("invalid UTF-8", b"{\"templateID\":\"\xff\xfe\",\"timeout\":\"\xc3\x28\",\"name\":\"\xff\"}".to_vec()),
        ("oversized body", [b"{\"x\":\"".as_slice(), &vec![b'a'; 2 << 20], b"\"}"].concat()),
    ]
}

/// A JS-style `encodeURIComponent` (for tokens in query strings).
fn uri_component(s: &str) -> String {
    percent_encoding::utf8_percent_encode(s, percent_encoding::NON_ALPHANUMERIC).to_string()
}

fn b64url(s: &str) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::URL_SAFE.encode(s)
}

fn rest_cases(id: &str) -> Vec<Case> {
    let mut cases = Vec::new();
    // Routes with a JSON body: (path, a body that is well-formed JSON but has one bad field).
    let body_routes: Vec<(String, &str, bool)> = vec![
        ("/sandboxes".into(), r#""templateID":5"#, true),
        ("/v2/sandboxes".into(), r#""templateID":"base","envVars":[1]"#, true),
        (format!("/sandboxes/{id}/timeout"), r#""timeout":"soon""#, true),
        (format!("/sandboxes/{id}/connect"), r#""timeout":true"#, true),
        (format!("/v2/sandboxes/{id}/connect"), r#""timeout":{}"#, true),
        // An empty body asks for an unnamed snapshot: it is not malformed there.
        (format!("/sandboxes/{id}/snapshots"), r#""name":5"#, false),
    ];
    for (path, bad_field, empty_is_bad) in &body_routes {
        for (class, body) in bad_json_bodies() {
            cases.push(Case::rest(class, "POST", path.clone()).body(body));
        }
        cases.push(Case::rest("wrong types", "POST", path.clone()).body(format!("{{{bad_field}}}")));
        cases.push(Case::rest("many fields", "POST", path.clone()).body(many_fields(bad_field)));
        if *empty_is_bad {
            cases.push(Case::rest("empty body", "POST", path.clone()));
        }
        // A wrong content type does not make JSON of a form or a multipart body.
        let form = Case::new("wrong content type", "POST", path.clone(), Shape::Rest)
            .header("x-api-key", KEY)
            .header("content-type", "application/x-www-form-urlencoded")
            .body("templateID=base&timeout=5&name=x");
        cases.push(form);
        let multipart = Case::new("wrong content type", "POST", path.clone(), Shape::Rest)
            .header("x-api-key", KEY)
            .header("content-type", "multipart/form-data; boundary=XX")
            .body("--XX\r\ncontent-disposition: form-data; name=\"templateID\"\r\n\r\nbase\r\n--XX--\r\n");
        cases.push(multipart);
        cases.push(
            Case::new("wrong content type", "POST", path.clone(), Shape::Rest)
                .header("x-api-key", KEY)
                .header("content-type", "text/plain")
                .body(format!("{{{bad_field}}}")),
        );
    }
    // Timeouts: too large, negative, fractional, out of every integer range.
    let timeout_routes = [
        ("/sandboxes".to_string(), r#""templateID":"base","#),
        (format!("/sandboxes/{id}/timeout"), ""),
        (format!("/sandboxes/{id}/connect"), ""),
        (format!("/v2/sandboxes/{id}/connect"), ""),
    ];
    for (path, prefix) in &timeout_routes {
        for (class, t) in [
            ("huge numbers", "1e400"),
            ("huge numbers", "18446744073709551616"),
            ("huge numbers", "18446744073709551615"),
            ("huge numbers", "315360001"),
            ("huge numbers", "99999999999999999999999999999999"),
            ("negative timeouts", "-1"),
            ("negative timeouts", "-9223372036854775808"),
            ("negative timeouts", "-0.0"),
            ("negative timeouts", "1.5"),
            ("negative timeouts", "NaN"),
        ] {
            cases.push(Case::rest(class, "POST", path.clone()).body(format!("{{{prefix}\"timeout\":{t}}}")));
        }
    }
    // Bad sandbox IDs and bad percent-encoding in every `{id}` route.
    let long = "a".repeat(10_000);
    for (class, bad) in [
        ("bad sandbox IDs", "NOT_AN_ID"),
        ("bad sandbox IDs", "zzzzzzzzzzzzzzzzzzzz"),
        ("bad sandbox IDs", long.as_str()),
        ("bad sandbox IDs", ".."),
        ("bad sandbox IDs", "..%2F..%2Fetc%2Fpasswd"),
        ("bad sandbox IDs", "abc%00def"),
        ("bad sandbox IDs", "%20"),
        ("bad percent-encoding", "%ff%fe"),
        ("bad percent-encoding", "%ZZ"),
        ("bad percent-encoding", "%"),
        ("bad percent-encoding", "%c3%28"),
    ] {
        for (method, path, body) in [
            ("GET", format!("/sandboxes/{bad}"), ""),
            ("DELETE", format!("/sandboxes/{bad}"), ""),
            ("POST", format!("/sandboxes/{bad}/timeout"), r#"{"timeout":5}"#),
            ("POST", format!("/sandboxes/{bad}/connect"), r#"{"timeout":5}"#),
            ("POST", format!("/v2/sandboxes/{bad}/connect"), r#"{"timeout":5}"#),
            ("POST", format!("/sandboxes/{bad}/pause"), ""),
            ("POST", format!("/sandboxes/{bad}/snapshots"), "{}"),
            ("DELETE", format!("/templates/{bad}"), ""),
        ] {
            cases.push(Case::rest(class, method, path).body(body));
        }
    }
    // Query strings of the lists.
    let year_9999 = uri_component(&b64url("9999-12-31T23:59:59.999999999Z__abc"));
    for (class, q) in [
        ("bad percent-encoding", "limit=%ZZ".to_string()),
        ("bad percent-encoding", "nextToken=%ff".to_string()),
        ("bad percent-encoding", "%ff=1".to_string()),
        ("bad percent-encoding", "limit=%".to_string()),
        ("bad limits", "limit=-1".to_string()),
        ("bad limits", "limit=0".to_string()),
        ("bad limits", "limit=101".to_string()),
        ("bad limits", "limit=1e2".to_string()),
        ("bad limits", "limit=99999999999999999999".to_string()),
        ("bad limits", "limit=".to_string()),
        ("bad pagination tokens", "nextToken=garbage!!".to_string()),
        ("bad pagination tokens", format!("nextToken={}", uri_component(&b64url("no-separator")))),
        ("bad pagination tokens", format!("nextToken={}", uri_component(&b64url("yesterday__abc")))),
        ("bad pagination tokens", format!("nextToken={}", uri_component(&b64url("2026-01-01T00:00:00Z__")))),
        ("bad pagination tokens", format!("nextToken={}", uri_component(&b64url("2026-01-01T00:00:00Z__a b")))),
        ("bad pagination tokens", format!("nextToken={}", uri_component("\u{1F600}"))),
    ] {
        for path in ["/v2/sandboxes", "/snapshots"] {
            cases.push(Case::rest(class, "GET", format!("{path}?{q}")));
        }
    }
    // A well-formed token past what nanosecond timestamps hold: only the snapshot list keys on those.
    cases.push(Case::rest("bad pagination tokens", "GET", format!("/snapshots?nextToken={year_9999}")));
    for q in ["state=asleep", "startedAfter=yesterday", "metadata=novalue", "metadata=%25ff", "metadata=%ZZ"] {
        cases.push(Case::rest("bad filters", "GET", format!("/v2/sandboxes?{q}")));
        cases.push(Case::rest("bad filters", "GET", format!("/sandboxes?{q}")));
    }
    cases.push(Case::rest("bad filters", "GET", "/v2/sandboxes?order=sideways"));
    // Headers: keys that are not keys.
    for value in [b"\xff\xfe".to_vec(), b"".to_vec(), vec![b'k'; 8000], format!("{KEY}x").into_bytes()] {
        let c = Case::new("bad API keys", "GET", "/v2/sandboxes", Shape::Rest).header("x-api-key", value);
        cases.push(c);
    }
    for value in ["Bearer", "Bearer ", "Basic aW50ZWdyYXRpb24tdGVzdC1rZXk=", "bearer\u{a0}x"] {
        cases.push(Case::new("bad API keys", "GET", "/v2/sandboxes", Shape::Rest).header("authorization", value));
    }
    // Unknown routes and methods.
    cases.push(Case::rest("unknown routes", "GET", "/nope"));
    cases.push(Case::rest("unknown routes", "PATCH", "/sandboxes"));
    cases.push(Case::rest("unknown routes", "PUT", format!("/sandboxes/{id}")));
    cases.push(Case::rest("unknown routes", "GET", format!("/sandboxes/{id}/snapshots")));
    cases.push(Case::rest("unknown routes", "OPTIONS", "/snapshots"));
    cases
}

fn envd_cases(id: &str) -> Vec<Case> {
    let mut cases = Vec::new();
    let unary = [
        "process.Process/List",
        "process.Process/SendInput",
        "process.Process/SendSignal",
        "process.Process/CloseStdin",
        "process.Process/Update",
        "filesystem.Filesystem/Stat",
        "filesystem.Filesystem/MakeDir",
        "filesystem.Filesystem/Move",
        "filesystem.Filesystem/ListDir",
        "filesystem.Filesystem/Remove",
    ];
    let streams = ["process.Process/Start", "process.Process/Connect", "filesystem.Filesystem/WatchDir"];
    for rpc in unary {
        for (class, body) in bad_json_bodies() {
            // `[]`, `5`, … are not messages either; the oversized body is fine for envd (64 MB).
            if class != "oversized body" {
                cases.push(Case::unary(class, id, rpc).body(body));
            }
        }
        for (ct, body) in [
            ("text/plain", b"{}".to_vec()),
            ("application/x-www-form-urlencoded", b"path=/tmp".to_vec()),
            ("application/connect+json", encode_envelope(0, b"{}").to_vec()),
            ("application/proto", vec![0xff, 0xff, 0xff]),
            ("application/proto", vec![0x0a, 0x10, b'/']), // a field longer than the message
        ] {
            let c = Case::new("wrong content type", "POST", format!("/{rpc}"), Shape::Connect)
                .header("e2b-sandbox-id", id.to_string())
                .header("content-type", ct)
                .body(body);
            cases.push(c);
        }
        cases.push(Case::unary("bad users", id, rpc).header("authorization", "Basic !!!").body("{}"));
        cases.push(Case::unary("bad users", id, rpc).header("authorization", "Basic Z2hvc3Q6").body("{}"));
        cases.push(Case::unary("bad users", id, rpc).header("authorization", b"Basic \xff".to_vec()).body("{}"));
    }
    // Wrong types and impossible values, per message.
    for (rpc, body) in [
        ("process.Process/SendInput", r#"{"process":{"pid":"x"},"input":{"stdin":"YQ=="}}"#),
        ("process.Process/SendInput", r#"{"process":{"pid":-1},"input":{"stdin":"YQ=="}}"#),
        ("process.Process/SendInput", r#"{"process":{"pid":1},"input":{"stdin":"!!!"}}"#),
        ("process.Process/SendInput", r#"{"process":{"pid":4294967296}}"#),
        ("process.Process/SendInput", r#"{"process":{"pid":999999},"input":{"stdin":"YQ=="}}"#),
        ("process.Process/SendInput", r#"{"process":{},"input":{"stdin":"YQ=="}}"#),
        ("process.Process/SendSignal", r#"{"process":{"pid":1},"signal":"SIGNAL_NOPE"}"#),
        ("process.Process/SendSignal", r#"{"process":{"pid":1},"signal":99999999999}"#),
        ("process.Process/SendSignal", r#"{"process":{"tag":7}}"#),
        ("process.Process/Update", r#"{"process":{"pid":1},"pty":{"size":{"cols":-5,"rows":1e9}}}"#),
        ("process.Process/CloseStdin", r#"{"process":{"pid":0}}"#),
        ("filesystem.Filesystem/Stat", r#"{"path":5}"#),
        ("filesystem.Filesystem/Stat", r#"{"path":"relative/path"}"#), // in the home: not found
        ("filesystem.Filesystem/Stat", r#"{"path":"~nobody/x"}"#),
        ("filesystem.Filesystem/Stat", r#"{"path":""}"#),
        ("filesystem.Filesystem/Stat", r#"{"path":"/tmp/a\u0000b"}"#),
        ("filesystem.Filesystem/MakeDir", r#"{"path":"/tmp/a\u0000b"}"#),
        ("filesystem.Filesystem/Move", r#"{"source":"/tmp/a\u0000b","destination":"/tmp/c"}"#),
        ("filesystem.Filesystem/Move", r#"{"source":"/etc/hostname","destination":"/tmp/\u0000"}"#),
        ("filesystem.Filesystem/Remove", r#"{"path":"/tmp/\u0000"}"#),
        ("filesystem.Filesystem/ListDir", r#"{"path":"/tmp/\u0000"}"#),
        ("filesystem.Filesystem/ListDir", r#"{"path":"/","depth":-1}"#),
        ("filesystem.Filesystem/ListDir", r#"{"path":"/","depth":1e10}"#),
        ("filesystem.Filesystem/ListDir", r#"{"path":"/etc/hostname"}"#),
        ("filesystem.Filesystem/ListDir", &format!(r#"{{"path":"/{}"}}"#, "a".repeat(5000))),
    ] {
        cases.push(Case::unary("wrong types", id, rpc).body(body));
    }
    // Streams: broken envelopes, bad messages, bad headers.
    let start = br#"{"process":{"cmd":"/bin/true"}}"#;
    for rpc in streams {
        for (class, body) in [
            ("truncated Connect envelopes", Vec::new()),
            ("truncated Connect envelopes", vec![0, 0]),
            ("truncated Connect envelopes", encode_envelope(0, start)[..9].to_vec()),
            ("truncated Connect envelopes", [encode_envelope(0, start).to_vec(), vec![0, 0, 0]].concat()),
            (
                "truncated Connect envelopes",
                [encode_envelope(0, start).to_vec(), encode_envelope(0, b"{}").to_vec()].concat(),
            ),
            ("truncated Connect envelopes", vec![0, 0xff, 0xff, 0xff, 0xff]),
            ("truncated Connect envelopes", encode_envelope(FLAG_COMPRESSED, start).to_vec()),
            ("truncated Connect envelopes", start.to_vec()), // JSON without an envelope
            ("bad JSON", encode_envelope(0, b"{\"process\":").to_vec()),
            ("bad JSON", encode_envelope(0, b"[]").to_vec()),
            ("invalid UTF-8", encode_envelope(0, b"{\"path\":\"\xff\",\"process\":{\"cmd\":\"\xff\"}}").to_vec()),
        ] {
            cases.push(Case::stream(class, id, rpc).body(body));
        }
        for ct in ["application/json", "text/plain", "", "application/connect+jsonx"] {
            let mut c = Case::new("wrong content type", "POST", format!("/{rpc}"), Shape::Connect)
                .header("e2b-sandbox-id", id.to_string())
                .body(encode_envelope(0, b"{}").to_vec());
            if !ct.is_empty() {
                c = c.header("content-type", ct);
            }
            cases.push(c);
        }
        cases.push(
            Case::stream("bad users", id, rpc)
                .header("authorization", "Basic Z2hvc3Q6")
                .body(encode_envelope(0, start).to_vec()),
        );
    }
    for (class, rpc, msg) in [
        ("wrong types", "process.Process/Start", r#"{"process":{"cmd":5}}"#),
        ("wrong types", "process.Process/Start", r#"{}"#),
        ("wrong types", "process.Process/Start", r#"{"process":{"cmd":"/no/such/program"}}"#),
        ("wrong types", "process.Process/Start", r#"{"process":{"cmd":"/bin/true","cwd":"/no/such/dir"}}"#),
        ("wrong types", "process.Process/Start", r#"{"process":{"cmd":"/bin/tr\u0000ue"}}"#),
        ("wrong types", "process.Process/Start", r#"{"process":{"cmd":"/bin/true","args":["a\u0000b"]}}"#),
        ("wrong types", "process.Process/Start", r#"{"process":{"cmd":"/bin/true","envs":{"A\u0000":"b"}}}"#),
        ("wrong types", "process.Process/Start", r#"{"process":{"cmd":"/bin/true","cwd":"/tmp\u0000"}}"#),
        ("wrong types", "process.Process/Connect", r#"{"process":{"pid":999999}}"#),
        ("wrong types", "process.Process/Connect", r#"{"process":{}}"#),
        ("wrong types", "filesystem.Filesystem/WatchDir", r#"{"path":"/no/such/dir"}"#),
        ("wrong types", "filesystem.Filesystem/WatchDir", r#"{"path":"relative"}"#),
        ("wrong types", "filesystem.Filesystem/WatchDir", r#"{"path":"/tmp/\u0000"}"#),
        ("wrong types", "filesystem.Filesystem/WatchDir", r#"{"path":"/etc/hostname"}"#),
    ] {
        cases.push(Case::stream(class, id, rpc).body(encode_envelope(0, msg.as_bytes()).to_vec()));
    }
    // Headers a stream reads: deadlines and keepalives out of every range.
    for (name, value) in [
        ("connect-timeout-ms", "18446744073709551615"),
        ("connect-timeout-ms", "99999999999999999999999"),
        ("connect-timeout-ms", "-5"),
        ("keepalive-ping-interval", "18446744073709551615"),
        ("keepalive-ping-interval", "-1"),
    ] {
        // A command that fails at once: the stream ends (with a non-zero exit) right away.
        let body = encode_envelope(0, br#"{"process":{"cmd":"/bin/false"}}"#).to_vec();
        let mut c = Case::stream("bad stream headers", id, "process.Process/Start").header(name, value).body(body);
        c.shape = Shape::StreamOk;
        cases.push(c);
        let c = Case::stream("bad stream headers", id, "filesystem.Filesystem/WatchDir")
            .header(name, value)
            .header("connect-timeout-ms", "1")
            .body(encode_envelope(0, br#"{"path":"/tmp"}"#).to_vec());
        if name != "connect-timeout-ms" {
            cases.push(Case { shape: Shape::StreamOk, ..c });
        }
    }
    // StreamInput is client streaming (unsupported); a wrong content type is still a 4xx.
    cases.push(
        Case::new("wrong content type", "POST", "/process.Process/StreamInput", Shape::Connect)
            .header("e2b-sandbox-id", id.to_string())
            .header("content-type", "text/plain"),
    );
    cases.push(
        Case::new("unknown routes", "GET", "/process.Process/Start", Shape::Connect)
            .header("e2b-sandbox-id", id.to_string()),
    );
    cases.push(
        Case::new("unknown routes", "POST", "/process.Process/Nope", Shape::Connect)
            .header("e2b-sandbox-id", id.to_string()),
    );
    // /files
    let files = |class, method, q: &str| {
        Case::new(class, method, format!("/files{q}"), Shape::Rest).header("e2b-sandbox-id", id.to_string())
    };
    for (class, q) in [
        ("bad paths", ""),
        ("bad paths", "?path="),
        ("bad paths", "?path=~ghost%2Fx"),
        ("bad paths", "?path=%2Ftmp%2F%00x"),
        ("bad paths", "?path=%2Fno%2Fsuch%2Ffile"),
        ("bad paths", "?path=%2Ftmp"),
        ("bad percent-encoding", "?path=%ZZ"),
        ("bad percent-encoding", "?path=%ff%fe"),
        ("bad percent-encoding", "?path=%"),
        ("bad users", "?path=%2Fetc%2Fhostname&username=ghost"),
        ("bad users", "?path=%2Fetc%2Fhostname&username=%00"),
    ] {
        cases.push(files(class, "GET", q));
        // Uploads to a missing directory make it; `%ZZ` and the like are names in the home (a
        // relative path is, as envd has it).
        if !q.contains("no%2Fsuch") && class != "bad percent-encoding" {
            cases.push(files(class, "POST", q).header("content-type", "application/octet-stream").body("x"));
        }
    }
    cases.push(files("bad users", "GET", "?path=%2Fetc%2Fhostname").header("authorization", "Basic !!!"));
    for (ct, enc, body) in [
        ("multipart/form-data", "", b"--x\r\n".to_vec()),
        ("multipart/form-data; boundary=x", "", b"garbage".to_vec()),
        (
            "multipart/form-data; boundary=x",
            "",
            b"--x\r\ncontent-disposition: form-data; name=\"file\"\r\n\r\nabc\r\n--x--\r\n".to_vec(),
        ),
        (
            "multipart/form-data; boundary=x",
            "",
            b"--x\r\ncontent-disposition: form-data; name=\"other\"\r\n\r\nabc\r\n--x--\r\n".to_vec(),
        ),
        ("application/octet-stream", "br", b"x".to_vec()),
        ("application/octet-stream", "gzip", b"not gzip at all".to_vec()),
        ("application/octet-stream", "gzip", vec![0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 3, 1, 2]),
    ] {
        let mut c = files(
            "bad upload bodies",
            "POST",
            if ct.starts_with("multipart") && body.len() > 20 { "" } else { "?path=%2Ftmp%2Fupload" },
        )
        .header("content-type", ct)
        .body(body);
        if !enc.is_empty() {
            c = c.header("content-encoding", enc);
        }
        cases.push(c);
    }
    cases.push(files("unknown routes", "DELETE", "?path=%2Ftmp"));
    cases.push(Case::new("unknown routes", "GET", "/nope", Shape::Rest).header("e2b-sandbox-id", id.to_string()));
    // envd traffic for sandboxes that do not run: 502 by contract.
    for bad in ["NOT_AN_ID", "zzzzzzzzzzzzzzzzzzzz", "", "..", "a b"] {
        let c = Case::new("bad sandbox IDs", "POST", "/process.Process/List", Shape::NotRunning)
            .header("e2b-sandbox-id", bad)
            .header("content-type", "application/json")
            .body("{}");
        cases.push(c);
    }
    cases.push(
        Case::new("bad sandbox IDs", "GET", "/health", Shape::NotRunning)
            .header("novita-sandbox-id", b"\xff\xfe".to_vec()),
    );
    cases
}

/// Requests hyper's parser refuses: a 4xx, possibly bodyless; and never a hang.
async fn raw_http(a: SocketAddr) -> Vec<String> {
    let mut failures = Vec::new();
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("garbage request line", b"GARBAGE\r\n\r\n".to_vec()),
        ("unknown HTTP version", b"GET /health HTTP/9.9\r\nhost: x\r\n\r\n".to_vec()),
        ("URI of 100 KB", [b"GET /".as_slice(), &vec![b'a'; 100_000], b" HTTP/1.1\r\nhost: x\r\n\r\n"].concat()),
        ("bad Content-Length", format!("POST /sandboxes HTTP/1.1\r\nhost: x\r\nx-api-key: {KEY}\r\ncontent-length: abc\r\n\r\n{{}}").into_bytes()),
        ("two Content-Lengths", format!("POST /sandboxes HTTP/1.1\r\nhost: x\r\nx-api-key: {KEY}\r\ncontent-length: 2\r\ncontent-length: 3\r\n\r\n{{}}").into_bytes()),
        ("bad chunk size", format!("POST /sandboxes HTTP/1.1\r\nhost: x\r\nx-api-key: {KEY}\r\ntransfer-encoding: chunked\r\n\r\nzz\r\nabc\r\n0\r\n\r\n").into_bytes()),
        ("headers of 1 MB", [b"GET /health HTTP/1.1\r\nhost: x\r\n".as_slice(), &b"x-a: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n".repeat(30_000), b"\r\n"].concat()),
    ];
    for (what, bytes) in cases {
        let result = tokio::time::timeout(ANSWER_WITHIN, async {
            let mut s = tokio::net::TcpStream::connect(a).await?;
            // The server may answer and close before it has read everything: ignore write errors.
            let _ = s.write_all(&bytes).await;
            let mut out = Vec::new();
            let _ = s.read_to_end(&mut out).await;
            Ok::<_, std::io::Error>(String::from_utf8_lossy(&out).to_string())
        })
        .await;
        match result {
            Ok(Ok(text)) => {
                let status: u16 = text.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
                if !(400..500).contains(&status) {
                    failures.push(format!("[raw HTTP] {what}: {:?}", text.chars().take(200).collect::<String>()));
                }
            }
            Ok(Err(e)) => failures.push(format!("[raw HTTP] {what}: {e}")),
            Err(_) => failures.push(format!("[raw HTTP] {what}: no answer within {ANSWER_WITHIN:?}")),
        }
    }
    failures
}

/// Valid bodies with a few random bytes flipped, cut or repeated, sent to routes that change
/// nothing lasting: each answer is a success or a well-formed 4xx; never a 5xx.
async fn mutations(a: SocketAddr, id: &str, token: &str, rounds: usize) -> (usize, Vec<String>) {
    let seeds: Vec<(&str, bool, &str)> = vec![
        // Connect only ever extends the sandbox's life (a mutated /timeout could end it).
        (r#"{"timeout":300,"secure":true}"#, false, "/connect"),
        (r#"{"path":"/etc","depth":2}"#, true, "filesystem.Filesystem/ListDir"),
        (r#"{"path":"/etc/hostname"}"#, true, "filesystem.Filesystem/Stat"),
        (r#"{}"#, true, "process.Process/List"),
        (r#"{"process":{"pid":999999},"signal":"SIGNAL_SIGTERM"}"#, true, "process.Process/SendSignal"),
    ];
    let mut rng = XorShift(0x2545_F491_4F6C_DD1D);
    let mut failures = Vec::new();
    let mut bad = 0;
    for _ in 0..rounds {
        let (seed, envd, route) = seeds[rng.below(seeds.len())];
        let mut body = seed.as_bytes().to_vec();
        for _ in 0..1 + rng.below(3) {
            match rng.below(4) {
                0 if !body.is_empty() => {
                    let i = rng.below(body.len());
                    body[i] = rng.next() as u8;
                }
                1 if !body.is_empty() => body.truncate(rng.below(body.len())),
                2 if !body.is_empty() => {
                    let i = rng.below(body.len());
                    let j = i + rng.below(body.len() - i);
                    let piece = body[i..j].to_vec();
                    body.splice(j..j, piece);
                }
                _ => body.insert(rng.below(body.len() + 1), b"{}[]\":,\\0-9e"[rng.below(12)]),
            }
        }
        let case = if envd {
            Case::unary("mutations", id, route).header("x-access-token", token).body(body)
        } else {
            Case::rest("mutations", "POST", format!("/sandboxes/{id}{route}")).body(body)
        };
        let r = match tokio::time::timeout(ANSWER_WITHIN, fetch(a, &case)).await {
            Ok(Ok(r)) => r,
            Ok(Err(e)) => {
                failures.push(format!("{}: {e}", case.describe()));
                continue;
            }
            Err(_) => {
                failures.push(format!("{}: no answer", case.describe()));
                continue;
            }
        };
        if r.status.is_success() {
            continue;
        }
        bad += 1;
        if let Err(e) = check(a, &case).await {
            failures.push(format!("{}: {e}", case.describe()));
        }
    }
    (bad, failures)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_malformed_input_gets_a_4xx_json_answer() {
    let s = Server::start();
    let a = s.addr;
    let id = create(a, r#"{"templateID":"base"}"#).await;
    let token = token(a, &id).await;

    let mut per_class: BTreeMap<&str, (usize, usize)> = BTreeMap::new();
    let mut failures = Vec::new();
    // Every envd case carries the sandbox's token: what is malformed is the rest.
    let envd = envd_cases(&id).into_iter().map(|c| c.header("x-access-token", token.clone()));
    let cases: Vec<Case> = rest_cases(&id).into_iter().chain(envd).collect();
    let n = cases.len();
    for case in &cases {
        let result = check(a, case).await;
        let entry = per_class.entry(case.class).or_default();
        entry.0 += 1;
        if let Err(e) = result {
            entry.1 += 1;
            failures.push(format!("{}: {e}", case.describe()));
        }
    }
    let raw = raw_http(a).await;
    per_class.insert("raw HTTP (hyper's parser)", (7, raw.len()));
    failures.extend(raw);
    let (mutated_errors, mutation_failures) = mutations(a, &id, &token, 400).await;
    per_class.insert("mutations", (400, mutation_failures.len()));
    failures.extend(mutation_failures);

    eprintln!("malformed input: {n} cases + 7 raw + 400 mutations ({mutated_errors} of them errors)");
    for (class, (count, failed)) in &per_class {
        eprintln!("  {class:<30} {count:>4} sent, {failed} failed");
    }

    // The server and the sandbox still serve.
    assert_eq!(call(a, "GET", "/health", None).await.status, StatusCode::OK);
    let r = call(a, "GET", &format!("/sandboxes/{id}"), None).await;
    assert_eq!(r.status, StatusCode::OK, "the sandbox is gone: {}", String::from_utf8_lossy(&r.body));
    let r = send(
        a,
        envd_req(a, &id, "POST", "/process.Process/Start")
            .await
            .header("content-type", "application/connect+json")
            .body(Full::new(encode_envelope(0, br#"{"process":{"cmd":"/bin/echo","args":["still here"]}}"#)))
            .unwrap(),
    )
    .await;
    assert!(String::from_utf8_lossy(&r.body).contains("c3RpbGwgaGVyZQ"), "{:?}", r.body); // base64 "still here"
    let other = create(a, r#"{"templateID":"base"}"#).await;
    assert_eq!(call(a, "DELETE", &format!("/sandboxes/{other}"), None).await.status, StatusCode::NO_CONTENT);
    assert_eq!(call(a, "DELETE", &format!("/sandboxes/{id}"), None).await.status, StatusCode::NO_CONTENT);
    s.stop();
    assert!(
        failures.is_empty(),
        "{} of {n} malformed inputs got a bad answer:\n{}",
        failures.len(),
        failures.join("\n")
    );
}
