//! The control plane with real sandboxes: create, get, list, timeout, connect, kill, expiry,
//! envd through the proxy, and a stop that takes every sandbox with it. Needs root and the
//! engine.

mod common;

use bytes::Bytes;
use common::*;
use http_body_util::Full;
use hyper::StatusCode;
use std::time::{Duration, Instant};

/// envd's health check: open without the access token, as the cloud's is.
async fn envd_health(a: std::net::SocketAddr, id: &str) -> Res {
    send(a, req(a, "GET", "/health").header("E2b-Sandbox-Id", id).body(Full::new(Bytes::new())).unwrap()).await
}

#[tokio::test]
async fn lifecycle() {
    let s = Server::start();
    let a = s.addr;
    let before = chrono::Utc::now();
    let r = call(a, "POST", "/sandboxes", Some(r#"{"templateID":"base","metadata":{"owner":"it"},"envVars":{"FOO":"bar"},"timeout":120,"secure":true,"allow_internet_access":true,"autoPause":false}"#)).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", String::from_utf8_lossy(&r.body));
    let v = r.json();
    let id = v["sandboxID"].as_str().unwrap().to_string();
    assert_eq!(id.len(), 20);
    assert!(id.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit()), "{id}");
    assert_eq!(v["templateID"], "base");
    assert_eq!(v["envdVersion"], sandbank_protocol::ENVD_VERSION);
    assert_eq!(v["clientID"], "sandbank");
    // Sandbox hosts are `<port>-<id>.localhost:<the API's port>` (README "Sandbox ports").
    assert_eq!(v["domain"], format!("localhost:{}", a.port()));

    let d = call(a, "GET", &format!("/sandboxes/{id}"), None).await;
    assert_eq!(d.status, StatusCode::OK);
    let d = d.json();
    assert_eq!(d["sandboxID"], id.as_str());
    assert_eq!(d["templateID"], "base");
    assert_eq!(d["state"], "running");
    assert_eq!(d["envdVersion"], sandbank_protocol::ENVD_VERSION);
    assert_eq!(d["metadata"], serde_json::json!({"owner": "it"}));
    assert_eq!(d["allowInternetAccess"], true, "pasta is installed (Debian package passt)");
    assert!(d["cpuCount"].as_u64().unwrap() >= 1, "{d}");
    assert!(d["memoryMB"].as_u64().unwrap() >= 64, "{d}");
    assert!(d["diskSizeMB"].as_u64().unwrap() >= 1, "{d}");
    let started = time(&d["startedAt"]);
    assert!(started >= before - chrono::TimeDelta::seconds(1) && started <= chrono::Utc::now());
    assert_eq!((time(&d["endAt"]) - started).num_seconds(), 120);
    assert_eq!(call(a, "GET", &format!("/sandboxes/{id}-sandbank"), None).await.status, StatusCode::OK);

    // envd answers through the proxy, by header (both spellings) and by host, with no key (its
    // health check needs no token either).
    assert_eq!(envd_health(a, &id).await.status, StatusCode::NO_CONTENT);
    let r = send(
        a,
        req(a, "GET", "/health").header("Novita-Sandbox-Id", format!("{id}-sandbank")).body(Full::default()).unwrap(),
    )
    .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    let r =
        send(a, Request::get("/health").header("host", format!("49983-{id}.localhost")).body(Full::default()).unwrap())
            .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);

    for path in ["/v2/sandboxes", "/sandboxes"] {
        let l = call(a, "GET", path, None).await.json();
        let l = l.as_array().unwrap();
        assert_eq!(l.len(), 1, "{path}");
        assert_eq!(l[0]["sandboxID"], id.as_str());
        assert_eq!(l[0]["state"], "running");
        assert_eq!(l[0]["metadata"]["owner"], "it");
    }

    let r = call(a, "POST", &format!("/sandboxes/{id}/timeout"), Some(r#"{"timeout":30}"#)).await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    assert!(r.body.is_empty());
    let end = time(&call(a, "GET", &format!("/sandboxes/{id}"), None).await.json()["endAt"]);
    assert!((28..=30).contains(&(end - chrono::Utc::now()).num_seconds()));

    let r = call(a, "POST", &format!("/sandboxes/{id}/connect"), Some(r#"{"timeout":5}"#)).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.json()["sandboxID"], id.as_str());
    assert_eq!(
        time(&call(a, "GET", &format!("/sandboxes/{id}"), None).await.json()["endAt"]),
        end,
        "connect never shortens"
    );
    call(a, "POST", &format!("/sandboxes/{id}/connect"), Some(r#"{"timeout":900}"#)).await;
    let end = time(&call(a, "GET", &format!("/sandboxes/{id}"), None).await.json()["endAt"]);
    assert!((end - chrono::Utc::now()).num_seconds() >= 898);

    let r = call(a, "DELETE", &format!("/sandboxes/{id}"), None).await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    let msg = format!("Sandbox \"{id}\" doesn't exist or you don't have access to it");
    assert_eq!(call(a, "GET", &format!("/sandboxes/{id}"), None).await.error(404), msg);
    assert_eq!(call(a, "DELETE", &format!("/sandboxes/{id}"), None).await.error(404), msg);
    // Gone: the cloud proxy's words, which every SDK reads as "not running".
    assert_eq!(envd_health(a, &id).await.error(502), format!("The sandbox \"{id}\" was not found"));
    assert_eq!(call(a, "GET", "/v2/sandboxes", None).await.json(), serde_json::json!([]));
    s.stop();
}

use hyper::Request;

#[tokio::test]
async fn list_pagination_and_filters() {
    let s = Server::start();
    let a = s.addr;
    let mut ids = Vec::new();
    for i in 0..4 {
        let md = if i % 2 == 0 { r#"{"a b":"c&d"}"# } else { r#"{"kind":"odd"}"# };
        ids.push(create(a, &format!(r#"{{"templateID":"base","metadata":{md}}}"#)).await);
    }
    let newest_first: Vec<String> = ids.iter().rev().cloned().collect();
    let r = call(a, "GET", "/v2/sandboxes?limit=3", None).await;
    let p1: Vec<String> =
        r.json().as_array().unwrap().iter().map(|v| v["sandboxID"].as_str().unwrap().to_string()).collect();
    assert_eq!(p1, newest_first[..3]);
    let token = r.header("x-next-token").expect("a next token");
    // Concurrent changes: a new sandbox, and one of the first page killed.
    let late = create(a, r#"{"templateID":"base"}"#).await;
    assert_eq!(call(a, "DELETE", &format!("/sandboxes/{}", p1[2]), None).await.status, StatusCode::NO_CONTENT);
    let r = call(a, "GET", &format!("/v2/sandboxes?limit=3&nextToken={token}"), None).await;
    let p2: Vec<String> =
        r.json().as_array().unwrap().iter().map(|v| v["sandboxID"].as_str().unwrap().to_string()).collect();
    assert_eq!(p2, newest_first[3..]);
    assert_eq!(r.header("x-next-token"), None);

    let r = call(a, "GET", "/v2/sandboxes?metadata=a%252520b%3Dc%252526d", None).await;
    let got: Vec<String> =
        r.json().as_array().unwrap().iter().map(|v| v["sandboxID"].as_str().unwrap().to_string()).collect();
    assert_eq!(got, vec![ids[2].clone(), ids[0].clone()]);
    // ids[1] (odd) was killed above.
    let r = call(a, "GET", "/v2/sandboxes?metadata=kind%3Dodd&state=running", None).await;
    let got: Vec<String> =
        r.json().as_array().unwrap().iter().map(|v| v["sandboxID"].as_str().unwrap().to_string()).collect();
    assert_eq!(got, vec![ids[3].clone()]);
    let r = call(a, "GET", "/v2/sandboxes?state=paused", None).await;
    assert_eq!(r.json(), serde_json::json!([]));
    let all = call(a, "GET", "/sandboxes", None).await.json();
    assert_eq!(all.as_array().unwrap().len(), 4);
    assert_eq!(all[0]["sandboxID"], late.as_str());
    s.stop();
}

#[tokio::test]
async fn sandboxes_are_gone_within_a_second_of_their_end_time() {
    let s = Server::start();
    let a = s.addr;
    let id = create(a, r#"{"templateID":"base","timeout":2}"#).await;
    let end = time(&call(a, "GET", &format!("/sandboxes/{id}"), None).await.json()["endAt"]);
    loop {
        let r = call(a, "GET", &format!("/sandboxes/{id}"), None).await;
        let now = chrono::Utc::now();
        if r.status == StatusCode::NOT_FOUND {
            assert!(now >= end - chrono::TimeDelta::milliseconds(50), "gone too early");
            break;
        }
        assert!(now < end + chrono::TimeDelta::seconds(1), "still there 1 s after its end time");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(envd_health(a, &id).await.status.as_u16(), 502);
    s.stop();
}

#[tokio::test]
async fn unknown_template_is_404_and_creation_still_works() {
    let s = Server::start();
    let a = s.addr;
    let m = call(a, "POST", "/sandboxes", Some(r#"{"templateID":"nope-tpl"}"#)).await.error(404);
    assert!(m.contains("\"nope-tpl\""), "{m}");
    let id = create(a, r#"{"templateID":"base"}"#).await;
    let d = call(a, "GET", &format!("/sandboxes/{id}"), None).await.json();
    assert_eq!((time(&d["endAt"]) - time(&d["startedAt"])).num_seconds(), 300);
    s.stop();
}

#[tokio::test]
async fn sigterm_with_running_sandboxes_exits_within_5_s() {
    let s = Server::start();
    let a = s.addr;
    for _ in 0..3 {
        create(a, r#"{"templateID":"base"}"#).await;
    }
    // A long-lived envd connection open at the time of the stop must not hold it up.
    let id = create(a, r#"{"templateID":"base"}"#).await;
    let token = token(a, &id).await;
    let stream = tokio::net::TcpStream::connect(a).await.unwrap();
    let (mut tx, conn) = hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream)).await.unwrap();
    tokio::spawn(conn);
    let _pending = tokio::spawn(async move {
        let body = r#"{"process":{"cmd":"/bin/sleep","args":["60"]},"stdin":false}"#;
        let mut frame = vec![0u8];
        frame.extend_from_slice(&(body.len() as u32).to_be_bytes());
        frame.extend_from_slice(body.as_bytes());
        let r = Request::post("/process.Process/Start")
            .header("host", "x")
            .header("E2b-Sandbox-Id", id)
            .header("X-Access-Token", token)
            .header("content-type", "application/connect+json")
            .header("connect-protocol-version", "1")
            .body(Full::new(Bytes::from(frame)))
            .unwrap();
        let _ = tx.send_request(r).await;
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    let data_dir = s.data_dir.clone();
    let guests = || common::host::guests(&data_dir).len();
    assert!(guests() >= 4, "the guests should be visible before the stop");
    let t0 = Instant::now();
    s.stop();
    assert!(t0.elapsed() < Duration::from_secs(5));
    // Nothing of the sandboxes' processes is left.
    assert_eq!(guests(), 0, "guests left after the stop");
}

async fn envd(a: std::net::SocketAddr, id: &str, method: &str, path: &str, body: &'static [u8]) -> Res {
    let b = envd_req(a, id, method, path).await.header("content-type", "application/octet-stream");
    send(a, b.body(Full::new(Bytes::from_static(body))).unwrap()).await
}

#[tokio::test]
async fn snapshot_flow() {
    let s = Server::start();
    let a = s.addr;
    let origin = create(a, r#"{"templateID":"base"}"#).await;
    let r = envd(a, &origin, "POST", "/files?path=/home/user/note.txt", b"from the origin").await;
    assert_eq!(r.status, StatusCode::OK, "{}", String::from_utf8_lossy(&r.body));
    let r = call(a, "POST", &format!("/sandboxes/{origin}/snapshots"), Some("{}")).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", String::from_utf8_lossy(&r.body));
    let snap = r.json()["snapshotID"].as_str().unwrap().to_string();
    assert!(snap.ends_with(":default"), "{snap}");
    // The origin carries on.
    assert_eq!(envd_health(a, &origin).await.status, StatusCode::NO_CONTENT);
    let l = call(a, "GET", &format!("/snapshots?sandboxID={origin}"), None).await.json();
    assert_eq!(l[0]["snapshotID"], snap.as_str());

    let r = call(a, "POST", "/sandboxes", Some(&format!(r#"{{"templateID":"{snap}"}}"#))).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", String::from_utf8_lossy(&r.body));
    let child = r.json()["sandboxID"].as_str().unwrap().to_string();
    assert_eq!(r.json()["templateID"], snap.trim_end_matches(":default"));
    let r = envd(a, &child, "GET", "/files?path=/home/user/note.txt", b"").await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(&r.body[..], b"from the origin");

    // In use: 400 naming it; after the child is gone, 204, then 404.
    let m = call(a, "DELETE", &format!("/templates/{snap}"), None).await.error(400);
    assert!(m.contains(&child), "{m}");
    assert_eq!(call(a, "DELETE", &format!("/sandboxes/{child}"), None).await.status, StatusCode::NO_CONTENT);
    assert_eq!(
        call(a, "DELETE", &format!("/templates/{}", snap.replace(':', "%3A")), None).await.status,
        StatusCode::NO_CONTENT
    );
    call(a, "DELETE", &format!("/templates/{snap}"), None).await.error(404);
    call(a, "POST", "/sandboxes", Some(&format!(r#"{{"templateID":"{snap}"}}"#))).await.error(404);
    s.stop();
}
