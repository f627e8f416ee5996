use time::OffsetDateTime;

use super::{StoreError, StoreResult, TenantTx, ts};
use crate::model::Tenant;

impl TenantTx {
    /// Creates the tenant row for this transaction's tenant id.
    pub async fn insert_tenant(
        &mut self,
        slug: &str,
        name: &str,
        now: OffsetDateTime,
    ) -> StoreResult<Tenant> {
        let tenant_id = self.tenant_id;
        let tenant = sql!(fetch_one Tenant; self,
            "INSERT INTO tenants (tenant_id, slug, name, created_at) VALUES ($1, $2, $3, $4)
             RETURNING tenant_id, slug, name, created_at",
            tenant_id, slug, name, ts(now))
        .map_err(|e| StoreError::conflict_or(e, "tenant"))?;
        self.mark_changed();
        Ok(tenant)
    }

    pub async fn get_tenant(&mut self) -> StoreResult<Tenant> {
        let tenant_id = self.tenant_id;
        sql!(fetch_optional Tenant; self,
            "SELECT tenant_id, slug, name, created_at FROM tenants WHERE tenant_id = $1", tenant_id)?
        .ok_or(StoreError::NotFound)
    }
}
