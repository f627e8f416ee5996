//! `/sessions/{id}`: one SSH session's facts and its recording, replayed in the browser by
//! `static/player.js` (play, pause, speed, seek). The recording itself comes from
//! `/sessions/{id}/cast`, and each fetch is audited as a viewing.

use askama::Template;
use askama_web::WebTemplate;
use axum::Router;
use axum::extract::{Path, State};
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use uuid::Uuid;

use super::{Nav, when};
use crate::auth::session::SessionUser;
use crate::error::{AppError, AppResult};
use crate::store::SshSession;
use crate::web::AppState;
use crate::web::caller::page_caller;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/sessions/{id}", get(show))
        .route("/sessions/{id}/cast", get(cast))
}

/// A session as the request page and the player page list it.
pub struct SessionRow {
    pub id: String,
    pub host: String,
    pub account: String,
    pub what: String,
    pub started: String,
    pub ended: String,
    pub reason: String,
    pub size: String,
    pub kept: bool,
}

pub fn row(s: &SshSession) -> SessionRow {
    SessionRow {
        id: s.id.to_string(),
        host: crate::text::shown_owned(&s.host_name),
        account: crate::text::shown_owned(&s.principal),
        what: s
            .command
            .as_deref()
            .map_or_else(|| "interactive shell".to_owned(), crate::text::shown_owned),
        started: when(s.started_at),
        ended: s.ended_at.map_or_else(|| "still open".into(), when),
        reason: s.end_reason.clone().unwrap_or_default().replace('_', " "),
        size: match s.bytes {
            b if b < 10_000 => format!("{b} bytes"),
            b => format!("{} kB", b / 1000),
        },
        kept: s.purged_at.is_none(),
    }
}

#[derive(Template, WebTemplate)]
#[template(path = "requests/session.html")]
struct SessionPage {
    nav: Nav,
    s: SessionRow,
    request: String,
    sha256: String,
}

fn parse(id: &str) -> AppResult<Uuid> {
    id.parse()
        .map_err(|_| AppError::NotFound(format!("no session {id}")))
}

async fn show(
    State(state): State<AppState>,
    who: SessionUser,
    Path(id): Path<String>,
) -> AppResult<SessionPage> {
    let session = state
        .broker
        .session(&page_caller(&state, &who), parse(&id)?)
        .await?;
    Ok(SessionPage {
        nav: Nav::of(&who),
        s: row(&session),
        request: session.request_id.to_string(),
        sha256: session.recording_sha256.clone().unwrap_or_default(),
    })
}

async fn cast(
    State(state): State<AppState>,
    who: SessionUser,
    Path(id): Path<String>,
) -> AppResult<impl IntoResponse> {
    let (_, data) = state
        .broker
        .recording(&page_caller(&state, &who), parse(&id)?)
        .await?;
    Ok(([(header::CONTENT_TYPE, "application/x-asciicast")], data))
}
