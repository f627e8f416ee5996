//! The workflow in the browser: new request, request detail with its timeline and actions, and
//! the approvals inbox. Forms post back here; the state machine decides.

use askama::Template;
use askama_web::WebTemplate;
use axum::Router;
use axum::extract::{Path, Query, State};
use axum::response::Redirect;
use axum::routing::{get, post};
use serde::Deserialize;
use uuid::Uuid;

use super::{Nav, ago, when};
use crate::auth::session::SessionUser;
use crate::broker::service;
use crate::error::{AppError, AppResult};
use crate::passkeys::StepUpProof;
use crate::policy::Profile;
use crate::store::{Cursor, StoredRequest};
use crate::text::shown_owned;
use crate::web::AppState;
use crate::web::caller::page_caller;
use crate::web::csrf::{CsrfForm, NoFields};
use crate::workflow::{NewRequest, Shortcut, State as RequestState};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/requests/new", get(new_form))
        .route("/requests", post(create).get(super::history::history))
        .route("/requests/{id}", get(detail))
        .route("/requests/break-glass/step-up", post(break_glass_step_up))
        .route("/requests/{id}/step-up", post(step_up))
        .route("/requests/{id}/{action}", post(act))
        .route("/requests/{id}/certificates", post(issue_certificate))
        .route("/requests/{id}/db-login", post(issue_db_login))
        .route(
            "/requests/{id}/certificates/{serial}",
            get(download_certificate),
        )
        .route("/approvals", get(inbox))
        .route("/access", get(super::access::access))
}

/// A profile as the picker shows it.
pub struct ProfileCard {
    name: String,
    description: String,
    grants: String,
    approvers: String,
    approvals_required: u32,
    default_duration: String,
    max_duration: String,
    ticket_pattern: String,
    break_glass: bool,
}

fn grants(p: &Profile) -> String {
    let mut parts = Vec::new();
    if let Some(ssh) = &p.ssh {
        parts.push(format!("SSH as {}", ssh.principals.join(", ")));
    }
    if let Some(db) = &p.database {
        parts.push(format!("database {} ({})", db.target, db.roles.join(", ")));
    }
    parts.join("; ")
}

fn card(p: &Profile) -> ProfileCard {
    ProfileCard {
        name: p.name.clone(),
        description: p.description.clone(),
        grants: grants(p),
        approvers: p.approvers.join(", "),
        approvals_required: p.approvals_required,
        default_duration: crate::duration::format(time::Duration::seconds(p.default_duration_secs)),
        max_duration: crate::duration::format(p.max_duration()),
        ticket_pattern: p.ticket_pattern.clone().unwrap_or_default(),
        break_glass: p.break_glass,
    }
}

#[derive(Template, WebTemplate)]
#[template(path = "requests/new.html")]
struct NewPage {
    nav: Nav,
    profiles: Vec<ProfileCard>,
    /// Break-glass is then confirmed with a passkey (see `broker::service::file`).
    has_passkey: bool,
    /// Why the last submission was refused, shown above the form it came from.
    error: String,
    /// What was typed, kept when the form comes back with an error.
    kept: Kept,
}

#[derive(Default)]
struct Kept {
    profile: String,
    duration: String,
    justification: String,
    ticket: String,
    break_glass: bool,
}

async fn new_form(State(state): State<AppState>, who: SessionUser) -> AppResult<NewPage> {
    new_page(&state, &who, Kept::default(), String::new()).await
}

async fn new_page(
    state: &AppState,
    who: &SessionUser,
    kept: Kept,
    error: String,
) -> AppResult<NewPage> {
    let profiles = crate::broker::policy::current(&state.store, &who.tenant)
        .await?
        .map(|(_, p)| p)
        .unwrap_or_default();
    let mut tx = state.store.read(who.tenant.tenant_id).await?;
    let has_passkey = !tx.passkeys_of(who.user.id).await?.is_empty();
    tx.commit().await?;
    Ok(NewPage {
        nav: Nav::of(who),
        has_passkey,
        error,
        kept,
        profiles: profiles
            .iter()
            .filter(|p| p.may_request(&who.user.group_names.0))
            .map(card)
            .collect(),
    })
}

#[derive(Deserialize)]
struct NewForm {
    profile: String,
    #[serde(default)]
    duration: String,
    #[serde(default)]
    justification: String,
    #[serde(default)]
    ticket: String,
    #[serde(default)]
    break_glass: Option<String>,
    /// A passkey step-up for break-glass (see `static/passkeys.js`).
    #[serde(default)]
    ceremony: String,
    #[serde(default)]
    credential: String,
}

/// Files the request; a refusal brings the same form back with what was typed and why.
async fn create(
    State(state): State<AppState>,
    who: SessionUser,
    CsrfForm(form): CsrfForm<NewForm>,
) -> AppResult<axum::response::Response> {
    use axum::response::IntoResponse;
    let kept = Kept {
        profile: form.profile.clone(),
        duration: form.duration.clone(),
        justification: form.justification.clone(),
        ticket: form.ticket.clone(),
        break_glass: form.break_glass.is_some(),
    };
    match file(&state, &who, form).await {
        Ok(to) => Ok(to.into_response()),
        Err(e) if super::fixable(&e) => {
            let page = new_page(&state, &who, kept, e.to_string()).await?;
            Ok(super::refused_with(e, page))
        }
        Err(e) => Err(e),
    }
}

async fn file(state: &AppState, who: &SessionUser, form: NewForm) -> AppResult<Redirect> {
    let duration = Some(form.duration.trim())
        .filter(|d| !d.is_empty())
        .map(crate::duration::parse)
        .transpose()
        .map_err(AppError::Unprocessable)?;
    let new = NewRequest {
        duration,
        justification: form.justification,
        ticket: Some(form.ticket),
        starts_at: None,
        break_glass: form.break_glass.is_some(),
    };
    let c = page_caller(state, who);
    let shown = if form.ceremony.is_empty() {
        state.broker.file(&c, &form.profile, new).await?
    } else {
        let proof = StepUpProof {
            ceremony: form.ceremony.parse().map_err(|_| {
                AppError::BadRequest("the passkey step-up names no challenge".into())
            })?,
            credential: form.credential,
        };
        state
            .broker
            .file_with_step_up(&c, &form.profile, new, &proof)
            .await?
    };
    Ok(Redirect::to(&format!(
        "/requests/{}",
        shown.stored.request.id
    )))
}

pub struct Row {
    pub id: String,
    pub profile: String,
    pub state: String,
    pub duration: String,
    pub justification: String,
    pub requester: String,
    pub until: String,
    pub until_epoch: i64,
    pub break_glass: bool,
    pub waiting_review: bool,
}

/// A request as a table row. Text people typed is shown through [`crate::text::shown`], so a
/// bidirectional override or an invisible character cannot make it read differently.
pub fn row(s: &StoredRequest, requester: &str) -> Row {
    let r = &s.request;
    let (until, until_epoch) = match (&r.grant, r.state) {
        (Some(g), RequestState::Active) => (when(g.not_after), g.not_after.unix_timestamp()),
        _ => (String::new(), 0),
    };
    Row {
        id: r.id.to_string(),
        profile: shown_owned(&r.profile),
        state: r.state.as_str().to_owned(),
        duration: crate::duration::format(r.duration),
        justification: shown_owned(&r.justification),
        requester: shown_owned(requester),
        until,
        until_epoch,
        break_glass: r.shortcut == Some(Shortcut::BreakGlass),
        waiting_review: r.shortcut == Some(Shortcut::BreakGlass) && r.reviewed_by.is_none(),
    }
}

#[derive(Template, WebTemplate)]
#[template(path = "requests/detail.html")]
struct DetailPage {
    nav: Nav,
    /// The last action's refusal, shown beside its form, which keeps what was typed.
    refusal: Refusal,
    /// What is asked, by whom, why, who approved: as the inbox shows it.
    a: Asked,
    /// Approving needs a passkey step-up (the approve form asks for one).
    step_up: bool,
    timeline: Vec<super::timeline::Step>,
    can_decide: bool,
    can_cancel: bool,
    can_revoke: bool,
    can_review: bool,
    can_extend: bool,
    notifications: Vec<Note>,
    can_issue_ssh: bool,
    ssh_login: String,
    certs: Vec<CertRow>,
    can_issue_db: bool,
    db_logins: Vec<DbRow>,
    /// SSH sessions hosts reported, with links to their replays.
    sessions: Vec<super::sessions::SessionRow>,
}

/// One database login of the request (never its password).
struct DbRow {
    role: String,
    target: String,
    valid_until: String,
    status: String,
}

fn db_row(c: &crate::store::DbLoginRecord, now: time::OffsetDateTime) -> DbRow {
    let status = match (&c.cleaned_up_at, &c.last_error) {
        (Some(at), _) => format!("dropped {}", when(*at)),
        (None, Some(e)) => format!(
            "cleanup failing after {} attempts ({e}); next try {}",
            c.cleanup_attempts,
            c.next_attempt_at.map(when).unwrap_or_default()
        ),
        (None, None) if c.is_live(now) => "active".into(),
        (None, None) => "being dropped".into(),
    };
    DbRow {
        role: c.role_name.clone(),
        target: c.target_name.clone(),
        valid_until: when(c.valid_before),
        status,
    }
}

/// One issued SSH certificate on the request page.
struct CertRow {
    serial: i64,
    principals: String,
    fingerprint: String,
    valid_after: String,
    valid_before: String,
    status: &'static str,
    file_name: &'static str,
    certificate: String,
}

/// The name `ssh` looks for beside the key, from the certified key's algorithm.
fn cert_file_name(certificate: &str) -> &'static str {
    ssh_key::Certificate::from_openssh(certificate.trim()).map_or("id_ed25519-cert.pub", |c| {
        crate::ssh::cert::cert_file_name(c.public_key())
    })
}

fn cert_row(c: &crate::store::SshCertRecord, now: time::OffsetDateTime) -> CertRow {
    let status = if c.revoked_at.is_some() {
        "revoked"
    } else if c.valid_before <= now {
        "expired"
    } else {
        "valid"
    };
    let certificate = c.certificate.clone().unwrap_or_default();
    CertRow {
        serial: c.serial,
        principals: c.principals.0.join(", "),
        fingerprint: c.fingerprint.clone(),
        valid_after: when(c.valid_after),
        valid_before: when(c.valid_before),
        status,
        file_name: cert_file_name(&certificate),
        certificate,
    }
}

/// Delivery state of one notification about the request.
struct Note {
    to: String,
    subject: String,
    status: String,
}

fn note(item: &crate::store::OutboxItem) -> Note {
    let status = match (&item.sent_at, &item.last_error) {
        (Some(at), _) => format!("sent {}", when(*at)),
        (None, Some(e)) => format!(
            "not delivered after {} attempts ({e}); next try {}",
            item.attempts,
            when(item.next_attempt_at)
        ),
        (None, None) => "queued".into(),
    };
    Note {
        to: shown_owned(&item.recipient),
        subject: shown_owned(item.payload.0["subject"].as_str().unwrap_or_default()),
        status,
    }
}

async fn detail(
    State(state): State<AppState>,
    who: SessionUser,
    Path(id): Path<String>,
) -> AppResult<DetailPage> {
    let id: Uuid = id
        .parse()
        .map_err(|_| AppError::NotFound("no such request".into()))?;
    detail_page(&state, &who, id, Refusal::default()).await
}

/// An action of the request page that was refused: which, why, and what was typed.
#[derive(Default)]
struct Refusal {
    action: String,
    message: String,
    comment: String,
    duration: String,
}

async fn detail_page(
    state: &AppState,
    who: &SessionUser,
    id: Uuid,
    refusal: Refusal,
) -> AppResult<DetailPage> {
    let d = state.broker.detail(&page_caller(state, who), id).await?;
    let now = state.clock.now();
    let a = asked(&d, who.user.id, now);
    let crate::broker::Shown { stored, profile } = d.shown;
    let events = d.events;
    let mut tx = state.store.read(who.tenant.tenant_id).await?;
    let notifications = tx.notifications_for(id).await?.iter().map(note).collect();
    let certs = tx
        .ssh_certs_for_request(id)
        .await?
        .iter()
        .map(|c| cert_row(c, now))
        .collect();
    let db_logins = tx
        .db_logins_for_request(id)
        .await?
        .iter()
        .map(|c| db_row(c, now))
        .collect();
    let sessions = tx
        .ssh_sessions_of(id)
        .await?
        .iter()
        .map(super::sessions::row)
        .collect();
    tx.commit().await?;
    let r = &stored.request;
    let me = service::person(&who.user);
    let mine = r.requester == who.user.id;
    let approver = !mine
        && me.groups.iter().any(|g| profile.approvers.contains(g))
        && who.user.has_role(crate::model::Role::Approver);
    Ok(DetailPage {
        nav: Nav::of(who),
        step_up: profile.step_up,
        timeline: events
            .into_iter()
            .map(|e| super::timeline::step(e.at, &e.action, &e.actor, &e.details.0))
            .collect(),
        can_decide: approver && a.can_decide,
        can_cancel: mine && matches!(r.state, RequestState::Pending | RequestState::Scheduled),
        can_revoke: (mine || approver || me.is_admin)
            && matches!(r.state, RequestState::Active | RequestState::Scheduled),
        can_review: approver && r.shortcut == Some(Shortcut::BreakGlass) && r.reviewed_by.is_none(),
        can_extend: mine && r.state == RequestState::Active && r.extension.is_none(),
        notifications,
        can_issue_ssh: mine && r.state == RequestState::Active && profile.ssh.is_some(),
        ssh_login: profile
            .ssh
            .as_ref()
            .and_then(|s| s.principals.first().cloned())
            .unwrap_or_default(),
        can_issue_db: mine && r.state == RequestState::Active && profile.database.is_some(),
        db_logins,
        sessions,
        certs,
        a,
        refusal,
    })
}

#[derive(Deserialize)]
struct ActForm {
    #[serde(default)]
    comment: String,
    /// The list page to return to (`approvals`, `access`); the request page otherwise.
    #[serde(default)]
    back: String,
    #[serde(default)]
    duration: String,
    /// A passkey step-up for an approval: the ceremony and the browser's assertion (JSON).
    #[serde(default)]
    ceremony: String,
    #[serde(default)]
    credential: String,
}

/// An action from the request page (or a list's card); a refusal brings the request page back
/// with the reason beside the form and what was typed still in it.
async fn act(
    State(state): State<AppState>,
    who: SessionUser,
    Path((id, action)): Path<(String, String)>,
    CsrfForm(form): CsrfForm<ActForm>,
) -> AppResult<axum::response::Response> {
    use axum::response::IntoResponse;
    let request_id: Uuid = id
        .parse()
        .map_err(|_| AppError::NotFound("no such request".into()))?;
    let kept = (form.comment.clone(), form.duration.clone());
    match act_on(&state, &who, request_id, &action, form).await {
        Ok(to) => Ok(to.into_response()),
        Err(e) if super::fixable(&e) && !matches!(e, AppError::NotFound(_)) => {
            let refusal = Refusal {
                action,
                message: e.to_string(),
                comment: kept.0,
                duration: kept.1,
            };
            let page = detail_page(&state, &who, request_id, refusal).await?;
            Ok(super::refused_with(e, page))
        }
        Err(e) => Err(e),
    }
}

async fn act_on(
    state: &AppState,
    who: &SessionUser,
    request_id: Uuid,
    action: &str,
    form: ActForm,
) -> AppResult<Redirect> {
    let id = request_id;
    let c = page_caller(state, who);
    let broker = &state.broker;
    let comment = form.comment.trim().to_owned();
    match action {
        "approve" => {
            let comment = Some(comment).filter(|c| !c.is_empty());
            match step_up_proof(&form)? {
                Some(proof) => {
                    broker
                        .approve_with_step_up(&c, request_id, comment, &proof)
                        .await?
                }
                None => broker.approve(&c, request_id, comment).await?,
            }
        }
        "deny" if comment.is_empty() => {
            return Err(AppError::Unprocessable("a denial needs a comment".into()));
        }
        "deny" => broker.deny(&c, request_id, comment).await?,
        "cancel" => broker.cancel(&c, request_id).await?,
        "revoke" => broker.revoke(&c, request_id, comment).await?,
        "review" => broker.review(&c, request_id).await?,
        "extend" => {
            let added = crate::duration::parse(&form.duration).map_err(AppError::Unprocessable)?;
            broker.extend(&c, request_id, added).await?
        }
        _ => return Err(AppError::NotFound("no such action".into())),
    };
    // Back to the list the form was on (a fixed set: never a URL from the form).
    Ok(Redirect::to(&match form.back.as_str() {
        "approvals" => "/approvals".to_owned(),
        "access" => "/access".to_owned(),
        _ => format!("/requests/{id}"),
    }))
}

/// The step-up an approve form carries, when it carries one.
fn step_up_proof(form: &ActForm) -> AppResult<Option<StepUpProof>> {
    if form.ceremony.is_empty() && form.credential.is_empty() {
        return Ok(None);
    }
    let ceremony = form
        .ceremony
        .parse()
        .map_err(|_| AppError::BadRequest("the passkey step-up names no challenge".into()))?;
    Ok(Some(StepUpProof {
        ceremony,
        credential: form.credential.clone(),
    }))
}

#[derive(Deserialize)]
struct BreakGlassChallenge {
    #[serde(default)]
    profile: String,
}

/// A step-up challenge for break-glass on the chosen profile (for `passkeys.js`).
async fn break_glass_step_up(
    State(state): State<AppState>,
    who: SessionUser,
    CsrfForm(form): CsrfForm<BreakGlassChallenge>,
) -> AppResult<axum::Json<serde_json::Value>> {
    let (ceremony, options) = state
        .broker
        .begin_break_glass_step_up(&page_caller(&state, &who), &form.profile)
        .await?;
    Ok(super::challenge_json(ceremony, options))
}

/// A step-up challenge for approving the request as this page shows it (for `passkeys.js`).
async fn step_up(
    State(state): State<AppState>,
    who: SessionUser,
    Path(id): Path<String>,
    CsrfForm(NoFields {}): CsrfForm<NoFields>,
) -> AppResult<axum::Json<serde_json::Value>> {
    let request_id: Uuid = id
        .parse()
        .map_err(|_| AppError::NotFound("no such request".into()))?;
    let (ceremony, options) = state
        .broker
        .begin_approval_step_up(&page_caller(&state, &who), request_id)
        .await?;
    Ok(super::challenge_json(ceremony, options))
}

#[derive(Deserialize)]
struct CertForm {
    #[serde(default)]
    public_key: String,
}

async fn issue_certificate(
    State(state): State<AppState>,
    who: SessionUser,
    Path(id): Path<String>,
    CsrfForm(form): CsrfForm<CertForm>,
) -> AppResult<Redirect> {
    let request_id: Uuid = id
        .parse()
        .map_err(|_| AppError::NotFound("no such request".into()))?;
    let issued = state
        .broker
        .issue_ssh_certificate(&page_caller(&state, &who), request_id, &form.public_key)
        .await?;
    Ok(Redirect::to(&format!(
        "/requests/{id}#cert-{}",
        issued.serial
    )))
}

#[derive(Template, WebTemplate)]
#[template(path = "requests/db_login.html")]
struct DbLoginPage {
    nav: Nav,
    id: String,
    profile: String,
    login: crate::broker::db::IssuedLogin,
    expires: String,
    psql: String,
}

/// Creates a login and shows it on this response only: the password is not kept anywhere.
async fn issue_db_login(
    State(state): State<AppState>,
    who: SessionUser,
    Path(id): Path<String>,
    CsrfForm(NoFields {}): CsrfForm<NoFields>,
) -> AppResult<DbLoginPage> {
    let request_id: Uuid = id
        .parse()
        .map_err(|_| AppError::NotFound("no such request".into()))?;
    let login = state
        .broker
        .issue_db_login(&page_caller(&state, &who), request_id)
        .await?;
    let psql = crate::broker::db::client_hint(&login);
    Ok(DbLoginPage {
        nav: Nav::of(&who),
        id,
        profile: login.profile.clone(),
        expires: when(login.expires_at),
        psql,
        login,
    })
}

/// The certificate as a file (`id_ed25519-cert.pub`): public data, for anyone who may see the
/// request.
async fn download_certificate(
    State(state): State<AppState>,
    who: SessionUser,
    Path((id, serial)): Path<(String, String)>,
) -> AppResult<impl axum::response::IntoResponse> {
    let not_found = || AppError::NotFound("no such certificate".into());
    let request_id: Uuid = id.parse().map_err(|_| not_found())?;
    let serial: i64 = serial.parse().map_err(|_| not_found())?;
    state
        .broker
        .show(&page_caller(&state, &who), request_id)
        .await?;
    let mut tx = state.store.read(who.tenant.tenant_id).await?;
    let cert = tx
        .ssh_certs_for_request(request_id)
        .await?
        .into_iter()
        .find(|c| c.serial == serial)
        .and_then(|c| c.certificate)
        .ok_or_else(not_found)?;
    tx.commit().await?;
    let disposition = format!("attachment; filename=\"{}\"", cert_file_name(&cert));
    Ok((
        [
            (
                axum::http::header::CONTENT_TYPE,
                "text/plain; charset=utf-8".to_owned(),
            ),
            (axum::http::header::CONTENT_DISPOSITION, disposition),
        ],
        format!("{}\n", cert.trim_end()),
    ))
}

#[derive(Template, WebTemplate)]
#[template(path = "requests/inbox.html")]
struct InboxPage {
    nav: Nav,
    waiting: Vec<Asked>,
    /// The link to the next (older) page, empty on the last.
    next: String,
}

/// What an approver needs to decide, as the inbox shows it: what is asked, for how long (or how
/// much more), from when, why, by whom, who approved already and what they said, and how long
/// it has waited.
struct Asked {
    r: Row,
    grants: String,
    /// "30m", or "+1h on a grant that ends 2026-12-04 14:05 UTC".
    ask: String,
    /// "when approved", or the scheduled start.
    starts: String,
    ticket: String,
    groups: String,
    waited: String,
    asked_at: String,
    /// Each approval of this round: who, with a passkey or not, and their comment.
    approvals: Vec<String>,
    approvals_required: u32,
    /// Approvals still missing in this round.
    remaining: usize,
    approved_by_me: bool,
    /// Approving needs a passkey (the profile's `step_up`).
    step_up: bool,
    /// Pending (or an extension pending) and not yet approved by the viewer.
    can_decide: bool,
    /// A break-glass activation awaiting the viewer's review.
    can_review: bool,
}

fn asked(d: &crate::broker::detail::Detail, me: uuid::Uuid, now: time::OffsetDateTime) -> Asked {
    let (s, p) = (&d.shown.stored, &d.shown.profile);
    let r = &s.request;
    let round = r.extension.as_ref().map_or(0, |e| e.round);
    let ask = match (&r.extension, &r.grant) {
        (Some(e), Some(g)) => format!(
            "+{} on a grant that ends {}",
            crate::duration::format(e.added),
            when(g.not_after)
        ),
        _ => crate::duration::format(r.duration),
    };
    let comment_of = |who: &str| {
        d.decisions
            .iter()
            .rev()
            .find(|x| x.by == who && x.decision == "approved")
            .and_then(|x| x.comment.clone())
    };
    let approvals: Vec<String> = r
        .approvals
        .iter()
        .filter(|a| a.round == round)
        .map(|a| {
            let who = d
                .approver_emails
                .get(&a.approver)
                .cloned()
                .unwrap_or_default();
            let mut line = shown_owned(&who);
            if a.stepped_up {
                line.push_str(" (passkey)");
            }
            if let Some(c) = comment_of(&who) {
                line.push_str(&format!(": \u{201c}{}\u{201d}", shown_owned(&c)));
            }
            line
        })
        .collect();
    let approved_by_me = r
        .approvals
        .iter()
        .any(|a| a.round == round && a.approver == me);
    let deciding = r.state == RequestState::Pending || r.extension.is_some();
    Asked {
        r: row(s, &d.requester_email),
        grants: grants(p),
        ask,
        starts: r.starts_at.map_or_else(|| "when approved".into(), when),
        ticket: shown_owned(r.ticket.as_deref().unwrap_or_default()),
        groups: shown_owned(&d.requester_groups.join(", ")),
        waited: ago(r.created_at, now),
        asked_at: when(r.created_at),
        remaining: (p.approvals_required as usize).saturating_sub(approvals.len()),
        approvals,
        approvals_required: p.approvals_required,
        approved_by_me,
        step_up: p.step_up,
        can_decide: deciding && !approved_by_me,
        can_review: r.shortcut == Some(Shortcut::BreakGlass)
            && r.reviewed_by.is_none()
            && r.requester != me,
    }
}

/// `?after=<cursor>&limit=N` on a paged list page.
#[derive(Deserialize, Default)]
pub struct PageQuery {
    #[serde(default)]
    pub after: String,
    pub limit: Option<i64>,
}

impl PageQuery {
    /// The list query for this page (`limit` defaults to 50 rows on pages).
    pub fn list(&self, base: crate::broker::service::ListQuery) -> AppResult<service::ListQuery> {
        let after = match self.after.trim() {
            "" => None,
            a => Some(Cursor::parse(a).ok_or_else(|| {
                AppError::Unprocessable(
                    "this page link is not valid: start from the first page".into(),
                )
            })?),
        };
        Ok(service::ListQuery {
            after,
            limit: Some(self.limit.unwrap_or(50)),
            ..base
        })
    }
}

/// The link to the page after `page`, or empty.
pub fn next_link(path: &str, page: &service::Page, limit: Option<i64>) -> String {
    match (&page.next, limit) {
        (Some(c), Some(l)) => format!("{path}?after={}&limit={l}", c.encode()),
        (Some(c), None) => format!("{path}?after={}", c.encode()),
        (None, _) => String::new(),
    }
}

async fn inbox(
    State(state): State<AppState>,
    who: SessionUser,
    Query(q): Query<PageQuery>,
) -> AppResult<InboxPage> {
    let query = q.list(service::ListQuery {
        reviewable: true,
        ..Default::default()
    })?;
    let (details, next) = state
        .broker
        .list_detailed(&page_caller(&state, &who), &query)
        .await?;
    let now = state.clock.now();
    Ok(InboxPage {
        nav: Nav::of(&who),
        waiting: details.iter().map(|d| asked(d, who.user.id, now)).collect(),
        next: next_link(
            "/approvals",
            &service::Page {
                items: Vec::new(),
                next,
            },
            q.limit,
        ),
    })
}
