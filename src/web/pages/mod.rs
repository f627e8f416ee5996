//! Server-rendered pages (askama). Each page has its view struct beside its handler and its
//! template under `templates/` at the same path. Every page works without JavaScript.

mod access;
mod admin_tokens;
mod audit;
mod ca;
mod dev;
mod device;
mod history;
mod home;
mod hosts;
mod integrations;
mod login;
mod passkeys;
mod people;
mod policy;
mod requests;
mod sessions;
mod status;
mod targets;
mod timeline;
mod tokens;

use askama::Template;
use askama_web::WebTemplate;
use axum::Router;
use axum::extract::State;
use axum::routing::get;

use super::AppState;
use crate::auth::session::SessionUser;
use crate::model::Role;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/", get(index))
        .merge(audit::router())
        .merge(ca::router())
        .merge(admin_tokens::router())
        .merge(integrations::router())
        .merge(hosts::router())
        .merge(sessions::router())
        .merge(login::router())
        .merge(home::router())
        .merge(passkeys::router())
        .merge(people::router())
        .merge(policy::router())
        .merge(requests::router())
        .merge(status::router())
        .merge(targets::router())
        .merge(tokens::router())
        .merge(dev::router())
        .merge(device::router())
}

/// What the shared layout shows: who is signed in, and the sign-out form's CSRF token.
#[derive(Debug, Clone, Default)]
pub struct Nav {
    pub signed_in: bool,
    pub email: String,
    pub tenant: String,
    pub is_admin: bool,
    /// Auditors and admins see the audit log.
    pub can_audit: bool,
    /// Approvers, auditors and admins see active access (`/access`).
    pub sees_access: bool,
    pub csrf: String,
}

impl Nav {
    pub fn anonymous() -> Self {
        Self::default()
    }

    pub fn of(who: &SessionUser) -> Self {
        Nav {
            signed_in: true,
            email: who.user.email.clone(),
            tenant: who.tenant.slug.clone(),
            is_admin: who.user.has_role(Role::Admin),
            can_audit: who.user.has_role(Role::Admin) || who.user.has_role(Role::Auditor),
            sees_access: [Role::Approver, Role::Auditor, Role::Admin]
                .iter()
                .any(|r| who.user.has_role(*r)),
            csrf: who.csrf.clone(),
        }
    }
}

#[derive(Template, WebTemplate)]
#[template(path = "pages/index.html")]
struct IndexPage {
    nav: Nav,
    public_url: String,
    version: &'static str,
}

async fn index(State(state): State<AppState>, who: Option<SessionUser>) -> IndexPage {
    IndexPage {
        nav: who.as_ref().map_or_else(Nav::anonymous, Nav::of),
        public_url: state.config.public_url.trim_end_matches('/').to_owned(),
        version: env!("CARGO_PKG_VERSION"),
    }
}

/// A WebAuthn challenge as `static/passkeys.js` takes it: the ceremony to answer, and the
/// options for `navigator.credentials`.
fn challenge_json(
    ceremony: uuid::Uuid,
    options: impl serde::Serialize,
) -> axum::Json<serde_json::Value> {
    axum::Json(serde_json::json!({ "ceremony": ceremony, "options": options }))
}

/// A refusal the person can act on (bad input, not allowed, not now): the page they came from
/// comes back with their input and the reason, instead of a bare error page.
pub fn fixable(e: &crate::error::AppError) -> bool {
    use crate::error::AppError as E;
    matches!(
        e,
        E::BadRequest(_)
            | E::Unprocessable(_)
            | E::Conflict(_)
            | E::Forbidden(_)
            | E::StepUpRequired(_)
            | E::NotFound(_)
    )
}

/// `page` answered with the refusal's status (the error renderer leaves it as it is).
pub fn refused_with(
    e: crate::error::AppError,
    page: impl axum::response::IntoResponse,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    let status = e.into_response().status();
    let mut res = (status, page).into_response();
    res.extensions_mut().insert(crate::web::error::KeepBody);
    res
}

/// A timestamp as pages show it: the one format of [`crate::text::when`].
pub use crate::text::when;

/// How long ago, for people: "just now", "5 min", "2 h 10 min", "3 days" (with [`when`] on
/// hover for the exact time).
pub fn ago(since: time::OffsetDateTime, now: time::OffsetDateTime) -> String {
    let minutes = (now - since).whole_minutes().max(0);
    match minutes {
        0 => "just now".into(),
        1..60 => format!("{minutes} min ago"),
        60..1440 if minutes % 60 == 0 => format!("{} h ago", minutes / 60),
        60..1440 => format!("{} h {} min ago", minutes / 60, minutes % 60),
        1440..2880 => "1 day ago".into(),
        _ => format!("{} days ago", minutes / 1440),
    }
}
