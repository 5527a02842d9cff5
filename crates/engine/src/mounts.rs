//! Mount trees handled by descriptor (the mount API of Linux 5.2+): cloned, idmapped, attached;
//! and the overlays of a sandbox's root. Public for the guest, which mounts its sandbox's root with
//! them.

use crate::error::{During, SysError};
use crate::sys;
use nix::mount::{mount, MsFlags};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};

/// A detached copy of the mount at `path` (with the mounts under it when `recursive`): a new
/// mount of the caller's namespace, which its namespace can do anything with, even when the
/// original came from a more privileged one.
pub fn clone_tree(path: &Path, recursive: bool) -> Result<OwnedFd, SysError> {
    use rustix::mount::OpenTreeFlags;
    let mut flags = OpenTreeFlags::OPEN_TREE_CLONE | OpenTreeFlags::OPEN_TREE_CLOEXEC;
    if recursive {
        flags |= OpenTreeFlags::AT_RECURSIVE;
    }
    rustix::mount::open_tree(rustix::fs::CWD, path, flags).during(format_args!("open_tree {}", path.display()))
}

/// Makes the detached tree `tree` show its files through `userns`'s id mapping.
fn set_idmap(tree: &OwnedFd, userns: BorrowedFd) -> Result<(), SysError> {
    const MOUNT_ATTR_IDMAP: u64 = 0x0010_0000;
    sys::mount_setattr(tree.as_fd(), MOUNT_ATTR_IDMAP, Some(userns)).during("mount_setattr")
}

/// Makes the detached tree `tree` read-only, setuid-less and device-less: no write, chmod,
/// chown or xattr lands on its files through it, whatever the caller's capabilities (EROFS).
pub(crate) fn set_read_only(tree: &OwnedFd) -> Result<(), SysError> {
    const MOUNT_ATTR_RDONLY: u64 = 0x1;
    const MOUNT_ATTR_NOSUID: u64 = 0x2;
    const MOUNT_ATTR_NODEV: u64 = 0x4;
    sys::mount_setattr(tree.as_fd(), MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV, None)
        .during("mount_setattr")
}

/// Attaches the detached tree `tree` at `dst`.
pub fn attach(tree: &OwnedFd, dst: &Path) -> Result<(), SysError> {
    use rustix::mount::MoveMountFlags;
    rustix::mount::move_mount(tree, "", rustix::fs::CWD, dst, MoveMountFlags::MOVE_MOUNT_F_EMPTY_PATH)
        .during(format_args!("move_mount to {}", dst.display()))
}

/// Mounts the directory `src` at `dst` (a directory) as seen through `userns`'s mapping: with
/// the sandboxes' mapping, a file owned by uid 0 on disk shows as uid 100000, and a file created
/// by uid 100000 is stored as uid 0.
pub fn attach_idmapped(src: &Path, dst: &Path, userns: BorrowedFd) -> Result<(), SysError> {
    let tree = clone_tree(src, false)?;
    set_idmap(&tree, userns)
        .and_then(|()| attach(&tree, dst))
        .map_err(|e| e.within(format!("idmapped mount of {} on {}", src.display(), dst.display())))
}

/// Mounts the overlay of a sandbox's `/` or `/usr` (also what [`crate::userns::probe`] tries).
pub fn overlay(lowers: &[PathBuf], upper: &Path, work: &Path, target: &Path) -> Result<(), SysError> {
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
        .during(format_args!("mount overlay on {} ({opts})", target.display()))
}
