//! Public, unauthenticated endpoints per tenant (DESIGN §8) that hosts fetch: the user-CA keys
//! for `TrustedUserCAKeys` and the KRL for `RevokedKeys`.

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
