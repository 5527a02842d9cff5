//! The sandbox's root: the first process (host root) mounts its overlays and binds the host files
//! laid over it; PID 1 takes the root as its own mount, mounts `/proc` and `/sys` in it and pivots
//! into it.

use crate::error::{During, InitError};
use nix::mount::{mount, umount2, MntFlags, MsFlags};
use nix::unistd::{chdir, pivot_root};
use sandbank_engine::userns::{self, Namespaces};
use sandbank_engine::{mounts, SandboxDir};
use sandbank_protocol::guest::{GuestConfig, IdMap};
use std::fs;
use std::os::fd::{AsFd, AsRawFd};
use std::path::{Path, PathBuf};

/// Makes every mount of this namespace private: nothing mounted here shows in the namespace it
/// came from, nor the other way.
pub(super) fn make_mounts_private() -> Result<(), InitError> {
    mount(None::<&str>, "/", None::<&str>, MsFlags::MS_REC | MsFlags::MS_PRIVATE, None::<&str>)
        .during("make mounts private")
        .map_err(InitError::from)
}

/// In the first process, as host root: mounts the sandbox's root with the host files laid over
/// it and moves into the root, which PID 1 inherits as its working directory (with a user
/// namespace, its root cannot look up host paths such as the data directory).
pub(super) fn prepare_root(c: &GuestConfig, namespaces: Option<&Namespaces>) -> Result<(), InitError> {
    make_mounts_private()?;
    let root = &c.rootfs;
    match (&c.userns, namespaces) {
        (Some(map), Some(ns)) => mount_idmapped_root(c, map, ns)?,
        _ => {
            mounts::overlay(&c.root_lowers, &c.root_upper, &c.root_work, root)?;
            mounts::overlay(&c.usr_lowers, &c.usr_upper, &c.usr_work, &usr_mount_point(c))?;
        }
    }
    // A restore mounts the rest itself, from where the checkpoint's external mounts point (CRIU
    // binds the root alone, which it cannot do with mounts under it).
    let bind_files: &[(PathBuf, PathBuf)] = if c.restore.is_some() { &[] } else { &c.bind_files };
    for (host, inside) in bind_files {
        if let Some(map) = &c.userns {
            // The sandbox's own files: its root may change them (as it could its own /etc/hosts).
            let owner = Some(map.host_base);
            nix::unistd::chown(
                host.as_path(),
                owner.map(nix::unistd::Uid::from_raw),
                owner.map(nix::unistd::Gid::from_raw),
            )
            .during(format_args!("chown {}", host.display()))?;
        }
        // Resolved inside the new root: the layers may hold symlinks (a snapshot's, a template
        // tarball's), and this process still sees the host's tree.
        let target = open_in_root(root, inside).during(format_args!("create {}", inside.display()))?;
        let target = format!("/proc/self/fd/{}", target.as_raw_fd());
        mount(Some(host.as_path()), target.as_str(), None::<&str>, MsFlags::MS_BIND, None::<&str>)
            .during(format_args!("bind {} over {}", host.display(), inside.display()))?;
    }
    chdir(root).during(format_args!("chdir {}", root.display())).map_err(InitError::from)
}

/// Where the `/usr` overlay is mounted: in the root, or beside it for a restore (see
/// [`super::restore`]).
pub(super) fn usr_mount_point(c: &GuestConfig) -> PathBuf {
    match c.restore {
        Some(_) => SandboxDir(c.sandbox_dir.clone()).restore_usr(),
        None => c.rootfs.join("usr"),
    }
}

/// The overlays of `/` and `/usr` over idmapped views of their layers (see
/// `sandbank_engine::userns`). The idmapped mounts are made on a scratch tmpfs and detached once
/// the overlays hold them.
fn mount_idmapped_root(c: &GuestConfig, map: &IdMap, ns: &Namespaces) -> Result<(), InitError> {
    let staging = SandboxDir(c.sandbox_dir.clone()).idmapped();
    mount(
        Some("tmpfs"),
        &staging,
        Some("tmpfs"),
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
        Some("mode=700,size=64k"),
    )
    .during(format_args!("mount {}", staging.display()))?;
    let idmapped = |src: &Path, name: String| -> Result<PathBuf, InitError> {
        let dst = staging.join(name);
        fs::create_dir(&dst).during(format_args!("create {}", dst.display()))?;
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
            .map_err(|_| InitError::OutsideSandboxDir { path: p.to_path_buf(), sandbox_dir: c.sandbox_dir.clone() })
    };
    let (root_upper, root_work, usr_upper, usr_work) =
        (in_own(&c.root_upper)?, in_own(&c.root_work)?, in_own(&c.usr_upper)?, in_own(&c.usr_work)?);
    userns::as_mapped_root(map, || {
        mounts::overlay(&root_lowers, &root_upper, &root_work, &c.rootfs)?;
        mounts::overlay(&usr_lowers, &usr_upper, &usr_work, &usr_mount_point(c))
    })
    .and_then(|mounted| mounted)?;
    umount2(&staging, MntFlags::MNT_DETACH)
        .during(format_args!("detach {}", staging.display()))
        .map_err(InitError::from)
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

/// Makes the root (the working directory) PID 1's own mount. The first process mounted it, and
/// its mounts came into PID 1's namespace locked, when that namespace belongs to a new user
/// namespace (a less privileged namespace cannot take apart what it was given): pivot_root
/// refuses a locked mount. A copy made here, attached on top, is not locked.
pub(super) fn own_root() -> Result<(), InitError> {
    let tree = mounts::clone_tree(Path::new("."), true)?;
    mounts::attach(&tree, Path::new("."))?;
    // Into the copy: the working directory was the mount now under it.
    nix::unistd::fchdir(&tree).during("enter the sandbox's root").map_err(InitError::from)
}

/// `/proc` and (read-only, where the kernel lets this namespace have it) `/sys` in the root.
pub(super) fn mount_proc_and_sys() -> Result<(), InitError> {
    let nosuid_nodev_noexec = MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC;
    mount(Some("proc"), "proc", Some("proc"), nosuid_nodev_noexec, None::<&str>).during("mount /proc")?;
    if let Err(e) = mount(Some("sysfs"), "sys", Some("sysfs"), nosuid_nodev_noexec | MsFlags::MS_RDONLY, None::<&str>) {
        eprintln!("sandbank guest: /sys not mounted: {e}");
    }
    Ok(())
}

/// Makes the root (the working directory) `/`, and lets go of the host's.
pub(super) fn pivot_into_root() -> Result<(), InitError> {
    pivot_root(".", ".").during("pivot_root")?;
    umount2(".", MntFlags::MNT_DETACH).during("detach the host root")?;
    chdir("/").during("chdir /").map_err(InitError::from)
}
