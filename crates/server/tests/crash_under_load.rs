//! `kill -9` of the server at random moments while creates, commands, file writes, snapshots,
//! snapshot deletes and kills run concurrently, then a restart on the same data directory;
//! several rounds. (snapshots_crash.rs kills one big snapshot at measured moments; this one
//! kills a busy server anywhere.) After each restart:
//! - nothing of the killed server is left: its guest processes, its sandboxes' cgroups, mounts
//!   and directories, a layer in staging;
//! - every snapshot acknowledged with a 201 and not deleted with a 204 is listed, and complete:
//!   a sandbox started from it reads its origin's file byte for byte; a 204-deleted one is gone;
//!   every listed snapshot has its layer and no other layer is left;
//! - no request ever got a 5xx (a killed server cuts connections; it does not answer 500).
//!
//! On the btrfs store, the default (its staging and layers seen through the new server's mount
//! namespace). Needs root (the engine).

mod common;
use common::rng::XorShift;

use bytes::Bytes;
use common::host::*;
use common::*;
use http_body_util::Full;
use hyper::StatusCode;
use sandbank_protocol::connect::encode_envelope;
use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const ROUNDS: usize = 6;
const WORKERS: usize = 8;
/// The file each sandbox writes and each snapshot must hold.
const MARKER: &str = "/home/user/marker";
const MARKER_BYTES: usize = 256 * 1024;

/// Deterministic content for a sandbox (xorshift seeded by its ID).
fn content(id: &str) -> Vec<u8> {
    let mut rng = XorShift(
        id.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)) | 1,
    );
    let mut out = Vec::with_capacity(MARKER_BYTES);
    while out.len() < MARKER_BYTES {
        out.extend_from_slice(&rng.next().to_le_bytes());
    }
    out
}

/// What the clients were told, over all rounds.
#[derive(Default)]
struct Acks {
    /// Snapshot ID → origin sandbox, for every 201.
    snapshots: Mutex<BTreeMap<String, String>>,
    /// Snapshots whose delete was sent (it may or may not have happened) and got a 204.
    deleting: Mutex<BTreeSet<String>>,
    deleted: Mutex<BTreeSet<String>>,
    /// Every 5xx answer (must stay empty).
    server_errors: Mutex<Vec<String>>,
    /// Operations that completed, by kind.
    done: Mutex<BTreeMap<&'static str, usize>>,
}

impl Acks {
    fn count(&self, what: &'static str) {
        *self.done.lock().unwrap().entry(what).or_default() += 1;
    }
}

/// One request; `None` once the server is gone. A 5xx is recorded.
/// `envd`: the sandbox's ID and access token, for an envd call.
async fn attempt(
    a: SocketAddr,
    acks: &Acks,
    method: &str,
    path: &str,
    envd: Option<(&str, &str)>,
    body: Vec<u8>,
) -> Option<Res> {
    let mut b = req(a, method, path).header("x-api-key", KEY);
    if let Some((id, token)) = envd {
        b = b.header("e2b-sandbox-id", id).header("x-access-token", token);
    }
    b = match envd {
        Some(_) if path.starts_with("/files") => b.header("content-type", "application/octet-stream"),
        Some(_) => b.header("content-type", "application/connect+json"),
        None => b.header("content-type", "application/json"),
    };
    let r = tokio::time::timeout(Duration::from_secs(60), try_send(a, b.body(Full::new(Bytes::from(body))).unwrap()))
        .await
        .expect("an answer or a cut connection within 60 s")
        .ok()?;
    if r.status.is_server_error() {
        // Even a 502 from envd traffic: the guests outlive the server, never the other way.
        acks.server_errors.lock().unwrap().push(format!(
            "{method} {path}: {} {}",
            r.status,
            String::from_utf8_lossy(&r.body)
        ));
        return None;
    }
    Some(r)
}

/// Creates, writes, runs, snapshots, deletes and kills until the server goes away.
async fn worker(a: SocketAddr, seed: u64, acks: Arc<Acks>) {
    let mut rng = XorShift(seed | 1);
    loop {
        let Some(r) = attempt(a, &acks, "POST", "/sandboxes", None, br#"{"templateID":"base"}"#.to_vec()).await else {
            return;
        };
        assert_eq!(r.status, StatusCode::CREATED, "{}", String::from_utf8_lossy(&r.body));
        acks.count("create");
        let id = r.json()["sandboxID"].as_str().unwrap().to_string();
        let token = r.json()["envdAccessToken"].as_str().unwrap().to_string();
        let sbx = Some((id.as_str(), token.as_str()));
        let Some(r) = attempt(a, &acks, "POST", &format!("/files?path={MARKER}"), sbx, content(&id)).await else {
            return;
        };
        assert_eq!(r.status, StatusCode::OK, "{}", String::from_utf8_lossy(&r.body));
        acks.count("file write");
        let start =
            encode_envelope(0, br#"{"process":{"cmd":"/bin/sh","args":["-c","echo $((6*7)) > /tmp/x; cat /tmp/x"]}}"#);
        let Some(r) = attempt(a, &acks, "POST", "/process.Process/Start", sbx, start.to_vec()).await else { return };
        assert_eq!(r.status, StatusCode::OK);
        if String::from_utf8_lossy(&r.body).contains("\"NDIK\"") {
            acks.count("command"); // base64 "42\n": the stream was whole
        }
        let Some(r) = attempt(a, &acks, "POST", &format!("/sandboxes/{id}/snapshots"), None, b"{}".to_vec()).await
        else {
            return;
        };
        assert_eq!(r.status, StatusCode::CREATED, "{}", String::from_utf8_lossy(&r.body));
        acks.count("snapshot");
        let snap = r.json()["snapshotID"].as_str().unwrap().to_string();
        acks.snapshots.lock().unwrap().insert(snap.clone(), id.clone());
        if rng.next().is_multiple_of(3) {
            acks.deleting.lock().unwrap().insert(snap.clone());
            let Some(r) = attempt(a, &acks, "DELETE", &format!("/templates/{snap}"), None, vec![]).await else {
                return;
            };
            assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", String::from_utf8_lossy(&r.body));
            acks.count("snapshot delete");
            acks.deleted.lock().unwrap().insert(snap);
        }
        // Half the sandboxes are killed; the others are still running when the server dies.
        if rng.next().is_multiple_of(2) {
            let Some(r) = attempt(a, &acks, "DELETE", &format!("/sandboxes/{id}"), None, vec![]).await else { return };
            assert_eq!(r.status, StatusCode::NO_CONTENT);
            acks.count("kill");
        }
    }
}

/// Starts a sandbox from `snapshot` and checks its origin's file in it, byte for byte.
async fn verify(a: SocketAddr, snapshot: &str, origin: &str) {
    let r = call(a, "POST", "/sandboxes", Some(&format!(r#"{{"templateID":"{snapshot}"}}"#))).await;
    assert_eq!(r.status, StatusCode::CREATED, "start from {snapshot}: {}", String::from_utf8_lossy(&r.body));
    let id = r.json()["sandboxID"].as_str().unwrap().to_string();
    let r = envd(a, &id, "GET", &format!("/files?path={MARKER}"), vec![]).await;
    assert_eq!(r.status, StatusCode::OK, "snapshot {snapshot}: {MARKER} is missing");
    assert!(r.body[..] == content(origin)[..], "snapshot {snapshot}: {MARKER} differs ({} bytes)", r.body.len());
    assert_eq!(call(a, "DELETE", &format!("/sandboxes/{id}"), None).await.status, StatusCode::NO_CONTENT);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_under_mixed_load_loses_no_acknowledged_snapshot_and_leaks_nothing() {
    let t0 = Instant::now();
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().to_path_buf();
    let mut server = Server::start_in(&data, Some(KEY)).unwrap();
    let acks = Arc::new(Acks::default());
    let mut rng = XorShift(0x9E37_79B9_7F4A_7C15);
    let mut verified: BTreeSet<String> = BTreeSet::new();
    let mut orphans = 0;
    for round in 0..ROUNDS {
        let a = server.addr;
        let workers: Vec<_> =
            (0..WORKERS).map(|w| tokio::spawn(worker(a, rng.next() ^ w as u64, Arc::clone(&acks)))).collect();
        // Somewhere between the first creates and well into the load.
        let delay = Duration::from_millis(200 + rng.next() % 2500);
        tokio::time::sleep(delay).await;
        let old_guests = guests(&data);
        orphans += std::fs::read_dir(server.store().join("sandboxes")).map(|d| d.count()).unwrap_or(0);
        server.child.kill().unwrap(); // SIGKILL
        server.child.wait().unwrap();
        for w in workers {
            w.await.unwrap();
        }

        server = Server::start_in(&data, Some(KEY)).unwrap_or_else(|e| panic!("restart after round {round}: {e}"));
        let a = server.addr;
        let store = server.store();
        // Nothing of the killed server is left once the new one listens.
        assert_eq!(staging_entries(&store), Vec::<String>::new(), "round {round}: layers/.staging is not empty");
        let left: Vec<i32> = guests(&data).into_iter().filter(|p| old_guests.contains(p)).collect();
        assert!(left.is_empty(), "round {round}: guests of the killed server remain: {left:?}");
        assert_eq!(sandbox_cgroups(&data), Vec::<String>::new(), "round {round}: sandbox cgroups remain");
        assert_eq!(mounts_of(&data), Vec::<String>::new(), "round {round}: mounts remain");
        // Snapshots take the memory by default: a dump the kill cut short left no CRIU running.
        assert_eq!(criu_of(&data), Vec::<i32>::new(), "round {round}: CRIU of the killed server runs on");
        let dirs: Vec<_> =
            std::fs::read_dir(store.join("sandboxes")).unwrap().flatten().map(|e| e.file_name()).collect();
        assert!(dirs.is_empty(), "round {round}: sandbox directories remain: {dirs:?}");

        // The catalog, the layers and the acknowledgements agree.
        let listed: BTreeMap<String, String> = list_all(a)
            .await
            .iter()
            .map(|s| (s["snapshotID"].as_str().unwrap().to_string(), s["sandboxID"].as_str().unwrap().to_string()))
            .collect();
        let ids: BTreeSet<String> = listed.keys().map(|s| s.trim_end_matches(":default").to_string()).collect();
        assert_eq!(layer_dirs(&store), ids, "round {round}: layer directories and listed snapshots differ");
        let deleted = acks.deleted.lock().unwrap().clone();
        let deleting = acks.deleting.lock().unwrap().clone();
        for (snap, origin) in acks.snapshots.lock().unwrap().iter() {
            if deleted.contains(snap) {
                assert!(!listed.contains_key(snap), "round {round}: {snap} was deleted (204) but is listed");
            } else if !deleting.contains(snap) {
                assert_eq!(listed.get(snap), Some(origin), "round {round}: acknowledged snapshot {snap} is lost");
            }
        }
        // Every listed snapshot is complete, including any whose 201 never arrived.
        for (snap, origin) in &listed {
            if verified.insert(snap.clone()) {
                verify(a, snap, origin).await;
            }
        }
        eprintln!("crash under load: round {round}: killed after {delay:?}, {} snapshots listed", listed.len());
    }
    let errors = acks.server_errors.lock().unwrap().clone();
    assert!(errors.is_empty(), "5xx answers: {errors:#?}");
    let done = acks.done.lock().unwrap().clone();
    eprintln!(
        "crash under load: {ROUNDS} kill -9 rounds × {WORKERS} clients: {done:?}; {} snapshots verified, \
         {orphans} sandboxes orphaned by the kills and cleaned up; {:?}",
        verified.len(),
        t0.elapsed()
    );
    assert!(done.get("snapshot").copied().unwrap_or(0) >= ROUNDS, "too little load: {done:?}");
    assert!(orphans >= 1, "no kill came while sandboxes ran");

    // Everything goes, with its layers; the server stops clean.
    let a = server.addr;
    for s in list_all(a).await {
        let id = s["snapshotID"].as_str().unwrap();
        assert_eq!(call(a, "DELETE", &format!("/templates/{id}"), None).await.status, StatusCode::NO_CONTENT);
    }
    assert_eq!(layer_dirs(&server.store()), BTreeSet::new());
    server.stop();
    assert_eq!(mounts_of(&data), Vec::<String>::new());
    assert_eq!(sandbox_cgroups(&data), Vec::<String>::new());
    assert!(t0.elapsed() < Duration::from_secs(240), "the test took {:?}", t0.elapsed());
}
