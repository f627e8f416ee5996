use time::{Duration, OffsetDateTime};
use uuid::Uuid;

use super::{Conn, StoreError, StoreResult, TenantTx, ts, ts_opt};
use crate::workflow::{Approval, Extension, Grant, Request, Shortcut, State};

#[derive(sqlx::FromRow)]
struct RequestRow {
    id: Uuid,
    requester_id: Uuid,
    profile_name: String,
    policy_version: i64,
    state: String,
    duration_secs: i64,
    justification: String,
    ticket: Option<String>,
    starts_at: Option<OffsetDateTime>,
    pending_until: OffsetDateTime,
    break_glass: bool,
    auto_approved: bool,
    reviewed_by: Option<Uuid>,
    created_at: OffsetDateTime,
    extension_round: Option<i64>,
    extension_secs: Option<i64>,
    activated_at: Option<OffsetDateTime>,
    not_after: Option<OffsetDateTime>,
}

#[derive(sqlx::FromRow)]
struct ApprovalRow {
    approver_id: Uuid,
    round: i64,
    created_at: OffsetDateTime,
}

/// A stored request with the policy version it was decided under.
#[derive(Debug, Clone)]
pub struct StoredRequest {
    pub request: Request,
    pub policy_version: i64,
}

impl TenantTx {
    pub async fn insert_request(
        &mut self,
        r: &Request,
        policy_version: i64,
        now: OffsetDateTime,
    ) -> StoreResult<()> {
        let tenant_id = self.tenant_id;
        sql!(exec self,
            "INSERT INTO requests (tenant_id, id, requester_id, profile_name, policy_version, state, duration_secs,
                justification, ticket, starts_at, pending_until, break_glass, auto_approved, created_at, updated_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $14)",
            tenant_id, r.id, r.requester, &r.profile, policy_version, r.state.as_str(), r.duration.whole_seconds(),
            &r.justification, &r.ticket, ts_opt(r.starts_at), ts(r.pending_until),
            r.shortcut == Some(Shortcut::BreakGlass), r.shortcut == Some(Shortcut::AutoApproved), ts(now))
        .map_err(|e| StoreError::conflict_or(e, "request"))?;
        self.mark_changed();
        self.save_request_parts(r, &[], now).await
    }

    /// Writes a transition: the request row, new approvals and the grant.
    pub async fn save_request(
        &mut self,
        before: &Request,
        after: &Request,
        now: OffsetDateTime,
    ) -> StoreResult<()> {
        let tenant_id = self.tenant_id;
        let (ext_round, ext_secs) = match &after.extension {
            Some(e) => (Some(i64::from(e.round)), Some(e.added.whole_seconds())),
            None => (None, None),
        };
        sql!(exec self,
            "UPDATE requests SET state = $3, duration_secs = $4, reviewed_by = $5, reviewed_at = $6,
                extension_round = $7, extension_secs = $8, updated_at = $9
             WHERE tenant_id = $1 AND id = $2",
            tenant_id, after.id, after.state.as_str(), after.duration.whole_seconds(), after.reviewed_by,
            after.reviewed_by.map(|_| ts(now)), ext_round, ext_secs, ts(now))?;
        self.mark_changed();
        self.save_request_parts(after, &before.approvals, now).await
    }

    async fn save_request_parts(
        &mut self,
        r: &Request,
        known: &[Approval],
        now: OffsetDateTime,
    ) -> StoreResult<()> {
        let tenant_id = self.tenant_id;
        for a in r.approvals.iter().filter(|a| !known.contains(a)) {
            sql!(exec self,
                "INSERT INTO approvals (tenant_id, id, request_id, round, approver_id, decision, created_at)
                 VALUES ($1, $2, $3, $4, $5, 'approve', $6)",
                tenant_id, Uuid::now_v7(), r.id, i64::from(a.round), a.approver, ts(a.at))
            .map_err(|e| StoreError::conflict_or(e, "approval"))?;
        }
        if let Some(g) = &r.grant {
            let ended = r.state.is_terminal().then(|| ts(now));
            let reason = r.state.is_terminal().then(|| r.state.as_str());
            sql!(exec self,
                "INSERT INTO grants (tenant_id, request_id, activated_at, not_before, not_after, ended_at, end_reason)
                 VALUES ($1, $2, $3, $3, $4, $5, $6)
                 ON CONFLICT (tenant_id, request_id) DO UPDATE
                    SET not_after = excluded.not_after, ended_at = excluded.ended_at, end_reason = excluded.end_reason",
                tenant_id, r.id, ts(g.activated_at), ts(g.not_after), ended, reason)?;
        }
        Ok(())
    }

    pub async fn request(&mut self, id: Uuid) -> StoreResult<Option<StoredRequest>> {
        let tenant_id = self.tenant_id;
        let row = sql!(fetch_optional RequestRow; self,
            "SELECT r.id, r.requester_id, r.profile_name, r.policy_version, r.state, r.duration_secs, r.justification,
                    r.ticket, r.starts_at, r.pending_until, r.break_glass, r.auto_approved, r.reviewed_by, r.created_at,
                    r.extension_round, r.extension_secs, g.activated_at, g.not_after
             FROM requests r LEFT JOIN grants g ON g.tenant_id = r.tenant_id AND g.request_id = r.id
             WHERE r.tenant_id = $1 AND r.id = $2", tenant_id, id)?;
        let Some(row) = row else { return Ok(None) };
        let approvals = sql!(fetch_all ApprovalRow; self,
            "SELECT approver_id, round, created_at FROM approvals
             WHERE tenant_id = $1 AND request_id = $2 AND decision = 'approve' ORDER BY created_at, id", tenant_id, id)?;
        Ok(Some(assemble(row, approvals)?))
    }

    /// Request ids, newest first, optionally of one requester and/or in some states.
    pub async fn request_ids(
        &mut self,
        requester: Option<Uuid>,
        states: &[State],
        limit: i64,
    ) -> StoreResult<Vec<Uuid>> {
        let tenant_id = self.tenant_id;
        let all: Vec<(Uuid, Uuid, String)> = match &mut self.conn {
            Conn::Sqlite(c) => sqlx::query_as("SELECT id, requester_id, state FROM requests WHERE tenant_id = $1 ORDER BY created_at DESC, id DESC")
                .bind(tenant_id).fetch_all(&mut **c).await?,
            Conn::Postgres(c) => sqlx::query_as("SELECT id, requester_id, state FROM requests WHERE tenant_id = $1 ORDER BY created_at DESC, id DESC")
                .bind(tenant_id).fetch_all(&mut **c).await?,
        };
        Ok(all
            .into_iter()
            .filter(|(_, who, _)| requester.is_none_or(|r| r == *who))
            .filter(|(_, _, state)| {
                states.is_empty() || State::parse(state).is_some_and(|s| states.contains(&s))
            })
            .map(|(id, _, _)| id)
            .take(usize::try_from(limit).unwrap_or(0))
            .collect())
    }

    /// Requests whose time has come: pending past their deadline, scheduled past their start,
    /// active past their end.
    pub async fn due_request_ids(&mut self, now: OffsetDateTime) -> StoreResult<Vec<Uuid>> {
        let tenant_id = self.tenant_id;
        let now = ts(now);
        let rows: Vec<(Uuid,)> = sql!(fetch_all (Uuid,); self,
            "SELECT r.id FROM requests r LEFT JOIN grants g ON g.tenant_id = r.tenant_id AND g.request_id = r.id
             WHERE r.tenant_id = $1 AND (
                (r.state = 'pending' AND r.pending_until <= $2)
                OR (r.state = 'scheduled' AND (r.starts_at IS NULL OR r.starts_at <= $2))
                OR (r.state = 'active' AND g.not_after <= $2))
             ORDER BY r.created_at LIMIT 500", tenant_id, now)?;
        Ok(rows.into_iter().map(|r| r.0).collect())
    }

    /// Postgres: takes the request's row lock, or returns false when another replica holds it
    /// (`FOR UPDATE SKIP LOCKED`). SQLite transactions are already exclusive.
    pub async fn lock_request(&mut self, id: Uuid) -> StoreResult<bool> {
        let tenant_id = self.tenant_id;
        match &mut self.conn {
            Conn::Sqlite(_) => Ok(true),
            Conn::Postgres(c) => Ok(sqlx::query(
                "SELECT id FROM requests WHERE tenant_id = $1 AND id = $2 FOR UPDATE SKIP LOCKED",
            )
            .bind(tenant_id)
            .bind(id)
            .fetch_optional(&mut **c)
            .await?
            .is_some()),
        }
    }
    /// Takes the request's row lock, waiting for whoever holds it (Postgres). Used by actions
    /// that must see the latest state: a person's transition, issuing a credential.
    pub async fn lock_request_wait(&mut self, id: Uuid) -> StoreResult<()> {
        let tenant_id = self.tenant_id;
        if let Conn::Postgres(c) = &mut self.conn {
            sqlx::query("SELECT id FROM requests WHERE tenant_id = $1 AND id = $2 FOR UPDATE")
                .bind(tenant_id)
                .bind(id)
                .fetch_optional(&mut **c)
                .await?;
        }
        Ok(())
    }
}

impl TenantTx {
    /// Requests still open (pending, scheduled or active), of one requester or of the whole
    /// tenant, oldest first: what disabling a person or a lockdown walks.
    pub async fn open_request_ids(
        &mut self,
        requester: Option<Uuid>,
    ) -> StoreResult<Vec<(Uuid, State)>> {
        let tenant_id = self.tenant_id;
        let rows: Vec<(Uuid, String)> = match requester {
            Some(who) => sql!(fetch_all (Uuid, String); self,
                "SELECT id, state FROM requests
                 WHERE tenant_id = $1 AND requester_id = $2 AND state IN ('pending', 'scheduled', 'active')
                 ORDER BY created_at, id", tenant_id, who)?,
            None => sql!(fetch_all (Uuid, String); self,
                "SELECT id, state FROM requests
                 WHERE tenant_id = $1 AND state IN ('pending', 'scheduled', 'active')
                 ORDER BY created_at, id", tenant_id)?,
        };
        rows.into_iter()
            .map(|(id, state)| {
                State::parse(&state)
                    .map(|s| (id, s))
                    .ok_or_else(|| StoreError::Corrupt(format!("request state {state:?}")))
            })
            .collect()
    }
}

fn assemble(row: RequestRow, approvals: Vec<ApprovalRow>) -> StoreResult<StoredRequest> {
    let state = State::parse(&row.state)
        .ok_or_else(|| StoreError::Corrupt(format!("request state {:?}", row.state)))?;
    let shortcut = if row.break_glass {
        Some(Shortcut::BreakGlass)
    } else if row.auto_approved {
        Some(Shortcut::AutoApproved)
    } else {
        None
    };
    let grant = match (row.activated_at, row.not_after) {
        (Some(activated_at), Some(not_after)) => Some(Grant {
            activated_at,
            not_after,
        }),
        _ => None,
    };
    let extension = match (row.extension_round, row.extension_secs) {
        (Some(round), Some(secs)) => Some(Extension {
            round: u32::try_from(round).unwrap_or(0),
            added: Duration::seconds(secs),
        }),
        _ => None,
    };
    Ok(StoredRequest {
        policy_version: row.policy_version,
        request: Request {
            id: row.id,
            requester: row.requester_id,
            profile: row.profile_name,
            duration: Duration::seconds(row.duration_secs),
            justification: row.justification,
            ticket: row.ticket,
            starts_at: row.starts_at,
            state,
            created_at: row.created_at,
            pending_until: row.pending_until,
            shortcut,
            approvals: approvals
                .into_iter()
                .map(|a| Approval {
                    approver: a.approver_id,
                    round: u32::try_from(a.round).unwrap_or(0),
                    at: a.created_at,
                })
                .collect(),
            extension,
            grant,
            reviewed_by: row.reviewed_by,
        },
    })
}
