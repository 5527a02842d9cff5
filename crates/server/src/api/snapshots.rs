//! Snapshots: `POST /sandboxes/{id}/snapshots`, `GET /snapshots`, `DELETE /templates/{id}`.
//! A snapshot ID is `<id>:default`; it, the bare ID or the snapshot's name start sandboxes as a
//! `templateID`. A snapshot may carry a name (unique among live snapshots), labels
//! (`metadata`, a string map the list filters on) and an expiry (`ttl`, or the server's
//! [`SnapshotPolicy`]); an expired one is neither listed nor found, and is deleted (by
//! [`spawn_sweep`]) once no sandbox uses it.

use super::error::ApiError;
use super::extract::{query_pairs, JsonBodyOrDefault, SandboxId};
use super::AppState;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use chrono::DateTime;
use sandbank_engine::{ListFilter, SnapshotInfo as EngineSnapshot, SnapshotMode, SnapshotOptions};
use sandbank_protocol::metadata::decode_filter;
use sandbank_protocol::pagination::{parse_limit, PageToken};
use sandbank_protocol::rest::{LogLevel, NewSnapshot, SnapshotInfo};
use std::collections::BTreeMap;
use std::time::Duration;

/// The only tag the local engine makes.
pub const TAG: &str = "default";

/// What `sandbank serve` does with the snapshots users take: a default time to live
/// (`--snapshot-ttl`) and how many of each sandbox's snapshots to keep (`--keep-last`).
#[derive(Clone, Copy, Debug, Default)]
pub struct SnapshotPolicy {
    pub default_ttl: Option<Duration>,
    pub keep_last: Option<u32>,
}

/// The most labels a snapshot carries, and their sizes (bytes).
const MAX_LABELS: usize = 64;
const MAX_KEY: usize = 128;
const MAX_VALUE: usize = 1024;

/// A snapshot's labels as requested: string keys to string values of sane sizes; a 400 names
/// the first that is not.
fn labels(metadata: Option<BTreeMap<String, serde_json::Value>>) -> Result<BTreeMap<String, String>, ApiError> {
    let metadata = metadata.unwrap_or_default();
    if metadata.len() > MAX_LABELS {
        return Err(ApiError::BadRequest(format!(
            "Invalid metadata: {} entries, at most {MAX_LABELS}",
            metadata.len()
        )));
    }
    let mut out = BTreeMap::new();
    for (k, v) in metadata {
        if k.is_empty() || k.len() > MAX_KEY || k.chars().any(char::is_control) {
            return Err(ApiError::BadRequest(format!(
                "Invalid metadata key {k:?}: use 1-{MAX_KEY} bytes without control characters"
            )));
        }
        let serde_json::Value::String(v) = v else {
            return Err(ApiError::BadRequest(format!("Invalid metadata value for key {k:?}: {v} is not a string")));
        };
        if v.len() > MAX_VALUE {
            return Err(ApiError::BadRequest(format!(
                "Invalid metadata value for key {k:?}: {} bytes, at most {MAX_VALUE}",
                v.len()
            )));
        }
        out.insert(k, v);
    }
    Ok(out)
}

/// When a snapshot made now expires (Unix ns): after `ttl` seconds (0: never), or the server's
/// default.
fn expiry(ttl: Option<u64>, policy: &SnapshotPolicy) -> Result<Option<i64>, ApiError> {
    let ttl = match ttl {
        Some(0) => return Ok(None),
        Some(s) => Duration::from_secs(s),
        None => match policy.default_ttl {
            Some(d) => d,
            None => return Ok(None),
        },
    };
    let ns = i64::try_from(ttl.as_nanos()).ok().and_then(|d| chrono::Utc::now().timestamp_nanos_opt()?.checked_add(d));
    ns.map(Some).ok_or_else(|| ApiError::BadRequest(format!("Invalid ttl {}: too far in the future", ttl.as_secs())))
}

/// Deletes expired snapshots that no sandbox uses, every `every` (they are hidden from the
/// moment they expire; this frees their space).
pub fn spawn_sweep(state: &AppState, every: Duration) -> tokio::task::JoinHandle<()> {
    let backend = state.backend.clone();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let backend = backend.clone();
            match tokio::task::spawn_blocking(move || backend.sweep_expired_snapshots()).await {
                Ok(Ok(_)) => {}
                Ok(Err(e)) => tracing::warn!("deleting expired snapshots: {e}"),
                Err(e) => tracing::warn!("deleting expired snapshots: {e}"),
            }
        }
    })
}

/// How the API spells a snapshot's mode.
fn mode_name(mode: SnapshotMode) -> &'static str {
    match mode {
        SnapshotMode::Full => "full",
        SnapshotMode::Filesystem => "filesystem",
    }
}

/// The mode a request names (`full` or `filesystem`); none: with memory where it can be taken,
/// as the cloud does.
pub(super) fn parse_mode(mode: Option<&str>) -> Result<Option<SnapshotMode>, ApiError> {
    match mode {
        None => Ok(None),
        Some("filesystem") => Ok(Some(SnapshotMode::Filesystem)),
        Some("full") => Ok(Some(SnapshotMode::Full)),
        Some(other) => Err(ApiError::BadRequest(format!("Invalid mode {other:?}: must be \"full\" or \"filesystem\""))),
    }
}

pub(super) fn body(s: &EngineSnapshot) -> SnapshotInfo {
    SnapshotInfo {
        snapshot_id: format!("{}:{TAG}", s.id),
        names: s.names.clone(),
        sandbox_id: Some(s.sandbox_id.clone()),
        parent_snapshot_id: s.parent_id.as_ref().map(|p| format!("{p}:{TAG}")),
        created_at: Some(DateTime::from_timestamp_nanos(s.created_at)),
        size_bytes: Some(s.size_bytes),
        mode: Some(mode_name(s.mode).into()),
        metadata: Some(s.metadata.clone()),
        expires_at: s.expires_at.map(DateTime::from_timestamp_nanos),
    }
}

fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 128
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
        && !sandbank_engine::id::is_valid(name)
}

pub async fn create(
    State(state): State<AppState>,
    SandboxId(id): SandboxId,
    JsonBodyOrDefault(req): JsonBodyOrDefault<NewSnapshot>,
) -> Result<(StatusCode, Json<SnapshotInfo>), ApiError> {
    let name = req.name.filter(|n| !n.is_empty());
    if let Some(n) = &name {
        if !valid_name(n) {
            return Err(ApiError::BadRequest(format!(
                "Invalid snapshot name {n:?}: use 1-128 characters of [A-Za-z0-9._-], not shaped like an ID"
            )));
        }
    }
    let mode = parse_mode(req.mode.as_deref())?;
    let metadata = labels(req.metadata)?;
    let expires_at = expiry(req.ttl, &state.snapshot_policy)?;
    state.registry.get(&id).ok_or_else(|| ApiError::SandboxNotFound(id.clone()))?;
    let opts = SnapshotOptions {
        name,
        mode,
        metadata,
        expires_at,
        keep_last: state.snapshot_policy.keep_last,
        name_moves: false,
    };
    // On its own task: a client that goes away must not cut a snapshot in half.
    let backend = state.backend.clone();
    let task = tokio::spawn(async move { backend.snapshot_with(&id, opts).await });
    let snap = task.await.map_err(|e| ApiError::Internal(format!("snapshot failed: {e}")))?.map_err(|e| match e {
        sandbank_engine::EngineError::SandboxNotFound(id) => ApiError::SandboxNotFound(id),
        other => other.into(),
    })?;
    record_created(&state, &snap);
    Ok((StatusCode::CREATED, Json(body(&snap))))
}

/// Logs a new snapshot, in the server's log and its sandbox's; returns its ID as the API says it
/// (with the tag).
pub fn record_created(state: &AppState, snap: &EngineSnapshot) -> String {
    tracing::info!(snapshot = %snap.id, sandbox = %snap.sandbox_id, bytes = snap.size_bytes, "snapshot created");
    let snapshot_id = format!("{}:{TAG}", snap.id);
    state.logs.record(&snap.sandbox_id, LogLevel::Info, "snapshot created", &[("snapshotID", &snapshot_id)]);
    snapshot_id
}

/// `GET /snapshots?sandboxID=&name=&metadata=&limit=&nextToken=`: live snapshots newest first,
/// cursor in `X-Next-Token`. `name` may carry a tag (`name:default`), as a snapshot ID does;
/// `metadata` is encoded as the sandbox list's (`k1%3Dv1%26k2%3Dv2`): every pair must match.
pub async fn list(State(state): State<AppState>, RawQuery(q): RawQuery) -> Result<Response, ApiError> {
    let pairs = query_pairs(q.as_deref())?;
    let get = |key: &str| pairs.iter().find(|(k, _)| k == key).map(|(_, v)| v.clone());
    let limit = parse_limit(get("limit").as_deref()).map_err(ApiError::BadRequest)?;
    let after = match get("nextToken").filter(|t| !t.is_empty()) {
        Some(t) => {
            let tok = PageToken::decode(&t).map_err(|e| ApiError::BadRequest(e.to_string()))?;
            let ns = tok
                .time
                .timestamp_nanos_opt()
                .ok_or_else(|| ApiError::BadRequest(format!("Invalid next token {t:?}")))?;
            Some((ns, tok.id))
        }
        None => None,
    };
    let sandbox = get("sandboxID").filter(|s| !s.is_empty());
    let name = get("name")
        .filter(|s| !s.is_empty())
        .map(|n| n.rsplit_once(':').map_or(n.clone(), |(base, _)| base.to_string()));
    let mut metadata = Vec::new();
    for (_, v) in pairs.iter().filter(|(k, _)| k == "metadata") {
        metadata.extend(decode_filter(v).map_err(ApiError::BadRequest)?);
    }
    if metadata.len() > MAX_LABELS {
        return Err(ApiError::BadRequest(format!("Invalid metadata filter: more than {MAX_LABELS} pairs")));
    }
    let backend = state.backend.clone();
    let mut items = tokio::task::spawn_blocking(move || {
        let after = after.as_ref().map(|(t, id)| (*t, id.as_str()));
        let filter = ListFilter { origin: sandbox.as_deref(), name: name.as_deref(), metadata: &metadata };
        backend.list_snapshots(&filter, after, limit + 1)
    })
    .await
    .map_err(|e| ApiError::Internal(format!("listing snapshots failed: {e}")))??;
    let mut headers = HeaderMap::new();
    if items.len() > limit as usize {
        items.truncate(limit as usize);
        if let Some(last) = items.last() {
            let token = PageToken { time: DateTime::from_timestamp_nanos(last.created_at), id: last.id.clone() };
            let v = HeaderValue::from_str(&token.encode()).map_err(|e| ApiError::Internal(e.to_string()))?;
            headers.insert("x-next-token", v);
        }
    }
    let list: Vec<SnapshotInfo> = items.iter().map(body).collect();
    Ok((headers, Json(list)).into_response())
}

/// `DELETE /templates/{id}`: the tag is ignored; 404 when there is no such snapshot; 400 while
/// sandboxes started from it still run.
pub async fn delete(
    State(state): State<AppState>,
    path: Result<Path<String>, axum::extract::rejection::PathRejection>,
) -> Result<StatusCode, ApiError> {
    let Path(raw) =
        path.map_err(|e| ApiError::BadRequest(format!("Invalid template ID in the path: {}", e.body_text())))?;
    let backend = state.backend.clone();
    let id = raw.clone();
    let deleted = tokio::task::spawn_blocking(move || backend.delete_snapshot(&id))
        .await
        .map_err(|e| ApiError::Internal(format!("deleting the snapshot failed: {e}")))??;
    if deleted {
        tracing::info!(snapshot = %raw, "snapshot deleted");
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::SnapshotNotFound(raw))
    }
}

/// `GET /snapshots/{id}/diff` (sandbank's): the paths the snapshot added, changed and removed
/// against its parent (the snapshot its sandbox started from; the template when none), read
/// from its layer. 404 when there is no such snapshot.
pub async fn diff(
    State(state): State<AppState>,
    Path(raw): Path<String>,
) -> Result<Json<sandbank_protocol::rest::SnapshotDiff>, ApiError> {
    let backend = state.backend.clone();
    let id = raw.clone();
    let found = tokio::task::spawn_blocking(move || backend.snapshot_diff(&id))
        .await
        .map_err(|e| ApiError::Internal(format!("reading the snapshot's changes failed: {e}")))??;
    let (snapshot, changes) = found.ok_or(ApiError::SnapshotNotFound(raw))?;
    let info = body(&snapshot);
    Ok(Json(sandbank_protocol::rest::SnapshotDiff {
        snapshot_id: info.snapshot_id,
        parent_snapshot_id: info.parent_snapshot_id,
        added: changes.added,
        changed: changes.changed,
        removed: changes.removed,
    }))
}
