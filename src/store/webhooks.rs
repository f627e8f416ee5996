use time::OffsetDateTime;
use uuid::Uuid;

use super::{StoreResult, TenantTx, ts};

/// A tenant's webhook; its signing secret is sealed (`Webhook::seal_context`).
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Webhook {
    pub tenant_id: Uuid,
    pub id: Uuid,
    pub url: String,
    pub secret_sealed: Vec<u8>,
    pub created_at: OffsetDateTime,
}

impl Webhook {
    pub fn seal_context(tenant_id: Uuid, id: Uuid) -> String {
        format!("webhook:{tenant_id}:{id}")
    }
}

impl TenantTx {
    pub async fn insert_webhook(
        &mut self,
        id: Uuid,
        url: &str,
        secret_sealed: &[u8],
        now: OffsetDateTime,
    ) -> StoreResult<Webhook> {
        let tenant_id = self.tenant_id;
        let hook = sql!(fetch_one Webhook; self,
            "INSERT INTO webhooks (tenant_id, id, url, secret_sealed, created_at) VALUES ($1, $2, $3, $4, $5)
             RETURNING tenant_id, id, url, secret_sealed, created_at",
            tenant_id, id, url, secret_sealed, ts(now))?;
        self.mark_changed();
        Ok(hook)
    }

    pub async fn webhooks(&mut self) -> StoreResult<Vec<Webhook>> {
        let tenant_id = self.tenant_id;
        Ok(sql!(fetch_all Webhook; self,
            "SELECT tenant_id, id, url, secret_sealed, created_at FROM webhooks WHERE tenant_id = $1 ORDER BY created_at, id",
            tenant_id)?)
    }
}
