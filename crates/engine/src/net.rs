//! Outbound network for a sandbox: pasta (the passt project; Debian package `passt`), a
//! user-mode network stack, attached to the sandbox's network namespace.
//!
//! pasta runs on the host, as a child of the server, outside the sandbox's cgroup (freezing a
//! sandbox for a snapshot or a pause leaves it alone). It creates a tap interface in the
//! sandbox's namespace with the host's address and routes (`--config-net`) and turns the
//! sandbox's TCP, UDP and ICMP traffic into ordinary sockets of the host. What it must never do is
//! reach the host's own loopback services (the sandbank API among them), so:
//!
//! - `--no-map-gw`: the gateway address is the real gateway, not an alias of the host's loopback;
//! - `-t none -u none -T none -U none`: no port forwarding, neither from the host into the sandbox
//!   nor from the sandbox's loopback to the host's;
//! - pasta connects wherever a packet says, 127.0.0.1 included, so packets must not be forged:
//!   the sandbox's processes have no `CAP_NET_RAW` (see the guest's `init::security`), the
//!   kernel routes loopback destinations to the sandbox's own `lo`, and only raw packets could
//!   say otherwise.
//!
//! To keep pasta's start (about 19 ms) off a sandbox's start, one network is made ahead of time
//! ([`crate::netpool`]): the next sandbox with internet access joins its namespaces.
//!
//! The engine stops pasta (SIGKILL, then reaps it) when the sandbox's guest exits; if the server
//! dies first, `PR_SET_PDEATHSIG` takes it along. Being outside the sandbox's cgroup, its memory
//! (about 30 MB resident, mostly packet buffers) and CPU count as the server's, not against the
//! sandbox's limits.

use crate::error::{During, SysError};
use std::future::Future;
use std::io;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use tokio::io::{AsyncBufReadExt, BufReader};

/// The executable, as the `passt` package installs it.
pub const PASTA: &str = "pasta";
/// What to install when it is missing.
pub const INSTALL_HINT: &str = "pasta (Debian/Ubuntu package passt: apt-get install passt)";

/// Why sandboxes get no outbound network here.
#[derive(Debug, thiserror::Error)]
pub enum NoPasta {
    #[error("{INSTALL_HINT} is not installed")]
    NotInstalled,
    #[error("{} is installed but /dev/net/tun is missing (modprobe tun)", .0.display())]
    NoTun(PathBuf),
}

/// Why a sandbox's network could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum NetError {
    #[error(transparent)]
    Sys(#[from] SysError),
    /// pasta exited before the network was up: what it said.
    #[error("pasta could not set up the sandbox's network: {0}")]
    Pasta(String),
}

/// Finds pasta on `PATH`, then in the usual system directories (a server may run with a bare
/// `PATH`), and checks that it can work here. `Err` says what is missing.
pub fn find_pasta() -> Result<PathBuf, NoPasta> {
    let pasta = crate::which::find_executable(PASTA).ok_or(NoPasta::NotInstalled)?;
    if !Path::new("/dev/net/tun").exists() {
        return Err(NoPasta::NoTun(pasta));
    }
    Ok(pasta)
}

/// A running pasta serving one sandbox. Dropping it kills and reaps it.
#[derive(Debug)]
pub struct Pasta {
    child: Child,
}

impl Pasta {
    /// Attaches pasta to the network namespace of `pid` (a process of the sandbox) and returns
    /// once the sandbox's interface, addresses and routes are configured. `spawn` starts the
    /// command (the engine's long-lived spawner thread, so that `PR_SET_PDEATHSIG` outlives
    /// runtime threads).
    pub async fn start<F, Fut>(exe: &Path, pid: i32, sandbox: &str, spawn: F) -> Result<Pasta, NetError>
    where
        F: FnOnce(Command) -> Fut,
        Fut: Future<Output = io::Result<Child>>,
    {
        // pasta opens the namespace only after dropping capabilities, when /proc/<pid>/ns of a
        // root process is out of its reach, and newer versions close every inherited descriptor
        // but 0-2: the namespace comes as its stdin. Its "PID file" is its stdout: pasta writes
        // it once the namespace is configured.
        let netns = crate::userns::namespace_of(pid, "net")?;
        let ids = format!("{}:{}", nix::unistd::geteuid(), nix::unistd::getegid());
        let mut cmd = Command::new(exe);
        cmd.args(["--foreground", "--quiet", "--stderr"])
            // As the server's user: root would otherwise switch to nobody and lose the
            // capabilities it needs to join the namespace. It drops all but those itself.
            .args(["--runas", &ids])
            .args(["--config-net", "--no-map-gw", "--no-dhcp", "--no-dhcpv6", "--no-netns-quit"])
            .args(["-t", "none", "-u", "none", "-T", "none", "-U", "none"])
            .args(["--netns", "/proc/self/fd/0", "--pid", "/proc/self/fd/1"])
            .env_clear()
            .stdin(Stdio::from(netns))
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let steps = crate::sys::BeforeExec { new_session: true, die_with_parent: true, ..Default::default() };
        crate::sys::before_exec(&mut cmd, steps);
        let mut child = spawn(cmd).await.during(format_args!("start {}", exe.display()))?;
        let stdout = child.stdout.take().expect("stdout is piped");
        let stderr = forward_stderr(child.stderr.take().expect("stderr is piped"), sandbox.to_string());
        let pasta = Pasta { child };

        let ready = tokio::net::unix::pipe::Receiver::from_owned_fd(OwnedFd::from(stdout)).during("pasta pipe")?;
        let mut line = String::new();
        match BufReader::new(ready).read_line(&mut line).await {
            Ok(n) if n > 0 => Ok(pasta),
            _ => {
                // It exited: what it said is all there.
                drop(pasta);
                let said = stderr.await.unwrap_or_default();
                let said = if said.is_empty() { "it exited without a message" } else { said.trim() };
                Err(NetError::Pasta(said.to_string()))
            }
        }
    }

    /// Whether pasta still runs (a network kept ready is checked before a sandbox joins it).
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }
}

impl Drop for Pasta {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Logs what pasta says (as warnings: with `--quiet` it only reports errors) and returns its
/// first lines once it exits.
fn forward_stderr(stderr: std::process::ChildStderr, sandbox: String) -> tokio::task::JoinHandle<String> {
    tokio::spawn(async move {
        let mut said = String::new();
        let Ok(pipe) = tokio::net::unix::pipe::Receiver::from_owned_fd(OwnedFd::from(stderr)) else { return said };
        let mut lines = BufReader::new(pipe).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            // It tries syslog too, and says so on each message when there is none.
            if line.is_empty() || line.starts_with("Failed to send") {
                continue;
            }
            tracing::warn!(sandbox = %sandbox, "pasta: {line}");
            if said.len() < 2048 {
                said.push_str(&line);
                said.push('\n');
            }
        }
        said
    })
}

/// The sandbox's `/etc/resolv.conf`, from the host's: its `search`, `domain` and `options` lines,
/// and the nameservers the sandbox can reach through pasta (not loopback or link-local ones, such
/// as systemd-resolved's 127.0.0.53). `None` when no nameserver is left.
pub fn resolv_conf(host: &str) -> Option<String> {
    let mut out = String::from("# written by sandbank from the host's resolver configuration\n");
    let mut servers = 0;
    for line in host.lines().map(str::trim) {
        let mut words = line.split_whitespace();
        match words.next() {
            Some("nameserver") => {
                let reachable =
                    words.next().and_then(|a| a.parse::<std::net::IpAddr>().ok()).is_some_and(|ip| match ip {
                        std::net::IpAddr::V4(v4) => !v4.is_loopback() && !v4.is_link_local() && !v4.is_unspecified(),
                        std::net::IpAddr::V6(v6) => {
                            !v6.is_loopback() && !v6.is_unspecified() && (v6.segments()[0] & 0xffc0) != 0xfe80
                        }
                    });
                if reachable {
                    servers += 1;
                    out.push_str(line);
                    out.push('\n');
                }
            }
            Some("search" | "domain" | "options") => {
                out.push_str(line);
                out.push('\n');
            }
            _ => {}
        }
    }
    (servers > 0).then_some(out)
}

/// The resolver configuration for sandboxes with network: the host's `/etc/resolv.conf`, or,
/// when it only names a local stub resolver, the upstream servers systemd-resolved lists.
pub fn host_resolv_conf() -> Option<String> {
    ["/etc/resolv.conf", "/run/systemd/resolve/resolv.conf"]
        .iter()
        .find_map(|p| std::fs::read_to_string(p).ok().and_then(|text| resolv_conf(&text)))
}

#[cfg(test)]
mod tests {
    use super::resolv_conf;

    #[test]
    fn resolv_conf_keeps_reachable_servers_and_options() {
        let host = "# comment\nnameserver 127.0.0.53\nnameserver 10.0.0.2\nnameserver ::1\nnameserver fe80::1%eth0\nnameserver 2001:db8::53\nsearch example.org\noptions edns0 trust-ad\nsortlist 10.0.0.0\n";
        let out = resolv_conf(host).unwrap();
        let lines: Vec<&str> = out.lines().skip(1).collect();
        assert_eq!(
            lines,
            ["nameserver 10.0.0.2", "nameserver 2001:db8::53", "search example.org", "options edns0 trust-ad"]
        );
    }

    #[test]
    fn resolv_conf_with_only_a_local_stub_is_none() {
        assert_eq!(resolv_conf("nameserver 127.0.0.53\noptions edns0\n"), None);
        assert_eq!(resolv_conf(""), None);
    }
}
