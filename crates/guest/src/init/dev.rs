//! The sandbox's `/dev`: a tmpfs with the usual character devices, `/dev/pts`, `/dev/ptmx` and
//! `/dev/shm`, made by PID 1.

use crate::error::{During, InitError};
use nix::mount::{mount, MsFlags};
use nix::sys::stat::{makedev, mknod, umask, Mode, SFlag};
use std::fs;
use std::os::unix::fs::symlink;
use std::path::Path;

/// Mounts and fills the sandbox's `/dev` at `dev`.
///
/// Root of a user namespace cannot make device nodes, so there the devices are the host's,
/// bind-mounted: their owner (host root) is not mapped in the namespace, so the sandbox can use
/// them but not chmod or chown them. Without a user namespace root inside could, and the host's
/// nodes would change with them: there the sandbox gets nodes of its own.
pub(super) fn make_dev(dev: &Path, in_userns: bool) -> Result<(), InitError> {
    mount(Some("tmpfs"), dev, Some("tmpfs"), MsFlags::MS_NOSUID | MsFlags::MS_NOEXEC, Some("mode=755,size=65536k"))
        .during("mount /dev")?;
    let old = umask(Mode::empty());
    let result = fill_dev(dev, in_userns);
    umask(old);
    result
}

/// The devices, the mounts under `/dev` and its links (with an empty umask: the modes are as
/// given).
fn fill_dev(dev: &Path, in_userns: bool) -> Result<(), InitError> {
    for (name, major, minor) in
        [("null", 1, 3), ("zero", 1, 5), ("full", 1, 7), ("random", 1, 8), ("urandom", 1, 9), ("tty", 5, 0)]
    {
        let inside = dev.join(name);
        if in_userns {
            let host = Path::new("/dev").join(name);
            fs::File::create(&inside).during(format_args!("create /dev/{name}"))?;
            mount(Some(host.as_path()), &inside, None::<&str>, MsFlags::MS_BIND, None::<&str>)
                .during(format_args!("bind {} on /dev/{name}", host.display()))?;
        } else {
            mknod(&inside, SFlag::S_IFCHR, Mode::from_bits_truncate(0o666), makedev(major, minor))
                .during(format_args!("mknod /dev/{name}"))?;
        }
    }
    for dir in ["pts", "shm"] {
        fs::create_dir(dev.join(dir)).during(format_args!("mkdir /dev/{dir}"))?;
    }
    mount(
        Some("devpts"),
        &dev.join("pts"),
        Some("devpts"),
        MsFlags::MS_NOSUID | MsFlags::MS_NOEXEC,
        Some("newinstance,ptmxmode=0666,mode=0620,gid=5"),
    )
    .during("mount /dev/pts")?;
    mount(Some("shm"), &dev.join("shm"), Some("tmpfs"), MsFlags::MS_NOSUID | MsFlags::MS_NODEV, Some("mode=1777"))
        .during("mount /dev/shm")?;
    for (link, target) in [
        ("ptmx", "pts/ptmx"),
        ("fd", "/proc/self/fd"),
        ("stdin", "/proc/self/fd/0"),
        ("stdout", "/proc/self/fd/1"),
        ("stderr", "/proc/self/fd/2"),
    ] {
        symlink(target, dev.join(link)).during(format_args!("link /dev/{link}"))?;
    }
    Ok(())
}
