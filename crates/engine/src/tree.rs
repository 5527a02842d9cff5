//! Walking directory trees that a sandbox wrote: its layers, which the engine removes, measures and
//! copies into snapshots, and whatever envd removes for the files API inside it.
//!
//! Such a tree is hostile. It is as deep as the sandbox likes (`user` makes 30,000 levels in 0.4 s,
//! far past `PATH_MAX`), full of symlinks to places outside it, and, while the sandbox runs, changing
//! under the walk. So every walk here:
//! - is iterative: the directories it is in are a stack on the heap ([`DirChain`]), never the call
//!   stack, whatever the depth;
//! - goes from directory fd to directory fd (`openat`, `unlinkat`, `fstatat` relative to the parent,
//!   with `O_NOFOLLOW`): no path it uses is longer than one name, and no symlink is ever followed;
//! - keeps at most [`FD_WINDOW`] directories open, and gets back to one it closed through `..` of
//!   its child, checking that it is still the same directory (device and inode): a directory moved
//!   meanwhile ends the walk with an error rather than taking it somewhere else;
//! - stays on one file system: a mount point below its root is not entered.
//!
//! The memory a walk holds is the list of not yet visited names of each directory it is in, and
//! one name and identity per level: bounded by the tree itself.

use rustix::fs::{self as rfs, AtFlags, FileType, Mode, OFlags, Stat, StatxFlags, CWD};
use rustix::io::Errno;
use std::ffi::{CStr, CString, OsStr};
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

/// How many directories of the path from a walk's root to where it is stay open.
pub const FD_WINDOW: usize = 16;

/// How a walk opens a directory: never through a symlink, never anything but a directory (a FIFO
/// or a device is refused before it is opened).
const DIR_FLAGS: OFlags = OFlags::RDONLY.union(OFlags::DIRECTORY).union(OFlags::NOFOLLOW).union(OFlags::CLOEXEC);

/// Room for `getdents64` results (a name takes at most 280 bytes).
const DIRENT_BUF: usize = 32 * 1024;

/// What a file is, across a walk: its device and inode.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct FileId {
    pub dev: u64,
    pub ino: u64,
}

impl FileId {
    #[allow(clippy::useless_conversion)] // the field types differ between architectures
    pub fn of(st: &Stat) -> Self {
        Self { dev: u64::from(st.st_dev), ino: u64::from(st.st_ino) }
    }
}

/// The type of the file `st` describes.
pub fn file_type(st: &Stat) -> FileType {
    FileType::from_raw_mode(st.st_mode)
}

/// Metadata of `name` in `dir`, not following it if it is a symlink.
pub fn lstat_at(dir: BorrowedFd<'_>, name: &CStr) -> io::Result<Stat> {
    Ok(rfs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW)?)
}

/// Opens the directory `name` in `dir` for a walk (not following a symlink).
pub fn open_dir_at(dir: BorrowedFd<'_>, name: &CStr) -> io::Result<OwnedFd> {
    Ok(rfs::openat(dir, name, DIR_FLAGS, Mode::empty())?)
}

/// The directory that holds `path` (opened the ordinary way: the path up to there is the host's,
/// not the sandbox's), and the last component of `path`, which the walks take from there.
pub fn open_parent(path: &Path) -> io::Result<(OwnedFd, CString)> {
    let name = path
        .file_name()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, format!("{}: no last component", path.display())))?;
    let parent = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let fd = rfs::openat(CWD, parent, OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC, Mode::empty())?;
    Ok((fd, cstring(name)?))
}

fn cstring(name: &OsStr) -> io::Result<CString> {
    CString::new(name.as_bytes()).map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "a name with a NUL byte"))
}

/// The entries of the directory `fd`, freshly opened (without `.` and `..`), with their types as
/// the directory says (`Unknown` on file systems that do not keep them).
pub fn read_entries(fd: BorrowedFd<'_>, buf: &mut Vec<u8>) -> io::Result<Vec<(CString, FileType)>> {
    if buf.capacity() < DIRENT_BUF {
        buf.reserve(DIRENT_BUF);
    }
    let mut out = Vec::new();
    let mut dir = rfs::RawDir::new(fd, buf.spare_capacity_mut());
    while let Some(entry) = dir.next() {
        let entry = entry?;
        let name = entry.file_name();
        if name != c"." && name != c".." {
            out.push((name.to_owned(), entry.file_type()));
        }
    }
    Ok(out)
}

/// What the open directory `fd` is, and the mount it is on when the kernel says (Linux 5.8+).
fn identify(fd: BorrowedFd<'_>) -> io::Result<(FileId, Option<u64>)> {
    match rfs::statx(fd, c"", AtFlags::EMPTY_PATH, StatxFlags::INO | StatxFlags::MNT_ID) {
        Ok(st) => {
            let id = FileId { dev: rfs::makedev(st.stx_dev_major, st.stx_dev_minor), ino: st.stx_ino };
            Ok((id, (st.stx_mask & StatxFlags::MNT_ID.bits() != 0).then_some(st.stx_mnt_id)))
        }
        Err(Errno::NOSYS) => Ok((FileId::of(&rfs::fstat(fd)?), None)),
        Err(e) => Err(e.into()),
    }
}

/// One directory on a walk's path.
#[derive(Debug)]
struct Level {
    /// Open for the [`FD_WINDOW`] deepest levels.
    fd: Option<OwnedFd>,
    id: FileId,
    /// Its name in its parent (empty for the root).
    name: CString,
}

/// The directories from a walk's root down to where it is, the deepest open (see the module doc).
#[derive(Debug)]
pub struct DirChain {
    levels: Vec<Level>,
    /// The mount the root is on (where the kernel says; else a walk stays on the root's device).
    mount: Option<u64>,
}

/// What [`DirChain::enter`] found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Entered {
    /// It is a directory, now the deepest level.
    Yes,
    /// Not a directory (any more): a file, a symlink, a device…
    NotADirectory,
    /// Not there any more.
    Gone,
    /// A directory of another file system, mounted there: not entered.
    MountPoint,
}

impl DirChain {
    /// A walk that starts in the directory `root`.
    pub fn new(root: OwnedFd) -> io::Result<Self> {
        let (id, mount) = identify(root.as_fd())?;
        Ok(Self { levels: vec![Level { fd: Some(root), id, name: CString::default() }], mount })
    }

    /// How far below the root the walk is (0: in the root).
    pub fn depth(&self) -> usize {
        self.levels.len() - 1
    }

    /// The deepest directory, where the walk is.
    pub fn top(&self) -> BorrowedFd<'_> {
        self.levels.last().and_then(|l| l.fd.as_ref()).expect("the deepest directory is open").as_fd()
    }

    pub fn top_id(&self) -> FileId {
        self.levels.last().expect("a chain has a root").id
    }

    /// The names from the root down to the deepest directory (none for the root).
    pub fn names(&self) -> impl Iterator<Item = &CStr> {
        self.levels[1..].iter().map(|l| l.name.as_c_str())
    }

    /// Goes down into `name`, a subdirectory of the deepest directory.
    pub fn enter(&mut self, name: &CStr) -> io::Result<Entered> {
        let fd = match rfs::openat(self.top(), name, DIR_FLAGS, Mode::empty()) {
            Ok(fd) => fd,
            Err(Errno::NOENT) => return Ok(Entered::Gone),
            Err(Errno::NOTDIR | Errno::LOOP) => return Ok(Entered::NotADirectory),
            Err(e) => return Err(self.error(e.into(), Some(name))),
        };
        let (id, mount) = identify(fd.as_fd())?;
        let crossed = match (self.mount, mount) {
            (Some(root), Some(here)) => root != here,
            // A btrfs subvolume has a device of its own; only an old kernel makes that count.
            _ => id.dev != self.top_id().dev,
        };
        if crossed {
            return Ok(Entered::MountPoint);
        }
        self.levels.push(Level { fd: Some(fd), id, name: name.to_owned() });
        if self.levels.len() > FD_WINDOW {
            let far = self.levels.len() - 1 - FD_WINDOW;
            self.levels[far].fd = None;
        }
        Ok(Entered::Yes)
    }

    /// Goes back up from the deepest directory to its parent, which must still be the directory
    /// the walk came from. Returns the name and fd of the directory left (for what is done to it
    /// last, like giving a copy its times).
    pub fn leave(&mut self) -> io::Result<(CString, OwnedFd)> {
        let depth = self.depth();
        assert!(depth > 0, "leaving the root of a walk");
        let level = self.levels.pop().expect("not at the root");
        let fd = level.fd.expect("the deepest directory is open");
        let parent = self.levels.last_mut().expect("not at the root");
        if parent.fd.is_none() {
            let up = rfs::openat(&fd, c"..", DIR_FLAGS, Mode::empty())?;
            if identify(up.as_fd())?.0 != parent.id {
                return Err(io::Error::other(format!("a directory {depth} levels down was moved during the walk")));
            }
            parent.fd = Some(up);
        }
        Ok((level.name, fd))
    }

    /// `e`, saying where: the last few names of the path from the root, and how deep.
    pub fn error(&self, e: io::Error, name: Option<&CStr>) -> io::Error {
        const SHOWN: usize = 6;
        let mut names: Vec<&CStr> = self.names().collect();
        names.extend(name);
        let depth = names.len();
        let shown: Vec<String> =
            names[depth.saturating_sub(SHOWN)..].iter().map(|n| n.to_string_lossy().into_owned()).collect();
        let elided = if depth > SHOWN { format!("…({} levels)…/", depth - SHOWN) } else { String::new() };
        io::Error::new(e.kind(), format!("{elided}{}: {e}", shown.join("/")))
    }
}

/// `rm -rf path`, quiet when nothing is there. The last component is not followed either: a symlink
/// is removed, not what it points to.
pub fn remove_tree(path: &Path) -> io::Result<()> {
    let (parent, name) = match open_parent(path) {
        Ok(p) => p,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(at(e, path)),
    };
    remove_at(parent.as_fd(), &name).map_err(|e| at(e, path))
}

/// Removes `name` in the directory `dir` whatever it is, a directory with everything under it (as
/// the module doc says) or anything else. Quiet when it is not there.
pub fn remove_at(dir: BorrowedFd<'_>, name: &CStr) -> io::Result<()> {
    match unlink(dir, name)? {
        Unlinked::Done => return Ok(()),
        Unlinked::IsDir => {}
    }
    let root = match rfs::openat(dir, name, DIR_FLAGS, Mode::empty()) {
        Ok(fd) => fd,
        Err(Errno::NOENT) => return Ok(()),
        // Replaced by something else since: that goes the ordinary way.
        Err(Errno::NOTDIR | Errno::LOOP) => return unlink(dir, name).map(drop),
        Err(e) => return Err(e.into()),
    };
    // On btrfs, subvolumes (the copy-on-write store's layers) go whole, at once.
    let on_btrfs = rfs::fstatfs(&root).is_ok_and(|st| is_btrfs_magic(&st));
    if on_btrfs && is_subvolume_root(&root) {
        drop(root);
        return crate::sys::btrfs_subvolume_destroy(dir, OsStr::from_bytes(name.to_bytes()));
    }
    let mut buf = Vec::new();
    let mut chain = DirChain::new(root)?;
    let mut pending = vec![read_entries(chain.top(), &mut buf)?];
    loop {
        let next = pending.last_mut().expect("a list per level").pop();
        if let Some((child, ty)) = next {
            if ty != FileType::Directory {
                match unlink(chain.top(), &child).map_err(|e| chain.error(e, Some(&child)))? {
                    Unlinked::Done => continue,
                    Unlinked::IsDir => {}
                }
            }
            if on_btrfs
                && rfs::statat(chain.top(), &child, AtFlags::SYMLINK_NOFOLLOW).is_ok_and(|st| {
                    st.st_ino == BTRFS_SUBVOLUME_ROOT_INO && FileType::from_raw_mode(st.st_mode) == FileType::Directory
                })
            {
                let name = OsStr::from_bytes(child.to_bytes());
                crate::sys::btrfs_subvolume_destroy(chain.top(), name).map_err(|e| chain.error(e, Some(&child)))?;
                continue;
            }
            match chain.enter(&child)? {
                Entered::Yes => pending.push(read_entries(chain.top(), &mut buf).map_err(|e| chain.error(e, None))?),
                Entered::Gone => {}
                Entered::NotADirectory => {
                    unlink(chain.top(), &child).map_err(|e| chain.error(e, Some(&child)))?;
                }
                Entered::MountPoint => {
                    let e = io::Error::new(io::ErrorKind::ResourceBusy, "a mount point: not removed");
                    return Err(chain.error(e, Some(&child)));
                }
            }
            continue;
        }
        pending.pop();
        if chain.depth() == 0 {
            break;
        }
        let (child, fd) = chain.leave()?;
        drop(fd);
        match rfs::unlinkat(chain.top(), &child, AtFlags::REMOVEDIR) {
            Ok(()) | Err(Errno::NOENT) => {}
            Err(e) => return Err(chain.error(e.into(), Some(&child))),
        }
    }
    drop(chain);
    match rfs::unlinkat(dir, name, AtFlags::REMOVEDIR) {
        Ok(()) | Err(Errno::NOENT) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// `statfs(2)`'s `f_type` of btrfs.
const BTRFS_SUPER_MAGIC: i64 = 0x9123_683E;
/// The inode number of a btrfs subvolume's root directory (`BTRFS_FIRST_FREE_OBJECTID`).
const BTRFS_SUBVOLUME_ROOT_INO: u64 = 256;

/// Whether `statfs(2)` says btrfs.
#[allow(clippy::unnecessary_cast)] // f_type's type differs between targets
pub fn is_btrfs_magic(st: &rfs::StatFs) -> bool {
    st.f_type as i64 == BTRFS_SUPER_MAGIC
}

/// Whether the directory open as `fd` (on btrfs) is the root of a subvolume.
fn is_subvolume_root(fd: &OwnedFd) -> bool {
    rfs::fstat(fd).is_ok_and(|st| st.st_ino == BTRFS_SUBVOLUME_ROOT_INO)
}

enum Unlinked {
    /// Removed, or already gone.
    Done,
    /// A directory: not removed.
    IsDir,
}

fn unlink(dir: BorrowedFd<'_>, name: &CStr) -> io::Result<Unlinked> {
    match rfs::unlinkat(dir, name, AtFlags::empty()) {
        Ok(()) | Err(Errno::NOENT) => Ok(Unlinked::Done),
        Err(Errno::ISDIR) => Ok(Unlinked::IsDir),
        Err(e) => Err(e.into()),
    }
}

/// Bytes allocated to what is under the directory `path` (the directory itself not counted), not
/// following symlinks nor entering other file systems; a file with several links counts once per
/// link (an upper bound). 0 when `path` is not a directory. Best effort, for metrics: what cannot
/// be read is skipped, and a tree that changes under the walk ends it with what it counted.
pub fn disk_usage(path: &Path) -> u64 {
    sum_over(path, |st| u64::try_from(st.st_blocks).unwrap_or(0).saturating_mul(512))
}

/// The bytes of data of the regular files under the directory `path`: their sizes, less their
/// holes (a file counts what it has on disk when that is less than its size). What a copy of the
/// tree writes, as [`disk_usage`] walks it.
pub fn data_bytes(path: &Path) -> u64 {
    sum_over(path, |st| match file_type(st) {
        FileType::RegularFile => {
            let on_disk = u64::try_from(st.st_blocks).unwrap_or(0).saturating_mul(512);
            u64::try_from(st.st_size).unwrap_or(0).min(on_disk)
        }
        _ => 0,
    })
}

/// `per` of everything under the directory `path`, summed (see [`disk_usage`]).
fn sum_over(path: &Path, per: impl Fn(&Stat) -> u64) -> u64 {
    let Ok(root) = rfs::openat(CWD, path, DIR_FLAGS, Mode::empty()) else { return 0 };
    let mut total = 0u64;
    if let Err(e) = add_usage(root, &mut total, &per) {
        tracing::debug!("walking {}: {e}", path.display());
    }
    total
}

fn add_usage(root: OwnedFd, total: &mut u64, per: &impl Fn(&Stat) -> u64) -> io::Result<()> {
    let mut buf = Vec::new();
    let mut chain = DirChain::new(root)?;
    let mut pending = vec![read_entries(chain.top(), &mut buf)?];
    loop {
        let next = pending.last_mut().expect("a list per level").pop();
        if let Some((child, _)) = next {
            let Ok(st) = lstat_at(chain.top(), &child) else { continue };
            *total = total.saturating_add(per(&st));
            if file_type(&st) == FileType::Directory && matches!(chain.enter(&child), Ok(Entered::Yes)) {
                // An unreadable directory is counted, not entered.
                pending.push(read_entries(chain.top(), &mut buf).unwrap_or_default());
            }
            continue;
        }
        pending.pop();
        if chain.depth() == 0 {
            return Ok(());
        }
        chain.leave()?;
    }
}

fn at(e: io::Error, path: &Path) -> io::Error {
    io::Error::new(e.kind(), format!("{}: {e}", path.display()))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::fs;
    use std::io::Write;
    use std::os::unix::fs::MetadataExt;
    use std::time::Instant;

    /// As deep as the attack: far past PATH_MAX, and past what a recursive walk survives.
    pub(crate) const DEEP: usize = 30_000;

    /// Makes `levels` nested directories `d` under `root` (with `mkdirat`, as no path reaches
    /// there), a file `leaf` of `leaf_len` bytes in the deepest and a file `f` every 1000 levels.
    pub(crate) fn make_deep(root: &Path, levels: usize, leaf_len: usize) {
        fs::create_dir(root).unwrap();
        let mut dir = rfs::openat(CWD, root, DIR_FLAGS, Mode::empty()).unwrap();
        for i in 0..levels {
            if i % 1000 == 0 {
                let f = rfs::openat(
                    &dir,
                    c"f",
                    OFlags::WRONLY | OFlags::CREATE | OFlags::CLOEXEC,
                    Mode::from_raw_mode(0o644),
                )
                .unwrap();
                fs::File::from(f).write_all(format!("level {i}").as_bytes()).unwrap();
            }
            rfs::mkdirat(&dir, c"d", Mode::from_raw_mode(0o755)).unwrap();
            dir = open_dir_at(dir.as_fd(), c"d").unwrap();
        }
        let leaf =
            rfs::openat(&dir, c"leaf", OFlags::WRONLY | OFlags::CREATE | OFlags::CLOEXEC, Mode::from_raw_mode(0o644))
                .unwrap();
        fs::File::from(leaf).write_all(&vec![b'x'; leaf_len]).unwrap();
    }

    /// The deepest directory of a tree made by [`make_deep`], and the blocks of every entry under
    /// `root` (as `disk_usage` counts them).
    pub(crate) fn walk_down(root: &Path, levels: usize) -> (OwnedFd, u64) {
        let mut dir = rfs::openat(CWD, root, DIR_FLAGS, Mode::empty()).unwrap();
        let mut bytes = 0;
        for _ in 0..levels {
            for name in [c"f", c"d"] {
                if let Ok(st) = lstat_at(dir.as_fd(), name) {
                    bytes += u64::try_from(st.st_blocks).unwrap() * 512;
                }
            }
            dir = open_dir_at(dir.as_fd(), c"d").unwrap();
        }
        bytes += u64::try_from(lstat_at(dir.as_fd(), c"leaf").unwrap().st_blocks).unwrap() * 512;
        (dir, bytes)
    }

    #[test]
    fn removes_and_measures_a_tree_30000_deep() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("deep");
        let t = Instant::now();
        make_deep(&root, DEEP, 5000);
        let made = t.elapsed();
        let (_, expected) = walk_down(&root, DEEP);
        let t = Instant::now();
        assert_eq!(disk_usage(&root), expected);
        let measured = t.elapsed();
        let t = Instant::now();
        remove_tree(&root).unwrap();
        let removed = t.elapsed();
        eprintln!("{DEEP} levels: made in {made:?}, measured in {measured:?}, removed in {removed:?}");
        assert!(!root.exists());
        assert_eq!(fs::read_dir(tmp.path()).unwrap().count(), 0);
        // Nothing there: quiet.
        remove_tree(&root).unwrap();
    }

    #[test]
    fn symlinks_are_never_followed() {
        let tmp = tempfile::tempdir().unwrap();
        let outside = tmp.path().join("outside");
        fs::create_dir_all(outside.join("sub")).unwrap();
        fs::write(outside.join("sub/big"), vec![1u8; 1 << 20]).unwrap();
        let tree = tmp.path().join("tree");
        fs::create_dir_all(tree.join("a/b")).unwrap();
        std::os::unix::fs::symlink(&outside, tree.join("a/out")).unwrap();
        std::os::unix::fs::symlink(outside.join("sub/big"), tree.join("a/b/file")).unwrap();
        std::os::unix::fs::symlink("../../../outside/sub", tree.join("a/b/rel")).unwrap();

        assert!(disk_usage(&tree) < 64 << 10, "the outside directory is not counted: {}", disk_usage(&tree));
        // The walk's root itself, given as a symlink, is not followed either.
        let link = tmp.path().join("link");
        std::os::unix::fs::symlink(&outside, &link).unwrap();
        assert_eq!(disk_usage(&link), 0);
        remove_tree(&link).unwrap();
        assert!(fs::symlink_metadata(&link).is_err() && outside.join("sub/big").exists());

        remove_tree(&tree).unwrap();
        assert!(!tree.exists());
        assert_eq!(fs::metadata(outside.join("sub/big")).unwrap().len(), 1 << 20, "the symlinks' targets survive");
    }

    #[test]
    fn a_directory_moved_off_the_walks_path_is_an_error_not_a_detour() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("deep");
        let levels = FD_WINDOW + 40;
        make_deep(&root, levels, 1);
        fs::create_dir(tmp.path().join("elsewhere")).unwrap();
        let mut chain = DirChain::new(rfs::openat(CWD, &root, DIR_FLAGS, Mode::empty()).unwrap()).unwrap();
        for _ in 0..levels {
            assert_eq!(chain.enter(c"d").unwrap(), Entered::Yes);
        }
        // Level 10 (closed by now: beyond the window) goes elsewhere, with everything below it.
        let mut level9 = root.clone();
        for _ in 0..9 {
            level9.push("d");
        }
        fs::rename(level9.join("d"), tmp.path().join("elsewhere/d")).unwrap();
        let mut left = 0;
        let err = loop {
            match chain.leave() {
                Ok(_) => left += 1,
                Err(e) => break e,
            }
        };
        assert_eq!(left, levels - 10, "up to level 10 the way back is the same: {err}");
        assert!(err.to_string().contains("moved"), "{err}");
        drop(chain);
        remove_tree(&root).unwrap();
        remove_tree(&tmp.path().join("elsewhere")).unwrap();
    }

    #[test]
    fn a_mount_point_inside_is_not_entered() {
        let tmp = tempfile::tempdir().unwrap();
        let tree = tmp.path().join("tree");
        fs::create_dir_all(tree.join("mnt")).unwrap();
        nix::mount::mount(Some("tmpfs"), &tree.join("mnt"), Some("tmpfs"), nix::mount::MsFlags::empty(), None::<&str>)
            .unwrap();
        struct Unmount<'a>(&'a Path);
        impl Drop for Unmount<'_> {
            fn drop(&mut self) {
                let _ = nix::mount::umount2(self.0, nix::mount::MntFlags::MNT_DETACH);
            }
        }
        let mnt = tree.join("mnt");
        let _unmount = Unmount(&mnt);
        fs::write(tree.join("mnt/kept"), vec![1u8; 1 << 20]).unwrap();
        assert!(disk_usage(&tree) < 64 << 10);
        let err = remove_tree(&tree).unwrap_err();
        assert!(err.to_string().contains("mount point"), "{err}");
        assert!(tree.join("mnt/kept").exists(), "the mounted file system is untouched");
        let dev = fs::metadata(&tree).unwrap().dev();
        assert_ne!(fs::metadata(tree.join("mnt")).unwrap().dev(), dev);
    }
}
