//! Public, unauthenticated endpoints per tenant (DESIGN §8) that hosts fetch: the user-CA keys
//! for `TrustedUserCAKeys` and the KRL for `RevokedKeys`; the latest signed audit checkpoint and
//! the audit public keys that verify it.

use axum::Router;
use axum::extract::{Path, State};
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;

use super::AppState;
use crate::error::{AppError, AppResult};
use crate::model::Tenant;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/t/{tenant}/ssh/user-ca.pub", get(user_ca))
        .route("/t/{tenant}/ssh/krl", get(krl))
        .route("/t/{tenant}/audit/checkpoint", get(audit_checkpoint))
        .route("/t/{tenant}/audit/public-key", get(audit_public_key))
}

async fn tenant(state: &AppState, slug: &str) -> AppResult<Tenant> {
    state
        .store
        .tenant_by_slug(slug)
        .await?
        .ok_or_else(|| AppError::NotFound(format!("no organisation {slug}")))
}

async fn user_ca(
    State(state): State<AppState>,
    Path(slug): Path<String>,
) -> AppResult<impl IntoResponse> {
    let t = tenant(&state, &slug).await?;
    let keys = crate::ssh::ca::trusted_keys(&state.store, &t, state.clock.now()).await?;
    Ok(([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], keys))
}

async fn krl(
    State(state): State<AppState>,
    Path(slug): Path<String>,
) -> AppResult<impl IntoResponse> {
    let t = tenant(&state, &slug).await?;
    let bytes = crate::ssh::ca::revocation_list(&state.store, &t, state.clock.now()).await?;
    Ok((
        [
            (header::CONTENT_TYPE, "application/octet-stream"),
            (
                header::CONTENT_DISPOSITION,
                "attachment; filename=\"revoked.krl\"",
            ),
        ],
        bytes,
    ))
}

/// The latest checkpoint, as the line an export carries for it.
async fn audit_checkpoint(
    State(state): State<AppState>,
    Path(slug): Path<String>,
) -> AppResult<impl IntoResponse> {
    let t = tenant(&state, &slug).await?;
    let mut tx = state.store.read(t.tenant_id).await?;
    let latest = tx.latest_checkpoint().await?;
    tx.commit().await?;
    let cp = latest.ok_or_else(|| AppError::NotFound("no checkpoint signed yet".into()))?;
    let line = crate::audit::verify::to_line(crate::audit::verify::LineRef::Checkpoint(&cp))
        .map_err(AppError::internal)?;
    Ok(([(header::CONTENT_TYPE, "application/json")], line + "\n"))
}

/// Every audit public key of the tenant (active first), one OpenSSH key per line: the file
/// `elevate audit verify --public-key` takes.
async fn audit_public_key(
    State(state): State<AppState>,
    Path(slug): Path<String>,
) -> AppResult<impl IntoResponse> {
    let t = tenant(&state, &slug).await?;
    let mut tx = state.store.read(t.tenant_id).await?;
    let keys = crate::signing_keys::audit_public_keys(&mut tx).await?;
    tx.commit().await?;
    let text: String = keys.into_iter().map(|(_, k)| k + "\n").collect();
    Ok((
        [
            (header::CONTENT_TYPE, "text/plain; charset=utf-8"),
            (
                header::CONTENT_DISPOSITION,
                "attachment; filename=\"audit.pub\"",
            ),
        ],
        text,
    ))
}
