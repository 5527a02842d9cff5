//! Rolling a running sandbox back to a snapshot in place: the same ID and settings, the
//! snapshot's files (and, for a snapshot with memory, its processes).

use super::*;

/// Why a restore did not happen.
#[derive(Debug, thiserror::Error)]
pub enum RestoreError {
    /// Refused: the sandbox is as it was.
    #[error(transparent)]
    Refused(#[from] RestoreRefused),
    /// Failed before anything changed: the sandbox is as it was.
    #[error(transparent)]
    Unchanged(EngineError),
    /// Its processes ended, and it could not start again on the snapshot: it is gone.
    #[error("the sandbox stopped and could not start again on the snapshot: {0}")]
    Lost(EngineError),
}

/// Why a restore was refused.
#[derive(Debug, thiserror::Error)]
pub enum RestoreRefused {
    #[error(
        "snapshot {snapshot:?} is not of sandbox {sandbox:?}'s lineage (it was taken from sandbox {origin:?}): \
         restore it anyway with force"
    )]
    OtherLineage { snapshot: String, sandbox: String, origin: String },
    #[error("{0:?} is a template, not a snapshot: only a snapshot can be restored into a sandbox")]
    NotASnapshot(String),
    #[error("snapshot {0:?} not found")]
    NotFound(String),
}

impl Engine {
    /// Puts running sandbox `id` back to snapshot `snapshot` (its ID or name): its processes
    /// end, its files become the snapshot's, and it starts again with the same ID, spec (limits,
    /// variables, network and egress rules) and envd socket; with the snapshot's processes when
    /// the snapshot has memory. A snapshot not of its lineage (taken from it, from what it was
    /// started from, or from their ancestors) is refused unless `any_lineage`. Returns the new
    /// handle (the old one's exit fires).
    pub async fn restore(&self, id: &str, snapshot: &str, any_lineage: bool) -> Result<SandboxHandle, RestoreError> {
        let busy = self.busy_of_running(id).map_err(RestoreError::Unchanged)?;
        let turn = busy.lock().await;
        let spec = {
            let state = self.state.lock().unwrap();
            let record = state
                .sandboxes
                .get(id)
                .ok_or_else(|| RestoreError::Unchanged(EngineError::SandboxNotFound(id.into())))?;
            let source = match self.resolve(&state, snapshot) {
                Ok(source) => source,
                Err(EngineError::TemplateNotFound(_)) => return Err(RestoreRefused::NotFound(snapshot.into()).into()),
                Err(e) => return Err(RestoreError::Unchanged(e)),
            };
            let Some(target) = source.snapshot else {
                return Err(RestoreRefused::NotASnapshot(snapshot.to_string()).into());
            };
            if !any_lineage && !in_lineage(&state, &record.makeup, id, &target).map_err(RestoreError::Unchanged)? {
                return Err(RestoreRefused::OtherLineage {
                    snapshot: target.id,
                    sandbox: id.to_string(),
                    origin: target.origin_sandbox,
                }
                .into());
            }
            SandboxSpec { template: target.id, ..record.makeup.spec.clone() }
        };
        // Its processes end and its directories go (it is not paused: nothing of it is kept),
        // then it starts on the snapshot under the same ID.
        self.stop(id, false).await;
        drop(turn);
        self.create(spec).await.map_err(RestoreError::Lost)
    }
}

/// Whether `target` is of sandbox `id`'s lineage: taken from it, or the snapshot it was started
/// from (`makeup.source`), or one of that snapshot's ancestors.
fn in_lineage(
    state: &State,
    makeup: &Makeup,
    id: &str,
    target: &crate::store::SnapshotRecord,
) -> Result<bool, EngineError> {
    if target.origin_sandbox == id {
        return Ok(true);
    }
    let mut next = makeup.source.clone();
    while let Some(ancestor) = next {
        if ancestor == target.id {
            return Ok(true);
        }
        next = state.store.get(&ancestor)?.and_then(|s| s.parent);
    }
    Ok(false)
}
