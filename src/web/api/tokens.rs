//! A user's own API tokens: list, create (shown once), revoke. A token can only mint tokens with
//! a subset of its own scopes, so a narrow token never widens itself, and what it mints is
//! recorded as its child: revoking it revokes them.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use crate::admin;
use crate::auth::{ReadScope, Scoped};
use crate::error::{AppError, AppResult};
use crate::model::Scope;
use crate::web::api::openapi::{BadBody, ErrorBody, Refused};
use crate::web::extract::ApiJson;
use crate::web::{AppState, ClientOrigin};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list, create))
        .routes(routes!(revoke))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct TokenRow {
    id: Uuid,
    name: String,
    scopes: Vec<Scope>,
    #[schema(format = DateTime)]
    created_at: Option<String>,
    #[schema(format = DateTime)]
    expires_at: Option<String>,
    #[schema(format = DateTime)]
    revoked_at: Option<String>,
    /// The token making this call.
    current: bool,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct TokenList {
    tokens: Vec<TokenRow>,
}

/// A new token: its secret is in this answer only.
#[derive(Serialize, ToSchema)]
pub struct NewToken<'a> {
    id: Uuid,
    name: String,
    /// The bearer secret; elevate keeps only its hash.
    token: &'a str,
    scopes: Vec<Scope>,
    #[schema(format = DateTime)]
    expires_at: Option<String>,
}

fn rfc3339(t: Option<time::OffsetDateTime>) -> Option<String> {
    t.and_then(|t| {
        t.format(&time::format_description::well_known::Rfc3339)
            .ok()
    })
}

/// The caller's tokens (secrets are never shown again).
#[utoipa::path(
    get, path = "/tokens", operation_id = "list_tokens", tag = "tokens",
    responses((status = 200, body = TokenList), Refused)
)]
async fn list(
    State(state): State<AppState>,
    Scoped(p, ..): Scoped<ReadScope>,
) -> AppResult<Json<TokenList>> {
    let mut tx = state.store.read(p.tenant.tenant_id).await?;
    let tokens = tx.api_tokens_of(p.user.id).await?;
    tx.commit().await?;
    let tokens = tokens
        .iter()
        .map(|t| TokenRow {
            id: t.id,
            name: t.name.clone(),
            scopes: t.scopes.0.clone(),
            created_at: rfc3339(Some(t.created_at)),
            expires_at: rfc3339(t.expires_at),
            revoked_at: rfc3339(t.revoked_at),
            current: t.id == p.token.id,
        })
        .collect();
    Ok(Json(TokenList { tokens }))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct CreateToken {
    /// Shown in lists, like `ci deploy job`.
    name: String,
    /// A subset of the calling token's scopes; all of them when empty.
    #[serde(default)]
    scopes: Vec<Scope>,
    /// Lifetime like `30d`; defaults to 30 days, never beyond the presenting token's expiry.
    #[schema(pattern = r"^\s*([0-9]+[smhd])+\s*$")]
    ttl: Option<String>,
}

/// A new token for the caller, never wider than the calling token (scopes and expiry); revoking
/// the calling token revokes it too.
#[utoipa::path(
    post, path = "/tokens", operation_id = "create_token", tag = "tokens",
    request_body = CreateToken,
    responses(
        (status = 201, body = NewToken, links(("RevokeToken" = (operation_id = "revoke_token", parameters(("id" = "$response.body#/id")))))),
        Refused, BadBody,
    )
)]
async fn create(
    State(state): State<AppState>,
    ClientOrigin(origin): ClientOrigin,
    Scoped(p, ..): Scoped<ReadScope>,
    ApiJson(body): ApiJson<CreateToken>,
) -> AppResult<Response> {
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
    let answer = NewToken {
        id: issued.token.id,
        name: issued.token.name.clone(),
        token: issued.secret.expose(),
        scopes: issued.token.scopes.0.clone(),
        expires_at: rfc3339(issued.token.expires_at),
    };
    Ok((StatusCode::CREATED, Json(answer)).into_response())
}

/// Revoke one of the caller's tokens (and every token it made).
#[utoipa::path(
    delete, path = "/tokens/{id}", operation_id = "revoke_token", tag = "tokens",
    params(("id" = Uuid, Path, description = "the token")),
    responses(
        (status = 204, description = "revoked"),
        Refused,
        (status = 404, description = "not one of the caller's tokens", body = ErrorBody),
    )
)]
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
