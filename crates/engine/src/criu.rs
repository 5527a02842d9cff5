//! CRIU, which captures a running sandbox's processes and memory (snapshots with memory, fork and
//! clone; see docs/FULL-SNAPSHOTS.md): where it is, whether it can work here, and the dump.
//! CRIU before 4.2 fails on current kernels (3.17 cannot read the vDSO of 6.x; 4.1 cannot dump a
//! TCP socket), so older ones count as missing. `scripts/criu.sh` builds one.

use sandbank_protocol::guest::{CHECKPOINT_EXTERNAL_MOUNTS, CHECKPOINT_NET_KEY};
use std::os::fd::AsRawFd;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The oldest CRIU that works here.
pub const MIN_VERSION: (u32, u32) = (4, 2);
/// Where `scripts/criu.sh` builds CRIU, with sandbank's patches (`$SANDBANK_CACHE` moves it).
const CACHE_BUILD: &str = "criu-4.2.1-sandbank6/criu";
/// What to do when it is missing.
pub const INSTALL_HINT: &str = "scripts/criu.sh builds CRIU 4.2.1 from Debian's source package; or set SANDBANK_CRIU";

/// A CRIU that can work here.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Criu {
    pub path: PathBuf,
    pub version: String,
}

/// Why there is no usable CRIU.
#[derive(Debug, thiserror::Error)]
pub enum NoCriu {
    #[error("CRIU is not installed ({INSTALL_HINT})")]
    NotFound,
    #[error("SANDBANK_CRIU names {}, which is not a file", .0.display())]
    NotAFile(PathBuf),
    #[error("{} is CRIU {version}; {}.{} or newer is needed ({INSTALL_HINT})", path.display(), MIN_VERSION.0, MIN_VERSION.1)]
    TooOld { path: PathBuf, version: String },
    #[error("{} (CRIU {version}) says this machine cannot: {why}", path.display())]
    CheckFailed { path: PathBuf, version: String, why: String },
}

/// A CRIU run that failed: what CRIU's log says last.
#[derive(Debug, thiserror::Error)]
#[error("criu {action}: {reason}")]
pub struct CriuFailed {
    pub action: &'static str,
    pub reason: String,
}

impl Criu {
    /// Dumps the processes of a sandbox, PID 1 (host pid `pid1`) and all under it, into
    /// `images`, and leaves them as they were: frozen in the cgroup `freezer`, where the caller
    /// froze them (CRIU stops them with ptrace, thaws the cgroup for its work, freezes it again).
    /// The network namespace and the mounts of `CHECKPOINT_EXTERNAL_MOUNTS` are left out as
    /// external: a restore gives the new sandbox its own. So are PID 1's (envd's) connections
    /// from outside (the server's requests, an SDK's stream of a command's output): a sandbox
    /// started from the images finds them closed (sandbank's CRIU patch
    /// `outside-connections-closed`), while the origin keeps them.
    /// CRIU runs in the cgroup of `helpers` (a `cgroup.procs` file; see
    /// `Cgroups::helpers_procs`), with all it forks.
    pub fn dump(&self, pid1: i32, freezer: &Path, images: &Path, helpers: &Path) -> Result<(), CriuFailed> {
        let failed = |reason: String| CriuFailed { action: "dump", reason };
        let netns = std::fs::metadata(format!("/proc/{pid1}/ns/net"))
            .map_err(|e| failed(format!("the network namespace of pid {pid1}: {e}")))?;
        let mounts = std::fs::read_to_string(format!("/proc/{pid1}/mountinfo"))
            .map_err(|e| failed(format!("the mounts of pid {pid1}: {e}")))?;
        let mount_points: Vec<&str> = mounts.lines().filter_map(|l| l.split(' ').nth(4)).collect();
        let mut cmd = Command::new(&self.path);
        cmd.arg("dump")
            .args(["--tree", &pid1.to_string()])
            .arg("--images-dir")
            .arg(images)
            .args(["--log-file", "dump.log", "-v2"])
            .args(["--leave-running", "--tcp-established", "--file-locks"])
            .args(["--ext-mount-map", "auto", "--enable-external-masters"])
            // Its network namespace is external: nothing to lock with iptables (which may be
            // missing); nftables does when CRIU wants to.
            .args(["--network-lock", "nftables", "--manage-cgroups=ignore"])
            .arg("--freeze-cgroup")
            .arg(freezer)
            .arg("--external")
            .arg(format!("net[{}]:{CHECKPOINT_NET_KEY}", netns.ino()));
        for (point, key) in CHECKPOINT_EXTERNAL_MOUNTS.iter().filter(|(p, _)| mount_points.contains(p)) {
            cmd.arg("--external").arg(format!("mnt[{point}]:{key}"));
        }
        // Every socket of PID 1: those CRIU finds in the sandbox (its listener) it dumps as
        // usual; the rest are the accepted ends of connections from outside.
        for ino in socket_inodes(pid1).map_err(|e| failed(format!("the descriptors of pid {pid1}: {e}")))? {
            cmd.arg("--external").arg(format!("unix[{ino}]"));
        }
        // A server that dies mid-dump takes CRIU along (and the next start what CRIU forked, in
        // the helpers' cgroup), and removes the half images.
        let procs = std::fs::OpenOptions::new()
            .write(true)
            .open(helpers)
            .map_err(|e| failed(format!("open {}: {e}", helpers.display())))?;
        let steps = crate::sys::BeforeExec {
            die_with_parent: true,
            join_cgroup: Some(procs.as_raw_fd()),
            ..Default::default()
        };
        crate::sys::before_exec(&mut cmd, steps);
        let done = run(cmd, &images.join("dump.log")).map_err(failed);
        drop(procs);
        done?;
        // The log is not part of the snapshot.
        let _ = std::fs::remove_file(images.join("dump.log"));
        Ok(())
    }
}

/// How many connections from outside PID 1 (host pid `pid1`) holds: its sockets that are not
/// in its network namespace (accepted ends of the server's connections to envd, made in the
/// host's), which a dump gives its copies closed.
pub fn outside_connections(pid1: i32) -> std::io::Result<usize> {
    // `/proc/<pid>/net/unix`: the unix sockets of its network namespace, the inode 7th.
    let table = std::fs::read_to_string(format!("/proc/{pid1}/net/unix"))?;
    let inside: Vec<u64> = table.lines().skip(1).filter_map(|l| l.split_whitespace().nth(6)?.parse().ok()).collect();
    Ok(socket_inodes(pid1)?.into_iter().filter(|ino| !inside.contains(ino)).count())
}

/// The inodes of the sockets process `pid` holds (`/proc/<pid>/fd/N` → `socket:[<ino>]`).
fn socket_inodes(pid: i32) -> std::io::Result<Vec<u64>> {
    let mut inodes = Vec::new();
    for entry in std::fs::read_dir(format!("/proc/{pid}/fd"))? {
        // A descriptor closed since the listing is no socket to name.
        let Ok(target) = std::fs::read_link(entry?.path()) else { continue };
        let target = target.to_string_lossy();
        if let Some(ino) = target.strip_prefix("socket:[").and_then(|t| t.strip_suffix(']')) {
            inodes.extend(ino.parse::<u64>().ok());
        }
    }
    Ok(inodes)
}

/// Runs CRIU; on failure, says why from the last errors of its log at `log`.
pub fn run(mut cmd: Command, log: &Path) -> Result<(), String> {
    let out = cmd.output().map_err(|e| format!("run {}: {e}", cmd.get_program().to_string_lossy()))?;
    if out.status.success() {
        return Ok(());
    }
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let errors: Vec<&str> = text.lines().filter(|l| l.contains("Error")).collect();
    let last = errors.iter().rev().take(3).rev().cloned().collect::<Vec<_>>().join("; ");
    let said = if last.is_empty() { String::from_utf8_lossy(&out.stderr).trim().to_string() } else { last };
    Err(format!("{} ({}; log {})", said, out.status, log.display()))
}

/// Finds CRIU: `$SANDBANK_CRIU`, else the one `scripts/criu.sh` built, else `criu` on `PATH`
/// (then the usual system directories) where root holds CAP_SYS_RESOURCE (an unpatched CRIU
/// needs it for a sandbox's processes: see `scripts/criu.sh`); and checks it (`criu check`).
/// The first one found is the one judged: a too old `SANDBANK_CRIU` is an error, not a reason to
/// look further.
pub fn find() -> Result<Criu, NoCriu> {
    let path = match std::env::var_os("SANDBANK_CRIU").filter(|p| !p.is_empty()) {
        Some(given) if Path::new(&given).is_file() => PathBuf::from(given),
        Some(given) => return Err(NoCriu::NotAFile(given.into())),
        None => built()
            .or_else(|| crate::which::find_executable("criu").filter(|_| has_sys_resource()))
            .ok_or(NoCriu::NotFound)?,
    };
    let version = version_of(&path).unwrap_or_default();
    if !new_enough(&version) {
        return Err(NoCriu::TooOld { path, version });
    }
    // `criu check` needs root; it says "Looks good." when every feature a dump needs is here.
    let out = Command::new(&path).arg("check").output();
    match out {
        Ok(o) if o.status.success() => Ok(Criu { path, version }),
        Ok(o) => {
            let said = String::from_utf8_lossy(&o.stderr);
            let why = said.lines().rev().find(|l| !l.trim().is_empty()).unwrap_or("it failed").trim().to_string();
            Err(NoCriu::CheckFailed { path, version, why })
        }
        Err(e) => Err(NoCriu::CheckFailed { path, version, why: e.to_string() }),
    }
}

/// The one `scripts/criu.sh` built, if it did.
fn built() -> Option<PathBuf> {
    let cache = std::env::var_os("SANDBANK_CACHE").map_or_else(|| PathBuf::from("/var/cache/sandbank"), PathBuf::from);
    Some(cache.join(CACHE_BUILD)).filter(|p| crate::which::is_executable(p))
}

/// Whether this process holds CAP_SYS_RESOURCE.
fn has_sys_resource() -> bool {
    rustix::thread::capabilities(None).is_ok_and(|c| c.effective.contains(rustix::thread::CapabilitySet::SYS_RESOURCE))
}

/// `criu --version` says `Version: 4.2.1` (then maybe a `GitID:` line).
fn version_of(path: &Path) -> Option<String> {
    let out = Command::new(path).arg("--version").output().ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    text.lines().find_map(|l| l.strip_prefix("Version:")).map(|v| v.trim().to_string())
}

fn new_enough(version: &str) -> bool {
    let mut parts = version.split('.').map(|p| p.parse::<u32>().ok());
    match (parts.next().flatten(), parts.next().flatten()) {
        (Some(major), Some(minor)) => (major, minor) >= MIN_VERSION,
        (Some(major), None) => major > MIN_VERSION.0,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_from_4_2_on() {
        let cases = [
            ("4.2.1", true),
            ("4.2", true),
            ("4.10", true),
            ("5", true),
            ("4.1.1", false),
            ("3.17", false),
            ("", false),
        ];
        for (v, ok) in cases.into_iter().chain([("x", false)]) {
            assert_eq!(new_enough(v), ok, "{v}");
        }
    }
}
