//! File-system helpers shared by the filesystem service and `/files`: path checks, `EntryInfo`,
//! creating directories owned by a user, io-error classification.

use super::users::{Names, User};
use sandbank_protocol::connect::{Code, ConnectError};
use sandbank_protocol::filesystem::{EntryInfo, FileType};
use sandbank_protocol::json::Timestamp;
use std::io;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};

/// A request path as envd resolves it for the user whose home is `home`: `~` and `~/…` are in
/// the home, and so is a relative path. Returned absolute and normalized (no `.`, `..` or
/// trailing slash).
pub fn resolve(path: &str, home: &Path) -> Result<PathBuf, String> {
    if path.is_empty() {
        return Err("path is required".to_string());
    }
    // No file name holds a NUL; the OS call would fail as an internal error instead.
    if path.contains('\0') {
        return Err(format!("path {path:?} contains a NUL byte"));
    }
    let joined = match path.strip_prefix('~') {
        Some(rest) if rest.is_empty() || rest.starts_with('/') => home.join(rest.trim_start_matches('/')),
        Some(_) => return Err(format!("path {path:?}: cannot expand another user's home directory")),
        None => home.join(path), // an absolute `path` replaces `home`
    };
    let mut out = PathBuf::from("/");
    for c in joined.components() {
        match c {
            Component::RootDir | Component::CurDir => {}
            Component::Normal(n) => out.push(n),
            Component::ParentDir => {
                out.pop();
            }
            Component::Prefix(_) => return Err(format!("path {path:?} is invalid")),
        }
    }
    Ok(out)
}

/// `ls -l` style permissions: `drwxr-xr-x`, `-rw-r--r--`, `lrwxrwxrwx`.
pub fn permissions_string(mode: u32) -> String {
    let kind = match mode & libc::S_IFMT {
        libc::S_IFDIR => 'd',
        libc::S_IFLNK => 'l',
        libc::S_IFIFO => 'p',
        libc::S_IFSOCK => 's',
        libc::S_IFCHR => 'c',
        libc::S_IFBLK => 'b',
        _ => '-',
    };
    let mut s = String::with_capacity(10);
    s.push(kind);
    let bits = [
        (0o400, 'r'),
        (0o200, 'w'),
        (0o100, 'x'),
        (0o040, 'r'),
        (0o020, 'w'),
        (0o010, 'x'),
        (0o004, 'r'),
        (0o002, 'w'),
        (0o001, 'x'),
    ];
    for (i, (bit, ch)) in bits.iter().enumerate() {
        let set = mode & bit != 0;
        let c = match i {
            2 if mode & 0o4000 != 0 => {
                if set {
                    's'
                } else {
                    'S'
                }
            }
            5 if mode & 0o2000 != 0 => {
                if set {
                    's'
                } else {
                    'S'
                }
            }
            8 if mode & 0o1000 != 0 => {
                if set {
                    't'
                } else {
                    'T'
                }
            }
            _ if set => *ch,
            _ => '-',
        };
        s.push(c);
    }
    s
}

/// The `EntryInfo` of `path`; a symlink is followed for the type, size, mode and metadata, and its
/// target reported in `symlinkTarget`.
pub fn entry_info(path: &Path, names: &Names) -> io::Result<EntryInfo> {
    let lmeta = std::fs::symlink_metadata(path)?;
    let mut symlink_target = None;
    let meta = if lmeta.file_type().is_symlink() {
        let target = std::fs::read_link(path)?;
        let abs = if target.is_absolute() { target } else { path.parent().unwrap_or(Path::new("/")).join(target) };
        symlink_target = Some(abs.to_string_lossy().into_owned());
        std::fs::metadata(path).unwrap_or_else(|_| lmeta.clone())
    } else {
        lmeta.clone()
    };
    let file_type = if meta.is_dir() {
        FileType::Directory
    } else if meta.is_file() {
        FileType::File
    } else {
        FileType::Unspecified
    };
    // envd reports the permission bits only (Go's `FileMode.Perm()`), a symlink's target's.
    let mode = meta.permissions().mode() & 0o777;
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "/".to_string());
    Ok(EntryInfo {
        name,
        r#type: file_type as i32,
        path: path.to_string_lossy().into_owned(),
        size: entry_size(&meta),
        mode,
        permissions: permissions_string(meta.mode()),
        owner: names.user(lmeta.uid()),
        group: names.group(lmeta.gid()),
        modified_time: meta.modified().ok().map(Timestamp::from_system_time),
        symlink_target,
        // Best effort, as envd: the entry is still right without it.
        metadata: super::metadata::read(path).unwrap_or_default(),
    })
}

/// The size envd reports: a file's length; a directory's size as the filesystem says, but at
/// least one block. The cloud's sandboxes are on ext4, where a directory takes a block (4096)
/// from the start; on btrfs (sandbank's layer store) an empty directory's size is 0, and code
/// written against the cloud (E2B's own tests) expects more.
fn entry_size(meta: &std::fs::Metadata) -> i64 {
    let size = meta.len();
    let size = if meta.is_dir() { size.max(meta.blksize()) } else { size };
    size as i64
}

/// Gives `path` to `user` when envd runs as root (otherwise it already owns what it creates).
pub fn chown_to(path: &Path, user: &User) -> io::Result<()> {
    if !rustix::process::geteuid().is_root() {
        return Ok(());
    }
    std::os::unix::fs::lchown(path, Some(user.uid), Some(user.gid))
}

/// `mkdir -p`, giving every directory it creates to `user`. Returns whether `dir` was created.
pub fn create_dirs(dir: &Path, user: &User) -> io::Result<bool> {
    match std::fs::metadata(dir) {
        Ok(m) if m.is_dir() => return Ok(false),
        // Something else is there: the caller's error, as a path through a file is.
        Ok(_) => return Err(io::Error::from_raw_os_error(libc::ENOTDIR)),
        Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e), // a symlink loop, no access, …
        Err(_) => {}
    }
    if let Some(parent) = dir.parent() {
        create_dirs(parent, user)?;
    }
    match std::fs::create_dir(dir) {
        Ok(()) => {
            chown_to(dir, user)?;
            Ok(true)
        }
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists && dir.is_dir() => Ok(false),
        Err(e) => Err(e),
    }
}

/// Opens `path` for the files API like `open(2)` with `flags` (and `O_CLOEXEC`), but refuses
/// with ELOOP to pass through a magic link (`/proc/*/fd/*`, `/proc/*/exe`, `/proc/*/map_files/*`,
/// also when a symlink leads there): those name what PID 1 holds from the host, not a path in
/// the sandbox. Ordinary symlinks are followed, inside the sandbox's root.
pub fn open_file(path: &Path, flags: libc::c_int, mode: u32) -> io::Result<std::fs::File> {
    use rustix::fs::{Mode, OFlags, ResolveFlags};
    let flags = OFlags::from_bits_retain((flags | libc::O_CLOEXEC) as u32);
    let mode = if flags.contains(OFlags::CREATE) { Mode::from_raw_mode(mode) } else { Mode::empty() };
    let fd = match rustix::fs::openat2(rustix::fs::CWD, path, flags, mode, ResolveFlags::NO_MAGICLINKS) {
        // Before Linux 5.6: PID 1 has no capability that makes magic links dangerous.
        Err(rustix::io::Errno::NOSYS) => rustix::fs::open(path, flags, mode)?,
        r => r?,
    };
    Ok(fd.into())
}

pub fn is_no_space(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::ENOSPC) | Some(libc::EDQUOT))
}

/// The Connect error of a failed file-system operation: `"<op> \"<path>\": <error>"`.
pub fn rpc_error(op: &str, path: &Path, e: &io::Error) -> ConnectError {
    let code = match e.kind() {
        io::ErrorKind::NotFound => Code::NotFound,
        io::ErrorKind::PermissionDenied | io::ErrorKind::ReadOnlyFilesystem => Code::PermissionDenied,
        io::ErrorKind::AlreadyExists => Code::AlreadyExists,
        _ if is_no_space(e) => Code::ResourceExhausted,
        _ => match e.raw_os_error() {
            Some(libc::ENOTDIR)
            | Some(libc::EISDIR)
            | Some(libc::EINVAL)
            | Some(libc::ENAMETOOLONG)
            | Some(libc::ENOTEMPTY)
            | Some(libc::ELOOP) => Code::InvalidArgument,
            _ => Code::Internal,
        },
    };
    ConnectError::new(code, format!("{op} {:?}: {e}", path.display().to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_resolve_against_the_home_and_are_normalized() {
        let home = Path::new("/home/user");
        let absolute = |p: &str| resolve(p, home);
        assert_eq!(absolute("/a/./b/../c/").unwrap(), PathBuf::from("/a/c"));
        assert_eq!(absolute("/../..").unwrap(), PathBuf::from("/"));
        assert_eq!(absolute("tmp/x").unwrap(), PathBuf::from("/home/user/tmp/x"));
        assert_eq!(absolute("./x/../y").unwrap(), PathBuf::from("/home/user/y"));
        assert_eq!(absolute("../../etc").unwrap(), PathBuf::from("/etc"));
        assert_eq!(absolute("~").unwrap(), PathBuf::from("/home/user"));
        assert_eq!(absolute("~/a").unwrap(), PathBuf::from("/home/user/a"));
        assert_eq!(resolve("a", Path::new("/root")).unwrap(), PathBuf::from("/root/a"));
        assert!(absolute("~root/a").unwrap_err().contains("another user's home"));
        assert!(absolute("").is_err());
        // Regression (found by tests/malformed.rs): a NUL was a 500 from every file RPC and /files.
        assert_eq!(absolute("/tmp/a\0b").unwrap_err(), "path \"/tmp/a\\0b\" contains a NUL byte");
    }

    #[test]
    fn permissions_look_like_ls() {
        assert_eq!(permissions_string(libc::S_IFDIR | 0o755), "drwxr-xr-x");
        assert_eq!(permissions_string(libc::S_IFREG | 0o644), "-rw-r--r--");
        assert_eq!(permissions_string(libc::S_IFLNK | 0o777), "lrwxrwxrwx");
        assert_eq!(permissions_string(libc::S_IFDIR | 0o1777), "drwxrwxrwt");
        assert_eq!(permissions_string(libc::S_IFREG | 0o4755), "-rwsr-xr-x");
    }

    #[test]
    fn open_file_refuses_magic_links_and_follows_symlinks() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("f");
        std::fs::write(&file, b"x").unwrap();
        std::os::unix::fs::symlink(&file, dir.path().join("l")).unwrap();
        assert!(open_file(&dir.path().join("l"), libc::O_RDONLY, 0).is_ok());
        let held = std::fs::File::open(&file).unwrap();
        use std::os::fd::AsRawFd;
        let magic = PathBuf::from(format!("/proc/self/fd/{}", held.as_raw_fd()));
        assert_eq!(open_file(&magic, libc::O_RDONLY, 0).unwrap_err().raw_os_error(), Some(libc::ELOOP));
        std::os::unix::fs::symlink(&magic, dir.path().join("to-magic")).unwrap();
        let e = open_file(&dir.path().join("to-magic"), libc::O_WRONLY | libc::O_TRUNC, 0).unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::ELOOP));
        assert_eq!(std::fs::read(&file).unwrap(), b"x", "not truncated");
        let new = dir.path().join("new");
        drop(open_file(&new, libc::O_WRONLY | libc::O_CREAT | libc::O_TRUNC, 0o640).unwrap());
        assert_eq!(std::fs::metadata(&new).unwrap().permissions().mode() & 0o777, 0o640 & !0o022 & 0o777);
    }

    #[test]
    fn entry_info_follows_symlinks() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("f.txt");
        std::fs::write(&file, b"hello").unwrap();
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o640)).unwrap();
        let link = dir.path().join("l");
        std::os::unix::fs::symlink("f.txt", &link).unwrap();
        let names = Names::load();
        let e = entry_info(&link, &names).unwrap();
        assert_eq!(e.r#type, FileType::File as i32);
        assert_eq!(e.size, 5);
        assert_eq!(e.name, "l");
        assert_eq!(e.mode, 0o640);
        assert_eq!(e.permissions, "-rw-r-----");
        assert_eq!(e.symlink_target.as_deref(), Some(file.to_str().unwrap()));
        let d = entry_info(dir.path(), &names).unwrap();
        assert_eq!(d.r#type, FileType::Directory as i32);
        assert_eq!(d.mode, std::fs::metadata(dir.path()).unwrap().permissions().mode() & 0o777, "permission bits only");
        assert!(d.permissions.starts_with('d'));
        // An empty directory takes at least a block, as on ext4, whatever the filesystem.
        let empty = dir.path().join("empty");
        std::fs::create_dir(&empty).unwrap();
        assert!(entry_info(&empty, &names).unwrap().size >= 4096);
    }
}
