//! Why the guest could not set its sandbox up: the step that failed, and the error under it. Its
//! text is one line (the step, then the error), as the guest reports it to the engine.

pub(crate) use sandbank_engine::During;
use sandbank_engine::SysError;
use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum InitError {
    /// A system step failed (the guest's own, or one of the engine's `userns` and `mounts`).
    #[error(transparent)]
    Sys(#[from] SysError),
    #[error("parse the config on stdin: {0}")]
    Config(#[source] serde_json::Error),
    /// Building the seccomp filter failed.
    #[error("{step}: {source}")]
    SeccompFilter {
        step: &'static str,
        #[source]
        source: seccompiler::BackendError,
    },
    #[error("install the seccomp filter: {0}")]
    SeccompInstall(#[source] std::io::Error),
    #[error("the server is gone")]
    ServerGone,
    #[error("the engine did not put the sandbox in its cgroup")]
    NotInCgroup,
    /// CRIU could not restore a snapshot's processes (what its log says).
    #[error("restore the snapshot's processes: {0}")]
    Restore(String),
    #[error("{} is not in the sandbox's directory {}", .path.display(), .sandbox_dir.display())]
    OutsideSandboxDir { path: PathBuf, sandbox_dir: PathBuf },
}
