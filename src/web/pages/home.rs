//! The signed-in person's own pages: dashboard and profile.

use askama::Template;
use askama_web::WebTemplate;
use axum::Router;
use axum::routing::get;

use super::Nav;
use crate::auth::session::SessionUser;
use crate::error::AppResult;
use crate::web::AppState;
use crate::workflow::service;
use axum::extract::State;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/dashboard", get(dashboard))
        .route("/profile", get(profile))
}

#[derive(Template, WebTemplate)]
#[template(path = "home/dashboard.html")]
struct DashboardPage {
    nav: Nav,
    name: String,
    tenant_name: String,
    requests: Vec<super::requests::Row>,
    waiting: usize,
}

async fn dashboard(State(state): State<AppState>, who: SessionUser) -> AppResult<DashboardPage> {
    use crate::workflow::State as S;
    let open = [S::Pending, S::Scheduled, S::Active];
    let mine = service::visible(&state.store, &who.tenant, &who.user, true, &open, false).await?;
    let waiting = service::visible(&state.store, &who.tenant, &who.user, false, &[], true)
        .await?
        .len();
    Ok(DashboardPage {
        nav: Nav::of(&who),
        name: who.user.display_name.clone(),
        tenant_name: who.tenant.name.clone(),
        requests: mine
            .iter()
            .map(|(r, _)| super::requests::row(r, &who.user.email))
            .collect(),
        waiting,
    })
}

#[derive(Template, WebTemplate)]
#[template(path = "home/profile.html")]
struct ProfilePage {
    nav: Nav,
    name: String,
    email: String,
    tenant_name: String,
    roles: Vec<String>,
    groups: Vec<String>,
    signed_in_at: String,
    session_ends_at: String,
}

async fn profile(who: SessionUser) -> ProfilePage {
    ProfilePage {
        nav: Nav::of(&who),
        name: who.user.display_name.clone(),
        email: who.user.email.clone(),
        tenant_name: who.tenant.name.clone(),
        roles: who.user.roles.0.iter().map(|r| r.to_string()).collect(),
        groups: who.user.group_names.0.clone(),
        signed_in_at: super::when(who.session.created_at),
        session_ends_at: super::when(who.session.expires_at),
    }
}
