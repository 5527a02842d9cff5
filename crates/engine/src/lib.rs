//! sandbank's local sandbox runtime for Linux. It knows nothing of HTTP: the server turns API
//! calls into [`Engine`] calls.
//!
//! A sandbox is a `sandbank guest` process tree: the guest enters new mount, PID, UTS, IPC and
//! network namespaces, mounts an overlay of a writable upper layer over the template's read-only
//! layers, pivots into it and, as PID 1, serves envd on a unix socket the server reaches from
//! outside. A cgroup bounds its memory, processes and CPU. With internet access (the default,
//! when `pasta` is installed) a pasta process on the host connects its network namespace to the
//! host's network ([`net`]).

pub mod cgroup;
pub mod copy;
pub mod disk;
pub mod engine;
pub mod guest;
pub mod id;
pub mod layout;
pub mod merge;
pub mod net;
pub mod seccomp;
pub mod store;
pub mod template;

pub use engine::{Engine, EngineConfig, EngineError, Limits, PausedSandbox, Resumed, SandboxHandle, SandboxSpec, SandboxUsage, SnapshotInfo};
pub use guest::{GuestConfig, GuestInit};
