use time::OffsetDateTime;
use uuid::Uuid;

use super::{StoreResult, TenantTx, ts};
use crate::model::{Target, TargetKind};

impl TenantTx {
    /// Creates or replaces a target by name. `seal` is given the row id so the sealed password is
    /// bound to it (`Target::seal_context`).
    pub async fn upsert_target<E>(
        &mut self,
        name: &str,
        kind: TargetKind,
        url: &str,
        seal: impl FnOnce(Uuid) -> Result<Vec<u8>, E>,
        now: OffsetDateTime,
    ) -> StoreResult<Result<Target, E>> {
        let id = match self.target_by_name(name).await? {
            Some(existing) => existing.id,
            None => Uuid::now_v7(),
        };
        let sealed = match seal(id) {
            Ok(s) => s,
            Err(e) => return Ok(Err(e)),
        };
        let tenant_id = self.tenant_id;
        let target = sql!(fetch_one Target; self,
            "INSERT INTO targets (tenant_id, id, name, kind, url, admin_secret_sealed, created_at, updated_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $7)
             ON CONFLICT (tenant_id, name) DO UPDATE
                SET kind = excluded.kind, url = excluded.url,
                    admin_secret_sealed = excluded.admin_secret_sealed, updated_at = excluded.updated_at
             RETURNING tenant_id, id, name, kind, url, admin_secret_sealed, created_at, updated_at",
            tenant_id, id, name, kind.as_str(), url, &sealed, ts(now))?;
        self.mark_changed();
        Ok(Ok(target))
    }

    pub async fn target_by_name(&mut self, name: &str) -> StoreResult<Option<Target>> {
        let tenant_id = self.tenant_id;
        Ok(sql!(fetch_optional Target; self,
            "SELECT tenant_id, id, name, kind, url, admin_secret_sealed, created_at, updated_at
             FROM targets WHERE tenant_id = $1 AND name = $2", tenant_id, name)?)
    }

    pub async fn targets(&mut self) -> StoreResult<Vec<Target>> {
        let tenant_id = self.tenant_id;
        Ok(sql!(fetch_all Target; self,
            "SELECT tenant_id, id, name, kind, url, admin_secret_sealed, created_at, updated_at
             FROM targets WHERE tenant_id = $1 ORDER BY name", tenant_id)?)
    }
}
