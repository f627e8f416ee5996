//! Device authorization grants (`elevate login` without a token).

use time::OffsetDateTime;
use uuid::Uuid;

use super::{StoreError, StoreResult, TenantTx, ts};
use crate::crypto::TokenHash;
use crate::model::DeviceGrant;

impl TenantTx {
    pub async fn insert_device_grant(
        &mut self,
        hash: &TokenHash,
        user_code: &str,
        (client, ip): (&str, Option<&str>),
        admin: bool,
        now: OffsetDateTime,
        expires_at: OffsetDateTime,
    ) -> StoreResult<Uuid> {
        let (tenant_id, id) = (self.tenant_id, Uuid::now_v7());
        // Codes a day past their end are of no use to anyone (the audit log keeps the story).
        sql!(exec self,
            "DELETE FROM device_grants WHERE tenant_id = $1 AND expires_at <= $2",
            tenant_id, ts(now - time::Duration::days(1)))?;
        sql!(exec self,
            "INSERT INTO device_grants (tenant_id, id, device_code_hash, user_code, client, ip, admin, state, created_at, expires_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, 'pending', $8, $9)",
            tenant_id, id, hash.as_bytes(), user_code, client, ip, admin, ts(now), ts(expires_at))
        .map_err(|e| StoreError::conflict_or(e, "device code"))?;
        self.mark_changed();
        Ok(id)
    }

    pub async fn device_grant_by_user_code(
        &mut self,
        code: &str,
    ) -> StoreResult<Option<DeviceGrant>> {
        let tenant_id = self.tenant_id;
        Ok(sql!(fetch_optional DeviceGrant; self,
            "SELECT id, user_code, client, ip, admin, state, user_id, created_at, expires_at, last_polled_at
             FROM device_grants WHERE tenant_id = $1 AND user_code = $2", tenant_id, code)?)
    }

    pub async fn device_grant_by_hash(
        &mut self,
        hash: &TokenHash,
    ) -> StoreResult<Option<DeviceGrant>> {
        let tenant_id = self.tenant_id;
        Ok(sql!(fetch_optional DeviceGrant; self,
            "SELECT id, user_code, client, ip, admin, state, user_id, created_at, expires_at, last_polled_at
             FROM device_grants WHERE tenant_id = $1 AND device_code_hash = $2", tenant_id, hash.as_bytes())?)
    }

    /// A person's decision on a pending grant; false when it was not pending any more.
    pub async fn decide_device_grant(
        &mut self,
        id: Uuid,
        user_id: Uuid,
        approve: bool,
    ) -> StoreResult<bool> {
        let tenant_id = self.tenant_id;
        let state = if approve { "approved" } else { "denied" };
        let n = sql!(exec self,
            "UPDATE device_grants SET state = $3, user_id = $4 WHERE tenant_id = $1 AND id = $2 AND state = 'pending'",
            tenant_id, id, state, user_id)?;
        self.mark_changed();
        Ok(n == 1)
    }

    /// When the CLI last polled (for `slow_down`). Bookkeeping, not a change to audit.
    pub async fn touch_device_poll(&mut self, id: Uuid, now: OffsetDateTime) -> StoreResult<()> {
        let tenant_id = self.tenant_id;
        sql!(exec self, "UPDATE device_grants SET last_polled_at = $3 WHERE tenant_id = $1 AND id = $2",
            tenant_id, id, ts(now))?;
        Ok(())
    }

    /// Takes an approved grant for its one token; false when it was taken already.
    pub async fn claim_device_grant(&mut self, id: Uuid) -> StoreResult<bool> {
        let tenant_id = self.tenant_id;
        let n = sql!(exec self,
            "UPDATE device_grants SET state = 'used' WHERE tenant_id = $1 AND id = $2 AND state = 'approved'",
            tenant_id, id)?;
        self.mark_changed();
        Ok(n == 1)
    }
}
