//! The guest's side of a sandbox: what `sandbank guest` does before it serves envd.
//!
//! The engine starts `sandbank guest` in a mount namespace of its own. This first process, host
//! root, mounts the sandbox's root (an overlay of its upper layer over the read-only ones; seen
//! through idmapped mounts when the sandbox has a user namespace, see `sandbank_engine::userns`),
//! binds the host files laid over it, and starts PID 1 in new mount, UTS, IPC and PID
//! namespaces. Before all that it moves into the sandbox's network namespace and says `net` on
//! stdout, so that the engine can connect the network meanwhile; with
//! a user namespace, the network namespace is that namespace's, and PID 1 is started from inside
//! it. The engine puts it in the sandbox's cgroup meanwhile too, and says `joined` on its stdin;
//! PID 1 is started after that, in the cgroup. PID 1 takes root's ids in its user namespace,
//! mounts `/proc`, `/sys` and a minimal `/dev`, sets the hostname, brings up loopback, pivots
//! into the new root, binds envd's socket, drops what it must not keep and runs envd from inside
//! the sandbox, which reports `ready` on stdout. The first process waits for it and exits with it.
//!
//! - `net`: the sandbox's network namespace, loopback, ICMP sockets.
//! - `rootfs`: the sandbox's root: overlays, bound files, the pivot.
//! - `handoff`: envd's socket, and PID 1's exec of envd from inside the sandbox.
//! - `restore`: a sandbox started from a snapshot with memory: its processes restored by CRIU
//!   instead of a new PID 1.
//! - `dev`: the sandbox's `/dev`.
//! - `security`: masked kernel interfaces, capabilities (setuid programs gain within them); `seccomp`: the system
//!   call filter.

mod dev;
mod handoff;
mod net;
mod restore;
pub use restore::after_restore_main;
mod rootfs;
mod seccomp;
mod security;

use crate::error::{During, InitError};
use nix::sys::wait::{waitpid, WaitStatus};
use nix::unistd::sethostname;
use sandbank_engine::userns::{self, Cloned};
use sandbank_protocol::guest::{FromEngine, FromGuest, GuestConfig};
use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::os::unix::net::UnixListener;
use std::path::Path;

/// What envd serves with, once PID 1 has set the sandbox up and run it: the bound listener and
/// the sandbox-wide environment.
#[derive(Debug)]
pub struct GuestInit {
    pub sandbox_id: String,
    pub listener: UnixListener,
    pub env_vars: BTreeMap<String, String>,
    pub default_user: Option<String>,
    pub default_workdir: Option<String>,
}

/// Enters the sandbox, as its config (the first line on stdin) says: PID 1 sets it up and runs
/// envd (see [`handoff`]); the launching process waits for PID 1 and exits with it. Returns only
/// an error before the config is read; a later failure is reported to the engine, and ends the
/// process.
pub fn enter() -> Result<std::convert::Infallible, InitError> {
    let mut text = String::new();
    std::io::stdin().read_line(&mut text).during("read the config on stdin")?;
    let config: GuestConfig = serde_json::from_str(&text).map_err(InitError::Config)?;
    let parent = nix::unistd::getppid();
    // The network namespace comes first: the engine connects the sandbox's network to it (through
    // this process) while the rest is set up.
    let sandbox_ns = net::enter_network(&config).unwrap_or_else(|e| fail(&e));
    report(FromGuest::Net);
    rootfs::prepare_root(&config, sandbox_ns.as_ref()).unwrap_or_else(|e| fail(&e));
    if let Some(r) = &config.restore {
        // CRIU needs host root: this process stays out of the sandbox's user namespace.
        die_with_parent(parent).and_then(|()| wait_for_cgroup()).unwrap_or_else(|e| fail(&e));
        let pid1 = restore::run(&config, r).unwrap_or_else(|e| fail(&e));
        drop(sandbox_ns);
        report(FromGuest::Ready);
        silence_stdout();
        exit_with(pid1);
    }
    // PID 1's other namespaces belong to the sandbox's user namespace: made from inside it.
    if let Some(ns) = &sandbox_ns {
        ns.enter_user().unwrap_or_else(|e| fail(&e));
    }
    die_with_parent(parent).and_then(|()| wait_for_cgroup()).unwrap_or_else(|e| fail(&e));
    let pid1_namespaces = libc::CLONE_NEWNS | libc::CLONE_NEWUTS | libc::CLONE_NEWIPC | libc::CLONE_NEWPID;
    // The guest is single-threaded here (no runtime has started yet), as clone_into needs.
    let pid1 = userns::clone_into(pid1_namespaces).during("clone3").unwrap_or_else(|e| fail(&e));
    // Neither process needs the namespaces' descriptors any more (and envd must not hold them).
    drop(sandbox_ns);
    let Cloned::Parent(pid1) = pid1 else {
        let e = match become_pid1(&config) {
            Ok(listener) => handoff::exec_envd(&config, listener),
            Err(e) => e,
        };
        fail(&e)
    };
    silence_stdout();
    exit_with(pid1)
}

/// Waits for PID 1 (host pid `pid1`, a child of this process) and exits with it.
fn exit_with(pid1: i32) -> ! {
    let code = loop {
        match waitpid(nix::unistd::Pid::from_raw(pid1), None) {
            Ok(WaitStatus::Exited(_, code)) => break code,
            Ok(WaitStatus::Signaled(_, sig, _)) => break 128 + sig as i32,
            Ok(_) => continue,
            Err(nix::errno::Errno::EINTR) => continue,
            Err(_) => break 1,
        }
    };
    std::process::exit(code);
}

/// Dies (SIGKILL) when the server does: the engine asked for that before exec, but changing
/// credentials (the overlay's mount as the sandbox's root, joining its user namespace) cleared
/// it. Exits now if the server is already gone.
fn die_with_parent(parent: nix::unistd::Pid) -> Result<(), InitError> {
    nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGKILL).during("pdeathsig")?;
    if nix::unistd::getppid() != parent {
        return Err(InitError::ServerGone);
    }
    Ok(())
}

/// Waits until the engine has put this process in the sandbox's cgroup (it says `joined` on
/// stdin; it does that while this process sets up), so that PID 1 is born there. Then stdin is
/// `/dev/null`, for PID 1 and what it starts.
fn wait_for_cgroup() -> Result<(), InitError> {
    let mut line = String::new();
    std::io::stdin().read_line(&mut line).during("waiting for the cgroup")?;
    if FromEngine::parse(&line) != Ok(FromEngine::Joined) {
        return Err(InitError::NotInCgroup);
    }
    let null = fs::File::open("/dev/null").during("open /dev/null")?;
    nix::unistd::dup2_stdin(&null).during("stdin from /dev/null").map_err(InitError::from)
}

/// In PID 1, in its new namespaces and with the sandbox's root as working directory. Returns
/// envd's listener.
fn become_pid1(c: &GuestConfig) -> Result<UnixListener, InitError> {
    if c.userns.is_some() {
        userns::become_root()?;
    }
    // Die with the first process, which dies with the server. (Set after the ids change, which
    // clears it.)
    nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGKILL).during("pdeathsig")?;
    // A session of its own: the sandbox's processes belong to no session outside it (a
    // checkpoint takes only whole sessions).
    nix::unistd::setsid().during("setsid")?;
    rootfs::make_mounts_private()?;
    rootfs::own_root()?;
    rootfs::mount_proc_and_sys()?;
    dev::make_dev(Path::new("dev"), c.userns.is_some())?;
    sethostname(&c.sandbox_id).during("sethostname")?;
    net::loopback_up()?;
    rootfs::pivot_into_root()?;
    let listener = handoff::bind_socket()?;
    net::allow_ping(c.userns.as_ref());
    security::mask_kernel_interfaces()?;
    security::restrict_bounding_set()?;
    // After the mounts above, which the filter denies; before PID 1 gives up CAP_SYS_ADMIN,
    // which a filter needs without no_new_privs. Still single-threaded, so envd's threads and
    // every process it starts inherit it.
    seccomp::install()?;
    security::restrict_pid1()?;
    Ok(listener)
}

/// `sandbank guest --envd`, PID 1 once it has set the sandbox up (see [`handoff`]): takes what
/// it serves, reports `ready`, and lets go of stdout and stderr (the server's, until now).
pub fn become_envd() -> GuestInit {
    let init = handoff::receive().unwrap_or_else(|e| fail(&e));
    // Set again: the exec may have cleared it.
    if let Err(e) = nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGKILL).during("pdeathsig") {
        fail(&e);
    }
    // Not dumpable again (the exec made it so): root in the sandbox has no business in envd's
    // memory or descriptors. A checkpoint still can: it works from the sandbox's user namespace,
    // which owns envd's memory now that its executable is the sandbox's file.
    if let Err(e) = security::not_dumpable() {
        fail(&e);
    }
    report(FromGuest::Ready);
    silence_stdout();
    silence_stderr();
    init
}

/// Reports why the sandbox could not start, and exits.
fn fail(why: &dyn std::fmt::Display) -> ! {
    report(FromGuest::Error(why.to_string()));
    std::process::exit(1);
}

/// One line to the engine on the stdout pipe.
fn report(what: FromGuest) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{}", what.line());
    let _ = out.flush();
}

/// Points stdout at /dev/null once the engine has what it needs, so nothing writes into a pipe
/// nobody reads.
fn silence_stdout() {
    if let Ok(null) = fs::OpenOptions::new().write(true).open("/dev/null") {
        let _ = nix::unistd::dup2_stdout(&null);
    }
}

/// Points stderr (the server's) at /dev/null: envd holds no host descriptor.
fn silence_stderr() {
    if let Ok(null) = fs::OpenOptions::new().write(true).open("/dev/null") {
        let _ = nix::unistd::dup2_stderr(&null);
    }
}
