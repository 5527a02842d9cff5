//! The child reaper. As PID 1 of a PID namespace envd inherits every orphan, so on each
//! SIGCHLD it calls `waitpid(-1, WNOHANG)` until nothing is left, hands the statuses of the
//! children it spawned to their waiters and discards the rest. Children are spawned under the
//! same lock the reaper holds while reaping, so a child that exits at once is never reaped
//! before its waiter exists. Outside PID 1 (tests), only registered children are waited for,
//! so other children of the process are left alone.

use std::collections::HashMap;
use std::os::unix::process::ExitStatusExt;
use std::process::{Child, Command, ExitStatus};
use std::sync::{Arc, Mutex};
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::oneshot;

pub struct Reaper {
    waiters: Mutex<HashMap<i32, oneshot::Sender<ExitStatus>>>,
    reap_all: bool,
}

impl Reaper {
    /// Installs the SIGCHLD handler and starts reaping. Must be called inside a runtime.
    pub fn start() -> std::io::Result<Arc<Self>> {
        let mut sigchld = signal(SignalKind::child())?;
        let reaper = Arc::new(Self { waiters: Mutex::new(HashMap::new()), reap_all: std::process::id() == 1 });
        let weak = Arc::downgrade(&reaper);
        tokio::spawn(async move {
            loop {
                // A periodic sweep as well, in case a signal was coalesced across a lock hold.
                let _ = tokio::time::timeout(std::time::Duration::from_secs(1), sigchld.recv()).await;
                match weak.upgrade() {
                    Some(r) => r.reap(),
                    None => return,
                }
            }
        });
        Ok(reaper)
    }

    /// Spawns `cmd` and registers its waiter atomically with respect to reaping.
    pub fn spawn(&self, cmd: &mut Command) -> std::io::Result<(Child, oneshot::Receiver<ExitStatus>)> {
        let mut waiters = self.waiters.lock().unwrap_or_else(|e| e.into_inner());
        let child = cmd.spawn()?;
        let (tx, rx) = oneshot::channel();
        waiters.insert(child.id() as i32, tx);
        Ok((child, rx))
    }

    fn reap(&self) {
        let mut waiters = self.waiters.lock().unwrap_or_else(|e| e.into_inner());
        if self.reap_all {
            while let Ok(Some((pid, status))) = crate::sys::wait_nohang(None) {
                if let Some(tx) = waiters.remove(&pid) {
                    let _ = tx.send(ExitStatus::from_raw(status));
                }
            }
        } else {
            let pids: Vec<i32> = waiters.keys().copied().collect();
            for pid in pids {
                match crate::sys::wait_nohang(Some(pid)) {
                    Ok(Some((_, status))) => {
                        if let Some(tx) = waiters.remove(&pid) {
                            let _ = tx.send(ExitStatus::from_raw(status));
                        }
                    }
                    Ok(None) => {}
                    // Not our child any more (ECHILD): nothing will ever come.
                    Err(_) => {
                        waiters.remove(&pid);
                    }
                }
            }
        }
    }
}

/// Go's `ProcessState.String()`: `exit status 3`, `signal: killed`.
pub fn status_text(status: ExitStatus) -> String {
    if let Some(code) = status.code() {
        return format!("exit status {code}");
    }
    match status.signal() {
        Some(sig) => {
            let core = if status.core_dumped() { " (core dumped)" } else { "" };
            format!("signal: {}{core}", signal_name(sig))
        }
        None => "unknown status".to_string(),
    }
}

/// Go's (syscall) signal descriptions.
fn signal_name(sig: i32) -> String {
    let s = match sig {
        libc::SIGHUP => "hangup",
        libc::SIGINT => "interrupt",
        libc::SIGQUIT => "quit",
        libc::SIGILL => "illegal instruction",
        libc::SIGTRAP => "trace/breakpoint trap",
        libc::SIGABRT => "aborted",
        libc::SIGBUS => "bus error",
        libc::SIGFPE => "floating point exception",
        libc::SIGKILL => "killed",
        libc::SIGUSR1 => "user defined signal 1",
        libc::SIGSEGV => "segmentation fault",
        libc::SIGUSR2 => "user defined signal 2",
        libc::SIGPIPE => "broken pipe",
        libc::SIGALRM => "alarm clock",
        libc::SIGTERM => "terminated",
        _ => return format!("signal {sig}"),
    };
    s.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_texts_match_go() {
        assert_eq!(status_text(ExitStatus::from_raw(3 << 8)), "exit status 3");
        assert_eq!(status_text(ExitStatus::from_raw(0)), "exit status 0");
        assert_eq!(status_text(ExitStatus::from_raw(libc::SIGKILL)), "signal: killed");
        assert_eq!(status_text(ExitStatus::from_raw(libc::SIGTERM)), "signal: terminated");
    }

    #[tokio::test]
    async fn reaps_a_child_that_exits_at_once() {
        let reaper = Reaper::start().unwrap();
        let (_child, rx) = reaper.spawn(Command::new("/bin/sh").args(["-c", "exit 7"])).unwrap();
        let status = tokio::time::timeout(std::time::Duration::from_secs(10), rx).await.unwrap().unwrap();
        assert_eq!(status.code(), Some(7));
    }
}
