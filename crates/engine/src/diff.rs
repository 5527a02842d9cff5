//! What a snapshot's layer changed against the layers below it (its parent's chain and the
//! template), read from the layer itself: paths added, changed and removed.
//!
//! The layer is an overlayfs upper directory (`root` for `/`, `usr` for `/usr`): a whiteout (a
//! 0/0 character device) removed a path, an opaque directory (`trusted.overlay.opaque = y`)
//! replaced one, anything else was written. Written files are "changed" when the view below has
//! them with other metadata (type, mode, owner, size, modification time, a link's target), and
//! not reported when it has them as they are: a layer folded with its parents (long chains are
//! flattened) holds their files too, unchanged. Paths below are looked up one component at a
//! time without following links, so a link in a layer never leads the lookup out of it.

use crate::copy::get_xattr_fd;
use crate::merge::OPAQUE_XATTR;
use crate::tree::{file_type, lstat_at, open_dir_at, read_entries};
use rustix::fs::{self as rfs, FileType, Mode, OFlags, Stat};
use serde::Serialize;
use std::ffi::CString;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};

/// Paths as the sandbox sees them (`/home/user/a.txt`), sorted.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct LayerDiff {
    pub added: Vec<String>,
    pub changed: Vec<String>,
    pub removed: Vec<String>,
}

/// One part of a layer stack: the upper directory and the lower ones (topmost first), and where
/// it shows in the sandbox (`/` or `/usr`).
pub struct Part<'a> {
    pub mount: &'a str,
    pub upper: PathBuf,
    pub lowers: Vec<PathBuf>,
}

/// What `parts`' uppers changed over their lowers.
pub fn diff(parts: &[Part<'_>]) -> io::Result<LayerDiff> {
    let mut out = LayerDiff::default();
    for part in parts {
        let Some(upper) = open_dir(&part.upper)? else { continue };
        let lowers: Vec<OwnedFd> =
            part.lowers.iter().filter_map(|l| open_dir(l).transpose()).collect::<Result<_, _>>()?;
        let mut walk = Walk { lowers: &lowers, out: &mut out, buf: Vec::new(), mount: part.mount };
        walk.dir(upper.as_fd(), &mut Vec::new())?;
    }
    for list in [&mut out.added, &mut out.changed, &mut out.removed] {
        list.sort();
    }
    Ok(out)
}

fn open_dir(path: &Path) -> io::Result<Option<OwnedFd>> {
    let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC;
    match rfs::openat(rfs::CWD, path, flags, Mode::empty()) {
        Ok(fd) => Ok(Some(fd)),
        Err(rustix::io::Errno::NOENT) => Ok(None),
        Err(e) => Err(io::Error::new(io::Error::from(e).kind(), format!("{}: {e}", path.display()))),
    }
}

struct Walk<'a> {
    lowers: &'a [OwnedFd],
    out: &'a mut LayerDiff,
    buf: Vec<u8>,
    mount: &'a str,
}

impl Walk<'_> {
    /// The sandbox path of `names` under this part.
    fn path(&self, names: &[CString]) -> String {
        let mut p = self.mount.trim_end_matches('/').to_string();
        for n in names {
            p.push('/');
            p.push_str(&String::from_utf8_lossy(n.as_bytes()));
        }
        if p.is_empty() {
            p.push('/');
        }
        p
    }

    /// Compares the upper directory `dir` (at `names`) with the lowers' view of it.
    fn dir(&mut self, dir: BorrowedFd<'_>, names: &mut Vec<CString>) -> io::Result<()> {
        for (name, _) in read_entries(dir, &mut self.buf)? {
            // The root part's /usr is the usr part's (its mount point here).
            if names.is_empty() && self.mount == "/" && name.as_bytes() == b"usr" {
                continue;
            }
            let st = lstat_at(dir, &name)?;
            names.push(name);
            let below = lower_view(self.lowers, names)?;
            let path = self.path(names);
            let kind = file_type(&st);
            if kind == FileType::CharacterDevice && st.st_rdev == 0 {
                if below.is_some() {
                    self.out.removed.push(path);
                }
            } else if kind == FileType::Directory {
                let name = names.last().expect("pushed above").clone();
                let sub = open_dir_at(dir, &name)?;
                let opaque = get_xattr_fd(sub.as_fd(), OPAQUE_XATTR)?.as_deref() == Some(b"y");
                match &below {
                    None => self.out.added.push(path),
                    Some(b) if file_type(b) != FileType::Directory => self.out.changed.push(path),
                    Some(b) if opaque || !same_meta(&st, b) => self.out.changed.push(path),
                    Some(_) => {}
                }
                // What an opaque directory hides of the view below is gone from it.
                if opaque && below.as_ref().is_some_and(|b| file_type(b) == FileType::Directory) {
                    self.hidden_by_opaque(sub.as_fd(), names)?;
                }
                self.dir(sub.as_fd(), names)?;
            } else {
                match &below {
                    None => self.out.added.push(path),
                    Some(b) if !same_file(dir, names, &st, b, self.lowers)? => self.out.changed.push(path),
                    Some(_) => {}
                }
            }
            names.pop();
        }
        Ok(())
    }

    /// The entries the view below has in directory `names` that the opaque upper `dir` lacks.
    fn hidden_by_opaque(&mut self, dir: BorrowedFd<'_>, names: &mut Vec<CString>) -> io::Result<()> {
        for lower in self.lowers {
            let Some(below) = open_path(lower.as_fd(), names)? else { continue };
            for (name, _) in read_entries(below.as_fd(), &mut self.buf)? {
                if lstat_at(dir, &name).is_err() {
                    names.push(name);
                    if lower_view(self.lowers, names)?.is_some() {
                        let path = self.path(names);
                        if !self.out.removed.contains(&path) {
                            self.out.removed.push(path);
                        }
                    }
                    names.pop();
                }
            }
        }
        Ok(())
    }
}

/// The directory at `names` under `root`, opened without following links; `None` when a
/// component is missing or not a directory.
fn open_path(root: BorrowedFd<'_>, names: &[CString]) -> io::Result<Option<OwnedFd>> {
    let mut fd = rfs::openat(root, c".", OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC, Mode::empty())?;
    for name in names {
        match open_dir_at(fd.as_fd(), name) {
            Ok(next) => fd = next,
            Err(e) if matches!(e.raw_os_error(), Some(libc::ENOENT | libc::ENOTDIR | libc::ELOOP)) => return Ok(None),
            Err(e) => return Err(e),
        }
    }
    Ok(Some(fd))
}

/// What the lowers (topmost first) show at `names`: the first layer that has it decides (a
/// whiteout: nothing); a layer whose directory on the way is opaque hides those under it.
fn lower_view(lowers: &[OwnedFd], names: &[CString]) -> io::Result<Option<Stat>> {
    let (last, parents) = names.split_last().expect("a path has a name");
    for lower in lowers {
        let Some(parent) = open_path(lower.as_fd(), parents)? else { continue };
        match lstat_at(parent.as_fd(), last) {
            Ok(st) if file_type(&st) == FileType::CharacterDevice && st.st_rdev == 0 => return Ok(None),
            Ok(st) => return Ok(Some(st)),
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {}
            Err(e) => return Err(e),
        }
        if get_xattr_fd(parent.as_fd(), OPAQUE_XATTR)?.as_deref() == Some(b"y") {
            return Ok(None);
        }
    }
    Ok(None)
}

fn same_meta(a: &Stat, b: &Stat) -> bool {
    a.st_mode == b.st_mode && a.st_uid == b.st_uid && a.st_gid == b.st_gid
}

/// Whether the upper's non-directory at `names` is the one below as it was.
fn same_file(dir: BorrowedFd<'_>, names: &[CString], up: &Stat, below: &Stat, lowers: &[OwnedFd]) -> io::Result<bool> {
    if !same_meta(up, below) || up.st_size != below.st_size {
        return Ok(false);
    }
    if file_type(up) == FileType::Symlink {
        let (last, parents) = names.split_last().expect("a path has a name");
        let mine = rfs::readlinkat(dir, last.as_c_str(), Vec::new())?;
        for lower in lowers {
            let Some(parent) = open_path(lower.as_fd(), parents)? else { continue };
            if let Ok(theirs) = rfs::readlinkat(parent.as_fd(), last.as_c_str(), Vec::new()) {
                return Ok(mine == theirs);
            }
        }
        return Ok(false);
    }
    Ok(up.st_mtime == below.st_mtime && up.st_mtime_nsec == below.st_mtime_nsec)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::copy::set_xattr;
    use std::fs;

    fn whiteout(path: &Path) {
        rfs::mknodat(rfs::CWD, path, FileType::CharacterDevice, Mode::from_raw_mode(0o600), 0).unwrap();
    }

    #[test]
    fn added_changed_removed_and_unchanged_copies() {
        let t = tempfile::tempdir().unwrap();
        let (upper, lower) = (t.path().join("upper"), t.path().join("lower"));
        for d in [&upper, &lower] {
            fs::create_dir_all(d.join("home/user")).unwrap();
        }
        fs::write(lower.join("home/user/kept.txt"), "same").unwrap();
        fs::write(lower.join("home/user/edit.txt"), "old").unwrap();
        fs::write(lower.join("home/user/gone.txt"), "x").unwrap();
        fs::create_dir_all(lower.join("opaque/inner")).unwrap();
        fs::write(lower.join("opaque/old.txt"), "x").unwrap();
        // An unchanged copy (a flattened parent's file): same metadata.
        fs::copy(lower.join("home/user/kept.txt"), upper.join("home/user/kept.txt")).unwrap();
        let mtime = fs::metadata(lower.join("home/user/kept.txt")).unwrap().modified().unwrap();
        fs::File::options().write(true).open(upper.join("home/user/kept.txt")).unwrap().set_modified(mtime).unwrap();
        fs::write(upper.join("home/user/edit.txt"), "new!").unwrap();
        fs::write(upper.join("home/user/new.txt"), "n").unwrap();
        whiteout(&upper.join("home/user/gone.txt"));
        whiteout(&upper.join("home/user/never-was.txt"));
        fs::create_dir_all(upper.join("opaque")).unwrap();
        set_xattr(&upper.join("opaque"), OPAQUE_XATTR, b"y").unwrap();
        fs::write(upper.join("opaque/fresh.txt"), "f").unwrap();
        std::os::unix::fs::symlink("/etc/passwd", upper.join("link")).unwrap();

        let got = diff(&[Part { mount: "/", upper: upper.clone(), lowers: vec![lower.clone()] }]).unwrap();
        assert_eq!(
            got.added,
            ["/link", "/opaque/fresh.txt", "/home/user/new.txt"].map(String::from).to_vec().tap_sort()
        );
        assert_eq!(got.changed, ["/home/user/edit.txt", "/opaque"].map(String::from).to_vec().tap_sort());
        assert_eq!(
            got.removed,
            ["/home/user/gone.txt", "/opaque/inner", "/opaque/old.txt"].map(String::from).to_vec().tap_sort()
        );
    }

    #[test]
    fn a_link_in_a_lower_is_not_followed() {
        let t = tempfile::tempdir().unwrap();
        let (upper, lower, outside) = (t.path().join("upper"), t.path().join("lower"), t.path().join("outside"));
        fs::create_dir_all(upper.join("esc")).unwrap();
        fs::create_dir_all(&lower).unwrap();
        fs::create_dir_all(&outside).unwrap();
        fs::write(outside.join("secret"), "s").unwrap();
        std::os::unix::fs::symlink(&outside, lower.join("esc")).unwrap();
        fs::write(upper.join("esc/secret"), "s").unwrap();
        let got = diff(&[Part { mount: "/usr", upper, lowers: vec![lower] }]).unwrap();
        // /usr/esc replaced a link (changed), and its file is new: the link's target is not read.
        assert_eq!(got.changed, ["/usr/esc"]);
        assert_eq!(got.added, ["/usr/esc/secret"]);
    }

    trait TapSort {
        fn tap_sort(self) -> Self;
    }
    impl TapSort for Vec<String> {
        fn tap_sort(mut self) -> Self {
            self.sort();
            self
        }
    }
}
