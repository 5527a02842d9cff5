//! A faithful tree copy for snapshot layers: everything an overlayfs upper layer can hold
//! survives — whiteouts (0/0 character devices), opaque directories and other `trusted.*`
//! xattrs, owners, modes (setuid included), times, symlinks, hard links, holes in sparse
//! files, fifos and empty directories. File data moves with `copy_file_range`, in the kernel.
//!
//! A layer is the sandbox's: the copy walks it as [`crate::tree`] walks, iteratively and from
//! directory fd to directory fd without following a symlink, so a layer as deep as the sandbox
//! made it copies whole.

use crate::tree::{self, file_type, lstat_at, DirChain, Entered, FileId};
use rustix::fs::{
    self as rfs, AtFlags, FileType, Gid, Mode, OFlags, SeekFrom, Stat, Timespec, Timestamps, Uid, XattrFlags,
};
use rustix::io::Errno;
use std::collections::HashMap;
use std::ffi::{CStr, CString, OsStr};
use std::fs::File;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

/// File data is copied, and its writeback started, this much at a time.
const WRITEBACK_CHUNK: u64 = 8 << 20;

/// What a copy moved.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CopyStats {
    pub files: u64,
    /// Bytes of file data actually copied (holes excluded).
    pub bytes: u64,
}

/// Copies the tree at `src` to `dst`, which must not exist. Neither last component is followed.
pub fn copy_tree(src: &Path, dst: &Path) -> io::Result<CopyStats> {
    let (src_dir, src_name) = tree::open_parent(src).map_err(|e| at(e, src))?;
    let (dst_dir, dst_name) = tree::open_parent(dst).map_err(|e| at(e, dst))?;
    copy_at(src_dir.as_fd(), &src_name, dst_dir.as_fd(), &dst_name).map_err(|e| at(e, src))
}

/// Copies `src_name` in the directory `src_dir`, with everything under it if it is a directory, to
/// `dst_name` in `dst_dir`, which must not exist.
pub fn copy_at(
    src_dir: BorrowedFd<'_>,
    src_name: &CStr,
    dst_dir: BorrowedFd<'_>,
    dst_name: &CStr,
) -> io::Result<CopyStats> {
    let mut copier = Copier { links: HashMap::new(), stats: CopyStats::default(), buf: Vec::new() };
    let st = lstat_at(src_dir, src_name)?;
    if file_type(&st) == FileType::Directory {
        copier.copy_dir(src_dir, src_name, dst_dir, dst_name, &st)?;
    } else {
        copier.copy_entry(src_dir, src_name, dst_dir, dst_name, &st, None)?;
    }
    Ok(copier.stats)
}

/// Where a tree's copy is being made, for its hard links: the copy's root, and the walk there.
type LinkBase<'a> = (BorrowedFd<'a>, &'a DirChain);

struct Copier {
    /// (device, inode) of multiply-linked files already copied → their copy, as the names from
    /// the copy's root down to it.
    links: HashMap<FileId, Vec<CString>>,
    stats: CopyStats,
    buf: Vec<u8>,
}

impl Copier {
    fn copy_dir(
        &mut self,
        src_dir: BorrowedFd<'_>,
        src_name: &CStr,
        dst_dir: BorrowedFd<'_>,
        dst_name: &CStr,
        st: &Stat,
    ) -> io::Result<()> {
        let src_root = tree::open_dir_at(src_dir, src_name)?;
        rfs::mkdirat(dst_dir, dst_name, Mode::from_raw_mode(0o700))?;
        let dst_root = tree::open_dir_at(dst_dir, dst_name)?;
        // Open apart from the walk's window, which may close the root: hard links start there.
        let links_root = tree::open_dir_at(dst_root.as_fd(), c".")?;
        let (mut src, mut dst) = (DirChain::new(src_root)?, DirChain::new(dst_root)?);
        let mut stats = vec![*st];
        let mut pending = vec![self.entries(src.top())?];
        loop {
            let next = pending.last_mut().expect("a list per level").pop();
            if let Some(name) = next {
                let st = match lstat_at(src.top(), &name) {
                    Ok(st) => st,
                    Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                    Err(e) => return Err(src.error(e, Some(&name))),
                };
                if file_type(&st) != FileType::Directory {
                    self.copy_entry(src.top(), &name, dst.top(), &name, &st, Some((links_root.as_fd(), &dst)))
                        .map_err(|e| src.error(e, Some(&name)))?;
                    continue;
                }
                match src.enter(&name)? {
                    Entered::Yes => {}
                    // Mount points are no part of a layer.
                    Entered::Gone | Entered::MountPoint => continue,
                    Entered::NotADirectory => {
                        return Err(src.error(io::Error::other("changed during the copy"), Some(&name)))
                    }
                }
                rfs::mkdirat(dst.top(), &name, Mode::from_raw_mode(0o700))
                    .map_err(|e| dst.error(e.into(), Some(&name)))?;
                if dst.enter(&name)? != Entered::Yes {
                    return Err(dst.error(io::Error::other("the copy of a directory is not one"), Some(&name)));
                }
                pending.push(self.entries(src.top()).map_err(|e| src.error(e, None))?);
                stats.push(st);
                continue;
            }
            // A directory is done: it gets its metadata last, as writing in it changes its times.
            pending.pop();
            let st = stats.pop().expect("a stat per level");
            if src.depth() == 0 {
                return copy_dir_metadata(src.top(), dst.top(), &st);
            }
            let (_, from) = src.leave()?;
            let (name, to) = dst.leave()?;
            copy_dir_metadata(from.as_fd(), to.as_fd(), &st).map_err(|e| dst.error(e, Some(&name)))?;
        }
    }

    /// The names in the directory `dir`, to be popped in name order.
    fn entries(&mut self, dir: BorrowedFd<'_>) -> io::Result<Vec<CString>> {
        let mut names: Vec<CString> = tree::read_entries(dir, &mut self.buf)?.into_iter().map(|(n, _)| n).collect();
        names.sort_unstable_by(|a, b| b.cmp(a));
        Ok(names)
    }

    /// Copies what is not a directory.
    fn copy_entry(
        &mut self,
        src_dir: BorrowedFd<'_>,
        name: &CStr,
        dst_dir: BorrowedFd<'_>,
        dst_name: &CStr,
        st: &Stat,
        base: Option<LinkBase<'_>>,
    ) -> io::Result<()> {
        let ty = file_type(st);
        match ty {
            FileType::RegularFile => {
                let id = FileId::of(st);
                let linked = st.st_nlink > 1;
                if let (true, Some(first), Some((root, _))) = (linked, self.links.get(&id), base) {
                    return link_at(root, first, dst_dir, dst_name);
                }
                self.copy_file(src_dir, name, dst_dir, dst_name, st)?;
                if let (true, Some((_, walk))) = (linked, base) {
                    let place = walk.names().map(CStr::to_owned).chain([dst_name.to_owned()]).collect();
                    self.links.insert(id, place);
                }
                return Ok(());
            }
            FileType::Symlink => {
                let target = rfs::readlinkat(src_dir, name, Vec::new())?;
                rfs::symlinkat(target.as_c_str(), dst_dir, dst_name)?;
            }
            FileType::CharacterDevice | FileType::BlockDevice | FileType::Fifo | FileType::Socket => {
                rfs::mknodat(dst_dir, dst_name, ty, Mode::from_raw_mode(st.st_mode & 0o7777), st.st_rdev)?;
            }
            // Directories are the walk's; an unknown type has nothing to copy.
            _ => return Ok(()),
        }
        copy_xattrs_at(src_dir, name, dst_dir, dst_name)?;
        set_owner_mode_times_at(dst_dir, dst_name, st, ty == FileType::Symlink)
    }

    fn copy_file(
        &mut self,
        src_dir: BorrowedFd<'_>,
        name: &CStr,
        dst_dir: BorrowedFd<'_>,
        dst_name: &CStr,
        st: &Stat,
    ) -> io::Result<()> {
        let from = File::from(rfs::openat(
            src_dir,
            name,
            OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NOCTTY | OFlags::CLOEXEC,
            Mode::empty(),
        )?);
        let flags = OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC;
        let to = File::from(rfs::openat(dst_dir, dst_name, flags, Mode::from_raw_mode(0o600))?);
        let len = u64::try_from(st.st_size).unwrap_or(0);
        let mut pos = 0;
        while pos < len {
            // Copy only the data extents; the holes stay holes.
            let Some(data) = seek(&from, SeekFrom::Data(pos))? else { break };
            let hole = seek(&from, SeekFrom::Hole(data))?.unwrap_or(len);
            let (mut off_in, mut off_out) = (data, data);
            while off_in < hole {
                let chunk = usize::try_from((hole - off_in).min(WRITEBACK_CHUNK)).unwrap_or(usize::MAX);
                let written_from = off_out;
                let n = copy_range(&from, &mut off_in, &to, &mut off_out, chunk)?;
                if n == 0 {
                    break;
                }
                self.stats.bytes += n as u64;
                // Start writing this piece back while the next one is copied: the sync that
                // follows the copy then has little left to wait for.
                start_writeback(&to, written_from, n);
            }
            pos = hole;
        }
        to.set_len(len)?;
        copy_xattrs(from.as_fd(), to.as_fd())?;
        set_owner_mode_times(to.as_fd(), st)?;
        self.stats.files += 1;
        Ok(())
    }
}

/// Links `dst_name` in `dst_dir` to the file at `place` below the copy's `root`.
fn link_at(root: BorrowedFd<'_>, place: &[CString], dst_dir: BorrowedFd<'_>, dst_name: &CStr) -> io::Result<()> {
    let (file, dirs) = place.split_last().expect("a place names its file");
    let mut dir: Option<OwnedFd> = None;
    for name in dirs {
        let parent = dir.as_ref().map_or(root, |d| d.as_fd());
        dir = Some(tree::open_dir_at(parent, name)?);
    }
    let from = dir.as_ref().map_or(root, |d| d.as_fd());
    Ok(rfs::linkat(from, file.as_c_str(), dst_dir, dst_name, AtFlags::empty())?)
}

/// `lseek` to the next data or hole; `None` when there is no more data.
fn seek(file: &File, to: SeekFrom) -> io::Result<Option<u64>> {
    match rfs::seek(file, to) {
        Ok(pos) => Ok(Some(pos)),
        Err(Errno::NXIO) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// Copies up to `len` bytes between the offsets, and advances them; 0 at the end of `from`.
/// In the kernel with `copy_file_range`; through a buffer when the two files are on different
/// filesystems (a sandbox with its own disk), where the kernel refuses with EXDEV.
fn copy_range(from: &File, off_in: &mut u64, to: &File, off_out: &mut u64, len: usize) -> io::Result<usize> {
    match rfs::copy_file_range(from, Some(&mut *off_in), to, Some(&mut *off_out), len) {
        Ok(n) => return Ok(n),
        Err(Errno::XDEV) => {}
        Err(e) => return Err(e.into()),
    }
    use std::os::unix::fs::FileExt;
    let mut buf = vec![0u8; len.min(1 << 20)];
    let n = from.read_at(&mut buf, *off_in)?;
    to.write_all_at(&buf[..n], *off_out)?;
    *off_in += n as u64;
    *off_out += n as u64;
    Ok(n)
}

/// Starts the writeback of `len` bytes of `file` from `off`, without waiting for it.
fn start_writeback(file: &File, off: u64, len: usize) {
    let (off, len) = (i64::try_from(off).unwrap_or(i64::MAX), i64::try_from(len).unwrap_or(i64::MAX));
    crate::sys::start_writeback(file.as_fd(), off, len);
}

/// Gives the copy `to` of the directory `from` (whose metadata is `st`) its xattrs, owner, mode
/// and times.
pub fn copy_dir_metadata(from: BorrowedFd<'_>, to: BorrowedFd<'_>, st: &Stat) -> io::Result<()> {
    copy_xattrs(from, to)?;
    set_owner_mode_times(to, st)
}

/// Reads one xattr of an open file; `None` when it is not set.
pub fn get_xattr_fd(fd: BorrowedFd<'_>, name: &str) -> io::Result<Option<Vec<u8>>> {
    match read_sized(|| rfs::fgetxattr_query(fd, name), |buf| rfs::fgetxattr(fd, name, buf)) {
        Ok(v) => Ok(Some(v)),
        Err(e) if e.raw_os_error() == Some(libc::ENODATA) => Ok(None),
        Err(e) => Err(e),
    }
}

pub fn set_xattr_fd(fd: BorrowedFd<'_>, name: &str, value: &[u8]) -> io::Result<()> {
    Ok(rfs::fsetxattr(fd, name, value, XattrFlags::empty())?)
}

/// Reads one xattr (of `path` itself, a symlink included); `None` when it is not set. (For
/// tests: the engine works by descriptor.)
#[cfg(test)]
pub fn get_xattr(path: &Path, name: &str) -> io::Result<Option<Vec<u8>>> {
    match read_sized(|| rfs::lgetxattr_query(path, name), |buf| rfs::lgetxattr(path, name, buf)) {
        Ok(v) => Ok(Some(v)),
        Err(e) if e.raw_os_error() == Some(libc::ENODATA) => Ok(None),
        Err(e) => Err(at(e, path)),
    }
}

#[cfg(test)]
pub fn set_xattr(path: &Path, name: &str, value: &[u8]) -> io::Result<()> {
    rfs::lsetxattr(path, name, value, XattrFlags::empty()).map_err(|e| at(e.into(), path))
}

/// A value of variable size (an xattr, a list of them): `query` says its size, `read` fills a
/// buffer or fails with ERANGE when it grew meanwhile.
fn read_sized(
    query: impl Fn() -> rustix::io::Result<usize>,
    read: impl Fn(&mut [u8]) -> rustix::io::Result<usize>,
) -> io::Result<Vec<u8>> {
    loop {
        let size = query()?;
        if size == 0 {
            return Ok(Vec::new());
        }
        let mut buf = vec![0u8; size];
        match read(&mut buf) {
            Ok(n) => {
                buf.truncate(n);
                return Ok(buf);
            }
            Err(Errno::RANGE) => continue,
            Err(e) => return Err(e.into()),
        }
    }
}

/// Copies the xattrs of one open file to another.
fn copy_xattrs(from: BorrowedFd<'_>, to: BorrowedFd<'_>) -> io::Result<()> {
    let names = match read_sized(|| rfs::flistxattr_query(from), |buf| rfs::flistxattr(from, buf)) {
        Ok(names) => names,
        Err(e) if e.raw_os_error() == Some(libc::EOPNOTSUPP) => return Ok(()),
        Err(e) => return Err(e),
    };
    for name in names.split(|b| *b == 0).filter(|n| !n.is_empty()) {
        let name = CString::new(name).expect("split on NUL");
        let value = match read_sized(|| rfs::fgetxattr_query(from, &name), |buf| rfs::fgetxattr(from, &name, buf)) {
            Ok(v) => v,
            Err(e) if e.raw_os_error() == Some(libc::ENODATA) => continue,
            Err(e) => return Err(e),
        };
        set_or_skip(rfs::fsetxattr(to, &name, &value, XattrFlags::empty()))?;
    }
    Ok(())
}

/// Copies the xattrs of `name` in `src_dir` (not followed) to `dst_name` in `dst_dir`: what cannot
/// be opened (a symlink, a device) is named through `/proc/self/fd`, as Linux has no fd-relative
/// xattr calls before 6.13. Only the last component of those paths is the sandbox's, not followed.
fn copy_xattrs_at(src_dir: BorrowedFd<'_>, name: &CStr, dst_dir: BorrowedFd<'_>, dst_name: &CStr) -> io::Result<()> {
    let (from, to) = (proc_path(src_dir, name), proc_path(dst_dir, dst_name));
    let names = match read_sized(|| rfs::llistxattr_query(&from), |buf| rfs::llistxattr(&from, buf)) {
        Ok(names) => names,
        Err(e) if e.raw_os_error() == Some(libc::EOPNOTSUPP) => return Ok(()),
        Err(e) => return Err(e),
    };
    for name in names.split(|b| *b == 0).filter(|n| !n.is_empty()) {
        let name = CString::new(name).expect("split on NUL");
        let value = match read_sized(|| rfs::lgetxattr_query(&from, &name), |buf| rfs::lgetxattr(&from, &name, buf)) {
            Ok(v) => v,
            Err(e) if e.raw_os_error() == Some(libc::ENODATA) => continue,
            Err(e) => return Err(e),
        };
        set_or_skip(rfs::lsetxattr(&to, &name, &value, XattrFlags::empty()))?;
    }
    Ok(())
}

/// A filesystem that keeps no user xattrs on symlinks, say, loses only those.
fn set_or_skip(r: rustix::io::Result<()>) -> io::Result<()> {
    match r {
        Ok(()) | Err(Errno::PERM | Errno::OPNOTSUPP) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

fn proc_path(dir: BorrowedFd<'_>, name: &CStr) -> PathBuf {
    let mut path = PathBuf::from(format!("/proc/self/fd/{}", dir.as_raw_fd()));
    path.push(OsStr::from_bytes(name.to_bytes()));
    path
}

/// Owner first (chown clears setuid bits), then mode, then times (last, as writing changes
/// them).
fn set_owner_mode_times(fd: BorrowedFd<'_>, st: &Stat) -> io::Result<()> {
    rfs::fchown(fd, Some(Uid::from_raw(st.st_uid)), Some(Gid::from_raw(st.st_gid)))?;
    rfs::fchmod(fd, Mode::from_raw_mode(st.st_mode & 0o7777))?;
    rfs::futimens(fd, &times(st))?;
    Ok(())
}

/// The same for what has no fd: a symlink (which has no mode of its own), a device, a fifo.
fn set_owner_mode_times_at(dir: BorrowedFd<'_>, name: &CStr, st: &Stat, symlink: bool) -> io::Result<()> {
    rfs::chownat(dir, name, Some(Uid::from_raw(st.st_uid)), Some(Gid::from_raw(st.st_gid)), AtFlags::SYMLINK_NOFOLLOW)?;
    if !symlink {
        // Not a symlink (made just now, in the copy): nothing to follow.
        rfs::chmodat(dir, name, Mode::from_raw_mode(st.st_mode & 0o7777), AtFlags::empty())?;
    }
    rfs::utimensat(dir, name, &times(st), AtFlags::SYMLINK_NOFOLLOW)?;
    Ok(())
}

#[allow(clippy::useless_conversion)] // the field types differ between architectures
fn times(st: &Stat) -> Timestamps {
    let ts = |sec, nsec| Timespec { tv_sec: i64::from(sec), tv_nsec: nsec };
    Timestamps {
        last_access: ts(st.st_atime, st.st_atime_nsec.try_into().unwrap_or(0)),
        last_modification: ts(st.st_mtime, st.st_mtime_nsec.try_into().unwrap_or(0)),
    }
}

fn at(e: io::Error, path: &Path) -> io::Error {
    io::Error::new(e.kind(), format!("{}: {e}", path.display()))
}

/// Flushes the whole filesystem that holds `path` (one call instead of one fsync per file).
pub fn sync_filesystem(path: &Path) -> io::Result<()> {
    Ok(rfs::syncfs(File::open(path)?)?)
}

/// fsync of a directory, to make a rename in it durable.
pub fn sync_dir(path: &Path) -> io::Result<()> {
    File::open(path)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tree::tests::{make_deep, walk_down, DEEP};
    use std::fs;
    use std::io::{Seek, Write};
    use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};

    fn whiteout(path: &Path) {
        let (dir, name) = tree::open_parent(path).unwrap();
        rfs::mknodat(&dir, name.as_c_str(), FileType::CharacterDevice, Mode::empty(), 0).unwrap();
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
        std::os::unix::fs::lchown(src.join("opaque/sym"), Some(1000), Some(1000)).unwrap();
        set_xattr(&src.join("opaque"), "trusted.overlay.opaque", b"y").unwrap();
        set_xattr(&src.join("file"), "user.note", b"kept").unwrap();
        whiteout(&src.join("deleted"));
        set_xattr(&src.join("deleted"), "trusted.note", b"on a whiteout").unwrap();
        set_xattr(&src.join("opaque/sym"), "trusted.note", b"on a symlink").unwrap();
        let mut sparse = File::create(src.join("sparse")).unwrap();
        sparse.seek(std::io::SeekFrom::Start(64 << 20)).unwrap();
        sparse.write_all(b"end").unwrap();
        drop(sparse);
        let old = Timestamps {
            last_access: Timespec { tv_sec: 1_000_000, tv_nsec: 5 },
            last_modification: Timespec { tv_sec: 2_000_000, tv_nsec: 7 },
        };
        rfs::utimensat(rfs::CWD, src.join("opaque"), &old, AtFlags::empty()).unwrap();

        let dst = tmp.path().join("dst");
        let stats = copy_tree(&src, &dst).unwrap();

        assert_eq!(fs::read(dst.join("file")).unwrap(), b"hello");
        let m = fs::metadata(dst.join("file")).unwrap();
        assert_eq!((m.mode() & 0o7777, m.uid(), m.gid(), m.nlink()), (0o4750, 1000, 1000, 2));
        assert_eq!(m.ino(), fs::metadata(dst.join("opaque/link")).unwrap().ino(), "hard link kept");
        assert_eq!(fs::read_link(dst.join("opaque/sym")).unwrap(), Path::new("../file"));
        assert_eq!(fs::symlink_metadata(dst.join("opaque/sym")).unwrap().uid(), 1000);
        assert!(dst.join("empty").is_dir() && dst.join("opaque/sub").is_dir());
        assert_eq!(get_xattr(&dst.join("opaque"), "trusted.overlay.opaque").unwrap().unwrap(), b"y");
        assert_eq!(get_xattr(&dst.join("file"), "user.note").unwrap().unwrap(), b"kept");
        assert_eq!(get_xattr(&dst.join("deleted"), "trusted.note").unwrap().unwrap(), b"on a whiteout");
        assert_eq!(get_xattr(&dst.join("opaque/sym"), "trusted.note").unwrap().unwrap(), b"on a symlink");
        assert_eq!(get_xattr(&dst.join("file"), "user.none").unwrap(), None);
        let w = fs::symlink_metadata(dst.join("deleted")).unwrap();
        assert!(w.file_type().is_char_device() && w.rdev() == 0, "whiteout kept");
        let s = fs::metadata(dst.join("sparse")).unwrap();
        assert_eq!(s.len(), (64 << 20) + 3);
        assert!(s.blocks() * 512 < 1 << 20, "holes stay holes: {} blocks", s.blocks());
        assert_eq!(stats.files, 2, "the hard link is not copied twice");
        assert_eq!(m.mtime(), fs::metadata(src.join("file")).unwrap().mtime());
        let d = fs::metadata(dst.join("opaque")).unwrap();
        assert_eq!(
            (d.mtime(), d.mtime_nsec(), d.atime()),
            (2_000_000, 7, 1_000_000),
            "a directory's times are set after its contents"
        );
    }

    #[test]
    fn copies_a_tree_30000_deep_with_a_hard_link_across_it() {
        let tmp = tempfile::tempdir().unwrap();
        let (src, dst) = (tmp.path().join("src"), tmp.path().join("dst"));
        make_deep(&src, DEEP, 5000);
        let (deepest, _) = walk_down(&src, DEEP);
        let root = rfs::openat(rfs::CWD, &src, OFlags::RDONLY | OFlags::DIRECTORY, Mode::empty()).unwrap();
        rfs::linkat(&root, c"f", &deepest, c"hard", AtFlags::empty()).unwrap();
        drop((root, deepest));

        let t = std::time::Instant::now();
        let stats = copy_tree(&src, &dst).unwrap();
        eprintln!("{DEEP} levels copied in {:?}", t.elapsed());

        assert_eq!(stats.files, DEEP as u64 / 1000 + 1, "{stats:?}");
        let (deepest, bytes) = walk_down(&dst, DEEP);
        assert_eq!(lstat_at(deepest.as_fd(), c"leaf").unwrap().st_size, 5000);
        let hard = lstat_at(deepest.as_fd(), c"hard").unwrap();
        assert_eq!(
            FileId::of(&hard),
            FileId::of(&rfs::stat(dst.join("f")).unwrap()),
            "the hard link is kept, 30,000 levels apart"
        );
        assert_eq!(fs::read_to_string(dst.join("f")).unwrap(), "level 0");
        assert_eq!(
            tree::disk_usage(&dst),
            bytes + u64::try_from(hard.st_blocks).unwrap() * 512,
            "a link counts once per name"
        );
        drop(deepest);
        tree::remove_tree(&src).unwrap();
        tree::remove_tree(&dst).unwrap();
    }

    #[test]
    fn a_symlink_is_copied_as_a_symlink_never_as_what_it_points_to() {
        let tmp = tempfile::tempdir().unwrap();
        let outside = tmp.path().join("outside");
        fs::create_dir_all(outside.join("sub")).unwrap();
        fs::write(outside.join("sub/secret"), "host").unwrap();
        let src = tmp.path().join("src");
        fs::create_dir(&src).unwrap();
        std::os::unix::fs::symlink(&outside, src.join("out")).unwrap();
        let dst = tmp.path().join("dst");
        let stats = copy_tree(&src, &dst).unwrap();
        assert_eq!(stats, CopyStats::default());
        assert!(fs::symlink_metadata(dst.join("out")).unwrap().file_type().is_symlink());
        assert_eq!(fs::read_link(dst.join("out")).unwrap(), outside);
        // A root given as a symlink is copied as one too.
        copy_tree(&src.join("out"), &tmp.path().join("link")).unwrap();
        assert!(fs::symlink_metadata(tmp.path().join("link")).unwrap().file_type().is_symlink());
        // And a file alone (a sandbox's disk image) as a file.
        copy_tree(&outside.join("sub/secret"), &tmp.path().join("file")).unwrap();
        assert_eq!(fs::read_to_string(tmp.path().join("file")).unwrap(), "host");
    }
}
