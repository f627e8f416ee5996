use time::OffsetDateTime;
use uuid::Uuid;

use super::{StoreError, StoreResult, TenantTx, ts};

/// Where a tenant's audit log is streamed to, and how far delivery has got. The log is the
/// outbox: delivery reads events after `delivered_seq`, so nothing waits for a sink.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct AuditSink {
    pub tenant_id: Uuid,
    pub id: Uuid,
    /// `webhook` or `syslog`.
    pub kind: String,
    /// The webhook URL, or `tcp://host:port` / `udp://host:port` for syslog.
    pub target: String,
    /// Webhooks: the HMAC secret, sealed (`AuditSink::seal_context`).
    pub secret_sealed: Option<Vec<u8>>,
    pub delivered_seq: i64,
    pub delivered_checkpoint_seq: i64,
    pub attempts: i64,
    pub next_attempt_at: OffsetDateTime,
    pub last_error: Option<String>,
    pub last_delivered_at: Option<OffsetDateTime>,
    pub created_at: OffsetDateTime,
}

impl AuditSink {
    pub fn seal_context(tenant_id: Uuid, id: Uuid) -> String {
        format!("audit-sink:{tenant_id}:{id}")
    }
}

impl TenantTx {
    pub async fn insert_audit_sink(
        &mut self,
        id: Uuid,
        kind: &str,
        target: &str,
        secret_sealed: Option<&[u8]>,
        now: OffsetDateTime,
    ) -> StoreResult<()> {
        let tenant_id = self.tenant_id;
        sql!(exec self,
            "INSERT INTO audit_sinks (tenant_id, id, kind, target, secret_sealed, next_attempt_at, created_at)
             VALUES ($1, $2, $3, $4, $5, $6, $6)",
            tenant_id, id, kind, target, secret_sealed, ts(now))
        .map_err(|e| StoreError::conflict_or(e, "audit sink"))?;
        self.mark_changed();
        Ok(())
    }

    /// Removes a sink; false when there was none.
    pub async fn delete_audit_sink(&mut self, id: Uuid) -> StoreResult<bool> {
        let tenant_id = self.tenant_id;
        let n = sql!(exec self, "DELETE FROM audit_sinks WHERE tenant_id = $1 AND id = $2", tenant_id, id)?;
        if n > 0 {
            self.mark_changed();
        }
        Ok(n > 0)
    }

    pub async fn audit_sinks(&mut self) -> StoreResult<Vec<AuditSink>> {
        let tenant_id = self.tenant_id;
        Ok(sql!(fetch_all AuditSink; self,
            "SELECT tenant_id, id, kind, target, secret_sealed, delivered_seq, delivered_checkpoint_seq, attempts, next_attempt_at, last_error, last_delivered_at, created_at
             FROM audit_sinks WHERE tenant_id = $1 ORDER BY created_at, id", tenant_id)?)
    }

    /// Claims a due sink for this replica until `lease_until` and returns it as it stands now
    /// (its cursor as the last sender left it): `Some` for exactly one claimer (a concurrent claim
    /// waits for this one's commit and then finds the sink no longer due), so one replica at a
    /// time sends a sink's batches. Delivery bookkeeping, not audited.
    pub async fn claim_audit_sink(
        &mut self,
        id: Uuid,
        now: OffsetDateTime,
        lease_until: OffsetDateTime,
    ) -> StoreResult<Option<AuditSink>> {
        let tenant_id = self.tenant_id;
        Ok(sql!(fetch_optional AuditSink; self,
            "UPDATE audit_sinks SET next_attempt_at = $4
             WHERE tenant_id = $1 AND id = $2 AND next_attempt_at <= $3
             RETURNING tenant_id, id, kind, target, secret_sealed, delivered_seq, delivered_checkpoint_seq, attempts, next_attempt_at, last_error, last_delivered_at, created_at",
            tenant_id, id, ts(now), ts(lease_until))?)
    }

    /// Gives a claimed sink back with nothing sent (its next pass may be any replica's).
    pub async fn release_audit_sink(&mut self, id: Uuid, at: OffsetDateTime) -> StoreResult<()> {
        let tenant_id = self.tenant_id;
        sql!(exec self,
            "UPDATE audit_sinks SET next_attempt_at = $3 WHERE tenant_id = $1 AND id = $2",
            tenant_id, id, ts(at))?;
        Ok(())
    }

    /// Delivery bookkeeping (not a change of access state, so not audited). Only moves forward,
    /// so two replicas delivering the same batch cannot move a cursor back.
    pub async fn audit_sink_delivered(
        &mut self,
        id: Uuid,
        seq: i64,
        checkpoint_seq: i64,
        now: OffsetDateTime,
    ) -> StoreResult<()> {
        let tenant_id = self.tenant_id;
        sql!(exec self,
            "UPDATE audit_sinks SET
                delivered_seq = CASE WHEN delivered_seq < $3 THEN $3 ELSE delivered_seq END,
                delivered_checkpoint_seq = CASE WHEN delivered_checkpoint_seq < $4 THEN $4 ELSE delivered_checkpoint_seq END,
                attempts = 0, last_error = NULL, last_delivered_at = $5, next_attempt_at = $5
             WHERE tenant_id = $1 AND id = $2",
            tenant_id, id, seq, checkpoint_seq, ts(now))?;
        Ok(())
    }

    pub async fn audit_sink_failed(
        &mut self,
        id: Uuid,
        error: &str,
        retry_at: OffsetDateTime,
    ) -> StoreResult<()> {
        let tenant_id = self.tenant_id;
        sql!(exec self,
            "UPDATE audit_sinks SET attempts = attempts + 1, last_error = $3, next_attempt_at = $4
             WHERE tenant_id = $1 AND id = $2",
            tenant_id, id, error, ts(retry_at))?;
        Ok(())
    }
}
