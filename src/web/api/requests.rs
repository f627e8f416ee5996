//! The request workflow over JSON (DESIGN §8): file, read, list, and act on requests.

use axum::Json;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use crate::auth::{ApproveScope, ReadScope, RequestScope};
use crate::broker::detail::Detail;
use crate::broker::{Shown, service};
use crate::error::{AppError, AppResult};
use crate::model::Scope;
use crate::policy::Profile;
use crate::store::{Cursor, StoredRequest};
use crate::web::AppState;
use crate::web::api::openapi::{BadBody, BadQuery, ErrorBody, IllegalNow, NoSuchRequest, Refused};
use crate::web::caller::{ApiCaller, RequestId};
use crate::web::extract::ApiJson;
use crate::web::history_query::HistoryQuery;
use crate::workflow::{NewRequest, Shortcut, State as RequestState};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(create, list))
        .routes(routes!(show))
        .routes(routes!(approve))
        .routes(routes!(deny))
        .routes(routes!(cancel))
        .routes(routes!(revoke))
        .routes(routes!(extend))
        .routes(routes!(review))
}

fn rfc(t: OffsetDateTime) -> String {
    t.format(&Rfc3339).unwrap_or_default()
}

/// A request as the API shows it.
#[derive(Debug, Serialize, ToSchema)]
pub struct RequestView {
    id: Uuid,
    profile: String,
    /// `pending`, `scheduled`, `active`, `denied`, `cancelled`, `lapsed`, `expired` or `revoked`.
    state: &'static str,
    /// The requester's user id.
    requester: Uuid,
    /// Where known (lists and `GET /requests/{id}`).
    #[serde(skip_serializing_if = "Option::is_none")]
    requester_email: Option<String>,
    /// Like `30m`, `4h`.
    duration: String,
    justification: String,
    ticket: Option<String>,
    #[schema(format = DateTime)]
    starts_at: Option<String>,
    #[schema(format = DateTime)]
    created_at: String,
    /// When an undecided request lapses.
    #[schema(format = DateTime)]
    pending_until: String,
    break_glass: bool,
    auto_approved: bool,
    reviewed_by: Option<Uuid>,
    approvals_required: u32,
    approvals: Vec<ApprovalView>,
    grant: Option<GrantView>,
    /// An extension waiting for its approvals.
    extension: Option<ExtensionView>,
    policy_version: i64,
    /// Decisions with their comments, oldest first (`GET /requests/{id}` only).
    #[serde(skip_serializing_if = "Option::is_none")]
    decisions: Option<Vec<DecisionView>>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ApprovalView {
    approver: Uuid,
    #[serde(skip_serializing_if = "Option::is_none")]
    approver_email: Option<String>,
    /// 0 for the request, 1.. for its extensions.
    round: u32,
    #[schema(format = DateTime)]
    at: String,
    /// Made with a passkey.
    stepped_up: bool,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct GrantView {
    #[schema(format = DateTime)]
    activated_at: String,
    #[schema(format = DateTime)]
    not_after: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ExtensionView {
    round: u32,
    /// Like `1h`.
    added: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct DecisionView {
    /// The deciding person's address.
    by: String,
    /// `approved`, `denied` or `extension_denied`.
    decision: &'static str,
    #[schema(format = DateTime)]
    at: String,
    comment: Option<String>,
}

/// A page of requests, newest first.
#[derive(Debug, Serialize, ToSchema)]
pub struct RequestPage {
    requests: Vec<RequestView>,
    /// The `after` of the following page; null on the last page.
    next: Option<String>,
}

impl RequestView {
    fn of(s: &StoredRequest, profile: &Profile) -> Self {
        let r = &s.request;
        Self {
            id: r.id,
            profile: r.profile.clone(),
            state: r.state.as_str(),
            requester: r.requester,
            requester_email: None,
            duration: crate::duration::format(r.duration),
            justification: r.justification.clone(),
            ticket: r.ticket.clone(),
            starts_at: r.starts_at.map(rfc),
            created_at: rfc(r.created_at),
            pending_until: rfc(r.pending_until),
            break_glass: r.shortcut == Some(Shortcut::BreakGlass),
            auto_approved: r.shortcut == Some(Shortcut::AutoApproved),
            reviewed_by: r.reviewed_by,
            approvals_required: profile.approvals_required,
            approvals: r
                .approvals
                .iter()
                .map(|a| ApprovalView {
                    approver: a.approver,
                    approver_email: None,
                    round: a.round,
                    at: rfc(a.at),
                    stepped_up: a.stepped_up,
                })
                .collect(),
            grant: r.grant.as_ref().map(|g| GrantView {
                activated_at: rfc(g.activated_at),
                not_after: rfc(g.not_after),
            }),
            extension: r.extension.as_ref().map(|e| ExtensionView {
                round: e.round,
                added: crate::duration::format(e.added),
            }),
            policy_version: s.policy_version,
            decisions: None,
        }
    }

    fn shown(s: &Shown) -> Json<Self> {
        Json(Self::of(&s.stored, &s.profile))
    }

    fn detail(d: &Detail) -> Self {
        let mut v = Self::of(&d.shown.stored, &d.shown.profile);
        v.requester_email = Some(d.requester_email.clone());
        for a in &mut v.approvals {
            a.approver_email = d.approver_emails.get(&a.approver).cloned();
        }
        v.decisions = Some(
            d.decisions
                .iter()
                .map(|x| DecisionView {
                    by: x.by.clone(),
                    decision: x.decision,
                    at: rfc(x.at),
                    comment: x.comment.clone(),
                })
                .collect(),
        );
        v
    }
}

/// An optional JSON body: empty or `null` means defaults.
fn optional_body<T: serde::de::DeserializeOwned + Default>(body: &[u8]) -> AppResult<T> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(T::default());
    }
    serde_json::from_slice::<Option<T>>(body)
        .map(Option::unwrap_or_default)
        .map_err(|e| AppError::Unprocessable(e.to_string()))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({
    "profile": "prod-shell",
    "duration": "30m",
    "justification": "restart the stuck payment worker",
    "ticket": "INC-7"
}))]
struct CreateRequest {
    /// The access profile (`GET /profiles`).
    profile: String,
    /// Like `30m`, `4h`; the profile's default when absent.
    #[schema(pattern = r"^\s*([0-9]+[smhd])+\s*$")]
    duration: Option<String>,
    /// Why: approvers see it, the audit log keeps it.
    #[serde(default)]
    justification: String,
    /// A ticket reference, when the profile asks for one.
    ticket: Option<String>,
    /// Start later (RFC 3339).
    #[schema(format = DateTime)]
    starts_at: Option<String>,
    /// Activate now without approval, when the profile allows; reviewed afterwards.
    #[serde(default)]
    break_glass: bool,
}

/// Ask for access.
#[utoipa::path(
    post, path = "/requests", operation_id = "create_request", tag = "requests",
    request_body = CreateRequest,
    responses(
        (status = 201, description = "filed (pending, scheduled or, when no approval is needed, active)", body = RequestView,
            links(
                ("GetRequest" = (operation_id = "get_request", parameters(("id" = "$response.body#/id")))),
                ("CancelRequest" = (operation_id = "cancel_request", parameters(("id" = "$response.body#/id")))),
                ("RevokeRequest" = (operation_id = "revoke_request", parameters(("id" = "$response.body#/id")))),
                ("ExtendRequest" = (operation_id = "extend_request", parameters(("id" = "$response.body#/id")))),
                ("IssueSshCertificate" = (operation_id = "issue_ssh_certificate", parameters(("id" = "$response.body#/id")))),
                ("IssueDbCredentials" = (operation_id = "issue_db_credentials", parameters(("id" = "$response.body#/id")))),
            )),
        Refused, BadBody,
        (status = 404, description = "no such profile", body = ErrorBody),
        (status = 409, description = "the organisation is locked down", body = ErrorBody),
    )
)]
async fn create(
    State(state): State<AppState>,
    ApiCaller(c, ..): ApiCaller<RequestScope>,
    ApiJson(body): ApiJson<CreateRequest>,
) -> AppResult<(StatusCode, Json<RequestView>)> {
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
    Ok((StatusCode::CREATED, RequestView::shown(&shown)))
}

/// One request, with who asked, who approved and the comments made.
#[utoipa::path(
    get, path = "/requests/{id}", operation_id = "get_request", tag = "requests",
    params(("id" = Uuid, Path, description = "the request")),
    responses((status = 200, body = RequestView), Refused, NoSuchRequest)
)]
async fn show(
    State(state): State<AppState>,
    ApiCaller(c, ..): ApiCaller<ReadScope>,
    RequestId(id): RequestId,
) -> AppResult<Json<RequestView>> {
    Ok(Json(RequestView::detail(
        &state.broker.detail(&c, id).await?,
    )))
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct ListQuery {
    /// Only requests in this state.
    state: Option<String>,
    /// Only the caller's own requests.
    #[serde(default)]
    mine: bool,
    /// Only what waits for the caller's decision as an approver.
    #[serde(default)]
    reviewable: bool,
    /// The `next` of the previous page.
    after: Option<String>,
    /// Page size.
    #[param(minimum = 1, maximum = 500)]
    limit: Option<i64>,
}

/// The requests the caller may see, newest first, a page at a time. `reviewable` lists what the
/// caller can act on as an approver: pending requests (and pending extensions) of others, and
/// break-glass activations awaiting review.
#[utoipa::path(
    get, path = "/requests", operation_id = "list_requests", tag = "requests",
    params(ListQuery, HistoryQuery),
    responses((status = 200, body = RequestPage), Refused, BadQuery)
)]
async fn list(
    State(state): State<AppState>,
    ApiCaller(c, ..): ApiCaller<ReadScope>,
    Query(q): Query<ListQuery>,
    // A second reading of the same query string: serde's `flatten` would turn `limit` and
    // `mine` into strings.
    Query(history): Query<HistoryQuery>,
) -> AppResult<Json<RequestPage>> {
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
                history: history.filter()?,
                after,
                limit: q.limit,
            },
        )
        .await?;
    let requests = page
        .items
        .iter()
        .map(|l| RequestView {
            requester_email: Some(l.requester_email.clone()),
            ..RequestView::of(&l.stored, &l.profile)
        })
        .collect();
    Ok(Json(RequestPage {
        requests,
        next: page.next.map(|c| c.encode()),
    }))
}

#[derive(Deserialize, Default, ToSchema)]
#[serde(deny_unknown_fields)]
struct Comment {
    /// Shown to the requester and kept in the audit log.
    comment: Option<String>,
}

/// Approve (or approve an extension). A profile with `step_up` needs a passkey: answered 403
/// `step_up_required`, with the page to do it in the message.
#[utoipa::path(
    post, path = "/requests/{id}/approve", operation_id = "approve_request", tag = "requests",
    params(("id" = Uuid, Path, description = "the request")),
    request_body(content = Option<Comment>, description = "optional"),
    responses((status = 200, body = RequestView), Refused, NoSuchRequest, IllegalNow, BadBody)
)]
async fn approve(
    State(state): State<AppState>,
    ApiCaller(c, ..): ApiCaller<ApproveScope>,
    RequestId(id): RequestId,
    body: axum::body::Bytes,
) -> AppResult<Json<RequestView>> {
    let comment = optional_body::<Comment>(&body)?.comment;
    Ok(RequestView::shown(
        &state.broker.approve(&c, id, comment).await?,
    ))
}

/// Deny (or deny an extension), with a comment the requester sees.
#[utoipa::path(
    post, path = "/requests/{id}/deny", operation_id = "deny_request", tag = "requests",
    params(("id" = Uuid, Path, description = "the request")),
    request_body = Comment,
    responses((status = 200, body = RequestView), Refused, NoSuchRequest, IllegalNow, BadBody)
)]
async fn deny(
    State(state): State<AppState>,
    ApiCaller(c, ..): ApiCaller<ApproveScope>,
    RequestId(id): RequestId,
    ApiJson(body): ApiJson<Comment>,
) -> AppResult<Json<RequestView>> {
    let comment = body.comment.unwrap_or_default();
    if comment.trim().is_empty() {
        return Err(AppError::Unprocessable("a denial needs a comment".into()));
    }
    Ok(RequestView::shown(
        &state.broker.deny(&c, id, comment).await?,
    ))
}

/// The requester withdraws a pending or scheduled request.
#[utoipa::path(
    post, path = "/requests/{id}/cancel", operation_id = "cancel_request", tag = "requests",
    params(("id" = Uuid, Path, description = "the request")),
    responses((status = 200, body = RequestView), Refused, NoSuchRequest, IllegalNow)
)]
async fn cancel(
    State(state): State<AppState>,
    ApiCaller(c, ..): ApiCaller<RequestScope>,
    RequestId(id): RequestId,
) -> AppResult<Json<RequestView>> {
    Ok(RequestView::shown(&state.broker.cancel(&c, id).await?))
}

#[derive(Deserialize, Default, ToSchema)]
#[serde(deny_unknown_fields)]
struct Reason {
    /// Kept in the audit log.
    #[serde(default)]
    reason: String,
}

/// End an active or scheduled grant now. Requester, approver or admin: the token needs one of
/// the matching scopes; the state machine decides whether this person may.
#[utoipa::path(
    post, path = "/requests/{id}/revoke", operation_id = "revoke_request", tag = "requests",
    params(("id" = Uuid, Path, description = "the request")),
    request_body(content = Option<Reason>, description = "optional"),
    responses((status = 200, body = RequestView), Refused, NoSuchRequest, IllegalNow, BadBody)
)]
async fn revoke(
    State(state): State<AppState>,
    ApiCaller(c, p, ..): ApiCaller<ReadScope>,
    RequestId(id): RequestId,
    body: axum::body::Bytes,
) -> AppResult<Json<RequestView>> {
    if ![Scope::Request, Scope::Approve, Scope::Admin]
        .iter()
        .any(|s| p.require(*s).is_ok())
    {
        return Err(AppError::Forbidden(
            "revoking needs the request, approve or admin scope".into(),
        ));
    }
    let reason = optional_body::<Reason>(&body)?.reason;
    Ok(RequestView::shown(
        &state.broker.revoke(&c, id, reason).await?,
    ))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct ExtendBody {
    /// How much longer, like `30m`.
    #[schema(pattern = r"^\s*([0-9]+[smhd])+\s*$")]
    duration: String,
}

/// Ask for more time on an active grant; approved like the request.
#[utoipa::path(
    post, path = "/requests/{id}/extend", operation_id = "extend_request", tag = "requests",
    params(("id" = Uuid, Path, description = "the request")),
    request_body = ExtendBody,
    responses((status = 200, body = RequestView), Refused, NoSuchRequest, IllegalNow, BadBody)
)]
async fn extend(
    State(state): State<AppState>,
    ApiCaller(c, ..): ApiCaller<RequestScope>,
    RequestId(id): RequestId,
    ApiJson(body): ApiJson<ExtendBody>,
) -> AppResult<Json<RequestView>> {
    let added = crate::duration::parse(&body.duration).map_err(AppError::Unprocessable)?;
    Ok(RequestView::shown(
        &state.broker.extend(&c, id, added).await?,
    ))
}

/// An approver marks a break-glass activation as reviewed.
#[utoipa::path(
    post, path = "/requests/{id}/review", operation_id = "review_request", tag = "requests",
    params(("id" = Uuid, Path, description = "the request")),
    responses((status = 200, body = RequestView), Refused, NoSuchRequest, IllegalNow)
)]
async fn review(
    State(state): State<AppState>,
    ApiCaller(c, ..): ApiCaller<ApproveScope>,
    RequestId(id): RequestId,
) -> AppResult<Json<RequestView>> {
    Ok(RequestView::shown(&state.broker.review(&c, id).await?))
}
