//! The engine: creates, tracks and destroys sandboxes in one data directory.

use std::collections::BTreeMap;
use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("template {0:?} not found")]
    TemplateNotFound(String),
    #[error("sandbox {0:?} not found")]
    SandboxNotFound(String),
    #[error("data directory {path} is in use by another sandbank serve (pid {pid})")]
    Locked { path: PathBuf, pid: String },
    #[error("sandbox failed to start: {0}")]
    StartFailed(String),
    #[error("{context}: {source}")]
    Io { context: String, source: std::io::Error },
}

/// Where the engine keeps its state, and the `sandbank` executable it starts as each guest.
#[derive(Clone, Debug)]
pub struct EngineConfig {
    pub data_dir: PathBuf,
    pub guest_exe: PathBuf,
}

/// Resource limits of one sandbox, as enforced.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    pub cpu_count: u32,
    pub memory_mb: u64,
    pub pids: u32,
    /// Not enforced yet: the free space of the data directory's filesystem.
    pub disk_mb: u64,
}

#[derive(Clone, Debug)]
pub struct SandboxSpec {
    pub id: String,
    pub template: String,
    /// Environment variables every process in the sandbox gets.
    pub env_vars: BTreeMap<String, String>,
    pub limits: Limits,
}

/// A running sandbox.
#[derive(Clone, Debug)]
pub struct SandboxHandle {
    pub id: String,
    /// envd's unix socket, reachable from the host.
    pub envd_socket: PathBuf,
    /// Becomes `true` when the sandbox's PID 1 has exited (killed, or died on its own).
    pub exited: tokio::sync::watch::Receiver<bool>,
}

/// The engine of one data directory. Cheap to share behind an `Arc`.
#[derive(Debug)]
pub struct Engine {
    config: EngineConfig,
}

impl Engine {
    /// Takes the data directory's lock, removes what a crashed server left behind, prepares
    /// the templates and the cgroup parent.
    pub fn open(config: EngineConfig) -> Result<Self, EngineError> {
        let _ = &config;
        todo!("engine: open")
    }

    pub fn data_dir(&self) -> &std::path::Path {
        &self.config.data_dir
    }

    pub fn template_exists(&self, name: &str) -> bool {
        let _ = name;
        todo!("engine: template_exists")
    }

    /// The limits a sandbox gets when the request names none.
    pub fn default_limits(&self) -> Limits {
        todo!("engine: default_limits")
    }

    /// Starts a sandbox; returns once its envd socket accepts connections.
    pub async fn create(&self, spec: SandboxSpec) -> Result<SandboxHandle, EngineError> {
        let _ = spec;
        todo!("engine: create")
    }

    /// Kills a sandbox and removes everything it had: processes, cgroup, directories.
    /// `Ok(false)` when no such sandbox runs.
    pub async fn kill(&self, id: &str) -> Result<bool, EngineError> {
        let _ = id;
        todo!("engine: kill")
    }

    /// Kills every sandbox and removes the cgroup parent: the server is stopping.
    pub async fn shutdown(&self) {
        todo!("engine: shutdown")
    }
}
