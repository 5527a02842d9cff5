//! What opening a data directory takes first: its lock (one server per data directory), and the
//! removal of what a crashed server left behind (sandbox directories, quarantined when they
//! cannot be removed).

use super::*;
use crate::template::remove_all;
use nix::fcntl::FlockArg;
use std::io::{Read, Write};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

/// Removes a sandbox's directory.
pub(super) fn remove_sandbox_dir(layout: &Layout, id: &str) -> io::Result<()> {
    remove_all(layout.sandbox(id).path())
}

/// Removes every sandbox directory but those of paused sandboxes; one that cannot be removed is
/// quarantined. Fails only when the sandboxes directory cannot be read.
pub(super) fn remove_sandbox_dirs(layout: &Layout, paused: impl Fn(&str) -> bool) -> io::Result<()> {
    let entries = match fs::read_dir(layout.sandboxes()) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    for entry in entries {
        let entry = entry?;
        let name = entry.file_name();
        if !name.to_str().is_some_and(&paused) {
            remove_or_quarantine(layout, &entry.path());
        }
    }
    Ok(())
}

/// Removes what a previous server left at `path`; when that fails, moves it into the quarantine
/// directory (and says so), so that a tree the engine cannot remove never stops a start.
pub(super) fn remove_or_quarantine(layout: &Layout, path: &Path) {
    let Err(e) = remove_all(path) else { return };
    let stamp = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let name = path.file_name().unwrap_or_default().to_string_lossy();
    let to = layout.quarantine().join(format!("{name}.{stamp}"));
    let moved = fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(layout.quarantine())
        .and_then(|()| fs::rename(path, &to));
    match moved {
        Ok(()) => tracing::error!(
            "cannot remove {} ({e}): moved to {} instead; look, then remove it by hand",
            path.display(),
            to.display()
        ),
        Err(m) => {
            tracing::error!("cannot remove {} ({e}), nor move it to {} ({m}): left there", path.display(), to.display())
        }
    }
}

/// Says what is in quarantine, at each start, until someone removes it.
pub(super) fn report_quarantine(layout: &Layout) {
    let Ok(entries) = fs::read_dir(layout.quarantine()) else { return };
    let names: Vec<String> = entries.flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect();
    if !names.is_empty() {
        tracing::warn!(
            "{} holds {} leftover(s) a start could not remove: {}",
            layout.quarantine().display(),
            names.len(),
            names.join(", ")
        );
    }
}

/// One server per data directory: an exclusive `flock` on `<data>/lock`, which holds the pid
/// of its owner for the error message of the next one.
pub(super) fn take_lock(layout: &Layout) -> Result<Flock<fs::File>, EngineError> {
    let path = layout.lock_file();
    let file = fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .map_err(io_ctx(format!("open {}", path.display())))?;
    // A server that was just killed may still have a child between fork and exec, holding a copy
    // of the lock's descriptor for a moment: while the owner named in the file is dead, wait.
    let deadline = Instant::now() + Duration::from_secs(3);
    let mut file = file;
    let mut lock = loop {
        match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
            Ok(lock) => break lock,
            Err((mut back, _)) => {
                let mut pid = String::new();
                let _ = back.read_to_string(&mut pid);
                let _ = std::io::Seek::rewind(&mut back);
                let owner_alive = pid
                    .trim()
                    .parse::<i32>()
                    .is_ok_and(|p| nix::sys::signal::kill(nix::unistd::Pid::from_raw(p), None).is_ok());
                if owner_alive || Instant::now() > deadline {
                    return Err(EngineError::Locked { path: layout.root().to_path_buf(), pid: pid.trim().to_string() });
                }
                std::thread::sleep(Duration::from_millis(20));
                file = back;
            }
        }
    };
    lock.set_len(0).map_err(io_ctx("truncate the lock file".into()))?;
    write!(lock, "{}", std::process::id()).map_err(io_ctx("write the lock file".into()))?;
    Ok(lock)
}
