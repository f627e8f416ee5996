//! Database logins as credentials. A row is written (with its audit event) before the role exists
//! on the target, so every role elevate may have created is known; the reaper works from
//! `next_attempt_at` until `cleaned_up_at` is set.

use time::OffsetDateTime;
use uuid::Uuid;

use super::{StoreError, StoreResult, TenantTx, ts};

/// One issued database login (never its password).
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct DbLoginRecord {
    pub id: Uuid,
    pub request_id: Uuid,
    pub target_name: String,
    pub role_name: String,
    pub owner_role: Option<String>,
    pub valid_after: OffsetDateTime,
    pub valid_before: OffsetDateTime,
    pub revoked_at: Option<OffsetDateTime>,
    pub cleaned_up_at: Option<OffsetDateTime>,
    pub cleanup_attempts: i64,
    pub next_attempt_at: Option<OffsetDateTime>,
    pub last_error: Option<String>,
    pub created_at: OffsetDateTime,
}

impl DbLoginRecord {
    /// Usable: not cleaned up, not due for cleanup, inside its validity.
    pub fn is_live(&self, now: OffsetDateTime) -> bool {
        self.cleaned_up_at.is_none()
            && self.revoked_at.is_none()
            && self.valid_before > now
            && self.next_attempt_at.is_none_or(|t| t > now)
    }

    /// A cleanup that has failed at least once and is not finished.
    pub fn is_stuck(&self) -> bool {
        self.cleaned_up_at.is_none() && self.last_error.is_some()
    }
}

/// Counts for `/readyz`, `/metrics` and the admin page.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CleanupCounts {
    /// Logins whose role may still exist (not cleaned up yet).
    pub open: i64,
    /// Of those, due for cleanup now.
    pub due: i64,
    /// Of those, failed at least once.
    pub stuck: i64,
}

impl TenantTx {
    pub async fn insert_db_login(&mut self, c: &DbLoginRecord) -> StoreResult<()> {
        let tenant_id = self.tenant_id;
        sql!(exec self,
            "INSERT INTO credentials (tenant_id, id, request_id, kind, target_name, role_name, owner_role,
                valid_after, valid_before, next_attempt_at, created_at)
             VALUES ($1, $2, $3, 'db_role', $4, $5, $6, $7, $8, $9, $10)",
            tenant_id, c.id, c.request_id, &c.target_name, &c.role_name, &c.owner_role,
            ts(c.valid_after), ts(c.valid_before), c.next_attempt_at.map(ts), ts(c.created_at))
        .map_err(|e| StoreError::conflict_or(e, "database role name"))?;
        self.mark_changed();
        Ok(())
    }

    pub async fn db_login(&mut self, id: Uuid) -> StoreResult<Option<DbLoginRecord>> {
        let tenant_id = self.tenant_id;
        Ok(sql!(fetch_optional DbLoginRecord; self,
            "SELECT id, request_id, target_name, role_name, owner_role, valid_after, valid_before, revoked_at,
                    cleaned_up_at, cleanup_attempts, next_attempt_at, last_error, created_at
             FROM credentials WHERE tenant_id = $1 AND id = $2 AND kind = 'db_role'", tenant_id, id)?)
    }

    pub async fn db_logins_for_request(
        &mut self,
        request_id: Uuid,
    ) -> StoreResult<Vec<DbLoginRecord>> {
        let tenant_id = self.tenant_id;
        Ok(sql!(fetch_all DbLoginRecord; self,
            "SELECT id, request_id, target_name, role_name, owner_role, valid_after, valid_before, revoked_at,
                    cleaned_up_at, cleanup_attempts, next_attempt_at, last_error, created_at
             FROM credentials WHERE tenant_id = $1 AND request_id = $2 AND kind = 'db_role'
             ORDER BY created_at, role_name", tenant_id, request_id)?)
    }

    /// Makes every open login of a request due for cleanup now (the grant ended); returns their
    /// role names. `revoked` also stamps them revoked (an early end, not an expiry).
    pub async fn end_db_logins(
        &mut self,
        request_id: Uuid,
        revoked: bool,
        now: OffsetDateTime,
    ) -> StoreResult<Vec<String>> {
        let tenant_id = self.tenant_id;
        let rows: Vec<(String,)> = sql!(fetch_all (String,); self,
            "UPDATE credentials
                SET next_attempt_at = CASE WHEN next_attempt_at IS NULL OR next_attempt_at > $3
                                           THEN $3 ELSE next_attempt_at END,
                    revoked_at = CASE WHEN $4 AND revoked_at IS NULL THEN $3 ELSE revoked_at END
             WHERE tenant_id = $1 AND request_id = $2 AND kind = 'db_role' AND cleaned_up_at IS NULL
               AND (next_attempt_at IS NULL OR next_attempt_at > $3 OR ($4 AND revoked_at IS NULL))
             RETURNING role_name", tenant_id, request_id, ts(now), revoked)?;
        if !rows.is_empty() {
            self.mark_changed();
        }
        let mut names: Vec<String> = rows.into_iter().map(|(n,)| n).collect();
        names.sort_unstable();
        Ok(names)
    }

    /// Logins whose cleanup is due at `now`, oldest first.
    pub async fn due_db_cleanups(
        &mut self,
        now: OffsetDateTime,
        limit: i64,
    ) -> StoreResult<Vec<DbLoginRecord>> {
        let tenant_id = self.tenant_id;
        Ok(sql!(fetch_all DbLoginRecord; self,
            "SELECT id, request_id, target_name, role_name, owner_role, valid_after, valid_before, revoked_at,
                    cleaned_up_at, cleanup_attempts, next_attempt_at, last_error, created_at
             FROM credentials
             WHERE tenant_id = $1 AND kind = 'db_role' AND cleaned_up_at IS NULL AND next_attempt_at <= $2
             ORDER BY next_attempt_at, id LIMIT $3", tenant_id, ts(now), limit)?)
    }

    /// Role names on a target that may still exist and belong to a record (the sweep keeps these).
    pub async fn open_db_role_names(&mut self, target_name: &str) -> StoreResult<Vec<String>> {
        let tenant_id = self.tenant_id;
        let rows: Vec<(String,)> = sql!(fetch_all (String,); self,
            "SELECT role_name FROM credentials
             WHERE tenant_id = $1 AND kind = 'db_role' AND target_name = $2 AND cleaned_up_at IS NULL",
            tenant_id, target_name)?;
        Ok(rows.into_iter().map(|(n,)| n).collect())
    }

    /// Records a finished cleanup. False when another replica recorded it first.
    pub async fn mark_db_login_cleaned(
        &mut self,
        id: Uuid,
        now: OffsetDateTime,
    ) -> StoreResult<bool> {
        let tenant_id = self.tenant_id;
        let n = sql!(exec self,
            "UPDATE credentials SET cleaned_up_at = $3, last_error = NULL
             WHERE tenant_id = $1 AND id = $2 AND kind = 'db_role' AND cleaned_up_at IS NULL",
            tenant_id, id, ts(now))?;
        if n > 0 {
            self.mark_changed();
        }
        Ok(n > 0)
    }

    /// Records a failed cleanup attempt and when to try again.
    pub async fn mark_db_cleanup_failed(
        &mut self,
        id: Uuid,
        error: &str,
        next_attempt_at: OffsetDateTime,
    ) -> StoreResult<()> {
        let tenant_id = self.tenant_id;
        sql!(exec self,
            "UPDATE credentials
                SET cleanup_attempts = cleanup_attempts + 1, last_error = $3, next_attempt_at = $4
             WHERE tenant_id = $1 AND id = $2 AND kind = 'db_role' AND cleaned_up_at IS NULL",
            tenant_id, id, error, ts(next_attempt_at))?;
        self.mark_changed();
        Ok(())
    }

    /// A login that could not be created: due for cleanup at once (the role may half-exist).
    pub async fn abandon_db_login(
        &mut self,
        id: Uuid,
        error: &str,
        now: OffsetDateTime,
    ) -> StoreResult<()> {
        let tenant_id = self.tenant_id;
        sql!(exec self,
            "UPDATE credentials SET next_attempt_at = $3, revoked_at = COALESCE(revoked_at, $3), last_error = $4
             WHERE tenant_id = $1 AND id = $2 AND kind = 'db_role' AND cleaned_up_at IS NULL",
            tenant_id, id, ts(now), error)?;
        self.mark_changed();
        Ok(())
    }

    pub async fn db_cleanup_counts(&mut self, now: OffsetDateTime) -> StoreResult<CleanupCounts> {
        let tenant_id = self.tenant_id;
        let (open, due, stuck): (i64, Option<i64>, Option<i64>) = sql!(fetch_one (i64, Option<i64>, Option<i64>); self,
            CLEANUP_COUNTS_SQL, tenant_id, ts(now))?;
        Ok(CleanupCounts {
            open,
            due: due.unwrap_or(0),
            stuck: stuck.unwrap_or(0),
        })
    }

    /// Cleanups that failed at least once and are not finished, for the admin page.
    pub async fn stuck_db_logins(&mut self) -> StoreResult<Vec<DbLoginRecord>> {
        let tenant_id = self.tenant_id;
        Ok(sql!(fetch_all DbLoginRecord; self,
            "SELECT id, request_id, target_name, role_name, owner_role, valid_after, valid_before, revoked_at,
                    cleaned_up_at, cleanup_attempts, next_attempt_at, last_error, created_at
             FROM credentials
             WHERE tenant_id = $1 AND kind = 'db_role' AND cleaned_up_at IS NULL AND last_error IS NOT NULL
             ORDER BY next_attempt_at, id", tenant_id)?)
    }
}

/// Database logins not yet cleaned up: all, due, failing.
pub(super) const CLEANUP_COUNTS_SQL: &str = "SELECT COUNT(*),
        SUM(CASE WHEN next_attempt_at <= $2 THEN 1 ELSE 0 END),
        SUM(CASE WHEN last_error IS NOT NULL THEN 1 ELSE 0 END)
     FROM credentials WHERE tenant_id = $1 AND kind = 'db_role' AND cleaned_up_at IS NULL";
