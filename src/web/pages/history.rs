//! `GET /requests`: the history of every request the viewer may see (their own; for approvers,
//! those of the profiles they approve; for auditors and admins, all), filtered by state, profile,
//! requester and time, newest first, a page at a time.

use askama::Template;
use askama_web::WebTemplate;
use axum::extract::{Query, State};
use serde::Deserialize;

use super::requests::{PageQuery, Row, row};
use super::{Nav, ago, when};
use crate::auth::session::SessionUser;
use crate::broker::service;
use crate::error::{AppError, AppResult};
use crate::model::Role;
use crate::web::AppState;
use crate::web::caller::page_caller;
use crate::web::history_query::HistoryQuery;
use crate::workflow::State as RequestState;

#[derive(Template, WebTemplate)]
#[template(path = "requests/history.html")]
pub struct HistoryPage {
    nav: Nav,
    rows: Vec<HistoryRow>,
    /// The link to the next (older) page with the same filters, empty on the last.
    next: String,
    /// (state, selected) for the state filter.
    states: Vec<(&'static str, bool)>,
    /// (profile, selected) for the profile filter: the profiles in force.
    profiles: Vec<(String, bool)>,
    requester: String,
    from: String,
    to: String,
    /// Approvers, auditors and admins see others' requests and may filter by requester.
    sees_others: bool,
    filtered: bool,
}

struct HistoryRow {
    r: Row,
    /// "5 min ago", with `filed_at` on hover.
    filed: String,
    filed_at: String,
}

#[derive(Deserialize, Default)]
pub struct StateQuery {
    #[serde(default)]
    state: String,
}

pub async fn history(
    State(state): State<AppState>,
    who: SessionUser,
    Query(s): Query<StateQuery>,
    Query(h): Query<HistoryQuery>,
    Query(page): Query<PageQuery>,
) -> AppResult<HistoryPage> {
    let chosen = match s.state.trim() {
        "" => None,
        name => Some(RequestState::parse(name).ok_or_else(|| {
            AppError::Unprocessable(format!("no state {name:?}: pick one from the list"))
        })?),
    };
    let query = page.list(service::ListQuery {
        states: chosen.into_iter().collect(),
        history: h.filter()?,
        ..Default::default()
    })?;
    let listed = state
        .broker
        .list(&page_caller(&state, &who), &query)
        .await?;
    let now = state.clock.now();
    let profiles = crate::broker::policy::current(&state.store, &who.tenant)
        .await?
        .map(|(_, p)| p)
        .unwrap_or_default();
    // Built after the last await: the serializer is not `Send`.
    let mut link = url::form_urlencoded::Serializer::new(String::new());
    if let Some(c) = chosen {
        link.append_pair("state", c.as_str());
    }
    for (k, v) in h.pairs() {
        link.append_pair(k, v);
    }
    if let Some(c) = &listed.next {
        link.append_pair("after", &c.encode());
    }
    if let Some(l) = page.limit {
        link.append_pair("limit", &l.to_string());
    }
    let profile = h.profile.clone().unwrap_or_default();
    Ok(HistoryPage {
        nav: Nav::of(&who),
        rows: listed
            .items
            .iter()
            .map(|l| HistoryRow {
                r: row(&l.stored, &l.requester_email),
                filed: ago(l.stored.request.created_at, now),
                filed_at: when(l.stored.request.created_at),
            })
            .collect(),
        next: if listed.next.is_some() {
            format!("/requests?{}", link.finish())
        } else {
            String::new()
        },
        states: RequestState::ALL
            .into_iter()
            .map(|x| (x.as_str(), Some(x) == chosen))
            .collect(),
        profiles: profiles
            .iter()
            .map(|p| (p.name.clone(), p.name == profile))
            .collect(),
        requester: h.requester.clone().unwrap_or_default(),
        from: h.from.clone().unwrap_or_default(),
        to: h.to.clone().unwrap_or_default(),
        sees_others: [Role::Approver, Role::Auditor, Role::Admin]
            .iter()
            .any(|r| who.user.has_role(*r)),
        filtered: chosen.is_some() || !h.pairs().is_empty(),
    })
}
