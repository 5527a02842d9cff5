//! The engine↔guest handshake, one line at a time over the guest's stdin and stdout: the engine
//! writes the guest's config ([`GuestConfig`], one line of JSON), then [`FromEngine::Joined`]; the
//! guest answers [`FromGuest::Net`], then [`FromGuest::Ready`], or [`FromGuest::Error`] at any
//! point.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::PathBuf;

/// Given by the engine on the guest's stdin, one line of JSON.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct GuestConfig {
    pub sandbox_id: String,
    pub env_vars: BTreeMap<String, String>,
    /// The user and working directory of processes and file paths when a request names none (a
    /// template's last USER and WORKDIR); `None`: `user`, and the user's home.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_user: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_workdir: Option<String>,
    /// Lower layers of `/`, topmost first.
    pub root_lowers: Vec<PathBuf>,
    /// Lower layers of `/usr`, topmost first.
    pub usr_lowers: Vec<PathBuf>,
    pub root_upper: PathBuf,
    pub root_work: PathBuf,
    pub usr_upper: PathBuf,
    pub usr_work: PathBuf,
    pub rootfs: PathBuf,
    /// Host files bind-mounted over paths in the sandbox (`/etc/hostname`, `/etc/hosts`): they
    /// belong to this sandbox, not to its layer, so snapshots do not carry them.
    #[serde(default)]
    pub bind_files: Vec<(PathBuf, PathBuf)>,
    /// The sandbox's directory (the engine's `SandboxDir`): the upper and work directories are in
    /// it.
    pub sandbox_dir: PathBuf,
    /// The sandbox's user namespace, when it has one.
    #[serde(default)]
    pub userns: Option<IdMap>,
    /// A process whose user and network namespaces (network only, without `userns`) the sandbox
    /// joins instead of making its own: made ahead of time with its network ready (the engine's
    /// `netpool`).
    #[serde(default)]
    pub namespaces_of: Option<i32>,
    /// Set when the sandbox starts from a memory snapshot: its processes are restored from the
    /// snapshot's images instead of a new PID 1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restore: Option<Restore>,
}

/// How the guest restores a sandbox's processes from a memory snapshot, with CRIU.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Restore {
    /// The CRIU executable.
    pub criu: PathBuf,
    /// The snapshot's images (read only).
    pub images: PathBuf,
    /// Where CRIU writes its log and the restored PID 1's pid (the sandbox's directory).
    pub work_dir: PathBuf,
}

/// The mounts of a sandbox that a checkpoint leaves out, by mount point and the key it names
/// them by: the restore puts the new sandbox's own in their place (its `/usr` overlay, its
/// hostname, hosts and resolv.conf files). The root is given to the restore apart.
pub const CHECKPOINT_EXTERNAL_MOUNTS: [(&str, &str); 4] =
    [("/usr", "usr"), ("/etc/hostname", "hostname"), ("/etc/hosts", "hosts"), ("/etc/resolv.conf", "resolv")];

/// The key a checkpoint names the sandbox's network namespace by: external too (its network is
/// the host's pasta's business), the restore hands the new sandbox's in.
pub const CHECKPOINT_NET_KEY: &str = "net";

/// Where envd's executable is inside every sandbox: PID 1 runs it from there once the sandbox is
/// set up, so that nothing PID 1 maps or holds is a host file (the engine lays it over `/usr` in a
/// read-only layer of its own). E2B's sandboxes keep their envd at the same path.
pub const ENVD_EXE: &str = "/usr/bin/envd";

/// The directory, inside every sandbox, of envd's socket ([`ENVD_SOCKET`]). It is on the
/// sandbox's own `/dev` (made at each start, in no layer). The server reaches the socket through
/// PID 1's root (`/proc/<pid>/root`); envd answers only connections from outside the sandbox.
pub const ENVD_SOCKET_DIR: &str = "/dev/.sandbank";
/// envd's socket inside every sandbox.
pub const ENVD_SOCKET: &str = "/dev/.sandbank/envd.sock";

/// A sandbox's ids `0..count` are the host's `host_base..host_base + count`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct IdMap {
    pub host_base: u32,
    pub count: u32,
}

impl IdMap {
    /// The range Docker's `userns-remap` and most `/etc/subuid` files start with. Every sandbox
    /// gets the same one: they are apart anyway (PID, IPC, network and mount namespaces, cgroups).
    pub const DEFAULT: IdMap = IdMap { host_base: 100_000, count: 65_536 };
}

/// What the guest reports on its stdout.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FromGuest {
    /// It is in the sandbox's network namespace: the engine may connect the network to it.
    Net,
    /// Restoring from a snapshot with memory: the restored processes' namespaces are there, PID
    /// 1 this host pid (their memory is still being restored): the engine may connect the
    /// network to it.
    Restoring(i32),
    /// PID 1 serves envd.
    Ready,
    /// It gave up, saying why.
    Error(String),
}

impl FromGuest {
    /// The line that says it (without its newline; a reason's own newlines become spaces).
    pub fn line(&self) -> String {
        match self {
            FromGuest::Net => "net".into(),
            FromGuest::Restoring(pid) => format!("restoring {pid}"),
            FromGuest::Ready => "ready".into(),
            FromGuest::Error(why) => format!("error {}", why.replace('\n', " ")),
        }
    }

    pub fn parse(line: &str) -> Result<Self, String> {
        match line.trim_end_matches('\n') {
            "net" => Ok(FromGuest::Net),
            "ready" => Ok(FromGuest::Ready),
            other => match (other.strip_prefix("error "), other.strip_prefix("restoring ")) {
                (Some(why), _) => Ok(FromGuest::Error(why.to_string())),
                (_, Some(pid)) => pid
                    .parse()
                    .map(FromGuest::Restoring)
                    .map_err(|_| format!("unexpected report from the guest: {other:?}")),
                _ => Err(format!("unexpected report from the guest: {other:?}")),
            },
        }
    }
}

/// What the engine says on the guest's stdin after the config.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FromEngine {
    /// The guest is in the sandbox's cgroup: PID 1 may be started (and is born there).
    Joined,
}

impl FromEngine {
    /// The line that says it, with its newline.
    pub fn line(self) -> &'static str {
        match self {
            FromEngine::Joined => "joined\n",
        }
    }

    pub fn parse(line: &str) -> Result<Self, String> {
        match line.trim_end_matches('\n') {
            "joined" => Ok(FromEngine::Joined),
            other => Err(format!("unexpected word from the engine: {other:?}")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_parse_back() {
        for m in [
            FromGuest::Net,
            FromGuest::Restoring(4242),
            FromGuest::Ready,
            FromGuest::Error("mount /proc: EPERM".into()),
        ] {
            assert_eq!(FromGuest::parse(&m.line()), Ok(m));
        }
        assert_eq!(FromGuest::parse("error two\nlines"), Ok(FromGuest::Error("two\nlines".into())));
        assert_eq!(FromGuest::Error("two\nlines".into()).line(), "error two lines");
        assert!(FromGuest::parse("hello").unwrap_err().contains("\"hello\""));
        assert!(FromGuest::parse("restoring x").unwrap_err().contains("\"restoring x\""));
        assert_eq!(FromEngine::parse(FromEngine::Joined.line()), Ok(FromEngine::Joined));
        assert!(FromEngine::parse("").is_err());
    }

    #[test]
    fn config_is_one_line_of_json_with_these_names() {
        let line = concat!(
            r#"{"sandbox_id":"i","env_vars":{"A":"1"},"root_lowers":["/l/root"],"#,
            r#""usr_lowers":["/usr"],"root_upper":"/d/layer/root","root_work":"/d/work/root","#,
            r#""usr_upper":"/d/layer/usr","usr_work":"/d/work/usr","rootfs":"/d/rootfs","#,
            r#""bind_files":[["/d/hosts","/etc/hosts"]],"sandbox_dir":"/d","#,
            r#""userns":{"host_base":100000,"count":65536},"namespaces_of":7}"#
        );
        let config: GuestConfig = serde_json::from_str(line).unwrap();
        assert_eq!(config.userns, Some(IdMap::DEFAULT));
        assert_eq!(config.bind_files, [(PathBuf::from("/d/hosts"), PathBuf::from("/etc/hosts"))]);
        assert_eq!(serde_json::to_string(&config).unwrap(), line);
        // Written by an older engine: no bind files, user namespace or ready network.
        let old = concat!(
            r#"{"sandbox_id":"i","envd_socket":"/s","env_vars":{},"root_lowers":[],"usr_lowers":[],"#,
            r#""root_upper":"/u","root_work":"/w","usr_upper":"/uu","usr_work":"/uw","rootfs":"/r","sandbox_dir":"/d"}"#
        );
        let config: GuestConfig = serde_json::from_str(old).unwrap();
        assert!(config.bind_files.is_empty() && config.userns.is_none() && config.namespaces_of.is_none());
    }
}
