//! SSH sessions that hosts reported for a request, and their recordings (asciicast v2).

use axum::Json;
use axum::extract::{Path, State};
use axum::http::header;
use axum::response::IntoResponse;
use serde::Serialize;
use time::format_description::well_known::Rfc3339;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use crate::auth::ReadScope;
use crate::error::{AppError, AppResult};
use crate::store::SshSession;
use crate::web::AppState;
use crate::web::api::openapi::{NoSuchRequest, Refused};
use crate::web::caller::{ApiCaller, RequestId};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list))
        .routes(routes!(recording))
}

/// One SSH session on a host.
#[derive(Debug, Serialize, ToSchema)]
pub struct SessionView {
    id: Uuid,
    request_id: Uuid,
    /// The host as registered with `elevate admin host add`.
    host: String,
    /// The account logged in to.
    principal: String,
    /// The command asked for (`ssh host cmd`); none for a login shell.
    command: Option<String>,
    /// Whether the client asked for a terminal.
    pty: bool,
    #[schema(format = DateTime)]
    started_at: String,
    #[schema(format = DateTime)]
    ended_at: Option<String>,
    /// `exit`, `expired`, `revoked`, `lockdown`, `helper_error` or `helper_lost`.
    end_reason: Option<String>,
    /// Size of the recording so far.
    bytes: i64,
    /// SHA-256 of the whole recording, as the session's end event records it.
    recording_sha256: Option<String>,
    /// False once the recording was deleted under the retention setting.
    recording_kept: bool,
}

impl SessionView {
    pub fn of(s: &SshSession) -> Self {
        let rfc = |t: time::OffsetDateTime| t.format(&Rfc3339).unwrap_or_default();
        Self {
            id: s.id,
            request_id: s.request_id,
            host: s.host_name.clone(),
            principal: s.principal.clone(),
            command: s.command.clone(),
            pty: s.pty,
            started_at: rfc(s.started_at),
            ended_at: s.ended_at.map(rfc),
            end_reason: s.end_reason.clone(),
            bytes: s.bytes,
            recording_sha256: s.recording_sha256.clone(),
            recording_kept: s.purged_at.is_none(),
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct SessionList {
    sessions: Vec<SessionView>,
}

/// The SSH sessions hosts reported for a request, oldest first.
#[utoipa::path(
    get, path = "/requests/{id}/sessions", operation_id = "list_sessions", tag = "sessions",
    params(("id" = Uuid, Path, description = "the request")),
    responses((status = 200, body = SessionList), Refused, NoSuchRequest)
)]
async fn list(
    State(state): State<AppState>,
    ApiCaller(c, ..): ApiCaller<ReadScope>,
    RequestId(id): RequestId,
) -> AppResult<Json<SessionList>> {
    let sessions = state.broker.sessions_of(&c, id).await?;
    Ok(Json(SessionList {
        sessions: sessions.iter().map(SessionView::of).collect(),
    }))
}

/// A session's recording as asciicast v2 (a JSON header line, then `[seconds, "o"|"i", text]`
/// lines), for the requester, approvers of the profile, auditors and admins. Each viewing is
/// audited.
#[utoipa::path(
    get, path = "/sessions/{id}/recording", operation_id = "get_session_recording", tag = "sessions",
    params(("id" = Uuid, Path, description = "the session")),
    responses(
        (status = 200, content_type = "application/x-asciicast", body = String),
        Refused,
        (status = 404, body = crate::web::api::openapi::ErrorBody,
         description = "no such session the caller may see, or its recording was deleted"),
    )
)]
async fn recording(
    State(state): State<AppState>,
    ApiCaller(c, ..): ApiCaller<ReadScope>,
    Path(id): Path<String>,
) -> AppResult<impl IntoResponse> {
    let id: Uuid = id
        .parse()
        .map_err(|_| AppError::NotFound(format!("no session {id}")))?;
    let (_, data) = state.broker.recording(&c, id).await?;
    Ok(([(header::CONTENT_TYPE, "application/x-asciicast")], data))
}
