//! Killing a sandbox, running or paused, and undoing a start that failed.

use super::snapshot::collect_layers;
use super::start::forget_processes;
use super::startup::remove_sandbox_dir;
use super::*;

impl Engine {
    /// Undoes a registration whose guest never started. A paused sandbox that failed to start
    /// again keeps its files.
    pub(super) fn forget(&self, id: &str) {
        let _ = self.cgroups.destroy(id, KILL_TIMEOUT);
        if !self.state.lock().unwrap().is_paused(id) {
            let _ = remove_sandbox_dir(&self.layout, id);
        }
        let processes = forget_processes(&mut self.state.lock().unwrap(), id);
        drop(processes);
    }

    /// Kills a sandbox, running or paused, and removes everything it had: processes, cgroup,
    /// directories. `Ok(false)` when there is no such sandbox. Waits for a snapshot of it in
    /// progress.
    pub async fn kill(&self, id: &str) -> Result<bool, EngineError> {
        let Some(busy) = self.state.lock().unwrap().processes(id).map(|p| Arc::clone(&p.busy)) else {
            return self.remove_dormant(id).await;
        };
        let _turn = busy.lock().await;
        let was_paused = self.forget_paused(id).await?;
        self.stop(id, was_paused).await;
        Ok(true)
    }

    /// Removes a paused sandbox that has only files (paused without its memory, or when the
    /// server last stopped).
    pub(super) async fn remove_dormant(&self, id: &str) -> Result<bool, EngineError> {
        if self.state.lock().unwrap().status(id) != Some(Status::Dormant) || !self.forget_paused(id).await? {
            return Ok(false);
        }
        let (layout, state, id) = (self.layout.clone(), Arc::clone(&self.state), id.to_string());
        blocking("remove a paused sandbox", move || {
            let removed = remove_sandbox_dir(&layout, &id);
            collect_layers(&layout, &state);
            removed.map_err(io_ctx("remove a paused sandbox".into()))
        })
        .await?;
        Ok(true)
    }

    /// Drops the paused mark of a sandbox, and its record in the catalog (and, when it has no
    /// processes, the sandbox); whether it was paused.
    pub(super) async fn forget_paused(&self, id: &str) -> Result<bool, EngineError> {
        let (state, id) = (Arc::clone(&self.state), id.to_string());
        blocking("update the catalog", move || {
            let mut state = state.lock().unwrap();
            let Some(record) = state.sandboxes.get_mut(&id) else { return Ok(false) };
            if record.paused.take().is_none() {
                return Ok(false);
            }
            if record.processes.is_none() {
                state.sandboxes.remove(&id);
            }
            state.store.delete_paused(&id)?;
            Ok(true)
        })
        .await
    }

    /// SIGKILLs the sandbox's guest and waits until its cleanup is done. The caller holds its
    /// `busy` lock. A frozen sandbox is thawed so that its processes can die.
    pub(super) async fn stop(&self, id: &str, frozen: bool) {
        loop {
            let running = {
                let state = self.state.lock().unwrap();
                state.processes(id).map(|p| (p.launcher, p.exited.clone()))
            };
            let Some((launcher, mut exited)) = running else { return };
            let Some(launcher) = launcher else {
                // Still being started: its launcher pid is moments away.
                tokio::time::sleep(Duration::from_millis(1)).await;
                continue;
            };
            if !*exited.borrow() {
                // The launcher is our unreaped child (the exit watcher reaps it before it marks
                // the sandbox exited), so the pid cannot name another process.
                let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(launcher), nix::sys::signal::Signal::SIGKILL);
                if frozen {
                    // A frozen process takes its SIGKILL when thawed.
                    let (cgroups, id2) = (self.cgroups.clone(), id.to_string());
                    let thawed = tokio::task::spawn_blocking(move || cgroups.set_frozen(&id2, false)).await;
                    if let Ok(Err(e)) = thawed {
                        tracing::warn!(sandbox = id, "thawing a paused sandbox to kill it: {e}");
                    }
                }
            }
            let _ = exited.wait_for(|done| *done).await;
            return;
        }
    }

    /// The `busy` lock of a sandbox with processes; one paused before a restart (only files) is
    /// `AlreadyPaused`, an unknown one `SandboxNotFound`. Whether it is frozen is for the caller
    /// to check once it holds the lock.
    pub(super) fn busy_of_running(&self, id: &str) -> Result<Arc<tokio::sync::Mutex<()>>, EngineError> {
        let state = self.state.lock().unwrap();
        match (state.status(id), state.processes(id)) {
            (Some(Status::Running | Status::Frozen), Some(p)) => Ok(Arc::clone(&p.busy)),
            (Some(Status::Dormant), _) => Err(EngineError::AlreadyPaused(id.into())),
            _ => Err(EngineError::SandboxNotFound(id.into())),
        }
    }
}
