use sqlx::types::Json;
use time::OffsetDateTime;

use super::built::{Arg, Sql};
use super::{Conn, StoreError, StoreResult, TenantTx, ts};
use crate::model::audit::{Checkpoint, Filter, GENESIS_HASH, NewEvent, Record};

/// The newest event of a tenant's log.
pub(super) const HEAD_SQL: &str =
    "SELECT seq, hash FROM audit_events WHERE tenant_id = $1 ORDER BY seq DESC LIMIT 1";

#[derive(sqlx::FromRow)]
struct Head {
    seq: i64,
    hash: Vec<u8>,
}

impl TenantTx {
    /// Appends an event to this tenant's chain in this transaction: it commits with the change it
    /// records or not at all. The event is written at [`TenantTx::commit`] (or before anything in
    /// this transaction reads the log), so the tenant's append lock is held only for the
    /// appends and the commit, not for the work of the action (issue 16).
    pub async fn append_audit(&mut self, event: &NewEvent, now: OffsetDateTime) -> StoreResult<()> {
        if self.read_only {
            return Err(StoreError::Corrupt(
                "an audit event appended in a read-only transaction".into(),
            ));
        }
        self.pending_audit.push((event.clone(), now));
        self.audited = true;
        Ok(())
    }

    /// [`Self::append_audit`] at once, returning the record as chained (its sequence number and
    /// hash), for a caller that needs them before commit.
    pub async fn append_audit_now(
        &mut self,
        event: &NewEvent,
        now: OffsetDateTime,
    ) -> StoreResult<Record> {
        self.flush_audit().await?;
        let record = self.write_audit(event, now).await?;
        self.audited = true;
        Ok(record)
    }

    /// Writes the events appended so far.
    pub(super) async fn flush_audit(&mut self) -> StoreResult<()> {
        for (event, now) in std::mem::take(&mut self.pending_audit) {
            self.write_audit(&event, now).await?;
        }
        Ok(())
    }

    async fn write_audit(&mut self, event: &NewEvent, now: OffsetDateTime) -> StoreResult<Record> {
        let tenant_id = self.tenant_id;
        // Serialize appenders of one tenant so sequence numbers stay gapless and linked. SQLite
        // already holds the write lock (BEGIN IMMEDIATE); on Postgres a transaction-scoped
        // advisory lock per tenant does it without needing UPDATE rights on the log. Both are
        // held until commit, so after this transaction's first append the head it wrote is
        // still the head: later appends skip the lock and the read.
        let head = match self.audit_head.take() {
            Some(head) => Some(head),
            None => {
                if let Conn::Postgres(c) = &mut self.conn {
                    let bytes = tenant_id.as_bytes();
                    let mut key = [0u8; 8];
                    key.copy_from_slice(&bytes[..8]);
                    sqlx::query("SELECT pg_advisory_xact_lock($1)")
                        .bind(i64::from_be_bytes(key))
                        .execute(&mut **c)
                        .await?;
                    if let Some(clock) = self.open_clock.as_mut() {
                        clock.locked_since = Some(std::time::Instant::now());
                    }
                }
                self.stored_audit_head().await?
            }
        };
        let (seq, prev_hash) = match head {
            Some((seq, hash)) => (seq + 1, hash),
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
        self.audit_head = Some((record.seq, record.hash.clone()));
        Ok(record)
    }

    /// Whether `actor` has an `action` event at or after `since` (reading the log is recorded
    /// once per reader and hour, so a poller does not feed the log it reads).
    pub async fn audit_recorded_since(
        &mut self,
        action: &str,
        actor: &str,
        since: OffsetDateTime,
    ) -> StoreResult<bool> {
        self.flush_audit().await?;
        let tenant_id = self.tenant_id;
        let found = sql!(fetch_optional (i64,); self,
            "SELECT seq FROM audit_events
             WHERE tenant_id = $1 AND action = $2 AND at >= $3 AND actor = $4
             ORDER BY at DESC LIMIT 1",
            tenant_id, action, ts(since), actor)?;
        Ok(found.is_some())
    }

    /// Events after `after_seq`, oldest first.
    pub async fn audit_events(&mut self, after_seq: i64, limit: i64) -> StoreResult<Vec<Record>> {
        self.flush_audit().await?;
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
        self.flush_audit().await?;
        let tenant_id = self.tenant_id;
        Ok(sql!(fetch_all Record; self,
            "SELECT tenant_id, seq, at, actor, action, subject, request_id, ip, user_agent, details, prev_hash, hash
             FROM audit_events WHERE tenant_id = $1 AND request_id = $2 ORDER BY seq",
            tenant_id, request_id)?)
    }
}

/// A checkpoint row; the signature column holds the PEM armour's bytes.
#[derive(sqlx::FromRow)]
struct CheckpointRow {
    tenant_id: uuid::Uuid,
    seq: i64,
    head_hash: Vec<u8>,
    signature: Vec<u8>,
    signing_key_id: uuid::Uuid,
    at: OffsetDateTime,
}

impl TryFrom<CheckpointRow> for Checkpoint {
    type Error = StoreError;
    fn try_from(r: CheckpointRow) -> StoreResult<Self> {
        Ok(Checkpoint {
            tenant_id: r.tenant_id,
            seq: r.seq,
            head_hash: r.head_hash,
            at: r.at,
            signing_key_id: r.signing_key_id,
            checkpoints: None,
            signature: String::from_utf8(r.signature)
                .map_err(|_| StoreError::Corrupt("checkpoint signature is not text".into()))?,
        })
    }
}

/// `%`, `_` and `\` taken literally in a LIKE pattern (with `ESCAPE '\'`).
fn like_contains(s: &str) -> String {
    let mut p = String::with_capacity(s.len() + 2);
    p.push('%');
    for c in s.chars() {
        if matches!(c, '%' | '_' | '\\') {
            p.push('\\');
        }
        p.push(c);
    }
    p.push('%');
    p
}

impl TenantTx {
    /// The newest event's seq and hash.
    pub async fn audit_head(&mut self) -> StoreResult<Option<(i64, Vec<u8>)>> {
        self.flush_audit().await?;
        self.stored_audit_head().await
    }

    /// The stored hash of event `seq`, if there is one.
    pub async fn audit_hash_at(&mut self, seq: i64) -> StoreResult<Option<Vec<u8>>> {
        self.flush_audit().await?;
        let tenant_id = self.tenant_id;
        let found = sql!(fetch_optional (Vec<u8>,); self,
            "SELECT hash FROM audit_events WHERE tenant_id = $1 AND seq = $2", tenant_id, seq)?;
        Ok(found.map(|(h,)| h))
    }

    async fn stored_audit_head(&mut self) -> StoreResult<Option<(i64, Vec<u8>)>> {
        let tenant_id = self.tenant_id;
        let head = sql!(fetch_optional Head; self, HEAD_SQL, tenant_id)?;
        Ok(head.map(|h| (h.seq, h.hash)))
    }

    pub async fn latest_checkpoint(&mut self) -> StoreResult<Option<Checkpoint>> {
        let tenant_id = self.tenant_id;
        sql!(fetch_optional CheckpointRow; self,
            "SELECT tenant_id, seq, head_hash, signature, signing_key_id, at FROM audit_checkpoints
             WHERE tenant_id = $1 ORDER BY seq DESC LIMIT 1", tenant_id)?
        .map(Checkpoint::try_from)
        .transpose()
    }

    /// Checkpoints with `after < seq <= upto`, oldest first.
    pub async fn checkpoints_between(
        &mut self,
        after: i64,
        upto: i64,
    ) -> StoreResult<Vec<Checkpoint>> {
        let tenant_id = self.tenant_id;
        sql!(fetch_all CheckpointRow; self,
            "SELECT tenant_id, seq, head_hash, signature, signing_key_id, at FROM audit_checkpoints
             WHERE tenant_id = $1 AND seq > $2 AND seq <= $3 ORDER BY seq", tenant_id, after, upto)?
        .into_iter()
        .map(Checkpoint::try_from)
        .collect()
    }

    /// Stores a signed checkpoint; `false` when one for that seq exists already (another
    /// replica signed it first). Bookkeeping of the log itself, so not an audited change.
    pub async fn insert_checkpoint(&mut self, c: &Checkpoint) -> StoreResult<bool> {
        let tenant_id = self.tenant_id;
        if c.tenant_id != tenant_id {
            return Err(StoreError::Corrupt("checkpoint of another tenant".into()));
        }
        let n = sql!(exec self,
            "INSERT INTO audit_checkpoints (tenant_id, seq, head_hash, signature, signing_key_id, at)
             VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (tenant_id, seq) DO NOTHING",
            tenant_id, c.seq, &c.head_hash, c.signature.as_bytes(), c.signing_key_id, ts(c.at))?;
        Ok(n > 0)
    }

    /// Events matching `filter` with `after < seq <= upto`, oldest first.
    pub async fn audit_events_matching(
        &mut self,
        filter: &Filter,
        after: i64,
        upto: i64,
        limit: i64,
    ) -> StoreResult<Vec<Record>> {
        self.flush_audit().await?;
        let sql = self.filtered_events(filter, Some(after), upto.saturating_add(1), false, limit);
        Ok(run_built!(fetch_all Record; self, sql)?)
    }

    /// Events matching `filter` with `after < seq < before`, newest first (the auditor's page).
    pub async fn audit_events_newest(
        &mut self,
        filter: &Filter,
        after: Option<i64>,
        before: i64,
        limit: i64,
    ) -> StoreResult<Vec<Record>> {
        self.flush_audit().await?;
        let sql = self.filtered_events(filter, after, before, true, limit);
        Ok(run_built!(fetch_all Record; self, sql)?)
    }

    /// The events of `filter` with `after < seq < before`, in seq order. Only the filters given
    /// become conditions, so an action or request filter walks its `(tenant, action|request,
    /// seq)` index (migration 0019) instead of the whole log.
    fn filtered_events(
        &self,
        filter: &Filter,
        after: Option<i64>,
        before: i64,
        newest_first: bool,
        limit: i64,
    ) -> Sql {
        let mut sql = Sql::new();
        let mut conds = vec![
            format!("tenant_id = {}", sql.arg(Arg::Uuid(self.tenant_id))),
            format!("seq < {}", sql.arg(Arg::Int(before))),
        ];
        if let Some(after) = after {
            conds.push(format!("seq > {}", sql.arg(Arg::Int(after))));
        }
        if let Some(actor) = &filter.actor {
            let pattern = sql.arg(Arg::Text(like_contains(actor)));
            conds.push(format!("actor LIKE {pattern} ESCAPE '\\'"));
        }
        if let Some(action) = &filter.action {
            conds.push(format!("action = {}", sql.arg(Arg::Text(action.clone()))));
        }
        if let Some(request) = filter.request_id {
            conds.push(format!("request_id = {}", sql.arg(Arg::Uuid(request))));
        }
        if let Some(from) = filter.from {
            conds.push(format!("at >= {}", sql.arg(Arg::Time(ts(from)))));
        }
        if let Some(to) = filter.to {
            conds.push(format!("at < {}", sql.arg(Arg::Time(ts(to)))));
        }
        let limit = sql.arg(Arg::Int(limit));
        sql.text = format!(
            "SELECT tenant_id, seq, at, actor, action, subject, request_id, ip, user_agent, details, prev_hash, hash
             FROM audit_events WHERE {}
             ORDER BY seq {} LIMIT {limit}",
            conds.join(" AND "),
            if newest_first { "DESC" } else { "ASC" }
        );
        sql
    }

    /// The plan of the auditor's page query for `filter` (searching `after < seq` when given),
    /// to check in tests which index it uses.
    pub async fn explain_audit_newest(
        &mut self,
        filter: &Filter,
        after: Option<i64>,
    ) -> StoreResult<Vec<String>> {
        let sql = self.filtered_events(filter, after, i64::MAX, true, 100);
        self.explain_built(sql).await
    }
}
