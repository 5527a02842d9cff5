//! What a server leaves on the host and in its data directory, for the crash and fault tests:
//! its guest processes, cgroups, mounts, layers and staging; and two calls they share.

use super::*;
use bytes::Bytes;
use http_body_util::Full;
use hyper::StatusCode;
use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::Path;

/// An envd call through the server (octet-stream, for `/files`).
pub async fn envd(a: SocketAddr, id: &str, method: &str, path: &str, body: Vec<u8>) -> Res {
    let b = envd_req(a, id, method, path).await.header("content-type", "application/octet-stream");
    send(a, b.body(Full::new(Bytes::from(body))).unwrap()).await
}

/// Every snapshot, all pages.
pub async fn list_all(a: SocketAddr) -> Vec<serde_json::Value> {
    let mut out = Vec::new();
    let mut token: Option<String> = None;
    loop {
        let path = match &token {
            Some(t) => format!("/snapshots?limit=100&nextToken={t}"),
            None => "/snapshots?limit=100".to_string(),
        };
        let r = call(a, "GET", &path, None).await;
        assert_eq!(r.status, StatusCode::OK);
        out.extend(r.json().as_array().unwrap().iter().cloned());
        token = r.header("x-next-token");
        if token.is_none() {
            return out;
        }
    }
}

pub fn layer_dirs(data: &Path) -> BTreeSet<String> {
    std::fs::read_dir(data.join("layers"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| !n.starts_with('.'))
        .collect()
}

pub fn staging_entries(data: &Path) -> Vec<String> {
    std::fs::read_dir(data.join("layers/.staging"))
        .map(|rd| rd.flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect())
        .unwrap_or_default()
}

/// Guest processes of the server on this data directory: `sandbank guest` processes (and PIDs 1,
/// `envd guest --envd`) in its cgroups (their command line names no host path).
pub fn guests(data: &Path) -> Vec<i32> {
    let cgroup = sandbank_engine::engine::cgroup_name(&data.canonicalize().unwrap_or_else(|_| data.to_path_buf()));
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline"))
                .is_ok_and(|c| c.starts_with(b"sandbank\0guest") || c.starts_with(b"envd\0guest\0--envd"))
                && std::fs::read_to_string(format!("/proc/{pid}/cgroup")).is_ok_and(|c| c.contains(&cgroup))
        })
        .filter(|pid| {
            // A zombie is already dead.
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            !stat.rsplit(')').next().unwrap_or("").trim_start().starts_with('Z')
        })
        .collect()
}

/// cgroup directories (v1 or v2) named after one of `ids`.
/// Live CRIU processes working in data directory `data` (it is in their arguments).
pub fn criu_of(data: &Path) -> Vec<i32> {
    let needle = data.to_string_lossy().into_owned();
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| {
            let args = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            let args = String::from_utf8_lossy(&args);
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            args.split('\0').next().is_some_and(|a| a.ends_with("criu"))
                && args.contains(&needle)
                && !stat.rsplit(')').next().unwrap_or("").trim_start().starts_with('Z')
        })
        .collect()
}

pub fn cgroups_of(ids: &[String]) -> Vec<String> {
    let mut out = Vec::new();
    let Ok(hierarchies) = std::fs::read_dir("/sys/fs/cgroup") else { return out };
    let mut dirs: Vec<std::path::PathBuf> = vec!["/sys/fs/cgroup".into()];
    dirs.extend(hierarchies.flatten().map(|e| e.path()).filter(|p| p.is_dir()));
    for h in dirs {
        for parent in std::fs::read_dir(&h).into_iter().flatten().flatten() {
            if !parent.file_name().to_string_lossy().starts_with("sandbank-") {
                continue;
            }
            for id in ids {
                let p = parent.path().join(id);
                if p.exists() {
                    out.push(p.display().to_string());
                }
            }
        }
    }
    out
}

pub fn mounts_of(data: &Path) -> Vec<String> {
    let needle = data.to_string_lossy().into_owned();
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        .filter(|l| l.contains(&needle))
        .map(String::from)
        .collect()
}

/// Sandbox cgroups (children of this data directory's parent groups), v1 or v2.
pub fn sandbox_cgroups(data: &Path) -> Vec<String> {
    let name = sandbank_engine::engine::cgroup_name(&std::fs::canonicalize(data).unwrap());
    let mut parents = vec![Path::new("/sys/fs/cgroup").join(&name)];
    for h in std::fs::read_dir("/sys/fs/cgroup").into_iter().flatten().flatten() {
        parents.push(h.path().join(&name));
    }
    parents
        .iter()
        .flat_map(|p| std::fs::read_dir(p).into_iter().flatten().flatten())
        .filter(|e| e.path().is_dir())
        .map(|e| e.path().display().to_string())
        .collect()
}
