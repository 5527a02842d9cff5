//! The files API acts with the credentials of the user it names, as a process of that user would:
//! the kernel's permission checks apply, and a symlink the sandbox planted cannot lead a read or a
//! write anywhere that user may not go. envd (root in the sandbox) takes the user's file-system
//! ids and groups on the calling thread for the length of one blocking call, then its own back.
//!
//! Linux keeps credentials per thread; glibc's `setgroups` changes them on every thread of the
//! process, so the calls here are the raw per-thread system calls.

use super::users::User;
use std::io;

/// Runs `f` on this thread as `user` for file access (fsuid, fsgid, supplementary groups); `Err`
/// only when the thread could not take them. `f` must not await: another task would run with
/// these credentials. For root, or when envd is not root (its tests, run by a user), `f` just runs.
pub fn as_user<R>(user: &User, f: impl FnOnce() -> R) -> io::Result<R> {
    // SAFETY: geteuid has no preconditions.
    if user.uid == 0 || unsafe { libc::geteuid() } != 0 {
        return Ok(f());
    }
    let _back = Switched::to(user)?;
    Ok(f())
}

/// The thread's credentials while switched; root's come back on drop, also on a panic.
struct Switched {
    groups: Vec<libc::gid_t>,
}

impl Switched {
    fn to(user: &User) -> io::Result<Self> {
        let groups = thread_groups()?;
        let switched = Switched { groups };
        set_groups(&user.groups)?;
        // setfsuid/setfsgid report the previous id, not an error: read the new one back.
        // SAFETY: setfsgid(2)/setfsuid(2) take an id and change only this thread's credentials.
        unsafe {
            libc::syscall(libc::SYS_setfsgid, user.gid);
            libc::syscall(libc::SYS_setfsuid, user.uid);
        }
        if fs_ids() != (user.uid, user.gid) {
            // `switched` restores what was changed as it goes.
            return Err(io::Error::other(format!("cannot act as {} (uid {}): setfsuid refused", user.name, user.uid)));
        }
        Ok(switched)
    }
}

impl Drop for Switched {
    fn drop(&mut self) {
        // SAFETY: as above; root's ids (0) are the ones envd runs with.
        unsafe {
            libc::syscall(libc::SYS_setfsuid, 0);
            libc::syscall(libc::SYS_setfsgid, 0);
        }
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
    // SAFETY: as above, with -1: no change.
    unsafe { (libc::syscall(libc::SYS_setfsuid, u32::MAX) as u32, libc::syscall(libc::SYS_setfsgid, u32::MAX) as u32) }
}

fn thread_groups() -> io::Result<Vec<libc::gid_t>> {
    // SAFETY: getgroups(2) with size 0 only counts.
    let n = unsafe { libc::syscall(libc::SYS_getgroups, 0, std::ptr::null_mut::<libc::gid_t>()) };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    let mut groups = vec![0 as libc::gid_t; n as usize];
    // SAFETY: the buffer holds `n` gids, as passed.
    let n = unsafe { libc::syscall(libc::SYS_getgroups, n, groups.as_mut_ptr()) };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    groups.truncate(n as usize);
    Ok(groups)
}

fn set_groups(groups: &[u32]) -> io::Result<()> {
    // SAFETY: setgroups(2), the raw per-thread call, with a buffer of `len` gids.
    let r = unsafe { libc::syscall(libc::SYS_setgroups, groups.len(), groups.as_ptr()) };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
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
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
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
