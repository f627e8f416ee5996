//! The request workflow over JSON (DESIGN §8): file, read, list, and act on requests.

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::auth::{ApproveScope, ReadScope, RequestScope};
use crate::broker::{Shown, service};
use crate::error::{AppError, AppResult};
use crate::model::Scope;
use crate::policy::Profile;
use crate::store::{Cursor, StoredRequest};
use crate::web::AppState;
use crate::web::caller::{ApiCaller, RequestId};
use crate::web::extract::ApiJson;
use crate::workflow::{NewRequest, Shortcut, State as RequestState};

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
    ApiCaller(c, ..): ApiCaller<RequestScope>,
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
    let shown = state.broker.file(&c, &body.profile, new).await?;
    Ok((StatusCode::CREATED, Json(shown_json(&shown))))
}

async fn show(
    State(state): State<AppState>,
    ApiCaller(c, ..): ApiCaller<ReadScope>,
    RequestId(id): RequestId,
) -> AppResult<Json<Value>> {
    Ok(Json(shown_json(&state.broker.show(&c, id).await?)))
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
    ApiCaller(c, ..): ApiCaller<ReadScope>,
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
    let page = state
        .broker
        .list(
            &c,
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

fn shown_json(s: &Shown) -> Value {
    request_json(&s.stored, &s.profile)
}

async fn approve(
    State(state): State<AppState>,
    ApiCaller(c, ..): ApiCaller<ApproveScope>,
    RequestId(id): RequestId,
    body: axum::body::Bytes,
) -> AppResult<Json<Value>> {
    let comment = optional_body::<Comment>(&body)?.comment;
    Ok(Json(shown_json(
        &state.broker.approve(&c, id, comment).await?,
    )))
}

async fn deny(
    State(state): State<AppState>,
    ApiCaller(c, ..): ApiCaller<ApproveScope>,
    RequestId(id): RequestId,
    ApiJson(body): ApiJson<Comment>,
) -> AppResult<Json<Value>> {
    let comment = body.comment.unwrap_or_default();
    if comment.trim().is_empty() {
        return Err(AppError::Unprocessable("a denial needs a comment".into()));
    }
    Ok(Json(shown_json(&state.broker.deny(&c, id, comment).await?)))
}

async fn cancel(
    State(state): State<AppState>,
    ApiCaller(c, ..): ApiCaller<RequestScope>,
    RequestId(id): RequestId,
) -> AppResult<Json<Value>> {
    Ok(Json(shown_json(&state.broker.cancel(&c, id).await?)))
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
    ApiCaller(c, p, ..): ApiCaller<ReadScope>,
    RequestId(id): RequestId,
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
    Ok(Json(shown_json(
        &state.broker.revoke(&c, id, reason).await?,
    )))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ExtendBody {
    duration: String,
}

async fn extend(
    State(state): State<AppState>,
    ApiCaller(c, ..): ApiCaller<RequestScope>,
    RequestId(id): RequestId,
    ApiJson(body): ApiJson<ExtendBody>,
) -> AppResult<Json<Value>> {
    let added = crate::duration::parse(&body.duration).map_err(AppError::Unprocessable)?;
    Ok(Json(shown_json(&state.broker.extend(&c, id, added).await?)))
}

async fn review(
    State(state): State<AppState>,
    ApiCaller(c, ..): ApiCaller<ApproveScope>,
    RequestId(id): RequestId,
) -> AppResult<Json<Value>> {
    Ok(Json(shown_json(&state.broker.review(&c, id).await?)))
}
