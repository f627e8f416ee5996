//! The signed-in person's own pages: dashboard and profile.

use askama::Template;
use askama_web::WebTemplate;
use axum::Router;
use axum::routing::get;

use super::Nav;
use crate::auth::session::SessionUser;
use crate::web::AppState;

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
}

async fn dashboard(who: SessionUser) -> DashboardPage {
    DashboardPage {
        nav: Nav::of(&who),
        name: who.user.display_name.clone(),
        tenant_name: who.tenant.name.clone(),
    }
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
