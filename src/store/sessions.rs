use time::OffsetDateTime;
use uuid::Uuid;

use sqlx::types::Json;

use super::{SecretKind, Store, StoreResult, TenantTx, ts};
use crate::crypto::TokenHash;
use crate::model::{Role, Session, SigninLink, Tenant, User};

/// A session with its user (if the user still exists) and tenant, read in one statement.
#[derive(sqlx::FromRow)]
struct SessionRow {
    tenant_id: Uuid,
    s_id: Uuid,
    s_user_id: Uuid,
    s_secret_hash: Vec<u8>,
    s_created_at: OffsetDateTime,
    s_last_seen_at: OffsetDateTime,
    s_expires_at: OffsetDateTime,
    u_email: Option<String>,
    u_display_name: Option<String>,
    u_roles: Option<Json<Vec<Role>>>,
    u_group_names: Option<Json<Vec<String>>>,
    u_disabled: Option<bool>,
    u_created_at: Option<OffsetDateTime>,
    u_updated_at: Option<OffsetDateTime>,
    n_slug: String,
    n_name: String,
    n_created_at: OffsetDateTime,
}

const SESSION_SQL: &str = "SELECT s.tenant_id, s.id AS s_id, s.user_id AS s_user_id,
        s.secret_hash AS s_secret_hash, s.created_at AS s_created_at,
        s.last_seen_at AS s_last_seen_at, s.expires_at AS s_expires_at,
        u.email AS u_email, u.display_name AS u_display_name, u.roles AS u_roles,
        u.group_names AS u_group_names, u.disabled AS u_disabled, u.created_at AS u_created_at,
        u.updated_at AS u_updated_at, n.slug AS n_slug, n.name AS n_name, n.created_at AS n_created_at
    FROM sessions s
    LEFT JOIN users u ON u.tenant_id = s.tenant_id AND u.id = s.user_id
    JOIN tenants n ON n.tenant_id = s.tenant_id
    WHERE s.secret_hash = $1";

impl SessionRow {
    fn split(self) -> (Session, Option<User>, Tenant) {
        let user = match (
            self.u_email,
            self.u_display_name,
            self.u_roles,
            self.u_group_names,
            self.u_disabled,
            self.u_created_at,
            self.u_updated_at,
        ) {
            (
                Some(email),
                Some(display_name),
                Some(roles),
                Some(group_names),
                Some(disabled),
                Some(created_at),
                Some(updated_at),
            ) => Some(User {
                tenant_id: self.tenant_id,
                id: self.s_user_id,
                email,
                display_name,
                roles,
                group_names,
                disabled,
                created_at,
                updated_at,
            }),
            _ => None,
        };
        let session = Session {
            tenant_id: self.tenant_id,
            id: self.s_id,
            user_id: self.s_user_id,
            secret_hash: self.s_secret_hash,
            created_at: self.s_created_at,
            last_seen_at: self.s_last_seen_at,
            expires_at: self.s_expires_at,
        };
        let tenant = Tenant {
            tenant_id: self.tenant_id,
            slug: self.n_slug,
            name: self.n_name,
            created_at: self.n_created_at,
        };
        (session, user, tenant)
    }
}

impl Store {
    /// The browser session `hash` names, with its user (None when the user is gone) and
    /// tenant, the match confirmed in constant time: what a page load reads, in one statement
    /// (see [`Store::read_by_secret`]).
    pub async fn session_principal(
        &self,
        hash: &TokenHash,
    ) -> StoreResult<Option<(Session, Option<User>, Tenant)>> {
        let row: Option<SessionRow> = self
            .read_by_secret(SecretKind::Session, SESSION_SQL, hash.as_bytes())
            .await?;
        Ok(row
            .filter(|r| hash.matches(&r.s_secret_hash))
            .map(SessionRow::split))
    }
}

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
