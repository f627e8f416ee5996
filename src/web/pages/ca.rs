//! `/admin/ca`: the tenant's SSH user CA keys (the signing one, rotated ones still published
//! until their last certificate ends, retired ones) with fingerprints, and "rotate" behind a
//! confirmation and the admin step-up.

use askama::Template;
use askama_web::WebTemplate;
use axum::Router;
use axum::extract::State;
use axum::response::Redirect;
use axum::routing::{get, post};
use serde::Deserialize;

use super::{Nav, when};
use crate::auth::session::{AdminUser, SessionUser};
use crate::error::{AppError, AppResult};
use crate::model::KeyPurpose;
use crate::web::AppState;
use crate::web::auth::SteppedUpAdmin;
use crate::web::csrf::CsrfForm;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/admin/ca", get(show))
        .route("/admin/ca/rotate", post(rotate))
}

struct KeyRow {
    fingerprint: String,
    created: String,
    /// "signs new certificates", "published until ...", "retired ...".
    state: String,
    signing: bool,
}

#[derive(Template, WebTemplate)]
#[template(path = "admin/ca.html")]
struct CaPage {
    nav: Nav,
    keys: Vec<KeyRow>,
    /// Where hosts fetch the keys to trust (`TrustedUserCAKeys`).
    user_ca_url: String,
    krl_url: String,
}

async fn page(state: &AppState, who: &SessionUser) -> AppResult<CaPage> {
    let mut tx = state.store.read(who.tenant.tenant_id).await?;
    let keys = tx.ca_keys(KeyPurpose::SshUserCa).await?;
    tx.commit().await?;
    let now = state.clock.now();
    let base = state.config.public_url.trim_end_matches('/');
    Ok(CaPage {
        nav: Nav::of(who),
        keys: keys
            .iter()
            .rev()
            .map(|k| KeyRow {
                fingerprint: crate::ssh::ca::fingerprint_of(&k.public_key),
                created: when(k.created_at),
                state: match (k.active, k.publish_until) {
                    (true, _) => "signs new certificates".into(),
                    (false, Some(until)) if until > now => {
                        format!("rotated; still trusted until {}", when(until))
                    }
                    (false, _) => format!("retired {}", k.retired_at.map(when).unwrap_or_default()),
                },
                signing: k.active,
            })
            .collect(),
        user_ca_url: format!("{base}/t/{}/ssh/user-ca.pub", who.tenant.slug),
        krl_url: format!("{base}/t/{}/ssh/krl", who.tenant.slug),
    })
}

async fn show(State(state): State<AppState>, AdminUser(who): AdminUser) -> AppResult<CaPage> {
    page(&state, &who).await
}

#[derive(Deserialize)]
struct RotateForm {
    #[serde(default)]
    confirm: String,
}

/// A new signing key; the old one stays trusted until the last certificate it signed ends.
async fn rotate(
    State(state): State<AppState>,
    SteppedUpAdmin(who): SteppedUpAdmin,
    CsrfForm(form): CsrfForm<RotateForm>,
) -> AppResult<Redirect> {
    if form.confirm != "rotate" {
        return Err(AppError::Unprocessable(
            "tick the box to confirm the rotation: hosts must fetch the new key before they \
             accept certificates it signs"
                .into(),
        ));
    }
    crate::ssh::ca::rotate(
        &state.store,
        &state.master_key,
        &who.ctx(state.clock.now()),
        &who.tenant,
    )
    .await?;
    Ok(Redirect::to("/admin/ca"))
}
