//! [`EngineError`]: what the engine's callers see go wrong, with the lower modules' errors as
//! sources.

use crate::error::SysError;
use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("template {0:?} not found")]
    TemplateNotFound(String),
    #[error("sandbox {0:?} not found")]
    SandboxNotFound(String),
    #[error("data directory {path} is in use by another sandbank serve (pid {pid})")]
    Locked { path: PathBuf, pid: String },
    #[error(transparent)]
    DataDirTooLong(#[from] crate::layout::DataDirTooLong),
    #[error("sandbox failed to start: {0}")]
    StartFailed(String),
    #[error("snapshot {0:?} not found")]
    SnapshotNotFound(String),
    /// Deleting a snapshot that sandboxes were started from and still run.
    #[error("cannot delete template '{id}' because there are running sandboxes using it: {}", sandboxes.join(", "))]
    SnapshotInUse { id: String, sandboxes: Vec<String> },
    #[error("invalid snapshot name: {0}")]
    InvalidName(String),
    /// A live snapshot has the name a new one asked for.
    #[error("a snapshot named {0:?} exists already: delete it first or choose another name")]
    NameTaken(String),
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
    /// A snapshot with memory was asked for where CRIU cannot take one.
    #[error("snapshots with memory need CRIU: {0}")]
    NoCriu(String),
    /// The base image is not there and could not be built.
    #[error(transparent)]
    BaseImage(#[from] crate::base_image::BaseImageError),
    /// An image could not be pulled from its registry.
    #[error(transparent)]
    Image(#[from] crate::oci::ImageError),
}
