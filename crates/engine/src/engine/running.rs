//! What a live sandbox can be asked for: new egress rules, what it uses.

use super::*;
use crate::egress::{self, Egress, EgressError};

impl Engine {
    /// Replaces a running sandbox's egress rules (kept for its restarts too). A paused sandbox's
    /// cannot change: resume it first.
    pub async fn set_egress(&self, id: &str, rules: Egress) -> Result<(), EngineError> {
        let busy = self.busy_of_running(id)?;
        let _turn = busy.lock().await;
        let launcher = {
            let state = self.state.lock().unwrap();
            match state.status(id) {
                None => return Err(EngineError::SandboxNotFound(id.into())),
                Some(s) if !s.can_pause() => return Err(EngineError::AlreadyPaused(id.into())),
                Some(_) => {}
            }
            state.processes(id).and_then(|p| p.launcher).ok_or_else(|| EngineError::SandboxNotFound(id.into()))?
        };
        // In PID 1's network namespace: a sandbox restored from a snapshot with memory has its
        // own, not its launcher's.
        let pid1 = super::start::pid1_of(launcher)?;
        let (id2, rules2) = (id.to_string(), rules.clone());
        blocking("egress rules", move || apply_egress(&id2, pid1, &rules2)).await?;
        if let Some(r) = self.state.lock().unwrap().sandboxes.get_mut(id) {
            r.makeup.spec.egress = rules;
        }
        Ok(())
    }

    /// What a sandbox uses now: CPU time and memory from its cgroup (zero for a sandbox paused
    /// before a restart, which has no processes), and the disk space of its own upper layer.
    pub async fn usage(&self, id: &str) -> Result<SandboxUsage, EngineError> {
        let live = {
            let state = self.state.lock().unwrap();
            state.status(id).ok_or_else(|| EngineError::SandboxNotFound(id.into()))?.has_processes()
        };
        let (cgroups, dir, id) = (self.cgroups.clone(), self.layout.sandbox(id), id.to_string());
        blocking("usage", move || {
            let cg = if live {
                cgroups.usage(&id).map_err(io_ctx(format!("read the cgroup of {id}")))?
            } else {
                Default::default()
            };
            let disk_bytes = disk_usage(&dir.upper_root()) + disk_usage(&dir.upper_usr());
            Ok(SandboxUsage {
                cpu_ns: cg.cpu_ns,
                memory_bytes: cg.memory_bytes,
                memory_cache_bytes: cg.memory_cache_bytes,
                disk_bytes,
            })
        })
        .await
    }
}

/// Bytes allocated to the files under `dir` (not following symlinks; a hard-linked file counts
/// once per link, an upper bound).
fn disk_usage(dir: &Path) -> u64 {
    // The sandbox may be running: a tree it may be changing, walked without following symlinks.
    crate::tree::disk_usage(dir)
}

/// Puts `rules` in force in the network namespace of `pid`, a process of the sandbox.
pub(super) fn apply_egress(id: &str, pid: i32, rules: &Egress) -> Result<(), EngineError> {
    let fail = |source: EgressError| EngineError::Egress { id: id.to_string(), source };
    let nft = egress::find_nft().ok_or_else(|| fail(EgressError::NoNft))?;
    let netns = crate::userns::namespace_of(pid, "net").map_err(|e| fail(e.into()))?;
    egress::apply(&nft, &netns, rules).map_err(fail)
}
