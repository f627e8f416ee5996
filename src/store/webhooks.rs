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

    /// Removes a webhook; false when there was none. Its queued deliveries go with it.
    pub async fn delete_webhook(&mut self, id: Uuid) -> StoreResult<bool> {
        let tenant_id = self.tenant_id;
        sql!(exec self,
            "DELETE FROM notification_outbox WHERE tenant_id = $1 AND channel = 'webhook' AND recipient = $2 AND sent_at IS NULL",
            tenant_id, id.to_string())?;
        let n = sql!(exec self, "DELETE FROM webhooks WHERE tenant_id = $1 AND id = $2", tenant_id, id)?;
        if n > 0 {
            self.mark_changed();
        }
        Ok(n > 0)
    }

    /// Per webhook (by id): the last delivery and how many deliveries wait after a failure.
    pub async fn webhook_deliveries(
        &mut self,
    ) -> StoreResult<Vec<(String, Option<OffsetDateTime>, i64)>> {
        let tenant_id = self.tenant_id;
        Ok(sql!(fetch_all (String, Option<OffsetDateTime>, i64); self,
            "SELECT recipient, MAX(sent_at),
                    SUM(CASE WHEN sent_at IS NULL AND attempts > 0 THEN 1 ELSE 0 END)
             FROM notification_outbox WHERE tenant_id = $1 AND channel = 'webhook' GROUP BY recipient",
            tenant_id)?)
    }

    pub async fn webhooks(&mut self) -> StoreResult<Vec<Webhook>> {
        let tenant_id = self.tenant_id;
        Ok(sql!(fetch_all Webhook; self,
            "SELECT tenant_id, id, url, secret_sealed, created_at FROM webhooks WHERE tenant_id = $1 ORDER BY created_at, id",
            tenant_id)?)
    }
}
