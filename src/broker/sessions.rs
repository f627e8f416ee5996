//! SSH sessions as hosts report them (`elevate host session`): a session opens only on a
//! certificate elevate issued for a grant that is active now, the helper asks every couple of
//! seconds whether it may go on, streams the recording in numbered chunks, and closes it with
//! how it ended. The end is audited with the recording's SHA-256, which `audit verify` checks.
//! People read sessions and recordings of the requests they may see.

use serde::{Deserialize, Serialize};
use serde_json::json;
use sha2::{Digest, Sha256};
use time::OffsetDateTime;
use uuid::Uuid;

use crate::audit::Ctx;
use crate::broker::Caller;
use crate::broker::service::{load_in, lockdown_reason, profile_of};
use crate::crypto::TokenHash;
use crate::error::{AppError, AppResult};
use crate::model::Tenant;
use crate::ssh::cert::check_presented;
use crate::store::{SshSession, Store, StoredRequest, TenantTx};
use crate::workflow::State;

/// A helper that has not called for this long is gone (killed, or its host down): the reaper
/// ends its session with what was recorded so far.
pub const SILENCE: time::Duration = time::Duration::seconds(30);

/// Why a session ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum EndReason {
    /// The shell or command exited, or the client went away.
    Exit,
    /// The grant (or, with elevate unreachable, the certificate) ended.
    Expired,
    Revoked,
    Lockdown,
    /// The helper failed and ended the session itself.
    HelperError,
    /// The helper stopped reporting; ended by elevate.
    HelperLost,
}

impl EndReason {
    pub fn as_str(self) -> &'static str {
        match self {
            EndReason::Exit => "exit",
            EndReason::Expired => "expired",
            EndReason::Revoked => "revoked",
            EndReason::Lockdown => "lockdown",
            EndReason::HelperError => "helper_error",
            EndReason::HelperLost => "helper_lost",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        serde_json::from_value(serde_json::Value::String(s.to_owned())).ok()
    }
}

/// What a host says when a login starts.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Opening {
    /// The certificate the user presented (from `SSH_USER_AUTH`), in OpenSSH form.
    pub certificate: String,
    /// The account logged in to.
    pub principal: String,
    /// `SSH_ORIGINAL_COMMAND`, when the client asked for a command.
    pub command: Option<String>,
    pub pty: bool,
}

/// Whether a session may go on, and until when.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Verdict {
    pub active: bool,
    /// The grant's end (an extension moves it).
    #[serde(with = "time::serde::rfc3339")]
    pub not_after: OffsetDateTime,
    pub end_reason: Option<EndReason>,
    /// One line for the person in the session when it must end.
    pub message: Option<String>,
}

/// An opened session and what the helper needs to run it.
#[derive(Debug, Clone)]
pub struct Opened {
    pub session: SshSession,
    /// The session key, shown to the helper only: it proves later calls come from the helper
    /// that opened the session, not from someone else holding the host's token.
    pub key: String,
    pub verdict: Verdict,
    pub valid_before: OffsetDateTime,
}

fn ended(not_after: OffsetDateTime, reason: EndReason, message: String) -> Verdict {
    Verdict {
        active: false,
        not_after,
        end_reason: Some(reason),
        message: Some(message),
    }
}

/// The rule: a session goes on while its request is active, before the grant's end, with its
/// certificate not revoked and the organisation not in lockdown.
fn judge(
    stored: &StoredRequest,
    cert_revoked: bool,
    lockdown: Option<String>,
    now: OffsetDateTime,
) -> Verdict {
    let r = &stored.request;
    let not_after = r.grant.as_ref().map_or(now, |g| g.not_after);
    if let Some(reason) = lockdown {
        return ended(
            not_after,
            EndReason::Lockdown,
            format!("the organisation is in emergency lockdown ({reason})"),
        );
    }
    if cert_revoked || r.state == State::Revoked {
        return ended(
            not_after,
            EndReason::Revoked,
            format!("the grant of request {} was revoked", r.id),
        );
    }
    if r.state != State::Active || now >= not_after {
        return ended(
            not_after,
            EndReason::Expired,
            format!("the grant of request {} has ended", r.id),
        );
    }
    Verdict {
        active: true,
        not_after,
        end_reason: None,
        message: None,
    }
}

/// Opens a session for a login on `host`, or refuses it (403 with one line for the person).
/// Refusals are audited too.
pub async fn open(
    store: &Store,
    ctx: &Ctx,
    tenant: &Tenant,
    host: &crate::store::Host,
    o: &Opening,
) -> AppResult<Opened> {
    let now = ctx.now;
    let mut tx = store.tenant(tenant.tenant_id).await?;
    let trusted: Vec<String> = tx
        .published_user_ca_keys(now)
        .await?
        .into_iter()
        .map(|k| k.public_key)
        .collect();
    let refused = |request: Option<Uuid>, message: String| async move {
        refuse(store, tenant, ctx, &host.name, request, message).await
    };
    let presented = match check_presented(&o.certificate, &trusted, now) {
        Ok(p) => p,
        Err(message) => {
            tx.rollback().await?;
            return refused(None, message).await;
        }
    };
    // The account need not be one of the certificate's principals: sshd maps principals to
    // accounts (`AuthorizedPrincipalsFile`) and has checked that mapping before running us.
    let serial = i64::try_from(presented.serial).unwrap_or(-1);
    let known = tx.ssh_cert_by_serial(serial).await?;
    let Some((request_id, revoked_at)) = known.filter(|(id, _)| presented.request == Some(*id))
    else {
        tx.rollback().await?;
        return refused(
            presented.request,
            format!(
                "elevate issued no certificate with serial {}",
                presented.serial
            ),
        )
        .await;
    };
    let stored = tx
        .request(request_id)
        .await?
        .ok_or_else(|| AppError::internal(anyhow::anyhow!("certificate of a missing request")))?;
    let profile = profile_of(&mut tx, &stored).await?;
    let verdict = judge(
        &stored,
        revoked_at.is_some(),
        lockdown_reason(&mut tx).await?,
        now,
    );
    if let Some(message) = verdict.message.clone() {
        tx.rollback().await?;
        return refused(Some(request_id), message).await;
    }
    let key = hex::encode(crate::crypto::random_bytes::<32>().map_err(AppError::internal)?);
    let session = SshSession {
        id: Uuid::now_v7(),
        key_hash: TokenHash::of(&key).0.to_vec(),
        request_id,
        host_id: host.id,
        host_name: host.name.clone(),
        principal: o.principal.clone(),
        serial,
        command: o.command.clone(),
        pty: o.pty,
        record_input: profile.ssh.as_ref().is_some_and(|s| s.record_input),
        started_at: now,
        last_seen_at: now,
        ended_at: None,
        end_reason: None,
        bytes: 0,
        chunks: 0,
        recording_sha256: None,
        purged_at: None,
    };
    tx.insert_ssh_session(&session).await?;
    tx.append_audit(
        &ctx.event("session.started", &host.name)
            .request(request_id)
            .details(json!({
                "session_id": session.id,
                "host": host.name,
                "account": session.principal,
                "principals": presented.principals,
                "serial": presented.serial.to_string(),
                "command": session.command,
                "pty": session.pty,
                "record_input": session.record_input,
            })),
        now,
    )
    .await?;
    tx.commit().await?;
    Ok(Opened {
        session,
        key,
        verdict,
        valid_before: presented.valid_before,
    })
}

async fn refuse<T>(
    store: &Store,
    tenant: &Tenant,
    ctx: &Ctx,
    host: &str,
    request: Option<Uuid>,
    message: String,
) -> AppResult<T> {
    let mut tx = store.tenant(tenant.tenant_id).await?;
    let mut event = ctx
        .event("session.refused", host)
        .details(json!({ "reason": message }));
    if let Some(id) = request {
        event = event.request(id);
    }
    tx.append_audit(&event, ctx.now).await?;
    tx.commit().await?;
    Err(AppError::Forbidden(message))
}

/// Which session a helper calls about, with the key it was given at the start.
#[derive(Debug, Clone, Copy)]
pub struct SessionRef<'a> {
    pub id: Uuid,
    pub key: &'a str,
}

/// A session of `host` whose key the caller holds (anything else is a 404).
async fn hosts_session(
    tx: &mut TenantTx,
    host: &crate::store::Host,
    s: SessionRef<'_>,
) -> AppResult<SshSession> {
    let key = TokenHash::of(s.key);
    tx.ssh_session(s.id)
        .await?
        .filter(|found| found.host_id == host.id && key.matches(&found.key_hash))
        .ok_or_else(|| AppError::NotFound(format!("no session {}", s.id)))
}

/// Whether session `id` may go on (the helper asks every couple of seconds).
pub async fn check(
    store: &Store,
    ctx: &Ctx,
    tenant: &Tenant,
    host: &crate::store::Host,
    s: SessionRef<'_>,
) -> AppResult<Verdict> {
    let mut tx = store.tenant(tenant.tenant_id).await?;
    let session = hosts_session(&mut tx, host, s).await?;
    let id = s.id;
    let stored = tx
        .request(session.request_id)
        .await?
        .ok_or_else(|| AppError::internal(anyhow::anyhow!("session of a missing request")))?;
    let verdict = match (session.ended_at, session.end_reason.as_deref()) {
        (Some(_), reason) => ended(
            stored
                .request
                .grant
                .as_ref()
                .map_or(ctx.now, |g| g.not_after),
            reason
                .and_then(EndReason::parse)
                .unwrap_or(EndReason::HelperLost),
            "elevate has ended this session".to_owned(),
        ),
        (None, _) => {
            let revoked = tx
                .ssh_cert_by_serial(session.serial)
                .await?
                .is_some_and(|(_, at)| at.is_some());
            let lockdown = lockdown_reason(&mut tx).await?;
            tx.touch_ssh_session(id, ctx.now).await?;
            judge(&stored, revoked, lockdown, ctx.now)
        }
    };
    tx.commit().await?;
    Ok(verdict)
}

/// The largest chunk a helper may send at once (it sends at most 64 KiB).
pub const MAX_CHUNK: usize = 128 * 1024;

/// Stores chunk `seq` of session `id`'s recording. Sending a stored chunk again is harmless
/// (an upload retried after a lost answer); a gap or an ended session is a 409.
pub async fn record(
    store: &Store,
    ctx: &Ctx,
    tenant: &Tenant,
    host: &crate::store::Host,
    s: SessionRef<'_>,
    seq: i32,
    data: &[u8],
) -> AppResult<()> {
    let id = s.id;
    if data.len() > MAX_CHUNK {
        return Err(AppError::TooLarge(format!(
            "a recording chunk is at most {MAX_CHUNK} bytes"
        )));
    }
    let mut tx = store.tenant(tenant.tenant_id).await?;
    let session = hosts_session(&mut tx, host, s).await?;
    if !tx.append_session_chunk(id, seq, data, ctx.now).await? {
        tx.rollback().await?;
        if session.ended_at.is_some() {
            return Err(AppError::Conflict(format!("session {id} has ended")));
        }
        if seq < session.chunks {
            return Ok(());
        }
        return Err(AppError::Conflict(format!(
            "expected chunk {} of session {id}, not {seq}",
            session.chunks
        )));
    }
    tx.commit().await?;
    Ok(())
}

fn digest(chunks: &[crate::store::SessionChunk]) -> String {
    let mut h = Sha256::new();
    for c in chunks {
        h.update(&c.data);
    }
    hex::encode(h.finalize())
}

/// Ends session `id` for `reason` (audited with the recording's hash). Ending an ended session
/// changes nothing.
pub async fn close(
    store: &Store,
    ctx: &Ctx,
    tenant: &Tenant,
    host: &crate::store::Host,
    s: SessionRef<'_>,
    reason: EndReason,
    exit_status: Option<i32>,
) -> AppResult<()> {
    let mut tx = store.tenant(tenant.tenant_id).await?;
    let session = hosts_session(&mut tx, host, s).await?;
    close_in(&mut tx, ctx, &session, reason, exit_status).await?;
    tx.commit().await?;
    Ok(())
}

async fn close_in(
    tx: &mut TenantTx,
    ctx: &Ctx,
    session: &SshSession,
    reason: EndReason,
    exit_status: Option<i32>,
) -> AppResult<()> {
    let chunks = tx.session_chunks(session.id).await?;
    let sha = digest(&chunks);
    if !tx
        .end_ssh_session(session.id, reason.as_str(), &sha, ctx.now)
        .await?
    {
        return Ok(());
    }
    let bytes: usize = chunks.iter().map(|c| c.data.len()).sum();
    tx.append_audit(
        &ctx.event("session.ended", &session.host_name)
            .request(session.request_id)
            .details(json!({
                "session_id": session.id,
                "host": session.host_name,
                "principal": session.principal,
                "reason": reason.as_str(),
                "exit_status": exit_status,
                "bytes": bytes,
                "chunks": chunks.len(),
                "recording_sha256": sha,
            })),
        ctx.now,
    )
    .await?;
    Ok(())
}

/// The reaper's pass over a tenant's sessions: ends those whose helper went silent, and deletes
/// recordings older than the tenant's retention. Returns how many of each.
pub async fn sweep(store: &Store, ctx: &Ctx, tenant: &Tenant) -> AppResult<(usize, usize)> {
    let mut tx = store.tenant(tenant.tenant_id).await?;
    let silent = tx.silent_ssh_sessions(ctx.now - SILENCE).await?;
    for id in &silent {
        if let Some(session) = tx.ssh_session(*id).await? {
            close_in(&mut tx, ctx, &session, EndReason::HelperLost, None).await?;
        }
    }
    let days = tx.recording_retention_days().await?;
    let old = tx
        .expired_recordings(ctx.now - time::Duration::days(days.into()))
        .await?;
    for id in &old {
        tx.purge_recording(*id, ctx.now).await?;
        tx.append_audit(
            &ctx.event("session.recording_deleted", id.to_string())
                .details(json!({ "session_id": id, "retention_days": days })),
            ctx.now,
        )
        .await?;
    }
    tx.commit().await?;
    Ok((silent.len(), old.len()))
}

/// The sessions of a request `c` may see, oldest first.
pub async fn of_request(store: &Store, c: &Caller, request: Uuid) -> AppResult<Vec<SshSession>> {
    let mut tx = store.read(c.tenant.tenant_id).await?;
    load_in(&mut tx, &c.user, request).await?;
    let sessions = tx.ssh_sessions_of(request).await?;
    tx.commit().await?;
    Ok(sessions)
}

/// Session `id`, for someone who may see its request.
pub async fn one(store: &Store, c: &Caller, id: Uuid) -> AppResult<SshSession> {
    let mut tx = store.read(c.tenant.tenant_id).await?;
    let session = visible_session(&mut tx, c, id).await?;
    tx.commit().await?;
    Ok(session)
}

/// Session `id` when `c` may see its request; a 404 otherwise, as for a session that does not
/// exist (store errors stay errors).
async fn visible_session(tx: &mut TenantTx, c: &Caller, id: Uuid) -> AppResult<SshSession> {
    let not_found = || AppError::NotFound(format!("no session {id}"));
    let session = tx.ssh_session(id).await?.ok_or_else(not_found)?;
    match load_in(tx, &c.user, session.request_id).await {
        Ok(_) => Ok(session),
        Err(AppError::NotFound(_)) => Err(not_found()),
        Err(e) => Err(e),
    }
}

/// Session `id` and its recording (asciicast v2), for someone who may see its request. Each
/// viewing is audited.
pub async fn recording(store: &Store, c: &Caller, id: Uuid) -> AppResult<(SshSession, Vec<u8>)> {
    let mut tx = store.tenant(c.tenant.tenant_id).await?;
    let session = visible_session(&mut tx, c, id).await?;
    if session.purged_at.is_some() {
        return Err(AppError::NotFound(format!(
            "the recording of session {id} was deleted under the organisation's retention setting"
        )));
    }
    let data: Vec<u8> = tx
        .session_chunks(id)
        .await?
        .into_iter()
        .flat_map(|c| c.data)
        .collect();
    tx.append_audit(
        &c.ctx
            .event("session.recording_viewed", id.to_string())
            .request(session.request_id)
            .details(json!({ "session_id": id, "bytes": data.len() })),
        c.ctx.now,
    )
    .await?;
    tx.commit().await?;
    Ok((session, data))
}

/// What checking the kept recordings against their end events found.
#[derive(Debug, Default)]
pub struct RecordingCheck {
    pub checked: usize,
    /// Deleted under the retention setting: nothing left to check.
    pub deleted: usize,
    /// Session ids whose stored recording no longer hashes to what the end event says.
    pub altered: Vec<Uuid>,
}

/// Recomputes each kept recording's SHA-256 and compares it with its `session.ended` event,
/// which the hash chain protects (`elevate audit verify`).
pub async fn verify_recordings(store: &Store, tenant: &Tenant) -> AppResult<RecordingCheck> {
    let mut tx = store.tenant(tenant.tenant_id).await?;
    let mut check = RecordingCheck::default();
    for d in tx.session_end_events().await? {
        let (Some(id), Some(recorded)) = (
            d["session_id"]
                .as_str()
                .and_then(|s| s.parse::<Uuid>().ok()),
            d["recording_sha256"].as_str(),
        ) else {
            continue;
        };
        match tx.ssh_session(id).await? {
            Some(s) if s.purged_at.is_some() => check.deleted += 1,
            Some(_) => {
                check.checked += 1;
                if digest(&tx.session_chunks(id).await?) != recorded {
                    check.altered.push(id);
                }
            }
            None => check.altered.push(id),
        }
    }
    tx.commit().await?;
    Ok(check)
}
