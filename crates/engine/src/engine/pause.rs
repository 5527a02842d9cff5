//! Pausing a sandbox (frozen with its memory, or stopped with its files kept) and resuming it;
//! the paused records, which outlive the server in the catalog.

use super::start::{register, Launch};
use super::*;
use serde::{Deserialize, Serialize};

/// A paused sandbox, as the catalog keeps it so that it outlives the server.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(super) struct PausedRecord {
    pub(super) spec: SandboxSpec,
    /// The template at the bottom of its layers.
    pub(super) template: String,
    /// The snapshot it started from, and the layers under its own upper layer, topmost first.
    pub(super) source: Option<String>,
    pub(super) layers: Vec<String>,
    /// What it reports as its template: the template's name or the snapshot's ID.
    pub(super) template_id: String,
    /// What the API keeps of it; opaque to the engine.
    pub(super) api: String,
}

impl Engine {
    /// Pauses a running sandbox: freezes every process in it, with its memory, and records it in
    /// the catalog (with `api`, what the API keeps of it), so that its files outlive a restart.
    /// Without `keep_memory` its processes end once it is recorded: only its files are kept, and
    /// it starts again on them when resumed (as after a restart).
    pub async fn pause(&self, id: &str, api: String, keep_memory: bool) -> Result<(), EngineError> {
        let busy = self.busy_of_running(id)?;
        let _turn = busy.lock().await;
        let record = {
            let state = self.state.lock().unwrap();
            match state.status(id) {
                Some(Status::Running) => {}
                Some(_) => return Err(EngineError::AlreadyPaused(id.into())),
                None => return Err(EngineError::SandboxNotFound(id.into())),
            }
            let r = state.sandboxes.get(id).ok_or_else(|| EngineError::SandboxNotFound(id.into()))?;
            PausedRecord {
                spec: r.spec.clone(),
                template: r.template.clone(),
                source: r.source.clone(),
                layers: r.layers.clone(),
                template_id: r.template_id.clone(),
                api,
            }
        };
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
            state.paused.insert(id, record);
            Ok(())
        })
        .await?;
        if !keep_memory {
            // Recorded as paused first: its cleanup keeps its files.
            self.stop(id, true).await;
        }
        Ok(())
    }

    /// Resumes a paused sandbox: thaws it, or, if the server stopped while it was paused (or it
    /// was paused without its memory), starts it again on its files. With `reboot`, a frozen
    /// sandbox's processes end and it starts again on its files too. A running sandbox is left as
    /// it is (`Thawed`).
    pub async fn resume(&self, id: &str, reboot: bool) -> Result<Resumed, EngineError> {
        let busy = self.state.lock().unwrap().sandboxes.get(id).map(|r| Arc::clone(&r.busy));
        if let Some(busy) = busy {
            let _turn = busy.lock().await;
            if !self.state.lock().unwrap().status(id).is_some_and(Status::is_paused) {
                return Ok(Resumed::Thawed);
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
        // Started again on its files. Its `busy` lock is held until it is up: a concurrent
        // resume waits for it, then finds it running.
        let (spec, launch, _turn) = {
            let mut state = self.state.lock().unwrap();
            let record = state.paused.get(id).cloned().ok_or_else(|| EngineError::SandboxNotFound(id.into()))?;
            let template = self
                .templates
                .get(&record.template)
                .ok_or_else(|| EngineError::TemplateNotFound(record.template.clone()))?;
            let launch = Launch {
                template: template.clone(),
                source: record.source,
                layers: record.layers,
                template_id: record.template_id,
            };
            let launch = register(&mut state, &record.spec, launch);
            let busy = Arc::clone(&state.sandboxes[id].busy);
            let turn = busy.try_lock_owned().expect("a sandbox registered just now is not busy");
            (record.spec, launch, turn)
        };
        let handle = self.start(spec, launch).await?;
        self.forget_paused(id).await?;
        Ok(Resumed::Restarted(handle))
    }

    /// The paused sandboxes, frozen or only files.
    pub fn paused(&self) -> Vec<PausedSandbox> {
        let state = self.state.lock().unwrap();
        state
            .paused
            .iter()
            .map(|(id, p)| PausedSandbox {
                id: id.clone(),
                api: p.api.clone(),
                envd_socket: self.layout.sandbox(id).envd_socket(),
            })
            .collect()
    }
}

/// Reads the paused sandboxes from the catalog; drops the records whose files are gone.
pub(super) fn load_paused(layout: &Layout, store: &mut Store) -> Result<HashMap<String, PausedRecord>, EngineError> {
    let mut paused = HashMap::new();
    for (id, json) in store.all_paused()? {
        let dir = layout.sandbox(&id);
        match serde_json::from_str::<PausedRecord>(&json) {
            Ok(record) if dir.disk_image().exists() || dir.upper_root().is_dir() => {
                paused.insert(id, record);
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
