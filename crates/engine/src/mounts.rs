//! Mount trees handled by descriptor (the mount API of Linux 5.2+): cloned, idmapped, attached.

use nix::mount::{mount, MsFlags};
use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

fn cstring(path: &Path) -> Result<CString, String> {
    CString::new(path.as_os_str().as_bytes()).map_err(|_| format!("{} has a NUL byte", path.display()))
}

/// A detached copy of the mount at `path` (with the mounts under it when `recursive`): a new
/// mount of the caller's namespace, which its namespace can do anything with, even when the
/// original came from a more privileged one.
pub fn clone_tree(path: &Path, recursive: bool) -> Result<OwnedFd, String> {
    const OPEN_TREE_CLONE: libc::c_uint = 1;
    let c = cstring(path)?;
    let mut flags = OPEN_TREE_CLONE | libc::O_CLOEXEC as libc::c_uint;
    if recursive {
        flags |= libc::AT_RECURSIVE as libc::c_uint;
    }
    // SAFETY: open_tree(2) on a NUL-terminated path; a new fd or -1.
    let fd = unsafe { libc::syscall(libc::SYS_open_tree, libc::AT_FDCWD, c.as_ptr(), flags) };
    if fd < 0 {
        return Err(format!("open_tree {}: {}", path.display(), io::Error::last_os_error()));
    }
    // SAFETY: the kernel just returned this fd; nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

/// Makes the detached tree `tree` show its files through `userns`'s id mapping.
pub fn set_idmap(tree: &OwnedFd, userns: BorrowedFd) -> Result<(), String> {
    const MOUNT_ATTR_IDMAP: u64 = 0x0010_0000;
    set_attributes(tree, MOUNT_ATTR_IDMAP, userns.as_raw_fd() as u64)
}

/// Makes the detached tree `tree` read-only, setuid-less and device-less: no write, chmod,
/// chown or xattr lands on its files through it, whatever the caller's capabilities (EROFS).
pub fn set_read_only(tree: &OwnedFd) -> Result<(), String> {
    const MOUNT_ATTR_RDONLY: u64 = 0x1;
    const MOUNT_ATTR_NOSUID: u64 = 0x2;
    const MOUNT_ATTR_NODEV: u64 = 0x4;
    set_attributes(tree, MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV, 0)
}

fn set_attributes(tree: &OwnedFd, attr_set: u64, userns_fd: u64) -> Result<(), String> {
    #[repr(C)]
    struct MountAttr {
        attr_set: u64,
        attr_clr: u64,
        propagation: u64,
        userns_fd: u64,
    }
    let attr = MountAttr { attr_set, attr_clr: 0, propagation: 0, userns_fd };
    // SAFETY: mount_setattr(2) on the tree's fd with an empty path and a live mount_attr of the
    // size passed.
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
    if r < 0 {
        return Err(format!("mount_setattr: {}", io::Error::last_os_error()));
    }
    Ok(())
}

/// Attaches the detached tree `tree` at `dst`.
pub fn attach(tree: &OwnedFd, dst: &Path) -> Result<(), String> {
    const MOVE_MOUNT_F_EMPTY_PATH: libc::c_uint = 0x4;
    let c = cstring(dst)?;
    // SAFETY: move_mount(2) of the tree (empty path) onto a NUL-terminated path.
    let r = unsafe {
        libc::syscall(
            libc::SYS_move_mount,
            tree.as_raw_fd(),
            c"".as_ptr(),
            libc::AT_FDCWD,
            c.as_ptr(),
            MOVE_MOUNT_F_EMPTY_PATH,
        )
    };
    if r < 0 {
        return Err(format!("move_mount to {}: {}", dst.display(), io::Error::last_os_error()));
    }
    Ok(())
}

/// Mounts the directory `src` at `dst` (a directory) as seen through `userns`'s mapping: with
/// the sandboxes' mapping, a file owned by uid 0 on disk shows as uid 100000, and a file created
/// by uid 100000 is stored as uid 0.
pub fn attach_idmapped(src: &Path, dst: &Path, userns: BorrowedFd) -> Result<(), String> {
    let tree = clone_tree(src, false)?;
    set_idmap(&tree, userns)
        .and_then(|()| attach(&tree, dst))
        .map_err(|e| format!("idmapped mount of {} on {}: {e}", src.display(), dst.display()))
}

/// Mounts the overlay of a sandbox's `/` or `/usr` (also what [`crate::userns::probe`] tries).
pub fn overlay(lowers: &[PathBuf], upper: &Path, work: &Path, target: &Path) -> Result<(), String> {
    let lowerdir = lowers.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(":");
    // No redirects or metacopy: an upper layer must stand on its own as a snapshot layer.
    let opts = format!(
        "lowerdir={lowerdir},upperdir={},workdir={},redirect_dir=off,metacopy=off",
        upper.display(),
        work.display()
    );
    // nodev: device nodes live in the sandbox's own /dev only (a node in a layer must not open
    // a host device).
    mount(Some("overlay"), target, Some("overlay"), MsFlags::MS_NODEV, Some(opts.as_str()))
        .map_err(|e| format!("mount overlay on {} ({opts}): {e}", target.display()))
}
