use sqlx::types::Json;
use time::OffsetDateTime;

use super::{StoreError, StoreResult, TenantTx, ts};
use crate::model::PolicyVersion;
use crate::policy::Profile;

#[derive(sqlx::FromRow)]
struct ProfileRow {
    spec: Json<Profile>,
}

impl TenantTx {
    pub async fn latest_policy_version(&mut self) -> StoreResult<Option<PolicyVersion>> {
        let tenant_id = self.tenant_id;
        Ok(sql!(fetch_optional PolicyVersion; self,
            "SELECT tenant_id, version, source, digest, created_by, created_at FROM policy_versions
             WHERE tenant_id = $1 ORDER BY version DESC LIMIT 1", tenant_id)?)
    }

    pub async fn policy_version(&mut self, version: i64) -> StoreResult<Option<PolicyVersion>> {
        let tenant_id = self.tenant_id;
        Ok(sql!(fetch_optional PolicyVersion; self,
            "SELECT tenant_id, version, source, digest, created_by, created_at FROM policy_versions
             WHERE tenant_id = $1 AND version = $2", tenant_id, version)?)
    }

    /// Every version, newest first.
    pub async fn policy_versions(&mut self) -> StoreResult<Vec<PolicyVersion>> {
        let tenant_id = self.tenant_id;
        Ok(sql!(fetch_all PolicyVersion; self,
            "SELECT tenant_id, version, source, digest, created_by, created_at FROM policy_versions
             WHERE tenant_id = $1 ORDER BY version DESC", tenant_id)?)
    }

    pub async fn insert_policy_version(
        &mut self,
        version: i64,
        source: &str,
        digest: &[u8],
        created_by: &str,
        now: OffsetDateTime,
    ) -> StoreResult<()> {
        let tenant_id = self.tenant_id;
        sql!(exec self,
            "INSERT INTO policy_versions (tenant_id, version, source, digest, created_by, created_at)
             VALUES ($1, $2, $3, $4, $5, $6)",
            tenant_id, version, source, digest, created_by, ts(now))
        .map_err(|e| StoreError::conflict_or(e, "policy version"))?;
        self.mark_changed();
        Ok(())
    }

    pub async fn insert_profile(&mut self, version: i64, profile: &Profile) -> StoreResult<()> {
        let tenant_id = self.tenant_id;
        sql!(exec self,
            "INSERT INTO profiles (tenant_id, version, name, spec) VALUES ($1, $2, $3, $4)",
            tenant_id, version, &profile.name, Json(profile))?;
        self.mark_changed();
        Ok(())
    }

    pub async fn profiles_at(&mut self, version: i64) -> StoreResult<Vec<Profile>> {
        let tenant_id = self.tenant_id;
        let rows = sql!(fetch_all ProfileRow; self,
            "SELECT spec FROM profiles WHERE tenant_id = $1 AND version = $2 ORDER BY name", tenant_id, version)?;
        Ok(rows.into_iter().map(|r| r.spec.0).collect())
    }
}
