//! Templates as the SDKs look them up: `GET /templates/aliases/{alias}` (e2b's
//! `Template.exists`). The local engine's templates are `base` and the snapshots (by ID or name).

use super::error::ApiError;
use super::AppState;
use axum::extract::{Path, State};
use axum::Json;
use sandbank_protocol::rest::TemplateAlias;

pub async fn alias(State(state): State<AppState>, Path(alias): Path<String>) -> Result<Json<TemplateAlias>, ApiError> {
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
