//! `sandbank doctor [--json]`: what the local engine needs from this machine, and what is
//! missing. One line per check: `ok|missing|warn  <check>  <detail or fix>`; exit 1 when
//! anything is missing.

use super::{data_dir, print_out};
use sandbank_client::local::{read_daemon, DaemonState, DAEMON_STATE_FILE};
use serde::Serialize;
use std::io::{Read as _, Write as _};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Ok,
    Warn,
    Missing,
}

impl Status {
    fn as_str(self) -> &'static str {
        match self {
            Status::Ok => "ok",
            Status::Warn => "warn",
            Status::Missing => "missing",
        }
    }
}

#[derive(Clone, Debug, Serialize)]
pub struct Check {
    pub status: Status,
    pub check: String,
    pub detail: String,
}

fn check(status: Status, name: &str, detail: impl Into<String>) -> Check {
    Check { status, check: name.into(), detail: detail.into() }
}

pub fn main(json: bool) -> ExitCode {
    let checks = run_checks();
    if json {
        print_out(&super::json_text(&serde_json::to_value(&checks).expect("JSON")));
    } else {
        print_out(&render(&checks));
    }
    if checks.iter().any(|c| c.status == Status::Missing) {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

pub fn render(checks: &[Check]) -> String {
    let w = checks.iter().map(|c| c.check.len()).max().unwrap_or(0);
    checks.iter().map(|c| format!("{:<7}  {:<w$}  {}\n", c.status.as_str(), c.check, c.detail)).collect()
}

pub fn run_checks() -> Vec<Check> {
    let mut out = vec![privileges(), kernel(), overlayfs()];
    out.extend(namespaces());
    out.push(cgroups());
    out.push(network());
    out.push(egress());
    out.push(criu());
    out.push(check(Status::Ok, "fuse", "/dev/fuse is not needed (sandboxes use overlayfs)"));
    out.push(seccomp());
    out.push(user_namespace());
    out.push(kernel_tables());
    let dir = data_dir();
    out.push(layer_store(dir.as_deref()));
    match dir {
        Some(dir) => {
            out.push(disk(&dir));
            out.push(writable(&dir));
            out.push(daemon(&dir));
        }
        None => out.push(check(
            Status::Missing,
            "data dir",
            "none: set SANDBANK_DATA_DIR, XDG_DATA_HOME or HOME (or pass --data-dir to `sandbank serve`)",
        )),
    }
    out
}

fn privileges() -> Check {
    let euid = rustix::process::geteuid().as_raw();
    if euid == 0 {
        return check(Status::Ok, "privileges", "running as root");
    }
    let cap_eff = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines().find_map(|l| l.strip_prefix("CapEff:")).and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
        })
        .unwrap_or(0);
    const CAP_SYS_ADMIN: u64 = 21;
    if cap_eff & (1 << CAP_SYS_ADMIN) != 0 {
        return check(Status::Ok, "privileges", format!("uid {euid} with CAP_SYS_ADMIN"));
    }
    check(
        Status::Missing,
        "privileges",
        format!("uid {euid} without CAP_SYS_ADMIN: run `sandbank serve` as root (e.g. with sudo)"),
    )
}

/// Sandboxes' root is an unprivileged host user where the kernel and filesystems allow it:
/// checked as the server checks it at start (root only: it mounts).
fn user_namespace() -> Check {
    const NAME: &str = "root mapping";
    if !rustix::process::geteuid().is_root() {
        return check(Status::Warn, NAME, "not checked: run doctor as root to check the user namespace of sandboxes");
    }
    let (Some(dir), Ok(exe)) = (data_dir(), std::env::current_exe()) else {
        return check(Status::Warn, NAME, "not checked: no data directory");
    };
    // On the data directory's filesystem, without creating the directory.
    let scratch = existing_ancestor(&dir).join(format!(".sandbank-doctor-userns-{}", std::process::id()));
    // (The base image, in the data directory by default, is on that filesystem too.)
    match sandbank_engine::userns::check(&exe, &scratch, None) {
        Ok(_) if no_userns_asked() => check(
            Status::Warn,
            NAME,
            "SANDBANK_NO_USERNS is set: sandboxes run without the user namespace this machine could give them, and root \
             in a sandbox is the host's root",
        ),
        Ok(map) => check(
            Status::Ok,
            NAME,
            format!(
                "sandboxes run in a user namespace: their ids 0-{} are the host's {}-{}",
                map.count - 1,
                map.host_base,
                map.host_base + map.count - 1
            ),
        ),
        Err(why) if no_userns_asked() => check(
            Status::Warn,
            NAME,
            format!(
                "no user namespace for sandboxes (SANDBANK_NO_USERNS is set; and this machine cannot: {why}): root in a \
                 sandbox is the host's root, confined by capabilities, seccomp and masks"
            ),
        ),
        Err(why) => check(
            Status::Missing,
            NAME,
            format!(
                "sandboxes cannot have a user namespace here ({why}; it needs Linux 5.19+ and idmapped mounts on the data \
                 directory's filesystem), so `sandbank serve` refuses to start; with --no-userns (SANDBANK_NO_USERNS=1) it \
                 runs them with root inside as the host's root"
            ),
        ),
    }
}

/// Whether a `sandbank serve` started here with no flags would run without a user namespace
/// (`SANDBANK_NO_USERNS`, read by serve's own arguments, so the same way).
fn no_userns_asked() -> bool {
    use clap::{Args as _, FromArgMatches as _};
    let serve = super::serve_args::ServeArgs::augment_args(clap::Command::new("serve"));
    let args = serve
        .try_get_matches_from(["serve"])
        .ok()
        .and_then(|m| super::serve_args::ServeArgs::from_arg_matches(&m).ok());
    args.is_some_and(|a| a.no_userns)
}

/// The host-wide tables sandboxes draw from, sized so that they cannot fill them: open files
/// (each sandbox is bounded only by its memory, ~256 bytes of kernel memory a file) and pids
/// (1024 a sandbox). At the kernel's defaults a few sandboxes could fill either; systemd raises
/// both at boot.
pub fn kernel_tables() -> Check {
    const NAME: &str = "kernel tables";
    let read = |p: &str| std::fs::read_to_string(p).ok().and_then(|v| v.trim().parse::<u64>().ok());
    let mem_kb = std::fs::read_to_string("/proc/meminfo").ok().and_then(|m| {
        m.lines()
            .find_map(|l| l.strip_prefix("MemTotal:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
    });
    let (Some(file_max), Some(pid_max), Some(mem_kb)) =
        (read("/proc/sys/fs/file-max"), read("/proc/sys/kernel/pid_max"), mem_kb)
    else {
        return check(
            Status::Warn,
            NAME,
            "not checked: /proc/sys/fs/file-max, /proc/sys/kernel/pid_max or MemTotal unreadable",
        );
    };
    let files_memory_holds = mem_kb * 1024 / 256;
    let mut short = Vec::new();
    if file_max < files_memory_holds {
        short.push(format!(
            "fs.file-max is {file_max}, fewer open files than sandboxes' memory can hold (~{} M): raise it \
             (`sysctl -w fs.file-max=9223372036854775807`, what systemd sets)",
            files_memory_holds / 1_000_000
        ));
    }
    if pid_max < 4_194_304 {
        short.push(format!(
            "kernel.pid_max is {pid_max}: {} sandboxes at their pids limit (1024) would take every pid: raise it \
             (`sysctl -w kernel.pid_max=4194304`, what systemd sets)",
            pid_max / 1024
        ));
    }
    match short.is_empty() {
        true => check(Status::Ok, NAME, format!("fs.file-max {file_max}, kernel.pid_max {pid_max}")),
        false => check(Status::Warn, NAME, short.join("; ")),
    }
}

fn kernel() -> Check {
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|r| r.trim().to_string())
        .unwrap_or_else(|_| "unknown".into());
    if !cfg!(target_os = "linux") {
        return check(Status::Missing, "kernel", format!("{release}: the local engine needs Linux"));
    }
    let mut nums =
        release.split(|c: char| !c.is_ascii_digit()).filter(|s| !s.is_empty()).map(|s| s.parse::<u32>().unwrap_or(0));
    let (major, minor) = (nums.next().unwrap_or(0), nums.next().unwrap_or(0));
    if (major, minor) >= (5, 4) {
        check(Status::Ok, "kernel", format!("Linux {release}"))
    } else {
        check(
            Status::Warn,
            "kernel",
            format!("Linux {release}: untested below 5.4; upgrade if sandboxes fail to start"),
        )
    }
}

fn overlayfs() -> Check {
    let fs = std::fs::read_to_string("/proc/filesystems").unwrap_or_default();
    if fs.lines().any(|l| l.split_whitespace().last() == Some("overlay")) {
        check(Status::Ok, "overlayfs", "overlay listed in /proc/filesystems")
    } else {
        check(
            Status::Missing,
            "overlayfs",
            "overlay is not in /proc/filesystems: run `modprobe overlay` (CONFIG_OVERLAY_FS)",
        )
    }
}

fn namespaces() -> Vec<Check> {
    [
        ("user", "user", libc::CLONE_NEWUSER),
        ("mnt", "mount", libc::CLONE_NEWNS),
        ("pid", "pid", libc::CLONE_NEWPID),
        ("net", "net", libc::CLONE_NEWNET),
    ]
    .into_iter()
    .map(|(file, name, flag)| {
        let label = format!("{name} namespace");
        let path = format!("/proc/self/ns/{file}");
        if !Path::new(&path).exists() {
            return check(
                Status::Missing,
                &label,
                format!("{path} is missing: the kernel lacks CONFIG_{}_NS", name.to_uppercase()),
            );
        }
        match crate::sys::child_can_unshare(flag) {
            Ok(()) => check(Status::Ok, &label, "a child can unshare it"),
            Err(e) => check(
                Status::Missing,
                &label,
                format!("unshare failed ({e}): run as root; in a container, allow namespaces (e.g. --privileged)"),
            ),
        }
    })
    .collect()
}

const CGROUP_ROOT: &str = "/sys/fs/cgroup";
const CONTROLLERS: &[&str] = &["memory", "pids", "cpu", "freezer"];

fn cgroups() -> Check {
    let root = Path::new(CGROUP_ROOT);
    if root.join("cgroup.controllers").exists() {
        // v2: freezing is built in (cgroup.freeze); the others must be available to delegate.
        let available = std::fs::read_to_string(root.join("cgroup.controllers")).unwrap_or_default();
        let have: Vec<&str> = available.split_whitespace().collect();
        let missing: Vec<&str> = ["memory", "pids", "cpu"].into_iter().filter(|c| !have.contains(c)).collect();
        if !missing.is_empty() {
            return check(
                Status::Missing,
                "cgroups",
                format!(
                    "cgroup v2 without the {} controller(s) in {}: enable them in the parent's cgroup.subtree_control (systemd: Delegate=yes)",
                    missing.join(", "),
                    root.join("cgroup.controllers").display()
                ),
            );
        }
        if std::fs::metadata(root.join("cgroup.subtree_control")).is_ok_and(|m| m.permissions().readonly()) {
            return check(Status::Missing, "cgroups", format!("{CGROUP_ROOT} is read-only: mount it read-write"));
        }
        return check(Status::Ok, "cgroups", "cgroup v2 with memory, pids, cpu (freezer built in)");
    }
    let enabled = std::fs::read_to_string("/proc/cgroups").unwrap_or_default();
    let is_enabled = |c: &str| {
        enabled.lines().any(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            f.first() == Some(&c) && f.get(3) == Some(&"1")
        })
    };
    let missing: Vec<String> =
        CONTROLLERS.iter().filter(|c| !is_enabled(c) || !root.join(c).is_dir()).map(|c| c.to_string()).collect();
    if missing.is_empty() {
        check(Status::Ok, "cgroups", "cgroup v1 with memory, pids, cpu, freezer")
    } else {
        check(
            Status::Missing,
            "cgroups",
            format!(
                "cgroup v1 without {} mounted under {CGROUP_ROOT}: mount each hierarchy (e.g. `mount -t cgroup -o memory cgroup {CGROUP_ROOT}/memory`) or boot with cgroup v2",
                missing.join(", ")
            ),
        )
    }
}

/// pasta gives sandboxes outbound network; without it they get loopback only.
fn network() -> Check {
    match sandbank_engine::net::find_pasta() {
        Ok(pasta) => check(Status::Ok, "network", format!("{}: sandboxes can have internet access", pasta.display())),
        Err(why) => check(
            Status::Warn,
            "network",
            format!("{why}: sandboxes get loopback only, and creating one with allowInternetAccess (the SDKs' default) fails"),
        ),
    }
}

/// CRIU captures sandboxes' memory and processes (snapshots with memory, fork, clone): whether
/// this machine has one that works.
fn criu() -> Check {
    use sandbank_engine::criu;
    match criu::find() {
        Ok(c) => {
            let what = "snapshots and pauses keep the processes and their memory";
            check(
                Status::Ok,
                "criu",
                format!("CRIU {} at {}: `criu check` looks good; {what}", c.version, c.path.display()),
            )
        }
        Err(why) => {
            let what = "snapshots keep files only, a paused sandbox's processes do not outlive the server, fork and clone are refused";
            check(Status::Warn, "criu", format!("{why}: {what}"))
        }
    }
}

/// nft puts sandboxes' egress rules (`allowOut`/`denyOut`) in force; without it, sandboxes
/// without rules work and asking for rules fails.
fn egress() -> Check {
    match sandbank_engine::egress::find_nft() {
        Some(nft) => check(Status::Ok, "egress rules", format!("{}: sandboxes can have allowOut/denyOut rules", nft.display())),
        None => check(
            Status::Warn,
            "egress rules",
            "nft is not installed (Debian/Ubuntu package nftables): creating a sandbox with network allowOut/denyOut, or setting them, fails",
        ),
    }
}

/// The directory itself if it exists, else its nearest existing ancestor.
fn existing_ancestor(dir: &Path) -> PathBuf {
    let mut p = dir.to_path_buf();
    while !p.exists() {
        if !p.pop() {
            return PathBuf::from("/");
        }
    }
    p
}

/// Every sandbox gets a seccomp filter; without kernel support none starts.
fn seccomp() -> Check {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    if status.lines().any(|l| l.starts_with("Seccomp_filters:") || l.starts_with("Seccomp:")) {
        check(Status::Ok, "seccomp", "filters are supported")
    } else {
        check(Status::Missing, "seccomp", "the kernel has no seccomp (CONFIG_SECCOMP_FILTER): sandboxes cannot start")
    }
}

/// Which layer store `sandbank serve` would use (see `--store`): btrfs, unless asked for copy,
/// the data directory's snapshots are on the copy store, or what it needs is missing (the
/// kernel's btrfs; for an image, as when the data directory is not btrfs, mkfs.btrfs and loop
/// devices). On copy, snapshots copy what sandboxes wrote and sandboxes have no disk limit.
fn layer_store(dir: Option<&Path>) -> Check {
    const COPY: &str = "snapshots copy what sandboxes wrote, and sandboxes have no disk limit";
    let asked = std::env::var("SANDBANK_STORE").unwrap_or_default();
    if asked == "copy" {
        return check(Status::Ok, "layer store", format!("copy (SANDBANK_STORE): {COPY}"));
    }
    if dir.is_some_and(sandbank_engine::on_copy_store) {
        return check(Status::Ok, "layer store", format!("copy (the data directory's snapshots are on it): {COPY}"));
    }
    let on_btrfs = dir.map(existing_ancestor).is_some_and(|d| sandbank_engine::cow::is_btrfs(&d).unwrap_or(false));
    if on_btrfs {
        let detail = "btrfs, on the data directory's filesystem (disk limits where its quota groups are on)";
        return check(Status::Ok, "layer store", detail);
    }
    let in_kernel =
        std::fs::read_to_string("/proc/filesystems").is_ok_and(|f| f.lines().any(|l| l.ends_with("\tbtrfs")));
    let mkfs = ["/usr/sbin/mkfs.btrfs", "/sbin/mkfs.btrfs", "/usr/local/sbin/mkfs.btrfs"]
        .iter()
        .any(|p| Path::new(p).exists());
    let loop_control = Path::new("/dev/loop-control").exists();
    let missing: Vec<&str> = [
        (!in_kernel).then_some("btrfs in the kernel (/proc/filesystems)"),
        (!mkfs).then_some("mkfs.btrfs (btrfs-progs)"),
        (!loop_control).then_some("loop devices (/dev/loop-control)"),
    ]
    .into_iter()
    .flatten()
    .collect();
    match missing.is_empty() {
        true => {
            check(Status::Ok, "layer store", "btrfs, in an image in the data directory (disk limits by quota groups)")
        }
        false => {
            check(Status::Warn, "layer store", format!("copy: the btrfs store needs {}, so {COPY}", missing.join(", ")))
        }
    }
}

const LOW_DISK: u64 = 2 * 1024 * 1024 * 1024;

fn disk(dir: &Path) -> Check {
    let at = existing_ancestor(dir);
    match nix::sys::statvfs::statvfs(&at) {
        Ok(s) => {
            // The field types differ between targets (u32 on some 32-bit ones).
            #[allow(clippy::useless_conversion)]
            let free = u64::from(s.blocks_available()).saturating_mul(u64::from(s.fragment_size()));
            let text = format!("{} free at {}", super::table::human_bytes(free), at.display());
            if free < LOW_DISK {
                check(Status::Warn, "disk", format!("{text}: snapshots copy sandbox layers; free some space"))
            } else {
                check(Status::Ok, "disk", text)
            }
        }
        Err(e) => check(Status::Warn, "disk", format!("statvfs {}: {e}", at.display())),
    }
}

fn writable(dir: &Path) -> Check {
    if dir.is_dir() {
        let probe = dir.join(format!(".doctor.{}", std::process::id()));
        return match std::fs::File::create(&probe) {
            Ok(_) => {
                let _ = std::fs::remove_file(&probe);
                check(Status::Ok, "data dir", format!("{} is writable", dir.display()))
            }
            Err(e) => check(
                Status::Missing,
                "data dir",
                format!("{} is not writable ({e}): fix its owner/permissions or set SANDBANK_DATA_DIR", dir.display()),
            ),
        };
    }
    let at = existing_ancestor(dir);
    if !at.is_dir() {
        return check(
            Status::Missing,
            "data dir",
            format!("{} cannot be created ({} is not a directory): set SANDBANK_DATA_DIR", dir.display(), at.display()),
        );
    }
    if nix::unistd::access(&at, nix::unistd::AccessFlags::W_OK).is_ok() {
        check(Status::Ok, "data dir", format!("{} does not exist yet; `sandbank serve` creates it", dir.display()))
    } else {
        check(
            Status::Missing,
            "data dir",
            format!("{} cannot be created ({} is not writable): set SANDBANK_DATA_DIR", dir.display(), at.display()),
        )
    }
}

/// `GET /health` on `url` (`http://host:port`): the HTTP status, or why not.
fn health(url: &str) -> Result<u16, String> {
    let hostport = url.strip_prefix("http://").ok_or_else(|| format!("{url} is not an http:// URL"))?;
    let hostport = hostport.split('/').next().unwrap_or(hostport);
    let addr = std::net::ToSocketAddrs::to_socket_addrs(hostport)
        .map_err(|e| e.to_string())?
        .next()
        .ok_or_else(|| format!("{hostport} resolves to nothing"))?;
    let mut s = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(2)).map_err(|e| e.to_string())?;
    s.set_read_timeout(Some(Duration::from_secs(3))).map_err(|e| e.to_string())?;
    write!(s, "GET /health HTTP/1.1\r\nHost: {hostport}\r\nConnection: close\r\n\r\n").map_err(|e| e.to_string())?;
    let mut buf = Vec::new();
    let _ = s.take(4096).read_to_end(&mut buf);
    let head = String::from_utf8_lossy(&buf);
    head.split_whitespace().nth(1).and_then(|c| c.parse().ok()).ok_or_else(|| "no HTTP answer".to_string())
}

fn daemon(dir: &Path) -> Check {
    let file = dir.join(DAEMON_STATE_FILE);
    match read_daemon(dir) {
        DaemonState::Absent => check(
            Status::Warn,
            "daemon",
            format!(
                "not running (no {}): start one with `sandbank serve` (the SDK starts one on demand)",
                file.display()
            ),
        ),
        DaemonState::Stale(pid) => check(
            Status::Warn,
            "daemon",
            format!("not running ({} names pid {pid}, which is gone): start one with `sandbank serve`", file.display()),
        ),
        DaemonState::Running(d) => match health(&d.url) {
            Ok(200) => check(Status::Ok, "daemon", format!("pid {} serving {} (/health ok)", d.pid, d.url)),
            Ok(code) => check(
                Status::Missing,
                "daemon",
                format!("pid {} at {} answers /health with {code}: restart it", d.pid, d.url),
            ),
            Err(e) => check(
                Status::Missing,
                "daemon",
                format!(
                    "pid {} at {} does not answer /health ({e}): stop it and run `sandbank serve` again",
                    d.pid, d.url
                ),
            ),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_status_check_detail_aligned() {
        let t = render(&[
            check(Status::Ok, "kernel", "Linux 6.1"),
            check(Status::Missing, "overlayfs", "modprobe overlay"),
        ]);
        assert_eq!(t, "ok       kernel     Linux 6.1\nmissing  overlayfs  modprobe overlay\n");
    }
}
