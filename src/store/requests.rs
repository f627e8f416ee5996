use time::{Duration, OffsetDateTime};
use uuid::Uuid;

use super::built::{Arg, Sql};
use super::{Backend, Conn, StoreError, StoreResult, TenantTx, ts, ts_opt};
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
    stepped_up: bool,
}

/// A stored request with the policy version it was decided under.
#[derive(Debug, Clone)]
pub struct StoredRequest {
    pub request: Request,
    pub policy_version: i64,
}

/// One request with its grant, by id (`$1` tenant, `$2` id): the text both loads share, one
/// of them with a row lock appended.
macro_rules! request_by_id {
    () => {
        "SELECT r.id, r.requester_id, r.profile_name, r.policy_version, r.state, r.duration_secs, r.justification,
                r.ticket, r.starts_at, r.pending_until, r.break_glass, r.auto_approved, r.reviewed_by, r.created_at,
                r.extension_round, r.extension_secs, g.activated_at, g.not_after
         FROM requests r LEFT JOIN grants g ON g.tenant_id = r.tenant_id AND g.request_id = r.id
         WHERE r.tenant_id = $1 AND r.id = $2"
    };
}

/// What the reaper must move now, oldest first: pending past their lapse, scheduled past their
/// start, active past their end; each part served by its index of migration 0014.
const DUE_SQL: &str = "SELECT id FROM (
        SELECT id, created_at FROM requests
         WHERE tenant_id = $1 AND state = 'pending' AND pending_until <= $2
        UNION ALL
        SELECT id, created_at FROM requests
         WHERE tenant_id = $1 AND state = 'scheduled' AND (starts_at IS NULL OR starts_at <= $2)
        UNION ALL
        SELECT r.id, r.created_at FROM grants g
          JOIN requests r ON r.tenant_id = g.tenant_id AND r.id = g.request_id
         WHERE g.tenant_id = $1 AND g.ended_at IS NULL AND g.not_after <= $2 AND r.state = 'active'
    ) due ORDER BY created_at LIMIT 500";

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
                "INSERT INTO approvals (tenant_id, id, request_id, round, approver_id, decision, created_at, stepped_up)
                 VALUES ($1, $2, $3, $4, $5, 'approve', $6, $7)",
                tenant_id, Uuid::now_v7(), r.id, i64::from(a.round), a.approver, ts(a.at), a.stepped_up)
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
        let row = sql!(fetch_optional RequestRow; self, request_by_id!(), tenant_id, id)?;
        self.with_approvals(row).await
    }

    /// [`Self::request`] with the request's row lock taken in the same statement, or `None`
    /// when another replica holds it (Postgres `FOR UPDATE OF r SKIP LOCKED`, in the same
    /// round trip as the load): what the reaper moves. SQLite transactions are already
    /// exclusive.
    pub async fn request_unless_locked(&mut self, id: Uuid) -> StoreResult<Option<StoredRequest>> {
        let tenant_id = self.tenant_id;
        let row = match &mut self.conn {
            Conn::Sqlite(_) => return self.request(id).await,
            Conn::Postgres(c) => {
                sqlx::query_as::<_, RequestRow>(concat!(
                    request_by_id!(),
                    " FOR UPDATE OF r SKIP LOCKED"
                ))
                .bind(tenant_id)
                .bind(id)
                .fetch_optional(&mut **c)
                .await?
            }
        };
        self.with_approvals(row).await
    }

    /// A request row completed with its approvals.
    async fn with_approvals(
        &mut self,
        row: Option<RequestRow>,
    ) -> StoreResult<Option<StoredRequest>> {
        let tenant_id = self.tenant_id;
        let Some(row) = row else { return Ok(None) };
        let id = row.id;
        let approvals = sql!(fetch_all ApprovalRow; self,
            "SELECT approver_id, round, created_at, stepped_up FROM approvals
             WHERE tenant_id = $1 AND request_id = $2 AND decision = 'approve' ORDER BY created_at, id", tenant_id, id)?;
        Ok(Some(assemble(row, approvals)?))
    }

    /// The earliest deadline still ahead of the reaper: a pending request's lapse, a scheduled
    /// start or an active grant's end (so the reaper sleeps until then, not a fixed interval).
    pub async fn next_deadline(&mut self) -> StoreResult<Option<OffsetDateTime>> {
        let tenant_id = self.tenant_id;
        let rows: Vec<(Option<OffsetDateTime>,)> = sql!(fetch_all (Option<OffsetDateTime>,); self,
            "SELECT MIN(pending_until) FROM requests WHERE tenant_id = $1 AND state = 'pending'
             UNION ALL
             SELECT MIN(starts_at) FROM requests WHERE tenant_id = $1 AND state = 'scheduled'
             UNION ALL
             SELECT MIN(g.not_after) FROM grants g JOIN requests r ON r.tenant_id = g.tenant_id AND r.id = g.request_id
              WHERE g.tenant_id = $1 AND g.ended_at IS NULL AND r.state = 'active'", tenant_id)?;
        Ok(rows.into_iter().filter_map(|r| r.0).min())
    }

    /// Requests whose time has come: pending past their deadline, scheduled past their start,
    /// active past their end.
    pub async fn due_request_ids(&mut self, now: OffsetDateTime) -> StoreResult<Vec<Uuid>> {
        let tenant_id = self.tenant_id;
        let now = ts(now);
        let rows: Vec<(Uuid,)> = match &mut self.conn {
            Conn::Sqlite(c) => {
                sqlx::query_as(DUE_SQL)
                    .bind(tenant_id)
                    .bind(now)
                    .fetch_all(&mut **c)
                    .await?
            }
            Conn::Postgres(c) => {
                sqlx::query_as(DUE_SQL)
                    .bind(tenant_id)
                    .bind(now)
                    .fetch_all(&mut **c)
                    .await?
            }
        };
        Ok(rows.into_iter().map(|r| r.0).collect())
    }

    /// The query plan of [`due_request_ids`](Self::due_request_ids) (see
    /// [`explain_list_requests`](Self::explain_list_requests)). For the test that the reaper's
    /// query uses the indexes of migration 0014.
    pub async fn explain_due(&mut self, now: OffsetDateTime) -> StoreResult<Vec<String>> {
        let args = vec![Arg::Uuid(self.tenant_id), Arg::Time(ts(now))];
        self.explain_built(Sql::of(DUE_SQL, args)).await
    }

    /// True when this transaction is the only one, across replicas, doing `job` for this tenant
    /// (Postgres: a transaction-scoped advisory lock, released at commit or rollback, so a replica
    /// that dies cannot leave it behind). SQLite transactions are already exclusive.
    pub async fn try_singleton(&mut self, job: &str) -> StoreResult<bool> {
        let tenant_id = self.tenant_id;
        match &mut self.conn {
            Conn::Sqlite(_) => Ok(true),
            Conn::Postgres(c) => {
                let (got,): (bool,) = sqlx::query_as(
                    "SELECT pg_try_advisory_xact_lock(hashtextextended('elevate:' || $1 || ':' || $2::text, 0))",
                )
                .bind(job)
                .bind(tenant_id)
                .fetch_one(&mut **c)
                .await?;
                Ok(got)
            }
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
                    stepped_up: a.stepped_up,
                })
                .collect(),
            extension,
            grant,
            reviewed_by: row.reviewed_by,
        },
    })
}

/// A position in a newest-first list of requests: the list continues with requests strictly older
/// than this one (by creation time, then id). Requests filed later sort before it, so paging on
/// is stable while new requests arrive. Shown to clients as an opaque string.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cursor {
    pub created_at: OffsetDateTime,
    pub id: Uuid,
}

impl Cursor {
    pub fn of(r: &Request) -> Self {
        Cursor {
            created_at: ts(r.created_at),
            id: r.id,
        }
    }

    pub fn encode(&self) -> String {
        format!("{}-{}", self.created_at.unix_timestamp(), self.id.simple())
    }

    pub fn parse(s: &str) -> Option<Self> {
        let (at, id) = s.trim().split_once('-')?;
        let id = Uuid::try_parse(id).ok()?;
        let created_at = OffsetDateTime::from_unix_timestamp(at.parse().ok()?).ok()?;
        Some(Cursor { created_at, id })
    }
}

/// Which requests a list shows, all decided in SQL (`broker::service::visible` fills it in from
/// the viewer's roles).
#[derive(Debug, Clone, Default)]
pub struct RequestFilter {
    /// Who is looking.
    pub viewer: Uuid,
    /// Admins and auditors see every request of the tenant.
    pub sees_all: bool,
    /// The viewer's groups when they hold the approver role, else empty: they see the requests of
    /// profiles these groups approve (as the profile was when the request was decided).
    pub approver_groups: Vec<String>,
    /// Only the viewer's own requests.
    pub mine: bool,
    /// Only requests in these states (any state when empty).
    pub states: Vec<State>,
    /// Only what waits for the viewer's decision as an approver: pending requests and pending
    /// extensions of others, and break-glass activations not yet reviewed.
    pub reviewable: bool,
    /// The history's filters: one profile, one requester (by address, any case), filed in
    /// `[from, to)`.
    pub history: HistoryFilter,
    pub after: Option<Cursor>,
    pub limit: i64,
}

/// Narrowing a list to what someone looks for in the history.
#[derive(Debug, Clone, Default)]
pub struct HistoryFilter {
    pub profile: Option<String>,
    pub requester_email: Option<String>,
    pub from: Option<OffsetDateTime>,
    pub to: Option<OffsetDateTime>,
}

/// A listed request with its requester's address.
#[derive(Debug, Clone)]
pub struct ListedRequest {
    pub stored: StoredRequest,
    pub requester_email: String,
}

#[derive(sqlx::FromRow)]
struct ListRow {
    #[sqlx(flatten)]
    request: RequestRow,
    requester_email: Option<String>,
}

#[derive(sqlx::FromRow)]
struct ListApprovalRow {
    request_id: Uuid,
    approver_id: Uuid,
    round: i64,
    created_at: OffsetDateTime,
    stepped_up: bool,
}

/// Requests by state: the folded totals plus the deltas since (migration 0018).
const STATE_COUNTS_SQL: &str = "SELECT state, CAST(SUM(n) AS BIGINT) FROM (
        SELECT state, n FROM request_state_totals WHERE tenant_id = $1
        UNION ALL
        SELECT state, n FROM request_state_deltas WHERE tenant_id = $1) c
     GROUP BY state";

/// What waits for an approver's decision. The partial index `requests_waiting` (migration 0011)
/// has exactly this predicate, so a query that repeats it word for word can use the index.
const WAITING: &str = "(r.state = 'pending' OR r.extension_round IS NOT NULL OR (r.break_glass AND r.reviewed_by IS NULL))";

const LIST_COLUMNS: &str = "r.id, r.requester_id, r.profile_name, r.policy_version, r.state, r.duration_secs,
    r.justification, r.ticket, r.starts_at, r.pending_until, r.break_glass, r.auto_approved, r.reviewed_by,
    r.created_at, r.extension_round, r.extension_secs, g.activated_at, g.not_after, u.email AS requester_email";

impl TenantTx {
    pub(super) fn backend(&self) -> Backend {
        match self.conn {
            Conn::Sqlite(_) => Backend::Sqlite,
            Conn::Postgres(_) => Backend::Postgres,
        }
    }

    /// The WHERE clause of a list (None: nothing can match, e.g. `reviewable` for a non-approver).
    fn list_where(&self, f: &RequestFilter, sql: &mut Sql) -> Option<String> {
        let backend = self.backend();
        let mut conds = vec![format!(
            "r.tenant_id = {}",
            sql.arg(Arg::Uuid(self.tenant_id))
        )];
        let me = sql.arg(Arg::Uuid(f.viewer));
        // The viewer approves this request's profile, as it was when the request was decided.
        let approves = |sql: &mut Sql| -> Option<String> {
            if f.approver_groups.is_empty() {
                return None;
            }
            let groups = sql.arg(Arg::Texts(f.approver_groups.clone()));
            Some(match backend {
                Backend::Sqlite => format!(
                    "EXISTS (SELECT 1 FROM profiles p, json_each(p.spec, '$.approvers') a
                     WHERE p.tenant_id = r.tenant_id AND p.version = r.policy_version AND p.name = r.profile_name
                       AND a.value IN (SELECT value FROM json_each({groups})))"
                ),
                Backend::Postgres => format!(
                    "EXISTS (SELECT 1 FROM profiles p
                     WHERE p.tenant_id = r.tenant_id AND p.version = r.policy_version AND p.name = r.profile_name
                       AND (p.spec -> 'approvers') ?| {groups}::text[])"
                ),
            })
        };
        if f.reviewable {
            let approves = approves(sql)?;
            conds.push(format!("r.requester_id <> {me}"));
            conds.push(approves);
            conds.push(WAITING.to_owned());
        } else if !f.sees_all {
            match approves(sql) {
                Some(approves) => conds.push(format!("(r.requester_id = {me} OR {approves})")),
                None => conds.push(format!("r.requester_id = {me}")),
            }
        }
        if f.mine {
            conds.push(format!("r.requester_id = {me}"));
        }
        match f.states.as_slice() {
            [] => {}
            [one] => conds.push(format!(
                "r.state = {}",
                sql.arg(Arg::Text(one.as_str().into()))
            )),
            many => {
                let list: Vec<String> = many
                    .iter()
                    .map(|s| sql.arg(Arg::Text(s.as_str().into())))
                    .collect();
                conds.push(format!("r.state IN ({})", list.join(", ")));
            }
        }
        let h = &f.history;
        if let Some(p) = &h.profile {
            conds.push(format!(
                "r.profile_name = {}",
                sql.arg(Arg::Text(p.clone()))
            ));
        }
        if let Some(e) = &h.requester_email {
            let e = sql.arg(Arg::Text(e.to_lowercase()));
            conds.push(format!(
                "r.requester_id IN (SELECT id FROM users WHERE tenant_id = r.tenant_id AND lower(email) = {e})"
            ));
        }
        if let Some(t) = h.from {
            conds.push(format!("r.created_at >= {}", sql.arg(Arg::Time(ts(t)))));
        }
        if let Some(t) = h.to {
            conds.push(format!("r.created_at < {}", sql.arg(Arg::Time(ts(t)))));
        }
        if let Some(c) = f.after {
            let at = sql.arg(Arg::Time(ts(c.created_at)));
            let id = sql.arg(Arg::Uuid(c.id));
            conds.push(format!("(r.created_at, r.id) < ({at}, {id})"));
        }
        Some(conds.join(" AND "))
    }

    fn list_sql(&self, f: &RequestFilter, limit: i64) -> Option<Sql> {
        let mut sql = Sql::new();
        let cond = self.list_where(f, &mut sql)?;
        let limit = sql.arg(Arg::Int(limit));
        sql.text = format!(
            "SELECT {LIST_COLUMNS}
             FROM requests r
             LEFT JOIN grants g ON g.tenant_id = r.tenant_id AND g.request_id = r.id
             LEFT JOIN users u ON u.tenant_id = r.tenant_id AND u.id = r.requester_id
             WHERE {cond}
             ORDER BY r.created_at DESC, r.id DESC
             LIMIT {limit}"
        );
        Some(sql)
    }

    /// One page of requests, newest first, and the cursor of the next page (None on the last).
    /// Three queries whatever the page size: the requests (with grant and requester), their
    /// approvals, nothing per row.
    pub async fn list_requests(
        &mut self,
        f: &RequestFilter,
    ) -> StoreResult<(Vec<ListedRequest>, Option<Cursor>)> {
        let limit = f.limit.max(1);
        let Some(sql) = self.list_sql(f, limit + 1) else {
            return Ok((Vec::new(), None));
        };
        let mut rows: Vec<ListRow> = run_built!(fetch_all ListRow; self, sql)?;
        let more = rows.len() as i64 > limit;
        rows.truncate(usize::try_from(limit).unwrap_or(0));
        let mut approvals = self
            .approvals_of(rows.iter().map(|r| r.request.id).collect())
            .await?;
        let mut out = Vec::with_capacity(rows.len());
        for row in rows {
            let mine: Vec<ApprovalRow> = approvals.remove(&row.request.id).unwrap_or_default();
            out.push(ListedRequest {
                requester_email: row.requester_email.unwrap_or_default(),
                stored: assemble(row.request, mine)?,
            });
        }
        let next = if more {
            out.last().map(|l| Cursor::of(&l.stored.request))
        } else {
            None
        };
        Ok((out, next))
    }

    /// How many of this tenant's requests are in each state (`/metrics`): the totals and the
    /// deltas not yet folded into them (migration 0018), not a count of the requests table.
    pub async fn request_state_counts(&mut self) -> StoreResult<Vec<(String, i64)>> {
        let tenant_id = self.tenant_id;
        Ok(sql!(fetch_all (String, i64); self, STATE_COUNTS_SQL, tenant_id)?)
    }

    /// Folds this tenant's state deltas into its totals (the reaper, now and then). Bookkeeping
    /// of changes that were audited when they were made, so it records nothing itself.
    pub async fn fold_request_state_deltas(&mut self) -> StoreResult<()> {
        let tenant_id = self.tenant_id;
        match self.backend() {
            // One statement: a delta committed meanwhile is either folded and deleted, or left.
            Backend::Postgres => {
                sql!(exec self,
                    "WITH gone AS (DELETE FROM request_state_deltas WHERE tenant_id = $1 RETURNING state, n)
                     INSERT INTO request_state_totals (tenant_id, state, n)
                     SELECT $1, state, SUM(n) FROM gone GROUP BY state
                     ON CONFLICT (tenant_id, state) DO UPDATE SET n = request_state_totals.n + excluded.n",
                    tenant_id)?;
            }
            // The write lock is held from the first statement to the commit.
            Backend::Sqlite => {
                sql!(exec self,
                    "INSERT INTO request_state_totals (tenant_id, state, n)
                     SELECT tenant_id, state, SUM(n) FROM request_state_deltas WHERE tenant_id = $1 GROUP BY state
                     ON CONFLICT (tenant_id, state) DO UPDATE SET n = request_state_totals.n + excluded.n",
                    tenant_id)?;
                sql!(exec self, "DELETE FROM request_state_deltas WHERE tenant_id = $1", tenant_id)?;
            }
        }
        Ok(())
    }

    /// The plans of the queries `/metrics` and `/readyz` run for a tenant, to check in tests
    /// that none scans a table that grows with the tenant's history.
    pub async fn explain_probe_queries(&mut self) -> StoreResult<Vec<(&'static str, String)>> {
        let tenant = || Arg::Uuid(self.tenant_id);
        let now = Arg::Time(crate::clock::Clock::now(&crate::clock::SystemClock));
        let queries = [
            (
                "request state counts",
                Sql::of(STATE_COUNTS_SQL, vec![tenant()]),
            ),
            (
                "audit head",
                Sql::of(super::audit::HEAD_SQL, vec![tenant()]),
            ),
            (
                "failing notifications",
                Sql::of(super::outbox::FAILING_SQL, vec![tenant()]),
            ),
            (
                "open database logins",
                Sql::of(super::db_logins::CLEANUP_COUNTS_SQL, vec![tenant(), now]),
            ),
        ];
        let mut out = Vec::new();
        for (name, sql) in queries {
            out.push((name, self.explain_built(sql).await?.join("\n")));
        }
        Ok(out)
    }

    /// How many requests match (the page size and cursor aside).
    pub async fn count_requests(&mut self, f: &RequestFilter) -> StoreResult<i64> {
        let mut sql = Sql::new();
        let f = RequestFilter {
            after: None,
            ..f.clone()
        };
        let Some(cond) = self.list_where(&f, &mut sql) else {
            return Ok(0);
        };
        sql.text = format!("SELECT COUNT(*) FROM requests r WHERE {cond}");
        let (n,): (i64,) = run_built!(fetch_one (i64,); self, sql)?;
        Ok(n)
    }

    /// The query plan of [`list_requests`](Self::list_requests) for `f`, one line per step
    /// (SQLite `EXPLAIN QUERY PLAN`, Postgres `EXPLAIN` with sequential scans disabled for the
    /// transaction, so the plan shows whether an index serves the query whatever the table
    /// size). For tests that check the list queries use their indexes.
    pub async fn explain_list_requests(&mut self, f: &RequestFilter) -> StoreResult<Vec<String>> {
        match self.list_sql(f, f.limit.max(1) + 1) {
            Some(sql) => self.explain_built(sql).await,
            None => Ok(Vec::new()),
        }
    }

    /// The approvals of several requests in one query.
    async fn approvals_of(
        &mut self,
        ids: Vec<Uuid>,
    ) -> StoreResult<std::collections::HashMap<Uuid, Vec<ApprovalRow>>> {
        let mut out: std::collections::HashMap<Uuid, Vec<ApprovalRow>> = Default::default();
        if ids.is_empty() {
            return Ok(out);
        }
        let mut sql = Sql::new();
        let tenant = sql.arg(Arg::Uuid(self.tenant_id));
        let list: Vec<String> = ids.into_iter().map(|id| sql.arg(Arg::Uuid(id))).collect();
        sql.text = format!(
            "SELECT request_id, approver_id, round, created_at, stepped_up FROM approvals
             WHERE tenant_id = {tenant} AND decision = 'approve' AND request_id IN ({})
             ORDER BY created_at, id",
            list.join(", ")
        );
        let rows: Vec<ListApprovalRow> = run_built!(fetch_all ListApprovalRow; self, sql)?;
        for a in rows {
            out.entry(a.request_id).or_default().push(ApprovalRow {
                approver_id: a.approver_id,
                round: a.round,
                created_at: a.created_at,
                stepped_up: a.stepped_up,
            });
        }
        Ok(out)
    }
}

impl TenantTx {
    /// For each ended grant that expired (not revoked): seconds from `not_after` to `ended_at`
    /// (`elevate bench expiry`).
    pub async fn grant_lateness(&mut self) -> StoreResult<Vec<i64>> {
        let tenant_id = self.tenant_id;
        let rows: Vec<(OffsetDateTime, OffsetDateTime)> = sql!(fetch_all (OffsetDateTime, OffsetDateTime); self,
            "SELECT g.not_after, g.ended_at FROM grants g
             JOIN requests r ON r.tenant_id = g.tenant_id AND r.id = g.request_id
             WHERE g.tenant_id = $1 AND g.ended_at IS NOT NULL AND r.state = 'expired'",
            tenant_id)?;
        Ok(rows
            .into_iter()
            .map(|(end, at)| (at - end).whole_seconds())
            .collect())
    }
}
