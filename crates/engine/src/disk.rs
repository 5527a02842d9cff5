//! Filesystem images on loop devices (the copy-on-write store's, see [`crate::cow`]) and the
//! free space of a directory's filesystem.
//!
//! A loop device has AUTOCLEAR set: it goes by itself when its filesystem is unmounted and
//! nothing holds it any more.

use crate::sys;
use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::process::Command;

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
