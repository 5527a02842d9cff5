//! `sandbank serve` as a process: start-up, the API key, the data-directory lock, auth, bad
//! input, and a clean stop on SIGTERM/SIGINT. Needs root (the engine) like the server itself.

mod common;

use bytes::Bytes;
use common::*;
use http_body_util::Full;
use hyper::StatusCode;
use std::os::unix::fs::PermissionsExt as _;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

#[tokio::test]
async fn health_and_auth() {
    let s = Server::start();
    let a = s.addr;
    let r = send(a, req(a, "GET", "/health").body(Full::default()).unwrap()).await;
    assert_eq!(r.status, StatusCode::OK);
    for (method, path) in [
        ("GET", "/v2/sandboxes"),
        ("GET", "/sandboxes"),
        ("POST", "/sandboxes"),
        ("DELETE", "/sandboxes/abcdefghij0123456789"),
    ] {
        let r = send(a, req(a, method, path).body(Full::default()).unwrap()).await;
        assert!(r.error(401).contains("Missing API key"), "{method} {path}");
        let r = send(a, req(a, method, path).header("X-API-KEY", "nope").body(Full::default()).unwrap()).await;
        assert_eq!(r.error(401), "Invalid API key");
        let r =
            send(a, req(a, method, path).header("Authorization", "Bearer nope").body(Full::default()).unwrap()).await;
        r.error(401);
        let r = send(
            a,
            req(a, method, path).header("Authorization", format!("Basic {KEY}")).body(Full::default()).unwrap(),
        )
        .await;
        r.error(401);
    }
    for (name, value) in [
        ("X-API-KEY", KEY.to_string()),
        ("x-api-key", KEY.to_string()),
        ("X-Api-Key", KEY.to_string()),
        ("Authorization", format!("Bearer {KEY}")),
    ] {
        let r = send(a, req(a, "GET", "/v2/sandboxes").header(name, value).body(Full::default()).unwrap()).await;
        assert_eq!(r.status, StatusCode::OK, "{name}");
        assert_eq!(r.json(), serde_json::json!([]));
        assert_eq!(r.header("x-next-token"), None);
    }
    s.stop();
}

#[tokio::test]
async fn a_generated_key_is_stored_0600_and_reused() {
    let tmp = tempfile::tempdir().unwrap();
    let s = Server::start_in(tmp.path(), None).unwrap();
    let path = tmp.path().join("api-key");
    let key = std::fs::read_to_string(&path).unwrap().trim().to_string();
    assert!(key.len() >= 32, "{key:?}");
    assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
    let a = s.addr;
    let r = send(a, req(a, "GET", "/v2/sandboxes").header("x-api-key", &key).body(Full::default()).unwrap()).await;
    assert_eq!(r.status, StatusCode::OK);
    let r = send(a, req(a, "GET", "/v2/sandboxes").header("x-api-key", KEY).body(Full::default()).unwrap()).await;
    r.error(401);
    s.stop();
    let s = Server::start_in(tmp.path(), None).unwrap();
    assert_eq!(std::fs::read_to_string(&path).unwrap().trim(), key);
    let a = s.addr;
    let r = send(
        a,
        req(a, "GET", "/v2/sandboxes").header("authorization", format!("Bearer {key}")).body(Full::default()).unwrap(),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK);
    s.stop();
    // A key on the command line wins over the stored one.
    let s = Server::start_in(tmp.path(), Some("explicit-key")).unwrap();
    let a = s.addr;
    let r = send(a, req(a, "GET", "/v2/sandboxes").header("x-api-key", "explicit-key").body(Full::default()).unwrap())
        .await;
    assert_eq!(r.status, StatusCode::OK);
    let r = send(a, req(a, "GET", "/v2/sandboxes").header("x-api-key", &key).body(Full::default()).unwrap()).await;
    r.error(401);
    s.stop();
}

#[tokio::test]
async fn a_second_server_on_the_same_data_dir_refuses_to_start() {
    let first = Server::start();
    let t0 = Instant::now();
    let err = match Server::start_in(&first.data_dir, Some(KEY)) {
        Ok(_) => panic!("a second server started on {}", first.data_dir.display()),
        Err(e) => e,
    };
    assert!(t0.elapsed() < Duration::from_secs(30));
    // The status that tells a client starting a daemon to use the running one (`local.rs`).
    assert!(err.contains("exit status: 75"), "{err}");
    assert!(err.contains("in use"), "{err}");
    // The first one is unharmed.
    let a = first.addr;
    assert_eq!(call(a, "GET", "/v2/sandboxes", None).await.status, StatusCode::OK);
    first.stop();
}

#[tokio::test]
async fn sigint_stops_it_too() {
    let mut s = Server::start();
    s.signal(nix::sys::signal::Signal::SIGINT);
    let t0 = Instant::now();
    loop {
        if let Some(st) = s.child.try_wait().unwrap() {
            assert!(st.success(), "{st}");
            break;
        }
        assert!(t0.elapsed() < Duration::from_secs(5), "still running 5 s after SIGINT");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[tokio::test]
async fn bad_input_gets_json_4xx_and_the_server_keeps_serving() {
    let s = Server::start();
    let a = s.addr;
    let cases: &[(&str, &str, Option<&str>, u16, &str)] = &[
        ("POST", "/sandboxes", Some(r#"{"templateID": "base""#), 400, "not valid JSON"),
        ("POST", "/sandboxes", Some(r#"{"templateID":"base","timeout":"soon"}"#), 400, "soon"),
        ("POST", "/sandboxes", Some(r#"{"templateID":"base","timeout":"soon"}"#), 400, "timeout"),
        ("POST", "/sandboxes", Some(r#"{"templateID":7}"#), 400, "templateID"),
        ("POST", "/sandboxes", Some(r#"{"timeout":30}"#), 400, "templateID"),
        ("POST", "/sandboxes", Some(r#"[]"#), 400, "[]"),
        ("POST", "/sandboxes", None, 400, "empty"),
        ("POST", "/sandboxes", Some(r#"{"templateID":"no-such-template-xyz"}"#), 404, "\"no-such-template-xyz\""),
        (
            "GET",
            "/sandboxes/abcdefghij0123456789",
            None,
            404,
            "Sandbox \"abcdefghij0123456789\" doesn't exist or you don't have access to it",
        ),
        ("DELETE", "/sandboxes/abcdefghij0123456789", None, 404, "Sandbox \"abcdefghij0123456789\" doesn't exist"),
        ("POST", "/sandboxes/abcdefghij0123456789/timeout", Some(r#"{"timeout":5}"#), 404, "abcdefghij0123456789"),
        ("POST", "/sandboxes/abcdefghij0123456789/connect", Some(r#"{"timeout":5}"#), 404, "abcdefghij0123456789"),
        ("POST", "/sandboxes/abcdefghij0123456789/timeout", Some(r#"{"timeout":"soon"}"#), 400, "soon"),
        ("GET", "/sandboxes/NOT_AN_ID", None, 404, "\"NOT_AN_ID\""),
        ("GET", "/sandboxes/..%2F..%2Fetc%2Fpasswd", None, 404, "../../etc/passwd"),
        ("DELETE", "/sandboxes/UPPERCASE0123456789X", None, 404, "UPPERCASE0123456789X"),
        ("GET", "/v2/sandboxes?limit=0", None, 400, "\"0\""),
        ("GET", "/v2/sandboxes?limit=101", None, 400, "\"101\""),
        ("GET", "/v2/sandboxes?limit=abc", None, 400, "\"abc\""),
        ("GET", "/v2/sandboxes?nextToken=garbage", None, 400, "Invalid next token"),
        ("GET", "/v2/sandboxes?nextToken=garbage", None, 400, "garbage"),
        ("GET", "/v2/sandboxes?state=asleep", None, 400, "asleep"),
        ("GET", "/v2/sandboxes?metadata=novalue", None, 400, "novalue"),
        ("GET", "/nope", None, 404, "/nope"),
        ("POST", "/v3/whatever", Some("{}"), 404, "/v3/whatever"),
        ("PATCH", "/sandboxes", None, 405, "PATCH"),
        ("PUT", "/sandboxes/abcdefghij0123456789", None, 405, "PUT"),
        ("GET", "/sandboxes/abcdefghij0123456789/timeout", None, 405, "GET"),
    ];
    for (method, path, body, status, needle) in cases {
        let r = call(a, method, path, *body).await;
        let m = r.error(*status);
        assert!(m.contains(needle), "{method} {path}: {m:?} lacks {needle:?}");
    }
    assert_eq!(call(a, "GET", "/v2/sandboxes", None).await.status, StatusCode::OK);
    s.stop();
}

/// Writes a request with a 100 MB body on a raw socket while reading the answer: the server
/// must answer 413 JSON without reading it all, and keep serving.
async fn huge_body(addr: std::net::SocketAddr, chunked: bool) -> (String, Duration) {
    let mut sock = tokio::net::TcpStream::connect(addr).await.unwrap();
    let head = if chunked {
        format!("POST /sandboxes HTTP/1.1\r\nhost: {addr}\r\nx-api-key: {KEY}\r\ncontent-type: application/json\r\ntransfer-encoding: chunked\r\n\r\n")
    } else {
        format!("POST /sandboxes HTTP/1.1\r\nhost: {addr}\r\nx-api-key: {KEY}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n", 100 << 20)
    };
    let (mut rd, mut wr) = sock.split();
    let t0 = Instant::now();
    let writer = async {
        wr.write_all(head.as_bytes()).await?;
        let chunk = vec![b' '; 1 << 20];
        for _ in 0..100 {
            if chunked {
                wr.write_all(format!("{:x}\r\n", chunk.len()).as_bytes()).await?;
                wr.write_all(&chunk).await?;
                wr.write_all(b"\r\n").await?;
            } else {
                wr.write_all(&chunk).await?;
            }
        }
        Ok::<_, std::io::Error>(())
    };
    let reader = async {
        let mut buf = Vec::new();
        let mut tmp = [0u8; 4096];
        loop {
            match tokio::time::timeout(Duration::from_secs(20), rd.read(&mut tmp)).await {
                Ok(Ok(0)) | Ok(Err(_)) | Err(_) => break,
                Ok(Ok(n)) => {
                    buf.extend_from_slice(&tmp[..n]);
                    let text = String::from_utf8_lossy(&buf).to_string();
                    if let Some((_, body)) = text.split_once("\r\n\r\n") {
                        if body.ends_with('}') {
                            break;
                        }
                    }
                }
            }
        }
        String::from_utf8_lossy(&buf).to_string()
    };
    let (_, text) = tokio::join!(
        async {
            let _ = writer.await;
        },
        reader
    );
    (text, t0.elapsed())
}

#[tokio::test]
async fn a_100_mb_body_gets_413_json() {
    let s = Server::start();
    for chunked in [false, true] {
        let (text, took) = huge_body(s.addr, chunked).await;
        assert!(text.starts_with("HTTP/1.1 413"), "chunked={chunked}: {text:?}");
        let body = text.split_once("\r\n\r\n").unwrap().1;
        let body = body.trim_start_matches(|c: char| c.is_ascii_hexdigit() || c == '\r' || c == '\n');
        let v: serde_json::Value =
            serde_json::from_str(body.trim_end_matches(['\r', '\n', '0'])).unwrap_or_else(|e| panic!("{e}: {text:?}"));
        assert_eq!(v["code"], 413);
        assert!(v["message"].as_str().unwrap().contains("1048576"), "{v}");
        assert!(took < Duration::from_secs(20), "{took:?}");
    }
    assert_eq!(call(s.addr, "GET", "/health", None).await.status, StatusCode::OK);
    let r = call(s.addr, "POST", "/sandboxes", Some(r#"{"templateID":"no-such-template-xyz"}"#)).await;
    r.error(404);
    s.stop();
}

/// Reads what the server sends until it closes the connection; `None` if it is still open after
/// `within`.
async fn read_until_closed(sock: &mut tokio::net::TcpStream, within: Duration) -> Option<String> {
    let mut got = Vec::new();
    match tokio::time::timeout(within, sock.read_to_end(&mut got)).await {
        Ok(_) => Some(String::from_utf8_lossy(&got).into_owned()),
        Err(_) => None,
    }
}

/// Slow clients: a connection that sends nothing, one that stops in the middle of its headers
/// and a kept-alive one left idle are all closed once `--header-timeout-secs` passes, while a
/// client that sends its headers in slow pieces within it is served, as is everyone else.
#[tokio::test]
async fn unfinished_headers_and_idle_connections_are_closed() {
    let s = Server::start_with(&["--header-timeout-secs", "2"]);
    let a = s.addr;
    let request = format!("GET /health HTTP/1.1\r\nhost: {a}\r\n\r\n");

    let mut silent = tokio::net::TcpStream::connect(a).await.unwrap();
    let mut halfway = tokio::net::TcpStream::connect(a).await.unwrap();
    halfway.write_all(format!("GET /health HTTP/1.1\r\nhost: {a}\r\nx-slow").as_bytes()).await.unwrap();
    // Two requests in a row on one connection (keep-alive works), then nothing.
    let mut idle = tokio::net::TcpStream::connect(a).await.unwrap();
    for _ in 0..2 {
        idle.write_all(request.as_bytes()).await.unwrap();
        let mut buf = [0u8; 1024];
        let n = idle.read(&mut buf).await.unwrap();
        let text = String::from_utf8_lossy(&buf[..n]);
        assert!(text.starts_with("HTTP/1.1 200"), "{text:?}");
    }
    // Slow but within the limit: the headers in three pieces over about 0.6 s.
    let mut slow = tokio::net::TcpStream::connect(a).await.unwrap();
    for piece in request.as_bytes().chunks(request.len() / 3 + 1) {
        slow.write_all(piece).await.unwrap();
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let mut buf = [0u8; 1024];
    let n = slow.read(&mut buf).await.unwrap();
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"));
    // Everyone else is served meanwhile.
    assert_eq!(call(a, "GET", "/health", None).await.status, StatusCode::OK);

    for (what, sock) in
        [("sent nothing", &mut silent), ("stopped mid-headers", &mut halfway), ("kept alive, idle", &mut idle)]
    {
        let said = read_until_closed(sock, Duration::from_secs(15)).await;
        // Closed without an answer: there is no request to answer.
        assert_eq!(said.as_deref(), Some(""), "{what}: open 15 s on, or answered");
    }
    assert_eq!(call(a, "GET", "/health", None).await.status, StatusCode::OK);
    s.stop();
}

/// `--idle-exit-secs`: a sandbox keeps the server up with no request coming; once it is gone and
/// no request comes, the server stops by itself, cleanly.
#[tokio::test]
async fn idle_exit_waits_for_the_last_sandbox() {
    let mut s = Server::start_with(&["--idle-exit-secs", "1"]);
    let id = create(s.addr, r#"{"templateID":"base"}"#).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(s.child.try_wait().unwrap().is_none(), "stopped while sandbox {id} ran");
    assert_eq!(call(s.addr, "DELETE", &format!("/sandboxes/{id}"), None).await.status, StatusCode::NO_CONTENT);
    let t0 = Instant::now();
    let status = loop {
        if let Some(status) = s.child.try_wait().unwrap() {
            break status;
        }
        assert!(t0.elapsed() < Duration::from_secs(15), "still running 15 s after its last sandbox went");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(status.success(), "{status}");
}

#[tokio::test]
async fn envd_traffic_for_unknown_sandboxes_is_502_json_without_a_key() {
    let s = Server::start();
    let a = s.addr;
    for (name, value) in [
        ("Novita-Sandbox-Id", "abcdefghij0123456789".to_string()),
        ("E2b-Sandbox-Id", "abcdefghij0123456789-sandbank".to_string()),
        ("host", "49983-abcdefghij0123456789.sandbox.localhost".to_string()),
    ] {
        let b = if name == "host" { hyper::Request::get("/health") } else { req(a, "GET", "/health") };
        let r = send(a, b.header(name, value).body(Full::new(Bytes::new())).unwrap()).await;
        assert_eq!(r.error(502), "The sandbox \"abcdefghij0123456789\" was not found", "{name}");
    }
    let r = send(
        a,
        req(a, "POST", "/process.Process/Start")
            .header("e2b-sandbox-id", "zzzzzzzzzzzzzzzzzzzz")
            .body(Full::new(Bytes::from("{}")))
            .unwrap(),
    )
    .await;
    assert_eq!(r.error(502), "The sandbox \"zzzzzzzzzzzzzzzzzzzz\" was not found");
    s.stop();
}

/// `SANDBANK_NO_USERNS=1`, as the refusal without a user namespace tells users to set it, starts
/// a server whose sandboxes have none (their root is the host's); a false value does not.
#[tokio::test]
async fn the_no_userns_variable_takes_1_and_false() {
    for (value, host_root) in [("1", true), ("false", false)] {
        let s = Server::start_configured(&[], &[("SANDBANK_NO_USERNS", value)])
            .unwrap_or_else(|e| panic!("SANDBANK_NO_USERNS={value}: {e}"));
        let id = create(s.addr, r#"{"templateID":"base"}"#).await;
        let info = call(s.addr, "GET", &format!("/sandboxes/{id}"), None).await.json();
        assert_eq!(info["rootIsHostRoot"].as_bool().unwrap_or(false), host_root, "SANDBANK_NO_USERNS={value}: {info}");
        assert_eq!(call(s.addr, "DELETE", &format!("/sandboxes/{id}"), None).await.status, StatusCode::NO_CONTENT);
        s.stop();
    }
}
