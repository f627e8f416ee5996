use sqlx::types::Json;
use time::OffsetDateTime;
use uuid::Uuid;

use super::{Conn, StoreError, StoreResult, TenantTx, ts};

/// A notification waiting to go out (or sent).
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct OutboxItem {
    pub id: Uuid,
    pub channel: String,
    pub recipient: String,
    pub payload: Json<serde_json::Value>,
    pub request_id: Option<Uuid>,
    pub attempts: i64,
    pub next_attempt_at: OffsetDateTime,
    pub sent_at: Option<OffsetDateTime>,
    pub last_error: Option<String>,
}

impl TenantTx {
    /// Queues a notification in this transaction: it exists exactly when the event it reports does.
    pub async fn enqueue(
        &mut self,
        channel: &str,
        recipient: &str,
        payload: &serde_json::Value,
        request_id: Option<Uuid>,
        now: OffsetDateTime,
    ) -> StoreResult<()> {
        let tenant_id = self.tenant_id;
        sql!(exec self,
            "INSERT INTO notification_outbox (tenant_id, id, channel, recipient, payload, request_id, created_at, next_attempt_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $7)",
            tenant_id, Uuid::now_v7(), channel, recipient, Json(payload), request_id, ts(now))?;
        self.mark_changed();
        Ok(())
    }

    pub async fn due_notifications(
        &mut self,
        now: OffsetDateTime,
        limit: i64,
    ) -> StoreResult<Vec<OutboxItem>> {
        let tenant_id = self.tenant_id;
        Ok(sql!(fetch_all OutboxItem; self,
            "SELECT id, channel, recipient, payload, request_id, attempts, next_attempt_at, sent_at, last_error
             FROM notification_outbox WHERE tenant_id = $1 AND sent_at IS NULL AND next_attempt_at <= $2
             ORDER BY created_at, id LIMIT $3", tenant_id, ts(now), limit)?)
    }

    /// Claims up to `limit` due notifications for this replica: they stay out of every other
    /// replica's claims until `lease_until` (on Postgres concurrent claimers skip rows another
    /// holds; SQLite transactions are exclusive). Delivery then marks each sent or failed; a claim
    /// whose replica died comes due again when its lease ends, so a notification is sent twice only
    /// when a replica dies while sending it.
    pub async fn claim_notifications(
        &mut self,
        now: OffsetDateTime,
        lease_until: OffsetDateTime,
        limit: i64,
    ) -> StoreResult<Vec<OutboxItem>> {
        let tenant_id = self.tenant_id;
        let items: Vec<OutboxItem> = match &mut self.conn {
            Conn::Sqlite(c) => {
                sqlx::query_as(
                    "SELECT id, channel, recipient, payload, request_id, attempts, next_attempt_at, sent_at, last_error
                     FROM notification_outbox WHERE tenant_id = $1 AND sent_at IS NULL AND next_attempt_at <= $2
                     ORDER BY created_at, id LIMIT $3",
                )
                .bind(tenant_id)
                .bind(ts(now))
                .bind(limit)
                .fetch_all(&mut **c)
                .await?
            }
            Conn::Postgres(c) => {
                sqlx::query_as(
                    "SELECT id, channel, recipient, payload, request_id, attempts, next_attempt_at, sent_at, last_error
                     FROM notification_outbox WHERE tenant_id = $1 AND sent_at IS NULL AND next_attempt_at <= $2
                     ORDER BY created_at, id LIMIT $3 FOR UPDATE SKIP LOCKED",
                )
                .bind(tenant_id)
                .bind(ts(now))
                .bind(limit)
                .fetch_all(&mut **c)
                .await?
            }
        };
        if items.is_empty() {
            return Ok(items);
        }
        // The lease on the whole batch in one statement.
        let leased = match &mut self.conn {
            // The write lock is held since `BEGIN IMMEDIATE`: the subquery finds the rows the
            // SELECT above did.
            Conn::Sqlite(c) => sqlx::query(
                "UPDATE notification_outbox SET next_attempt_at = $4
                 WHERE tenant_id = $1 AND id IN (
                     SELECT id FROM notification_outbox
                     WHERE tenant_id = $1 AND sent_at IS NULL AND next_attempt_at <= $2
                     ORDER BY created_at, id LIMIT $3)",
            )
            .bind(tenant_id)
            .bind(ts(now))
            .bind(limit)
            .bind(ts(lease_until))
            .execute(&mut **c)
            .await?
            .rows_affected(),
            Conn::Postgres(c) => {
                let ids: Vec<Uuid> = items.iter().map(|i| i.id).collect();
                sqlx::query(
                    "UPDATE notification_outbox SET next_attempt_at = $3
                     WHERE tenant_id = $1 AND id = ANY($2)",
                )
                .bind(tenant_id)
                .bind(&ids)
                .bind(ts(lease_until))
                .execute(&mut **c)
                .await?
                .rows_affected()
            }
        };
        if usize::try_from(leased).ok() != Some(items.len()) {
            return Err(StoreError::Corrupt(format!(
                "claimed {} notifications but leased {leased}",
                items.len()
            )));
        }
        Ok(items)
    }

    /// Gives back a claimed notification that was not sent (a replica shutting down): due again
    /// at `at` for any replica.
    pub async fn release_notification(&mut self, id: Uuid, at: OffsetDateTime) -> StoreResult<()> {
        let tenant_id = self.tenant_id;
        sql!(exec self,
            "UPDATE notification_outbox SET next_attempt_at = $3 WHERE tenant_id = $1 AND id = $2 AND sent_at IS NULL",
            tenant_id, id, ts(at))?;
        Ok(())
    }

    pub async fn notifications_for(&mut self, request_id: Uuid) -> StoreResult<Vec<OutboxItem>> {
        let tenant_id = self.tenant_id;
        Ok(sql!(fetch_all OutboxItem; self,
            "SELECT id, channel, recipient, payload, request_id, attempts, next_attempt_at, sent_at, last_error
             FROM notification_outbox WHERE tenant_id = $1 AND request_id = $2 ORDER BY created_at, id", tenant_id, request_id)?)
    }

    /// Delivery bookkeeping (not a change of the tenant's access state, so not audited).
    pub async fn mark_sent(&mut self, id: Uuid, now: OffsetDateTime) -> StoreResult<()> {
        let tenant_id = self.tenant_id;
        sql!(exec self,
            "UPDATE notification_outbox SET sent_at = $3, attempts = attempts + 1, last_error = NULL
             WHERE tenant_id = $1 AND id = $2", tenant_id, id, ts(now))?;
        Ok(())
    }

    pub async fn mark_failed(
        &mut self,
        id: Uuid,
        error: &str,
        retry_at: OffsetDateTime,
    ) -> StoreResult<()> {
        let tenant_id = self.tenant_id;
        sql!(exec self,
            "UPDATE notification_outbox SET attempts = attempts + 1, last_error = $3, next_attempt_at = $4
             WHERE tenant_id = $1 AND id = $2", tenant_id, id, error, ts(retry_at))?;
        Ok(())
    }

    /// Undelivered notifications that have failed at least once.
    pub async fn failing_notifications(&mut self) -> StoreResult<usize> {
        let tenant_id = self.tenant_id;
        // Counted by the database, over the unsent rows only (the partial index of 0001), not
        // fetched and counted here: `/readyz` asks this on every probe.
        let (n,): (i64,) = sql!(fetch_one (i64,); self, FAILING_SQL, tenant_id)?;
        Ok(usize::try_from(n).unwrap_or(0))
    }
}

/// Undelivered notifications that failed at least once.
pub(super) const FAILING_SQL: &str = "SELECT COUNT(*) FROM notification_outbox
     WHERE tenant_id = $1 AND sent_at IS NULL AND attempts > 0";
