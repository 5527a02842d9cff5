//! What the engine is asked for and what it reports: the public types of its calls.

use crate::egress::Egress;
use crate::store::SnapshotRecord;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::PathBuf;

/// Resource limits of one sandbox, as enforced.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Limits {
    pub cpu_count: u32,
    pub memory_mb: u64,
    pub pids: u32,
    /// The disk limit when the engine has one, else the free space of the data directory's
    /// filesystem.
    pub disk_mb: u64,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct SandboxSpec {
    pub id: String,
    /// A template name, or a snapshot: its ID (with or without a `:tag`) or its name.
    pub template: String,
    /// Environment variables every process in the sandbox gets.
    pub env_vars: BTreeMap<String, String>,
    /// The user and working directory of requests that name none (a template's); `None`: `user`
    /// and its home.
    #[serde(default)]
    pub default_user: Option<String>,
    #[serde(default)]
    pub default_workdir: Option<String>,
    pub limits: Limits,
    /// Outbound network through pasta. `None` (not asked): yes when pasta is installed, else
    /// loopback only; `Some(true)` without pasta is an error.
    pub allow_internet_access: Option<bool>,
    /// Where its processes may connect to (in force from its start, and again after a restart).
    #[serde(default)]
    pub egress: Egress,
}

/// A running sandbox.
#[derive(Clone, Debug)]
pub struct SandboxHandle {
    pub id: String,
    /// The template's name, or the ID of the snapshot the sandbox started from.
    pub template_id: String,
    /// envd's unix socket, reachable from the host.
    pub envd_socket: PathBuf,
    /// Becomes `true` when the sandbox's PID 1 has exited (killed, or died on its own).
    pub exited: tokio::sync::watch::Receiver<bool>,
    /// Whether it has outbound network.
    pub internet: bool,
}

/// How [`Engine::resume`] brought a paused sandbox back.
#[derive(Debug)]
pub enum Resumed {
    /// Thawed: its processes carry on where they stopped.
    Thawed,
    /// Started again on its files: it was paused without its memory, or, where there is no CRIU,
    /// when the server stopped. The handle is the new guest's.
    Restarted(SandboxHandle),
    /// Its processes restored from the images its pause wrote (with CRIU): they carry on where
    /// they stopped, in a new guest (the handle's).
    Restored(SandboxHandle),
}

/// What [`Engine::usage`] reports.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SandboxUsage {
    /// CPU time since the sandbox started, in nanoseconds.
    pub cpu_ns: u64,
    pub memory_bytes: u64,
    /// The page cache charged to it (E2B's `memCache`).
    pub memory_cache_bytes: u64,
    /// Space the files the sandbox wrote take (its own layer; the layers under it are shared).
    pub disk_bytes: u64,
}

/// A paused sandbox as [`Engine::paused`] lists it.
#[derive(Clone, Debug)]
pub struct PausedSandbox {
    pub id: String,
    /// What the API stored with [`Engine::pause`].
    pub api: String,
    pub envd_socket: PathBuf,
}

/// What a snapshot keeps.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SnapshotMode {
    /// The files only: a sandbox started from it boots afresh on them.
    Filesystem,
    /// The files, and the processes with their memory (CRIU): a sandbox started from it goes on
    /// where the origin was.
    Full,
}

/// A snapshot as the engine reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SnapshotInfo {
    /// 20 characters of `[a-z0-9]` (the API adds the `:default` tag).
    pub id: String,
    pub names: Vec<String>,
    /// The sandbox it was taken from.
    pub sandbox_id: String,
    /// The snapshot that sandbox was started from, if any.
    pub parent_id: Option<String>,
    /// Unix time in nanoseconds.
    pub created_at: i64,
    /// Bytes of file data in the layer it added.
    pub size_bytes: u64,
    pub mode: SnapshotMode,
    /// The user's labels.
    pub metadata: std::collections::BTreeMap<String, String>,
    /// When it expires (Unix nanoseconds); `None`: never.
    pub expires_at: Option<i64>,
}

/// What [`crate::Engine::snapshot_with`] takes besides the sandbox.
#[derive(Clone, Debug, Default)]
pub struct SnapshotOptions {
    pub name: Option<String>,
    /// With none, the memory where it can be taken.
    pub mode: Option<SnapshotMode>,
    pub metadata: std::collections::BTreeMap<String, String>,
    /// Unix nanoseconds; `None`: never.
    pub expires_at: Option<i64>,
    /// Keep only this many of the origin sandbox's snapshots (the new one included): older ones
    /// expire at once.
    pub keep_last: Option<u32>,
    /// The name moves from an older snapshot that has it (a template build's layers) instead
    /// of clashing with it.
    pub name_moves: bool,
}

impl From<SnapshotRecord> for SnapshotInfo {
    fn from(r: SnapshotRecord) -> Self {
        Self {
            id: r.id,
            names: r.name.into_iter().collect(),
            sandbox_id: r.origin_sandbox,
            parent_id: r.parent,
            created_at: r.created_at,
            size_bytes: r.size_bytes,
            mode: SnapshotMode::Filesystem,
            metadata: r.metadata,
            expires_at: r.expires_at,
        }
    }
}
