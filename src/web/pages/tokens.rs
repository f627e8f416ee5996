//! My API tokens: create (the secret is shown once, on the answer page only) and revoke.

use askama::Template;
use askama_web::WebTemplate;
use axum::Router;
use axum::extract::{Path, State};
use axum::response::Redirect;
use axum::routing::{get, post};
use serde::Deserialize;
use uuid::Uuid;

use super::{Nav, when};
use crate::admin;
use crate::auth::session::SessionUser;
use crate::error::{AppError, AppResult};
use crate::model::Scope;
use crate::web::AppState;
use crate::web::csrf::CsrfForm;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/tokens", get(list).post(create))
        .route("/tokens/{id}/revoke", post(revoke))
}

struct TokenRow {
    id: String,
    name: String,
    scopes: String,
    created: String,
    expires: String,
    revoked: bool,
}

#[derive(Template, WebTemplate)]
#[template(path = "tokens/list.html")]
struct TokensPage {
    nav: Nav,
    tokens: Vec<TokenRow>,
    scopes: Vec<&'static str>,
    /// The secret of a token created by this very request; never shown again.
    created_secret: String,
    /// A refused creation: why, and the form as it was filled in.
    error: String,
    kept: Kept,
}

/// The create form as it was filled in.
struct Kept {
    name: String,
    scopes: Vec<String>,
    ttl: String,
}

impl Kept {
    fn has(&self, scope: &str) -> bool {
        self.scopes.iter().any(|s| s == scope)
    }
}

impl Default for Kept {
    fn default() -> Self {
        Kept {
            name: String::new(),
            scopes: Vec::new(),
            ttl: "30d".into(),
        }
    }
}

async fn page(
    state: &AppState,
    who: &SessionUser,
    created_secret: String,
) -> AppResult<TokensPage> {
    page_with(state, who, created_secret, String::new(), Kept::default()).await
}

async fn page_with(
    state: &AppState,
    who: &SessionUser,
    created_secret: String,
    error: String,
    kept: Kept,
) -> AppResult<TokensPage> {
    let mut tx = state.store.read(who.tenant.tenant_id).await?;
    let tokens = tx.api_tokens_of(who.user.id).await?;
    tx.commit().await?;
    Ok(TokensPage {
        nav: Nav::of(who),
        tokens: tokens
            .iter()
            .rev()
            .map(|t| TokenRow {
                id: t.id.to_string(),
                name: t.name.clone(),
                scopes: t
                    .scopes
                    .0
                    .iter()
                    .map(|s| s.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
                created: when(t.created_at),
                expires: t.expires_at.map(when).unwrap_or_else(|| "never".into()),
                revoked: t.revoked_at.is_some(),
            })
            .collect(),
        scopes: Scope::allowed_for(&who.user.roles.0)
            .into_iter()
            .map(Scope::as_str)
            .collect(),
        created_secret,
        error,
        kept,
    })
}

async fn list(State(state): State<AppState>, who: SessionUser) -> AppResult<TokensPage> {
    page(&state, &who, String::new()).await
}

#[derive(Deserialize)]
struct CreateForm {
    name: String,
    #[serde(default, rename = "scope")]
    scopes: Vec<String>,
    #[serde(default)]
    ttl: String,
}

/// Creates a token; a refusal brings the form back filled in, with the reason.
async fn create(
    State(state): State<AppState>,
    who: SessionUser,
    CsrfForm(form): CsrfForm<CreateForm>,
) -> AppResult<axum::response::Response> {
    use axum::response::IntoResponse;
    let kept = Kept {
        name: form.name.clone(),
        scopes: form.scopes.clone(),
        ttl: form.ttl.clone(),
    };
    match created(&state, &who, form).await {
        Ok(page) => Ok(page.into_response()),
        Err(e) if super::fixable(&e) => {
            let page = page_with(&state, &who, String::new(), e.to_string(), kept).await?;
            Ok(super::refused_with(e, page))
        }
        Err(e) => Err(e),
    }
}

async fn created(state: &AppState, who: &SessionUser, form: CreateForm) -> AppResult<TokensPage> {
    let scopes = form
        .scopes
        .iter()
        .map(|s| s.parse::<Scope>().map_err(AppError::Unprocessable))
        .collect::<AppResult<Vec<_>>>()?;
    let ttl = if form.ttl.trim().is_empty() {
        admin::DEFAULT_TOKEN_TTL
    } else {
        crate::duration::parse(&form.ttl).map_err(AppError::Unprocessable)?
    };
    // A token with admin powers is an admin change: it needs the session's recent step-up.
    let effective = if scopes.is_empty() {
        Scope::allowed_for(&who.user.roles.0)
    } else {
        scopes.clone()
    };
    if effective
        .iter()
        .any(|s| matches!(s, Scope::Admin | Scope::Metrics))
    {
        crate::web::auth::may_change_admin(state, who).await?;
    }
    let issued = admin::create_token(
        &state.store,
        &who.ctx(state.clock.now()),
        &who.user,
        &form.name,
        &scopes,
        ttl,
    )
    .await?;
    page(state, who, issued.secret.expose().to_owned()).await
}

#[derive(Deserialize)]
struct RevokeForm {}

async fn revoke(
    State(state): State<AppState>,
    who: SessionUser,
    Path(id): Path<String>,
    CsrfForm(RevokeForm {}): CsrfForm<RevokeForm>,
) -> AppResult<Redirect> {
    let id: Uuid = id
        .parse()
        .map_err(|_| AppError::NotFound("no such token".into()))?;
    admin::revoke_tokens(&state.store, &who.ctx(state.clock.now()), &who.user, &[id]).await?;
    Ok(Redirect::to("/tokens"))
}
