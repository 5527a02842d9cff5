//! Snapshots: `POST /sandboxes/{id}/snapshots`, `GET /snapshots`, `DELETE /templates/{id}`.
//! A snapshot ID is `<id>:default`; it, the bare ID or the snapshot's name start sandboxes as a
//! `templateID`.

use super::error::ApiError;
use super::extract::{query_pairs, JsonBodyOrDefault, SandboxId};
use super::AppState;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use chrono::DateTime;
use sandbank_engine::{SnapshotInfo as EngineSnapshot, SnapshotMode};
use sandbank_protocol::pagination::{parse_limit, PageToken};
use sandbank_protocol::rest::{LogLevel, NewSnapshot, SnapshotInfo};

/// The only tag the local engine makes.
pub const TAG: &str = "default";

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

fn body(s: &EngineSnapshot) -> SnapshotInfo {
    SnapshotInfo {
        snapshot_id: format!("{}:{TAG}", s.id),
        names: s.names.clone(),
        sandbox_id: Some(s.sandbox_id.clone()),
        parent_snapshot_id: s.parent_id.as_ref().map(|p| format!("{p}:{TAG}")),
        created_at: Some(DateTime::from_timestamp_nanos(s.created_at)),
        size_bytes: Some(s.size_bytes),
        mode: Some(mode_name(s.mode).into()),
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
    state.registry.get(&id).ok_or_else(|| ApiError::SandboxNotFound(id.clone()))?;
    // On its own task: a client that goes away must not cut a snapshot in half.
    let backend = state.backend.clone();
    let task = tokio::spawn(async move { backend.snapshot(&id, name, mode).await });
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

/// `GET /snapshots?sandboxID=&name=&limit=&nextToken=`: newest first, cursor in `X-Next-Token`.
/// `name` may carry a tag (`name:default`), as a snapshot ID does.
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
    let backend = state.backend.clone();
    let mut items = tokio::task::spawn_blocking(move || {
        let after = after.as_ref().map(|(t, id)| (*t, id.as_str()));
        backend.list_snapshots(sandbox.as_deref(), name.as_deref(), after, limit + 1)
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
