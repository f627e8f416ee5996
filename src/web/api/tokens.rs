//! A user's own API tokens: list, create (shown once), revoke. A token can only mint tokens with
//! a subset of its own scopes, so a narrow token never widens itself, and what it mints is
//! recorded as its child: revoking it revokes them.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{delete, get};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::admin;
use crate::auth::{ReadScope, Scoped};
use crate::error::{AppError, AppResult};
use crate::model::Scope;
use crate::web::extract::ApiJson;
use crate::web::{AppState, ClientOrigin};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/tokens", get(list).post(create))
        .route("/tokens/{id}", delete(revoke))
}

fn rfc3339(t: Option<time::OffsetDateTime>) -> Option<String> {
    t.and_then(|t| {
        t.format(&time::format_description::well_known::Rfc3339)
            .ok()
    })
}

async fn list(
    State(state): State<AppState>,
    Scoped(p, ..): Scoped<ReadScope>,
) -> AppResult<Json<Value>> {
    let mut tx = state.store.tenant(p.tenant.tenant_id).await?;
    let tokens = tx.api_tokens_of(p.user.id).await?;
    tx.commit().await?;
    let items: Vec<Value> = tokens
        .iter()
        .map(|t| {
            json!({
                "id": t.id, "name": t.name, "scopes": t.scopes.0,
                "created_at": rfc3339(Some(t.created_at)), "expires_at": rfc3339(t.expires_at),
                "revoked_at": rfc3339(t.revoked_at), "current": t.id == p.token.id,
            })
        })
        .collect();
    Ok(Json(json!({ "tokens": items })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateToken {
    name: String,
    #[serde(default)]
    scopes: Vec<Scope>,
    /// Lifetime like `30d`; defaults to 30 days, never beyond the presenting token's expiry.
    ttl: Option<String>,
}

async fn create(
    State(state): State<AppState>,
    ClientOrigin(origin): ClientOrigin,
    Scoped(p, ..): Scoped<ReadScope>,
    ApiJson(body): ApiJson<CreateToken>,
) -> AppResult<(StatusCode, Json<Value>)> {
    let ttl = match &body.ttl {
        Some(t) => crate::duration::parse(t).map_err(AppError::Unprocessable)?,
        None => admin::DEFAULT_TOKEN_TTL,
    };
    let scopes = if body.scopes.is_empty() {
        p.token.scopes.0.clone()
    } else {
        body.scopes.clone()
    };
    if let Some(s) = scopes.iter().find(|s| !p.token.scopes.0.contains(s)) {
        return Err(AppError::Forbidden(format!(
            "this token cannot create a token with scope {s}"
        )));
    }
    let ctx = p.ctx(origin, state.clock.now());
    let ttl = match p.token.expires_at {
        Some(limit) => ttl.min(limit - ctx.now),
        None => ttl,
    };
    let issued = admin::create_token_from(
        &state.store,
        &ctx,
        &p.token,
        &p.user,
        &body.name,
        &scopes,
        ttl,
    )
    .await?;
    Ok((
        StatusCode::CREATED,
        Json(json!({
            "id": issued.token.id,
            "name": issued.token.name,
            "token": issued.secret.expose(),
            "scopes": issued.token.scopes.0,
            "expires_at": rfc3339(issued.token.expires_at),
        })),
    ))
}

async fn revoke(
    State(state): State<AppState>,
    ClientOrigin(origin): ClientOrigin,
    Scoped(p, ..): Scoped<ReadScope>,
    Path(id): Path<String>,
) -> AppResult<StatusCode> {
    let id: Uuid = id
        .parse()
        .map_err(|_| AppError::NotFound(format!("no token {id}")))?;
    let ctx = p.ctx(origin, state.clock.now());
    admin::revoke_tokens(&state.store, &ctx, &p.user, &[id]).await?;
    Ok(StatusCode::NO_CONTENT)
}
