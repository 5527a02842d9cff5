//! Folding one overlayfs layer onto another, offline, as overlayfs would show them stacked:
//! used to flatten long snapshot chains into one layer.
//!
//! Layers are written with `redirect_dir` and `metacopy` off, so whiteouts (0/0 character
//! devices) and opaque directories (`trusted.overlay.opaque = y`) are all there is to follow.
//! The layers are sandboxes' trees: they are walked as [`crate::tree`] walks (iteratively, from
//! directory fd to directory fd, no symlink followed).

use crate::copy::{copy_at, copy_dir_metadata, copy_tree, get_xattr_fd, set_xattr_fd};
use crate::tree::{self, file_type, lstat_at, DirChain, Entered};
use rustix::fs::{FileType, Stat};
use std::ffi::CString;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::Path;

pub const OPAQUE_XATTR: &str = "trusted.overlay.opaque";

/// Applies the layer at `upper` (with its `root` and `usr` parts) onto the layer at `merged`.
pub fn apply_layer(upper: &Path, merged: &Path) -> io::Result<()> {
    for part in ["root", "usr"] {
        let (src, dst) = (upper.join(part), merged.join(part));
        if !src.exists() {
            continue;
        }
        if !dst.exists() {
            copy_tree(&src, &dst)?;
        } else {
            let open = |p: &Path| tree::open_parent(p).and_then(|(dir, name)| tree::open_dir_at(dir.as_fd(), &name));
            apply_dir(open(&src)?, open(&dst)?)
                .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", src.display())))?;
        }
    }
    Ok(())
}

fn is_whiteout(st: &Stat) -> bool {
    file_type(st) == FileType::CharacterDevice && st.st_rdev == 0
}

fn is_opaque(dir: BorrowedFd<'_>) -> io::Result<bool> {
    Ok(get_xattr_fd(dir, OPAQUE_XATTR)?.as_deref() == Some(b"y"))
}

/// Applies the directory `src` onto the directory `dst`.
fn apply_dir(src: OwnedFd, dst: OwnedFd) -> io::Result<()> {
    let mut buf = Vec::new();
    let mut entries = |dir: BorrowedFd<'_>| -> io::Result<Vec<CString>> {
        Ok(tree::read_entries(dir, &mut buf)?.into_iter().map(|(name, _)| name).collect())
    };
    let (mut src, mut dst) = (DirChain::new(src)?, DirChain::new(dst)?);
    let mut pending = vec![entries(src.top())?];
    // The metadata of each directory merged into one below, given to it once its contents are.
    let mut merged: Vec<Stat> = Vec::new();
    loop {
        let next = pending.last_mut().expect("a list per level").pop();
        if let Some(name) = next {
            let st = lstat_at(src.top(), &name).map_err(|e| src.error(e, Some(&name)))?;
            let below = lstat_at(dst.top(), &name).ok();
            let is_dir = file_type(&st) == FileType::Directory;
            if is_dir && below.is_some_and(|b| file_type(&b) == FileType::Directory) {
                if src.enter(&name)? != Entered::Yes {
                    return Err(src.error(io::Error::other("changed during the merge"), Some(&name)));
                }
                if !is_opaque(src.top())? {
                    // A directory over a directory: their contents merge.
                    if dst.enter(&name)? != Entered::Yes {
                        return Err(dst.error(io::Error::other("changed during the merge"), Some(&name)));
                    }
                    pending.push(entries(src.top()).map_err(|e| src.error(e, None))?);
                    merged.push(st);
                    continue;
                }
                src.leave()?;
            }
            // Anything else replaces what was below, whiteouts included (they keep hiding the
            // template under the merged layer).
            tree::remove_at(dst.top(), &name).map_err(|e| dst.error(e, Some(&name)))?;
            copy_at(src.top(), &name, dst.top(), &name).map_err(|e| src.error(e, Some(&name)))?;
            if is_dir && below.as_ref().is_some_and(is_whiteout) {
                // Over a whiteout, a directory hid everything below it: say so explicitly.
                set_xattr_fd(tree::open_dir_at(dst.top(), &name)?.as_fd(), OPAQUE_XATTR, b"y")?;
            }
            continue;
        }
        pending.pop();
        if src.depth() == 0 {
            return Ok(());
        }
        let st = merged.pop().expect("a stat per merged directory");
        let (_, from) = src.leave()?;
        let (name, to) = dst.leave()?;
        copy_dir_metadata(from.as_fd(), to.as_fd(), &st).map_err(|e| dst.error(e, Some(&name)))?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::copy::{get_xattr, set_xattr};
    use crate::tree::tests::{make_deep, walk_down};
    use std::fs;

    fn whiteout(path: &Path) {
        let (dir, name) = tree::open_parent(path).unwrap();
        rustix::fs::mknodat(&dir, name.as_c_str(), FileType::CharacterDevice, rustix::fs::Mode::empty(), 0).unwrap();
    }

    fn is_whiteout_at(path: &Path) -> bool {
        is_whiteout(&rustix::fs::lstat(path).unwrap())
    }

    #[test]
    fn upper_entries_replace_merge_and_delete() {
        let tmp = tempfile::tempdir().unwrap();
        let (lower, upper) = (tmp.path().join("lower"), tmp.path().join("upper"));
        for d in [&lower, &upper] {
            fs::create_dir_all(d.join("root/tmp")).unwrap();
            fs::create_dir_all(d.join("usr")).unwrap();
        }
        fs::write(lower.join("root/tmp/keep"), "lower").unwrap();
        fs::write(lower.join("root/tmp/change"), "old").unwrap();
        fs::write(lower.join("root/tmp/gone"), "x").unwrap();
        fs::create_dir_all(lower.join("root/opaque/inner")).unwrap();
        whiteout(&lower.join("root/was-deleted"));
        fs::write(upper.join("root/tmp/change"), "new").unwrap();
        whiteout(&upper.join("root/tmp/gone"));
        fs::create_dir(upper.join("root/opaque")).unwrap();
        set_xattr(&upper.join("root/opaque"), OPAQUE_XATTR, b"y").unwrap();
        fs::write(upper.join("root/opaque/only"), "u").unwrap();
        fs::create_dir(upper.join("root/was-deleted")).unwrap();
        fs::write(upper.join("usr/added"), "u").unwrap();
        fs::set_permissions(upper.join("root/tmp"), std::os::unix::fs::PermissionsExt::from_mode(0o1777)).unwrap();

        apply_layer(&upper, &lower).unwrap();

        assert_eq!(fs::read_to_string(lower.join("root/tmp/keep")).unwrap(), "lower");
        assert_eq!(fs::read_to_string(lower.join("root/tmp/change")).unwrap(), "new");
        assert!(is_whiteout_at(&lower.join("root/tmp/gone")));
        assert!(!lower.join("root/opaque/inner").exists());
        assert!(
            lower.join("root/opaque/only").exists()
                && get_xattr(&lower.join("root/opaque"), OPAQUE_XATTR).unwrap().as_deref() == Some(b"y")
        );
        assert_eq!(
            get_xattr(&lower.join("root/was-deleted"), OPAQUE_XATTR).unwrap().as_deref(),
            Some(&b"y"[..]),
            "a directory over a whiteout is opaque"
        );
        assert!(lower.join("usr/added").exists());
        let mode =
            std::os::unix::fs::PermissionsExt::mode(&fs::metadata(lower.join("root/tmp")).unwrap().permissions());
        assert_eq!(mode & 0o7777, 0o1777, "a merged directory takes the upper one's metadata");
    }

    #[test]
    fn merges_trees_deeper_than_any_path() {
        const LEVELS: usize = 5000;
        let tmp = tempfile::tempdir().unwrap();
        let (lower, upper) = (tmp.path().join("lower"), tmp.path().join("upper"));
        fs::create_dir_all(lower.join("usr")).unwrap();
        fs::create_dir_all(upper.join("usr")).unwrap();
        make_deep(&lower.join("root"), LEVELS, 1);
        make_deep(&upper.join("root"), LEVELS, 7);
        apply_layer(&upper, &lower).unwrap();
        let (deepest, _) = walk_down(&lower.join("root"), LEVELS);
        assert_eq!(lstat_at(deepest.as_fd(), c"leaf").unwrap().st_size, 7);
        drop(deepest);
        tree::remove_tree(&lower).unwrap();
        tree::remove_tree(&upper).unwrap();
    }
}
