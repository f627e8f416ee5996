use sqlx::types::Json;
use time::OffsetDateTime;

use super::{Conn, StoreError, StoreResult, TenantTx, ts};
use crate::audit::{GENESIS_HASH, NewEvent, Record};

#[derive(sqlx::FromRow)]
struct Head {
    seq: i64,
    hash: Vec<u8>,
}

impl TenantTx {
    /// Appends an event to this tenant's chain in this transaction: it commits with the change it
    /// records or not at all.
    pub async fn append_audit(
        &mut self,
        event: &NewEvent,
        now: OffsetDateTime,
    ) -> StoreResult<Record> {
        let tenant_id = self.tenant_id;
        // Serialize appenders of one tenant so sequence numbers stay gapless and linked. SQLite
        // already holds the write lock (BEGIN IMMEDIATE); on Postgres a transaction-scoped
        // advisory lock per tenant does it without needing UPDATE rights on the log.
        if let Conn::Postgres(c) = &mut self.conn {
            let bytes = tenant_id.as_bytes();
            let mut key = [0u8; 8];
            key.copy_from_slice(&bytes[..8]);
            sqlx::query("SELECT pg_advisory_xact_lock($1)")
                .bind(i64::from_be_bytes(key))
                .execute(&mut **c)
                .await?;
        }
        let head = sql!(fetch_optional Head; self,
            "SELECT seq, hash FROM audit_events WHERE tenant_id = $1 ORDER BY seq DESC LIMIT 1", tenant_id)?;
        let (seq, prev_hash) = match head {
            Some(h) => (h.seq + 1, h.hash),
            None => (1, GENESIS_HASH.to_vec()),
        };
        let mut record = Record {
            tenant_id,
            seq,
            at: ts(now),
            actor: event.actor.render(),
            action: event.action.to_owned(),
            subject: event.subject.clone(),
            request_id: event.request_id,
            ip: event.origin.ip.clone(),
            user_agent: event.origin.user_agent.clone(),
            details: Json(event.details.clone()),
            prev_hash,
            hash: Vec::new(),
        };
        record.hash = record
            .compute_hash()
            .map_err(|e| StoreError::Corrupt(e.to_string()))?
            .to_vec();
        sql!(exec self,
            "INSERT INTO audit_events
                (tenant_id, seq, at, actor, action, subject, request_id, ip, user_agent, details, prev_hash, hash)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)",
            tenant_id, record.seq, record.at, &record.actor, &record.action, &record.subject,
            record.request_id, &record.ip, &record.user_agent, &record.details, &record.prev_hash, &record.hash)?;
        self.audited = true;
        Ok(record)
    }

    /// Events after `after_seq`, oldest first.
    pub async fn audit_events(&mut self, after_seq: i64, limit: i64) -> StoreResult<Vec<Record>> {
        let tenant_id = self.tenant_id;
        Ok(sql!(fetch_all Record; self,
            "SELECT tenant_id, seq, at, actor, action, subject, request_id, ip, user_agent, details, prev_hash, hash
             FROM audit_events WHERE tenant_id = $1 AND seq > $2 ORDER BY seq LIMIT $3",
            tenant_id, after_seq, limit)?)
    }

    /// The timeline of one request, oldest first.
    pub async fn audit_events_for_request(
        &mut self,
        request_id: uuid::Uuid,
    ) -> StoreResult<Vec<Record>> {
        let tenant_id = self.tenant_id;
        Ok(sql!(fetch_all Record; self,
            "SELECT tenant_id, seq, at, actor, action, subject, request_id, ip, user_agent, details, prev_hash, hash
             FROM audit_events WHERE tenant_id = $1 AND request_id = $2 ORDER BY seq",
            tenant_id, request_id)?)
    }
}
