//! The audit log over the API (DESIGN §8): `GET /audit?after=SEQ&limit=N` pages through events
//! oldest first (for a SIEM to poll), `GET /audit/export` streams the JSON-lines export. Both
//! need the `audit` scope (and so the auditor role), and reading is itself recorded (an export
//! each time, paging once per reader and hour).

use axum::Json;
use axum::extract::{Query, State};
use axum::response::Response;
use serde::{Deserialize, Serialize};
use serde_json::json;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::audit::Record;
use crate::auth::{AuditScope, Scoped};
use crate::error::{AppError, AppResult};
use crate::web::api::openapi::Refused;
use crate::web::audit_query::{FilterQuery, filter_details, non_empty, start_export};
use crate::web::{AppState, ClientOrigin};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list))
        .routes(routes!(export))
}

/// How often one reader's paging through the log is recorded (`audit.read`).
const READ_RECORDED_EVERY: time::Duration = time::Duration::HOUR;

/// Paging, with the filters of [`FilterQuery`] (shared with the auditor's page).
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct ListQuery {
    /// Events after this sequence number (the `next_after` of the previous page).
    #[param(value_type = Option<i64>, minimum = 0)]
    after: Option<String>,
    /// At most this many events (1 to 1,000; default 100).
    #[param(value_type = Option<i64>, minimum = 0)]
    limit: Option<String>,
    #[serde(flatten)]
    #[param(ignore)]
    filter: FilterQuery,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct AuditPage {
    /// Oldest first.
    events: Vec<Record>,
    /// The `after` of the following page (this page's last sequence number).
    next_after: i64,
    /// The newest event's sequence number.
    head_seq: i64,
}

/// Events oldest first, a page at a time (for a SIEM to poll with `after`). Reading is recorded
/// once per reader and hour.
#[utoipa::path(
    get, path = "/audit", operation_id = "list_audit_events", tag = "audit",
    params(ListQuery, FilterQuery),
    responses((status = 200, body = AuditPage), Refused)
)]
async fn list(
    State(state): State<AppState>,
    Scoped(p, ..): Scoped<AuditScope>,
    ClientOrigin(origin): ClientOrigin,
    Query(q): Query<ListQuery>,
) -> AppResult<Json<AuditPage>> {
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
    Ok(Json(AuditPage {
        events,
        next_after,
        head_seq: head,
    }))
}

/// The export: one event per line, then a line with the signed head (verify it offline with
/// `elevate audit verify --file F --public-key K`). Recorded each time.
#[utoipa::path(
    get, path = "/audit/export", operation_id = "export_audit", tag = "audit",
    params(FilterQuery),
    responses(
        (status = 200, description = "JSON lines", content_type = "application/x-ndjson", body = String),
        Refused,
    )
)]
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
