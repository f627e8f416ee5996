//! The auditor's page (roles auditor and admin): the log filtered by actor, action, request and
//! time, each row linking to its request; the filtered or full export for download; whether the
//! live chain verifies, the latest checkpoint and the public key to check it with; and how far
//! each streaming sink is behind. Looking is itself recorded (`audit.viewed`, `audit.exported`).

use askama::Template;
use askama_web::WebTemplate;
use axum::Router;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::Deserialize;

use super::{Nav, when};
use crate::auth::session::SessionUser;
use crate::error::{AppError, AppResult};
use crate::model::Role;
use crate::model::audit::Filter;
use crate::web::AppState;
use crate::web::audit_query::{FilterQuery, filter_details, start_export};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/audit", get(page))
        .route("/audit/export", get(export))
}

/// Auditors and admins only.
fn require_auditor(who: &SessionUser) -> AppResult<()> {
    if who.user.has_role(Role::Auditor) || who.user.has_role(Role::Admin) {
        Ok(())
    } else {
        Err(AppError::Forbidden(
            "the audit log is for auditors and administrators".into(),
        ))
    }
}

#[derive(Debug, Deserialize)]
struct PageQuery {
    before: Option<i64>,
    #[serde(flatten)]
    filter: FilterQuery,
}

struct Row {
    seq: i64,
    at: String,
    actor: String,
    action: String,
    subject: String,
    request_id: String,
    /// The SSH session a `session.*` event is about, for a link to its replay.
    session_id: String,
    details: String,
}

struct SinkRow {
    kind: String,
    target: String,
    lag_events: i64,
    lag_seconds: i64,
    error: String,
}

#[derive(Template, WebTemplate)]
#[template(path = "audit/log.html")]
struct AuditPage {
    nav: Nav,
    /// Why the filter was refused (the page then answers 400 and lists no events).
    filter_error: String,
    tenant: String,
    actor: String,
    action: String,
    request: String,
    from: String,
    to: String,
    query: String,
    rows: Vec<Row>,
    older: Option<i64>,
    /// The events a page that was not filled searched (0 when it is not bounded).
    searched_from: i64,
    searched_to: i64,
    verified: bool,
    /// A background verification of the whole log is running (neither verified nor broken yet).
    running: bool,
    verification: String,
    checkpointer_error: String,
    checkpoint: Option<(i64, String, String, String)>,
    public_keys: Vec<String>,
    sinks: Vec<SinkRow>,
}

const PAGE_ROWS: i64 = 100;

/// The events `[from, to]` a page of `filter` below `before` searches, when it must be bounded:
/// an actor (a substring) or a date can only be checked event by event, newest first, so
/// without a bound a filter that matches little would read the whole log for one page.
/// Unbounded (None) when an index serves the filter (action, request) or there is none.
async fn searched_window(
    tx: &mut crate::store::TenantTx,
    filter: &Filter,
    before: i64,
    events: i64,
) -> AppResult<Option<(i64, i64)>> {
    if filter.is_empty() || filter.action.is_some() || filter.request_id.is_some() {
        return Ok(None);
    }
    let head = tx.audit_head().await?.map_or(0, |(seq, _)| seq);
    let to = head.min(before.saturating_sub(1));
    Ok(Some(((to - events.max(1) + 1).max(1), to)))
}

async fn page(
    State(state): State<AppState>,
    who: SessionUser,
    Query(q): Query<PageQuery>,
) -> AppResult<Response> {
    require_auditor(&who)?;
    // A filter that does not parse (a date out of range) is a 400 that still shows the page,
    // with the message beside the form and no events.
    let (filter, filter_error) = match q.filter.filter() {
        Ok(f) => (Some(f), String::new()),
        Err(AppError::BadRequest(m)) => (None, m),
        Err(e) => return Err(e),
    };
    let now = state.clock.now();
    let tenant_id = who.tenant.tenant_id;
    let mut tx = state.store.tenant(tenant_id).await?;
    let before = q.before.unwrap_or(i64::MAX);
    let (events, searched) = match &filter {
        Some(f) => {
            let window =
                searched_window(&mut tx, f, before, state.config.audit.page_search_events).await?;
            let after = window.map(|(from, _)| from - 1);
            (
                tx.audit_events_newest(f, after, before, PAGE_ROWS).await?,
                window,
            )
        }
        None => (Vec::new(), None),
    };
    let filter = filter.unwrap_or_default();
    let checkpoint = tx.latest_checkpoint().await?;
    let keys = crate::signing_keys::audit_public_keys(&mut tx).await?;
    // A refused filter shows no event, so there is no viewing to record.
    if filter_error.is_empty() {
        tx.append_audit(
            &who.ctx(now)
                .event("audit.viewed", who.tenant.slug.clone())
                .details(filter_details(&filter)),
            now,
        )
        .await?;
    }
    tx.commit().await?;
    use crate::web::audit_check::Shown;
    let (verified, running, verification) = match crate::web::audit_check::for_page(
        &state, tenant_id,
    )
    .await?
    {
        Shown::Verified(s) => (
            true,
            false,
            format!(
                "{} events, {} checkpoints, head {} ({} events since the last checkpoint)",
                s.events,
                s.checkpoints,
                hex::encode(&s.head_hash),
                s.head_seq - s.signed_through
            ),
        ),
        Shown::Broken(message) => (false, false, message),
        Shown::Running { events, since } => (
            false,
            true,
            format!(
                "{events} events are being verified in the background (since {}); reload for the result",
                when(since)
            ),
        ),
    };
    let checkpointer_error = state
        .audit
        .lock()
        .ok()
        .and_then(|s| s.broken.get(&who.tenant.slug).cloned())
        .unwrap_or_default();
    let sinks = crate::audit::sinks::lags(&state.store, now)
        .await?
        .into_iter()
        .filter(|l| l.tenant == who.tenant.slug)
        .map(|l| SinkRow {
            kind: l.kind,
            target: l.target,
            lag_events: l.events,
            lag_seconds: l.seconds,
            error: l.last_error.unwrap_or_default(),
        })
        .collect();
    // A full page goes on below its last event; a page that searched its window without
    // filling goes on below the window.
    let (older, searched) = if events.len() as i64 == PAGE_ROWS {
        (events.last().map(|e| e.seq), None)
    } else {
        match searched {
            Some((from, to)) if from > 1 => (Some(from), Some((from, to))),
            _ => (None, None),
        }
    };
    let text = |s: &Option<String>| s.clone().unwrap_or_default();
    let bad = !filter_error.is_empty();
    let page = AuditPage {
        filter_error,
        nav: Nav::of(&who),
        tenant: who.tenant.slug.clone(),
        actor: text(&q.filter.actor),
        action: text(&q.filter.action),
        request: text(&q.filter.request),
        from: text(&q.filter.from),
        to: text(&q.filter.to),
        query: q.filter.to_query(),
        rows: events
            .into_iter()
            .map(|e| Row {
                seq: e.seq,
                at: when(e.at),
                session_id: match e.details.0["session_id"].as_str() {
                    Some(id) if e.action.starts_with("session.") => id.to_owned(),
                    _ => String::new(),
                },
                actor: e.actor,
                action: e.action,
                subject: e.subject,
                request_id: e.request_id.map(|r| r.to_string()).unwrap_or_default(),
                details: e.details.0.to_string(),
            })
            .collect(),
        older,
        searched_from: searched.map_or(0, |(from, _)| from),
        searched_to: searched.map_or(0, |(_, to)| to),
        verified,
        running,
        verification,
        checkpointer_error,
        checkpoint: checkpoint.map(|c| {
            (
                c.seq,
                when(c.at),
                hex::encode(&c.head_hash),
                c.signing_key_id.to_string(),
            )
        }),
        public_keys: keys.into_iter().map(|(_, k)| k).collect(),
        sinks,
    };
    if !bad {
        return Ok(page.into_response());
    }
    let mut res = (StatusCode::BAD_REQUEST, page).into_response();
    // The page is the answer: the shared error rendering leaves it as it is.
    res.extensions_mut().insert(crate::web::error::KeepBody);
    Ok(res)
}

async fn export(
    State(state): State<AppState>,
    who: SessionUser,
    Query(q): Query<FilterQuery>,
) -> AppResult<Response> {
    require_auditor(&who)?;
    let filter = q.filter()?;
    let ctx = who.ctx(state.clock.now());
    start_export(&state, &who.tenant, ctx, filter).await
}
