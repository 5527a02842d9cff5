//! `kill -9` of the server in the middle of a snapshot, many times, at varied moments: after a
//! restart on the same data directory every listed snapshot is complete (a sandbox started
//! from it reads every byte of the origin's data), there is nothing in `layers/.staging`, no
//! layer directory without a snapshot, and nothing left of the killed server (processes,
//! cgroups, mounts). On the copy store, where a snapshot takes long enough to be cut in the
//! middle, and where its staging is on the host's filesystem to look at after the kill
//! (`crash_under_load.rs` kills servers on the btrfs store). Needs root (the engine).

mod common;

use bytes::Bytes;
use common::host::*;
use common::*;
use http_body_util::{BodyExt, Full};
use hyper::StatusCode;
use std::collections::{BTreeSet, HashMap};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// The origin's data: FILES files of FILE_SIZE bytes (50 MB), so that a snapshot takes a while.
const FILES: usize = 400;
const FILE_SIZE: usize = 128 * 1024;
/// kill -9 rounds (after one measured, unkilled snapshot).
const ROUNDS: usize = 16;
const COPY_STORE: &[&str] = &["--store", "copy"];

/// Deterministic content of file `i` of round `round` (xorshift), so the check can regenerate it.
fn content(round: usize, i: usize) -> Vec<u8> {
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15 ^ ((round as u64) << 32) ^ (i as u64 + 1);
    let mut out = Vec::with_capacity(FILE_SIZE);
    while out.len() < FILE_SIZE {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(FILE_SIZE);
    out
}

/// Starts a sandbox from `template` and writes the round's data into /home/user/data.
async fn origin_with_data(a: SocketAddr, round: usize) -> String {
    let id = create(a, r#"{"templateID":"base"}"#).await;
    for i in 0..FILES {
        let r = envd(a, &id, "POST", &format!("/files?path=/home/user/data/f{i:04}"), content(round, i)).await;
        assert_eq!(r.status, StatusCode::OK, "{}", String::from_utf8_lossy(&r.body));
    }
    let r = envd(a, &id, "POST", "/files?path=/home/user/round", round.to_string().into_bytes()).await;
    assert_eq!(r.status, StatusCode::OK);
    id
}

/// Starts a sandbox from `snapshot` and checks every byte of round `round`'s data in it.
async fn verify(a: SocketAddr, snapshot: &str, round: usize) {
    let r = call(a, "POST", "/sandboxes", Some(&format!(r#"{{"templateID":"{snapshot}"}}"#))).await;
    assert_eq!(r.status, StatusCode::CREATED, "start from {snapshot}: {}", String::from_utf8_lossy(&r.body));
    let id = r.json()["sandboxID"].as_str().unwrap().to_string();
    let r = envd(a, &id, "GET", "/files?path=/home/user/round", vec![]).await;
    assert_eq!(&r.body[..], round.to_string().as_bytes(), "snapshot {snapshot}: the round marker");
    for i in 0..FILES {
        let r = envd(a, &id, "GET", &format!("/files?path=/home/user/data/f{i:04}"), vec![]).await;
        assert_eq!(r.status, StatusCode::OK, "snapshot {snapshot}: f{i:04} is missing");
        assert!(r.body[..] == content(round, i)[..], "snapshot {snapshot}: f{i:04} differs ({} bytes)", r.body.len());
    }
    assert_eq!(call(a, "DELETE", &format!("/sandboxes/{id}"), None).await.status, StatusCode::NO_CONTENT);
}

/// The outcome of one round (printed).
#[derive(Debug)]
#[allow(dead_code)]
struct Round {
    delay_ms: u64,
    /// Killed after the 201 arrived (delay counted from then).
    after_answer: bool,
    /// `layers/.staging` held a layer at the time of the kill.
    mid_copy: bool,
    answered: bool,
    listed: usize,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_during_snapshots_leaves_complete_snapshots_or_none() {
    let t0 = Instant::now();
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().to_path_buf();
    let mut server = Server::start_in_with(&data, Some(KEY), COPY_STORE).unwrap();

    // Round 0: one snapshot taken to the end, to learn how long one takes here.
    let origin = origin_with_data(server.addr, 0).await;
    let t = Instant::now();
    let r = call(server.addr, "POST", &format!("/sandboxes/{origin}/snapshots"), Some("{}")).await;
    let full = t.elapsed();
    assert_eq!(r.status, StatusCode::CREATED, "{}", String::from_utf8_lossy(&r.body));
    let first = r.json()["snapshotID"].as_str().unwrap().to_string();
    verify(server.addr, &first, 0).await;
    eprintln!("crash test: a 50 MB / {FILES}-file snapshot takes {full:?}");

    // Which round each snapshot's origin belongs to.
    let mut round_of: HashMap<String, usize> = HashMap::from([(origin.clone(), 0)]);
    let mut rounds = Vec::new();
    for round in 1..=ROUNDS {
        let addr = server.addr;
        let origin = origin_with_data(addr, round).await;
        round_of.insert(origin.clone(), round);
        let old_guests = guests(&data);
        assert!(!old_guests.is_empty(), "the origin's guest runs");
        let old_sandboxes = vec![origin.clone()];

        // Delays from 0 to 2.5× a full snapshot (snapshot times vary with the disk's load: the
        // sync flushes the whole filesystem), spread over the rounds; the last rounds kill just
        // after the 201 arrived (an acknowledged snapshot must survive).
        let after_answer = round > ROUNDS - 2;
        let delay = if after_answer {
            Duration::from_millis(5 * (ROUNDS - round) as u64)
        } else {
            full.mul_f64(2.5 * (round - 1) as f64 / (ROUNDS - 3) as f64)
        };
        let path = format!("/sandboxes/{origin}/snapshots");
        let request = tokio::spawn(async move {
            let stream = tokio::net::TcpStream::connect(addr).await.ok()?;
            let (mut tx, conn) =
                hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream)).await.ok()?;
            tokio::spawn(conn);
            let r = req(addr, "POST", &path)
                .header("x-api-key", KEY)
                .header("content-type", "application/json")
                .body(Full::new(Bytes::from_static(b"{}")))
                .unwrap();
            let res = tx.send_request(r).await.ok()?;
            let status = res.status();
            let body = res.into_body().collect().await.ok()?.to_bytes();
            Some((status, body))
        });
        let answer = if after_answer {
            let answer = request.await.unwrap();
            tokio::time::sleep(delay).await;
            server.child.kill().unwrap(); // SIGKILL
            server.child.wait().unwrap();
            answer
        } else {
            tokio::time::sleep(delay).await;
            server.child.kill().unwrap(); // SIGKILL
            server.child.wait().unwrap();
            request.await.unwrap()
        };
        // Whether the kill came while a layer was being written.
        let mid_copy = !staging_entries(&data).is_empty();
        let acknowledged = match &answer {
            Some((status, body)) => {
                assert_eq!(*status, StatusCode::CREATED, "{}", String::from_utf8_lossy(body));
                Some(
                    serde_json::from_slice::<serde_json::Value>(body).unwrap()["snapshotID"]
                        .as_str()
                        .unwrap()
                        .to_string(),
                )
            }
            None => None,
        };

        server = Server::start_in_with(&data, Some(KEY), COPY_STORE)
            .unwrap_or_else(|e| panic!("restart after round {round}: {e}"));
        let a = server.addr;

        // Nothing of the killed server is left once the new one listens.
        assert_eq!(staging_entries(&data), Vec::<String>::new(), "round {round}: layers/.staging is not empty");
        let left: Vec<i32> = guests(&data).into_iter().filter(|p| old_guests.contains(p)).collect();
        assert!(left.is_empty(), "round {round}: guest processes of the killed server remain: {left:?}");
        assert_eq!(
            cgroups_of(&old_sandboxes),
            Vec::<String>::new(),
            "round {round}: cgroups of the killed server remain"
        );
        assert_eq!(mounts_of(&data), Vec::<String>::new(), "round {round}: mounts remain");
        // A dump the kill cut short (snapshots take the memory by default) went with the server.
        assert_eq!(criu_of(&data), Vec::<i32>::new(), "round {round}: a CRIU of the killed server runs on");
        let sandboxes: Vec<_> =
            std::fs::read_dir(data.join("sandboxes")).unwrap().flatten().map(|e| e.file_name()).collect();
        assert!(sandboxes.is_empty(), "round {round}: sandbox directories remain: {sandboxes:?}");

        // Every listed snapshot has its layer and nothing else has one.
        let listed = list_all(a).await;
        let ids: BTreeSet<String> =
            listed.iter().map(|s| s["snapshotID"].as_str().unwrap().trim_end_matches(":default").to_string()).collect();
        assert_eq!(ids.len(), listed.len(), "round {round}: duplicate snapshot IDs: {listed:?}");
        assert_eq!(layer_dirs(&data), ids, "round {round}: layer directories and listed snapshots differ");

        // This round's snapshot: none, or one that is complete. An acknowledged one must be there.
        let mine: Vec<String> = listed
            .iter()
            .filter(|s| s["sandboxID"] == origin.as_str())
            .map(|s| s["snapshotID"].as_str().unwrap().to_string())
            .collect();
        assert!(mine.len() <= 1, "round {round}: {mine:?}");
        if let Some(id) = &acknowledged {
            assert_eq!(mine, vec![id.clone()], "round {round}: the acknowledged snapshot {id} is not listed");
        }
        for id in &mine {
            verify(a, id, round).await;
        }
        rounds.push(Round {
            delay_ms: delay.as_millis() as u64,
            after_answer,
            mid_copy,
            answered: acknowledged.is_some(),
            listed: mine.len(),
        });
    }
    eprintln!("crash test rounds: {rounds:?}");

    // The delays covered the window: some kills came before the snapshot was made, some after.
    let complete = rounds.iter().filter(|r| r.listed == 1).count();
    let none = rounds.iter().filter(|r| r.listed == 0).count();
    let complete_unanswered = rounds.iter().filter(|r| r.listed == 1 && !r.answered).count();
    let mid_copy = rounds.iter().filter(|r| r.mid_copy).count();
    eprintln!(
        "crash test: {complete} complete ({complete_unanswered} of them never answered), {none} none, \
         {mid_copy} killed with a layer in staging, in {:?}",
        t0.elapsed()
    );
    assert!(complete >= 1 && none >= 1 && mid_copy >= 1, "the kills did not cover the snapshot: {rounds:?}");

    // All the snapshots are still sound after all these crashes; then they go, with their layers.
    let a = server.addr;
    let listed = list_all(a).await;
    for s in &listed {
        let id = s["snapshotID"].as_str().unwrap();
        let round = round_of[s["sandboxID"].as_str().unwrap()];
        if round == 0 {
            verify(a, id, 0).await;
        }
        assert_eq!(call(a, "DELETE", &format!("/templates/{id}"), None).await.status, StatusCode::NO_CONTENT);
    }
    assert_eq!(layer_dirs(&data), BTreeSet::new());
    server.stop();
    assert_eq!(mounts_of(&data), Vec::<String>::new());
    assert!(t0.elapsed() < Duration::from_secs(150), "the crash test took {:?}", t0.elapsed());
}
