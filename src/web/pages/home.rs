//! The signed-in person's own pages: dashboard and profile.

use askama::Template;
use askama_web::WebTemplate;
use axum::Router;
use axum::routing::get;

use super::Nav;
use crate::auth::session::SessionUser;
use crate::broker::service;
use crate::error::AppResult;
use crate::web::AppState;
use axum::extract::{Query, State};

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
    /// The link to the next page of my open requests, empty on the last.
    next: String,
    waiting: i64,
}

async fn dashboard(
    State(state): State<AppState>,
    who: SessionUser,
    Query(q): Query<super::requests::PageQuery>,
) -> AppResult<DashboardPage> {
    use crate::workflow::State as S;
    let mine = q.list(service::ListQuery {
        mine: true,
        states: vec![S::Pending, S::Scheduled, S::Active],
        ..Default::default()
    })?;
    let page = state
        .broker
        .list(&crate::web::caller::page_caller(&state, &who), &mine)
        .await?;
    let waiting = service::count_visible(
        &state.store,
        &who.tenant,
        &who.user,
        &service::ListQuery {
            reviewable: true,
            ..Default::default()
        },
    )
    .await?;
    Ok(DashboardPage {
        nav: Nav::of(&who),
        name: who.user.display_name.clone(),
        tenant_name: who.tenant.name.clone(),
        requests: page
            .items
            .iter()
            .map(|l| super::requests::row(&l.stored, &l.requester_email))
            .collect(),
        next: super::requests::next_link("/dashboard", &page, q.limit),
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
