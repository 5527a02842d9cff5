//! The engine's errors: [`EngineError`], what its callers see, and [`SysError`], a step of the
//! system that failed with the OS error under it, which the modules under the engine (mounts,
//! user namespaces, pasta, nft) return and the engine and the guest carry as a source.

use std::fmt::Display;
use std::io;
use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("template {0:?} not found")]
    TemplateNotFound(String),
    #[error("sandbox {0:?} not found")]
    SandboxNotFound(String),
    #[error("data directory {path} is in use by another sandbank serve (pid {pid})")]
    Locked { path: PathBuf, pid: String },
    /// A data directory so deep that a sandbox's socket path would not fit in `sun_path`.
    #[error("data directory {} is too long: sandbox sockets would need {needed} bytes, the limit is {limit}", path.display())]
    DataDirTooLong { path: PathBuf, needed: usize, limit: usize },
    #[error("sandbox failed to start: {0}")]
    StartFailed(String),
    #[error("snapshot {0:?} not found")]
    SnapshotNotFound(String),
    /// Deleting a snapshot that sandboxes were started from and still run.
    #[error("cannot delete template '{id}' because there are running sandboxes using it: {}", sandboxes.join(", "))]
    SnapshotInUse { id: String, sandboxes: Vec<String> },
    #[error("invalid snapshot name: {0}")]
    InvalidName(String),
    #[error("snapshot of sandbox {id:?} failed: {reason}")]
    SnapshotFailed { id: String, reason: String },
    /// A snapshot that did not fit: the data directory's filesystem is full (or over quota).
    #[error("snapshot of sandbox {id:?} failed: {reason}")]
    NoSpace { id: String, reason: String },
    #[error(transparent)]
    Sys(#[from] SysError),
    #[error("snapshot catalog: {0}")]
    Catalog(#[from] rusqlite::Error),
    #[error("sandbox {0:?} is already paused")]
    AlreadyPaused(String),
    /// Egress rules that could not be put in force (no nftables, or nft refused them).
    #[error("egress rules of sandbox {id:?}: {source}")]
    Egress {
        id: String,
        #[source]
        source: crate::egress::EgressError,
    },
    /// A user namespace was asked for and this machine cannot give sandboxes one.
    #[error("sandboxes cannot have a user namespace on this machine ({0}); without one, root in a sandbox is the host's root")]
    NoUserNamespace(#[source] crate::userns::ProbeError),
}

/// A step that failed, and the system's error under it: `mount overlay on /x (…): EPERM`.
#[derive(Debug, thiserror::Error)]
#[error("{step}: {source}")]
pub struct SysError {
    pub step: String,
    #[source]
    pub source: io::Error,
}

impl SysError {
    /// The same error as part of a larger step: `idmapped mount of a on b: mount_setattr: EPERM`.
    pub fn within(self, outer: impl Display) -> SysError {
        SysError { step: format!("{outer}: {}", self.step), source: self.source }
    }
}

/// Names the step a system call's error came from: `mount(…).during("mount /proc")?`.
pub trait During<T> {
    fn during(self, step: impl Display) -> Result<T, SysError>;
}

impl<T> During<T> for io::Result<T> {
    fn during(self, step: impl Display) -> Result<T, SysError> {
        self.map_err(|source| SysError { step: step.to_string(), source })
    }
}

impl<T> During<T> for nix::Result<T> {
    fn during(self, step: impl Display) -> Result<T, SysError> {
        self.map_err(|e| SysError { step: step.to_string(), source: e.into() })
    }
}

impl<T> During<T> for rustix::io::Result<T> {
    fn during(self, step: impl Display) -> Result<T, SysError> {
        self.map_err(|e| SysError { step: step.to_string(), source: e.into() })
    }
}
