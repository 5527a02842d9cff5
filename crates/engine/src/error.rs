//! [`SysError`]: a step of the system that failed, with the OS error under it. The modules under
//! the engine (mounts, user namespaces, pasta, nft) return it; [`crate::EngineError`] and the
//! guest's errors carry it as a source. A leaf: it names nothing else of the crate.

use std::fmt::Display;
use std::io;

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
