//! sandbank's local sandbox runtime for Linux. It knows nothing of HTTP: the server turns API
//! calls into [`Engine`] calls.
//!
//! A sandbox is a `sandbank guest` process tree (the guest crate): the guest mounts an overlay of a
//! writable upper layer over the template's read-only layers, starts PID 1 in new user, mount,
//! PID, UTS, IPC and network namespaces, which pivots into it and serves envd on a unix socket the
//! server reaches from outside. The engine starts it and speaks to it over its stdin and stdout
//! (`sandbank_protocol::guest`); the guest builds on the engine's [`userns`], [`mounts`] and
//! [`tree`]. Root in a sandbox is an unprivileged host user where the kernel can map the layers
//! for it ([`userns`]). A cgroup bounds its memory, processes and CPU. With internet access (the
//! default, when `pasta` is installed) a pasta process on the host connects its network namespace
//! to the host's network ([`net`]).

#![deny(unsafe_code)]

pub mod base_image;
pub mod cgroup;
mod copy;
pub mod cow;
pub mod criu;
pub mod diff;
mod disk;
pub mod egress;
pub mod engine;
mod envd_layer;
mod error;
mod guest_exe;
pub mod id;
mod layout;
mod merge;
pub mod mounts;
pub mod net;
pub mod netpool;
pub mod oci;
pub mod snapshot_archive;
mod spawner;
mod spec;
mod store;
// The one module with `unsafe`: every raw system call the engine makes.
#[allow(unsafe_code)]
mod sys;
mod template;
pub mod tree;
pub mod userns;
mod which;

pub use engine::{
    on_copy_store, Engine, EngineConfig, EngineError, LayerStore, Limits, PausedSandbox, RestoreError, RestoreRefused,
    Resumed, SandboxHandle, SandboxSpec, SandboxUsage, SnapshotInfo, SnapshotMode, SnapshotOptions, DEFAULT_DISK_MB,
};
pub use error::{During, SysError};
pub use store::{ListFilter, BUILD_SNAPSHOT_PREFIX};
pub use template::BASE as BASE_TEMPLATE;
// The guest finds the directory it stages idmapped mounts in through it (every path under the
// data directory comes from `layout`).
pub use layout::SandboxDir;
