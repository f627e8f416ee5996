//! `GET /access`: every active and scheduled grant the viewer may see (approvers: the profiles
//! they approve; auditors and admins: all), with who, what, since, until, the credentials issued,
//! and Revoke where the core lets this viewer revoke.

use askama::Template;
use askama_web::WebTemplate;
use axum::extract::{Query, State};

use super::requests::{PageQuery, Row, next_link, row};
use super::{Nav, when};
use crate::auth::session::SessionUser;
use crate::broker::{detail, service};
use crate::error::{AppError, AppResult};
use crate::model::Role;
use crate::web::AppState;
use crate::web::caller::page_caller;
use crate::workflow::{Person, State as RequestState, may_revoke};

#[derive(Template, WebTemplate)]
#[template(path = "requests/access.html")]
pub struct AccessPage {
    nav: Nav,
    grants: Vec<Access>,
    next: String,
}

struct Access {
    r: Row,
    /// "since 2026-12-04 06:40 UTC" or "from 2026-12-04 09:00 UTC" (scheduled).
    since: String,
    /// "2 certificates (1 valid), 1 database login (1 live)".
    issued: String,
    can_revoke: bool,
}

fn issued_text(i: &detail::Issued) -> String {
    let count = |n: usize, what: &str, working: usize, state: &str| {
        let plural = if n == 1 { "" } else { "s" };
        (n > 0).then(|| format!("{n} {what}{plural} ({working} {state})"))
    };
    let parts: Vec<String> = [
        count(
            i.certificates,
            "SSH certificate",
            i.certificates_valid,
            "valid",
        ),
        count(i.db_logins, "database login", i.db_logins_live, "live"),
    ]
    .into_iter()
    .flatten()
    .collect();
    if parts.is_empty() {
        "none yet".into()
    } else {
        parts.join(", ")
    }
}

pub async fn access(
    State(state): State<AppState>,
    who: SessionUser,
    Query(q): Query<PageQuery>,
) -> AppResult<AccessPage> {
    if ![Role::Approver, Role::Auditor, Role::Admin]
        .iter()
        .any(|r| who.user.has_role(*r))
    {
        return Err(AppError::Forbidden(
            "active access is for approvers, auditors and admins: your own grants are on the \
             dashboard"
                .into(),
        ));
    }
    let query = q.list(service::ListQuery {
        states: vec![RequestState::Active, RequestState::Scheduled],
        ..Default::default()
    })?;
    let page = state
        .broker
        .list(&page_caller(&state, &who), &query)
        .await?;
    let now = state.clock.now();
    let ids: Vec<uuid::Uuid> = page.items.iter().map(|l| l.stored.request.id).collect();
    let issued = detail::issued_for(&state.store, &who.tenant, &ids, now).await?;
    let me = Person::of(&who.user);
    Ok(AccessPage {
        nav: Nav::of(&who),
        grants: page
            .items
            .iter()
            .map(|l| {
                let r = &l.stored.request;
                let since = match (&r.grant, r.starts_at) {
                    (Some(g), _) => format!("since {}", when(g.activated_at)),
                    (None, Some(at)) => format!("from {}", when(at)),
                    (None, None) => String::new(),
                };
                Access {
                    r: row(&l.stored, &l.requester_email),
                    since,
                    issued: issued.get(&r.id).map(issued_text).unwrap_or_default(),
                    can_revoke: may_revoke(&me, r.requester, &l.profile),
                }
            })
            .collect(),
        next: next_link("/access", &page, q.limit),
    })
}
