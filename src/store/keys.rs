use time::OffsetDateTime;
use uuid::Uuid;

use super::{StoreError, StoreResult, TenantTx, ts};
use crate::model::{CaKey, KeyPurpose};

impl TenantTx {
    /// Stores a new active key for a purpose. The caller seals the private half with
    /// `CaKey::seal_context(tenant, id)` for the id it passes.
    pub async fn insert_ca_key(
        &mut self,
        id: Uuid,
        purpose: KeyPurpose,
        public_key: &str,
        private_sealed: &[u8],
        now: OffsetDateTime,
    ) -> StoreResult<CaKey> {
        let tenant_id = self.tenant_id;
        let key = sql!(fetch_one CaKey; self,
            "INSERT INTO ca_keys (tenant_id, id, purpose, public_key, private_sealed, active, created_at)
             VALUES ($1, $2, $3, $4, $5, TRUE, $6)
             RETURNING tenant_id, id, purpose, public_key, private_sealed, active, created_at, retired_at, publish_until",
            tenant_id, id, purpose.as_str(), public_key, private_sealed, ts(now))
        .map_err(|e| StoreError::conflict_or(e, "active key"))?;
        self.mark_changed();
        Ok(key)
    }

    pub async fn active_ca_key(&mut self, purpose: KeyPurpose) -> StoreResult<Option<CaKey>> {
        let tenant_id = self.tenant_id;
        Ok(sql!(fetch_optional CaKey; self,
            "SELECT tenant_id, id, purpose, public_key, private_sealed, active, created_at, retired_at, publish_until
             FROM ca_keys WHERE tenant_id = $1 AND purpose = $2 AND active", tenant_id, purpose.as_str())?)
    }

    pub async fn ca_keys(&mut self, purpose: KeyPurpose) -> StoreResult<Vec<CaKey>> {
        let tenant_id = self.tenant_id;
        Ok(sql!(fetch_all CaKey; self,
            "SELECT tenant_id, id, purpose, public_key, private_sealed, active, created_at, retired_at, publish_until
             FROM ca_keys WHERE tenant_id = $1 AND purpose = $2 ORDER BY created_at, id", tenant_id, purpose.as_str())?)
    }

    /// Ends a key's signing life: inactive, its private half destroyed (nothing may sign with it
    /// again), public half kept for `publish_until`.
    pub async fn retire_ca_key(
        &mut self,
        id: Uuid,
        publish_until: OffsetDateTime,
        now: OffsetDateTime,
    ) -> StoreResult<()> {
        let tenant_id = self.tenant_id;
        let empty: &[u8] = &[];
        let n = sql!(exec self,
            "UPDATE ca_keys SET active = FALSE, retired_at = $3, publish_until = $4, private_sealed = $5
             WHERE tenant_id = $1 AND id = $2 AND active",
            tenant_id, id, ts(now), ts(publish_until), empty)?;
        if n == 0 {
            return Err(StoreError::NotFound);
        }
        self.mark_changed();
        Ok(())
    }

    /// After a restore: every user-CA key of the tenant that is not active stops being
    /// published at once, whatever certificates it signed (the restored store does not know
    /// what was issued or revoked after the backup). Returns how many keys this distrusted.
    pub async fn distrust_user_ca_keys(&mut self, now: OffsetDateTime) -> StoreResult<u64> {
        let tenant_id = self.tenant_id;
        let n = sql!(exec self,
            "UPDATE ca_keys SET distrusted_at = $3,
                    publish_until = CASE WHEN publish_until IS NULL OR publish_until > $3 THEN $3 ELSE publish_until END
             WHERE tenant_id = $1 AND purpose = $2 AND NOT active AND distrusted_at IS NULL",
            tenant_id, KeyPurpose::SshUserCa.as_str(), ts(now))?;
        if n > 0 {
            self.mark_changed();
        }
        Ok(n)
    }
}
