//! `/admin/tokens`: every API token of the organisation (owner, name, scopes, created, expires,
//! last used, state) and Revoke, which also revokes what the token minted.

use askama::Template;
use askama_web::WebTemplate;
use axum::Router;
use axum::extract::{Path, State};
use axum::response::Redirect;
use axum::routing::{get, post};

use super::{Nav, when};
use crate::auth::session::AdminUser;
use crate::error::{AppError, AppResult};
use crate::web::AppState;
use crate::web::auth::SteppedUpAdmin;
use crate::web::csrf::{CsrfForm, NoFields};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/admin/tokens", get(list))
        .route("/admin/tokens/{id}/revoke", post(revoke))
}

struct TokenRow {
    id: String,
    owner: String,
    name: String,
    scopes: String,
    created: String,
    expires: String,
    last_used: String,
    /// "active", "revoked" or "expired".
    state: &'static str,
}

#[derive(Template, WebTemplate)]
#[template(path = "admin/tokens.html")]
struct TokensPage {
    nav: Nav,
    tokens: Vec<TokenRow>,
}

async fn list(State(state): State<AppState>, AdminUser(who): AdminUser) -> AppResult<TokensPage> {
    let mut tx = state.store.read(who.tenant.tenant_id).await?;
    let all = tx.api_tokens_all().await?;
    tx.commit().await?;
    let now = state.clock.now();
    Ok(TokensPage {
        nav: Nav::of(&who),
        tokens: all
            .iter()
            .map(|(t, owner)| TokenRow {
                id: t.id.to_string(),
                owner: crate::text::shown_owned(owner),
                name: crate::text::shown_owned(&t.name),
                scopes: t
                    .scopes
                    .0
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join(", "),
                created: when(t.created_at),
                expires: t.expires_at.map_or_else(|| "never".into(), when),
                last_used: t.last_used_at.map_or_else(|| "never".into(), when),
                state: if t.revoked_at.is_some() {
                    "revoked"
                } else if t.is_usable(now) {
                    "active"
                } else {
                    "expired"
                },
            })
            .collect(),
    })
}

async fn revoke(
    State(state): State<AppState>,
    SteppedUpAdmin(who): SteppedUpAdmin,
    Path(id): Path<String>,
    CsrfForm(NoFields {}): CsrfForm<NoFields>,
) -> AppResult<Redirect> {
    let id = id
        .parse()
        .map_err(|_| AppError::NotFound(format!("no token {id}")))?;
    crate::admin::revoke_tenant_token(&state.store, &who.ctx(state.clock.now()), &who.tenant, id)
        .await?;
    Ok(Redirect::to("/admin/tokens"))
}
