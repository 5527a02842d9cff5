//! Root in a sandbox as an unprivileged user of the host: the sandbox runs in a user namespace
//! that maps its ids `0..65536` to the host's `100000..165536`, and sees its layers through
//! idmapped mounts with the same mapping, so that files keep their owners on disk (uid 0 stays
//! 0 in every layer). Snapshot layers are therefore the same with or without a user namespace.
//!
//! The guest's first process, host root, mounts the overlay itself over the idmapped layers
//! (overlayfs takes idmapped layers since Linux 5.19), before it starts the sandbox's PID 1 in the
//! new namespaces. A host-mounted overlay keeps its `trusted.overlay.*` xattrs and its whiteouts
//! as before. It writes (copy-ups, whiteouts, its work directory) with the credentials of whoever
//! mounted it, and an idmapped upper layer only takes writes from ids it maps: so the overlay is
//! mounted with the fsuid of the sandbox's root ([`as_mapped_root`]), capabilities kept.
//!
//! Each sandbox's user namespace is owned by a host uid of its own ([`Owner`]): the kernel charges
//! per-user budgets (inotify instances and watches, pending signals, …) up the namespace chain to
//! each namespace's owner, so one sandbox exhausting its own leaves the host's root and the other
//! sandboxes theirs.
//!
//! Where the kernel or a filesystem cannot do this, [`probe`] says why, and the engine refuses to
//! run sandboxes unless told to run them without a user namespace (root inside is then the host's
//! root, confined by the capability set, seccomp and the masks of the guest's `init`).

use crate::error::{During, SysError};
use crate::mounts;
use crate::sys;
use std::fs;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::ExitCode;

// `clone3` into new namespaces, returning in both processes as `fork` does (single-threaded
// callers only): the guest starts its PID 1 with it, as [`probe`] starts its test sandbox.
pub use crate::sys::{clone_into, Cloned};

pub use sandbank_protocol::guest::IdMap;

/// Gives `pid`, a process just started in a new user namespace, `map` for its user and group
/// ids. The caller needs CAP_SETUID and CAP_SETGID in the parent namespace.
pub(crate) fn write_maps(map: &IdMap, pid: i32) -> Result<(), SysError> {
    // The line of `/proc/<pid>/uid_map` (and `gid_map`).
    let line = format!("0 {} {}", map.host_base, map.count);
    for file in ["uid_map", "gid_map"] {
        let path = format!("/proc/{pid}/{file}");
        fs::write(&path, &line).during(format_args!("write {path}"))?;
    }
    Ok(())
}

/// The host uid that owns one sandbox's user namespace: drawn at random from a range nothing
/// else uses (above the sandboxes' own ids and the id ranges `/etc/subuid` and LXD give out), so
/// no two live sandboxes share one in practice (1 in 14 million per pair). No process runs as
/// it; it only names the account the kernel charges the sandbox's per-user budgets to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Owner(pub u32);

impl Owner {
    const RANGE: std::ops::Range<u32> = 2_000_000_000..2_147_000_000;

    pub fn fresh() -> Self {
        Owner(rand::random_range(Self::RANGE))
    }
}

/// A sandbox's user namespace, with `map` and a fresh [`Owner`], and a network namespace it owns,
/// held by their descriptors. Made by a short-lived child (a process cannot give itself a mapping
/// other than its own id). Single-threaded callers only.
#[derive(Debug)]
pub struct Namespaces {
    pub user: OwnedFd,
    pub net: OwnedFd,
}

impl Namespaces {
    /// The namespaces of process `pid` (a holder made ahead of time, see [`crate::netpool`]).
    pub fn of(pid: i32) -> Result<Self, SysError> {
        Ok(Namespaces { user: namespace_of(pid, "user")?, net: namespace_of(pid, "net")? })
    }

    pub fn new(map: &IdMap) -> Result<Self, SysError> {
        let owner = Owner::fresh();
        let holder = sys::make_namespaces_as(owner.0, libc::CLONE_NEWUSER | libc::CLONE_NEWNET)
            .during(format_args!("make the user namespace as uid {}", owner.0))?;
        let result = write_maps(map, holder.pid).and_then(|()| Self::of(holder.pid));
        holder.release();
        result
    }

    /// Moves this process into the network namespace.
    pub fn enter_net(&self) -> Result<(), SysError> {
        nix::sched::setns(&self.net, nix::sched::CloneFlags::CLONE_NEWNET)
            .during("join the sandbox's network namespace")
    }

    /// Moves this process into the user namespace: the namespaces it makes next belong to it. Its
    /// ids stay the host's (unmapped there) until it takes root's ([`become_root`]); it keeps no
    /// privilege over the host, except as the owner of what host root owns.
    pub fn enter_user(&self) -> Result<(), SysError> {
        nix::sched::setns(&self.user, nix::sched::CloneFlags::CLONE_NEWUSER).during("join the sandbox's user namespace")
    }
}

/// The `kind` namespace (`user`, `net`, …) of process `pid`, held by a descriptor.
pub fn namespace_of(pid: i32, kind: &str) -> Result<OwnedFd, SysError> {
    fs::File::open(format!("/proc/{pid}/ns/{kind}"))
        .map(OwnedFd::from)
        .during(format_args!("open the {kind} namespace of pid {pid}"))
}

/// Runs `f` with the file system ids of the sandbox's root (`host_base`) and every capability
/// this process has: an overlay mounted inside `f` then writes to its idmapped upper layer as
/// that user. (Leaving fsuid 0 drops the file capabilities; they are raised again here, and come
/// back by themselves with fsuid 0.)
pub fn as_mapped_root<T>(map: &IdMap, f: impl FnOnce() -> T) -> Result<T, SysError> {
    use nix::unistd::{setfsgid, setfsuid, Gid, Uid};
    // They change only this thread's file system ids.
    setfsgid(Gid::from_raw(map.host_base));
    setfsuid(Uid::from_raw(map.host_base));
    let raised = sys::raise_effective_capabilities().during("raise the capabilities");
    let result = raised.map(|()| f());
    // Back to root's file system ids, which restores the file capabilities.
    setfsuid(Uid::from_raw(0));
    setfsgid(Gid::from_raw(0));
    result
}

/// Why sandboxes cannot have a user namespace here.
#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    /// A step the kernel or the filesystem refused.
    #[error(transparent)]
    Sys(#[from] SysError),
    /// Steps that went through but did not do what a sandbox needs, or a probe that failed
    /// without a reason: what was seen.
    #[error("{0}")]
    Unfit(String),
}

/// How long [`check`] waits for the probe: it takes a few milliseconds; one that hangs (a
/// kernel or filesystem that blocks a mount) must not hang the server's start.
const PROBE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(20);

/// Whether sandboxes can have a user namespace here: runs [`probe`] as `guest_exe guest
/// --probe-userns SCRATCH [--probe-lower LOWER]` (a process of its own: a multi-threaded one
/// cannot leave its mount namespace) on scratch directories at `scratch`, which must be on the
/// data directory's filesystem, and removes them; `lower` is a read-only layer sandboxes lie over
/// (the base image's `/usr`), when it may be on another filesystem. `Err` says why not.
pub fn check(guest_exe: &Path, scratch: &Path, lower: Option<&Path>) -> Result<IdMap, ProbeError> {
    let _ = crate::template::remove_all(scratch);
    let result = run_probe(guest_exe, scratch, lower);
    let _ = crate::template::remove_all(scratch);
    result.map(|()| IdMap::DEFAULT)
}

fn run_probe(guest_exe: &Path, scratch: &Path, lower: Option<&Path>) -> Result<(), ProbeError> {
    use std::io::Read;
    let mut cmd = std::process::Command::new(guest_exe);
    cmd.arg("guest").arg("--probe-userns").arg(scratch);
    if let Some(lower) = lower {
        cmd.arg("--probe-lower").arg(lower);
    }
    let mut child = cmd
        .env_clear()
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .during(format_args!("start {}", guest_exe.display()))?;
    let deadline = std::time::Instant::now() + PROBE_TIMEOUT;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if std::time::Instant::now() < deadline => std::thread::sleep(std::time::Duration::from_millis(5)),
            Ok(None) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(ProbeError::Unfit(format!("the check did not finish in {PROBE_TIMEOUT:?}")));
            }
            Err(e) => return Err(SysError { step: "wait for the check".into(), source: e }.into()),
        }
    };
    if status.success() {
        return Ok(());
    }
    let mut why = String::new();
    if let Some(mut stderr) = child.stderr.take() {
        let _ = stderr.read_to_string(&mut why);
    }
    // The probe's own reason, as it said it on stderr.
    match why.trim() {
        "" => Err(ProbeError::Unfit(format!("the check failed ({status})"))),
        why => Err(ProbeError::Unfit(why.to_string())),
    }
}

/// `sandbank guest --probe-userns SCRATCH [--probe-lower LOWER]`: runs [`probe`] with the
/// sandboxes' mapping; exits 0 if sandboxes can have a user namespace here, else 1 with the
/// reason on stderr.
pub fn probe_main(scratch: &Path, lower: Option<&Path>) -> ExitCode {
    match probe(scratch, lower, &IdMap::DEFAULT) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{e}");
            ExitCode::FAILURE
        }
    }
}

/// Checks, in a process of its own (`sandbank guest --probe-userns`, single-threaded), everything
/// a sandbox in a user namespace needs from this machine, on scratch directories under `scratch`
/// (on the data directory's filesystem): idmapped mounts of the data directory's filesystem and
/// of `lower` (when given), an overlay over idmapped layers that stores the sandbox's root as uid
/// 0, and `/proc` mounted by root of a new user and PID namespace. `Err` says what failed.
pub fn probe(scratch: &Path, lower: Option<&Path>, map: &IdMap) -> Result<(), ProbeError> {
    use nix::mount::{mount, MsFlags};
    nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNS).during("unshare the mount namespace")?;
    mount(None::<&str>, "/", None::<&str>, MsFlags::MS_REC | MsFlags::MS_PRIVATE, None::<&str>)
        .during("make mounts private")?;
    let dir = |name: &str| scratch.join(name);
    for d in ["lower/proc", "own/upper", "own/work", "merged", "idmapped/lower", "idmapped/own", "idmapped/usr"] {
        fs::create_dir_all(dir(d)).during(format_args!("create {}", dir(d).display()))?;
    }
    fs::write(dir("lower/file"), "lower").during(format_args!("write {}", dir("lower/file").display()))?;

    let ns = Namespaces::new(map)?;
    let views = [(dir("lower"), dir("idmapped/lower")), (dir("own"), dir("idmapped/own"))];
    for (src, dst) in views.into_iter().chain(lower.map(|l| (l.to_path_buf(), dir("idmapped/usr")))) {
        mounts::attach_idmapped(&src, &dst, ns.user.as_fd())?;
    }
    let seen = fs::metadata(dir("idmapped/lower/file")).during("stat through the idmapped mount")?.uid();
    if seen != map.host_base {
        return Err(ProbeError::Unfit(format!("an idmapped mount shows uid 0 as {seen}, not {}", map.host_base)));
    }
    as_mapped_root(map, || {
        mounts::overlay(&[dir("idmapped/lower")], &dir("idmapped/own/upper"), &dir("idmapped/own/work"), &dir("merged"))
    })?
    .map_err(|e| e.within("overlay over idmapped layers"))?;

    // Root of the sandbox writes a file; on disk it must be root's. The probe goes the way a
    // sandbox's start does (see the guest crate's `init`), in a child that stays host root's: into the network and
    // user namespaces, then PID 1 in new mount and PID namespaces, starting in the overlay (the
    // host directories above it, the data directory among them, are out of its reach).
    std::env::set_current_dir(dir("merged")).during(format_args!("chdir {}", dir("merged").display()))?;
    let launcher = match sys::clone_into(0).during("clone3")? {
        Cloned::Child => exit_child(launch_probe_sandbox(&ns)),
        Cloned::Parent(pid) => pid,
    };
    let status = nix::sys::wait::waitpid(nix::unistd::Pid::from_raw(launcher), None).during("wait")?;
    if !matches!(status, nix::sys::wait::WaitStatus::Exited(_, 0)) {
        return Err(ProbeError::Unfit(format!(
            "root of a new user namespace could not use its files or mount /proc ({status:?})"
        )));
    }
    let owner = fs::metadata(dir("own/upper/written")).during("the sandbox's file")?.uid();
    if owner != 0 {
        return Err(ProbeError::Unfit(format!("a file root wrote in the sandbox is stored as uid {owner}, not 0")));
    }
    Ok(())
}

/// The probe's launcher: joins the namespaces and starts the probe's PID 1; its exit code.
fn launch_probe_sandbox(ns: &Namespaces) -> Result<i32, ProbeError> {
    ns.enter_net()?;
    ns.enter_user()?;
    let pid = match sys::clone_into(libc::CLONE_NEWNS | libc::CLONE_NEWPID).during("clone3")? {
        Cloned::Child => exit_child(probe_as_sandbox_root().map(|()| 0)),
        Cloned::Parent(pid) => pid,
    };
    match nix::sys::wait::waitpid(nix::unistd::Pid::from_raw(pid), None).during("wait")? {
        nix::sys::wait::WaitStatus::Exited(_, code) => Ok(code),
        other => Err(ProbeError::Unfit(format!("the probe's sandbox ended with {other:?}"))),
    }
}

/// Ends a child of the probe with `result`'s code (1 for an error, said on stderr), without
/// running the parent's exit handlers.
fn exit_child(result: Result<i32, ProbeError>) -> ! {
    let code = result.unwrap_or_else(|e| {
        eprintln!("{e}");
        1
    });
    sys::exit_now(code)
}

/// The probe's sandbox: takes root's ids in its user namespace, then, in the overlay (its working
/// directory), writes a file, reads a lower one and mounts `/proc`.
fn probe_as_sandbox_root() -> Result<(), ProbeError> {
    become_root()?;
    fs::write("written", "x").during("write to the overlay as the sandbox's root")?;
    fs::read_to_string("file").during("read a lower file as the sandbox's root")?;
    nix::mount::mount(Some("proc"), "proc", Some("proc"), nix::mount::MsFlags::empty(), None::<&str>)
        .during("mount /proc in a new user namespace")?;
    Ok(())
}

/// Takes the ids of root in this process's (new, mapped) user namespace, with no supplementary
/// groups.
pub fn become_root() -> Result<(), SysError> {
    let root = nix::unistd::Gid::from_raw(0);
    nix::unistd::setresgid(root, root, root).during("setresgid 0")?;
    nix::unistd::setgroups(&[]).during("setgroups")?;
    let root = nix::unistd::Uid::from_raw(0);
    nix::unistd::setresuid(root, root, root).during("setresuid 0")
}
