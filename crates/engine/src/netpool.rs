//! Sandbox networks made ahead of time. Starting pasta takes about 19 ms, most of what a sandbox
//! with internet access takes to start, and it needs no sandbox: a holder process makes the
//! namespaces (the sandboxes' user namespace with a network namespace it owns; without user
//! namespaces, a network namespace alone), pasta is attached to them, and the next sandbox with
//! internet access joins them (`namespaces_of` in the guest's config). One is kept ready; the next
//! one is made once that sandbox has started (not meanwhile: on two cores, making it would slow
//! the start it is meant to speed up). The holder is `sandbank guest --hold-namespaces`.

use crate::error::During;
use crate::guest_exe::GuestExe;
use crate::net::{NetError, Pasta};
use crate::spawner::Spawner;
use crate::userns::{IdMap, Owner};
use std::path::PathBuf;
use std::process::{Child, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

/// How many networks are kept ready. Each costs a pasta process (about 30 MB resident, mostly
/// packet buffers) while it waits.
const READY: usize = 1;

#[derive(Debug)]
pub struct NetPool {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    ready: Mutex<Vec<ReadyNet>>,
    making: AtomicBool,
    closed: AtomicBool,
    pasta: PathBuf,
    guest_exe: GuestExe,
    userns: Option<IdMap>,
    spawner: Spawner,
}

/// The longest [`NetPool::settled`] waits: making a network takes well under a second.
const SETTLE: std::time::Duration = std::time::Duration::from_secs(2);

/// Namespaces with pasta attached, waiting for a sandbox.
#[derive(Debug)]
pub struct ReadyNet {
    holder: Holder,
    pasta: Pasta,
}

impl ReadyNet {
    /// The process whose namespaces the sandbox joins.
    pub fn holder_pid(&self) -> i32 {
        self.holder.0.id() as i32
    }

    /// The network's pasta, for the sandbox that joined its namespaces: the holder goes (the
    /// sandbox holds the namespaces now).
    pub fn into_pasta(self) -> Pasta {
        self.pasta
    }

    fn is_alive(&mut self) -> bool {
        matches!(self.holder.0.try_wait(), Ok(None)) && self.pasta.is_running()
    }
}

/// `sandbank guest --hold-namespaces` (the guest crate's `hold_namespaces_main`): a process that
/// only keeps its namespaces until its stdin closes. Killed and reaped when dropped.
#[derive(Debug)]
struct Holder(Child);

impl Drop for Holder {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl NetPool {
    pub(crate) fn new(pasta: PathBuf, guest_exe: GuestExe, userns: Option<IdMap>, spawner: Spawner) -> Self {
        let inner = Inner {
            ready: Mutex::new(Vec::new()),
            making: AtomicBool::new(false),
            closed: AtomicBool::new(false),
            pasta,
            guest_exe,
            userns,
            spawner,
        };
        Self { inner: Arc::new(inner) }
    }

    /// A ready network, if there is one.
    pub fn take(&self) -> Option<ReadyNet> {
        loop {
            let mut net = self.inner.ready.lock().unwrap().pop()?;
            if net.is_alive() {
                return Some(net);
            }
        }
    }

    /// Starts making a network in the background unless enough are ready or being made. Needs a
    /// tokio runtime.
    pub fn refill(&self) {
        let inner = &self.inner;
        if inner.closed.load(Ordering::SeqCst)
            || inner.ready.lock().unwrap().len() >= READY
            || inner.making.swap(true, Ordering::SeqCst)
        {
            return;
        }
        let inner = Arc::clone(inner);
        tokio::spawn(async move {
            let made = make(&inner).await;
            match made {
                Ok(net) => {
                    // Checked under the lock `close` takes: none is kept after it.
                    let mut ready = inner.ready.lock().unwrap();
                    if !inner.closed.load(Ordering::SeqCst) {
                        ready.push(net);
                    }
                }
                Err(e) => tracing::warn!("making a network ahead of time: {e}"),
            }
            inner.making.store(false, Ordering::SeqCst);
        });
    }

    /// Stops the ready networks and makes no more.
    pub fn close(&self) {
        let ready = {
            let mut ready = self.inner.ready.lock().unwrap();
            self.inner.closed.store(true, Ordering::SeqCst);
            std::mem::take(&mut *ready)
        };
        // Killed and reaped outside the lock.
        drop(ready);
    }

    /// Waits (at most [`SETTLE`]) for a network that was being made when the pool closed: it is
    /// stopped once made, so that its processes do not outlive a server that stops.
    pub async fn settled(&self) {
        let deadline = std::time::Instant::now() + SETTLE;
        while self.inner.making.load(Ordering::SeqCst) && std::time::Instant::now() < deadline {
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
    }

    /// How many networks are ready now.
    pub fn ready(&self) -> usize {
        self.inner.ready.lock().unwrap().len()
    }
}

async fn make(inner: &Inner) -> Result<ReadyNet, NetError> {
    let mut cmd = inner.guest_exe.command();
    cmd.args(["guest", "--hold-namespaces"])
        .env_clear()
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit());
    let namespaces = if inner.userns.is_some() { libc::CLONE_NEWUSER | libc::CLONE_NEWNET } else { libc::CLONE_NEWNET };
    // The user namespace is its sandbox's: owned by a host uid of its own (see `Owner`).
    let owner = inner.userns.map(|_| Owner::fresh());
    // (Its stdin closing with the server ends it too.)
    let steps = crate::sys::BeforeExec {
        new_session: true,
        euid: owner.map(|o| o.0),
        unshare: namespaces,
        die_with_parent: true,
        ..Default::default()
    };
    crate::sys::before_exec(&mut cmd, steps);
    let holder =
        Holder(inner.spawner.spawn(cmd).await.during(format_args!("start {}", inner.guest_exe.host_path().display()))?);
    let pid = holder.0.id() as i32;
    if let Some(map) = &inner.userns {
        crate::userns::write_maps(map, pid)?;
    }
    let pasta = Pasta::start(&inner.pasta, pid, "(ahead of time)", |cmd| inner.spawner.spawn(cmd)).await?;
    Ok(ReadyNet { holder, pasta })
}
