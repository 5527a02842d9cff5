//! The seam between the control plane and the engine: the handful of engine calls the API makes.
//! The real implementation is [`sandbank_engine::Engine`]; tests use a fake.

use sandbank_engine::diff::LayerDiff;
use sandbank_engine::egress::Egress;
use sandbank_engine::engine::{ImportedSnapshot, SnapshotInfo};
use sandbank_engine::oci::Credentials;
use sandbank_engine::snapshot_archive::ArchiveError;
use sandbank_engine::{
    Engine, EngineError, Limits, ListFilter, PausedSandbox, RestoreError, Resumed, SandboxHandle, SandboxSpec,
    SandboxUsage, SnapshotMode, SnapshotOptions,
};
use std::future::Future;
use std::pin::Pin;

pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// A restore's outcome: the sandbox's new handle, or why not (and whether it is still there).
pub type Restored = Result<SandboxHandle, RestoreError>;

pub trait Backend: Send + Sync + 'static {
    fn template_exists(&self, name: &str) -> bool;
    /// The base image's name: a template build's layers over `base` are cached by it.
    fn base_image_id(&self) -> String;
    fn default_limits(&self) -> Limits;
    /// Whether sandboxes' disks are limited to their `disk_mb` (the btrfs layer store).
    fn disk_limits(&self) -> bool;
    /// Whether root in a sandbox is the host's root: sandboxes have no user namespace, as the
    /// server was told (`--no-userns`).
    fn root_is_host_root(&self) -> bool;
    fn create(&self, spec: SandboxSpec) -> BoxFuture<'_, Result<SandboxHandle, EngineError>>;
    fn kill<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<bool, EngineError>>;
    /// Freezes a running sandbox; `api` is kept with it and comes back from [`Backend::paused`].
    /// Without `keep_memory`, its processes end and only its files are kept.
    fn pause<'a>(&'a self, id: &'a str, api: String, keep_memory: bool) -> BoxFuture<'a, Result<(), EngineError>>;
    /// Thaws a paused sandbox, or starts it again on its files (always with `reboot`).
    fn resume<'a>(&'a self, id: &'a str, reboot: bool) -> BoxFuture<'a, Result<Resumed, EngineError>>;
    /// Rolls a running sandbox back to a snapshot in place (same ID); refused for a snapshot not
    /// of its lineage unless `any_lineage`.
    fn restore<'a>(&'a self, id: &'a str, snapshot: &'a str, any_lineage: bool) -> BoxFuture<'a, Restored>;
    /// The paused sandboxes, with what the API stored for each (read at start).
    fn paused(&self) -> Vec<PausedSandbox>;
    /// Replaces a running sandbox's egress rules.
    fn set_egress<'a>(&'a self, id: &'a str, rules: Egress) -> BoxFuture<'a, Result<(), EngineError>>;
    fn usage<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<SandboxUsage, EngineError>>;
    fn shutdown(&self) -> BoxFuture<'_, ()>;
    /// Captures a sandbox: its files, and with [`SnapshotMode::Full`] its processes' memory
    /// (with none, its memory where that can be taken). A name moves from an older snapshot
    /// that has it (template builds' layers).
    fn snapshot<'a>(
        &'a self,
        sandbox_id: &'a str,
        name: Option<String>,
        mode: Option<SnapshotMode>,
    ) -> BoxFuture<'a, Result<SnapshotInfo, EngineError>> {
        self.snapshot_with(sandbox_id, SnapshotOptions { name, mode, name_moves: true, ..Default::default() })
    }
    /// [`Backend::snapshot`] with labels, expiry, keep-last, and names that clash.
    fn snapshot_with<'a>(
        &'a self,
        sandbox_id: &'a str,
        opts: SnapshotOptions,
    ) -> BoxFuture<'a, Result<SnapshotInfo, EngineError>>;
    /// Live snapshots newest first, as `filter` keeps them; `after` is the previous page's
    /// last (created_at ns, id). Blocking.
    fn list_snapshots(
        &self,
        filter: &ListFilter<'_>,
        after: Option<(i64, &str)>,
        limit: u32,
    ) -> Result<Vec<SnapshotInfo>, EngineError>;
    /// `Ok(false)` when there is no such snapshot. Blocking.
    fn delete_snapshot(&self, id_or_name: &str) -> Result<bool, EngineError>;
    /// Deletes the expired snapshots no sandbox uses; their IDs. Blocking.
    fn sweep_expired_snapshots(&self) -> Result<Vec<String>, EngineError>;
    /// What a snapshot's layer changed against its parent (`None`: no such snapshot). Blocking.
    fn snapshot_diff(&self, id_or_name: &str) -> Result<Option<(SnapshotInfo, LayerDiff)>, EngineError>;
    /// Pulls an image from its registry unless it is here; `progress` gets a line per step.
    fn pull_image<'a>(
        &'a self,
        reference: &'a str,
        credentials: &'a Credentials,
        progress: &'a (dyn Fn(String) + Send + Sync),
    ) -> BoxFuture<'a, Result<PulledImage, EngineError>>;
    /// Prepares a snapshot's archive (by ID, with or without a tag, or name): what writes it.
    fn export_snapshot(&self, id_or_name: &str) -> Result<ExportJob, ArchiveError>;
    /// Imports a snapshot from an archive read from `input`; nothing is published unless it
    /// was read whole and its digest matched. Blocking.
    fn import_snapshot(&self, input: Box<dyn std::io::Read + Send>) -> Result<ImportedSnapshot, ArchiveError>;
}

/// Writes a snapshot's archive (blocking); returns its content digest.
pub type WriteArchive = Box<dyn FnOnce(&mut dyn std::io::Write) -> Result<String, ArchiveError> + Send>;

/// A snapshot's archive, ready to be written.
pub struct ExportJob {
    /// The snapshot's ID (untagged).
    pub snapshot_id: String,
    pub write: WriteArchive,
}

/// A pulled image: the template it is, and the environment its configuration gives.
#[derive(Clone, Debug)]
pub struct PulledImage {
    pub template: String,
    pub env: Vec<(String, String)>,
}

impl Backend for Engine {
    fn template_exists(&self, name: &str) -> bool {
        Engine::template_exists(self, name)
    }

    fn base_image_id(&self) -> String {
        Engine::base_image_id(self)
    }

    fn default_limits(&self) -> Limits {
        Engine::default_limits(self)
    }

    fn disk_limits(&self) -> bool {
        Engine::disk_limits(self)
    }

    fn root_is_host_root(&self) -> bool {
        self.user_namespace().is_none()
    }

    fn create(&self, spec: SandboxSpec) -> BoxFuture<'_, Result<SandboxHandle, EngineError>> {
        Box::pin(Engine::create(self, spec))
    }

    fn kill<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<bool, EngineError>> {
        Box::pin(Engine::kill(self, id))
    }

    fn pause<'a>(&'a self, id: &'a str, api: String, keep_memory: bool) -> BoxFuture<'a, Result<(), EngineError>> {
        Box::pin(Engine::pause(self, id, api, keep_memory))
    }

    fn resume<'a>(&'a self, id: &'a str, reboot: bool) -> BoxFuture<'a, Result<Resumed, EngineError>> {
        Box::pin(Engine::resume(self, id, reboot))
    }

    fn restore<'a>(&'a self, id: &'a str, snapshot: &'a str, any_lineage: bool) -> BoxFuture<'a, Restored> {
        Box::pin(Engine::restore(self, id, snapshot, any_lineage))
    }

    fn set_egress<'a>(&'a self, id: &'a str, rules: Egress) -> BoxFuture<'a, Result<(), EngineError>> {
        Box::pin(Engine::set_egress(self, id, rules))
    }

    fn paused(&self) -> Vec<PausedSandbox> {
        Engine::paused(self)
    }

    fn usage<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<SandboxUsage, EngineError>> {
        Box::pin(Engine::usage(self, id))
    }

    fn shutdown(&self) -> BoxFuture<'_, ()> {
        Box::pin(Engine::shutdown(self))
    }

    fn snapshot_with<'a>(
        &'a self,
        sandbox_id: &'a str,
        opts: SnapshotOptions,
    ) -> BoxFuture<'a, Result<SnapshotInfo, EngineError>> {
        Box::pin(Engine::snapshot_with(self, sandbox_id, opts))
    }

    fn list_snapshots(
        &self,
        filter: &ListFilter<'_>,
        after: Option<(i64, &str)>,
        limit: u32,
    ) -> Result<Vec<SnapshotInfo>, EngineError> {
        Engine::list_snapshots(self, filter, after, limit)
    }

    fn delete_snapshot(&self, id_or_name: &str) -> Result<bool, EngineError> {
        Engine::delete_snapshot(self, id_or_name)
    }

    fn sweep_expired_snapshots(&self) -> Result<Vec<String>, EngineError> {
        Engine::sweep_expired_snapshots(self)
    }

    fn snapshot_diff(&self, id_or_name: &str) -> Result<Option<(SnapshotInfo, LayerDiff)>, EngineError> {
        Engine::snapshot_diff(self, id_or_name)
    }

    fn pull_image<'a>(
        &'a self,
        reference: &'a str,
        credentials: &'a Credentials,
        progress: &'a (dyn Fn(String) + Send + Sync),
    ) -> BoxFuture<'a, Result<PulledImage, EngineError>> {
        Box::pin(async move {
            let image = Engine::pull_image(self, reference, credentials, progress).await?;
            Ok(PulledImage { template: image.template_name(), env: image.env() })
        })
    }

    fn export_snapshot(&self, id_or_name: &str) -> Result<ExportJob, ArchiveError> {
        let export = Engine::export_snapshot(self, id_or_name)?;
        Ok(ExportJob {
            snapshot_id: export.snapshot_id().to_string(),
            write: Box::new(move |out| export.write_to(out)),
        })
    }

    fn import_snapshot(&self, input: Box<dyn std::io::Read + Send>) -> Result<ImportedSnapshot, ArchiveError> {
        Engine::import_snapshot(self, input)
    }
}
