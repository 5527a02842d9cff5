//! The control plane's JSON bodies (Novita's `components.schemas`, E2B's spec/openapi.yml).

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;

/// Every error body: the SDKs test `code` (not the HTTP status) for 404 and 409.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    pub code: u16,
    pub message: String,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AutoResume {
    #[serde(default)]
    pub enabled: bool,
}

/// `POST /sandboxes`. Fields that are not listed (`mcp`, `nodeID`, `secrets`, …) are ignored.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct NewSandbox {
    #[serde(rename = "templateID")]
    pub template_id: String,
    /// Seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<u64>,
    #[serde(rename = "autoPause", default, skip_serializing_if = "Option::is_none")]
    pub auto_pause: Option<bool>,
    #[serde(rename = "autoResume", default, skip_serializing_if = "Option::is_none")]
    pub auto_resume: Option<AutoResume>,
    /// E2B: `false` makes the pause at the end time keep files only.
    #[serde(rename = "autoPauseMemory", default, skip_serializing_if = "Option::is_none")]
    pub auto_pause_memory: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secure: Option<bool>,
    #[serde(rename = "allow_internet_access", default, skip_serializing_if = "Option::is_none")]
    pub allow_internet_access: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<HashMap<String, String>>,
    #[serde(rename = "envVars", default, skip_serializing_if = "Option::is_none")]
    pub env_vars: Option<HashMap<String, String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network: Option<SandboxNetwork>,
    /// sandbank: the sandbox's disk limit, in MB, instead of the server's default (the cloud
    /// takes it from the template).
    #[serde(rename = "diskSizeMB", default, skip_serializing_if = "Option::is_none")]
    pub disk_size_mb: Option<u64>,
}

/// A sandbox's network settings (E2B's `SandboxNetworkConfig`; `PUT /sandboxes/{id}/network`
/// sends `allowOut`/`denyOut` only, and what it leaves out is cleared). Destinations are IP
/// addresses or CIDR blocks; `allowOut` may also name domains.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SandboxNetwork {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allow_out: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deny_out: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allow_public_traffic: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mask_request_host: Option<String>,
}

/// The response of create and connect.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sandbox {
    #[serde(rename = "sandboxID")]
    pub sandbox_id: String,
    #[serde(rename = "templateID")]
    pub template_id: String,
    #[serde(rename = "clientID")]
    pub client_id: String,
    #[serde(rename = "envdVersion")]
    pub envd_version: String,
    #[serde(rename = "envdAccessToken", default, skip_serializing_if = "Option::is_none")]
    pub envd_access_token: Option<String>,
    #[serde(rename = "trafficAccessToken", default)]
    pub traffic_access_token: Option<String>,
    #[serde(default)]
    pub domain: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alias: Option<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SandboxState {
    Running,
    Paused,
}

impl SandboxState {
    pub fn as_str(self) -> &'static str {
        match self {
            SandboxState::Running => "running",
            SandboxState::Paused => "paused",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "running" => Some(SandboxState::Running),
            "paused" => Some(SandboxState::Paused),
            _ => None,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lifecycle {
    #[serde(rename = "autoResume")]
    pub auto_resume: bool,
    #[serde(rename = "onTimeout")]
    pub on_timeout: String,
}

/// An item of `GET /v2/sandboxes`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ListedSandbox {
    #[serde(rename = "sandboxID")]
    pub sandbox_id: String,
    #[serde(rename = "templateID")]
    pub template_id: String,
    #[serde(rename = "clientID")]
    pub client_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alias: Option<String>,
    #[serde(rename = "startedAt")]
    pub started_at: DateTime<Utc>,
    #[serde(rename = "endAt")]
    pub end_at: DateTime<Utc>,
    pub state: SandboxState,
    #[serde(rename = "cpuCount")]
    pub cpu_count: u32,
    #[serde(rename = "memoryMB")]
    pub memory_mb: u64,
    #[serde(rename = "diskSizeMB")]
    pub disk_size_mb: u64,
    #[serde(rename = "envdVersion")]
    pub envd_version: String,
    #[serde(default)]
    pub metadata: HashMap<String, String>,
}

/// `GET /sandboxes/{id}`: a listed sandbox and what only the detail carries.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SandboxDetail {
    #[serde(flatten)]
    pub base: ListedSandbox,
    #[serde(rename = "envdAccessToken", default, skip_serializing_if = "Option::is_none")]
    pub envd_access_token: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub domain: Option<String>,
    #[serde(rename = "allowInternetAccess", default, skip_serializing_if = "Option::is_none")]
    pub allow_internet_access: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lifecycle: Option<Lifecycle>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network: Option<SandboxNetwork>,
    /// sandbank's own: root in the sandbox is the host's root (a server started with
    /// `--no-userns`). The cloud does not send it.
    #[serde(rename = "rootIsHostRoot", default, skip_serializing_if = "Option::is_none")]
    pub root_is_host_root: Option<bool>,
}

/// An item of `GET /sandboxes/{id}/metrics`. Bytes; `cpuUsedPct` is of all its CPUs.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SandboxMetric {
    pub timestamp: DateTime<Utc>,
    /// Unix seconds.
    #[serde(rename = "timestampUnix")]
    pub timestamp_unix: i64,
    #[serde(rename = "cpuCount")]
    pub cpu_count: u32,
    #[serde(rename = "cpuUsedPct")]
    pub cpu_used_pct: f64,
    #[serde(rename = "memUsed")]
    pub mem_used: u64,
    #[serde(rename = "memTotal")]
    pub mem_total: u64,
    /// Page cache, bytes (required by E2B's spec: its Python client fails without it).
    #[serde(rename = "memCache")]
    pub mem_cache: u64,
    #[serde(rename = "diskUsed")]
    pub disk_used: u64,
    #[serde(rename = "diskTotal")]
    pub disk_total: u64,
}

/// `GET /sandboxes/metrics`: a sample of each running sandbox asked for, by ID.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SandboxesWithMetrics {
    pub sandboxes: std::collections::BTreeMap<String, SandboxMetric>,
}

/// `POST /sandboxes/{id}/refreshes`: seconds to extend its life by.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RefreshBody {
    #[serde(default)]
    pub duration: Option<u64>,
}

/// A sandbox log entry's level, lowest first.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogLevel {
    Debug,
    Info,
    Warn,
    Error,
}

impl LogLevel {
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "debug" => Some(Self::Debug),
            "info" => Some(Self::Info),
            "warn" => Some(Self::Warn),
            "error" => Some(Self::Error),
            _ => None,
        }
    }
}

/// One structured sandbox log entry.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SandboxLogEntry {
    pub timestamp: DateTime<Utc>,
    pub level: LogLevel,
    pub message: String,
    pub fields: std::collections::BTreeMap<String, String>,
}

/// A log line of the deprecated `GET /sandboxes/{id}/logs`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SandboxLog {
    pub timestamp: DateTime<Utc>,
    pub line: String,
}

/// `GET /sandboxes/{id}/logs`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SandboxLogs {
    pub logs: Vec<SandboxLog>,
    #[serde(rename = "logEntries")]
    pub log_entries: Vec<SandboxLogEntry>,
}

/// `GET /v2/sandboxes/{id}/logs`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SandboxLogsV2 {
    pub logs: Vec<SandboxLogEntry>,
}

/// `POST /sandboxes/{id}/timeout`. Seconds.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TimeoutBody {
    pub timeout: u64,
}

/// `POST /sandboxes/{id}/connect`. Seconds; only ever extends a running sandbox's end time.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConnectSandbox {
    pub timeout: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secure: Option<bool>,
}

/// `POST /sandboxes/{id}/fork` (E2B) and `/clone` (Novita): how many copies, and their timeout.
/// Novita's `nodeID` is accepted and not read (one node).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CopyRequest {
    /// Signed, so that a count below 1 is reported as such rather than as bad JSON.
    #[serde(default)]
    pub count: Option<i64>,
    #[serde(default)]
    pub timeout: Option<i64>,
    /// Novita's clone: all copies or none.
    #[serde(default)]
    pub strict: Option<bool>,
}

/// One entry of E2B's fork response: the sandbox, or why it did not start.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ForkResult {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sandbox: Option<Sandbox>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<CodeMessage>,
}

/// An error as the API's JSON bodies carry it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CodeMessage {
    pub code: u16,
    pub message: String,
}

/// Novita's clone response.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CloneResult {
    pub sandboxes: Vec<Sandbox>,
    #[serde(rename = "snapshotTemplateId")]
    pub snapshot_template_id: String,
}

/// `POST /sandboxes/{id}/pause` (E2B may send it): `memory: false` keeps the files only; so does
/// `mode: "filesystem"`, as a snapshot's `mode` says (`"full"`: with memory, the default).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PauseBody {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<String>,
}

/// `GET /snapshots/{id}/diff` (sandbank's): the paths a snapshot added, changed and removed
/// against its parent (the template when it has none), as the sandbox sees them, sorted.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotDiff {
    #[serde(rename = "snapshotID")]
    pub snapshot_id: String,
    #[serde(rename = "parentSnapshotID", default)]
    pub parent_snapshot_id: Option<String>,
    #[serde(default)]
    pub added: Vec<String>,
    #[serde(default)]
    pub changed: Vec<String>,
    #[serde(default)]
    pub removed: Vec<String>,
}

/// `POST /sandboxes/{id}/restore` (sandbank's): roll the sandbox back to a snapshot in place.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RestoreSandbox {
    /// The snapshot's ID (with or without its `:tag`) or name.
    #[serde(rename = "snapshotID", default)]
    pub snapshot_id: String,
    /// Restore a snapshot that is not of the sandbox's lineage too.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub force: Option<bool>,
}

/// `POST /v2/sandboxes/{id}/connect` (the E2B SDK): the timeout may be left out.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConnectSandboxV2 {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<u64>,
    /// `false` asks for a reboot instead of a memory resume; meaningless for a running sandbox.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory: Option<bool>,
}

/// `POST /sandboxes/{id}/resume` (deprecated in favour of connect).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResumedSandbox {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<u64>,
    #[serde(rename = "autoPause", default, skip_serializing_if = "Option::is_none")]
    pub auto_pause: Option<bool>,
}

/// `POST /sandboxes/{id}/snapshots`. The Novita SDK sends `{}`; the E2B SDK may name it;
/// sandbank's SDK may add `metadata` and `ttl`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewSnapshot {
    /// Unique among live snapshots; usable as a `templateID`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// `full` (files, processes and memory) or `filesystem` (files only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<String>,
    /// Labels, string to string. Values as JSON, so that the server can name one that is not
    /// a string.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<std::collections::BTreeMap<String, serde_json::Value>>,
    /// Seconds until it expires; 0: never (even with the server's default); none: the
    /// server's default (`sandbank serve --snapshot-ttl`, none by default).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttl: Option<u64>,
}

/// `GET /templates/aliases/{alias}`: the template an alias names.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TemplateAlias {
    #[serde(rename = "templateID")]
    pub template_id: String,
    pub public: bool,
}

/// `GET /templates`: one template (E2B's `Template`). sandbank serves the templates it built;
/// `createdBy` is always null (no teams here).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TemplateInfo {
    #[serde(rename = "templateID")]
    pub template_id: String,
    /// The last build that is ready (else the last build).
    #[serde(rename = "buildID")]
    pub build_id: String,
    /// `waiting`, `building`, `ready` or `error`: the last build's.
    pub build_status: String,
    pub build_count: u32,
    #[serde(default)]
    pub aliases: Vec<String>,
    /// `name:tag` for each tag.
    #[serde(default)]
    pub names: Vec<String>,
    pub cpu_count: u32,
    #[serde(rename = "memoryMB")]
    pub memory_mb: u64,
    #[serde(rename = "diskSizeMB")]
    pub disk_size_mb: u64,
    pub public: bool,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    #[serde(default)]
    pub created_by: Option<serde_json::Value>,
    #[serde(default)]
    pub last_spawned_at: Option<DateTime<Utc>>,
    #[serde(default)]
    pub spawn_count: u64,
    #[serde(default)]
    pub envd_version: String,
}

/// A snapshot as the API reports it: `snapshotID` is `<id>:<tag>`, usable as a `templateID`;
/// `names` never carry the tag. The SDKs read only those two; the rest is sandbank's.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotInfo {
    #[serde(rename = "snapshotID")]
    pub snapshot_id: String,
    #[serde(default)]
    pub names: Vec<String>,
    /// The sandbox it was taken from.
    #[serde(rename = "sandboxID", default, skip_serializing_if = "Option::is_none")]
    pub sandbox_id: Option<String>,
    /// The snapshot that sandbox was started from (lineage).
    #[serde(rename = "parentSnapshotID", default, skip_serializing_if = "Option::is_none")]
    pub parent_snapshot_id: Option<String>,
    #[serde(rename = "createdAt", default, skip_serializing_if = "Option::is_none")]
    pub created_at: Option<DateTime<Utc>>,
    /// Bytes of file data the snapshot added.
    #[serde(rename = "sizeBytes", default, skip_serializing_if = "Option::is_none")]
    pub size_bytes: Option<u64>,
    /// What was captured: `full` (files, processes and memory) or `filesystem` (files only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<String>,
    /// The labels it was created with (`{}` when none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<std::collections::BTreeMap<String, String>>,
    /// When it expires: it is then no longer listed nor found, and deleted once no sandbox
    /// uses it. `null`: never.
    #[serde(rename = "expiresAt", default)]
    pub expires_at: Option<DateTime<Utc>>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn new_sandbox_reads_the_sdk_default_body() {
        let body = r#"{"templateID":"base","metadata":{"k":"v"},"envVars":{"A":"1"},"timeout":300,"secure":true,"allow_internet_access":true,"autoPause":false,"mcp":null}"#;
        let s: NewSandbox = serde_json::from_str(body).unwrap();
        assert_eq!(s.template_id, "base");
        assert_eq!(s.timeout, Some(300));
        assert_eq!(s.env_vars.unwrap()["A"], "1");
        assert_eq!(s.allow_internet_access, Some(true));
    }

    #[test]
    fn wrong_types_are_rejected_with_the_field_named() {
        let err = serde_json::from_str::<NewSandbox>(r#"{"templateID":"base","timeout":"soon"}"#).unwrap_err();
        assert!(err.to_string().contains("invalid type"), "{err}");
        let err = serde_json::from_str::<NewSandbox>(r#"{"timeout":3}"#).unwrap_err();
        assert!(err.to_string().contains("templateID"), "{err}");
    }
}
