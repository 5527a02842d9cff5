//! Why the guest could not set its sandbox up: the step that failed, and the error under it. Its
//! text is one line (the step, then the error), as the guest reports it to the engine.

use std::fmt::Display;
use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum InitError {
    /// A system call (through nix) failed.
    #[error("{step}: {source}")]
    Sys {
        step: String,
        #[source]
        source: nix::errno::Errno,
    },
    /// A file, descriptor or rustix call failed.
    #[error("{step}: {source}")]
    Io {
        step: String,
        #[source]
        source: std::io::Error,
    },
    /// A namespace or mount step of the engine's (`userns`, `mounts`), which says why in words.
    #[error("{0}")]
    Engine(String),
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
    SeccompInstall(#[source] seccompiler::Error),
    #[error("the server is gone")]
    ServerGone,
    #[error("the engine did not put the sandbox in its cgroup")]
    NotInCgroup,
    #[error("bad envd socket path {}", .0.display())]
    BadSocketPath(PathBuf),
    #[error("{} is not in the sandbox's directory {}", .path.display(), .sandbox_dir.display())]
    OutsideSandboxDir { path: PathBuf, sandbox_dir: PathBuf },
}

/// Names the step a system call's error came from: `mount(…).during("mount /proc")?`.
pub(crate) trait During<T> {
    fn during(self, step: impl Display) -> Result<T, InitError>;
}

impl<T> During<T> for nix::Result<T> {
    fn during(self, step: impl Display) -> Result<T, InitError> {
        self.map_err(|source| InitError::Sys { step: step.to_string(), source })
    }
}

impl<T> During<T> for std::io::Result<T> {
    fn during(self, step: impl Display) -> Result<T, InitError> {
        self.map_err(|source| InitError::Io { step: step.to_string(), source })
    }
}

impl<T> During<T> for rustix::io::Result<T> {
    fn during(self, step: impl Display) -> Result<T, InitError> {
        self.map_err(|e| InitError::Io { step: step.to_string(), source: e.into() })
    }
}
