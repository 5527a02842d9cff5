//! Templates: the read-only layers a sandbox starts from.
//!
//! `base` is the host's own system: its `/usr` (with the merged-usr links `/bin`, `/lib`, …)
//! as a read-only lower layer, under a small root layer built here: a sanitised copy of `/etc`
//! (no file that is not world-readable, no password hashes), the user `user` (uid 1000, home
//! `/home/user`), and empty `/root`, `/home`, `/tmp`, `/var`. Nothing else of the host — its
//! home directories, data, the server's own state — is in the sandbox.

use std::fs;
use std::io;
use std::os::unix::fs::{symlink, DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};

pub const BASE: &str = "base";
pub const USER: &str = "user";
pub const USER_UID: u32 = 1000;
pub const USER_HOME: &str = "/home/user";

/// The lower layers of a template, each one for `/` and one for `/usr`, topmost first.
#[derive(Clone, Debug)]
pub struct Template {
    pub name: String,
    pub root_lowers: Vec<PathBuf>,
    pub usr_lowers: Vec<PathBuf>,
}

/// Host top-level entries that are links into `/usr` on a merged-usr system.
const USR_LINKS: &[&str] = &["bin", "sbin", "lib", "lib32", "lib64", "libx32"];
/// Files of `/etc` that are replaced or must never be copied, whatever their mode.
const ETC_SKIP: &[&str] = &[
    "passwd",
    "passwd-",
    "group",
    "group-",
    "shadow",
    "shadow-",
    "gshadow",
    "gshadow-",
    "subuid",
    "subuid-",
    "subgid",
    "subgid-",
    ".pwd.lock",
    "hostname",
    "hosts",
    "resolv.conf",
    "machine-id",
    "mtab",
];

/// Builds the `base` template into `dir` (replacing what was there) and returns it.
pub fn build_base(dir: &Path) -> io::Result<Template> {
    let staging = dir.with_extension("staging");
    remove_all(&staging)?;
    let root = staging.join("root");
    mkdir(&root, 0o755)?;

    for name in USR_LINKS {
        let host = Path::new("/").join(name);
        if let Ok(target) = fs::read_link(&host) {
            symlink(target, root.join(name))?;
        } else if host.is_dir() {
            tracing::warn!("{} is a directory, not a link into /usr: it is not in sandboxes", host.display());
        }
    }
    for (name, mode) in [
        ("usr", 0o755),
        ("proc", 0o555),
        ("sys", 0o555),
        ("dev", 0o755),
        ("run", 0o755),
        ("tmp", 0o1777),
        ("root", 0o700),
        ("home", 0o755),
        ("opt", 0o755),
        ("mnt", 0o755),
        ("srv", 0o755),
        ("media", 0o755),
        ("var", 0o755),
        ("var/tmp", 0o1777),
        ("var/log", 0o755),
        ("var/cache", 0o755),
        ("var/lib", 0o755),
        ("var/spool", 0o755),
    ] {
        mkdir(&root.join(name), mode)?;
    }
    symlink("../run", root.join("var/run"))?;

    copy_public_tree(Path::new("/etc"), &root.join("etc"), true)?;
    write_accounts(&root.join("etc"))?;

    let home = root.join("home/user");
    mkdir(&home, 0o750)?;
    if Path::new("/etc/skel").is_dir() {
        copy_public_tree(Path::new("/etc/skel"), &home, false)?;
    }
    chown_tree(&home, USER_UID, USER_UID)?;

    remove_all(dir)?;
    fs::rename(&staging, dir)?;
    Ok(Template { name: BASE.into(), root_lowers: vec![dir.join("root")], usr_lowers: vec!["/usr".into()] })
}

/// Copies the world-readable part of a tree: a file or directory others cannot read is a
/// secret (shadow files, private keys) and stays out.
fn copy_public_tree(src: &Path, dst: &Path, is_etc_root: bool) -> io::Result<()> {
    let meta = fs::symlink_metadata(src)?;
    if !dst.exists() {
        mkdir(dst, meta.permissions().mode() & 0o7777)?;
    }
    for entry in fs::read_dir(src)? {
        let entry = entry?;
        let name = entry.file_name();
        if is_etc_root && name.to_str().is_some_and(|n| ETC_SKIP.contains(&n)) {
            continue;
        }
        let from = entry.path();
        let to = dst.join(&name);
        let meta = fs::symlink_metadata(&from)?;
        let ft = meta.file_type();
        if ft.is_symlink() {
            symlink(fs::read_link(&from)?, &to)?;
            continue;
        }
        if meta.permissions().mode() & 0o004 == 0 {
            continue;
        }
        if ft.is_dir() {
            copy_public_tree(&from, &to, false)?;
        } else if ft.is_file() {
            fs::copy(&from, &to)?;
        }
    }
    Ok(())
}

/// passwd/group/shadow with the host's system accounts (uid < 1000, and nobody) plus `user`.
fn write_accounts(etc: &Path) -> io::Result<()> {
    let keep = |line: &str| {
        let mut f = line.split(':');
        let name = f.next().unwrap_or("");
        let id: u32 = f.nth(1).and_then(|s| s.parse().ok()).unwrap_or(u32::MAX);
        !name.is_empty() && name != USER && (id < 1000 || id == 65534)
    };
    let host_passwd = fs::read_to_string("/etc/passwd").unwrap_or_else(|_| "root:x:0:0:root:/root:/bin/bash\n".into());
    let host_group = fs::read_to_string("/etc/group").unwrap_or_else(|_| "root:x:0:\n".into());
    let mut passwd: Vec<String> = host_passwd.lines().filter(|l| keep(l)).map(String::from).collect();
    passwd.push(format!("{USER}:x:{USER_UID}:{USER_UID}::{USER_HOME}:/bin/bash"));
    let mut group: Vec<String> = host_group.lines().filter(|l| keep(l)).map(String::from).collect();
    group.push(format!("{USER}:x:{USER_UID}:"));
    let shadow: Vec<String> =
        passwd.iter().filter_map(|l| l.split(':').next()).map(|n| format!("{n}:*:19000:0:99999:7:::")).collect();

    write(etc, "passwd", &passwd.join("\n"), 0o644)?;
    write(etc, "group", &group.join("\n"), 0o644)?;
    write(etc, "shadow", &shadow.join("\n"), 0o600)?;
    write(etc, "hostname", "sandbox", 0o644)?;
    write(etc, "hosts", "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n", 0o644)?;
    let resolv = fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
    write(etc, "resolv.conf", resolv.trim_end(), 0o644)?;
    symlink("../proc/self/mounts", etc.join("mtab"))?;
    Ok(())
}

fn write(dir: &Path, name: &str, text: &str, mode: u32) -> io::Result<()> {
    let path = dir.join(name);
    fs::write(&path, format!("{text}\n"))?;
    fs::set_permissions(&path, fs::Permissions::from_mode(mode))
}

fn mkdir(path: &Path, mode: u32) -> io::Result<()> {
    fs::DirBuilder::new().recursive(true).mode(mode).create(path)?;
    // The umask may have cut bits (the sticky /tmp in particular).
    fs::set_permissions(path, fs::Permissions::from_mode(mode))
}

fn chown_tree(path: &Path, uid: u32, gid: u32) -> io::Result<()> {
    std::os::unix::fs::lchown(path, Some(uid), Some(gid))?;
    if fs::symlink_metadata(path)?.is_dir() {
        for entry in fs::read_dir(path)? {
            chown_tree(&entry?.path(), uid, gid)?;
        }
    }
    Ok(())
}

/// `rm -rf`, quiet when the path does not exist: [`crate::tree::remove_tree`], which any depth
/// survives and no symlink leads astray.
pub fn remove_all(path: &Path) -> io::Result<()> {
    crate::tree::remove_tree(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base_template_has_the_user_and_no_secrets() {
        let tmp = tempfile::tempdir().unwrap();
        let t = build_base(&tmp.path().join("base")).unwrap();
        let root = &t.root_lowers[0];
        let passwd = fs::read_to_string(root.join("etc/passwd")).unwrap();
        assert!(passwd.contains("user:x:1000:1000::/home/user:/bin/bash"), "{passwd}");
        assert!(passwd.starts_with("root:x:0:0:"), "{passwd}");
        let shadow = fs::read_to_string(root.join("etc/shadow")).unwrap();
        assert!(shadow.lines().all(|l| l.split(':').nth(1) == Some("*")), "{shadow}");
        assert!(!root.join("etc/ssl/private").exists());
        assert!(!root.join("etc/gshadow").exists());
        assert_eq!(fs::read_link(root.join("bin")).ok(), fs::read_link("/bin").ok());
        let tmp_mode = fs::metadata(root.join("tmp")).unwrap().permissions().mode() & 0o7777;
        assert_eq!(tmp_mode, 0o1777);
        assert_eq!(t.usr_lowers, vec![PathBuf::from("/usr")]);
    }
}
