//! A faithful tree copy for snapshot layers: everything an overlayfs upper layer can hold
//! survives — whiteouts (0/0 character devices), opaque directories and other `trusted.*`
//! xattrs, owners, modes (setuid included), times, symlinks, hard links, holes in sparse
//! files, fifos and empty directories. File data moves with `copy_file_range`, in the kernel.

use std::collections::HashMap;
use std::ffi::CString;
use std::fs::{self, File};
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt, OpenOptionsExt};
use std::path::Path;

/// File data is copied, and its writeback started, this much at a time.
const WRITEBACK_CHUNK: i64 = 8 << 20;

/// What a copy moved.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CopyStats {
    pub files: u64,
    /// Bytes of file data actually copied (holes excluded).
    pub bytes: u64,
}

/// Copies the tree at `src` to `dst`, which must not exist.
pub fn copy_tree(src: &Path, dst: &Path) -> io::Result<CopyStats> {
    let mut state = Copier { links: HashMap::new(), stats: CopyStats::default() };
    state.copy(src, dst)?;
    Ok(state.stats)
}

struct Copier {
    /// (device, inode) of multiply-linked files already copied → their copy.
    links: HashMap<(u64, u64), std::path::PathBuf>,
    stats: CopyStats,
}

impl Copier {
    fn copy(&mut self, src: &Path, dst: &Path) -> io::Result<()> {
        let meta = fs::symlink_metadata(src).map_err(|e| at(e, src))?;
        let ft = meta.file_type();
        if ft.is_dir() {
            fs::create_dir(dst).map_err(|e| at(e, dst))?;
            let mut entries: Vec<_> = fs::read_dir(src).map_err(|e| at(e, src))?.collect::<Result<_, _>>()?;
            entries.sort_by_key(|e| e.file_name());
            for entry in entries {
                self.copy(&entry.path(), &dst.join(entry.file_name()))?;
            }
        } else if ft.is_file() && meta.nlink() > 1 {
            if let Some(first) = self.links.get(&(meta.dev(), meta.ino())) {
                return fs::hard_link(first, dst).map_err(|e| at(e, dst));
            }
            self.copy_file(src, dst, &meta)?;
            self.links.insert((meta.dev(), meta.ino()), dst.to_path_buf());
        } else if ft.is_file() {
            self.copy_file(src, dst, &meta)?;
        } else if ft.is_symlink() {
            std::os::unix::fs::symlink(fs::read_link(src)?, dst).map_err(|e| at(e, dst))?;
        } else if ft.is_char_device() || ft.is_block_device() || ft.is_fifo() || ft.is_socket() {
            let path = cstr(dst)?;
            // SAFETY: mknod(2) with a NUL-terminated path and the source's mode and device.
            if unsafe { libc::mknod(path.as_ptr(), meta.mode(), meta.rdev()) } != 0 {
                return Err(at(io::Error::last_os_error(), dst));
            }
        }
        copy_xattrs(src, dst)?;
        set_owner_mode_times(dst, &meta)
    }

    fn copy_file(&mut self, src: &Path, dst: &Path, meta: &fs::Metadata) -> io::Result<()> {
        let from = File::open(src).map_err(|e| at(e, src))?;
        let to = fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(dst).map_err(|e| at(e, dst))?;
        let len = meta.len();
        let mut pos: i64 = 0;
        while (pos as u64) < len {
            // Copy only the data extents; the holes stay holes.
            let data = seek(&from, pos, libc::SEEK_DATA)?;
            let Some(data) = data else { break };
            let hole = seek(&from, data, libc::SEEK_HOLE)?.unwrap_or(len as i64);
            let mut off_in = data;
            let mut off_out = data;
            while off_in < hole {
                let chunk = (hole - off_in).min(WRITEBACK_CHUNK) as usize;
                let written_from = off_out;
                let n = copy_range(&from, &mut off_in, &to, &mut off_out, chunk).map_err(|e| at(e, dst))?;
                if n == 0 {
                    break;
                }
                self.stats.bytes += n as u64;
                // Start writing this piece back while the next one is copied: the sync that
                // follows the copy then has little left to wait for.
                // SAFETY: sync_file_range(2) on an open fd; it only starts asynchronous writeback.
                unsafe { libc::sync_file_range(to.as_raw_fd(), written_from, n as i64, libc::SYNC_FILE_RANGE_WRITE) };
            }
            pos = hole;
        }
        to.set_len(len)?;
        self.stats.files += 1;
        Ok(())
    }
}

/// Copies up to `len` bytes between the offsets, and advances them; 0 at the end of `from`.
/// In the kernel with `copy_file_range`; through a buffer when the two files are on different
/// filesystems (a sandbox with its own disk), where the kernel refuses with EXDEV.
fn copy_range(from: &File, off_in: &mut i64, to: &File, off_out: &mut i64, len: usize) -> io::Result<usize> {
    // SAFETY: copy_file_range(2) between two open fds with valid offset pointers.
    let n = unsafe { libc::copy_file_range(from.as_raw_fd(), off_in, to.as_raw_fd(), off_out, len, 0) };
    if n >= 0 {
        return Ok(n as usize);
    }
    let e = io::Error::last_os_error();
    if e.raw_os_error() != Some(libc::EXDEV) {
        return Err(e);
    }
    use std::os::unix::fs::FileExt;
    let mut buf = vec![0u8; len.min(1 << 20)];
    let n = from.read_at(&mut buf, *off_in as u64)?;
    to.write_all_at(&buf[..n], *off_out as u64)?;
    *off_in += n as i64;
    *off_out += n as i64;
    Ok(n)
}

/// Gives `dst` the owner, mode, times and xattrs of `src`.
pub fn copy_metadata(src: &Path, dst: &Path) -> io::Result<()> {
    let meta = fs::symlink_metadata(src).map_err(|e| at(e, src))?;
    copy_xattrs(src, dst)?;
    set_owner_mode_times(dst, &meta)
}

/// Reads one xattr; `None` when it is not set.
pub fn get_xattr(path: &Path, name: &str) -> io::Result<Option<Vec<u8>>> {
    let name = CString::new(name).map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "xattr name has a NUL byte"))?;
    match xattr_get(&cstr(path)?, &name) {
        Ok(v) => Ok(Some(v)),
        Err(e) if e.raw_os_error() == Some(libc::ENODATA) => Ok(None),
        Err(e) => Err(at(e, path)),
    }
}

pub fn set_xattr(path: &Path, name: &str, value: &[u8]) -> io::Result<()> {
    let name = CString::new(name).map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "xattr name has a NUL byte"))?;
    let p = cstr(path)?;
    // SAFETY: lsetxattr(2) with NUL-terminated path and name and a valid value buffer.
    if unsafe { libc::lsetxattr(p.as_ptr(), name.as_ptr(), value.as_ptr().cast(), value.len(), 0) } != 0 {
        return Err(at(io::Error::last_os_error(), path));
    }
    Ok(())
}

/// `lseek` with SEEK_DATA/SEEK_HOLE; `None` when there is no more data.
fn seek(file: &File, pos: i64, whence: libc::c_int) -> io::Result<Option<i64>> {
    // SAFETY: lseek(2) on an open fd.
    let r = unsafe { libc::lseek(file.as_raw_fd(), pos, whence) };
    if r < 0 {
        let e = io::Error::last_os_error();
        return if e.raw_os_error() == Some(libc::ENXIO) { Ok(None) } else { Err(e) };
    }
    Ok(Some(r))
}

fn copy_xattrs(src: &Path, dst: &Path) -> io::Result<()> {
    let (s, d) = (cstr(src)?, cstr(dst)?);
    let names = xattr_list(&s)?;
    for name in names.split(|b| *b == 0).filter(|n| !n.is_empty()) {
        let name = CString::new(name).expect("split on NUL");
        let value = xattr_get(&s, &name)?;
        // SAFETY: lsetxattr(2) with NUL-terminated path and name and a valid value buffer.
        let r = unsafe { libc::lsetxattr(d.as_ptr(), name.as_ptr(), value.as_ptr().cast(), value.len(), 0) };
        if r != 0 {
            let e = io::Error::last_os_error();
            // A filesystem that keeps no user xattrs on symlinks, say, loses only those.
            if e.raw_os_error() != Some(libc::EPERM) && e.raw_os_error() != Some(libc::ENOTSUP) {
                return Err(at(e, dst));
            }
        }
    }
    Ok(())
}

fn xattr_list(path: &CString) -> io::Result<Vec<u8>> {
    loop {
        // SAFETY: llistxattr(2) with a null buffer returns the size needed.
        let size = unsafe { libc::llistxattr(path.as_ptr(), std::ptr::null_mut(), 0) };
        if size < 0 {
            let e = io::Error::last_os_error();
            return if e.raw_os_error() == Some(libc::ENOTSUP) { Ok(Vec::new()) } else { Err(e) };
        }
        let mut buf = vec![0u8; size as usize];
        // SAFETY: the buffer has `size` bytes.
        let got = unsafe { libc::llistxattr(path.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
        if got >= 0 {
            buf.truncate(got as usize);
            return Ok(buf);
        }
        if io::Error::last_os_error().raw_os_error() != Some(libc::ERANGE) {
            return Err(io::Error::last_os_error());
        }
    }
}

fn xattr_get(path: &CString, name: &CString) -> io::Result<Vec<u8>> {
    loop {
        // SAFETY: lgetxattr(2) with a null buffer returns the size needed.
        let size = unsafe { libc::lgetxattr(path.as_ptr(), name.as_ptr(), std::ptr::null_mut(), 0) };
        if size < 0 {
            return Err(io::Error::last_os_error());
        }
        let mut buf = vec![0u8; size as usize];
        // SAFETY: the buffer has `size` bytes.
        let got = unsafe { libc::lgetxattr(path.as_ptr(), name.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
        if got >= 0 {
            buf.truncate(got as usize);
            return Ok(buf);
        }
        if io::Error::last_os_error().raw_os_error() != Some(libc::ERANGE) {
            return Err(io::Error::last_os_error());
        }
    }
}

/// Owner first (chown clears setuid bits), then mode, then times (last, as writing changes
/// them).
fn set_owner_mode_times(dst: &Path, meta: &fs::Metadata) -> io::Result<()> {
    let path = cstr(dst)?;
    // SAFETY: lchown(2) on a NUL-terminated path.
    if unsafe { libc::lchown(path.as_ptr(), meta.uid(), meta.gid()) } != 0 {
        return Err(at(io::Error::last_os_error(), dst));
    }
    if !meta.file_type().is_symlink() {
        // SAFETY: chmod(2) on a NUL-terminated path.
        if unsafe { libc::chmod(path.as_ptr(), meta.mode() & 0o7777) } != 0 {
            return Err(at(io::Error::last_os_error(), dst));
        }
    }
    let times = [
        libc::timespec { tv_sec: meta.atime(), tv_nsec: meta.atime_nsec() },
        libc::timespec { tv_sec: meta.mtime(), tv_nsec: meta.mtime_nsec() },
    ];
    // SAFETY: utimensat(2) with a NUL-terminated path and two timespecs.
    if unsafe { libc::utimensat(libc::AT_FDCWD, path.as_ptr(), times.as_ptr(), libc::AT_SYMLINK_NOFOLLOW) } != 0 {
        return Err(at(io::Error::last_os_error(), dst));
    }
    Ok(())
}

fn cstr(path: &Path) -> io::Result<CString> {
    CString::new(path.as_os_str().as_bytes()).map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "path has a NUL byte"))
}

fn at(e: io::Error, path: &Path) -> io::Error {
    io::Error::new(e.kind(), format!("{}: {e}", path.display()))
}

/// Flushes the whole filesystem that holds `path` (one call instead of one fsync per file).
pub fn sync_filesystem(path: &Path) -> io::Result<()> {
    let dir = File::open(path)?;
    // SAFETY: syncfs(2) on an open fd.
    if unsafe { libc::syncfs(dir.as_raw_fd()) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// fsync of a directory, to make a rename in it durable.
pub fn sync_dir(path: &Path) -> io::Result<()> {
    File::open(path)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Seek, SeekFrom, Write};
    use std::os::unix::fs::PermissionsExt;

    fn set_xattr(path: &Path, name: &str, value: &[u8]) {
        let (p, n) = (cstr(path).unwrap(), CString::new(name).unwrap());
        // SAFETY: test helper around lsetxattr(2).
        let r = unsafe { libc::lsetxattr(p.as_ptr(), n.as_ptr(), value.as_ptr().cast(), value.len(), 0) };
        assert_eq!(r, 0, "{}", io::Error::last_os_error());
    }

    #[test]
    fn copies_everything_an_upper_layer_holds() {
        let tmp = tempfile::tempdir().unwrap();
        let src = tmp.path().join("src");
        fs::create_dir_all(src.join("opaque/sub")).unwrap();
        fs::create_dir(src.join("empty")).unwrap();
        fs::write(src.join("file"), b"hello").unwrap();
        std::os::unix::fs::lchown(src.join("file"), Some(1000), Some(1000)).unwrap();
        fs::set_permissions(src.join("file"), fs::Permissions::from_mode(0o4750)).unwrap();
        fs::hard_link(src.join("file"), src.join("opaque/link")).unwrap();
        std::os::unix::fs::symlink("../file", src.join("opaque/sym")).unwrap();
        set_xattr(&src.join("opaque"), "trusted.overlay.opaque", b"y");
        set_xattr(&src.join("file"), "user.note", b"kept");
        let wh = cstr(&src.join("deleted")).unwrap();
        // SAFETY: test: an overlay whiteout is a 0/0 character device.
        assert_eq!(unsafe { libc::mknod(wh.as_ptr(), libc::S_IFCHR, libc::makedev(0, 0)) }, 0);
        let mut sparse = File::create(src.join("sparse")).unwrap();
        sparse.seek(SeekFrom::Start(64 << 20)).unwrap();
        sparse.write_all(b"end").unwrap();
        drop(sparse);

        let dst = tmp.path().join("dst");
        let stats = copy_tree(&src, &dst).unwrap();

        assert_eq!(fs::read(dst.join("file")).unwrap(), b"hello");
        let m = fs::metadata(dst.join("file")).unwrap();
        assert_eq!((m.mode() & 0o7777, m.uid(), m.gid(), m.nlink()), (0o4750, 1000, 1000, 2));
        assert_eq!(m.ino(), fs::metadata(dst.join("opaque/link")).unwrap().ino(), "hard link kept");
        assert_eq!(fs::read_link(dst.join("opaque/sym")).unwrap(), Path::new("../file"));
        assert!(dst.join("empty").is_dir() && dst.join("opaque/sub").is_dir());
        assert_eq!(xattr_get(&cstr(&dst.join("opaque")).unwrap(), &CString::new("trusted.overlay.opaque").unwrap()).unwrap(), b"y");
        assert_eq!(xattr_get(&cstr(&dst.join("file")).unwrap(), &CString::new("user.note").unwrap()).unwrap(), b"kept");
        let w = fs::symlink_metadata(dst.join("deleted")).unwrap();
        assert!(w.file_type().is_char_device() && w.rdev() == 0, "whiteout kept");
        let s = fs::metadata(dst.join("sparse")).unwrap();
        assert_eq!(s.len(), (64 << 20) + 3);
        assert!(s.blocks() * 512 < 1 << 20, "holes stay holes: {} blocks", s.blocks());
        assert_eq!(stats.files, 2, "the hard link is not copied twice");
        assert_eq!(m.mtime(), fs::metadata(src.join("file")).unwrap().mtime());
    }
}
