//! SSH certificates as credentials: what was issued for which request under which CA key, and
//! which are revoked (the KRL is built from these rows).

use sqlx::types::Json;
use time::OffsetDateTime;
use uuid::Uuid;

use super::{StoreError, StoreResult, TenantTx, ts};
use crate::model::{CaKey, KeyPurpose};

/// One issued certificate.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct SshCertRecord {
    pub id: Uuid,
    pub request_id: Uuid,
    pub serial: i64,
    pub key_id: String,
    pub fingerprint: String,
    pub principals: Json<Vec<String>>,
    pub ca_key_id: Option<Uuid>,
    pub certificate: Option<String>,
    pub valid_after: OffsetDateTime,
    pub valid_before: OffsetDateTime,
    pub revoked_at: Option<OffsetDateTime>,
    pub created_at: OffsetDateTime,
}

/// What the KRL lists for one CA key.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct RevokedCert {
    pub ca_key_id: Uuid,
    pub serial: i64,
    pub key_id: String,
}

impl TenantTx {
    /// Records an issued certificate; false (nothing written) when the tenant already has a
    /// certificate with its serial, so the caller signs again with another (one statement
    /// instead of a check and an insert).
    pub async fn insert_ssh_cert(&mut self, c: &SshCertRecord) -> StoreResult<bool> {
        let tenant_id = self.tenant_id;
        let inserted = sql!(exec self,
            "INSERT INTO credentials (tenant_id, id, request_id, kind, serial, key_id, fingerprint, principals,
                ca_key_id, certificate, valid_after, valid_before, created_at)
             VALUES ($1, $2, $3, 'ssh_cert', $4, $5, $6, $7, $8, $9, $10, $11, $12)
             ON CONFLICT (tenant_id, kind, serial) DO NOTHING",
            tenant_id, c.id, c.request_id, c.serial, &c.key_id, &c.fingerprint, &c.principals,
            c.ca_key_id, &c.certificate, ts(c.valid_after), ts(c.valid_before), ts(c.created_at))
        .map_err(|e| StoreError::conflict_or(e, "certificate serial"))?;
        if inserted == 1 {
            self.mark_changed();
        }
        Ok(inserted == 1)
    }

    pub async fn ssh_certs_for_request(
        &mut self,
        request_id: Uuid,
    ) -> StoreResult<Vec<SshCertRecord>> {
        let tenant_id = self.tenant_id;
        Ok(sql!(fetch_all SshCertRecord; self,
            "SELECT id, request_id, serial, key_id, fingerprint, principals, ca_key_id, certificate,
                    valid_after, valid_before, revoked_at, created_at
             FROM credentials WHERE tenant_id = $1 AND request_id = $2 AND kind = 'ssh_cert'
             ORDER BY created_at, serial", tenant_id, request_id)?)
    }

    /// Marks every certificate of a request that is still valid at `now` as revoked; returns
    /// their serials (for the audit record).
    pub async fn revoke_ssh_certs(
        &mut self,
        request_id: Uuid,
        now: OffsetDateTime,
    ) -> StoreResult<Vec<i64>> {
        let tenant_id = self.tenant_id;
        let rows: Vec<(i64,)> = sql!(fetch_all (i64,); self,
            "UPDATE credentials SET revoked_at = $3
             WHERE tenant_id = $1 AND request_id = $2 AND kind = 'ssh_cert'
               AND revoked_at IS NULL AND valid_before > $3
             RETURNING serial", tenant_id, request_id, ts(now))?;
        if !rows.is_empty() {
            self.mark_changed();
        }
        let mut serials: Vec<i64> = rows.into_iter().map(|(s,)| s).collect();
        serials.sort_unstable();
        Ok(serials)
    }

    /// Revoked certificates that have not expired yet: an expired certificate needs no KRL entry.
    pub async fn revoked_ssh_certs(
        &mut self,
        now: OffsetDateTime,
    ) -> StoreResult<Vec<RevokedCert>> {
        let tenant_id = self.tenant_id;
        Ok(sql!(fetch_all RevokedCert; self,
            "SELECT ca_key_id, serial, key_id FROM credentials
             WHERE tenant_id = $1 AND kind = 'ssh_cert' AND revoked_at IS NOT NULL
               AND valid_before > $2 AND ca_key_id IS NOT NULL
             ORDER BY serial", tenant_id, ts(now))?)
    }

    /// User-CA keys hosts must trust now: the active one, and retired ones while a certificate
    /// they signed can still be valid (or until their recorded `publish_until`) — unless a
    /// restore distrusted them (see [`TenantTx::distrust_user_ca_keys`]).
    pub async fn published_user_ca_keys(&mut self, now: OffsetDateTime) -> StoreResult<Vec<CaKey>> {
        let tenant_id = self.tenant_id;
        Ok(sql!(fetch_all CaKey; self,
            "SELECT k.tenant_id, k.id, k.purpose, k.public_key, k.private_sealed, k.active, k.created_at,
                    k.retired_at, k.publish_until
             FROM ca_keys k
             WHERE k.tenant_id = $1 AND k.purpose = $2 AND k.distrusted_at IS NULL
               AND (k.active OR k.publish_until > $3 OR EXISTS (
                    SELECT 1 FROM credentials c
                    WHERE c.tenant_id = k.tenant_id AND c.ca_key_id = k.id AND c.valid_before > $3))
             ORDER BY k.created_at DESC, k.id", tenant_id, KeyPurpose::SshUserCa.as_str(), ts(now))?)
    }

    /// The latest end of validity among certificates signed by a key (None: it signed none).
    pub async fn last_cert_end(&mut self, ca_key_id: Uuid) -> StoreResult<Option<OffsetDateTime>> {
        let tenant_id = self.tenant_id;
        let row: (Option<OffsetDateTime>,) = sql!(fetch_one (Option<OffsetDateTime>,); self,
            "SELECT MAX(valid_before) FROM credentials WHERE tenant_id = $1 AND ca_key_id = $2",
            tenant_id, ca_key_id)?;
        Ok(row.0)
    }
}
