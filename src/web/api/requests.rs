//! The request workflow over JSON (DESIGN §8): file, read, list, and act on requests.

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use uuid::Uuid;

use crate::auth::{ApiPrincipal, ApproveScope, ReadScope, RequestScope, Scoped};
use crate::broker::service;
use crate::error::{AppError, AppResult};
use crate::model::Scope;
use crate::policy::Profile;
use crate::store::{Cursor, StoredRequest};
use crate::web::extract::ApiJson;
use crate::web::{AppState, ClientOrigin};
use crate::workflow::{Event, NewRequest, Shortcut, State as RequestState};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/requests", post(create).get(list))
        .route("/requests/{id}", get(show))
        .route("/requests/{id}/approve", post(approve))
        .route("/requests/{id}/deny", post(deny))
        .route("/requests/{id}/cancel", post(cancel))
        .route("/requests/{id}/revoke", post(revoke))
        .route("/requests/{id}/extend", post(extend))
        .route("/requests/{id}/review", post(review))
}

fn rfc(t: OffsetDateTime) -> String {
    t.format(&Rfc3339).unwrap_or_default()
}

pub fn request_json(s: &StoredRequest, profile: &Profile) -> Value {
    let r = &s.request;
    json!({
        "id": r.id,
        "profile": r.profile,
        "state": r.state.as_str(),
        "requester": r.requester,
        "duration": crate::duration::format(r.duration),
        "justification": r.justification,
        "ticket": r.ticket,
        "starts_at": r.starts_at.map(rfc),
        "created_at": rfc(r.created_at),
        "pending_until": rfc(r.pending_until),
        "break_glass": r.shortcut == Some(Shortcut::BreakGlass),
        "auto_approved": r.shortcut == Some(Shortcut::AutoApproved),
        "reviewed_by": r.reviewed_by,
        "approvals_required": profile.approvals_required,
        "approvals": r.approvals.iter().map(|a| json!({ "approver": a.approver, "round": a.round, "at": rfc(a.at) })).collect::<Vec<_>>(),
        "grant": r.grant.as_ref().map(|g| json!({ "activated_at": rfc(g.activated_at), "not_after": rfc(g.not_after) })),
        "extension": r.extension.as_ref().map(|e| json!({ "round": e.round, "added": crate::duration::format(e.added) })),
        "policy_version": s.policy_version,
    })
}

/// An optional JSON body: empty means defaults.
fn optional_body<T: serde::de::DeserializeOwned + Default>(body: &[u8]) -> AppResult<T> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(T::default());
    }
    serde_json::from_slice(body).map_err(|e| AppError::Unprocessable(e.to_string()))
}

fn parse_id(id: &str) -> AppResult<Uuid> {
    id.parse()
        .map_err(|_| AppError::NotFound(format!("no request {id}")))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateRequest {
    profile: String,
    duration: Option<String>,
    #[serde(default)]
    justification: String,
    ticket: Option<String>,
    starts_at: Option<String>,
    #[serde(default)]
    break_glass: bool,
}

async fn create(
    State(state): State<AppState>,
    ClientOrigin(origin): ClientOrigin,
    Scoped(p, ..): Scoped<RequestScope>,
    ApiJson(body): ApiJson<CreateRequest>,
) -> AppResult<(StatusCode, Json<Value>)> {
    let duration = body
        .duration
        .as_deref()
        .map(crate::duration::parse)
        .transpose()
        .map_err(AppError::Unprocessable)?;
    let starts_at = body
        .starts_at
        .as_deref()
        .map(|s| {
            OffsetDateTime::parse(s, &Rfc3339).map_err(|_| {
                AppError::Unprocessable(format!("starts_at {s:?} is not an RFC 3339 time"))
            })
        })
        .transpose()?;
    let new = NewRequest {
        duration,
        justification: body.justification,
        ticket: body.ticket,
        starts_at,
        break_glass: body.break_glass,
    };
    let ctx = p.ctx(origin, state.clock.now());
    let stored = service::file(
        &state.store,
        &ctx,
        &state.config.public_url,
        &p.tenant,
        &p.user,
        &body.profile,
        new,
    )
    .await?;
    let (_, profile) = service::load(&state.store, &p.tenant, &p.user, stored.request.id).await?;
    Ok((StatusCode::CREATED, Json(request_json(&stored, &profile))))
}

async fn show(
    State(state): State<AppState>,
    Scoped(p, ..): Scoped<ReadScope>,
    Path(id): Path<String>,
) -> AppResult<Json<Value>> {
    let (stored, profile) = service::load(&state.store, &p.tenant, &p.user, parse_id(&id)?).await?;
    Ok(Json(request_json(&stored, &profile)))
}

#[derive(Deserialize)]
struct ListQuery {
    state: Option<String>,
    #[serde(default)]
    mine: bool,
    #[serde(default)]
    reviewable: bool,
    after: Option<String>,
    limit: Option<i64>,
}

/// `reviewable` lists what the caller can act on as an approver: pending requests (and pending
/// extensions) of others, and break-glass activations awaiting review. Newest first, a page at a
/// time: `next` (null on the last page) is the `after` of the following page.
async fn list(
    State(state): State<AppState>,
    Scoped(p, ..): Scoped<ReadScope>,
    Query(q): Query<ListQuery>,
) -> AppResult<Json<Value>> {
    let states = match &q.state {
        Some(s) => vec![
            RequestState::parse(s)
                .ok_or_else(|| AppError::Unprocessable(format!("unknown state {s:?}")))?,
        ],
        None => vec![],
    };
    let after = q
        .after
        .as_deref()
        .filter(|a| !a.is_empty())
        .map(|a| {
            Cursor::parse(a).ok_or_else(|| {
                AppError::Unprocessable(format!("after {a:?} is not a cursor from a previous page"))
            })
        })
        .transpose()?;
    let page = service::visible(
        &state.store,
        &p.tenant,
        &p.user,
        &service::ListQuery {
            mine: q.mine,
            states,
            reviewable: q.reviewable,
            after,
            limit: q.limit,
        },
    )
    .await?;
    let items: Vec<Value> = page
        .items
        .iter()
        .map(|l| request_json(&l.stored, &l.profile))
        .collect();
    Ok(Json(
        json!({ "requests": items, "next": page.next.map(|c| c.encode()) }),
    ))
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct Comment {
    comment: Option<String>,
}

async fn run(
    state: &AppState,
    p: &ApiPrincipal,
    origin: crate::audit::Origin,
    id: &str,
    event: Event,
) -> AppResult<Json<Value>> {
    let ctx = p.ctx(origin, state.clock.now());
    let id = parse_id(id)?;
    service::act(
        &state.store,
        &ctx,
        &state.config.public_url,
        &p.tenant,
        &p.user,
        id,
        event,
    )
    .await?;
    // A transition may have ended database logins: drop them now, not at the next pass.
    state.reaper_wake.notify_one();
    let (stored, profile) = service::load(&state.store, &p.tenant, &p.user, id).await?;
    Ok(Json(request_json(&stored, &profile)))
}

/// The person a token acts as: its user, with the approver and admin roles only when the token
/// also carries the matching scope (a `request` token of an approver decides nothing).
fn me(p: &ApiPrincipal) -> crate::workflow::Person {
    let mut me = service::person(&p.user);
    me.is_approver &= p.require(Scope::Approve).is_ok();
    me.is_admin &= p.require(Scope::Admin).is_ok();
    me
}

async fn approve(
    State(state): State<AppState>,
    ClientOrigin(origin): ClientOrigin,
    Scoped(p, ..): Scoped<ApproveScope>,
    Path(id): Path<String>,
    body: axum::body::Bytes,
) -> AppResult<Json<Value>> {
    let comment = optional_body::<Comment>(&body)?.comment;
    run(
        &state,
        &p,
        origin,
        &id,
        Event::Approve {
            by: me(&p),
            comment,
        },
    )
    .await
}

async fn deny(
    State(state): State<AppState>,
    ClientOrigin(origin): ClientOrigin,
    Scoped(p, ..): Scoped<ApproveScope>,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<Comment>,
) -> AppResult<Json<Value>> {
    let comment = body.comment.unwrap_or_default();
    if comment.trim().is_empty() {
        return Err(AppError::Unprocessable("a denial needs a comment".into()));
    }
    run(
        &state,
        &p,
        origin,
        &id,
        Event::Deny {
            by: me(&p),
            comment,
        },
    )
    .await
}

async fn cancel(
    State(state): State<AppState>,
    ClientOrigin(origin): ClientOrigin,
    Scoped(p, ..): Scoped<RequestScope>,
    Path(id): Path<String>,
) -> AppResult<Json<Value>> {
    run(&state, &p, origin, &id, Event::Cancel { by: me(&p) }).await
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct Reason {
    #[serde(default)]
    reason: String,
}

/// Requester, approver or admin: the token needs one of the matching scopes; the state machine
/// decides whether this person may.
async fn revoke(
    State(state): State<AppState>,
    ClientOrigin(origin): ClientOrigin,
    Scoped(p, ..): Scoped<ReadScope>,
    Path(id): Path<String>,
    body: axum::body::Bytes,
) -> AppResult<Json<Value>> {
    if ![Scope::Request, Scope::Approve, Scope::Admin]
        .iter()
        .any(|s| p.require(*s).is_ok())
    {
        return Err(AppError::Forbidden(
            "revoking needs the request, approve or admin scope".into(),
        ));
    }
    let reason = optional_body::<Reason>(&body)?.reason;
    run(
        &state,
        &p,
        origin,
        &id,
        Event::Revoke { by: me(&p), reason },
    )
    .await
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ExtendBody {
    duration: String,
}

async fn extend(
    State(state): State<AppState>,
    ClientOrigin(origin): ClientOrigin,
    Scoped(p, ..): Scoped<RequestScope>,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<ExtendBody>,
) -> AppResult<Json<Value>> {
    let added = crate::duration::parse(&body.duration).map_err(AppError::Unprocessable)?;
    run(&state, &p, origin, &id, Event::Extend { by: me(&p), added }).await
}

async fn review(
    State(state): State<AppState>,
    ClientOrigin(origin): ClientOrigin,
    Scoped(p, ..): Scoped<ApproveScope>,
    Path(id): Path<String>,
) -> AppResult<Json<Value>> {
    run(&state, &p, origin, &id, Event::Review { by: me(&p) }).await
}
