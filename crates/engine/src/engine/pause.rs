//! Pausing a sandbox (frozen with its memory, or stopped with its files kept) and resuming it;
//! the paused records, which outlive the server in the catalog.

use super::start::{register, Launch};
use super::*;
use crate::template::remove_all;

/// A paused sandbox, as the catalog keeps it so that it outlives the server (one flat JSON
/// object: its makeup's fields and `api`).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(super) struct PausedRecord {
    #[serde(flatten)]
    pub(super) makeup: Makeup,
    /// What the API keeps of it; opaque to the engine.
    pub(super) api: String,
}

impl Engine {
    /// Pauses a running sandbox: freezes every process in it and records it in the catalog (with
    /// `api`, what the API keeps of it), so that it outlives a restart. With CRIU its processes'
    /// memory is then written to disk and they end: the paused sandbox holds no RAM, and resuming
    /// restores them, also after a restart. They stay frozen in memory instead (and a restart
    /// keeps only the files) without CRIU, when CRIU cannot dump them, and while an SDK follows a
    /// stream from envd (a background command's output): frozen, the stream goes on after the
    /// resume, as it does in the cloud. Without `keep_memory` its processes end once it is
    /// recorded: only its files are kept, and it starts again on them when resumed.
    pub async fn pause(&self, id: &str, api: String, keep_memory: bool) -> Result<(), EngineError> {
        let busy = self.busy_of_running(id)?;
        let _turn = busy.lock().await;
        let record = {
            let state = self.state.lock().unwrap();
            match state.status(id) {
                Some(s) if s.can_pause() => {}
                Some(_) => return Err(EngineError::AlreadyPaused(id.into())),
                None => return Err(EngineError::SandboxNotFound(id.into())),
            }
            let r = state.sandboxes.get(id).ok_or_else(|| EngineError::SandboxNotFound(id.into()))?;
            PausedRecord { makeup: r.makeup.clone(), api: api.clone() }
        };
        let to_disk = keep_memory && self.without_outside_connections(id).await;
        let (cgroups, state, id2) = (self.cgroups.clone(), Arc::clone(&self.state), id.to_string());
        blocking("pause", move || {
            let id = id2;
            if let Err(e) = cgroups.set_frozen(&id, true) {
                let _ = cgroups.set_frozen(&id, false);
                return Err(io_ctx(format!("freeze sandbox {id}"))(e));
            }
            let json = serde_json::to_string(&record).expect("a paused record serializes");
            let mut state = state.lock().unwrap();
            if let Err(e) = state.store.put_paused(&id, &json) {
                drop(state);
                let _ = cgroups.set_frozen(&id, false);
                return Err(e.into());
            }
            if let Some(r) = state.sandboxes.get_mut(&id) {
                r.paused = Some(api);
            }
            Ok(())
        })
        .await?;
        // Recorded as paused first: its cleanup keeps its files (and the images of its memory).
        if !keep_memory || (to_disk && self.memory_to_disk(id).await) {
            self.stop(id, true).await;
        }
        Ok(())
    }

    /// Whether a running sandbox's memory can go to disk without cutting a connection from
    /// outside: envd holds none (once those of requests just answered are closed, which takes
    /// envd a moment). False without CRIU.
    async fn without_outside_connections(&self, id: &str) -> bool {
        if self.criu().is_err() {
            return false;
        }
        let Some(launcher) = self.state.lock().unwrap().processes(id).and_then(|p| p.launcher) else { return false };
        let Ok(pid1) = super::start::pid1_of(launcher) else { return false };
        for _ in 0..10 {
            match crate::criu::outside_connections(pid1) {
                Ok(0) => return true,
                Ok(_) => tokio::time::sleep(Duration::from_millis(20)).await,
                Err(_) => return false,
            }
        }
        tracing::info!(sandbox = id, "a stream from envd is followed: paused in memory, where it goes on");
        false
    }

    /// Writes the processes of a frozen sandbox to its `memory/` with CRIU, then kills them
    /// while frozen (so that nothing runs between the dump and their end); whether it did. A
    /// failed dump leaves them frozen in memory as they were, said in the log.
    async fn memory_to_disk(&self, id: &str) -> bool {
        let Ok(criu) = self.criu().cloned() else { return false };
        let dump = match self.dump_of(id, criu) {
            Ok(Some(dump)) => dump,
            Ok(None) => return false,
            Err(e) => {
                tracing::warn!(sandbox = id, "its memory cannot be written to disk; it stays frozen in memory: {e}");
                return false;
            }
        };
        let (layout, cgroups, id2) = (self.layout.clone(), self.cgroups.clone(), id.to_string());
        let dumped = tokio::task::spawn_blocking(move || {
            let dir = layout.sandbox(&id2);
            let partial = dir.paused_memory_partial();
            // Images of an earlier pause that did not end its processes are stale.
            let written = remove_all(&partial)
                .and_then(|()| remove_all(&dir.paused_memory()))
                .and_then(|()| fs::create_dir_all(&partial))
                .and_then(|()| dump.take(&partial))
                .and_then(|()| crate::copy::sync_filesystem(&partial))
                .and_then(|()| fs::rename(&partial, dir.paused_memory()));
            if written.is_err() {
                let _ = remove_all(&partial);
            }
            // Processes that cannot be ended stay as they are, and their images go.
            written.and_then(|()| cgroups.kill_frozen(&id2)).inspect_err(|_| {
                let _ = remove_all(&dir.paused_memory());
            })
        })
        .await;
        match dumped {
            Ok(Ok(())) => true,
            Ok(Err(e)) => {
                tracing::warn!(sandbox = id, "its memory could not be written to disk; it stays frozen in memory: {e}");
                false
            }
            Err(e) => {
                tracing::warn!(sandbox = id, "writing its memory to disk: {e}");
                false
            }
        }
    }

    /// Resumes a paused sandbox: thaws it when it is frozen in memory; else starts it again,
    /// restoring its processes from the images its pause wrote (`Restored`) or, without them
    /// (paused without its memory, or kept in memory when the server stopped), on its files
    /// (`Restarted`). With `reboot`, a frozen sandbox's processes end and its images go: it
    /// starts again on its files. A running sandbox is left as it is (`Thawed`).
    pub async fn resume(&self, id: &str, reboot: bool) -> Result<Resumed, EngineError> {
        let busy = self.state.lock().unwrap().processes(id).map(|p| Arc::clone(&p.busy));
        if let Some(busy) = busy {
            let _turn = busy.lock().await;
            let status = self.state.lock().unwrap().status(id);
            match status {
                Some(Status::Frozen) => {}
                // Its pause wrote its memory to disk and ended its processes meanwhile.
                Some(Status::Dormant) => {
                    drop(_turn);
                    return Box::pin(self.resume(id, reboot)).await;
                }
                _ => return Ok(Resumed::Thawed),
            }
            if reboot {
                // Still recorded as paused: its cleanup keeps its files; then started below.
                self.stop(id, true).await;
                drop(_turn);
                return Box::pin(self.resume(id, false)).await;
            }
            let (cgroups, id2) = (self.cgroups.clone(), id.to_string());
            blocking("thaw", move || cgroups.set_frozen(&id2, false).map_err(io_ctx(format!("thaw sandbox {id2}"))))
                .await?;
            self.forget_paused(id).await?;
            return Ok(Resumed::Thawed);
        }
        // Started again on its files, with its processes restored when its pause wrote their
        // memory to disk (not with `reboot`). Its `busy` lock is held until it is up: a
        // concurrent resume waits for it, then finds it running.
        let restart = {
            let mut state = self.state.lock().unwrap();
            match state.sandboxes.get(id) {
                Some(r) if r.status() == Status::Dormant => {
                    let makeup = r.makeup.clone();
                    let template = self
                        .template(&makeup.template)
                        .ok_or_else(|| EngineError::TemplateNotFound(makeup.template.clone()))?;
                    let spec = makeup.spec.clone();
                    let launch = register(&mut state, Launch { template, makeup });
                    let busy = Arc::clone(&state.processes(id).expect("registered just now").busy);
                    let turn = busy.try_lock_owned().expect("a sandbox registered just now is not busy");
                    Some((spec, launch, turn))
                }
                // Being started again by a concurrent resume since the look above.
                Some(_) => None,
                None => return Err(EngineError::SandboxNotFound(id.into())),
            }
        };
        // It comes up fresh: nothing to reboot. Wait for it.
        let Some((spec, launch, _turn)) = restart else { return Box::pin(self.resume(id, false)).await };
        let memory = self.layout.sandbox(id).paused_memory();
        if reboot {
            blocking("drop the memory of a paused sandbox", {
                let memory = memory.clone();
                move || remove_all(&memory).map_err(io_ctx(format!("remove {}", memory.display())))
            })
            .await?;
        }
        let restoring = memory.is_dir();
        let handle = self.start(spec, launch).await?;
        self.forget_paused(id).await?;
        if !restoring {
            return Ok(Resumed::Restarted(handle));
        }
        // Its processes have what they need: the images go (a failure only costs disk space
        // until it is killed).
        let dropped = blocking("drop the memory of a resumed sandbox", move || {
            remove_all(&memory).map_err(io_ctx(format!("remove {}", memory.display())))
        })
        .await;
        if let Err(e) = dropped {
            tracing::warn!(sandbox = id, "{e}");
        }
        Ok(Resumed::Restored(handle))
    }

    /// The paused sandboxes, frozen or only files.
    pub fn paused(&self) -> Vec<PausedSandbox> {
        let state = self.state.lock().unwrap();
        state
            .sandboxes
            .iter()
            .filter_map(|(id, r)| {
                let api = r.paused.clone()?;
                Some(PausedSandbox { id: id.clone(), api, envd_socket: self.layout.sandbox(id).envd_socket() })
            })
            .collect()
    }
}

/// Reads the paused sandboxes from the catalog (dormant: their processes went with the last
/// server); drops the records whose files are gone.
pub(super) fn load_paused(layout: &Layout, store: &mut Store) -> Result<HashMap<String, Record>, EngineError> {
    let mut paused = HashMap::new();
    for (id, json) in store.all_paused()? {
        let dir = layout.sandbox(&id);
        match serde_json::from_str::<PausedRecord>(&json) {
            Ok(PausedRecord { makeup, api }) if dir.upper_root().is_dir() => {
                paused.insert(id, Record { makeup, processes: None, paused: Some(api) });
            }
            Ok(_) => {
                tracing::warn!(sandbox = id, "the files of a paused sandbox are gone; forgetting it");
                store.delete_paused(&id)?;
            }
            Err(e) => {
                tracing::error!(sandbox = id, "unreadable record of a paused sandbox ({e}); forgetting it");
                store.delete_paused(&id)?;
            }
        }
    }
    Ok(paused)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The catalog's paused records keep their format: one flat object, as servers before the
    /// makeup type wrote them.
    #[test]
    fn paused_records_read_and_write_the_flat_format() {
        let old = r#"{"spec":{"id":"abcdefghij0123456789","template":"base","env_vars":{},"limits":{"cpu_count":2,"memory_mb":512,"pids":1024,"disk_mb":0},"allow_internet_access":null},"template":"base","source":null,"layers":["l1"],"template_id":"base","api":"{}"}"#;
        let record: PausedRecord = serde_json::from_str(old).unwrap();
        assert_eq!(
            (record.makeup.spec.id.as_str(), record.makeup.layers.as_slice(), record.api.as_str()),
            ("abcdefghij0123456789", &["l1".to_string()][..], "{}")
        );
        let again: serde_json::Value = serde_json::to_value(&record).unwrap();
        let keys: Vec<&str> = again.as_object().unwrap().keys().map(String::as_str).collect();
        assert_eq!(keys, ["api", "layers", "source", "spec", "template", "template_id"]);
    }
}
