//! The guest's raw system calls, each behind a safe function: the rest of the crate has no
//! `unsafe` (`#![deny(unsafe_code)]` in lib.rs). What rustix or nix wraps is used from them
//! directly; here is only what they lack or wrap with allocations a forked child must not make:
//! bringing an interface up, the steps of a command's child between fork and exec, waiting
//! without blocking, inotify, a terminal's size, descriptors on tokio, and a seccomp filter
//! without `no_new_privs` (seccompiler's always sets it). (`clone3` into PID 1's
//! namespaces is the engine's, which its user-namespace probe makes too.)

use std::ffi::CStr;
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::path::Path;
use tokio::io::unix::AsyncFd;

fn check(r: libc::c_int) -> io::Result<libc::c_int> {
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r)
    }
}

/// Brings the network interface `name` up (`SIOCGIFFLAGS`, then `SIOCSIFFLAGS` with
/// `IFF_UP | IFF_RUNNING`).
pub fn interface_up(name: &CStr) -> io::Result<()> {
    let bytes = name.to_bytes();
    if bytes.len() >= libc::IFNAMSIZ {
        return Err(io::Error::from_raw_os_error(libc::EINVAL));
    }
    let socket = nix::sys::socket::socket(
        nix::sys::socket::AddressFamily::Inet,
        nix::sys::socket::SockType::Datagram,
        nix::sys::socket::SockFlag::SOCK_CLOEXEC,
        None,
    )?;
    // SAFETY: an all-zero ifreq is valid; the name is set below, within IFNAMSIZ with its NUL.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    for (i, b) in bytes.iter().enumerate() {
        req.ifr_name[i] = *b as libc::c_char;
    }
    // SAFETY: SIOCGIFFLAGS/SIOCSIFFLAGS on an open socket with a live ifreq naming the interface;
    // `ifru_flags` is the union member these requests use.
    unsafe {
        check(libc::ioctl(socket.as_raw_fd(), libc::SIOCGIFFLAGS, &mut req))?;
        req.ifr_ifru.ifru_flags |= (libc::IFF_UP | libc::IFF_RUNNING) as libc::c_short;
        check(libc::ioctl(socket.as_raw_fd(), libc::SIOCSIFFLAGS, &req))?;
    }
    Ok(())
}

/// What envd's command takes between fork and exec.
#[derive(Debug, Default)]
pub struct CommandChild {
    /// A new session with stdin (a terminal's slave side) as its controlling terminal.
    pub terminal: bool,
    /// Take this user's groups, gid and uid (envd runs as root).
    pub user: Option<(u32, u32, Vec<u32>)>,
}

/// Has `cmd`'s child take `steps` before its exec.
pub fn command_child(cmd: &mut std::process::Command, steps: CommandChild) {
    // Everything the child uses is made here, before the fork: it may not allocate.
    let user = steps
        .user
        .map(|(uid, gid, groups)| (uid, gid, groups.into_iter().map(|g| g as libc::gid_t).collect::<Vec<_>>()));
    let terminal = steps.terminal;
    // SAFETY: the closure makes only async-signal-safe system calls (setsid, ioctl, setgroups,
    // setgid, setuid) on data made before the fork.
    unsafe {
        cmd.pre_exec(move || {
            if terminal {
                check(libc::setsid())?;
                check(libc::ioctl(0, libc::TIOCSCTTY as _, 0))?;
            }
            if let Some((uid, gid, groups)) = &user {
                check(libc::setgroups(groups.len(), groups.as_ptr()))?;
                check(libc::setgid(*gid))?;
                check(libc::setuid(*uid))?;
            }
            Ok(())
        });
    }
}

/// `waitpid(pid or -1, WNOHANG)`: the pid and raw status of a child that ended, `None` if none
/// has (or there is none: ECHILD is `Err`).
pub fn wait_nohang(pid: Option<i32>) -> io::Result<Option<(i32, i32)>> {
    let mut status = 0;
    // SAFETY: waitpid(2) with a valid out-pointer.
    match check(unsafe { libc::waitpid(pid.unwrap_or(-1), &mut status, libc::WNOHANG) })? {
        0 => Ok(None),
        got => Ok(Some((got, status))),
    }
}

/// Registers `fd` with the tokio reactor (inside a runtime).
pub fn async_fd(fd: OwnedFd) -> io::Result<AsyncFd<OwnedFd>> {
    // SAFETY: the AsyncFd owns the descriptor, which is neither replaced nor closed while
    // registered.
    unsafe { AsyncFd::register(fd) }.map_err(io::Error::from)
}

/// `TIOCSWINSZ`: a terminal's size.
pub fn set_window_size(fd: BorrowedFd<'_>, size: &libc::winsize) -> io::Result<()> {
    // SAFETY: ioctl(2) TIOCSWINSZ with a pointer to a live winsize.
    check(unsafe { libc::ioctl(fd.as_raw_fd(), libc::TIOCSWINSZ, size) }).map(drop)
}

/// A new inotify instance, non-blocking and close-on-exec.
pub fn inotify_init() -> io::Result<OwnedFd> {
    use std::os::fd::FromRawFd;
    // SAFETY: inotify_init1(2) with flags only.
    let raw = check(unsafe { libc::inotify_init1(libc::IN_NONBLOCK | libc::IN_CLOEXEC) })?;
    // SAFETY: raw is a fresh descriptor nobody else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(raw) })
}

/// `inotify_add_watch(2)`: the watch descriptor of `path`.
pub fn inotify_add_watch(fd: BorrowedFd<'_>, path: &Path, mask: u32) -> io::Result<i32> {
    use std::os::unix::ffi::OsStrExt;
    let c =
        std::ffi::CString::new(path.as_os_str().as_bytes()).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?;
    // SAFETY: inotify_add_watch(2) on a live descriptor with a NUL-terminated path.
    check(unsafe { libc::inotify_add_watch(fd.as_raw_fd(), c.as_ptr(), mask) })
}

/// The `inotify_event` header at `buf[off..]`, or `None` if the buffer ends before it.
pub fn inotify_event_at(buf: &[u8], off: usize) -> Option<libc::inotify_event> {
    let header = buf.get(off..off + std::mem::size_of::<libc::inotify_event>())?;
    // SAFETY: `header` holds size_of::<inotify_event>() bytes, read unaligned; every bit
    // pattern is a valid inotify_event (integers only).
    Some(unsafe { std::ptr::read_unaligned(header.as_ptr().cast()) })
}

/// Takes the listening unix socket at descriptor `fd`, which PID 1 left open across its exec of
/// envd (see `init::handoff`), and makes it close-on-exec again: no command envd starts inherits
/// it.
pub fn inherited_listener(fd: i32) -> io::Result<std::os::unix::net::UnixListener> {
    if fd <= 2 {
        return Err(io::Error::from_raw_os_error(libc::EBADF));
    }
    // SAFETY: F_GETFD only reads the flags of `fd`; a closed descriptor gives EBADF.
    check(unsafe { libc::fcntl(fd, libc::F_GETFD) })?;
    // SAFETY: `fd` is open (checked above), was handed over by PID 1's previous image for this
    // purpose, and nothing else in this process owns it.
    let owned = unsafe { <OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd) };
    rustix::io::fcntl_setfd(&owned, rustix::io::FdFlags::CLOEXEC)?;
    let is_socket = rustix::fs::fstat(&owned)?.st_mode & libc::S_IFMT == libc::S_IFSOCK;
    if !is_socket {
        return Err(io::Error::from_raw_os_error(libc::ENOTSOCK));
    }
    Ok(owned.into())
}

/// Installs a seccomp filter on the calling thread (`seccomp(SECCOMP_SET_MODE_FILTER)`), without
/// setting `no_new_privs` (seccompiler's `apply_filter` sets it): the caller holds CAP_SYS_ADMIN
/// in its user namespace, so setuid programs it starts still gain (see `init::security`).
pub fn install_seccomp_filter(program: &[seccompiler::sock_filter]) -> io::Result<()> {
    let len = u16::try_from(program.len()).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?;
    let prog = libc::sock_fprog { len, filter: program.as_ptr() as *mut libc::sock_filter };
    // SAFETY: `prog` points at `len` filter instructions that outlive the call (the kernel copies
    // them); seccompiler's `sock_filter` has libc's layout.
    let r =
        unsafe { libc::syscall(libc::SYS_seccomp, libc::SECCOMP_SET_MODE_FILTER, 0, &prog as *const libc::sock_fprog) };
    check(r as libc::c_int).map(drop)
}
