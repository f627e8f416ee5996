use time::OffsetDateTime;
use uuid::Uuid;

use super::{StoreResult, TenantTx, ts};
use crate::crypto::TokenHash;
use crate::model::{Session, SigninLink};

impl TenantTx {
    pub async fn insert_signin_link(
        &mut self,
        email: &str,
        hash: &TokenHash,
        browser_nonce: &TokenHash,
        expires_at: OffsetDateTime,
        ip: Option<&str>,
        now: OffsetDateTime,
    ) -> StoreResult<SigninLink> {
        let (tenant_id, id) = (self.tenant_id, Uuid::now_v7());
        let link = sql!(fetch_one SigninLink; self,
            "INSERT INTO signin_links (tenant_id, id, email, secret_hash, browser_nonce_hash, created_at, expires_at, ip)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
             RETURNING tenant_id, id, email, secret_hash, browser_nonce_hash, created_at, expires_at, used_at",
            tenant_id, id, email, hash.as_bytes(), browser_nonce.as_bytes(), ts(now), ts(expires_at), ip)?;
        self.mark_changed();
        Ok(link)
    }

    pub async fn signin_link_by_hash(
        &mut self,
        hash: &TokenHash,
    ) -> StoreResult<Option<SigninLink>> {
        let tenant_id = self.tenant_id;
        let found = sql!(fetch_optional SigninLink; self,
            "SELECT tenant_id, id, email, secret_hash, browser_nonce_hash, created_at, expires_at, used_at
             FROM signin_links WHERE tenant_id = $1 AND secret_hash = $2", tenant_id, hash.as_bytes())?;
        Ok(found.filter(|l| hash.matches(&l.secret_hash)))
    }

    /// Marks a link used; false when it already was (single use holds under concurrency).
    pub async fn consume_signin_link(
        &mut self,
        id: Uuid,
        now: OffsetDateTime,
    ) -> StoreResult<bool> {
        let tenant_id = self.tenant_id;
        let n = sql!(exec self,
            "UPDATE signin_links SET used_at = $3 WHERE tenant_id = $1 AND id = $2 AND used_at IS NULL",
            tenant_id, id, ts(now))?;
        self.mark_changed();
        Ok(n == 1)
    }

    pub async fn insert_session(
        &mut self,
        user_id: Uuid,
        hash: &TokenHash,
        expires_at: OffsetDateTime,
        ip: Option<&str>,
        user_agent: Option<&str>,
        now: OffsetDateTime,
    ) -> StoreResult<Session> {
        let (tenant_id, id) = (self.tenant_id, Uuid::now_v7());
        let session = sql!(fetch_one Session; self,
            "INSERT INTO sessions (tenant_id, id, user_id, secret_hash, created_at, last_seen_at, expires_at, ip, user_agent)
             VALUES ($1, $2, $3, $4, $5, $5, $6, $7, $8)
             RETURNING tenant_id, id, user_id, secret_hash, created_at, last_seen_at, expires_at",
            tenant_id, id, user_id, hash.as_bytes(), ts(now), ts(expires_at), ip, user_agent)?;
        self.mark_changed();
        Ok(session)
    }

    pub async fn session_by_hash(&mut self, hash: &TokenHash) -> StoreResult<Option<Session>> {
        let tenant_id = self.tenant_id;
        let found = sql!(fetch_optional Session; self,
            "SELECT tenant_id, id, user_id, secret_hash, created_at, last_seen_at, expires_at
             FROM sessions WHERE tenant_id = $1 AND secret_hash = $2", tenant_id, hash.as_bytes())?;
        Ok(found.filter(|s| hash.matches(&s.secret_hash)))
    }

    /// Records activity for the idle timeout. Bookkeeping, not a change to audit.
    pub async fn touch_session(&mut self, id: Uuid, now: OffsetDateTime) -> StoreResult<()> {
        let tenant_id = self.tenant_id;
        sql!(exec self, "UPDATE sessions SET last_seen_at = $3 WHERE tenant_id = $1 AND id = $2", tenant_id, id, ts(now))?;
        Ok(())
    }

    pub async fn delete_session(&mut self, id: Uuid) -> StoreResult<bool> {
        let tenant_id = self.tenant_id;
        let n = sql!(exec self, "DELETE FROM sessions WHERE tenant_id = $1 AND id = $2", tenant_id, id)?;
        self.mark_changed();
        Ok(n > 0)
    }

    /// Ends every session of a user (disabling, role changes); returns how many.
    pub async fn delete_sessions_of(&mut self, user_id: Uuid) -> StoreResult<u64> {
        let tenant_id = self.tenant_id;
        let n = sql!(exec self, "DELETE FROM sessions WHERE tenant_id = $1 AND user_id = $2", tenant_id, user_id)?;
        self.mark_changed();
        Ok(n)
    }

    /// Ends every session of the tenant (after a restore: sign-outs made since the backup are
    /// unknown); returns how many.
    pub async fn delete_all_sessions(&mut self) -> StoreResult<u64> {
        let tenant_id = self.tenant_id;
        let n = sql!(exec self, "DELETE FROM sessions WHERE tenant_id = $1", tenant_id)?;
        self.mark_changed();
        Ok(n)
    }

    /// When the session last confirmed with a passkey (admin changes need it recent).
    pub async fn session_stepped_up_at(&mut self, id: Uuid) -> StoreResult<Option<OffsetDateTime>> {
        let tenant_id = self.tenant_id;
        let row: Option<(Option<OffsetDateTime>,)> = sql!(fetch_optional (Option<OffsetDateTime>,); self,
            "SELECT stepped_up_at FROM sessions WHERE tenant_id = $1 AND id = $2", tenant_id, id)?;
        Ok(row.and_then(|r| r.0))
    }

    pub async fn set_session_stepped_up(
        &mut self,
        id: Uuid,
        now: OffsetDateTime,
    ) -> StoreResult<bool> {
        let tenant_id = self.tenant_id;
        let n = sql!(exec self,
            "UPDATE sessions SET stepped_up_at = $3 WHERE tenant_id = $1 AND id = $2",
            tenant_id, id, ts(now))?;
        self.mark_changed();
        Ok(n == 1)
    }
}
