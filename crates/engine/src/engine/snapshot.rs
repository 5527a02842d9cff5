//! Snapshots: a sandbox's upper layers staged (frozen for the copy) and published as a layer with
//! its record; listing and deleting them; collecting the layers nothing needs any more.

use super::*;
use crate::copy::{copy_tree, sync_dir, sync_filesystem};
use crate::diff::{self, LayerDiff};
use crate::id;
use crate::store::{InsertError, ListFilter, SnapshotRecord};
use crate::template::remove_all;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

impl Engine {
    /// Captures a running sandbox's filesystem as a new snapshot. The sandbox is frozen only
    /// while its upper layers are copied, then carries on.
    pub async fn snapshot(&self, sandbox_id: &str, name: Option<String>) -> Result<SnapshotInfo, EngineError> {
        self.snapshot_as(sandbox_id, name, Some(SnapshotMode::Filesystem)).await
    }

    /// Captures a sandbox as a new snapshot: its files, and with [`SnapshotMode::Full`] its
    /// processes and their memory too (the images in the layer's `memory/`: dumped from its
    /// processes, or those its pause wrote). The sandbox is frozen while its processes are
    /// dumped and its upper layers copied, then carries on. With no `mode`, the memory is taken
    /// where it can be (CRIU is here, the sandbox has processes or their images, the dump
    /// works), else the files only; the snapshot's `mode` says which.
    pub async fn snapshot_as(
        &self,
        sandbox_id: &str,
        name: Option<String>,
        mode: Option<SnapshotMode>,
    ) -> Result<SnapshotInfo, EngineError> {
        let opts = SnapshotOptions { name, mode, name_moves: true, ..Default::default() };
        self.snapshot_with(sandbox_id, opts).await
    }

    /// [`Engine::snapshot_as`] with everything a snapshot may carry: its labels, when it
    /// expires, whether its name may move from another snapshot (else a live snapshot with it
    /// refuses the new one: [`EngineError::NameTaken`]), and how many of the origin sandbox's
    /// snapshots to keep (older ones expire at once, and go when nothing uses them).
    pub async fn snapshot_with(&self, sandbox_id: &str, opts: SnapshotOptions) -> Result<SnapshotInfo, EngineError> {
        let SnapshotOptions { name, mode, metadata, expires_at, keep_last, name_moves } = opts;
        let criu = match mode {
            Some(SnapshotMode::Full) => Some(self.criu()?.clone()),
            Some(SnapshotMode::Filesystem) => None,
            None => self.criu().ok().cloned(),
        };
        let required = mode == Some(SnapshotMode::Full);
        if let Some(name) = name.as_deref().filter(|n| self.template(n).is_some()) {
            // Templates resolve first: the snapshot could never be started or deleted by that name.
            return Err(EngineError::InvalidName(format!("{name:?}: a template has that name")));
        }
        if let Some(name) = name.as_deref().filter(|_| !name_moves) {
            // Before the copy, to say so at once (the commit checks again).
            if self.state.lock().unwrap().store.get_live(name, now_ns())?.is_some() {
                return Err(EngineError::NameTaken(name.to_string()));
            }
        }
        let busy = self.state.lock().unwrap().processes(sandbox_id).map(|p| Arc::clone(&p.busy));
        let _turn = match &busy {
            Some(busy) => Some(busy.lock().await),
            None => None,
        };
        // A running sandbox is frozen for the copy; a paused one is frozen already, and one
        // paused before a restart has no processes.
        let (source, template, base_layers, freeze) = {
            let state = self.state.lock().unwrap();
            let status =
                state.status(sandbox_id).ok_or_else(|| EngineError::SandboxNotFound(sandbox_id.to_string()))?;
            let makeup = &state.sandboxes[sandbox_id].makeup;
            (makeup.source.clone(), makeup.template.clone(), makeup.layers.clone(), status.freezes_for_snapshot())
        };
        let paused_images = self.layout.sandbox(sandbox_id).paused_memory();
        let taken_from = match criu {
            None => None,
            Some(criu) => match self.dump_of(sandbox_id, criu)? {
                Some(dump) => Some(dump),
                None if paused_images.is_dir() => Some(MemorySource::Images(paused_images)),
                None if !required => None,
                None => {
                    return Err(EngineError::SnapshotFailed {
                        id: sandbox_id.to_string(),
                        reason: "it has no processes to take with their memory (paused with its files only)".into(),
                    })
                }
            },
        };
        let memory = taken_from.map(|source| Memory { source, required });
        let id = id::new_id();
        let layout = self.layout.clone();
        let cgroups = self.cgroups.clone();
        let cow = self.cow.is_some();
        let sandbox = sandbox_id.to_string();
        let staged = {
            let id = id.clone();
            tokio::task::spawn_blocking(move || {
                stage_layer(&layout, &cgroups, &sandbox, &id, &base_layers, freeze, memory.as_ref(), cow)
            })
            .await
            .map_err(|e| EngineError::SnapshotFailed { id: sandbox_id.to_string(), reason: e.to_string() })?
        };
        let (layers, size_bytes) = staged.map_err(|e| {
            let _ = remove_all(&self.layout.staging().join(&id));
            let _ = remove_all(&self.layout.staging_memory(&id));
            let (id, reason) = (sandbox_id.to_string(), e.to_string());
            // Told apart so that the API can say 507, as envd does for a file that does not fit.
            if matches!(e.kind(), io::ErrorKind::StorageFull | io::ErrorKind::QuotaExceeded) {
                EngineError::NoSpace { id, reason }
            } else {
                EngineError::SnapshotFailed { id, reason }
            }
        })?;
        let created_at = now_ns();
        let record = SnapshotRecord {
            id: id.clone(),
            name,
            origin_sandbox: sandbox_id.to_string(),
            parent: source,
            template,
            layers,
            size_bytes,
            created_at,
            metadata,
            expires_at,
        };
        // Publish: the layer directory first, then its record. Layer collection skips layers being
        // published, so it never removes one whose record is a moment away. All of it in the
        // blocking task, which runs to its end even when the caller is gone.
        let (layout, state) = (self.layout.clone(), Arc::clone(&self.state));
        let record = tokio::task::spawn_blocking(move || {
            let _publishing = Publishing::start(&state, &id);
            publish(&layout, &state, &record, name_moves).map(|()| record).inspect_err(|_| {
                let _ = remove_all(&layout.layer(&id));
            })
        })
        .await
        .map_err(|e| EngineError::SnapshotFailed { id: sandbox_id.to_string(), reason: e.to_string() })??;
        if let Some(keep) = keep_last {
            let expired =
                self.state.lock().unwrap().store.expire_all_but_newest(sandbox_id, keep.max(1), record.created_at)?;
            if expired > 0 {
                tracing::info!(
                    sandbox = sandbox_id,
                    expired,
                    keep,
                    "older snapshots of the sandbox expired (keep-last)"
                );
                let state = Arc::clone(&self.state);
                let layout = self.layout.clone();
                // Deleting is blocking work (the catalog, the layers' directories).
                tokio::task::spawn_blocking(move || sweep_expired(&layout, &state)).await.ok();
            }
        }
        Ok(self.info(record))
    }

    /// A record as reported: with memory if its layer has the images.
    fn info(&self, record: SnapshotRecord) -> SnapshotInfo {
        let full = self.layout.memory_images(&record.id).is_dir();
        SnapshotInfo { mode: if full { SnapshotMode::Full } else { SnapshotMode::Filesystem }, ..record.into() }
    }

    /// A snapshot by ID (with or without a `:tag`) or name.
    pub fn snapshot_info(&self, id_or_name: &str) -> Result<Option<SnapshotInfo>, EngineError> {
        let untagged = id_or_name.rsplit_once(':').map_or(id_or_name, |(base, _)| base);
        let record = self.state.lock().unwrap().store.get_live(untagged, now_ns())?;
        Ok(record.map(|r| self.info(r)))
    }

    /// What snapshot `id_or_name` changed against its parent (the snapshot its sandbox was
    /// started from; the template when none), read from its layer: see [`crate::diff`]. `None`
    /// when there is no such snapshot. Blocking.
    pub fn snapshot_diff(&self, id_or_name: &str) -> Result<Option<(SnapshotInfo, LayerDiff)>, EngineError> {
        let untagged = id_or_name.rsplit_once(':').map_or(id_or_name, |(base, _)| base);
        let (record, below) = {
            let state = self.state.lock().unwrap();
            let Some(record) = state.store.get_live(untagged, now_ns())? else { return Ok(None) };
            // Its own layer is the top of its chain; the parent's chain is the rest, unless the
            // chain was folded into its layer (then the parent's own record says it).
            let below = match record.layers.split_first() {
                Some((_, rest)) if !rest.is_empty() => rest.to_vec(),
                _ => match &record.parent {
                    Some(parent) => state.store.get(parent)?.map(|p| p.layers).unwrap_or_default(),
                    None => Vec::new(),
                },
            };
            (record, below)
        };
        let template =
            self.template(&record.template).ok_or_else(|| EngineError::TemplateNotFound(record.template.clone()))?;
        let own = self.layout.layer(&record.id);
        let layers = |part: &str| below.iter().map(|l| self.layout.layer(l).join(part)).collect::<Vec<_>>();
        let parts = [
            diff::Part { mount: "/", upper: own.join("root"), lowers: [layers("root"), template.root_lowers].concat() },
            diff::Part { mount: "/usr", upper: own.join("usr"), lowers: [layers("usr"), template.usr_lowers].concat() },
        ];
        let changes = diff::diff(&parts).map_err(io_ctx(format!("read the layer of snapshot {}", record.id)))?;
        Ok(Some((self.info(record), changes)))
    }

    /// Snapshots newest first, optionally only those of one sandbox; `after` is the
    /// (created_at, id) of the previous page's last item.
    pub fn list_snapshots(
        &self,
        filter: &ListFilter<'_>,
        after: Option<(i64, &str)>,
        limit: u32,
    ) -> Result<Vec<SnapshotInfo>, EngineError> {
        let records = self.state.lock().unwrap().store.list(filter, after, limit, now_ns())?;
        Ok(records.into_iter().map(|r| self.info(r)).collect())
    }

    /// Deletes a snapshot (by ID with or without a tag, or by name). `Ok(false)` when there is
    /// no such snapshot (or it has expired); an error while sandboxes started from it still
    /// run. Its layers go when nothing else needs them.
    pub fn delete_snapshot(&self, id_or_name: &str) -> Result<bool, EngineError> {
        let untagged = id_or_name.rsplit_once(':').map_or(id_or_name, |(base, _)| base);
        let mut state = self.state.lock().unwrap();
        let Some(record) = state.store.get_live(untagged, now_ns())? else { return Ok(false) };
        let users = users_of(&state, &record.id);
        if !users.is_empty() {
            return Err(EngineError::SnapshotInUse { id: record.id, sandboxes: users });
        }
        state.store.delete(&record.id)?;
        drop(state);
        collect_layers(&self.layout, &self.state);
        Ok(true)
    }

    /// Deletes the expired snapshots no sandbox uses, as [`Engine::delete_snapshot`] does (the
    /// record first, then the layers nothing needs: a crash in between leaves layers that the
    /// next start collects). Blocking. Returns the IDs deleted.
    pub fn sweep_expired_snapshots(&self) -> Result<Vec<String>, EngineError> {
        sweep_expired(&self.layout, &self.state)
    }

    /// Removes every layer that no snapshot and no sandbox needs.
    pub(super) fn collect_layers(&self) {
        collect_layers(&self.layout, &self.state);
    }
}

/// The memory a snapshot takes, and whether it must (else, when it cannot, the snapshot has
/// the files only).
pub(super) struct Memory {
    source: MemorySource,
    required: bool,
}

pub(super) enum MemorySource {
    /// PID 1 (host pid) and what is under it, frozen in `freezer`, dumped with `criu` (in the
    /// cgroup of `helpers`); envd from `envd_layer`.
    Dump { criu: crate::criu::Criu, pid1: i32, freezer: PathBuf, helpers: PathBuf, envd_layer: PathBuf },
    /// The images a pause wrote (the sandbox has no processes).
    Images(PathBuf),
}

impl Engine {
    /// What dumps the processes of sandbox `id` with `criu`: its PID 1 and what is under it, in
    /// its freezer group, with the envd layer it runs; `None` when it has no processes.
    pub(super) fn dump_of(&self, id: &str, criu: crate::criu::Criu) -> Result<Option<MemorySource>, EngineError> {
        let running = self.state.lock().unwrap().processes(id).and_then(|p| Some((p.launcher?, p.envd_layer.clone()?)));
        let Some((launcher, envd_layer)) = running else { return Ok(None) };
        Ok(Some(MemorySource::Dump {
            criu,
            envd_layer,
            pid1: super::start::pid1_of(launcher)?,
            freezer: self.cgroups.freezer_dir(id),
            helpers: self.cgroups.helpers_procs().map_err(io_ctx("make the helpers' cgroup".into()))?,
        }))
    }
}

impl MemorySource {
    /// Writes the images into `images` (an empty directory), with the envd layer they were
    /// taken with.
    pub(super) fn take(&self, images: &Path) -> io::Result<()> {
        match self {
            MemorySource::Dump { criu, pid1, freezer, helpers, envd_layer } => {
                criu.dump(*pid1, freezer, images, helpers).map_err(io::Error::other)?;
                crate::envd_layer::record(images, envd_layer)
            }
            MemorySource::Images(from) => copy_tree(from, images).map(drop),
        }
    }
}

/// Copies the sandbox's upper layers into `<staging>/<id>` (on the copy-on-write store, `cow`:
/// snapshots its layer's subvolume there), with its processes' images when `memory` says so
/// (the sandbox frozen meanwhile if `freeze`), and makes them durable. Returns the new chain
/// (topmost first) and the bytes the layer holds.
#[allow(clippy::too_many_arguments)]
pub(super) fn stage_layer(
    layout: &Layout,
    cgroups: &Cgroups,
    sandbox: &str,
    id: &str,
    base_layers: &[String],
    freeze: bool,
    memory: Option<&Memory>,
    cow: bool,
) -> io::Result<(Vec<String>, u64)> {
    let staging = layout.staging().join(id);
    let images = layout.staging_memory(id);
    let dir = layout.sandbox(sandbox);
    if cow {
        // What the sandbox wrote so far goes to disk before it is frozen: the snapshot taken
        // while it is has only what came since to write.
        fs::create_dir_all(layout.staging())?;
        sync_filesystem(&dir.layer())?;
    } else {
        fs::create_dir_all(&staging)?;
    }
    if freeze {
        if let Err(e) = cgroups.set_frozen(sandbox, true) {
            // Part of it may be frozen already: never leave it so.
            let _ = cgroups.set_frozen(sandbox, false);
            return Err(e);
        }
    }
    let started = Instant::now();
    // The processes first, the files after: CRIU leaves the sandbox frozen as it found it.
    let with_memory = match memory {
        Some(m) => match fs::create_dir_all(&images).and_then(|()| m.source.take(&images)) {
            Err(e) if !m.required => {
                tracing::warn!(
                    sandbox,
                    snapshot = id,
                    "its memory could not be taken; the snapshot has its files only: {e}"
                );
                remove_all(&images).map(|()| false)
            }
            taken => taken.map(|()| true),
        },
        None => Ok(false),
    };
    let copied = with_memory.and_then(|with_memory| {
        if cow {
            return crate::cow::snapshot(&dir.layer(), &staging, false).map(|()| (0, 0, with_memory));
        }
        copy_tree(&dir.upper_root(), &staging.join("root")).and_then(|a| {
            copy_tree(&dir.upper_usr(), &staging.join("usr"))
                .map(|b| (a.files + b.files, a.bytes + b.bytes, with_memory))
        })
    });
    if freeze {
        let frozen_for = started.elapsed();
        let thawed = cgroups.set_frozen(sandbox, false);
        tracing::info!(
            sandbox,
            snapshot = id,
            frozen_ms = frozen_for.as_secs_f64() * 1000.0,
            "sandbox frozen while its layer was copied"
        );
        thawed?;
    }
    let (files, bytes, with_memory) = copied?;
    // A snapshot copied nothing: its size is the data its layer holds, what a copy would write;
    // its quota group knows it, else its files are counted.
    let bytes = match cow {
        true => {
            crate::cow::referenced_bytes(&staging).ok().flatten().unwrap_or_else(|| crate::tree::data_bytes(&staging))
        }
        false => bytes,
    };
    tracing::debug!(snapshot = id, files, bytes, "layer staged");

    let mut chain = vec![id.to_string()];
    chain.extend(base_layers.iter().cloned());
    if chain.len() > MAX_CHAIN {
        flatten(layout, &staging, base_layers)?;
        chain.truncate(1);
    }
    if with_memory {
        // Where `Layout::memory_images` finds them once the layer is published. Into a
        // subvolume (the copy-on-write store's), a rename fails (EXDEV): a copy there shares the
        // images' blocks.
        if cow {
            copy_tree(&images, &staging.join("memory"))?;
            remove_all(&images)?;
        } else {
            fs::rename(&images, staging.join("memory"))?;
        }
    }
    sync_filesystem(&staging)?;
    Ok((chain, bytes))
}

/// Moves a staged layer into the layer store and commits its record (blocking: a rename, an
/// fsync and a SQLite commit). Its name moves from an older snapshot with `names_move`, else
/// clashes with a live one.
pub(super) fn publish(
    layout: &Layout,
    state: &Mutex<State>,
    record: &SnapshotRecord,
    names_move: bool,
) -> Result<(), EngineError> {
    fs::rename(layout.staging().join(&record.id), layout.layer(&record.id))
        .map_err(io_ctx("publish the layer".into()))?;
    sync_dir(&layout.layers()).map_err(io_ctx("sync the layers directory".into()))?;
    state.lock().unwrap().store.insert(record, names_move, now_ns()).map_err(|e| match e {
        InsertError::NameTaken(name) => EngineError::NameTaken(name),
        InsertError::Db(e) => EngineError::Catalog(e),
    })
}

/// Now, in Unix nanoseconds (the catalog's times).
pub(crate) fn now_ns() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_nanos() as i64).unwrap_or(0)
}

/// The sandboxes (running or paused) started from snapshot `id`, sorted.
fn users_of(state: &State, id: &str) -> Vec<String> {
    let mut users: Vec<String> = state
        .sandboxes
        .iter()
        .filter(|(_, r)| r.makeup.source.as_deref() == Some(id))
        .map(|(sid, _)| sid.clone())
        .collect();
    users.sort();
    users
}

/// Deletes the expired snapshots that no sandbox uses, then the layers nothing needs.
fn sweep_expired(layout: &Layout, state: &Mutex<State>) -> Result<Vec<String>, EngineError> {
    let deleted = {
        let mut state = state.lock().unwrap();
        let unused: Vec<String> =
            state.store.expired(now_ns())?.into_iter().filter(|id| users_of(&state, id).is_empty()).collect();
        if !unused.is_empty() {
            state.store.delete_all(&unused)?;
        }
        unused
    };
    if !deleted.is_empty() {
        tracing::info!(snapshots = ?deleted, "expired snapshots deleted");
        collect_layers(layout, state);
    }
    Ok(deleted)
}

/// Folds `below` (topmost first) into the staged layer, so that it alone stands for the whole
/// chain over the template.
pub(super) fn flatten(layout: &Layout, staging: &Path, below: &[String]) -> io::Result<()> {
    let merged = staging.with_extension("merged");
    remove_all(&merged)?;
    let bottom = layout.layer(below.last().expect("a chain to flatten"));
    // Its files only: the images of its processes (`memory/`) are its own snapshot's.
    fs::create_dir_all(&merged)?;
    for part in ["root", "usr"].map(|p| bottom.join(p)).iter().filter(|p| p.exists()) {
        copy_tree(part, &merged.join(part.file_name().expect("a part has a name")))?;
    }
    for layer in below.iter().rev().skip(1) {
        crate::merge::apply_layer(&layout.layer(layer), &merged)?;
    }
    crate::merge::apply_layer(staging, &merged)?;
    remove_all(staging)?;
    fs::rename(&merged, staging)
}

/// Removes the layer directories that neither a snapshot nor a running sandbox needs.
pub(super) fn collect_layers(layout: &Layout, state: &Mutex<State>) {
    let doomed: Vec<PathBuf> = {
        let state = state.lock().unwrap();
        let mut keep = match state.store.referenced_layers() {
            Ok(k) => k,
            Err(e) => {
                tracing::error!("reading the snapshot catalog: {e}");
                return;
            }
        };
        keep.extend(state.sandboxes.values().flat_map(|r| r.makeup.layers.iter().cloned()));
        keep.extend(state.publishing.iter().cloned());
        let Ok(entries) = fs::read_dir(layout.layers()) else { return };
        entries
            .flatten()
            .filter(|e| e.file_name().to_str().is_some_and(|n| !n.starts_with('.') && !keep.contains(n)))
            .map(|e| e.path())
            .collect()
    };
    for dir in doomed {
        tracing::debug!("removing layer {}", dir.display());
        if let Err(e) = remove_all(&dir) {
            tracing::error!("removing layer {}: {e}", dir.display());
        }
    }
}

/// A layer being published, in `State::publishing` for as long as this lives (however the
/// publishing ends: done, failed or panicked).
struct Publishing<'a> {
    state: &'a Mutex<State>,
    id: &'a str,
}

impl<'a> Publishing<'a> {
    fn start(state: &'a Mutex<State>, id: &'a str) -> Self {
        state.lock().unwrap().publishing.insert(id.to_string());
        Self { state, id }
    }
}

impl Drop for Publishing<'_> {
    fn drop(&mut self) {
        self.state.lock().unwrap_or_else(|p| p.into_inner()).publishing.remove(self.id);
    }
}
