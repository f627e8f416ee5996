//! Passkeys and the server-side state of WebAuthn ceremonies in progress.

use time::OffsetDateTime;
use uuid::Uuid;

use super::{StoreError, StoreResult, TenantTx, ts};
use crate::model::{CeremonyPurpose, PasskeyRecord, StoredCeremony};

impl TenantTx {
    pub async fn insert_passkey(
        &mut self,
        user_id: Uuid,
        credential_id: &str,
        name: &str,
        passkey: &str,
        now: OffsetDateTime,
    ) -> StoreResult<PasskeyRecord> {
        let (tenant_id, id) = (self.tenant_id, Uuid::now_v7());
        let row = sql!(fetch_one PasskeyRecord; self,
            "INSERT INTO passkeys (tenant_id, id, user_id, credential_id, name, passkey, created_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7)
             RETURNING id, user_id, credential_id, name, passkey, created_at, last_used_at",
            tenant_id, id, user_id, credential_id, name, passkey, ts(now))
        .map_err(|e| StoreError::conflict_or(e, "passkey"))?;
        self.mark_changed();
        Ok(row)
    }

    /// A person's passkeys, oldest first.
    pub async fn passkeys_of(&mut self, user_id: Uuid) -> StoreResult<Vec<PasskeyRecord>> {
        let tenant_id = self.tenant_id;
        let rows = sql!(fetch_all PasskeyRecord; self,
            "SELECT id, user_id, credential_id, name, passkey, created_at, last_used_at
             FROM passkeys WHERE tenant_id = $1 AND user_id = $2 ORDER BY created_at, id",
            tenant_id, user_id)?;
        Ok(rows)
    }

    /// How many of `users` hold at least one passkey.
    pub async fn users_with_passkeys(&mut self) -> StoreResult<Vec<Uuid>> {
        let tenant_id = self.tenant_id;
        let rows: Vec<(Uuid,)> = sql!(fetch_all (Uuid,); self,
            "SELECT DISTINCT user_id FROM passkeys WHERE tenant_id = $1", tenant_id)?;
        Ok(rows.into_iter().map(|r| r.0).collect())
    }

    /// After an assertion: the new signature counter and backup state, and when.
    pub async fn record_passkey_use(
        &mut self,
        id: Uuid,
        passkey: &str,
        now: OffsetDateTime,
    ) -> StoreResult<()> {
        let tenant_id = self.tenant_id;
        sql!(exec self,
            "UPDATE passkeys SET passkey = $3, last_used_at = $4 WHERE tenant_id = $1 AND id = $2",
            tenant_id, id, passkey, ts(now))?;
        self.mark_changed();
        Ok(())
    }

    pub async fn rename_passkey(
        &mut self,
        user_id: Uuid,
        id: Uuid,
        name: &str,
    ) -> StoreResult<bool> {
        let tenant_id = self.tenant_id;
        let n = sql!(exec self,
            "UPDATE passkeys SET name = $4 WHERE tenant_id = $1 AND id = $2 AND user_id = $3",
            tenant_id, id, user_id, name)?;
        self.mark_changed();
        Ok(n == 1)
    }

    pub async fn delete_passkey(&mut self, user_id: Uuid, id: Uuid) -> StoreResult<bool> {
        let tenant_id = self.tenant_id;
        let n = sql!(exec self,
            "DELETE FROM passkeys WHERE tenant_id = $1 AND id = $2 AND user_id = $3",
            tenant_id, id, user_id)?;
        self.mark_changed();
        Ok(n == 1)
    }

    /// Stores a ceremony's state. Bookkeeping: what it leads to is audited when it finishes.
    pub async fn insert_ceremony(
        &mut self,
        user_id: Option<Uuid>,
        purpose: CeremonyPurpose,
        binding: &str,
        state: &str,
        now: OffsetDateTime,
        expires_at: OffsetDateTime,
    ) -> StoreResult<Uuid> {
        let (tenant_id, id) = (self.tenant_id, Uuid::new_v4());
        sql!(exec self,
            "DELETE FROM webauthn_ceremonies WHERE tenant_id = $1 AND expires_at <= $2",
            tenant_id, ts(now))?;
        sql!(exec self,
            "INSERT INTO webauthn_ceremonies (tenant_id, id, user_id, purpose, binding, state, created_at, expires_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
            tenant_id, id, user_id, purpose.as_str(), binding, state, ts(now), ts(expires_at))?;
        Ok(id)
    }

    /// Takes a ceremony out of the store: whatever happens next, it cannot be used again.
    pub async fn take_ceremony(&mut self, id: Uuid) -> StoreResult<Option<StoredCeremony>> {
        let tenant_id = self.tenant_id;
        let row = sql!(fetch_optional StoredCeremony; self,
            "DELETE FROM webauthn_ceremonies WHERE tenant_id = $1 AND id = $2
             RETURNING id, user_id, purpose, binding, state, expires_at",
            tenant_id, id)?;
        Ok(row)
    }
}
