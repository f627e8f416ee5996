//! `/admin/hosts`: the SSH hosts that run the session helper, with when each last called; add
//! one (its token is shown once, on the answer page), remove one, and how long recordings are
//! kept. Changes need the admin step-up.

use askama::Template;
use askama_web::WebTemplate;
use axum::Router;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use serde::Deserialize;

use super::{Nav, fixable, refused_with, when};
use crate::admin::hosts;
use crate::auth::session::{AdminUser, SessionUser};
use crate::error::AppResult;
use crate::web::AppState;
use crate::web::auth::SteppedUpAdmin;
use crate::web::csrf::{CsrfForm, NoFields};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/admin/hosts", get(show).post(add))
        .route("/admin/hosts/{name}/remove", post(remove))
        .route("/admin/hosts/retention", post(retention))
}

struct HostRow {
    name: String,
    added: String,
    last_seen: String,
}

#[derive(Template, WebTemplate)]
#[template(path = "admin/hosts.html")]
struct HostsPage {
    nav: Nav,
    hosts: Vec<HostRow>,
    retention_days: i32,
    server: String,
    tenant: String,
    /// The token of the host just added: shown this once.
    new_token: Option<(String, String)>,
    error: String,
    typed: String,
}

async fn page(state: &AppState, who: &SessionUser) -> AppResult<HostsPage> {
    let list = hosts::hosts(&state.store, &who.tenant).await?;
    let retention_days = hosts::recording_retention(&state.store, &who.tenant).await?;
    Ok(HostsPage {
        nav: Nav::of(who),
        hosts: list
            .iter()
            .map(|h| HostRow {
                name: h.name.clone(),
                added: when(h.created_at),
                last_seen: h.last_seen_at.map_or_else(|| "never".into(), when),
            })
            .collect(),
        retention_days,
        server: state.config.public_url.trim_end_matches('/').to_owned(),
        tenant: who.tenant.slug.clone(),
        new_token: None,
        error: String::new(),
        typed: String::new(),
    })
}

async fn show(State(state): State<AppState>, AdminUser(who): AdminUser) -> AppResult<HostsPage> {
    page(&state, &who).await
}

#[derive(Deserialize)]
struct AddForm {
    name: String,
}

async fn add(
    State(state): State<AppState>,
    SteppedUpAdmin(who): SteppedUpAdmin,
    CsrfForm(form): CsrfForm<AddForm>,
) -> AppResult<Response> {
    let ctx = who.ctx(state.clock.now());
    match hosts::add_host(&state.store, &ctx, &who.tenant, &form.name).await {
        Ok((host, secret)) => {
            let mut p = page(&state, &who).await?;
            p.new_token = Some((host.name, secret.expose().to_owned()));
            Ok(p.into_response())
        }
        Err(e) if fixable(&e) => {
            let mut p = page(&state, &who).await?;
            p.error = e.to_string();
            p.typed = form.name;
            Ok(refused_with(e, p))
        }
        Err(e) => Err(e),
    }
}

async fn remove(
    State(state): State<AppState>,
    SteppedUpAdmin(who): SteppedUpAdmin,
    Path(name): Path<String>,
    CsrfForm(NoFields {}): CsrfForm<NoFields>,
) -> AppResult<Redirect> {
    hosts::remove_host(
        &state.store,
        &who.ctx(state.clock.now()),
        &who.tenant,
        &name,
    )
    .await?;
    Ok(Redirect::to("/admin/hosts"))
}

#[derive(Deserialize)]
struct RetentionForm {
    days: String,
}

async fn retention(
    State(state): State<AppState>,
    SteppedUpAdmin(who): SteppedUpAdmin,
    CsrfForm(form): CsrfForm<RetentionForm>,
) -> AppResult<Response> {
    let days = form.days.trim().parse().unwrap_or(0);
    let ctx = who.ctx(state.clock.now());
    match hosts::set_recording_retention(&state.store, &ctx, &who.tenant, days).await {
        Ok(()) => Ok(Redirect::to("/admin/hosts").into_response()),
        Err(e) if fixable(&e) => {
            let mut p = page(&state, &who).await?;
            p.error = e.to_string();
            Ok(refused_with(e, p))
        }
        Err(e) => Err(e),
    }
}
