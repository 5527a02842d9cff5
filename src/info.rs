//! What the addon hands JS about sandboxes and snapshots: the client's types with times as epoch
//! milliseconds (the JS layer makes `Date`s of them).

use napi_derive::napi;
use sandbank_client::SandboxInfoLifecycle;
use sandbank_client::{SandboxInfo, SandboxMetrics, SnapshotInfo};
use std::collections::HashMap;

#[napi(object)]
pub struct SandboxInfoLifecycleJs {
    pub on_timeout: String,
    pub auto_resume: bool,
}

/// `SandboxInfo` with times as epoch milliseconds.
#[napi(object)]
pub struct SandboxInfoJs {
    pub sandbox_id: String,
    pub template_id: String,
    pub name: Option<String>,
    pub metadata: HashMap<String, String>,
    pub started_at: f64,
    pub end_at: f64,
    pub state: String,
    pub cpu_count: u32,
    pub memory_mb: f64,
    pub envd_version: String,
    pub allow_internet_access: Option<bool>,
    pub lifecycle: Option<SandboxInfoLifecycleJs>,
    /// Only from `getFullInfo` (the static `getInfo`'s response carries it too; JS drops it).
    pub envd_access_token: Option<String>,
    pub sandbox_domain: Option<String>,
    pub root_is_host_root: Option<bool>,
}

impl From<SandboxInfo> for SandboxInfoJs {
    fn from(i: SandboxInfo) -> Self {
        SandboxInfoJs {
            sandbox_id: i.sandbox_id,
            template_id: i.template_id,
            name: i.name,
            metadata: i.metadata,
            started_at: i.started_at.timestamp_millis() as f64,
            end_at: i.end_at.timestamp_millis() as f64,
            state: i.state,
            cpu_count: i.cpu_count,
            memory_mb: i.memory_mb as f64,
            envd_version: i.envd_version,
            allow_internet_access: i.allow_internet_access,
            lifecycle: i.lifecycle.map(|SandboxInfoLifecycle { on_timeout, auto_resume }| SandboxInfoLifecycleJs {
                on_timeout,
                auto_resume,
            }),
            envd_access_token: i.envd_access_token,
            sandbox_domain: i.sandbox_domain,
            root_is_host_root: i.root_is_host_root,
        }
    }
}

/// `SnapshotInfo` with `createdAt` and `expiresAt` as epoch milliseconds.
#[napi(object)]
pub struct SnapshotInfoJs {
    pub snapshot_id: String,
    pub names: Vec<String>,
    pub sandbox_id: Option<String>,
    pub parent_snapshot_id: Option<String>,
    pub created_at: Option<f64>,
    pub size_bytes: Option<f64>,
    pub mode: Option<String>,
    pub metadata: Option<HashMap<String, String>>,
    pub expires_at: Option<f64>,
}

impl From<SnapshotInfo> for SnapshotInfoJs {
    fn from(s: SnapshotInfo) -> Self {
        SnapshotInfoJs {
            snapshot_id: s.snapshot_id,
            names: s.names,
            sandbox_id: s.sandbox_id,
            parent_snapshot_id: s.parent_snapshot_id,
            created_at: s.created_at.map(|t| t.timestamp_millis() as f64),
            size_bytes: s.size_bytes.map(|b| b as f64),
            mode: s.mode,
            metadata: s.metadata.map(|m| m.into_iter().collect()),
            expires_at: s.expires_at.map(|t| t.timestamp_millis() as f64),
        }
    }
}

/// `SandboxMetrics` with `timestamp` as epoch milliseconds.
#[napi(object)]
pub struct SandboxMetricsJs {
    pub timestamp: f64,
    pub cpu_used_pct: f64,
    pub cpu_count: f64,
    pub mem_used: f64,
    pub mem_total: f64,
    pub disk_used: f64,
    pub disk_total: f64,
}

impl From<SandboxMetrics> for SandboxMetricsJs {
    fn from(m: SandboxMetrics) -> Self {
        SandboxMetricsJs {
            timestamp: m.timestamp.timestamp_millis() as f64,
            cpu_used_pct: m.cpu_used_pct,
            cpu_count: m.cpu_count,
            mem_used: m.mem_used,
            mem_total: m.mem_total,
            disk_used: m.disk_used,
            disk_total: m.disk_total,
        }
    }
}
