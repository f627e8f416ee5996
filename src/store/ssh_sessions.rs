//! SSH hosts (principals of their own, holding a host token) and the sessions their helper
//! reports: who logged in where on which grant, how it ended, and the recording in chunks.

use time::OffsetDateTime;
use uuid::Uuid;

use super::{StoreError, StoreResult, TenantTx, ts};
use crate::crypto::TokenHash;

/// A registered SSH host.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct Host {
    pub id: Uuid,
    pub name: String,
    pub secret_hash: Vec<u8>,
    pub created_at: OffsetDateTime,
    pub last_seen_at: Option<OffsetDateTime>,
    pub removed_at: Option<OffsetDateTime>,
}

/// One SSH session as its host reported it.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct SshSession {
    pub id: Uuid,
    pub request_id: Uuid,
    pub host_id: Uuid,
    pub host_name: String,
    pub principal: String,
    pub serial: i64,
    /// SHA-256 of the session key the helper holds: every later call about the session needs it.
    pub key_hash: Vec<u8>,
    pub command: Option<String>,
    pub pty: bool,
    pub record_input: bool,
    pub started_at: OffsetDateTime,
    pub last_seen_at: OffsetDateTime,
    pub ended_at: Option<OffsetDateTime>,
    pub end_reason: Option<String>,
    pub bytes: i64,
    pub chunks: i32,
    pub recording_sha256: Option<String>,
    pub purged_at: Option<OffsetDateTime>,
}

/// One stored piece of a recording, in order of `seq`.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct SessionChunk {
    pub seq: i32,
    pub data: Vec<u8>,
}

impl TenantTx {
    pub async fn insert_host(
        &mut self,
        name: &str,
        hash: &TokenHash,
        now: OffsetDateTime,
    ) -> StoreResult<Host> {
        let (tenant_id, id) = (self.tenant_id, Uuid::now_v7());
        let host = sql!(fetch_one Host; self,
            "INSERT INTO hosts (tenant_id, id, name, secret_hash, created_at) VALUES ($1, $2, $3, $4, $5)
             RETURNING id, name, secret_hash, created_at, last_seen_at, removed_at",
            tenant_id, id, name, hash.as_bytes(), ts(now))
        .map_err(|e| StoreError::conflict_or(e, "host"))?;
        self.mark_changed();
        Ok(host)
    }

    /// A host by its token's hash, confirmed in constant time; removed hosts too (the caller
    /// refuses them).
    pub async fn host_by_hash(&mut self, hash: &TokenHash) -> StoreResult<Option<Host>> {
        let tenant_id = self.tenant_id;
        let found = sql!(fetch_optional Host; self,
            "SELECT id, name, secret_hash, created_at, last_seen_at, removed_at
             FROM hosts WHERE tenant_id = $1 AND secret_hash = $2", tenant_id, hash.as_bytes())?;
        Ok(found.filter(|h| hash.matches(&h.secret_hash)))
    }

    /// Hosts not removed, by name.
    pub async fn hosts(&mut self) -> StoreResult<Vec<Host>> {
        let tenant_id = self.tenant_id;
        Ok(sql!(fetch_all Host; self,
            "SELECT id, name, secret_hash, created_at, last_seen_at, removed_at
             FROM hosts WHERE tenant_id = $1 AND removed_at IS NULL ORDER BY name", tenant_id)?)
    }

    /// Removes the live host called `name`; its token stops working. False when there is none.
    pub async fn remove_host(&mut self, name: &str, now: OffsetDateTime) -> StoreResult<bool> {
        let tenant_id = self.tenant_id;
        let n = sql!(exec self,
            "UPDATE hosts SET removed_at = $3 WHERE tenant_id = $1 AND name = $2 AND removed_at IS NULL",
            tenant_id, name, ts(now))?;
        if n > 0 {
            self.mark_changed();
        }
        Ok(n > 0)
    }

    /// Notes that host `id` called at `now` (not audited: it is a reading, like a token's last use).
    pub async fn touch_host(&mut self, id: Uuid, now: OffsetDateTime) -> StoreResult<()> {
        let tenant_id = self.tenant_id;
        sql!(exec self, "UPDATE hosts SET last_seen_at = $3 WHERE tenant_id = $1 AND id = $2",
            tenant_id, id, ts(now))?;
        Ok(())
    }

    /// The request a certificate serial was issued for, and whether it is revoked.
    pub async fn ssh_cert_by_serial(
        &mut self,
        serial: i64,
    ) -> StoreResult<Option<(Uuid, Option<OffsetDateTime>)>> {
        let tenant_id = self.tenant_id;
        Ok(sql!(fetch_optional (Uuid, Option<OffsetDateTime>); self,
            "SELECT request_id, revoked_at FROM credentials
             WHERE tenant_id = $1 AND kind = 'ssh_cert' AND serial = $2", tenant_id, serial)?)
    }

    pub async fn insert_ssh_session(&mut self, s: &SshSession) -> StoreResult<()> {
        let tenant_id = self.tenant_id;
        sql!(exec self,
            "INSERT INTO ssh_sessions (tenant_id, id, request_id, host_id, host_name, principal, serial,
                key_hash, command, pty, record_input, started_at, last_seen_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $12)",
            tenant_id, s.id, s.request_id, s.host_id, &s.host_name, &s.principal, s.serial,
            &s.key_hash, &s.command, s.pty, s.record_input, ts(s.started_at))?;
        self.mark_changed();
        Ok(())
    }

    pub async fn ssh_session(&mut self, id: Uuid) -> StoreResult<Option<SshSession>> {
        let tenant_id = self.tenant_id;
        Ok(sql!(fetch_optional SshSession; self,
            "SELECT id, request_id, host_id, host_name, principal, serial, key_hash, command, pty, record_input,
                    started_at, last_seen_at, ended_at, end_reason, bytes, chunks, recording_sha256, purged_at
             FROM ssh_sessions WHERE tenant_id = $1 AND id = $2", tenant_id, id)?)
    }

    pub async fn ssh_sessions_of(&mut self, request_id: Uuid) -> StoreResult<Vec<SshSession>> {
        let tenant_id = self.tenant_id;
        Ok(sql!(fetch_all SshSession; self,
            "SELECT id, request_id, host_id, host_name, principal, serial, key_hash, command, pty, record_input,
                    started_at, last_seen_at, ended_at, end_reason, bytes, chunks, recording_sha256, purged_at
             FROM ssh_sessions WHERE tenant_id = $1 AND request_id = $2 ORDER BY started_at, id",
            tenant_id, request_id)?)
    }

    /// Notes that a session's helper is alive at `now` (not audited, like `touch_host`).
    pub async fn touch_ssh_session(&mut self, id: Uuid, now: OffsetDateTime) -> StoreResult<()> {
        let tenant_id = self.tenant_id;
        sql!(exec self,
            "UPDATE ssh_sessions SET last_seen_at = $3 WHERE tenant_id = $1 AND id = $2 AND ended_at IS NULL",
            tenant_id, id, ts(now))?;
        Ok(())
    }

    /// Stores chunk `seq` of an open session's recording. A chunk sent twice (a retried upload)
    /// is kept once; false when the session has ended or `seq` is not the next one.
    pub async fn append_session_chunk(
        &mut self,
        id: Uuid,
        seq: i32,
        data: &[u8],
        now: OffsetDateTime,
    ) -> StoreResult<bool> {
        let tenant_id = self.tenant_id;
        let n = sql!(exec self,
            "UPDATE ssh_sessions SET chunks = chunks + 1, bytes = bytes + $4, last_seen_at = $5
             WHERE tenant_id = $1 AND id = $2 AND ended_at IS NULL AND chunks = $3",
            tenant_id, id, seq, data.len() as i64, ts(now))?;
        if n == 0 {
            return Ok(false);
        }
        sql!(exec self,
            "INSERT INTO session_chunks (tenant_id, session_id, seq, data) VALUES ($1, $2, $3, $4)",
            tenant_id, id, seq, data)?;
        Ok(true)
    }

    pub async fn session_chunks(&mut self, id: Uuid) -> StoreResult<Vec<SessionChunk>> {
        let tenant_id = self.tenant_id;
        Ok(sql!(fetch_all SessionChunk; self,
            "SELECT seq, data FROM session_chunks WHERE tenant_id = $1 AND session_id = $2 ORDER BY seq",
            tenant_id, id)?)
    }

    /// Ends an open session; false when it had ended already.
    pub async fn end_ssh_session(
        &mut self,
        id: Uuid,
        reason: &str,
        sha256: &str,
        now: OffsetDateTime,
    ) -> StoreResult<bool> {
        let tenant_id = self.tenant_id;
        let n = sql!(exec self,
            "UPDATE ssh_sessions SET ended_at = $3, end_reason = $4, recording_sha256 = $5
             WHERE tenant_id = $1 AND id = $2 AND ended_at IS NULL",
            tenant_id, id, ts(now), reason, sha256)?;
        if n > 0 {
            self.mark_changed();
        }
        Ok(n > 0)
    }

    /// Open sessions whose helper has not called since `before` (killed, or its host gone).
    pub async fn silent_ssh_sessions(&mut self, before: OffsetDateTime) -> StoreResult<Vec<Uuid>> {
        let tenant_id = self.tenant_id;
        let rows: Vec<(Uuid,)> = sql!(fetch_all (Uuid,); self,
            "SELECT id FROM ssh_sessions WHERE tenant_id = $1 AND ended_at IS NULL AND last_seen_at < $2
             ORDER BY last_seen_at LIMIT 500", tenant_id, ts(before))?;
        Ok(rows.into_iter().map(|(id,)| id).collect())
    }

    /// Sessions ended before `before` whose recording is still kept.
    pub async fn expired_recordings(&mut self, before: OffsetDateTime) -> StoreResult<Vec<Uuid>> {
        let tenant_id = self.tenant_id;
        let rows: Vec<(Uuid,)> = sql!(fetch_all (Uuid,); self,
            "SELECT id FROM ssh_sessions WHERE tenant_id = $1 AND purged_at IS NULL AND ended_at < $2
             ORDER BY ended_at LIMIT 500", tenant_id, ts(before))?;
        Ok(rows.into_iter().map(|(id,)| id).collect())
    }

    /// Deletes a recording's chunks (the session row and its hash stay).
    pub async fn purge_recording(&mut self, id: Uuid, now: OffsetDateTime) -> StoreResult<()> {
        let tenant_id = self.tenant_id;
        sql!(exec self, "DELETE FROM session_chunks WHERE tenant_id = $1 AND session_id = $2",
            tenant_id, id)?;
        sql!(exec self,
            "UPDATE ssh_sessions SET purged_at = $3 WHERE tenant_id = $1 AND id = $2",
            tenant_id, id, ts(now))?;
        self.mark_changed();
        Ok(())
    }

    pub async fn recording_retention_days(&mut self) -> StoreResult<i32> {
        let tenant_id = self.tenant_id;
        Ok(sql!(fetch_one (i32,); self,
            "SELECT recording_retention_days FROM tenants WHERE tenant_id = $1", tenant_id)?
        .0)
    }

    pub async fn set_recording_retention_days(&mut self, days: i32) -> StoreResult<()> {
        let tenant_id = self.tenant_id;
        sql!(exec self, "UPDATE tenants SET recording_retention_days = $2 WHERE tenant_id = $1",
            tenant_id, days)?;
        self.mark_changed();
        Ok(())
    }

    /// The `session.ended` events' details (session id and recording hash), oldest first.
    pub async fn session_end_events(&mut self) -> StoreResult<Vec<serde_json::Value>> {
        self.flush_audit().await?;
        let tenant_id = self.tenant_id;
        let rows: Vec<(sqlx::types::Json<serde_json::Value>,)> = sql!(fetch_all (sqlx::types::Json<serde_json::Value>,); self,
            "SELECT details FROM audit_events WHERE tenant_id = $1 AND action = 'session.ended' ORDER BY seq",
            tenant_id)?;
        Ok(rows.into_iter().map(|(d,)| d.0).collect())
    }
}
