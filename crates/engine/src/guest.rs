//! The guest's side of a sandbox: what `sandbank guest` does before it serves envd.
//!
//! The engine starts `sandbank guest` in a mount namespace of its own. This first process, host
//! root, mounts the sandbox's root (an overlay of its upper layer over the read-only ones; seen
//! through idmapped mounts when the sandbox has a user namespace, see [`crate::userns`]), binds
//! the host files laid over it and envd's socket at its host path, and starts PID 1 in new mount,
//! UTS, IPC and PID namespaces. Before all that it moves into the sandbox's network namespace and
//! says `net` on stdout, so that the engine can connect the network meanwhile; with a user
//! namespace, the network namespace is that namespace's, and PID 1 is started from inside it. The
//! engine puts it in the sandbox's cgroup meanwhile too, and says `joined` on its stdin; PID 1 is
//! started after that, in the cgroup. PID 1 takes root's ids in its user namespace, mounts
//! `/proc`, `/sys` and a minimal `/dev`, sets the hostname, brings up loopback, pivots into the
//! new root, drops what it must not keep and reports `ready` on stdout. The first process waits
//! for it and exits with it.

use crate::layout::SandboxDir;
use crate::mounts;
use crate::sys::{self, Cloned};
use crate::userns::{self, IdMap, Namespaces};
use nix::mount::{mount, umount2, MntFlags, MsFlags};
use nix::sys::stat::{makedev, mknod, umask, Mode, SFlag};
use nix::sys::wait::{waitpid, WaitStatus};
use nix::unistd::{chdir, pivot_root, sethostname};
use rustix::thread::CapabilitySet;
use sandbank_protocol::guest::{FromEngine, FromGuest, GuestConfig};
use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::os::fd::{AsFd, AsRawFd};
use std::os::unix::fs::{symlink, PermissionsExt};
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};

/// What PID 1 holds once the sandbox is set up: a bound envd listener and the sandbox-wide
/// environment.
#[derive(Debug)]
pub struct GuestInit {
    pub sandbox_id: String,
    pub listener: UnixListener,
    pub env_vars: BTreeMap<String, String>,
}

/// Enters the sandbox, as its config (the first line on stdin) says. Returns only in PID 1
/// inside it, with the root pivoted and the listener bound; the launching process waits for
/// PID 1 and exits with it.
pub fn enter() -> Result<GuestInit, String> {
    let mut text = String::new();
    std::io::stdin().read_line(&mut text).map_err(|e| format!("read the config on stdin: {e}"))?;
    let config: GuestConfig = serde_json::from_str(&text).map_err(|e| format!("parse the config on stdin: {e}"))?;
    let parent = nix::unistd::getppid();
    // The network namespace comes first: the engine connects the sandbox's network to it (through
    // this process) while the rest is set up.
    let sandbox_ns = match enter_network(&config) {
        Ok(ns) => ns,
        Err(e) => fail(&e),
    };
    report(FromGuest::Net);
    let listener = match prepare_root(&config, sandbox_ns.as_ref()) {
        Ok(l) => l,
        Err(e) => fail(&e),
    };
    // PID 1's other namespaces belong to the sandbox's user namespace: made from inside it.
    if let Some(ns) = &sandbox_ns {
        if let Err(e) = ns.enter_user() {
            fail(&e);
        }
    }
    if let Err(e) = die_with_parent(parent).and_then(|()| wait_for_cgroup()) {
        fail(&e);
    }
    let pid1_namespaces = libc::CLONE_NEWNS | libc::CLONE_NEWUTS | libc::CLONE_NEWIPC | libc::CLONE_NEWPID;
    // The guest is single-threaded here (no runtime has started yet), as clone_into needs.
    let pid1 = match sys::clone_into(pid1_namespaces) {
        Ok(cloned) => cloned,
        Err(e) => fail(&format!("clone3: {e}")),
    };
    // Neither process needs the namespaces' descriptors any more (and envd must not hold them).
    drop(sandbox_ns);
    let Cloned::Parent(pid1) = pid1 else {
        return match become_pid1(&config) {
            Ok(()) => {
                report(FromGuest::Ready);
                silence_stdout();
                Ok(GuestInit { sandbox_id: config.sandbox_id, listener, env_vars: config.env_vars })
            }
            Err(e) => fail(&e),
        };
    };
    drop(listener);
    silence_stdout();
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
fn die_with_parent(parent: nix::unistd::Pid) -> Result<(), String> {
    nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGKILL).map_err(|e| format!("pdeathsig: {e}"))?;
    if nix::unistd::getppid() != parent {
        return Err("the server is gone".into());
    }
    Ok(())
}

/// Waits until the engine has put this process in the sandbox's cgroup (it says `joined` on
/// stdin; it does that while this process sets up), so that PID 1 is born there. Then stdin is
/// `/dev/null`, for PID 1 and what it starts.
fn wait_for_cgroup() -> Result<(), String> {
    let mut line = String::new();
    std::io::stdin().read_line(&mut line).map_err(|e| format!("waiting for the cgroup: {e}"))?;
    if FromEngine::parse(&line) != Ok(FromEngine::Joined) {
        return Err("the engine did not put the sandbox in its cgroup".into());
    }
    let null = fs::File::open("/dev/null").map_err(|e| format!("open /dev/null: {e}"))?;
    nix::unistd::dup2_stdin(&null).map_err(|e| format!("stdin from /dev/null: {e}"))
}

/// Moves this process into the sandbox's network namespace: one owned by the sandbox's user
/// namespace (returned, for the rest of the setup to use) when it has one, else one of its own.
/// Both are made here, or were made ahead of time by the process `namespaces_of`.
fn enter_network(c: &GuestConfig) -> Result<Option<Namespaces>, String> {
    match (&c.userns, c.namespaces_of) {
        (Some(map), made) => {
            let ns = match made {
                Some(pid) => Namespaces::of(pid)?,
                None => Namespaces::new(map)?,
            };
            ns.enter_net()?;
            Ok(Some(ns))
        }
        (None, Some(pid)) => {
            let net = userns::namespace_of(pid, "net")?;
            nix::sched::setns(net, nix::sched::CloneFlags::CLONE_NEWNET)
                .map_err(|e| format!("join the sandbox's network namespace: {e}"))?;
            Ok(None)
        }
        (None, None) => {
            nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET)
                .map_err(|e| format!("unshare the network namespace: {e}"))?;
            Ok(None)
        }
    }
}

/// Reports why the sandbox could not start, and exits.
fn fail(why: &str) -> ! {
    report(FromGuest::Error(why.to_string()));
    std::process::exit(1);
}

/// In the first process, as host root: mounts the sandbox's root with the host files laid over
/// it, binds envd's socket (in the sandbox's host directory: the server connects to it from
/// outside) and moves into the root, which PID 1 inherits as its working directory (with a user
/// namespace, its root cannot look up host paths such as the data directory).
fn prepare_root(c: &GuestConfig, namespaces: Option<&Namespaces>) -> Result<UnixListener, String> {
    mount(None::<&str>, "/", None::<&str>, MsFlags::MS_REC | MsFlags::MS_PRIVATE, None::<&str>)
        .map_err(|e| format!("make mounts private: {e}"))?;
    let root = &c.rootfs;
    match (&c.userns, namespaces) {
        (Some(map), Some(ns)) => mount_idmapped_root(c, map, ns)?,
        _ => {
            mounts::overlay(&c.root_lowers, &c.root_upper, &c.root_work, root)?;
            mounts::overlay(&c.usr_lowers, &c.usr_upper, &c.usr_work, &root.join("usr"))?;
        }
    }
    for (host, inside) in &c.bind_files {
        if let Some(map) = &c.userns {
            // The sandbox's own files: its root may change them (as it could its own /etc/hosts).
            let owner = Some(map.host_base);
            nix::unistd::chown(
                host.as_path(),
                owner.map(nix::unistd::Uid::from_raw),
                owner.map(nix::unistd::Gid::from_raw),
            )
            .map_err(|e| format!("chown {}: {e}", host.display()))?;
        }
        // Resolved inside the new root: the layers may hold symlinks (a snapshot's, a template
        // tarball's), and this process still sees the host's tree.
        let target = open_in_root(root, inside).map_err(|e| format!("create {}: {e}", inside.display()))?;
        let target = format!("/proc/self/fd/{}", target.as_raw_fd());
        mount(Some(host.as_path()), target.as_str(), None::<&str>, MsFlags::MS_BIND, None::<&str>)
            .map_err(|e| format!("bind {} over {}: {e}", host.display(), inside.display()))?;
    }
    // Bound by its name from its directory: the kernel shows the path it was bound with in the
    // sandbox's /proc/net/unix, and the host's path is not the sandbox's business.
    let (Some(socket_dir), Some(socket_name)) = (c.envd_socket.parent(), c.envd_socket.file_name()) else {
        return Err(format!("bad envd socket path {}", c.envd_socket.display()));
    };
    chdir(socket_dir).map_err(|e| format!("chdir {}: {e}", socket_dir.display()))?;
    let _ = fs::remove_file(socket_name);
    let listener = UnixListener::bind(socket_name).map_err(|e| format!("bind {}: {e}", c.envd_socket.display()))?;
    chdir(root).map_err(|e| format!("chdir {}: {e}", root.display()))?;
    Ok(listener)
}

/// The overlays of `/` and `/usr` over idmapped views of their layers (see [`crate::userns`]).
/// The idmapped mounts are made on a scratch tmpfs and detached once the overlays hold them.
fn mount_idmapped_root(c: &GuestConfig, map: &IdMap, ns: &Namespaces) -> Result<(), String> {
    let staging = SandboxDir(c.sandbox_dir.clone()).idmapped();
    mount(
        Some("tmpfs"),
        &staging,
        Some("tmpfs"),
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
        Some("mode=700,size=64k"),
    )
    .map_err(|e| format!("mount {}: {e}", staging.display()))?;
    let idmapped = |src: &Path, name: String| -> Result<PathBuf, String> {
        let dst = staging.join(name);
        fs::create_dir(&dst).map_err(|e| format!("create {}: {e}", dst.display()))?;
        mounts::attach_idmapped(src, &dst, ns.user.as_fd())?;
        Ok(dst)
    };
    let root_lowers = c
        .root_lowers
        .iter()
        .enumerate()
        .map(|(i, p)| idmapped(p, format!("root{i}")))
        .collect::<Result<Vec<_>, _>>()?;
    let usr_lowers =
        c.usr_lowers.iter().enumerate().map(|(i, p)| idmapped(p, format!("usr{i}"))).collect::<Result<Vec<_>, _>>()?;
    // The upper and work directories of an overlay must be on one mount: the sandbox's directory.
    let own = idmapped(&c.sandbox_dir, "own".into())?;
    let in_own = |p: &Path| {
        p.strip_prefix(&c.sandbox_dir)
            .map(|rel| own.join(rel))
            .map_err(|_| format!("{} is not in the sandbox's directory {}", p.display(), c.sandbox_dir.display()))
    };
    let (root_upper, root_work, usr_upper, usr_work) =
        (in_own(&c.root_upper)?, in_own(&c.root_work)?, in_own(&c.usr_upper)?, in_own(&c.usr_work)?);
    userns::as_mapped_root(map, || {
        mounts::overlay(&root_lowers, &root_upper, &root_work, &c.rootfs)?;
        mounts::overlay(&usr_lowers, &usr_upper, &usr_work, &c.rootfs.join("usr"))
    })??;
    umount2(&staging, MntFlags::MNT_DETACH).map_err(|e| format!("detach {}: {e}", staging.display()))
}

/// Makes the root (the working directory) PID 1's own mount. The first process mounted it, and
/// its mounts came into PID 1's namespace locked, when that namespace belongs to a new user
/// namespace (a less privileged namespace cannot take apart what it was given): pivot_root
/// refuses a locked mount. A copy made here, attached on top, is not locked.
fn own_root() -> Result<(), String> {
    let tree = mounts::clone_tree(Path::new("."), true)?;
    mounts::attach(&tree, Path::new("."))?;
    // Into the copy: the working directory was the mount now under it.
    nix::unistd::fchdir(&tree).map_err(|e| format!("enter the sandbox's root: {e}"))
}

/// In PID 1, in its new namespaces and with the sandbox's root as working directory.
fn become_pid1(c: &GuestConfig) -> Result<(), String> {
    if c.userns.is_some() {
        userns::become_root()?;
    }
    // Die with the first process, which dies with the server. (Set after the ids change, which
    // clears it.)
    nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGKILL).map_err(|e| format!("pdeathsig: {e}"))?;
    mount(None::<&str>, "/", None::<&str>, MsFlags::MS_REC | MsFlags::MS_PRIVATE, None::<&str>)
        .map_err(|e| format!("make mounts private: {e}"))?;
    own_root()?;
    let nosuid_nodev_noexec = MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC;
    mount(Some("proc"), "proc", Some("proc"), nosuid_nodev_noexec, None::<&str>)
        .map_err(|e| format!("mount /proc: {e}"))?;
    if let Err(e) = mount(Some("sysfs"), "sys", Some("sysfs"), nosuid_nodev_noexec | MsFlags::MS_RDONLY, None::<&str>) {
        eprintln!("sandbank guest: /sys not mounted: {e}");
    }
    make_dev(Path::new("dev"), c.userns.is_some())?;
    sethostname(&c.sandbox_id).map_err(|e| format!("sethostname: {e}"))?;
    loopback_up()?;

    pivot_root(".", ".").map_err(|e| format!("pivot_root: {e}"))?;
    umount2(".", MntFlags::MNT_DETACH).map_err(|e| format!("detach the host root: {e}"))?;
    chdir("/").map_err(|e| format!("chdir /: {e}"))?;
    // ICMP echo sockets for every group the sandbox has, as ping needs without NET_RAW (a
    // per-namespace setting; the groups must be mapped in the sandbox's user namespace).
    let last_gid = c.userns.map_or(u32::MAX >> 1, |m| m.count - 1);
    let _ = fs::write("/proc/sys/net/ipv4/ping_group_range", format!("0 {last_gid}"));
    mask_kernel_interfaces()?;
    restrict_privileges()?;
    restrict_pid1()?;
    // Last: the filter denies the mounts above. Still single-threaded, so envd's threads and
    // every process it starts inherit it.
    crate::seccomp::install()?;
    Ok(())
}

/// `sandbank guest --probe-userns SCRATCH`: runs [`userns::probe`]; the exit code is 0 if
/// sandboxes can have a user namespace here, else 1 with the reason on stderr.
pub fn probe_userns_main(scratch: &Path) -> u8 {
    match userns::probe(scratch, &IdMap::DEFAULT) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("{e}");
            1
        }
    }
}

/// Opens (creating it if needed) the file `inside` of the tree at `root` as if `root` were `/`:
/// symlinks and `..` cannot leave it.
fn open_in_root(root: &Path, inside: &Path) -> std::io::Result<fs::File> {
    use rustix::fs::{openat2, Mode, OFlags, ResolveFlags};
    let dir = fs::File::open(root)?;
    let flags = OFlags::RDONLY | OFlags::CREATE | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    let resolve = ResolveFlags::IN_ROOT | ResolveFlags::NO_MAGICLINKS;
    Ok(openat2(&dir, inside, flags, Mode::from_raw_mode(0o644), resolve)?.into())
}

/// `/proc` and `/sys` files that show or change the host kernel, hidden or made read-only as
/// Docker does.
const MASKED_PATHS: &[&str] = &[
    "/proc/kcore",
    "/proc/keys",
    "/proc/timer_list",
    "/proc/sched_debug",
    "/proc/latency_stats",
    "/proc/acpi",
    "/proc/scsi",
    "/sys/firmware",
];
const READ_ONLY_PATHS: &[&str] = &["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"];

/// The sandbox's own `/proc/sys/kernel/random/boot_id`, new at each start as a VM's is (the
/// host's would say that every sandbox, and every restart of one, is the same boot): a file of
/// the sandbox's `/dev` tmpfs bound over it read-only, then unlinked from `/dev`.
fn own_boot_id() -> Result<(), String> {
    let path = Path::new("/proc/sys/kernel/random/boot_id");
    if !path.exists() {
        return Ok(());
    }
    let b: [u8; 16] = rand::random();
    // A version 4 UUID, as the kernel makes.
    let id = format!(
        "{:02x}{:02x}{:02x}{:02x}-{:02x}{:02x}-4{:x}{:02x}-{:x}{:x}{:02x}-{}",
        b[0],
        b[1],
        b[2],
        b[3],
        b[4],
        b[5],
        b[6] & 0x0f,
        b[7],
        8 | (b[8] & 0x3),
        b[8] >> 4,
        b[9],
        b[10..].iter().map(|x| format!("{x:02x}")).collect::<String>()
    );
    let source = Path::new("/dev/.boot_id");
    fs::write(source, format!("{id}\n")).map_err(|e| format!("boot_id: write: {e}"))?;
    let bound = fs::set_permissions(source, fs::Permissions::from_mode(0o444))
        .map_err(|e| format!("boot_id: chmod: {e}"))
        .and_then(|()| {
            mount(Some(source), path, None::<&str>, MsFlags::MS_BIND, None::<&str>)
                .and_then(|()| remount_read_only(path))
                .map_err(|e| format!("boot_id: bind: {e}"))
        });
    let _ = fs::remove_file(source);
    bound
}

fn mask_kernel_interfaces() -> Result<(), String> {
    own_boot_id()?;
    for path in MASKED_PATHS.iter().map(Path::new).filter(|p| p.exists()) {
        let result = if path.is_dir() {
            mount(Some("tmpfs"), path, Some("tmpfs"), MsFlags::MS_RDONLY, Some("size=0"))
        } else {
            mount(Some("/dev/null"), path, None::<&str>, MsFlags::MS_BIND, None::<&str>)
        };
        result.map_err(|e| format!("mask {}: {e}", path.display()))?;
    }
    for path in READ_ONLY_PATHS.iter().map(Path::new).filter(|p| p.exists()) {
        mount(Some(path), path, None::<&str>, MsFlags::MS_BIND | MsFlags::MS_REC, None::<&str>)
            .and_then(|()| remount_read_only(path))
            .map_err(|e| format!("make {} read-only: {e}", path.display()))?;
    }
    Ok(())
}

/// Makes the bind mount at `path` read-only, without setuid, devices or exec.
fn remount_read_only(path: &Path) -> nix::Result<()> {
    let flags = MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY;
    let flags = flags | MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC;
    mount(None::<&str>, path, None::<&str>, flags, None::<&str>)
}

/// Docker's default capability set for root, less NET_RAW: what every program started in the
/// sandbox can have at most (CHOWN, DAC_OVERRIDE, FOWNER, FSETID, KILL, SETGID, SETUID, SETPCAP,
/// NET_BIND_SERVICE, SYS_CHROOT, MKNOD, AUDIT_WRITE, SETFCAP). Raw packets could carry any
/// address, 127.0.0.1 included, to the host's network helper (see `net`); ping works without
/// NET_RAW through ICMP sockets.
pub const ALLOWED_CAPS: u64 = 0xa804_05fb;

/// Drops every other capability from the bounding set (PID 1 keeps what it holds; what it
/// starts cannot get more) and sets `no_new_privs`, so no setuid program gains privileges.
fn restrict_privileges() -> Result<(), String> {
    let last: u32 =
        fs::read_to_string("/proc/sys/kernel/cap_last_cap").ok().and_then(|s| s.trim().parse().ok()).unwrap_or(40);
    // (Capability numbers fit in 64 bits: Linux has 41.)
    for cap in (0..=last.min(63)).filter(|c| ALLOWED_CAPS & (1 << c) == 0) {
        rustix::thread::remove_capability_from_bounding_set(CapabilitySet::from_bits_retain(1 << cap))
            .map_err(|e| format!("drop capability {cap}: {e}"))?;
    }
    rustix::thread::set_no_new_privs(true).map_err(|e| format!("no_new_privs: {e}"))
}

/// PID 1 keeps no more than the processes it starts: envd needs Docker's set (it runs commands
/// as other users, chowns, reads and writes any file) and mounts nothing after setup. With
/// CAP_SYS_ADMIN, envd's own `/proc/self/map_files/*` would open the host files PID 1 has mapped
/// (its executable, the host's libc) for the files API to read or truncate.
///
/// And it is not dumpable, so no process in the sandbox passes the ptrace checks on
/// `/proc/1/{fd,exe,maps,environ,…}`: PID 1's descriptors and executable are the host's (the
/// server's stderr, the `sandbank` binary), as with runc's init (CVE-2019-5736).
fn restrict_pid1() -> Result<(), String> {
    let allowed = CapabilitySet::from_bits_retain(ALLOWED_CAPS);
    let sets =
        rustix::thread::CapabilitySets { effective: allowed, permitted: allowed, inheritable: CapabilitySet::empty() };
    rustix::thread::set_capabilities(None, sets).map_err(|e| format!("drop PID 1's capabilities: {e}"))?;
    rustix::process::set_dumpable_behavior(rustix::process::DumpableBehavior::NotDumpable)
        .map_err(|e| format!("make PID 1 non-dumpable: {e}"))
}

/// A tmpfs `/dev` with the usual character devices, `/dev/pts`, `/dev/ptmx` and `/dev/shm`.
///
/// Root of a user namespace cannot make device nodes, so there the devices are the host's,
/// bind-mounted: their owner (host root) is not mapped in the namespace, so the sandbox can use
/// them but not chmod or chown them. Without a user namespace root inside could, and the host's
/// nodes would change with them: there the sandbox gets nodes of its own.
fn make_dev(dev: &Path, in_userns: bool) -> Result<(), String> {
    mount(Some("tmpfs"), dev, Some("tmpfs"), MsFlags::MS_NOSUID | MsFlags::MS_NOEXEC, Some("mode=755,size=65536k"))
        .map_err(|e| format!("mount /dev: {e}"))?;
    let old = umask(Mode::empty());
    let result = (|| {
        for (name, major, minor) in
            [("null", 1, 3), ("zero", 1, 5), ("full", 1, 7), ("random", 1, 8), ("urandom", 1, 9), ("tty", 5, 0)]
        {
            let inside = dev.join(name);
            if in_userns {
                let host = Path::new("/dev").join(name);
                fs::File::create(&inside).map_err(|e| format!("create /dev/{name}: {e}"))?;
                mount(Some(host.as_path()), &inside, None::<&str>, MsFlags::MS_BIND, None::<&str>)
                    .map_err(|e| format!("bind {} on /dev/{name}: {e}", host.display()))?;
            } else {
                mknod(&inside, SFlag::S_IFCHR, Mode::from_bits_truncate(0o666), makedev(major, minor))
                    .map_err(|e| format!("mknod /dev/{name}: {e}"))?;
            }
        }
        for dir in ["pts", "shm"] {
            fs::create_dir(dev.join(dir)).map_err(|e| format!("mkdir /dev/{dir}: {e}"))?;
        }
        mount(
            Some("devpts"),
            &dev.join("pts"),
            Some("devpts"),
            MsFlags::MS_NOSUID | MsFlags::MS_NOEXEC,
            Some("newinstance,ptmxmode=0666,mode=0620,gid=5"),
        )
        .map_err(|e| format!("mount /dev/pts: {e}"))?;
        mount(Some("shm"), &dev.join("shm"), Some("tmpfs"), MsFlags::MS_NOSUID | MsFlags::MS_NODEV, Some("mode=1777"))
            .map_err(|e| format!("mount /dev/shm: {e}"))?;
        for (link, target) in [
            ("ptmx", "pts/ptmx"),
            ("fd", "/proc/self/fd"),
            ("stdin", "/proc/self/fd/0"),
            ("stdout", "/proc/self/fd/1"),
            ("stderr", "/proc/self/fd/2"),
        ] {
            symlink(target, dev.join(link)).map_err(|e| format!("link /dev/{link}: {e}"))?;
        }
        Ok(())
    })();
    umask(old);
    result
}

/// Brings up `lo` in the new network namespace (it starts down).
fn loopback_up() -> Result<(), String> {
    sys::interface_up(c"lo").map_err(|e| format!("bring lo up: {e}"))
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
