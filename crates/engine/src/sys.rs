//! The engine's raw system calls, each behind a safe function: the rest of the crate has no
//! `unsafe` (`#![deny(unsafe_code)]` in lib.rs). What rustix or nix wraps is used from them
//! directly; here is only what they lack: `mount_setattr`, `clone3` into new namespaces (which
//! the guest's setup takes too, through [`crate::userns::clone_into`]), the steps a child takes
//! between fork and exec, loop-device ioctls, btrfs's subvolume and quota-group ioctls, and a
//! pidfd's readiness on tokio.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::os::unix::process::CommandExt;

fn check(r: libc::c_long) -> io::Result<libc::c_long> {
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r)
    }
}

/// `mount_setattr(2)` on the detached tree `tree` (empty path): sets `attr_set`
/// (`MOUNT_ATTR_*`), with `userns` for `MOUNT_ATTR_IDMAP`.
pub fn mount_setattr(tree: BorrowedFd<'_>, attr_set: u64, userns: Option<BorrowedFd<'_>>) -> io::Result<()> {
    #[repr(C)]
    struct MountAttr {
        attr_set: u64,
        attr_clr: u64,
        propagation: u64,
        userns_fd: u64,
    }
    let userns_fd = userns.map_or(0, |fd| fd.as_raw_fd() as u64);
    let attr = MountAttr { attr_set, attr_clr: 0, propagation: 0, userns_fd };
    // SAFETY: mount_setattr(2) on a live fd with an empty NUL-terminated path and a live
    // mount_attr of the size passed.
    let r = unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            tree.as_raw_fd(),
            c"".as_ptr(),
            libc::AT_EMPTY_PATH,
            &attr,
            std::mem::size_of::<MountAttr>(),
        )
    };
    check(r).map(drop)
}

/// Which side of a [`clone_into`] this is.
#[derive(Debug, PartialEq, Eq)]
pub enum Cloned {
    Child,
    Parent(i32),
}

/// `clone3(2)` with namespace flags and no new stack: returns like `fork`, in both processes.
/// Refused unless this process has a single thread, which makes it sound for the child to run
/// any code (no other thread held a lock the child would inherit); the check cannot race, since
/// only this thread could start another.
pub fn clone_into(namespaces: libc::c_int) -> io::Result<Cloned> {
    let threads = std::fs::read_dir("/proc/self/task")?.count();
    if threads != 1 {
        return Err(io::Error::other(format!("clone3 into new namespaces needs a single thread, not {threads}")));
    }
    #[repr(C)]
    #[derive(Default)]
    struct CloneArgs {
        flags: u64,
        pidfd: u64,
        child_tid: u64,
        parent_tid: u64,
        exit_signal: u64,
        stack: u64,
        stack_size: u64,
        tls: u64,
    }
    let args = CloneArgs { flags: namespaces as u64, exit_signal: libc::SIGCHLD as u64, ..Default::default() };
    // SAFETY: clone3 without CLONE_VM or a stack duplicates the process as fork does; the
    // process is single-threaded (checked above), so the child's copy is consistent.
    match check(unsafe { libc::syscall(libc::SYS_clone3, &args, std::mem::size_of::<CloneArgs>()) })? {
        0 => Ok(Cloned::Child),
        pid => Ok(Cloned::Parent(pid as i32)),
    }
}

/// A child that made new namespaces as another effective uid (see [`make_namespaces_as`]),
/// waiting to be released: its namespaces stay reachable through `/proc/<pid>/ns/*` until then.
#[derive(Debug)]
pub struct NamespaceHolder {
    pub pid: i32,
    /// Closing it lets the child exit.
    release: OwnedFd,
}

impl NamespaceHolder {
    /// Lets the child exit, and reaps it.
    pub fn release(self) {
        let pid = self.pid;
        drop(self.release);
        let _ = nix::sys::wait::waitpid(nix::unistd::Pid::from_raw(pid), None);
    }
}

/// Forks a child that takes `euid` as its effective uid (its capabilities kept: real and saved
/// uids stay root's), makes the namespaces `flags` with `unshare`, and waits. So the new user
/// namespace is owned by `euid`. The child makes only raw system calls, so this is sound from
/// any thread.
pub fn make_namespaces_as(euid: u32, flags: libc::c_int) -> io::Result<NamespaceHolder> {
    let (ready_r, ready_w) = nix::unistd::pipe()?;
    let (wait_r, wait_w) = nix::unistd::pipe()?;
    // SAFETY: the child runs only async-signal-safe system calls and `_exit`s.
    let pid = unsafe { libc::fork() };
    if pid == 0 {
        // Its copies of the parent's ends: the read below ends when the parent's is closed.
        drop((ready_r, wait_w));
        let status = match set_euid_keeping_caps(euid) {
            // SAFETY: unshare(2) with namespace flags.
            Ok(()) if unsafe { libc::unshare(flags) } == 0 => 0u8,
            Ok(()) => io::Error::last_os_error().raw_os_error().unwrap_or(libc::EIO) as u8,
            Err(e) => e.raw_os_error().unwrap_or(libc::EIO) as u8,
        };
        let mut byte = [0u8];
        // SAFETY: write(2) and read(2) of live one-byte buffers on open pipes, then _exit(2).
        unsafe {
            libc::write(ready_w.as_raw_fd(), [status].as_ptr().cast(), 1);
            libc::read(wait_r.as_raw_fd(), byte.as_mut_ptr().cast(), 1);
            libc::_exit(0)
        }
    }
    if pid < 0 {
        return Err(io::Error::last_os_error());
    }
    drop((ready_w, wait_r));
    let holder = NamespaceHolder { pid, release: wait_w };
    let mut status = [0u8];
    let said = loop {
        match nix::unistd::read(&ready_r, &mut status) {
            Err(nix::errno::Errno::EINTR) => continue,
            r => break r,
        }
    };
    match said {
        Ok(1) if status[0] == 0 => Ok(holder),
        Ok(1) => {
            holder.release();
            Err(io::Error::from_raw_os_error(status[0].into()))
        }
        _ => {
            holder.release();
            Err(io::Error::other("the child died"))
        }
    }
}

/// Makes `euid` this thread's effective uid and raises its effective capabilities again from
/// the permitted set, which leaving euid 0 kept (the real and saved uids stay root's). Raw
/// system calls only: fit for a child between fork and exec.
pub fn set_euid_keeping_caps(euid: u32) -> io::Result<()> {
    rustix::thread::set_thread_res_uid(None, Some(rustix::process::Uid::from_raw(euid)), None)?;
    raise_effective_capabilities()
}

/// Makes this thread's effective capabilities its permitted ones (a change of euid or fsuid
/// away from 0 clears them). Raw system calls only.
pub fn raise_effective_capabilities() -> io::Result<()> {
    use rustix::thread::{capabilities, set_capabilities, CapabilitySets};
    let sets = capabilities(None)?;
    Ok(set_capabilities(None, CapabilitySets { effective: sets.permitted, ..sets })?)
}

/// What a child does between fork and exec, in this order. Each step is a raw system call, as
/// the time between fork and exec allows.
#[derive(Clone, Copy, Debug, Default)]
pub struct BeforeExec {
    /// `setsid`: away from the server's terminal (a Ctrl-C is the server's to handle).
    pub new_session: bool,
    /// Marks every descriptor past stdio close-on-exec (`close_range`; kernels before 5.11 lack
    /// the flag, and then inherited descriptors pass).
    pub close_inherited: bool,
    /// [`set_euid_keeping_caps`] before the unshare, for a user namespace owned by that uid.
    pub euid: Option<u32>,
    /// `unshare` of these namespaces (0: none).
    pub unshare: libc::c_int,
    /// `setns` into this network namespace (a descriptor that stays open until the exec).
    pub join_net: Option<RawFd>,
    /// SIGKILL when the thread that forked it ends (set last: changing credentials clears it).
    pub die_with_parent: bool,
    /// Moves it into the cgroup whose `cgroup.procs` this descriptor is open on (write-only),
    /// before it runs anything: what it forks is born there.
    pub join_cgroup: Option<RawFd>,
}

/// Has `cmd`'s child take `steps` before its exec.
pub fn before_exec(cmd: &mut std::process::Command, steps: BeforeExec) {
    // SAFETY: the closure makes only async-signal-safe system calls (setsid, close_range,
    // setresuid, capget/capset, unshare, setns, write, prctl), as a child between fork and exec
    // must.
    unsafe {
        cmd.pre_exec(move || {
            let ok = |r: libc::c_int| if r < 0 { Err(io::Error::last_os_error()) } else { Ok(()) };
            if steps.new_session {
                libc::setsid();
            }
            if steps.close_inherited {
                libc::syscall(libc::SYS_close_range, 3u32, u32::MAX, libc::CLOSE_RANGE_CLOEXEC);
            }
            if let Some(euid) = steps.euid {
                set_euid_keeping_caps(euid)?;
            }
            if steps.unshare != 0 {
                ok(libc::unshare(steps.unshare))?;
            }
            if let Some(ns) = steps.join_net {
                ok(libc::setns(ns, libc::CLONE_NEWNET))?;
            }
            if let Some(procs) = steps.join_cgroup {
                // "0": the writing process.
                let written = libc::write(procs, b"0".as_ptr().cast(), 1);
                ok(if written == 1 { 0 } else { -1 })?;
            }
            if steps.die_with_parent {
                ok(libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL))?;
            }
            Ok(())
        });
    }
}

/// Waits until `fd` (a pidfd, say) is readable, on the tokio runtime.
pub async fn readable(fd: OwnedFd) -> io::Result<()> {
    // SAFETY: the AsyncFd owns the OwnedFd, so the descriptor stays open and the same for its
    // life.
    let fd = unsafe { tokio::io::unix::AsyncFd::register(fd) }.map_err(io::Error::from)?;
    fd.readable().await.map(drop)
}

/// `sync_file_range(2)` with `SYNC_FILE_RANGE_WRITE`: starts writeback of a range, waits for
/// nothing (rustix and nix lack it).
pub fn start_writeback(fd: BorrowedFd<'_>, offset: i64, len: i64) {
    // SAFETY: sync_file_range(2) on a live fd with plain integer arguments.
    unsafe { libc::sync_file_range(fd.as_raw_fd(), offset, len, libc::SYNC_FILE_RANGE_WRITE) };
}

/// `LOOP_CTL_GET_FREE` on `/dev/loop-control`: the number of a free loop device.
pub fn loop_get_free(control: BorrowedFd<'_>) -> io::Result<u32> {
    const LOOP_CTL_GET_FREE: libc::c_ulong = 0x4C82;
    // SAFETY: ioctl(2) LOOP_CTL_GET_FREE takes no argument.
    let n = unsafe { libc::ioctl(control.as_raw_fd(), LOOP_CTL_GET_FREE as _) };
    check(n.into()).map(|n| n as u32)
}

/// `LOOP_CONFIGURE`: binds the loop device `dev` to `backing` with these `LO_FLAGS_*`.
pub fn loop_configure(dev: BorrowedFd<'_>, backing: BorrowedFd<'_>, flags: u32) -> io::Result<()> {
    const LOOP_CONFIGURE: libc::c_ulong = 0x4C0A;
    #[repr(C)]
    struct LoopInfo64 {
        device: u64,
        inode: u64,
        rdevice: u64,
        offset: u64,
        sizelimit: u64,
        number: u32,
        encrypt_type: u32,
        encrypt_key_size: u32,
        flags: u32,
        file_name: [u8; 64],
        crypt_name: [u8; 64],
        encrypt_key: [u8; 32],
        init: [u64; 2],
    }
    #[repr(C)]
    struct LoopConfig {
        fd: u32,
        block_size: u32,
        info: LoopInfo64,
        reserved: [u64; 8],
    }
    // SAFETY: an all-zero loop_config is valid (no offset, no size limit, no encryption).
    let mut config: LoopConfig = unsafe { std::mem::zeroed() };
    config.fd = backing.as_raw_fd() as u32;
    config.info.flags = flags;
    // SAFETY: ioctl(2) LOOP_CONFIGURE with a pointer to a live, fully initialised loop_config.
    let r = unsafe { libc::ioctl(dev.as_raw_fd(), LOOP_CONFIGURE as _, &config) };
    check(r.into()).map(drop)
}

/// `_exit(2)`: ends this process at once, without the exit handlers (for a forked child, whose
/// handlers are its parent's).
pub fn exit_now(code: i32) -> ! {
    // SAFETY: _exit(2) only ends this process.
    unsafe { libc::_exit(code) }
}

/// The argument of btrfs's subvolume ioctls (`struct btrfs_ioctl_vol_args`): a name in the
/// directory the ioctl is made on.
#[repr(C)]
struct BtrfsVolArgs {
    fd: i64,
    name: [u8; 4088],
}

/// `struct btrfs_ioctl_vol_args_v2`, for snapshots: `fd` the source subvolume, `flags` e.g.
/// read-only.
#[repr(C)]
struct BtrfsVolArgsV2 {
    fd: i64,
    transid: u64,
    flags: u64,
    unused: [u64; 4],
    name: [u8; 4040],
}

// Both argument structures are 4096 bytes, as the request numbers say.
const _: () = assert!(std::mem::size_of::<BtrfsVolArgs>() == 4096);
const _: () = assert!(std::mem::size_of::<BtrfsVolArgsV2>() == 4096);

/// A btrfs request number: `_IOC(dir, BTRFS_IOCTL_MAGIC, nr, size)` (dir 1 write, 2 read, 3
/// both; magic 0x94).
const fn btrfs_ioc(dir: libc::c_ulong, nr: libc::c_ulong, size: usize) -> libc::c_ulong {
    (dir << 30) | ((size as libc::c_ulong) << 16) | (0x94 << 8) | nr
}

/// `_IOW(BTRFS_IOCTL_MAGIC, nr, 4096 bytes)`.
const fn btrfs_iow(nr: libc::c_ulong) -> libc::c_ulong {
    btrfs_ioc(1, nr, 4096)
}

const BTRFS_SUBVOL_RDONLY: u64 = 1 << 1;
const BTRFS_IOC_SUBVOL_CREATE: libc::c_ulong = btrfs_iow(14);
const BTRFS_IOC_SNAP_DESTROY: libc::c_ulong = btrfs_iow(15);
const BTRFS_IOC_SNAP_CREATE_V2: libc::c_ulong = btrfs_iow(23);
const BTRFS_IOC_RESIZE: libc::c_ulong = btrfs_iow(3);

/// A name for a btrfs ioctl: one path component, NUL-terminated, that fits.
fn btrfs_name<const N: usize>(name: &std::ffi::OsStr) -> io::Result<[u8; N]> {
    use std::os::unix::ffi::OsStrExt;
    let bytes = name.as_bytes();
    if bytes.is_empty() || bytes.len() >= N || bytes.contains(&b'/') || bytes.contains(&0) {
        return Err(io::Error::new(io::ErrorKind::InvalidInput, format!("not a subvolume name: {name:?}")));
    }
    let mut out = [0u8; N];
    out[..bytes.len()].copy_from_slice(bytes);
    Ok(out)
}

/// `BTRFS_IOC_SUBVOL_CREATE`: a new, empty subvolume `name` in directory `parent`.
pub fn btrfs_subvolume_create(parent: BorrowedFd<'_>, name: &std::ffi::OsStr) -> io::Result<()> {
    let args = BtrfsVolArgs { fd: 0, name: btrfs_name(name)? };
    // SAFETY: ioctl(2) with a pointer to a live, initialised 4096-byte vol_args, as the request
    // number says.
    let r = unsafe { libc::ioctl(parent.as_raw_fd(), BTRFS_IOC_SUBVOL_CREATE as _, &args) };
    check(r.into()).map(drop)
}

/// `BTRFS_IOC_SNAP_CREATE_V2`: a snapshot of subvolume `source` as `name` in directory
/// `parent`, read-only if asked.
pub fn btrfs_snapshot(
    source: BorrowedFd<'_>,
    parent: BorrowedFd<'_>,
    name: &std::ffi::OsStr,
    read_only: bool,
) -> io::Result<()> {
    let args = BtrfsVolArgsV2 {
        fd: source.as_raw_fd().into(),
        transid: 0,
        flags: if read_only { BTRFS_SUBVOL_RDONLY } else { 0 },
        unused: [0; 4],
        name: btrfs_name(name)?,
    };
    // SAFETY: ioctl(2) with a pointer to a live, initialised 4096-byte vol_args_v2 naming a
    // descriptor that stays open for the call.
    let r = unsafe { libc::ioctl(parent.as_raw_fd(), BTRFS_IOC_SNAP_CREATE_V2 as _, &args) };
    check(r.into()).map(drop)
}

/// `BTRFS_IOC_SNAP_DESTROY`: removes subvolume `name` (with what is in it) from directory
/// `parent`.
pub fn btrfs_subvolume_destroy(parent: BorrowedFd<'_>, name: &std::ffi::OsStr) -> io::Result<()> {
    let args = BtrfsVolArgs { fd: 0, name: btrfs_name(name)? };
    // SAFETY: as in btrfs_subvolume_create.
    let r = unsafe { libc::ioctl(parent.as_raw_fd(), BTRFS_IOC_SNAP_DESTROY as _, &args) };
    check(r.into()).map(drop)
}

/// `BTRFS_IOC_RESIZE` "max": the filesystem of `fs` (one device) grows to its device's size.
pub fn btrfs_resize_max(fs: BorrowedFd<'_>) -> io::Result<()> {
    let args = BtrfsVolArgs { fd: 0, name: btrfs_name(std::ffi::OsStr::new("max"))? };
    // SAFETY: as in btrfs_subvolume_create.
    let r = unsafe { libc::ioctl(fs.as_raw_fd(), BTRFS_IOC_RESIZE as _, &args) };
    check(r.into()).map(drop)
}

/// `struct btrfs_ioctl_quota_ctl_args`.
#[repr(C)]
struct BtrfsQuotaCtl {
    cmd: u64,
    status: u64,
}

/// `struct btrfs_ioctl_qgroup_limit_args`: a limit for qgroup `qgroupid` (0: the subvolume
/// the ioctl is made on).
#[repr(C)]
struct BtrfsQgroupLimit {
    qgroupid: u64,
    flags: u64,
    max_rfer: u64,
    max_excl: u64,
    rsv_rfer: u64,
    rsv_excl: u64,
}

/// `struct btrfs_ioctl_ino_lookup_args`: asked with `objectid` 256 (a subvolume's root
/// directory), it answers `treeid`, the subvolume's id.
#[repr(C)]
struct BtrfsInoLookup {
    treeid: u64,
    objectid: u64,
    name: [u8; 4080],
}

/// `struct btrfs_ioctl_search_args`: the key of a tree search, then the items found (each a
/// 32-byte header and its data).
#[repr(C)]
struct BtrfsSearch {
    tree_id: u64,
    min_objectid: u64,
    max_objectid: u64,
    min_offset: u64,
    max_offset: u64,
    min_transid: u64,
    max_transid: u64,
    min_type: u32,
    max_type: u32,
    nr_items: u32,
    unused: u32,
    unused1: [u64; 4],
    buf: [u8; 4096 - 104],
}

const _: () = assert!(std::mem::size_of::<BtrfsQgroupLimit>() == 48);
const _: () = assert!(std::mem::size_of::<BtrfsInoLookup>() == 4096);
const _: () = assert!(std::mem::size_of::<BtrfsSearch>() == 4096);

const BTRFS_IOC_TREE_SEARCH: libc::c_ulong = btrfs_ioc(3, 17, 4096);
const BTRFS_IOC_INO_LOOKUP: libc::c_ulong = btrfs_ioc(3, 18, 4096);
const BTRFS_IOC_QUOTA_CTL: libc::c_ulong = btrfs_ioc(3, 40, std::mem::size_of::<BtrfsQuotaCtl>());
const BTRFS_IOC_QGROUP_LIMIT: libc::c_ulong = btrfs_ioc(2, 43, std::mem::size_of::<BtrfsQgroupLimit>());
const BTRFS_QUOTA_CTL_ENABLE: u64 = 1;
const BTRFS_QGROUP_LIMIT_MAX_RFER: u64 = 1;
const BTRFS_QUOTA_TREE_OBJECTID: u64 = 8;
const BTRFS_QGROUP_STATUS_KEY: u32 = 240;
const BTRFS_QGROUP_INFO_KEY: u32 = 242;

/// `BTRFS_IOC_QUOTA_CTL` enable: quota groups (full accounting: a subvolume's referenced bytes
/// count data it shares with snapshots) on the filesystem of `fs`. Enabling them again is a
/// no-op.
pub fn btrfs_quota_enable(fs: BorrowedFd<'_>) -> io::Result<()> {
    let mut args = BtrfsQuotaCtl { cmd: BTRFS_QUOTA_CTL_ENABLE, status: 0 };
    // SAFETY: ioctl(2) with a pointer to a live quota_ctl_args of the size the request says.
    let r = unsafe { libc::ioctl(fs.as_raw_fd(), BTRFS_IOC_QUOTA_CTL as _, &mut args) };
    check(r.into()).map(drop)
}

/// `BTRFS_IOC_QGROUP_LIMIT`: the subvolume `subvolume` may reference at most `max_bytes`
/// (0: no limit); past it, writes fail with EDQUOT.
pub fn btrfs_qgroup_limit(subvolume: BorrowedFd<'_>, max_bytes: u64) -> io::Result<()> {
    // All ones clears a limit.
    let max_rfer = if max_bytes > 0 { max_bytes } else { u64::MAX };
    let flags = BTRFS_QGROUP_LIMIT_MAX_RFER;
    let mut args = BtrfsQgroupLimit { qgroupid: 0, flags, max_rfer, max_excl: 0, rsv_rfer: 0, rsv_excl: 0 };
    // SAFETY: ioctl(2) with a pointer to a live qgroup_limit_args of the size the request says.
    let r = unsafe { libc::ioctl(subvolume.as_raw_fd(), BTRFS_IOC_QGROUP_LIMIT as _, &mut args) };
    check(r.into()).map(drop)
}

/// `BTRFS_IOC_INO_LOOKUP`: the id of the subvolume `dir` is in.
pub fn btrfs_subvolume_id(dir: BorrowedFd<'_>) -> io::Result<u64> {
    let mut args = BtrfsInoLookup { treeid: 0, objectid: 256, name: [0; 4080] };
    // SAFETY: ioctl(2) with a pointer to a live 4096-byte ino_lookup_args, as the request says.
    let r = unsafe { libc::ioctl(dir.as_raw_fd(), BTRFS_IOC_INO_LOOKUP as _, &mut args) };
    check(r.into()).map(|_| args.treeid)
}

/// One item of the quota tree of `fs`'s filesystem (`BTRFS_IOC_TREE_SEARCH`, needs
/// CAP_SYS_ADMIN): of `key_type` at `offset`, its data; `None` when there is none (and when the
/// filesystem has no quota tree: quotas are off).
fn btrfs_quota_item(fs: BorrowedFd<'_>, key_type: u32, offset: u64) -> io::Result<Option<Vec<u8>>> {
    let mut args = BtrfsSearch {
        tree_id: BTRFS_QUOTA_TREE_OBJECTID,
        min_objectid: 0,
        max_objectid: 0,
        min_offset: offset,
        max_offset: offset,
        min_transid: 0,
        max_transid: u64::MAX,
        min_type: key_type,
        max_type: key_type,
        nr_items: 1,
        unused: 0,
        unused1: [0; 4],
        buf: [0; 4096 - 104],
    };
    // SAFETY: ioctl(2) with a pointer to a live 4096-byte search_args, as the request says; the
    // kernel writes at most its buffer.
    let r = unsafe { libc::ioctl(fs.as_raw_fd(), BTRFS_IOC_TREE_SEARCH as _, &mut args) };
    match check(r.into()) {
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => return Ok(None),
        Err(e) => return Err(e),
        Ok(_) => {}
    }
    if args.nr_items == 0 {
        return Ok(None);
    }
    // The header: transid, objectid, offset (u64 each), type, len (u32 each).
    let len = u32::from_ne_bytes(args.buf[28..32].try_into().unwrap()) as usize;
    Ok(args.buf.get(32..32 + len).map(<[u8]>::to_vec))
}

/// Whether quota groups are on in `fs`'s filesystem.
pub fn btrfs_quota_enabled(fs: BorrowedFd<'_>) -> io::Result<bool> {
    btrfs_quota_item(fs, BTRFS_QGROUP_STATUS_KEY, 0).map(|item| item.is_some())
}

/// The bytes subvolume `id` of `fs`'s filesystem references (its quota group's `rfer`, as of
/// the last transaction), `None` without quota groups.
pub fn btrfs_referenced_bytes(fs: BorrowedFd<'_>, id: u64) -> io::Result<Option<u64>> {
    // struct btrfs_qgroup_info_item: generation, rfer, rfer_cmpr, excl, excl_cmpr.
    let item = btrfs_quota_item(fs, BTRFS_QGROUP_INFO_KEY, id)?;
    Ok(item.and_then(|data| data.get(8..16).map(|b| u64::from_le_bytes(b.try_into().unwrap()))))
}
