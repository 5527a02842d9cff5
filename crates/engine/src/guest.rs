//! The guest's side of a sandbox: what `sandbank guest` does before it serves envd.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::PathBuf;

/// Written by the engine into the sandbox's directory; read by `sandbank guest --config`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct GuestConfig {
    pub sandbox_id: String,
    pub envd_socket: PathBuf,
    pub env_vars: BTreeMap<String, String>,
}

/// What PID 1 holds once the sandbox is set up: a bound envd listener and the sandbox-wide
/// environment.
#[derive(Debug)]
pub struct GuestInit {
    pub sandbox_id: String,
    pub listener: std::os::unix::net::UnixListener,
    pub env_vars: BTreeMap<String, String>,
}

/// Enters the sandbox. Returns only in PID 1 inside it, with the root pivoted and the
/// listener bound; the launching process waits for PID 1 and exits with it.
pub fn enter(config_path: &std::path::Path) -> Result<GuestInit, String> {
    let _ = config_path;
    todo!("guest: enter")
}
