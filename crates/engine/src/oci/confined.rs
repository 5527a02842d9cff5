//! Paths inside an image's root, resolved as the image's own processes would see them: a
//! symlink is followed within the root (an absolute target starts at the image's `/`, `..`
//! stops at it), never out to the host. An image is untrusted input unpacked by host root: its
//! `/etc` may be a symlink to the host's.

use std::ffi::OsStr;
use std::fs;
use std::io;
use std::path::{Component, Path, PathBuf};

/// Symlinks followed in one resolution before it gives up (Linux's own limit).
const MAX_LINKS: usize = 40;

/// The host path of `rel` in the image at `root` (canonical), every symlink on the way followed
/// within the root, the last component too.
pub fn resolve(root: &Path, rel: &Path) -> io::Result<PathBuf> {
    walk(root, rel, true, false)
}

/// [`resolve`], every directory on the way that is not there made (`mkdir -p` within the root).
pub fn make_dirs(root: &Path, rel: &Path) -> io::Result<PathBuf> {
    walk(root, rel, true, true)
}

/// The host path of `rel` in the image at `root` with its parent resolved within the root and
/// its last component not followed: where a file is made or removed.
pub fn resolve_parent(root: &Path, rel: &Path) -> io::Result<PathBuf> {
    walk(root, rel, false, false)
}

fn walk(root: &Path, rel: &Path, follow_last: bool, make_missing: bool) -> io::Result<PathBuf> {
    // The components still to walk, last first, so that a symlink's target is pushed in front.
    let mut todo: Vec<PathBuf> = components(rel).into_iter().rev().collect();
    let mut at: Vec<PathBuf> = Vec::new();
    let mut links = 0;
    while let Some(name) = todo.pop() {
        if name.as_os_str() == ".." {
            at.pop();
            continue;
        }
        let host = root.join(at.iter().collect::<PathBuf>()).join(&name);
        let last = todo.is_empty();
        let meta = match fs::symlink_metadata(&host) {
            Ok(m) => Some(m),
            Err(e) if e.kind() == io::ErrorKind::NotFound => None,
            Err(e) => return Err(e),
        };
        if meta.as_ref().is_some_and(|m| m.file_type().is_symlink()) && (!last || follow_last) {
            links += 1;
            if links > MAX_LINKS {
                return Err(io::Error::other(format!("{}: too many levels of symbolic links", rel.display())));
            }
            let target = fs::read_link(&host)?;
            if target.is_absolute() {
                at.clear();
            }
            todo.extend(components(&target).into_iter().rev());
            continue;
        }
        match meta {
            None if make_missing => fs::create_dir(&host)?,
            None if !last => {
                return Err(io::Error::new(io::ErrorKind::NotFound, format!("{}: no such directory", host.display())))
            }
            Some(m) if make_missing && !m.is_dir() => {
                return Err(io::Error::new(
                    io::ErrorKind::NotADirectory,
                    format!("{}: not a directory", host.display()),
                ))
            }
            _ => {}
        }
        at.push(name);
    }
    Ok(root.join(at.iter().collect::<PathBuf>()))
}

/// `path`'s normal components (`.`, the root and prefixes dropped; `..` kept, for the walk).
fn components(path: &Path) -> Vec<PathBuf> {
    path.components()
        .filter_map(|c| match c {
            Component::Normal(n) => Some(PathBuf::from(n)),
            Component::ParentDir => Some(PathBuf::from("..")),
            _ => None,
        })
        .collect()
}

/// `rel` made plain: no `..`, no root, no `.` (`None` for a path that climbs out).
pub fn plain(rel: &Path) -> Option<PathBuf> {
    let mut out = PathBuf::new();
    for c in rel.components() {
        match c {
            Component::Normal(n) => out.push(n),
            Component::CurDir | Component::RootDir => {}
            Component::ParentDir | Component::Prefix(_) => return None,
        }
    }
    Some(out)
}

/// Writes `contents` to `rel` in the image as a new regular file with `mode` (what was there,
/// a symlink included, is replaced, not followed).
pub fn write(root: &Path, rel: &str, contents: &[u8], mode: u32) -> io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let path = resolve_parent(root, Path::new(rel))?;
    if let Ok(meta) = fs::symlink_metadata(&path) {
        match meta.is_dir() {
            true => crate::tree::remove_tree(&path)?,
            false => fs::remove_file(&path)?,
        }
    }
    fs::write(&path, contents)?;
    fs::set_permissions(&path, fs::Permissions::from_mode(mode))
}

/// Reads `rel` in the image; `Ok(None)` when it is not there.
pub fn read(root: &Path, rel: &str) -> io::Result<Option<Vec<u8>>> {
    match resolve(root, Path::new(rel)).and_then(fs::read) {
        Ok(bytes) => Ok(Some(bytes)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// Whether `name` is one of the OCI whiteout names (`.wh.<name>`, `.wh..wh..opq`).
pub fn is_whiteout(name: &OsStr) -> bool {
    name.as_encoded_bytes().starts_with(b".wh.")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    #[test]
    fn symlinks_are_followed_within_the_root() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().canonicalize().unwrap();
        fs::create_dir_all(root.join("usr/lib")).unwrap();
        symlink("/usr/lib", root.join("lib")).unwrap();
        symlink("/", root.join("up")).unwrap();
        symlink("../../../../etc", root.join("usr/escape")).unwrap();
        assert_eq!(resolve(&root, Path::new("/lib/x")).unwrap(), root.join("usr/lib/x"));
        assert_eq!(resolve(&root, Path::new("up/up/usr")).unwrap(), root.join("usr"));
        assert_eq!(resolve(&root, Path::new("usr/escape/passwd")).unwrap_err().kind(), io::ErrorKind::NotFound);
        assert_eq!(resolve_parent(&root, Path::new("lib")).unwrap(), root.join("lib"));
        fs::create_dir(root.join("etc")).unwrap();
        assert_eq!(resolve(&root, Path::new("usr/escape/passwd")).unwrap(), root.join("etc/passwd"));
        symlink("loop", root.join("loop")).unwrap();
        assert!(resolve(&root, Path::new("loop")).is_err());
    }

    #[test]
    fn a_write_replaces_a_symlink_instead_of_following_it() {
        let tmp = tempfile::tempdir().unwrap();
        let outside = tmp.path().join("outside");
        let root = tmp.path().join("root");
        fs::create_dir_all(root.join("etc")).unwrap();
        fs::write(&outside, "host").unwrap();
        symlink(&outside, root.join("etc/hosts")).unwrap();
        write(&root, "etc/hosts", b"image", 0o644).unwrap();
        assert_eq!(fs::read_to_string(&outside).unwrap(), "host");
        assert_eq!(fs::read_to_string(root.join("etc/hosts")).unwrap(), "image");
        assert_eq!(read(&root, "etc/none").unwrap(), None);
    }

    #[test]
    fn plain_paths_do_not_climb() {
        assert_eq!(plain(Path::new("./etc/x")), Some(PathBuf::from("etc/x")));
        assert_eq!(plain(Path::new("/etc/x")), Some(PathBuf::from("etc/x")));
        assert_eq!(plain(Path::new("etc/../../x")), None);
    }
}
