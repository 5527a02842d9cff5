//! The files API acts with the credentials of the user it names, as a process of that user would:
//! the kernel's permission checks apply, and a symlink the sandbox planted cannot lead a read or a
//! write anywhere that user may not go. envd (root in the sandbox) takes the user's file-system
//! ids and groups on the calling thread for the length of one blocking call, then its own back.
//!
//! Linux keeps credentials per thread; glibc's `setgroups` changes them on every thread of the
//! process, so the calls here are the raw per-thread system calls.

use super::users::User;
use nix::unistd::{setfsgid, setfsuid, Gid, Uid};
use std::io;

/// Runs `f` on this thread as `user` for file access (fsuid, fsgid, supplementary groups); `Err`
/// only when the thread could not take them. `f` must not await: another task would run with
/// these credentials. For root, or when envd is not root (its tests, run by a user), `f` just runs.
pub fn as_user<R>(user: &User, f: impl FnOnce() -> R) -> io::Result<R> {
    if user.uid == 0 || !rustix::process::geteuid().is_root() {
        return Ok(f());
    }
    let _back = Switched::to(user)?;
    Ok(f())
}

/// The thread's credentials while switched; root's come back on drop, also on a panic.
struct Switched {
    groups: Vec<u32>,
}

impl Switched {
    fn to(user: &User) -> io::Result<Self> {
        let groups = thread_groups()?;
        let switched = Switched { groups };
        set_groups(&user.groups)?;
        // setfsuid/setfsgid report the previous id, not an error: read the new one back. (glibc's
        // change only this thread's, as the kernel's calls do.)
        setfsgid(Gid::from_raw(user.gid));
        setfsuid(Uid::from_raw(user.uid));
        if fs_ids() != (user.uid, user.gid) {
            // `switched` restores what was changed as it goes.
            return Err(io::Error::other(format!("cannot act as {} (uid {}): setfsuid refused", user.name, user.uid)));
        }
        Ok(switched)
    }
}

impl Drop for Switched {
    fn drop(&mut self) {
        // Root's ids (0) are the ones envd runs with.
        setfsuid(Uid::from_raw(0));
        setfsgid(Gid::from_raw(0));
        if set_groups(&self.groups).is_err() || fs_ids() != (0, 0) {
            // A thread left with a sandbox user's credentials would act as that user for whatever
            // runs on it next: better to stop here.
            eprintln!("sandbank envd: cannot restore root's credentials on a thread; exiting");
            std::process::abort();
        }
    }
}

/// The thread's (fsuid, fsgid): an invalid id (-1) changes nothing and returns the current one.
fn fs_ids() -> (u32, u32) {
    (setfsuid(Uid::from_raw(u32::MAX)).as_raw(), setfsgid(Gid::from_raw(u32::MAX)).as_raw())
}

/// This thread's supplementary groups (getgroups(2) reads the calling thread's).
fn thread_groups() -> io::Result<Vec<u32>> {
    Ok(rustix::process::getgroups()?.into_iter().map(|g| g.as_raw()).collect())
}

/// The raw per-thread setgroups(2).
fn set_groups(groups: &[u32]) -> io::Result<()> {
    let groups: Vec<rustix::process::Gid> = groups.iter().map(|g| rustix::process::Gid::from_raw(*g)).collect();
    Ok(rustix::thread::set_thread_groups(&groups)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn nobody() -> User {
        User {
            name: "nobody".into(),
            uid: 65534,
            gid: 65534,
            home: "/nonexistent".into(),
            shell: String::new(),
            groups: vec![65534],
        }
    }

    #[test]
    fn a_user_gets_its_own_rights_and_root_its_back() {
        if !rustix::process::geteuid().is_root() {
            eprintln!("skipped: needs root");
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        let secret = dir.path().join("secret");
        std::fs::write(&secret, b"root only").unwrap();
        std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o600)).unwrap();
        let read = as_user(&nobody(), || std::fs::read(&secret)).unwrap();
        assert_eq!(read.unwrap_err().kind(), io::ErrorKind::PermissionDenied);
        let created = as_user(&nobody(), || std::fs::write(dir.path().join("x"), b"x")).unwrap();
        assert_eq!(created.unwrap_err().kind(), io::ErrorKind::PermissionDenied, "a 0755 root directory");
        // Root again on this thread, and what a user creates is theirs.
        assert_eq!(std::fs::read(&secret).unwrap(), b"root only");
        assert_eq!(fs_ids(), (0, 0));
        let open = tempfile::tempdir().unwrap();
        std::fs::set_permissions(open.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
        as_user(&nobody(), || std::fs::write(open.path().join("mine"), b"m")).unwrap().unwrap();
        use std::os::unix::fs::MetadataExt;
        let meta = std::fs::metadata(open.path().join("mine")).unwrap();
        assert_eq!((meta.uid(), meta.gid()), (65534, 65534));
        // A panic inside still gives root's credentials back.
        let caught = std::panic::catch_unwind(|| as_user(&nobody(), || -> () { panic!("inside") }));
        assert!(caught.is_err());
        assert_eq!(fs_ids(), (0, 0));
        assert_eq!(std::fs::read(&secret).unwrap(), b"root only");
    }
}
