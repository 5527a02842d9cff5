//! Per-sandbox disk limit (opt-in): the sandbox directory becomes the mount point of the
//! sandbox's own ext4 filesystem of N MB, in a sparse image file next to it on a loop device.
//! Its writable layers live there, so a sandbox that fills its disk gets ENOSPC and the host's
//! filesystem only ever holds the blocks the sandbox really wrote, at most N MB.
//!
//! Why this and not the alternatives: ext4 project quotas need a filesystem made with the
//! `project` feature (the data directory's usually is not, and it cannot be added while
//! mounted); a tmpfs upper layer would spend memory, not disk. Starting costs one sparse copy of
//! a pre-formatted empty image (about 0.6 MB of metadata, `mkfs` runs once per server), a loop
//! device and an ext4 mount: a few milliseconds.
//!
//! The loop device has AUTOCLEAR set: it goes by itself when the filesystem is unmounted and the
//! last sandbox process holding it has died. The mount is made in the server's mount namespace
//! (the engine reads the upper layers from there for snapshots); unmounting it is lazy, so a
//! sandbox still winding down keeps its filesystem until it is gone.

use crate::copy::copy_tree;
use crate::sys;
use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::fd::AsFd;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Formats the empty filesystem image every sandbox's disk starts as, unless it exists.
pub fn prepare_image(image: &Path, size_mb: u64) -> io::Result<()> {
    if !Path::new("/dev/loop-control").exists() {
        return Err(io::Error::new(io::ErrorKind::NotFound, "a disk limit needs loop devices (/dev/loop-control)"));
    }
    if image.exists() {
        return Ok(());
    }
    let dir = image.parent().expect("the image lives in a directory");
    fs::create_dir_all(dir)?;
    // No reserved blocks: the limit is the same for root and `user`. No journal: a sandbox's
    // disk does not outlive a crash of the server (it is removed at the next start). Lazy init
    // keeps the image sparse.
    let args = ["-q", "-F", "-m", "0", "-O", "^has_journal", "-E", "lazy_itable_init=1,lazy_journal_init=1,nodiscard"];
    make_image(image, size_mb << 20, "mkfs.ext4", &args, "a disk limit needs mkfs.ext4 (e2fsprogs)")
}

/// Makes a sparse file of `size_bytes` at `image` with a filesystem in it, formatted by `mkfs`
/// with `args` (`needs` says what is missing when `mkfs` cannot run); made aside and moved into
/// place, so that a crash leaves no half-formatted image.
pub fn make_image(image: &Path, size_bytes: u64, mkfs: &str, args: &[&str], needs: &str) -> io::Result<()> {
    let tmp = image.with_extension("tmp");
    let _ = fs::remove_file(&tmp);
    File::create(&tmp)?.set_len(size_bytes)?;
    let out = Command::new(mkfs)
        .args(args)
        .arg(&tmp)
        .env("PATH", "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin")
        .output()
        .map_err(|e| io::Error::new(e.kind(), format!("{needs}: {e}")))?;
    if !out.status.success() {
        let _ = fs::remove_file(&tmp);
        return Err(io::Error::other(format!(
            "{mkfs} {}: {}",
            tmp.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    fs::rename(&tmp, image)
}

/// Bytes free for an unprivileged writer on the filesystem of `dir`.
pub fn free_bytes(dir: &Path) -> io::Result<u64> {
    let st = nix::sys::statvfs::statvfs(dir).map_err(io::Error::from)?;
    // The field types differ between targets (u32 on some 32-bit ones).
    #[allow(clippy::useless_conversion)]
    Ok(u64::from(st.blocks_available()).saturating_mul(u64::from(st.fragment_size())))
}

/// Gives the sandbox directory `dir` its own filesystem: a sparse copy of `empty` at `image`,
/// on a loop device, mounted on `dir` (which must exist and be empty).
pub fn attach(empty: &Path, image: &Path, dir: &Path) -> io::Result<()> {
    let _ = fs::remove_file(image);
    copy_tree(empty, image)?;
    mount_image(image, dir)
}

/// Mounts the ext4 filesystem in `image` on `dir` through a loop device.
pub fn mount_image(image: &Path, dir: &Path) -> io::Result<()> {
    // `noinit_itable`: never zero the inode tables, which would fill the sparse image.
    mount_image_as(image, dir, "ext4", "noinit_itable")
}

/// Mounts the `fstype` filesystem in `image` on `dir` through a loop device, with `options`.
pub fn mount_image_as(image: &Path, dir: &Path, fstype: &str, options: &str) -> io::Result<()> {
    fs::create_dir_all(dir)?;
    let backing = OpenOptions::new().read(true).write(true).open(image)?;
    let (device, loop_fd) = loop_device(&backing)?;
    let mounted =
        nix::mount::mount(Some(device.as_path()), dir, Some(fstype), nix::mount::MsFlags::empty(), Some(options));
    // The mount holds the device now (or nothing does): with AUTOCLEAR, closing our descriptor
    // leaves it to the mount.
    drop(loop_fd);
    mounted.map_err(|e| io::Error::other(format!("mount {} on {}: {e}", device.display(), dir.display())))
}

/// Unmounts the sandbox's disk from `dir` if it has one (lazily: the sandbox's last processes
/// may still hold it) and removes its image.
pub fn detach(image: &Path, dir: &Path) -> io::Result<()> {
    if image.exists() {
        match nix::mount::umount2(dir, nix::mount::MntFlags::MNT_DETACH) {
            Ok(()) | Err(nix::errno::Errno::EINVAL) | Err(nix::errno::Errno::ENOENT) => {}
            Err(e) => return Err(io::Error::other(format!("unmount {}: {e}", dir.display()))),
        }
        fs::remove_file(image)?;
    }
    Ok(())
}

/// Lazily unmounts every mount under `dir` (what a crashed server left).
pub fn unmount_all_under(dir: &Path) -> io::Result<()> {
    let dir = match fs::canonicalize(dir) {
        Ok(d) => d,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    let mountinfo = fs::read_to_string("/proc/self/mountinfo")?;
    let mut points: Vec<PathBuf> = mountinfo
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .map(unescape)
        .filter(|p| p.starts_with(&dir) && *p != dir)
        .collect();
    // Deepest first.
    points.sort_by_key(|p| std::cmp::Reverse(p.as_os_str().len()));
    for p in points {
        tracing::info!("unmounting {} left by a previous server", p.display());
        let _ = nix::mount::umount2(&p, nix::mount::MntFlags::MNT_DETACH);
    }
    Ok(())
}

/// A mount point from mountinfo, where space, tab, newline and backslash are octal escapes.
fn unescape(s: &str) -> PathBuf {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' && i + 3 < b.len() && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c)) {
            out.push((b[i + 1] - b'0') * 64 + (b[i + 2] - b'0') * 8 + (b[i + 3] - b'0'));
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    PathBuf::from(std::ffi::OsStr::from_bytes(&out))
}

const LO_FLAGS_AUTOCLEAR: u32 = 4;

/// Binds a free loop device to `backing` (AUTOCLEAR); returns its path and an open descriptor.
fn loop_device(backing: &File) -> io::Result<(PathBuf, File)> {
    let control = OpenOptions::new().read(true).write(true).open("/dev/loop-control")?;
    // Another server may take the device we were offered between the two calls: then ask again.
    for _ in 0..64 {
        let n =
            sys::loop_get_free(control.as_fd()).map_err(|e| io::Error::other(format!("no free loop device: {e}")))?;
        let path = PathBuf::from(format!("/dev/loop{n}"));
        if !path.exists() {
            // No devtmpfs (some containers): make the node ourselves.
            let dev = nix::sys::stat::makedev(7, n as u64);
            let _ = nix::sys::stat::mknod(
                &path,
                nix::sys::stat::SFlag::S_IFBLK,
                nix::sys::stat::Mode::from_bits_truncate(0o600),
                dev,
            );
        }
        let dev = OpenOptions::new().read(true).write(true).open(&path)?;
        match sys::loop_configure(dev.as_fd(), backing.as_fd(), LO_FLAGS_AUTOCLEAR) {
            Ok(()) => return Ok((path, dev)),
            Err(e) if e.raw_os_error() == Some(libc::EBUSY) => {}
            Err(e) => return Err(io::Error::other(format!("configure {}: {e}", path.display()))),
        }
    }
    Err(io::Error::other("no free loop device after 64 tries"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mountinfo_escapes() {
        assert_eq!(unescape("/a\\040b\\011c\\134d"), PathBuf::from("/a b\tc\\d"));
        assert_eq!(unescape("/plain"), PathBuf::from("/plain"));
    }

    #[test]
    fn writes_beyond_the_limit_fail_with_enospc() {
        let tmp = tempfile::tempdir().unwrap();
        let empty = tmp.path().join("empty.ext4");
        prepare_image(&empty, 16).unwrap();
        let (image, dir) = (tmp.path().join("sb.img"), tmp.path().join("sb"));
        fs::create_dir(&dir).unwrap();
        attach(&empty, &image, &dir).unwrap();
        let data = vec![7u8; 1 << 20];
        let mut f = File::create(dir.join("fill")).unwrap();
        let err = (0..32).find_map(|_| io::Write::write_all(&mut f, &data).err()).expect("16 MB fill up");
        assert_eq!(err.raw_os_error(), Some(libc::ENOSPC), "{err}");
        drop(f);
        detach(&image, &dir).unwrap();
        assert!(!image.exists());
        let mounts = fs::read_to_string("/proc/self/mountinfo").unwrap();
        assert!(!mounts.contains(dir.to_str().unwrap()), "{mounts}");
    }
}
