//! A full disk: the data directory is a tmpfs with 64 MB besides the copy of envd the server makes
//! in it (too little for the btrfs store's image: the server falls back to the copy store). A file write that does not fit is a 507
//! JSON error; a snapshot that does not fit fails with a 507 whose message says there is no
//! space, and leaves everything else as it was: the earlier snapshot is listed and whole, both
//! sandboxes still run, the failed snapshot leaves no layer and no staging behind, and the
//! space it took is free again; once space is freed, snapshots work again. The tmpfs is
//! unmounted at the end even when the test fails (the server is stopped first). Needs root.

mod common;

use common::host::*;
use common::*;
use hyper::StatusCode;
use nix::mount::{mount, umount2, MntFlags, MsFlags};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

const SIZE_MB: u64 = 64;
const MB: usize = 1 << 20;

/// A tmpfs mounted on a fresh temporary directory; unmounted (lazily, so that it cannot fail
/// on a busy mount) and removed on drop.
struct Tmpfs {
    dir: tempfile::TempDir,
}

impl Tmpfs {
    fn mount(size_mb: u64) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let opts = format!("size={size_mb}m,mode=0700");
        mount(Some("tmpfs"), dir.path(), Some("tmpfs"), MsFlags::MS_NOSUID | MsFlags::MS_NODEV, Some(opts.as_str()))
            .expect("mount a tmpfs (needs root)");
        Tmpfs { dir }
    }

    fn path(&self) -> PathBuf {
        self.dir.path().to_path_buf()
    }

    fn free_bytes(&self) -> u64 {
        let s = nix::sys::statvfs::statvfs(self.dir.path()).unwrap();
        s.blocks_available() * s.fragment_size()
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        if let Err(e) = umount2(self.dir.path(), MntFlags::MNT_DETACH) {
            eprintln!("unmounting {}: {e}", self.dir.path().display());
        }
    }
}

fn is_mounted(path: &Path) -> bool {
    let p = path.to_string_lossy().into_owned();
    std::fs::read_to_string("/proc/self/mountinfo").unwrap().lines().any(|l| l.split(' ').nth(4) == Some(p.as_str()))
}

fn pattern(seed: u8, len: usize) -> Vec<u8> {
    (0..len).map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed)).collect()
}

async fn snapshot(a: std::net::SocketAddr, id: &str) -> Res {
    call(a, "POST", &format!("/sandboxes/{id}/snapshots"), Some("{}")).await
}

/// Sandbox A with 16 MB of data, and a snapshot of it (which fits): A's id, its data, the
/// snapshot's id.
async fn sandbox_and_snapshot(a: std::net::SocketAddr) -> (String, Vec<u8>, String) {
    let id = create(a, r#"{"templateID":"base"}"#).await;
    let data = pattern(1, 16 * MB);
    assert_eq!(envd(a, &id, "POST", "/files?path=/home/user/a.bin", data.clone()).await.status, StatusCode::OK);
    let r = snapshot(a, &id).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", String::from_utf8_lossy(&r.body));
    let snapshot_id = r.json()["snapshotID"].as_str().unwrap().to_string();
    (id, data, snapshot_id)
}

async fn runs(a: std::net::SocketAddr, id: &str) -> bool {
    let body = sandbank_protocol::connect::encode_envelope(0, br#"{"process":{"cmd":"/bin/echo","args":["alive"]}}"#);
    let r = send(
        a,
        envd_req(a, id, "POST", "/process.Process/Start")
            .await
            .header("content-type", "application/connect+json")
            .body(http_body_util::Full::new(body))
            .unwrap(),
    )
    .await;
    String::from_utf8_lossy(&r.body).contains("YWxpdmUK") // base64 "alive\n"
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_fails_the_snapshot_and_nothing_else() {
    // Declared first, dropped last: the server (and its sandboxes) go before the unmount.
    let envd_mb = std::fs::metadata(env!("CARGO_BIN_EXE_sandbank")).unwrap().len().div_ceil(MB as u64);
    let fs = Tmpfs::mount(SIZE_MB + envd_mb);
    let data = fs.path();
    let server = Server::start_in(&data, Some(KEY)).unwrap_or_else(|e| panic!("{e}"));
    let a = server.addr;
    let log = server.stderr.lock().unwrap().clone();
    assert!(log.contains("the btrfs layer store cannot be used") && log.contains("MB free"), "{log}");

    let (a_id, a_data, first) = sandbox_and_snapshot(a).await;

    // B: fills the disk but for 2 MB.
    let b_id = create(a, r#"{"templateID":"base"}"#).await;
    let fill = (fs.free_bytes() as usize).saturating_sub(2 * MB);
    assert!(fill > 8 * MB, "only {fill} bytes free after the first snapshot");
    let r = envd(a, &b_id, "POST", "/files?path=/home/user/fill.bin", pattern(2, fill)).await;
    assert_eq!(r.status, StatusCode::OK, "{}", String::from_utf8_lossy(&r.body));

    // A write that does not fit: 507 JSON (the SDK's NotEnoughSpaceError).
    let r = envd(a, &b_id, "POST", "/files?path=/home/user/more.bin", pattern(3, 4 * MB)).await;
    let m = r.error(507);
    assert!(m.contains("No space left on device"), "{m}");
    // What part of it was written goes, so that B has its 2 MB again.
    let r = send(
        a,
        envd_req(a, &b_id, "POST", "/filesystem.Filesystem/Remove")
            .await
            .header("content-type", "application/json")
            .body(http_body_util::Full::new(bytes::Bytes::from_static(br#"{"path":"/home/user/more.bin"}"#)))
            .unwrap(),
    )
    .await;
    assert!(r.status == StatusCode::OK || r.status == StatusCode::NOT_FOUND, "{}", String::from_utf8_lossy(&r.body));
    let free_before = fs.free_bytes();

    // The snapshot of B needs as much again: it fails, saying why.
    let r = snapshot(a, &b_id).await;
    let status = r.status.as_u16();
    let m = r.error(status);
    assert_eq!(status, 507, "{m}");
    assert!(m.contains("No space left on device") && m.contains(&b_id), "{m}");
    eprintln!("disk full: the snapshot failed with {status}: {m}");

    // Nothing else changed: no staging, no stray layer, the space is back.
    assert_eq!(staging_entries(&data), Vec::<String>::new());
    let listed: Vec<String> = list_all(a).await.iter().map(|s| s["snapshotID"].as_str().unwrap().to_string()).collect();
    assert_eq!(listed, vec![first.clone()]);
    assert_eq!(layer_dirs(&data), BTreeSet::from([first.trim_end_matches(":default").to_string()]));
    let free_after = fs.free_bytes();
    assert!(free_after + MB as u64 >= free_before, "the failed snapshot kept {} bytes", free_before - free_after);
    // Both sandboxes still run, with their files.
    for id in [&a_id, &b_id] {
        assert_eq!(call(a, "GET", &format!("/sandboxes/{id}"), None).await.status, StatusCode::OK);
        assert!(runs(a, id).await, "sandbox {id} no longer runs commands");
    }
    let r = envd(a, &a_id, "GET", "/files?path=/home/user/a.bin", vec![]).await;
    assert!(r.body[..] == a_data[..], "A's file changed");
    // The first snapshot is whole: a new sandbox reads A's data from it.
    let c_id = create(a, &format!(r#"{{"templateID":"{first}"}}"#)).await;
    let r = envd(a, &c_id, "GET", "/files?path=/home/user/a.bin", vec![]).await;
    assert!(r.status == StatusCode::OK && r.body[..] == a_data[..], "the first snapshot lost A's file");

    // Space freed (B goes), snapshots work again.
    for id in [&b_id, &c_id] {
        assert_eq!(call(a, "DELETE", &format!("/sandboxes/{id}"), None).await.status, StatusCode::NO_CONTENT);
    }
    let r = snapshot(a, &a_id).await;
    assert_eq!(r.status, StatusCode::CREATED, "after freeing space: {}", String::from_utf8_lossy(&r.body));
    let second = r.json()["snapshotID"].as_str().unwrap().to_string();

    assert_eq!(call(a, "DELETE", &format!("/sandboxes/{a_id}"), None).await.status, StatusCode::NO_CONTENT);
    for s in [&first, &second] {
        assert_eq!(call(a, "DELETE", &format!("/templates/{s}"), None).await.status, StatusCode::NO_CONTENT);
    }
    server.stop();
    assert_eq!(
        mounts_of(&data).into_iter().filter(|l| l.split(' ').nth(4) != Some(&*data.to_string_lossy())).count(),
        0
    );
    assert_eq!(sandbox_cgroups(&data), Vec::<String>::new());
    let mountpoint = data.clone();
    drop(fs);
    assert!(!is_mounted(&mountpoint), "the tmpfs is still mounted");
}

/// Runs `cmd` with `/bin/sh -c` in sandbox `id` (as root); its stdout and stderr, together.
async fn sh(a: std::net::SocketAddr, id: &str, cmd: &str) -> String {
    use base64::Engine as _;
    let start = serde_json::json!({"process": {"cmd": "/bin/sh", "args": ["-c", format!("{{ {cmd}; }} 2>&1")]}});
    let body = sandbank_protocol::connect::encode_envelope(0, start.to_string().as_bytes());
    let r = send(
        a,
        envd_req(a, id, "POST", "/process.Process/Start")
            .await
            .header("content-type", "application/connect+json")
            .header("authorization", "Basic cm9vdDo=") // user root
            .body(http_body_util::Full::new(body))
            .unwrap(),
    )
    .await;
    let mut decoder = sandbank_protocol::connect::EnvelopeDecoder::default();
    decoder.push(&r.body);
    let mut out = Vec::new();
    while let Some(envelope) = decoder.next().unwrap() {
        let event: serde_json::Value = serde_json::from_slice(&envelope.payload).unwrap();
        if let Some(data) = event.pointer("/event/data/stdout").and_then(|d| d.as_str()) {
            out.extend(base64::engine::general_purpose::STANDARD.decode(data).unwrap());
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The store fills up (docs/RELIABILITY.md): the data directory is a tmpfs of 420 MB, so the btrfs
/// store's image is made of nine tenths of it, and sandboxes' disk limits (4 GB) are more than it
/// holds. A sandbox that fills it gets ENOSPC inside and 507 on upload; a new sandbox a 507 (or
/// starts), a snapshot of the full sandbox a 507 (or is whole); nothing else breaks: the other
/// sandbox runs and reads its files, and once the filler frees its space, writes, starts and
/// snapshots work again, the earlier snapshot whole. Everything goes with the server.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_store_fails_writes_and_nothing_else() {
    let fs = Tmpfs::mount(420);
    let data = fs.path();
    let server = Server::start_in_with(&data, Some(KEY), &["--store", "btrfs", "--disk-limit-mb", "4096"])
        .unwrap_or_else(|e| panic!("{e}"));
    let a = server.addr;
    let store = server.store();
    assert_ne!(store, data, "the store is mounted in the server's mount namespace");

    let (a_id, a_data, first) = sandbox_and_snapshot(a).await;

    // B fills the store.
    let b_id = create(a, r#"{"templateID":"base"}"#).await;
    let out = sh(a, &b_id, "dd if=/dev/zero of=/home/user/fill bs=1M count=1024; echo rc=$?").await;
    assert!(out.contains("No space left on device") && out.contains("rc=1"), "{out}");
    let r = envd(a, &b_id, "POST", "/files?path=/home/user/more.bin", pattern(3, 4 * MB)).await;
    let m = r.error(507);
    assert!(m.contains("No space left on device"), "{m}");

    // A new sandbox: refused for want of space (507), leaving nothing, or started.
    let r = call(a, "POST", "/sandboxes", Some(r#"{"templateID":"base"}"#)).await;
    let extra = match r.status.as_u16() {
        201 => Some(r.json()["sandboxID"].as_str().unwrap().to_string()),
        status => {
            let m = r.error(status);
            assert_eq!(status, 507, "{m}");
            assert!(m.contains("No space left on device"), "{m}");
            let dirs: BTreeSet<String> = std::fs::read_dir(store.join("sandboxes"))
                .unwrap()
                .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect();
            assert_eq!(dirs, BTreeSet::from([a_id.clone(), b_id.clone()]), "the failed start left its directory");
            None
        }
    };
    eprintln!("a new sandbox on the full store: {:?}", extra.as_deref().unwrap_or("507"));

    // A snapshot of B: refused for want of space (507, naming B), or whole.
    let r = snapshot(a, &b_id).await;
    let b_snapshot = match r.status.as_u16() {
        201 => Some(r.json()["snapshotID"].as_str().unwrap().to_string()),
        status => {
            let m = r.error(status);
            assert_eq!(status, 507, "{m}");
            assert!(m.contains(&b_id), "{m}");
            None
        }
    };
    eprintln!("a snapshot of the sandbox that filled the store: {:?}", b_snapshot.as_deref().unwrap_or("507"));
    assert_eq!(staging_entries(&store), Vec::<String>::new());

    // Nothing else changed: A runs and reads its file.
    assert!(runs(a, &a_id).await, "A no longer runs commands");
    let r = envd(a, &a_id, "GET", "/files?path=/home/user/a.bin", vec![]).await;
    assert!(r.body[..] == a_data[..], "A's file changed");

    // B frees its space: it writes again, and a snapshot of it works.
    let out = sh(a, &b_id, "rm /home/user/fill && sync && echo freed").await;
    assert_eq!(out, "freed\n");
    if let Some(s) = &b_snapshot {
        // The snapshot still holds the filler: delete it, or the space stays taken.
        assert_eq!(call(a, "DELETE", &format!("/templates/{s}"), None).await.status, StatusCode::NO_CONTENT);
    }
    // btrfs frees the space of a deleted file or subvolume in the background, after a commit.
    let freed = std::time::Instant::now();
    loop {
        let r = envd(a, &b_id, "POST", "/files?path=/home/user/more.bin", pattern(3, 4 * MB)).await;
        if r.status == StatusCode::OK {
            break;
        }
        assert!(
            freed.elapsed().as_secs() < 20,
            "no space 20 s after freeing it (the store commits every 5 s): {}",
            String::from_utf8_lossy(&r.body)
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    eprintln!("the freed space was back in {:?}", freed.elapsed());
    // The first snapshot is whole: a new sandbox reads A's data from it.
    let c_id = create(a, &format!(r#"{{"templateID":"{first}"}}"#)).await;
    let r = envd(a, &c_id, "GET", "/files?path=/home/user/a.bin", vec![]).await;
    assert!(r.status == StatusCode::OK && r.body[..] == a_data[..], "the first snapshot lost A's file");
    let r = snapshot(a, &b_id).await;
    assert_eq!(r.status, StatusCode::CREATED, "after freeing space: {}", String::from_utf8_lossy(&r.body));
    let second = r.json()["snapshotID"].as_str().unwrap().to_string();

    for id in [&a_id, &b_id, &c_id].into_iter().chain(&extra) {
        assert_eq!(call(a, "DELETE", &format!("/sandboxes/{id}"), None).await.status, StatusCode::NO_CONTENT);
    }
    for s in [&first, &second] {
        assert_eq!(call(a, "DELETE", &format!("/templates/{s}"), None).await.status, StatusCode::NO_CONTENT);
    }
    assert_eq!(layer_dirs(&store), BTreeSet::new());
    server.stop();
    assert_eq!(
        mounts_of(&data).into_iter().filter(|l| l.split(' ').nth(4) != Some(&*data.to_string_lossy())).count(),
        0
    );
    assert_eq!(sandbox_cgroups(&data), Vec::<String>::new());
    let loops = std::process::Command::new("losetup").arg("-a").output().unwrap();
    assert!(
        !String::from_utf8_lossy(&loops.stdout).contains(&*data.to_string_lossy()),
        "the store's loop device is left"
    );
}
