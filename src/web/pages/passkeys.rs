//! My passkeys: register one (named), rename, remove. The WebAuthn calls happen in
//! `static/passkeys.js`; these handlers hand out challenges and take the browser's answers.

use askama::Template;
use askama_web::WebTemplate;
use axum::extract::{Path, State};
use axum::response::Redirect;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::Value;
use uuid::Uuid;

use super::{Nav, when};
use crate::auth::session::SessionUser;
use crate::error::{AppError, AppResult};
use crate::passkeys::{self as passkey, removal_binding};
use crate::web::AppState;
use crate::web::caller::page_caller;
use crate::web::csrf::{CsrfForm, NoFields};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/passkeys", get(list).post(register))
        .route("/passkeys/challenge", post(registration_challenge))
        .route("/passkeys/{id}/rename", post(rename))
        .route("/passkeys/{id}/challenge", post(removal_challenge))
        .route("/passkeys/{id}/remove", post(remove))
        .route("/step-up", get(step_up_page).post(step_up))
        .route("/step-up/challenge", post(step_up_challenge))
}

struct PasskeyRow {
    id: String,
    name: String,
    created: String,
    last_used: String,
}

#[derive(Template, WebTemplate)]
#[template(path = "passkeys/list.html")]
struct PasskeysPage {
    nav: Nav,
    passkeys: Vec<PasskeyRow>,
    available: bool,
}

async fn list(State(state): State<AppState>, who: SessionUser) -> AppResult<PasskeysPage> {
    let mut tx = state.store.read(who.tenant.tenant_id).await?;
    let passkeys = tx.passkeys_of(who.user.id).await?;
    tx.commit().await?;
    Ok(PasskeysPage {
        nav: Nav::of(&who),
        passkeys: passkeys
            .iter()
            .map(|p| PasskeyRow {
                id: p.id.to_string(),
                name: p.name.clone(),
                created: when(p.created_at),
                last_used: p.last_used_at.map(when).unwrap_or_else(|| "never".into()),
            })
            .collect(),
        available: state.broker.passkeys.is_available(),
    })
}

async fn registration_challenge(
    State(state): State<AppState>,
    who: SessionUser,
    CsrfForm(NoFields {}): CsrfForm<NoFields>,
) -> AppResult<Json<Value>> {
    let (ceremony, options) = passkey::begin_registration(
        &state.store,
        &state.broker.passkeys,
        &who.tenant,
        &who.user,
        state.clock.now(),
    )
    .await?;
    Ok(super::challenge_json(ceremony, options))
}

#[derive(Deserialize)]
struct RegisterForm {
    #[serde(default)]
    name: String,
    #[serde(default)]
    ceremony: String,
    #[serde(default)]
    credential: String,
}

fn ceremony_id(text: &str) -> AppResult<Uuid> {
    text.parse()
        .map_err(|_| AppError::BadRequest("the passkey answer names no challenge".into()))
}

async fn register(
    State(state): State<AppState>,
    who: SessionUser,
    CsrfForm(form): CsrfForm<RegisterForm>,
) -> AppResult<Redirect> {
    passkey::finish_registration(
        &state.store,
        &state.broker.passkeys,
        &who.ctx(state.clock.now()),
        (&who.tenant, &who.user),
        &form.name,
        passkey::Answer {
            ceremony: ceremony_id(&form.ceremony)?,
            credential: &form.credential,
        },
    )
    .await?;
    Ok(Redirect::to("/passkeys"))
}

fn passkey_id(id: &str) -> AppResult<Uuid> {
    id.parse()
        .map_err(|_| AppError::NotFound(format!("no passkey {id}")))
}

#[derive(Deserialize)]
struct RenameForm {
    #[serde(default)]
    name: String,
}

async fn rename(
    State(state): State<AppState>,
    who: SessionUser,
    Path(id): Path<String>,
    CsrfForm(form): CsrfForm<RenameForm>,
) -> AppResult<Redirect> {
    passkey::rename(
        &state.store,
        &who.ctx(state.clock.now()),
        &who.tenant,
        &who.user,
        passkey_id(&id)?,
        &form.name,
    )
    .await?;
    Ok(Redirect::to("/passkeys"))
}

/// A step-up challenge for removing passkey `id` (answered with another passkey).
async fn removal_challenge(
    State(state): State<AppState>,
    who: SessionUser,
    Path(id): Path<String>,
    CsrfForm(NoFields {}): CsrfForm<NoFields>,
) -> AppResult<Json<Value>> {
    let binding = removal_binding(passkey_id(&id)?);
    let (ceremony, options) = state
        .broker
        .begin_step_up(&page_caller(&state, &who), &binding)
        .await?;
    Ok(super::challenge_json(ceremony, options))
}

#[derive(Deserialize)]
struct RemoveForm {
    #[serde(default)]
    ceremony: String,
    #[serde(default)]
    credential: String,
}

async fn remove(
    State(state): State<AppState>,
    who: SessionUser,
    Path(id): Path<String>,
    CsrfForm(form): CsrfForm<RemoveForm>,
) -> AppResult<Redirect> {
    let proof = if form.ceremony.is_empty() {
        None
    } else {
        Some((ceremony_id(&form.ceremony)?, form.credential.as_str()))
    };
    passkey::remove(
        &state.store,
        &state.broker.passkeys,
        &who.ctx(state.clock.now()),
        &who.tenant,
        &who.user,
        passkey_id(&id)?,
        proof,
    )
    .await?;
    Ok(Redirect::to("/passkeys"))
}

#[derive(Template, WebTemplate)]
#[template(path = "passkeys/step_up.html")]
struct StepUpPage {
    nav: Nav,
    next: String,
    minutes: i64,
}

#[derive(Deserialize, Default)]
struct Next {
    #[serde(default)]
    next: String,
}

/// Where to go after a step-up: a path of this site only, never another site.
fn same_site(next: &str) -> String {
    crate::auth::session::same_site_path(next)
        .unwrap_or("/dashboard")
        .to_owned()
}

/// Confirm this session with a passkey, for admin changes in the next five minutes.
async fn step_up_page(
    who: SessionUser,
    axum::extract::Query(q): axum::extract::Query<Next>,
) -> StepUpPage {
    StepUpPage {
        nav: Nav::of(&who),
        next: same_site(&q.next),
        minutes: passkey::ADMIN_STEP_UP_TTL.whole_minutes(),
    }
}

async fn step_up_challenge(
    State(state): State<AppState>,
    who: SessionUser,
    CsrfForm(NoFields {}): CsrfForm<NoFields>,
) -> AppResult<Json<Value>> {
    let binding = passkey::session_binding(who.session.id);
    let (ceremony, options) = state
        .broker
        .begin_step_up(&page_caller(&state, &who), &binding)
        .await?;
    Ok(super::challenge_json(ceremony, options))
}

#[derive(Deserialize)]
struct StepUpForm {
    #[serde(default)]
    next: String,
    #[serde(default)]
    ceremony: String,
    #[serde(default)]
    credential: String,
}

async fn step_up(
    State(state): State<AppState>,
    who: SessionUser,
    CsrfForm(form): CsrfForm<StepUpForm>,
) -> AppResult<Redirect> {
    let proof = passkey::StepUpProof {
        ceremony: ceremony_id(&form.ceremony)?,
        credential: form.credential,
    };
    passkey::step_up_session(
        &state.store,
        &state.broker.passkeys,
        &who.ctx(state.clock.now()),
        (&who.tenant, &who.user),
        who.session.id,
        &proof,
    )
    .await?;
    Ok(Redirect::to(&same_site(&form.next)))
}
