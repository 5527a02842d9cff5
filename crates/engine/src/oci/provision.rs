//! Makes an unpacked image a root sandboxes can start on, as the cloud's provisioning does for
//! a custom image: the user `user` with a home and passwordless sudo (the user is made if the
//! image has none of that name), the files the engine binds over per sandbox, the directories
//! the guest mounts on. And checks what envd needs from the image: it runs from inside the
//! sandbox, so on the image's C library (glibc, new enough), and runs commands with bash.

use super::confined;
use std::fs;
use std::io;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::Path;

/// The newest glibc symbol version the `sandbank` binary (envd in every sandbox) uses, as
/// built on Debian 12: `objdump -T native/sandbank | grep -o 'GLIBC_[0-9.]*' | sort -Vu`.
const GLIBC_NEEDED: &str = "GLIBC_2.34";

/// What a sandbox's processes are run by, and whose home is `/home/user`.
const USER: &str = "user";

/// Where glibc's loader is, and where libraries are looked for, in an image of this machine's
/// architecture.
#[cfg(target_arch = "x86_64")]
const LOADER: &str = "lib64/ld-linux-x86-64.so.2";
#[cfg(target_arch = "x86_64")]
const LIB_DIRS: &[&str] = &["usr/lib/x86_64-linux-gnu", "lib/x86_64-linux-gnu", "usr/lib64", "lib64"];
#[cfg(target_arch = "aarch64")]
const LOADER: &str = "lib/ld-linux-aarch64.so.1";
#[cfg(target_arch = "aarch64")]
const LIB_DIRS: &[&str] = &["usr/lib/aarch64-linux-gnu", "lib/aarch64-linux-gnu", "usr/lib64", "lib64"];

/// The libraries envd loads besides libc (`ldd native/sandbank`).
const ENVD_LIBS: &[&str] = &["libm.so.6", "libgcc_s.so.1"];

/// Checks that sandboxes can run on the image at `root` and sets it up for them; `Err` says
/// what the image lacks.
pub fn provision(root: &Path) -> Result<(), String> {
    check(root)?;
    setup(root).map_err(|e| format!("setting the image up: {e}"))
}

fn check(root: &Path) -> Result<(), String> {
    let found = |rel: &str| confined::resolve(root, Path::new(rel)).is_ok_and(|p| p.is_file());
    if !found(LOADER) {
        return Err(format!(
            "the image has no glibc (/{LOADER}): sandboxes run envd on the image's C library, so images \
             based on musl (Alpine) or without a libc (scratch, distroless/static) are not supported"
        ));
    }
    fn in_lib_dirs(name: &str) -> impl Iterator<Item = String> + '_ {
        LIB_DIRS.iter().map(move |dir| format!("{dir}/{name}"))
    }
    let libc = in_lib_dirs("libc.so.6").find_map(|rel| confined::read(root, &rel).ok().flatten());
    let new_enough = libc.is_some_and(|bytes| bytes.windows(GLIBC_NEEDED.len()).any(|w| w == GLIBC_NEEDED.as_bytes()));
    if !new_enough {
        return Err(format!(
            "the image's glibc is older than {} (envd needs it: Debian 12, Ubuntu 22.04 and newer have it)",
            GLIBC_NEEDED.replace('_', " ")
        ));
    }
    if let Some(missing) = ENVD_LIBS.iter().find(|lib| !in_lib_dirs(lib).any(|rel| found(&rel))) {
        return Err(format!("the image has no {missing} (envd needs it; Debian's libgcc-s1 and libc6 have them)"));
    }
    if !found("bin/bash") {
        return Err("the image has no /bin/bash: commands run through bash, as in the cloud".into());
    }
    if !fs::symlink_metadata(root.join("usr")).is_ok_and(|m| m.is_dir()) {
        return Err("the image's /usr is not a directory".into());
    }
    Ok(())
}

fn setup(root: &Path) -> io::Result<()> {
    for (dir, mode) in
        [("proc", 0o555), ("sys", 0o555), ("dev", 0o755), ("run", 0o755), ("home", 0o755), ("root", 0o700)]
    {
        ensure_dir(root, dir, mode)?;
    }
    let tmp = confined::make_dirs(root, Path::new("tmp"))?;
    fs::set_permissions(tmp, fs::Permissions::from_mode(0o1777))?;
    // Bound over per sandbox: they must be files of the image, not links out of it.
    confined::write(root, "etc/hostname", b"sandbox\n", 0o644)?;
    confined::write(root, "etc/hosts", b"127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n", 0o644)?;
    confined::write(root, "etc/resolv.conf", b"", 0o644)?;
    let (uid, gid) = ensure_user(root)?;
    let home = confined::make_dirs(root, Path::new("home/user"))?;
    nix::unistd::chown(&home, Some(uid.into()), Some(gid.into()))?;
    confined::make_dirs(root, Path::new("etc/sudoers.d"))?;
    confined::write(root, "etc/sudoers.d/user", b"user ALL=(ALL:ALL) NOPASSWD: ALL\n", 0o440)
}

fn ensure_dir(root: &Path, rel: &str, mode: u32) -> io::Result<()> {
    let path = confined::resolve_parent(root, Path::new(rel))?;
    if fs::symlink_metadata(&path).is_err() {
        fs::DirBuilder::new().mode(mode).create(&path)?;
    }
    Ok(())
}

/// The uid and gid of `user`, added to the image's passwd, group and shadow files if it has no
/// such user: uid 1000 where that is free (the cloud's), else the next free one.
fn ensure_user(root: &Path) -> io::Result<(u32, u32)> {
    let text = |rel: &str| -> io::Result<String> {
        Ok(String::from_utf8_lossy(&confined::read(root, rel)?.unwrap_or_default()).into_owned())
    };
    let passwd = text("etc/passwd")?;
    if let Some(ids) = passwd.lines().find_map(|l| {
        let f: Vec<&str> = l.split(':').collect();
        (f.len() >= 4 && f[0] == USER).then(|| Some((f[2].parse().ok()?, f[3].parse().ok()?))).flatten()
    }) {
        return Ok(ids);
    }
    let group = text("etc/group")?;
    let taken = |file: &str, id: u32| file.lines().any(|l| l.split(':').nth(2) == Some(&id.to_string()));
    let uid = (1000..60000).find(|&id| !taken(&passwd, id)).unwrap_or(60000);
    let gid = match group.lines().find(|l| l.split(':').next() == Some(USER)) {
        Some(line) => line.split(':').nth(2).and_then(|g| g.parse().ok()).unwrap_or(uid),
        None => {
            let gid = (uid..60000).find(|&id| !taken(&group, id)).unwrap_or(60000);
            confined::write(root, "etc/group", appended(&group, &format!("{USER}:x:{gid}:")).as_bytes(), 0o644)?;
            gid
        }
    };
    // bash is there: `check` made sure.
    let line = format!("{USER}:x:{uid}:{gid}::/home/{USER}:/bin/bash");
    confined::write(root, "etc/passwd", appended(&passwd, &line).as_bytes(), 0o644)?;
    // A locked password with no ageing: sudo needs none, and an expired one would stop it.
    if let Some(shadow) = confined::read(root, "etc/shadow")? {
        let shadow = String::from_utf8_lossy(&shadow);
        confined::write(root, "etc/shadow", appended(&shadow, &format!("{USER}:!::0:99999:7:::")).as_bytes(), 0o640)?;
    }
    Ok((uid, gid))
}

fn appended(file: &str, line: &str) -> String {
    let mut out = file.to_string();
    if !out.is_empty() && !out.ends_with('\n') {
        out.push('\n');
    }
    out.push_str(line);
    out.push('\n');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_user_is_added_with_the_first_free_id() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path();
        fs::create_dir_all(root.join("etc")).unwrap();
        fs::write(root.join("etc/passwd"), "root:x:0:0:root:/root:/bin/bash\nnode:x:1000:1000::/home/node:/bin/sh")
            .unwrap();
        fs::write(root.join("etc/group"), "root:x:0:\nnode:x:1000:\n").unwrap();
        fs::write(root.join("etc/shadow"), "root:*:1::::::\n").unwrap();
        assert_eq!(ensure_user(root).unwrap(), (1001, 1001));
        let passwd = fs::read_to_string(root.join("etc/passwd")).unwrap();
        assert!(passwd.ends_with("/bin/sh\nuser:x:1001:1001::/home/user:/bin/bash\n"), "{passwd}");
        assert!(fs::read_to_string(root.join("etc/group")).unwrap().ends_with("user:x:1001:\n"));
        assert!(fs::read_to_string(root.join("etc/shadow")).unwrap().ends_with("user:!::0:99999:7:::\n"));
        assert_eq!(ensure_user(root).unwrap(), (1001, 1001), "found the second time");
    }

    #[test]
    fn an_image_without_glibc_is_refused_by_name() {
        let tmp = tempfile::tempdir().unwrap();
        fs::create_dir_all(tmp.path().join("usr/bin")).unwrap();
        let err = check(tmp.path()).unwrap_err();
        assert!(err.contains("no glibc") && err.contains("Alpine"), "{err}");
    }
}
