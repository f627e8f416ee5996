//! Operations at a glance for admins: the emergency lockdown (state and buttons), the reaper's
//! last pass and error, and notifications and database login cleanups that keep failing (a failed
//! cleanup or delivery is never silently given up).

use askama::Template;
use askama_web::WebTemplate;
use axum::Router;
use axum::extract::State;
use axum::response::Redirect;
use axum::routing::{get, post};
use serde::Deserialize;

use super::{Nav, when};
use crate::auth::session::AdminUser;
use crate::error::AppResult;
use crate::web::AppState;
use crate::web::auth::SteppedUpAdmin;
use crate::web::csrf::{CsrfForm, NoFields};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/admin/status", get(status))
        .route("/admin/lockdown", post(lockdown))
        .route("/admin/lockdown/lift", post(lift))
}

struct Failing {
    to: String,
    channel: String,
    attempts: i64,
    error: String,
    next: String,
}

#[derive(Template, WebTemplate)]
#[template(path = "admin/status.html")]
struct StatusPage {
    nav: Nav,
    /// The tenant's lockdown ("since ... by ...: reason"), empty when there is none.
    lockdown: String,
    reaper_last_pass: String,
    reaper_lag_secs: i64,
    reaper_error: String,
    failing: Vec<Failing>,
    /// The tenant's audit public keys (OpenSSH), for verifying exports offline.
    audit_keys: Vec<String>,
    audit_checkpoint: String,
    stuck: Vec<super::targets::StuckRow>,
}

async fn status(State(state): State<AppState>, AdminUser(who): AdminUser) -> AppResult<StatusPage> {
    let now = state.clock.now();
    let reaper = state.reaper.lock().map(|s| s.clone()).unwrap_or_default();
    let mut tx = state.store.read(who.tenant.tenant_id).await?;
    let lockdown = tx
        .lockdown()
        .await?
        .map(|l| format!("since {} by {}: {}", when(l.since), l.set_by, l.reason))
        .unwrap_or_default();
    let due = tx
        .due_notifications(now + time::Duration::days(3650), 200)
        .await?;
    let audit_keys = crate::signing_keys::audit_public_keys(&mut tx).await?;
    let audit_checkpoint = tx
        .latest_checkpoint()
        .await?
        .map(|c| format!("seq {} signed {}", c.seq, when(c.at)))
        .unwrap_or_else(|| "none signed yet".into());
    let stuck = tx
        .stuck_db_logins()
        .await?
        .iter()
        .map(super::targets::StuckRow::of)
        .collect();
    tx.commit().await?;
    Ok(StatusPage {
        lockdown,
        stuck,
        nav: Nav::of(&who),
        reaper_last_pass: reaper
            .last_pass
            .map(when)
            .unwrap_or_else(|| "not yet".into()),
        reaper_lag_secs: reaper.last_pass.map_or(-1, |t| (now - t).whole_seconds()),
        reaper_error: reaper.last_error.unwrap_or_default(),
        failing: due
            .into_iter()
            .filter(|n| n.attempts > 0)
            .map(|n| Failing {
                to: n.recipient,
                channel: n.channel,
                attempts: n.attempts,
                error: n.last_error.unwrap_or_default(),
                next: when(n.next_attempt_at),
            })
            .collect(),
        audit_keys: audit_keys.into_iter().map(|(_, k)| k).collect(),
        audit_checkpoint,
    })
}

#[derive(Deserialize)]
struct LockdownForm {
    /// One person's grants; empty: the whole organisation.
    #[serde(default)]
    email: String,
    #[serde(default)]
    reason: String,
}

/// Emergency lockdown of one person or of the organisation (see `admin::lockdown`).
async fn lockdown(
    State(state): State<AppState>,
    SteppedUpAdmin(who): SteppedUpAdmin,
    CsrfForm(form): CsrfForm<LockdownForm>,
) -> AppResult<Redirect> {
    let ctx = who.ctx(state.clock.now());
    let email = form.email.trim();
    let person = if email.is_empty() {
        None
    } else {
        Some(crate::admin::user_by_email(&state.store, &who.tenant, email).await?)
    };
    crate::admin::lockdown(
        &state.store,
        &ctx,
        Some(&state.config.public_url),
        &who.tenant,
        person.as_ref(),
        &form.reason,
    )
    .await?;
    // Revoked database logins are due now: drop them and end their sessions at once.
    state.reaper_wake.notify_one();
    Ok(Redirect::to(
        match &person {
            Some(u) => format!("/admin/users/{}", u.id),
            None => "/admin/status".to_owned(),
        }
        .as_str(),
    ))
}

async fn lift(
    State(state): State<AppState>,
    SteppedUpAdmin(who): SteppedUpAdmin,
    CsrfForm(NoFields {}): CsrfForm<NoFields>,
) -> AppResult<Redirect> {
    crate::admin::lift_lockdown(&state.store, &who.ctx(state.clock.now()), &who.tenant).await?;
    Ok(Redirect::to("/admin/status"))
}
