//! The CLI beside `serve`: `sandboxes ls|kill`, `snapshots ls|rm`, `snapshot`, `templates ls|rm`, `doctor`, run as
//! a user would against a real server, configured the local way (`SANDBANK_URL` /
//! `SANDBANK_API_KEY`, or the daemon's `daemon.json`) and the cloud way (`NOVITA_*`). Needs root
//! and the engine.

mod common;

use common::*;
use hyper::StatusCode;
use serde_json::Value;
use std::path::Path;
use std::process::Output;

/// How the CLI finds its server.
enum Via<'a> {
    /// `SANDBANK_URL` + `SANDBANK_API_KEY` (the local default's first choice).
    Local(&'a Server),
    /// `NOVITA_API_URL` / `NOVITA_SANDBOX_URL` / `NOVITA_API_KEY`, as for the cloud; a bogus
    /// `SANDBANK_URL` proves they win.
    Cloud(&'a Server, &'a str),
    /// Nothing but `SANDBANK_DATA_DIR`: the running daemon's daemon.json, if any.
    DataDir(&'a Path),
}

async fn cli(via: Via<'_>, args: &[&str]) -> Output {
    let mut cmd = common::cli::command(args);
    match via {
        Via::Local(s) => {
            cmd.env("SANDBANK_URL", s.url())
                .env("SANDBANK_API_KEY", KEY)
                .env("SANDBANK_DATA_DIR", "/nonexistent/sandbank-cli-test");
        }
        Via::Cloud(s, key) => {
            cmd.env("NOVITA_API_URL", s.url())
                .env("NOVITA_SANDBOX_URL", s.url())
                .env("NOVITA_API_KEY", key)
                .env("SANDBANK_URL", "http://127.0.0.1:9")
                .env("SANDBANK_DATA_DIR", "/nonexistent/sandbank-cli-test");
        }
        Via::DataDir(d) => {
            cmd.env("SANDBANK_DATA_DIR", d);
        }
    }
    common::cli::run_logged(cmd, args).await
}

fn stdout(o: &Output) -> String {
    String::from_utf8(o.stdout.clone()).unwrap()
}

fn stderr(o: &Output) -> String {
    String::from_utf8(o.stderr.clone()).unwrap()
}

/// Exit status 0, nothing on stderr; returns stdout.
fn ok(o: &Output) -> String {
    assert!(o.status.success(), "status {}: {}", o.status, stderr(o));
    assert_eq!(stderr(o), "", "stderr of a successful command");
    stdout(o)
}

/// Exit status 1; returns stderr.
fn fails(o: &Output) -> String {
    assert_eq!(o.status.code(), Some(1), "stdout: {}", stdout(o));
    stderr(o)
}

fn json(o: &Output) -> Vec<Value> {
    let s = ok(o);
    serde_json::from_str::<Value>(&s)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {s}"))
        .as_array()
        .unwrap_or_else(|| panic!("not an array: {s}"))
        .clone()
}

/// The table's rows split into cells at the header's column starts; asserts every cell starts
/// where its header does.
fn table(text: &str, header: &[&str]) -> Vec<Vec<String>> {
    let mut lines = text.lines();
    let head = lines.next().expect("a header line");
    let mut starts = Vec::new();
    let mut at = 0;
    for h in header {
        let i = head[at..].find(h).unwrap_or_else(|| panic!("{h} in {head:?}")) + at;
        starts.push(i);
        at = i + h.len();
    }
    assert_eq!(starts[0], 0, "{head:?}");
    assert_eq!(head.trim_end(), head, "no trailing spaces");
    lines
        .map(|l| {
            assert_eq!(l.trim_end(), l, "no trailing spaces: {l:?}");
            starts
                .iter()
                .enumerate()
                .map(|(i, &s)| {
                    let end = starts.get(i + 1).copied().unwrap_or(l.len()).min(l.len());
                    let cell = l.get(s.min(l.len())..end).unwrap_or("");
                    if i > 0 && !cell.is_empty() {
                        // A cell starts at its column, after the separating spaces.
                        assert!(l.as_bytes()[s - 1] == b' ', "{l:?} column {}", header[i]);
                        assert_ne!(cell.as_bytes()[0], b' ', "{l:?} column {}", header[i]);
                    }
                    cell.trim_end().to_string()
                })
                .collect()
        })
        .collect()
}

const SANDBOX_COLUMNS: &[&str] = &["ID", "TEMPLATE", "STARTED", "ENDS", "CPU", "MEM MB", "METADATA"];
const SNAPSHOT_COLUMNS: &[&str] =
    &["SNAPSHOT ID", "NAME", "SANDBOX", "PARENT", "CREATED", "EXPIRES", "SIZE", "MODE", "LABELS"];

fn ids(items: &[Value], key: &str) -> Vec<String> {
    items.iter().map(|v| v[key].as_str().unwrap().to_string()).collect()
}

#[tokio::test]
async fn sandboxes_ls_and_kill_local_and_cloud() {
    let s = Server::start();
    let a = s.addr;
    let one = create(a, r#"{"templateID":"base","metadata":{"owner":"cli","n":"1"},"timeout":600}"#).await;
    let two = create(a, r#"{"templateID":"base"}"#).await;
    let detail = call(a, "GET", &format!("/sandboxes/{one}"), None).await.json();

    // The table: newest first, aligned, real values.
    let t = ok(&cli(Via::Local(&s), &["sandboxes", "ls"]).await);
    let rows = table(&t, SANDBOX_COLUMNS);
    assert_eq!(rows.len(), 2, "{t}");
    assert_eq!(rows[0][0], two);
    assert_eq!(rows[1][0], one);
    assert_eq!(rows[1][1], "base");
    let started = time(&detail["startedAt"]);
    assert_eq!(rows[1][2], started.format("%Y-%m-%d %H:%M:%SZ").to_string());
    assert_eq!(rows[1][3], time(&detail["endAt"]).format("%Y-%m-%d %H:%M:%SZ").to_string());
    assert_eq!(rows[1][4], detail["cpuCount"].to_string());
    assert_eq!(rows[1][5], detail["memoryMB"].to_string());
    assert_eq!(rows[1][6], "n=1,owner=cli");
    assert_eq!(rows[0][6], "");

    // --json: the API's objects and keys.
    let items = json(&cli(Via::Local(&s), &["sandboxes", "ls", "--json"]).await);
    assert_eq!(ids(&items, "sandboxID"), vec![two.clone(), one.clone()]);
    let o = &items[1];
    assert_eq!(o["templateID"], "base");
    assert_eq!(o["state"], "running");
    assert_eq!(o["metadata"], serde_json::json!({"owner": "cli", "n": "1"}));
    assert_eq!(o["cpuCount"], detail["cpuCount"]);
    assert_eq!(o["memoryMB"], detail["memoryMB"]);
    assert_eq!(o["envdVersion"], "0.6.4");
    assert_eq!(time(&o["startedAt"]), started);
    assert_eq!(time(&o["endAt"]), time(&detail["endAt"]));

    // The cloud's variables reach the same server (and win over SANDBANK_URL).
    let items = json(&cli(Via::Cloud(&s, KEY), &["sandboxes", "ls", "--json"]).await);
    assert_eq!(ids(&items, "sandboxID"), vec![two.clone(), one.clone()]);
    let e = fails(&cli(Via::Cloud(&s, "wrong-key"), &["sandboxes", "ls"]).await);
    assert!(e.starts_with("sandbank: Unauthorized"), "{e}");

    // kill: the known one dies, the unknown one is named, exit 1.
    let o = cli(Via::Local(&s), &["sandboxes", "kill", &one, "nosuchsandbox"]).await;
    let e = fails(&o);
    assert_eq!(stdout(&o), format!("{one}\n"));
    assert_eq!(e, "sandbank: sandbox nosuchsandbox not found\n");
    assert_eq!(call(a, "GET", &format!("/sandboxes/{one}"), None).await.status, StatusCode::NOT_FOUND);
    // Killing it again: unknown now.
    let e = fails(&cli(Via::Local(&s), &["sandboxes", "kill", &one]).await);
    assert!(e.contains(&one) && e.contains("not found"), "{e}");
    assert_eq!(ok(&cli(Via::Cloud(&s, KEY), &["sandboxes", "kill", &two]).await), format!("{two}\n"));
    assert_eq!(call(a, "GET", "/v2/sandboxes", None).await.json(), serde_json::json!([]));
    let t = ok(&cli(Via::Local(&s), &["sandboxes", "ls"]).await);
    assert_eq!(t.lines().count(), 1, "only the header: {t}");
    assert_eq!(ok(&cli(Via::Local(&s), &["sandboxes", "ls", "--json"]).await).trim(), "[]");
    s.stop();
}

#[tokio::test]
async fn snapshot_snapshots_ls_and_rm() {
    let s = Server::start();
    let a = s.addr;
    let sb = create(a, r#"{"templateID":"base"}"#).await;
    let other = create(a, r#"{"templateID":"base"}"#).await;

    // `snapshot`: the ID alone on stdout (stderr is not a terminal: no spinner).
    let out = ok(&cli(Via::Local(&s), &["snapshot", &sb]).await);
    let snap1 = out.trim_end_matches('\n').to_string();
    assert_eq!(out, format!("{snap1}\n"));
    assert!(snap1.ends_with(":default"), "{snap1}");
    // --json: the API's snapshot object.
    let o = cli(Via::Cloud(&s, KEY), &["snapshot", &other, "--json"]).await;
    let v: Value = serde_json::from_str(&ok(&o)).unwrap();
    let snap2 = v["snapshotID"].as_str().unwrap().to_string();
    assert_ne!(snap2, snap1);
    assert_eq!(v["sandboxID"], other.as_str());
    assert_eq!(v["mode"], "full", "with memory: the test setup provides CRIU");
    assert!(v["sizeBytes"].is_u64(), "{v}");
    assert!(v["createdAt"].is_string(), "{v}");
    let e = fails(&cli(Via::Local(&s), &["snapshot", "nosuchsandbox"]).await);
    assert!(e.contains("nosuchsandbox") && e.contains("not found"), "{e}");

    // ls: newest first; the table's values are the API's.
    let all = json(&cli(Via::Local(&s), &["snapshots", "ls", "--json"]).await);
    assert_eq!(ids(&all, "snapshotID"), vec![snap2.clone(), snap1.clone()]);
    assert_eq!(all[1]["sandboxID"], sb.as_str());
    let t = ok(&cli(Via::Local(&s), &["snapshots", "ls"]).await);
    let rows = table(&t, SNAPSHOT_COLUMNS);
    assert_eq!(rows.len(), 2, "{t}");
    assert_eq!(rows[1][0], snap1);
    assert_eq!(rows[1][1], "-", "no name");
    assert_eq!(rows[1][2], sb);
    assert_eq!(rows[1][3], "-");
    assert_eq!(rows[1][4], time(&all[1]["createdAt"]).format("%Y-%m-%d %H:%M:%SZ").to_string());
    assert_eq!(rows[1][5], "never");
    let size = all[1]["sizeBytes"].as_u64().unwrap();
    assert!(rows[1][6].ends_with("B") && rows[1][6].starts_with(|c: char| c.is_ascii_digit()), "{:?}", rows[1][6]);
    if size < 1024 {
        assert_eq!(rows[1][6], format!("{size} B"));
    }
    assert_eq!(rows[1][7], "full");
    assert_eq!(rows[1][8], "-", "no labels");
    let only = json(&cli(Via::Local(&s), &["snapshots", "ls", "--sandbox", &other, "--json"]).await);
    assert_eq!(ids(&only, "snapshotID"), vec![snap2.clone()]);

    // A sandbox started from snap1 makes it a parent, and keeps it in use.
    let child = create(a, &format!(r#"{{"templateID":"{snap1}"}}"#)).await;
    let snap3 = ok(&cli(Via::Local(&s), &["snapshot", &child]).await).trim().to_string();
    let t = ok(&cli(Via::Local(&s), &["snapshots", "ls", "--sandbox", &child]).await);
    let rows = table(&t, SNAPSHOT_COLUMNS);
    assert_eq!(rows.len(), 1, "{t}");
    assert_eq!(rows[0][0], snap3);
    assert_eq!(rows[0][3], snap1);

    let o = cli(Via::Local(&s), &["snapshots", "rm", &snap1]).await;
    let e = fails(&o);
    assert_eq!(stdout(&o), "");
    assert!(e.starts_with(&format!("sandbank: cannot remove snapshot {snap1}: 400: ")), "{e}");
    assert!(e.contains(&child), "the server's message names the sandbox: {e}");
    let o = cli(Via::Local(&s), &["snapshots", "rm", &snap2, "nosuchsnapshot"]).await;
    assert_eq!(fails(&o), "sandbank: snapshot nosuchsnapshot not found\n");
    assert_eq!(stdout(&o), format!("{snap2}\n"));

    for id in [&sb, &other, &child] {
        assert_eq!(ok(&cli(Via::Local(&s), &["sandboxes", "kill", id]).await), format!("{id}\n"));
    }
    assert_eq!(
        ok(&cli(Via::Cloud(&s, KEY), &["snapshots", "rm", &snap3, &snap1]).await),
        format!("{snap3}\n{snap1}\n")
    );
    assert_eq!(ok(&cli(Via::Local(&s), &["snapshots", "ls", "--json"]).await).trim(), "[]");
    let t = ok(&cli(Via::Local(&s), &["snapshots", "ls"]).await);
    assert_eq!(t.lines().count(), 1, "only the header: {t}");
    s.stop();
}

const TEMPLATE_COLUMNS: &[&str] = &["NAME", "TEMPLATE ID", "TAGS", "STATUS", "BUILDS", "UPDATED"];

/// Builds template `name` (E2B's build API, as the SDK drives it) with one RUN step; returns
/// its ID once the build is ready.
async fn build_template(a: std::net::SocketAddr, name: &str, cmd: &str) -> String {
    let r = call(a, "POST", "/v3/templates", Some(&format!(r#"{{"name":"{name}"}}"#))).await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", String::from_utf8_lossy(&r.body));
    let (id, build) =
        (r.json()["templateID"].as_str().unwrap().to_string(), r.json()["buildID"].as_str().unwrap().to_string());
    let steps = serde_json::json!({ "steps": [{ "type": "RUN", "args": [cmd], "force": false }], "force": false });
    let r = call(a, "POST", &format!("/v2/templates/{id}/builds/{build}"), Some(&steps.to_string())).await;
    assert_eq!(r.status, StatusCode::ACCEPTED);
    for _ in 0..300 {
        let s = call(a, "GET", &format!("/templates/{id}/builds/{build}/status"), None).await.json();
        match s["status"].as_str() {
            Some("ready") => return id,
            Some("building" | "waiting") => tokio::time::sleep(std::time::Duration::from_millis(100)).await,
            _ => panic!("the build failed: {s}"),
        }
    }
    panic!("the build of {name} did not end in 30 s")
}

#[tokio::test]
async fn templates_ls_and_rm() {
    let s = Server::start();
    let a = s.addr;
    let t = ok(&cli(Via::Local(&s), &["templates", "ls"]).await);
    assert_eq!(t.lines().count(), 1, "only the header: {t}");
    let first = build_template(a, "first", "echo one > /home/user/one").await;
    let second = build_template(a, "second", "true").await;
    build_template(a, "second", "echo again").await;

    let all = json(&cli(Via::Cloud(&s, KEY), &["templates", "ls", "--json"]).await);
    assert_eq!(ids(&all, "templateID"), vec![first.clone(), second.clone()]);
    assert_eq!(all[1]["aliases"], serde_json::json!(["second"]));
    assert_eq!(all[1]["names"], serde_json::json!(["second:default"]));
    assert_eq!((all[1]["buildStatus"].as_str(), all[1]["buildCount"].as_u64()), (Some("ready"), Some(2)));
    let rows = table(&ok(&cli(Via::Local(&s), &["templates", "ls"]).await), TEMPLATE_COLUMNS);
    assert_eq!(rows.len(), 2);
    assert_eq!(&rows[0][..5], &["first", first.as_str(), "default", "ready", "1"]);
    assert_eq!(rows[0][5], time(&all[0]["updatedAt"]).format("%Y-%m-%d %H:%M:%SZ").to_string());

    // A sandbox of it has what its step made.
    let sb = create(a, r#"{"templateID":"first"}"#).await;
    let r = common::host::envd(a, &sb, "GET", "/files?path=/home/user/one", Vec::new()).await;
    assert_eq!((r.status, &r.body[..]), (StatusCode::OK, &b"one\n"[..]));
    assert_eq!(ok(&cli(Via::Local(&s), &["sandboxes", "kill", &sb]).await), format!("{sb}\n"));
    let counted = json(&cli(Via::Local(&s), &["templates", "ls", "--json"]).await);
    assert_eq!((counted[0]["spawnCount"].as_u64(), counted[1]["spawnCount"].as_u64()), (Some(1), Some(0)));
    assert!(counted[0]["lastSpawnedAt"].is_string() && counted[1]["lastSpawnedAt"].is_null(), "{counted:?}");

    let o = cli(Via::Local(&s), &["templates", "rm", "first", "nosuchtemplate"]).await;
    assert_eq!(fails(&o), "sandbank: template nosuchtemplate not found\n");
    assert_eq!(stdout(&o), "first\n");
    assert_eq!(ids(&json(&cli(Via::Local(&s), &["templates", "ls", "--json"]).await), "templateID"), vec![second]);
    let r = call(a, "POST", "/sandboxes", Some(r#"{"templateID":"first"}"#)).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND, "gone: {}", String::from_utf8_lossy(&r.body));
    s.stop();
}

#[tokio::test]
async fn the_local_default_uses_the_daemon_or_says_none_runs() {
    let empty = tempfile::tempdir().unwrap();
    let o = cli(Via::DataDir(empty.path()), &["sandboxes", "ls"]).await;
    let e = fails(&o);
    assert!(e.contains("no local sandbank server is running"), "{e}");
    assert!(e.contains("`sandbank serve`"), "{e}");
    assert!(e.contains(&empty.path().join("daemon.json").display().to_string()), "{e}");
    assert_eq!(stdout(&o), "");
    // A daemon.json whose process is gone: the same, and no auto-start.
    std::fs::write(
        empty.path().join("daemon.json"),
        r#"{"url":"http://127.0.0.1:9","apiKey":"x","pid":999999999,"dataDir":"/x"}"#,
    )
    .unwrap();
    let e = fails(&cli(Via::DataDir(empty.path()), &["snapshots", "ls"]).await);
    assert!(e.contains("no local sandbank server is running") && e.contains("not running"), "{e}");
    assert!(!empty.path().join("lock").exists(), "the CLI does not start a server");

    let s = Server::start();
    let id = create(s.addr, r#"{"templateID":"base","metadata":{"via":"daemon"}}"#).await;
    let items = json(&cli(Via::DataDir(&s.data_dir), &["sandboxes", "ls", "--json"]).await);
    assert_eq!(ids(&items, "sandboxID"), vec![id.clone()]);
    assert_eq!(items[0]["metadata"]["via"], "daemon");
    assert_eq!(ok(&cli(Via::DataDir(&s.data_dir), &["sandboxes", "kill", &id]).await), format!("{id}\n"));
    s.stop();
}

fn doctor_lines(text: &str) -> Vec<(String, String, String)> {
    text.lines()
        .map(|l| {
            let (status, rest) = l.split_once("  ").unwrap_or_else(|| panic!("{l:?}"));
            assert!(["ok", "warn", "missing"].contains(&status.trim()), "{l:?}");
            let rest = rest.trim_start();
            let (check, detail) = rest.split_once("  ").unwrap_or_else(|| panic!("{l:?}"));
            (status.trim().to_string(), check.to_string(), detail.trim_start().to_string())
        })
        .collect()
}

#[tokio::test]
async fn doctor_reports_this_machine() {
    // This machine runs the engine as root: nothing is missing.
    let s = Server::start();
    let o = cli(Via::DataDir(&s.data_dir), &["doctor"]).await;
    let lines = doctor_lines(&ok(&o));
    let get = |name: &str| {
        lines.iter().find(|(_, c, _)| c == name).unwrap_or_else(|| panic!("no {name} line: {lines:?}")).clone()
    };
    for name in [
        "privileges",
        "kernel",
        "overlayfs",
        "user namespace",
        "mount namespace",
        "pid namespace",
        "net namespace",
        "cgroups",
        "network",
        "egress rules",
        "criu",
        "fuse",
        "seccomp",
        "root mapping",
        "layer store",
        "data dir",
        "daemon",
    ] {
        assert_eq!(get(name).0, "ok", "{name}: {:?}", get(name));
    }
    assert_eq!(get("privileges").2, "running as root");
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap();
    assert_eq!(get("kernel").2, format!("Linux {}", release.trim()));
    assert!(get("daemon").2.contains(&format!("pid {} serving {}", s.child.id(), s.url())), "{:?}", get("daemon"));
    assert!(get("disk").2.contains("free at"), "{:?}", get("disk"));
    assert!(get("layer store").2.starts_with("btrfs"), "the default where btrfs can be used: {:?}", get("layer store"));
    assert!(get("root mapping").2.contains("the host's 100000-165535"), "{:?}", get("root mapping"));
    // `npm test` builds CRIU first when the machine has none (scripts/system-deps.sh, criu.sh).
    assert!(
        get("criu").2.starts_with("CRIU 4.") && get("criu").2.contains("`criu check` looks good"),
        "{:?}",
        get("criu")
    );
    // The host-wide tables, as this machine has them (a warning names what to raise).
    let read = |p: &str| std::fs::read_to_string(p).unwrap().trim().to_string();
    let (file_max, pid_max) = (read("/proc/sys/fs/file-max"), read("/proc/sys/kernel/pid_max"));
    let tables = get("kernel tables");
    match tables.0.as_str() {
        "ok" => assert_eq!(tables.2, format!("fs.file-max {file_max}, kernel.pid_max {pid_max}")),
        _ => assert!(tables.2.contains(&file_max) || tables.2.contains(&pid_max), "{tables:?}"),
    }
    // Columns line up: every check starts at the same offset.
    let text = stdout(&o);
    let offsets: Vec<usize> = text.lines().zip(&lines).map(|(l, (_, c, _))| l.find(c.as_str()).unwrap()).collect();
    assert!(offsets.iter().all(|&x| x == offsets[0]), "{text}");

    let items = json(&cli(Via::DataDir(&s.data_dir), &["doctor", "--json"]).await);
    assert_eq!(items.len(), lines.len());
    for (item, (status, check, detail)) in items.iter().zip(&lines) {
        assert_eq!(item["status"], status.as_str());
        assert_eq!(item["check"], check.as_str());
        if check == "disk" {
            // The free space may change between the two runs (other tests write meanwhile).
            let place = |d: &str| d.split_once(" free at ").map(|(_, at)| at.to_string());
            assert_eq!(place(item["detail"].as_str().unwrap()), place(detail), "{item}");
        } else {
            assert_eq!(item["detail"], detail.as_str());
        }
    }
    s.stop();

    // No daemon: a warning with the fix, still exit 0 (the engine itself has all it needs).
    let empty = tempfile::tempdir().unwrap();
    let lines = doctor_lines(&ok(&cli(Via::DataDir(empty.path()), &["doctor"]).await));
    let daemon = lines.iter().find(|(_, c, _)| c == "daemon").unwrap();
    assert_eq!(daemon.0, "warn");
    assert!(daemon.2.contains("`sandbank serve`"), "{daemon:?}");
    // A data dir that cannot be written is missing: exit 1.
    let file = empty.path().join("a-file");
    std::fs::write(&file, "").unwrap();
    let o = cli(Via::DataDir(&file.join("sub")), &["doctor"]).await;
    assert_eq!(o.status.code(), Some(1), "{}", stdout(&o));
    let lines = doctor_lines(&stdout(&o));
    let dd = lines.iter().find(|(_, c, _)| c == "data dir").unwrap();
    assert_eq!(dd.0, "missing", "{dd:?}");
}

/// The line of `check` that `sandbank doctor` prints on an empty data directory with the variable
/// `name` set to `value`.
async fn doctor_check_with(name: &str, value: &str, check: &str) -> (String, String, String) {
    let empty = tempfile::tempdir().unwrap();
    let o = tokio::process::Command::new(env!("CARGO_BIN_EXE_sandbank"))
        .arg("doctor")
        .env("SANDBANK_DATA_DIR", empty.path())
        .env(name, value)
        .output()
        .await
        .unwrap();
    doctor_lines(&stdout(&o)).into_iter().find(|(_, c, _)| c == check).unwrap()
}

#[tokio::test]
async fn doctor_names_a_criu_that_is_not_there() {
    let criu = doctor_check_with("SANDBANK_CRIU", "/nonexistent/criu", "criu").await;
    assert_eq!(criu.0, "warn", "{criu:?}");
    assert!(criu.2.contains("SANDBANK_CRIU names /nonexistent/criu, which is not a file"), "{criu:?}");
}

#[tokio::test]
async fn doctor_says_when_root_inside_is_host_root() {
    let mapping = doctor_check_with("SANDBANK_NO_USERNS", "1", "root mapping").await;
    assert_eq!(mapping.0, "warn", "{mapping:?}");
    assert!(mapping.2.contains("root in a sandbox is the host's root"), "{mapping:?}");
}

/// A fake control plane: two pages of sandboxes and of snapshots (`x-next-token`), and a
/// snapshot that takes a second. Returns its URL and the query strings it saw.
async fn fake_cloud() -> (String, std::sync::Arc<std::sync::Mutex<Vec<String>>>) {
    use axum::extract::RawQuery;
    use axum::response::IntoResponse;
    use axum::routing::{get, post};
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let sandbox = |id: &str| {
        serde_json::json!({"sandboxID": id, "templateID": "tpl", "clientID": "c", "alias": "my-tpl",
            "startedAt": "2030-01-02T03:04:05Z", "endAt": "2030-01-02T04:04:05Z", "state": "running",
            "cpuCount": 4, "memoryMB": 2048, "diskSizeMB": 1, "envdVersion": "0.6.4", "metadata": {"k": id}})
    };
    let snapshot = |id: &str| {
        serde_json::json!({"snapshotID": id, "names": [], "sandboxID": "sb", "createdAt": "2030-01-02T03:04:05Z",
            "sizeBytes": 5 * 1024 * 1024 * 1024u64 / 2, "mode": "memory"})
    };
    let (s1, s2) = (sandbox("sb-page-1"), sandbox("sb-page-2"));
    let (n1, n2) = (snapshot("snap-page-1"), snapshot("snap-page-2"));
    let seen_a = seen.clone();
    let seen_b = seen.clone();
    let app = axum::Router::new()
        .route(
            "/v2/sandboxes",
            get(move |RawQuery(q): RawQuery| async move {
                let q = q.unwrap_or_default();
                seen_a.lock().unwrap().push(format!("sandboxes?{q}"));
                if q.contains("nextToken=tok%2F2") {
                    axum::Json(serde_json::json!([s2])).into_response()
                } else {
                    ([("x-next-token", "tok/2")], axum::Json(serde_json::json!([s1]))).into_response()
                }
            }),
        )
        .route(
            "/snapshots",
            get(move |RawQuery(q): RawQuery| async move {
                let q = q.unwrap_or_default();
                seen_b.lock().unwrap().push(format!("snapshots?{q}"));
                if q.contains("nextToken=t2") {
                    axum::Json(serde_json::json!([n2])).into_response()
                } else {
                    ([("x-next-token", "t2")], axum::Json(serde_json::json!([n1]))).into_response()
                }
            }),
        )
        .route(
            "/sandboxes/{id}/snapshots",
            post(|| async {
                tokio::time::sleep(std::time::Duration::from_millis(1200)).await;
                (StatusCode::CREATED, axum::Json(serde_json::json!({"snapshotID": "slow:default", "names": []})))
            }),
        );
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", l.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(l, app).await.unwrap() });
    (url, seen)
}

async fn cli_at(url: &str, args: &[&str]) -> Output {
    let mut cmd = common::cli::command(args);
    cmd.env("NOVITA_API_URL", url).env("NOVITA_API_KEY", "k");
    cmd.output().await.unwrap()
}

#[tokio::test]
async fn every_page_is_listed() {
    let (url, seen) = fake_cloud().await;
    let items = json(&cli_at(&url, &["sandboxes", "ls", "--json"]).await);
    assert_eq!(ids(&items, "sandboxID"), vec!["sb-page-1", "sb-page-2"]);
    assert_eq!(items[0]["alias"], "my-tpl");
    let t = ok(&cli_at(&url, &["sandboxes", "ls"]).await);
    let rows = table(&t, SANDBOX_COLUMNS);
    assert_eq!(
        rows[1],
        vec!["sb-page-2", "tpl (my-tpl)", "2030-01-02 03:04:05Z", "2030-01-02 04:04:05Z", "4", "2048", "k=sb-page-2"]
    );
    let items = json(&cli_at(&url, &["snapshots", "ls", "--json"]).await);
    assert_eq!(ids(&items, "snapshotID"), vec!["snap-page-1", "snap-page-2"]);
    let t = ok(&cli_at(&url, &["snapshots", "ls", "--sandbox", "sb"]).await);
    let rows = table(&t, SNAPSHOT_COLUMNS);
    assert_eq!(rows[0], vec!["snap-page-1", "-", "sb", "-", "2030-01-02 03:04:05Z", "never", "2.5 GiB", "memory", "-"]);
    assert_eq!(rows.len(), 2);
    let seen = seen.lock().unwrap().clone();
    assert_eq!(
        seen,
        vec![
            "sandboxes?",
            "sandboxes?nextToken=tok%2F2",
            "sandboxes?",
            "sandboxes?nextToken=tok%2F2",
            "snapshots?",
            "snapshots?nextToken=t2",
            "snapshots?sandboxID=sb",
            "snapshots?sandboxID=sb&nextToken=t2",
        ]
    );
}

#[tokio::test]
async fn snapshot_shows_progress_only_on_a_terminal() {
    let (url, _) = fake_cloud().await;
    // Not a terminal: the ID only, nothing on stderr.
    let o = cli_at(&url, &["snapshot", "sb"]).await;
    assert_eq!(ok(&o), "slow:default\n");
    // A terminal (script(1) gives the command a pty): a spinner with the elapsed time, cleared.
    let cmdline = format!(
        "env -u NOVITA_SANDBOX_URL NOVITA_API_URL={url} NOVITA_API_KEY=k {} snapshot sb",
        env!("CARGO_BIN_EXE_sandbank")
    );
    let o =
        tokio::process::Command::new("script").args(["-qec", &cmdline, "/dev/null"]).output().await.expect("script(1)");
    let tty = String::from_utf8_lossy(&o.stdout).to_string();
    assert!(o.status.success(), "{tty}");
    assert!(tty.contains("snapshotting sb 0.") || tty.contains("snapshotting sb 1."), "{tty:?}");
    assert!(tty.contains("\r\x1b[2K"), "the line is cleared: {tty:?}");
    assert!(tty.trim_end().ends_with("slow:default"), "{tty:?}");
}

/// The pids and cmdlines of the host's processes that mention `text`.
fn processes_mentioning(text: &str) -> Vec<(String, String)> {
    let Ok(entries) = std::fs::read_dir("/proc") else { return Vec::new() };
    entries
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|pid| pid.bytes().all(|b| b.is_ascii_digit()))
        .filter_map(|pid| {
            let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
            Some((pid, String::from_utf8_lossy(&cmdline).replace('\0', " ")))
        })
        .filter(|(_, c)| c.contains(text))
        .collect()
}

/// `base-image` killed in the middle of its build (as a server can be at its first start): what
/// the build ran (mmdebstrap, apt, dpkg) and mounted in the new system goes with it. Needs
/// mmdebstrap and deb.debian.org, as the base image does.
#[tokio::test]
async fn a_killed_base_image_build_leaves_no_process_or_mount() {
    let dir = tempfile::tempdir().unwrap();
    let images = dir.path().join("images");
    let key = images.display().to_string();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_sandbank"))
        .args(["base-image", "--images-dir"])
        .arg(&images)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // Until the build mounts in the new system (mmdebstrap's "installing" steps; in its own
    // mount namespace, so seen through its processes), at most a minute.
    let mounted = || {
        processes_mentioning(&key)
            .iter()
            .any(|(pid, _)| std::fs::read_to_string(format!("/proc/{pid}/mountinfo")).is_ok_and(|m| m.contains(&key)))
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while !mounted() {
        assert!(std::time::Instant::now() < deadline, "the build never mounted anything in {key}");
        assert!(child.try_wait().unwrap().is_none(), "base-image ended before it mounted anything");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(!std::fs::read_to_string("/proc/self/mountinfo").unwrap().contains(&key), "not in the host's mounts");
    child.kill().unwrap();
    child.wait().unwrap();
    let gone = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let left = processes_mentioning(&key);
        if left.is_empty() {
            break;
        }
        assert!(std::time::Instant::now() < gone, "still running 10 s after: {left:?}");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(!std::fs::read_to_string("/proc/self/mountinfo").unwrap().contains(&key));
}
