//! The audit log over the API (DESIGN §8): `GET /audit?after=SEQ&limit=N` pages through events
//! oldest first (for a SIEM to poll), `GET /audit/export` streams the JSON-lines export. Both
//! need the `audit` scope (and so the auditor role), and reading is itself recorded (an export
//! each time, paging once per reader and hour).

use axum::extract::{Query, State};
use axum::response::Response;
use axum::routing::get;
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::auth::{AuditScope, Scoped};
use crate::error::{AppError, AppResult};
use crate::web::audit_query::{FilterQuery, filter_details, non_empty, start_export};
use crate::web::{AppState, ClientOrigin};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/audit", get(list))
        .route("/audit/export", get(export))
}

/// Filters as query parameters, shared with the auditor's page. Times are RFC 3339, or
/// `YYYY-MM-DD[THH:MM]` read as UTC (what browsers' date inputs send); `from` is inclusive,
/// `to` exclusive, except that a bare date for `to` includes that day.
/// How often one reader's paging through the log is recorded (`audit.read`).
const READ_RECORDED_EVERY: time::Duration = time::Duration::HOUR;

#[derive(Debug, Deserialize)]
struct ListQuery {
    after: Option<String>,
    limit: Option<String>,
    #[serde(flatten)]
    filter: FilterQuery,
}

async fn list(
    State(state): State<AppState>,
    Scoped(p, ..): Scoped<AuditScope>,
    ClientOrigin(origin): ClientOrigin,
    Query(q): Query<ListQuery>,
) -> AppResult<Json<Value>> {
    let number = |name: &str, v: &Option<String>, default: i64| -> AppResult<i64> {
        match non_empty(v) {
            None => Ok(default),
            Some(s) => s
                .parse::<i64>()
                .ok()
                .filter(|n| *n >= 0)
                .ok_or_else(|| AppError::BadRequest(format!("{name}: {s:?} is not a number"))),
        }
    };
    let after = number("after", &q.after, 0)?;
    let limit = number("limit", &q.limit, 100)?.clamp(1, 1000);
    let filter = q.filter.filter()?;
    let now = state.clock.now();
    let mut tx = state.store.tenant(p.tenant.tenant_id).await?;
    let head = tx.audit_head().await?.map_or(0, |h| h.0);
    let events = tx
        .audit_events_matching(&filter, after, i64::MAX, limit)
        .await?;
    // Reading is recorded once per reader and hour, not per page: a SIEM polling `after=` the
    // last seq must reach an empty page, which it never would if each read appended an event.
    let ctx = p.ctx(origin, now);
    let actor = ctx.actor.render();
    if !tx
        .audit_recorded_since("audit.read", &actor, now - READ_RECORDED_EVERY)
        .await?
    {
        let mut details = filter_details(&filter);
        details["after"] = json!(after);
        details["returned"] = json!(events.len());
        details["recorded_once_per"] = json!("1h");
        tx.append_audit(
            &ctx.event("audit.read", p.tenant.slug.clone())
                .details(details),
            now,
        )
        .await?;
    }
    tx.commit().await?;
    let next_after = events.last().map_or(after, |e| e.seq);
    Ok(Json(json!({
        "events": events,
        "next_after": next_after,
        "head_seq": head,
    })))
}

async fn export(
    State(state): State<AppState>,
    Scoped(p, ..): Scoped<AuditScope>,
    ClientOrigin(origin): ClientOrigin,
    Query(q): Query<FilterQuery>,
) -> AppResult<Response> {
    let filter = q.filter()?;
    let ctx = p.ctx(origin, state.clock.now());
    start_export(&state, &p.tenant, ctx, filter).await
}
