//! Sandbox logs: `GET /sandboxes/{id}/logs` (deprecated) and `GET /v2/sandboxes/{id}/logs`.
//! What the server saw of each sandbox (its lifecycle, and each envd request with its answer's
//! status), newest kept, at most [`MAX_ENTRIES`] a sandbox; gone with the sandbox.

use super::error::ApiError;
use super::extract::{query_pairs, SandboxId};
use super::AppState;
use axum::extract::{RawQuery, State};
use axum::Json;
use chrono::{DateTime, Utc};
use sandbank_protocol::rest::{LogLevel, SandboxLog, SandboxLogEntry, SandboxLogs, SandboxLogsV2};
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Mutex;

/// Entries kept per sandbox; older ones go first.
pub const MAX_ENTRIES: usize = 1000;

#[derive(Debug, Default)]
pub struct Logs {
    by_sandbox: Mutex<HashMap<String, VecDeque<SandboxLogEntry>>>,
}

impl Logs {
    pub fn record(&self, id: &str, level: LogLevel, message: &str, fields: &[(&str, &str)]) {
        let entry = SandboxLogEntry {
            timestamp: Utc::now(),
            level,
            message: message.to_string(),
            fields: fields.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect::<BTreeMap<_, _>>(),
        };
        let mut all = self.by_sandbox.lock().unwrap_or_else(|p| p.into_inner());
        let log = all.entry(id.to_string()).or_default();
        if log.len() == MAX_ENTRIES {
            log.pop_front();
        }
        log.push_back(entry);
    }

    pub fn forget(&self, id: &str) {
        self.by_sandbox.lock().unwrap_or_else(|p| p.into_inner()).remove(id);
    }

    /// Oldest first.
    fn entries(&self, id: &str) -> Vec<SandboxLogEntry> {
        let all = self.by_sandbox.lock().unwrap_or_else(|p| p.into_inner());
        all.get(id).map(|l| l.iter().cloned().collect()).unwrap_or_default()
    }
}

/// A query's integer parameter, `None` when absent or empty.
fn number(pairs: &[(String, String)], key: &str) -> Result<Option<i64>, ApiError> {
    match pairs.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str()).filter(|v| !v.is_empty()) {
        None => Ok(None),
        Some(v) => match v.parse::<i64>() {
            Ok(n) if n >= 0 => Ok(Some(n)),
            _ => Err(ApiError::BadRequest(format!("Invalid {key} {v:?}: must be a non-negative integer"))),
        },
    }
}

fn limit(pairs: &[(String, String)]) -> Result<usize, ApiError> {
    Ok(number(pairs, "limit")?.map_or(MAX_ENTRIES, |n| (n as usize).min(MAX_ENTRIES)))
}

fn known(state: &AppState, id: &str) -> Result<(), ApiError> {
    state.registry.get(id).map(|_| ()).ok_or_else(|| ApiError::SandboxNotFound(id.to_string()))
}

fn millis(ms: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(ms).unwrap_or(DateTime::<Utc>::MAX_UTC)
}

/// `GET /sandboxes/{id}/logs?start=<ms>&limit=`: oldest first, from `start` on.
pub async fn v1(
    State(state): State<AppState>,
    SandboxId(id): SandboxId,
    RawQuery(q): RawQuery,
) -> Result<Json<SandboxLogs>, ApiError> {
    let pairs = query_pairs(q.as_deref())?;
    let (start, limit) = (number(&pairs, "start")?.map(millis), limit(&pairs)?);
    known(&state, &id)?;
    let entries: Vec<SandboxLogEntry> =
        state.logs.entries(&id).into_iter().filter(|e| start.is_none_or(|s| e.timestamp >= s)).take(limit).collect();
    let logs = entries.iter().map(|e| SandboxLog { timestamp: e.timestamp, line: line(e) }).collect();
    Ok(Json(SandboxLogs { logs, log_entries: entries }))
}

/// The one-line form of an entry (v1's `logs`): its message and fields as `key=value`.
fn line(e: &SandboxLogEntry) -> String {
    let fields: Vec<String> = e.fields.iter().map(|(k, v)| format!("{k}={v}")).collect();
    if fields.is_empty() {
        e.message.clone()
    } else {
        format!("{} {}", e.message, fields.join(" "))
    }
}

/// `GET /v2/sandboxes/{id}/logs?cursor=<ms>&limit=&direction=forward|backward&level=&search=`:
/// `backward` (the default) is newest first up to the cursor (default: now), `forward` oldest
/// first from it; `level` is the lowest level shown; `search` a case-sensitive substring.
pub async fn v2(
    State(state): State<AppState>,
    SandboxId(id): SandboxId,
    RawQuery(q): RawQuery,
) -> Result<Json<SandboxLogsV2>, ApiError> {
    let pairs = query_pairs(q.as_deref())?;
    let get = |key: &str| pairs.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str()).filter(|v| !v.is_empty());
    let (cursor, limit) = (number(&pairs, "cursor")?.map(millis), limit(&pairs)?);
    let forward = match get("direction") {
        None | Some("backward") => false,
        Some("forward") => true,
        Some(d) => {
            return Err(ApiError::BadRequest(format!("Invalid direction {d:?}: must be \"forward\" or \"backward\"")))
        }
    };
    let level = match get("level") {
        None => LogLevel::Debug,
        Some(l) => LogLevel::parse(l)
            .ok_or_else(|| ApiError::BadRequest(format!("Invalid level {l:?}: must be debug, info, warn or error")))?,
    };
    let search = get("search").unwrap_or("");
    if search.len() > 256 {
        return Err(ApiError::BadRequest(format!("Invalid search: {} bytes, at most 256", search.len())));
    }
    known(&state, &id)?;
    let wanted = |e: &SandboxLogEntry| e.level >= level && e.message.contains(search);
    let mut entries = state.logs.entries(&id);
    if forward {
        entries.retain(|e| cursor.is_none_or(|c| e.timestamp >= c) && wanted(e));
    } else {
        entries.retain(|e| cursor.is_none_or(|c| e.timestamp <= c) && wanted(e));
        entries.reverse();
    }
    entries.truncate(limit);
    Ok(Json(SandboxLogsV2 { logs: entries }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_newest_entries_of_each_sandbox() {
        let logs = Logs::default();
        for i in 0..MAX_ENTRIES + 5 {
            logs.record("a", LogLevel::Info, &format!("m{i}"), &[]);
        }
        logs.record("b", LogLevel::Warn, "other", &[("k", "v")]);
        let a = logs.entries("a");
        assert_eq!(a.len(), MAX_ENTRIES);
        assert_eq!(a[0].message, "m5");
        assert_eq!(line(&logs.entries("b")[0]), "other k=v");
        logs.forget("a");
        assert!(logs.entries("a").is_empty());
    }
}
