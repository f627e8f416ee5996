use sqlx::types::Json;
use time::OffsetDateTime;
use uuid::Uuid;

use super::{StoreError, StoreResult, TenantTx, ts};
use crate::model::PolicyProposal;
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

    #[allow(clippy::too_many_arguments)]
    pub async fn insert_policy_proposal(
        &mut self,
        base_version: i64,
        source: &str,
        digest: &[u8],
        widening: &str,
        proposed_by: &str,
        proposer_id: Option<Uuid>,
        now: OffsetDateTime,
    ) -> StoreResult<Uuid> {
        let (tenant_id, id) = (self.tenant_id, Uuid::now_v7());
        sql!(exec self,
            "INSERT INTO policy_proposals (tenant_id, id, base_version, source, digest, widening, proposed_by, proposer_id, state, created_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 'proposed', $9)",
            tenant_id, id, base_version, source, digest, widening, proposed_by, proposer_id, ts(now))?;
        self.mark_changed();
        Ok(id)
    }

    pub async fn policy_proposal(&mut self, id: Uuid) -> StoreResult<Option<PolicyProposal>> {
        let tenant_id = self.tenant_id;
        Ok(sql!(fetch_optional PolicyProposal; self,
            "SELECT id, base_version, source, digest, widening, proposed_by, proposer_id, state, decided_by, created_at, decided_at
             FROM policy_proposals WHERE tenant_id = $1 AND id = $2", tenant_id, id)?)
    }

    /// Proposals still waiting for a second admin, oldest first.
    pub async fn open_policy_proposals(&mut self) -> StoreResult<Vec<PolicyProposal>> {
        let tenant_id = self.tenant_id;
        Ok(sql!(fetch_all PolicyProposal; self,
            "SELECT id, base_version, source, digest, widening, proposed_by, proposer_id, state, decided_by, created_at, decided_at
             FROM policy_proposals WHERE tenant_id = $1 AND state = 'proposed' ORDER BY created_at, id", tenant_id)?)
    }

    /// Moves a proposal out of `proposed`; false when it was not waiting any more.
    pub async fn decide_policy_proposal(
        &mut self,
        id: Uuid,
        state: &str,
        decided_by: &str,
        now: OffsetDateTime,
    ) -> StoreResult<bool> {
        let tenant_id = self.tenant_id;
        let n = sql!(exec self,
            "UPDATE policy_proposals SET state = $3, decided_by = $4, decided_at = $5
             WHERE tenant_id = $1 AND id = $2 AND state = 'proposed'",
            tenant_id, id, state, decided_by, ts(now))?;
        self.mark_changed();
        Ok(n == 1)
    }
}
