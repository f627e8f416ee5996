//! `/admin/integrations`: where elevate sends things. Notification webhooks (every transition,
//! Slack-compatible) and audit sinks (the log streamed to a SIEM), each with its last delivery;
//! add and remove, behind the admin step-up.

use askama::Template;
use askama_web::WebTemplate;
use axum::Router;
use axum::extract::{Path, State};
use axum::response::Redirect;
use axum::routing::{get, post};
use serde::Deserialize;

use super::{Nav, when};
use crate::auth::session::AdminUser;
use crate::error::{AppError, AppResult};
use crate::web::AppState;
use crate::web::auth::SteppedUpAdmin;
use crate::web::csrf::{CsrfForm, NoFields};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/admin/integrations", get(show))
        .route("/admin/integrations/webhooks", post(add_webhook))
        .route(
            "/admin/integrations/webhooks/{id}/remove",
            post(remove_webhook),
        )
        .route("/admin/integrations/sinks", post(add_sink))
        .route("/admin/integrations/sinks/{id}/remove", post(remove_sink))
}

struct HookRow {
    id: String,
    url: String,
    added: String,
    last_delivery: String,
    failing: i64,
}

struct SinkRow {
    id: String,
    kind: String,
    target: String,
    delivered_seq: i64,
    last_delivery: String,
    error: String,
}

#[derive(Template, WebTemplate)]
#[template(path = "admin/integrations.html")]
struct IntegrationsPage {
    nav: Nav,
    hooks: Vec<HookRow>,
    sinks: Vec<SinkRow>,
}

async fn show(
    State(state): State<AppState>,
    AdminUser(who): AdminUser,
) -> AppResult<IntegrationsPage> {
    let mut tx = state.store.read(who.tenant.tenant_id).await?;
    let hooks = tx.webhooks().await?;
    let deliveries = tx.webhook_deliveries().await?;
    let sinks = tx.audit_sinks().await?;
    tx.commit().await?;
    let never = || "never".to_owned();
    Ok(IntegrationsPage {
        nav: Nav::of(&who),
        hooks: hooks
            .iter()
            .map(|h| {
                let d = deliveries.iter().find(|d| d.0 == h.id.to_string());
                HookRow {
                    id: h.id.to_string(),
                    url: crate::text::shown_owned(&h.url),
                    added: when(h.created_at),
                    last_delivery: d.and_then(|d| d.1).map_or_else(never, when),
                    failing: d.map_or(0, |d| d.2),
                }
            })
            .collect(),
        sinks: sinks
            .iter()
            .map(|s| SinkRow {
                id: s.id.to_string(),
                kind: s.kind.clone(),
                target: crate::text::shown_owned(&s.target),
                delivered_seq: s.delivered_seq,
                last_delivery: s.last_delivered_at.map_or_else(never, when),
                error: s.last_error.clone().unwrap_or_default(),
            })
            .collect(),
    })
}

#[derive(Deserialize)]
struct HookForm {
    #[serde(default)]
    url: String,
    #[serde(default)]
    secret: String,
}

async fn add_webhook(
    State(state): State<AppState>,
    SteppedUpAdmin(who): SteppedUpAdmin,
    CsrfForm(form): CsrfForm<HookForm>,
) -> AppResult<Redirect> {
    let ctx = who.ctx(state.clock.now());
    crate::admin::add_webhook(
        &state.store,
        &state.master_key,
        &ctx,
        &who.tenant,
        &form.url,
        &form.secret,
    )
    .await?;
    Ok(Redirect::to("/admin/integrations"))
}

#[derive(Deserialize)]
struct SinkForm {
    #[serde(default)]
    kind: String,
    #[serde(default)]
    target: String,
    #[serde(default)]
    secret: String,
}

async fn add_sink(
    State(state): State<AppState>,
    SteppedUpAdmin(who): SteppedUpAdmin,
    CsrfForm(form): CsrfForm<SinkForm>,
) -> AppResult<Redirect> {
    let ctx = who.ctx(state.clock.now());
    let secret = Some(form.secret.as_str()).filter(|s| !s.trim().is_empty());
    crate::audit::sinks::add_sink(
        &state.store,
        &state.master_key,
        &ctx,
        &who.tenant,
        &form.kind,
        &form.target,
        secret,
    )
    .await?;
    Ok(Redirect::to("/admin/integrations"))
}

fn id_of(id: &str, what: &str) -> AppResult<uuid::Uuid> {
    id.parse()
        .map_err(|_| AppError::NotFound(format!("no {what} {id}")))
}

async fn remove_webhook(
    State(state): State<AppState>,
    SteppedUpAdmin(who): SteppedUpAdmin,
    Path(id): Path<String>,
    CsrfForm(NoFields {}): CsrfForm<NoFields>,
) -> AppResult<Redirect> {
    let id = id_of(&id, "webhook")?;
    let ctx = who.ctx(state.clock.now());
    crate::admin::remove_webhook(&state.store, &ctx, &who.tenant, id).await?;
    Ok(Redirect::to("/admin/integrations"))
}

async fn remove_sink(
    State(state): State<AppState>,
    SteppedUpAdmin(who): SteppedUpAdmin,
    Path(id): Path<String>,
    CsrfForm(NoFields {}): CsrfForm<NoFields>,
) -> AppResult<Redirect> {
    let id = id_of(&id, "audit sink")?;
    let ctx = who.ctx(state.clock.now());
    crate::audit::sinks::remove_sink(&state.store, &ctx, &who.tenant, id).await?;
    Ok(Redirect::to("/admin/integrations"))
}
