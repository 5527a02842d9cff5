//! Templates as the SDKs use them: `GET /templates/aliases/{alias}` (e2b's `Template.exists`;
//! `base`, the snapshots by ID or name, and the templates built here), and E2B's build API
//! (`crate::templates`): `POST /v3/templates`, the upload link of a COPY step's files and the
//! upload itself, the build, its status with its log, and tags. `DELETE /templates/{id}`
//! removes a built template, else a snapshot.

use super::error::ApiError;
use super::extract::{query_pairs, JsonBody, JsonBodyOrDefault};
use super::AppState;
use axum::body::Body;
use axum::extract::{Path, RawQuery, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::Json;
use futures_util::StreamExt;
use sandbank_protocol::rest::TemplateAlias;
use serde::Deserialize;
use serde_json::{json, Value};
use tokio::io::AsyncWriteExt;

pub async fn alias(State(state): State<AppState>, Path(alias): Path<String>) -> Result<Json<TemplateAlias>, ApiError> {
    if state.templates.exists(&alias) {
        return Ok(Json(TemplateAlias { template_id: alias, public: false }));
    }
    let backend = state.backend.clone();
    let name = alias.clone();
    let exists = tokio::task::spawn_blocking(move || backend.template_exists(&name))
        .await
        .map_err(|e| ApiError::Internal(format!("template lookup failed: {e}")))?;
    if !exists {
        return Err(ApiError::TemplateAliasNotFound(alias));
    }
    Ok(Json(TemplateAlias { template_id: alias, public: false }))
}

/// `GET /templates`: the templates built here.
pub async fn list(State(state): State<AppState>) -> Json<Vec<sandbank_protocol::rest::TemplateInfo>> {
    Json(state.templates.list(&state.backend.default_limits()))
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct NewBuild {
    name: Option<String>,
    /// The deprecated name of `name`.
    alias: Option<String>,
    tags: Vec<String>,
    cpu_count: Option<u32>,
    #[serde(rename = "memoryMB")]
    memory_mb: Option<u64>,
}

/// `POST /v3/templates`: a new build of a template (made if new), waiting for its steps.
pub async fn request_build(
    State(state): State<AppState>,
    JsonBody(req): JsonBody<NewBuild>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let name = req.name.or(req.alias).unwrap_or_default();
    if name.trim().is_empty() {
        return Err(ApiError::BadRequest("Invalid template name \"\": a name is required".into()));
    }
    if req.cpu_count == Some(0) || req.memory_mb.is_some_and(|m| m < 128) {
        return Err(ApiError::BadRequest(format!(
            "Invalid resources: cpuCount {:?} (at least 1), memoryMB {:?} (at least 128)",
            req.cpu_count, req.memory_mb
        )));
    }
    let r = state.templates.request(&name, &req.tags, req.cpu_count, req.memory_mb)?;
    tracing::info!(template = %r.template_id, build = %r.build_id, name = %r.name, "template build requested");
    let names: Vec<String> = r.tags.iter().map(|t| format!("{}:{t}", r.name)).collect();
    Ok((
        StatusCode::ACCEPTED,
        Json(json!({
            "templateID": r.template_id,
            "buildID": r.build_id,
            "tags": r.tags,
            "names": names,
            "aliases": [r.name],
            "public": false,
        })),
    ))
}

/// `GET /templates/{id}/files/{hash}`: `{"present": true}`, or where to upload the archive.
pub async fn upload_link(
    State(state): State<AppState>,
    Path((id, hash)): Path<(String, String)>,
    headers: HeaderMap,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let body = match state.templates.upload_token(&id, &hash)? {
        None => json!({ "present": true }),
        Some(token) => {
            let host = headers.get(header::HOST).and_then(|h| h.to_str().ok()).unwrap_or("127.0.0.1");
            json!({ "present": false, "url": format!("http://{host}/templates/{id}/files/{hash}/upload?token={token}") })
        }
    };
    Ok((StatusCode::CREATED, Json(body)))
}

/// `PUT /templates/{id}/files/{hash}/upload?token=…`: the archive, as the SDK sends it (no API
/// key: the token of its link stands for it). Written aside, then moved into place whole.
pub async fn upload(
    State(state): State<AppState>,
    Path((_id, hash)): Path<(String, String)>,
    RawQuery(q): RawQuery,
    body: Body,
) -> Result<StatusCode, ApiError> {
    let pairs = query_pairs(q.as_deref())?;
    let token = pairs.iter().find(|(k, _)| k == "token").map(|(_, v)| v.as_str());
    if !token.is_some_and(|t| state.templates.take_upload_token(&hash, t)) {
        return Err(ApiError::Unauthorized("Invalid or used upload token".into()));
    }
    let path =
        state.templates.archive(&hash).ok_or_else(|| ApiError::Internal("this server keeps no uploads".into()))?;
    let part = path.with_extension("part");
    let write = async {
        let mut file = tokio::fs::File::create(&part).await?;
        let mut stream = body.into_data_stream();
        while let Some(chunk) = stream.next().await {
            file.write_all(&chunk.map_err(std::io::Error::other)?).await?;
        }
        file.sync_all().await?;
        tokio::fs::rename(&part, &path).await
    };
    if let Err(e) = write.await {
        let _ = tokio::fs::remove_file(&part).await;
        return Err(ApiError::Internal(format!("storing the upload of {hash}: {e}")));
    }
    Ok(StatusCode::CREATED)
}

/// `POST /v2/templates/{id}/builds/{build}` (and the v1 path): the steps; the build starts.
pub async fn start_build(
    State(state): State<AppState>,
    Path((id, build)): Path<(String, String)>,
    JsonBodyOrDefault(req): JsonBodyOrDefault<crate::templates::steps::BuildRequest>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    state.templates.start(state.backend.clone(), &id, &build, req)?;
    tracing::info!(template = %id, build = %build, "template build started");
    Ok((StatusCode::ACCEPTED, Json(json!({}))))
}

/// `GET /templates/{id}/builds/{build}/status?logsOffset=N`: the status and the log from N.
pub async fn build_status(
    State(state): State<AppState>,
    Path((id, build)): Path<(String, String)>,
    RawQuery(q): RawQuery,
) -> Result<Json<Value>, ApiError> {
    let pairs = query_pairs(q.as_deref())?;
    let offset = match pairs.iter().find(|(k, _)| k == "logsOffset") {
        None => 0,
        Some((_, v)) => v
            .parse::<usize>()
            .map_err(|_| ApiError::BadRequest(format!("Invalid logsOffset {v:?}: a whole number ≥ 0")))?,
    };
    let s = state.templates.status(&id, &build, offset)?;
    let mut body = json!({
        "templateID": id,
        "buildID": build,
        "status": s.status,
        "logEntries": s.logs,
        "logs": s.logs.iter().map(|l| l.message.clone()).collect::<Vec<_>>(),
    });
    if let Some(reason) = s.reason {
        body["reason"] = json!(reason);
    }
    Ok(Json(body))
}

#[derive(Debug, Deserialize)]
pub struct AssignTags {
    target: String,
    tags: Vec<String>,
}

/// `POST /templates/tags`: `{target: "name:tag", tags}` also names that build.
pub async fn assign_tags(
    State(state): State<AppState>,
    JsonBody(req): JsonBody<AssignTags>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let (build, tags) = state.templates.assign_tags(&req.target, &req.tags)?;
    Ok((StatusCode::CREATED, Json(json!({ "buildID": build, "tags": tags }))))
}

#[derive(Debug, Deserialize)]
pub struct RemoveTags {
    name: String,
    tags: Vec<String>,
}

/// `DELETE /templates/tags` (with a JSON body).
pub async fn remove_tags(
    State(state): State<AppState>,
    JsonBody(req): JsonBody<RemoveTags>,
) -> Result<StatusCode, ApiError> {
    state.templates.remove_tags(&req.name, &req.tags)?;
    Ok(StatusCode::NO_CONTENT)
}

/// `GET /templates/{id}/tags`.
pub async fn tags(State(state): State<AppState>, Path(id): Path<String>) -> Result<Json<Value>, ApiError> {
    let tags = state.templates.tags(&id)?;
    Ok(Json(Value::Array(
        tags.into_iter().map(|(tag, build, at)| json!({ "tag": tag, "buildID": build, "createdAt": at })).collect(),
    )))
}

/// `DELETE /templates/{id}`: a built template (its builds' snapshots go too, where no sandbox
/// runs from them), else a snapshot.
pub async fn delete(
    State(state): State<AppState>,
    path: Result<Path<String>, axum::extract::rejection::PathRejection>,
) -> Result<StatusCode, ApiError> {
    let Ok(Path(raw)) = &path else { return super::snapshots::delete(State(state), path).await };
    let Some(snapshots) = state.templates.delete(raw)? else {
        return super::snapshots::delete(State(state), path).await;
    };
    tracing::info!(template = %raw, "template deleted");
    let backend = state.backend.clone();
    tokio::task::spawn_blocking(move || {
        for s in snapshots.iter().filter(|s| *s != sandbank_engine::BASE_TEMPLATE) {
            if let Err(e) = backend.delete_snapshot(s) {
                tracing::info!(snapshot = %s, "a deleted template's snapshot stays: {e}");
            }
        }
    });
    Ok(StatusCode::NO_CONTENT)
}
