//! All SQL lives here. The rest of elevate calls this API and never writes a query.
//!
//! Two backends share one SQL text per query (sqlx accepts `$n` placeholders on both): SQLite,
//! the embedded default, and PostgreSQL with row-level security for production. Tenant data is
//! only reachable through a [`TenantTx`], a transaction pinned to one tenant: on Postgres it sets
//! `app.tenant_id` for the transaction so RLS applies, and on both backends every query also names
//! the tenant itself. A `TenantTx` that changed something refuses to commit unless it also
//! appended the audit event describing the change.

use std::str::FromStr;
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{PgPool, Postgres, Sqlite, SqlitePool, Transaction};
use time::OffsetDateTime;
use uuid::Uuid;

use crate::model::Tenant;

/// Runs one statement on whichever backend the transaction is on. The SQL text and the binds are
/// the same for both; only the driver differs.
macro_rules! sql {
    (@bind $q:expr $(, $arg:expr)*) => { $q $(.bind($arg))* };
    (exec $tx:expr, $sql:expr $(, $arg:expr)* $(,)?) => {
        match &mut $tx.conn {
            $crate::store::Conn::Sqlite(c) => sql!(@bind sqlx::query($sql) $(, $arg)*)
                .execute(&mut **c).await.map(|r| r.rows_affected()),
            $crate::store::Conn::Postgres(c) => sql!(@bind sqlx::query($sql) $(, $arg)*)
                .execute(&mut **c).await.map(|r| r.rows_affected()),
        }
    };
    ($fetch:ident $ty:ty; $tx:expr, $sql:expr $(, $arg:expr)* $(,)?) => {
        match &mut $tx.conn {
            $crate::store::Conn::Sqlite(c) => sql!(@bind sqlx::query_as::<_, $ty>($sql) $(, $arg)*)
                .$fetch(&mut **c).await,
            $crate::store::Conn::Postgres(c) => sql!(@bind sqlx::query_as::<_, $ty>($sql) $(, $arg)*)
                .$fetch(&mut **c).await,
        }
    };
}

mod advisor;
#[macro_use]
mod built;
mod audit;
mod audit_sinks;
pub mod backup;
mod db_logins;
mod device;
mod keys;
mod outbox;
mod passkeys;
mod policy;
mod raw_commits;
mod requests;
mod sessions;
mod ssh_certs;
mod ssh_sessions;
mod targets;
mod tenants;
mod tokens;
mod users;
mod webhooks;

pub use advisor::{DefinerFunction, RoleReport, TableRls, VacuumReport};
pub use audit_sinks::AuditSink;
pub use db_logins::{CleanupCounts, DbLoginRecord};
pub use outbox::OutboxItem;
pub use requests::{Cursor, HistoryFilter, ListedRequest, RequestFilter, StoredRequest};
pub use ssh_certs::{RevokedCert, SshCertRecord};
pub use ssh_sessions::{Host, SessionChunk, SshSession};
pub use tenants::{Lockdown, TenantFlag};
pub use users::{NewUser, UserChange};
pub use webhooks::Webhook;

/// Every tenant table. Isolation tests and the start-up ownership check walk this list.
pub const TENANT_TABLES: [&str; 27] = [
    "tenants",
    "users",
    "sessions",
    "signin_links",
    "api_tokens",
    "policy_versions",
    "profiles",
    "targets",
    "requests",
    "approvals",
    "grants",
    "credentials",
    "ca_keys",
    "audit_events",
    "audit_checkpoints",
    "webhooks",
    "notification_outbox",
    "audit_sinks",
    "passkeys",
    "webauthn_ceremonies",
    "policy_proposals",
    "device_grants",
    "hosts",
    "ssh_sessions",
    "session_chunks",
    "request_state_totals",
    "request_state_deltas",
];

static SQLITE_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("migrations/sqlite");
static POSTGRES_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("migrations/postgres");

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("not found")]
    NotFound,
    #[error("{0} already exists")]
    Conflict(&'static str),
    #[error("refusing to commit a change without its audit record")]
    Unaudited,
    #[error("cannot connect to database {url}: {source}")]
    Connect { url: String, source: sqlx::Error },
    #[error("unsupported database URL {0}: use sqlite:PATH or postgres://...")]
    UnsupportedUrl(String),
    #[error(
        "the database has migrations this binary has not applied ({0}); run `elevate migrate --database <owner URL>`"
    )]
    PendingMigrations(String),
    #[error("refusing to run as database role {role}: {reason}")]
    UnsafeRole { role: String, reason: String },
    #[error("migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    #[error("stored data is inconsistent: {0}")]
    Corrupt(String),
}

impl StoreError {
    /// Maps a unique-constraint violation to a domain conflict; anything else stays a database error.
    fn conflict_or(e: sqlx::Error, what: &'static str) -> Self {
        match &e {
            sqlx::Error::Database(db) if db.is_unique_violation() => StoreError::Conflict(what),
            _ => StoreError::Database(e),
        }
    }
}

pub type StoreResult<T> = Result<T, StoreError>;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

#[derive(Clone, Debug)]
enum Pool {
    Sqlite(SqlitePool),
    Postgres(PgPool),
}

/// Which bearer secret a hash belongs to, for resolving its tenant.
#[derive(Clone, Copy, Debug)]
pub enum SecretKind {
    Api,
    Session,
    SignIn,
}

impl SecretKind {
    fn as_str(self) -> &'static str {
        match self {
            SecretKind::Api => "api",
            SecretKind::Session => "session",
            SecretKind::SignIn => "signin",
        }
    }
}

#[derive(Clone, Debug)]
pub struct Store {
    /// Where writes go. On SQLite a single connection: SQLite has one writer at a time, and
    /// queueing for the connection here costs nothing, where a second `BEGIN IMMEDIATE` spends
    /// its wait in SQLite's busy handler, sleeping up to 100 ms a try (issue 16).
    pool: Pool,
    /// SQLite only: read-only connections (`query_only`) for [`Store::read`] and the lookups
    /// before a tenant is known. In WAL mode they read beside the writer without waiting.
    readers: Option<SqlitePool>,
    /// Tenant transactions begun since connect, all and writing: what an action costs, for the
    /// tests that keep each front-end action to one read and one write.
    begun: std::sync::Arc<Begun>,
}

#[derive(Debug, Default)]
struct Begun {
    all: std::sync::atomic::AtomicU64,
    writes: std::sync::atomic::AtomicU64,
    /// Nanoseconds write transactions were open, from their `BEGIN` to their end: on SQLite
    /// how long its one writer was held.
    writes_open_nanos: std::sync::atomic::AtomicU64,
    /// Postgres: nanoseconds a tenant's audit append lock was held, from taking it to the
    /// commit that releases it. One tenant's write transactions pass it one at a time.
    append_locked_nanos: std::sync::atomic::AtomicU64,
}

/// Adds a write transaction's open time to [`Begun::writes_open_nanos`] when it ends, and the
/// time it held the audit append lock, if it took it, to [`Begun::append_locked_nanos`].
struct OpenClock {
    since: std::time::Instant,
    locked_since: Option<std::time::Instant>,
    begun: std::sync::Arc<Begun>,
}

impl Drop for OpenClock {
    fn drop(&mut self) {
        use std::sync::atomic::Ordering::Relaxed;
        let nanos = |since: std::time::Instant| {
            u64::try_from(since.elapsed().as_nanos()).unwrap_or(u64::MAX)
        };
        self.begun
            .writes_open_nanos
            .fetch_add(nanos(self.since), Relaxed);
        if let Some(locked) = self.locked_since {
            self.begun
                .append_locked_nanos
                .fetch_add(nanos(locked), Relaxed);
        }
    }
}

// Beside the error it converts, so `error` stays below the store.
impl From<StoreError> for crate::error::AppError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound => crate::error::AppError::NotFound("not found".into()),
            StoreError::Conflict(what) => {
                crate::error::AppError::Conflict(format!("{what} already exists"))
            }
            other => crate::error::AppError::Internal(other.into()),
        }
    }
}

/// Hides the password of a database URL for messages.
pub fn redact_url(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme_end), Some(at)) if at > scheme_end => {
            let userinfo = &url[scheme_end + 3..at];
            match userinfo.split_once(':') {
                Some((user, _)) => format!("{}{}:***{}", &url[..scheme_end + 3], user, &url[at..]),
                None => url.to_owned(),
            }
        }
        _ => url.to_owned(),
    }
}

/// `sqlite:PATH`, `sqlite://PATH` or a bare path for SQLite; `postgres://` / `postgresql://`.
pub fn backend_of(url: &str) -> StoreResult<Backend> {
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        Ok(Backend::Postgres)
    } else if url.starts_with("sqlite:") || !url.contains("://") {
        Ok(Backend::Sqlite)
    } else {
        Err(StoreError::UnsupportedUrl(redact_url(url)))
    }
}

/// The file path of a SQLite URL (for placing the key and TLS files beside it).
pub fn sqlite_path(url: &str) -> Option<std::path::PathBuf> {
    if backend_of(url).ok()? != Backend::Sqlite {
        return None;
    }
    let path = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))
        .unwrap_or(url);
    let path = path.split('?').next().unwrap_or(path);
    (!path.is_empty() && path != ":memory:").then(|| path.into())
}

/// Where generated files (development key, TLS certificate) go: beside a SQLite database, else
/// the working directory.
pub fn data_dir_for(url: &str) -> std::path::PathBuf {
    sqlite_path(url)
        .and_then(|p| p.parent().map(std::path::Path::to_path_buf))
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or_else(|| std::path::PathBuf::from("."))
}

/// A pooled Postgres connection idle this long is pinged before use, so one the server dropped
/// meanwhile (a restart, a failover, an idle timeout) is replaced instead of failing the request
/// that takes it. Busier connections skip the ping (a round trip per transaction): their last
/// exchange ended cleanly under a second ago, and one that failed mid-exchange was pinged on its
/// way back to the pool and closed.
const PG_PING_AFTER_IDLE: Duration = Duration::from_secs(1);

impl Store {
    pub async fn connect(url: &str) -> StoreResult<Self> {
        let connect_err = |source| StoreError::Connect {
            url: redact_url(url),
            source,
        };
        match backend_of(url)? {
            Backend::Sqlite => {
                let path =
                    sqlite_path(url).ok_or_else(|| StoreError::UnsupportedUrl(url.into()))?;
                let options = SqliteConnectOptions::new()
                    .filename(path)
                    .create_if_missing(true)
                    .journal_mode(SqliteJournalMode::Wal)
                    .synchronous(SqliteSynchronous::Normal)
                    .foreign_keys(true)
                    .busy_timeout(Duration::from_secs(10));
                // sqlx pings a connection when it goes back to the pool and again when it is
                // taken out: on SQLite each ping is a round trip to the connection's thread,
                // and a connection to a local file cannot go stale between the two. Nor can a
                // cancelled call leave it mid-protocol: its thread runs commands in order, a
                // dropped transaction's rollback first (`test_after_release` is our vendored
                // sqlx-core's, see vendor/README.md).
                let pool = SqlitePoolOptions::new()
                    .max_connections(1)
                    .test_before_acquire(false)
                    .test_after_release(false)
                    .acquire_timeout(Duration::from_secs(10))
                    .connect_with(options.clone())
                    .await
                    .map_err(connect_err)?;
                let readers = SqlitePoolOptions::new()
                    .max_connections(8)
                    .test_before_acquire(false)
                    .test_after_release(false)
                    .acquire_timeout(Duration::from_secs(10))
                    .connect_with(options.pragma("query_only", "ON"))
                    .await
                    .map_err(connect_err)?;
                Ok(Self {
                    pool: Pool::Sqlite(pool),
                    readers: Some(readers),
                    begun: Default::default(),
                })
            }
            Backend::Postgres => {
                let options = PgConnectOptions::from_str(url).map_err(connect_err)?;
                // Nor a ping on release for a connection whose last exchange ended cleanly:
                // one that owes replies, has writes queued or is left in a transaction is
                // still pinged, and the ping is what takes a dead socket out of the pool
                // (`should_flush` in our vendored sqlx-postgres, see vendor/README.md).
                let pool = PgPoolOptions::new()
                    .max_connections(16)
                    .test_before_acquire(false)
                    .test_after_release(false)
                    .before_acquire(|conn, meta| {
                        Box::pin(async move {
                            if meta.idle_for >= PG_PING_AFTER_IDLE {
                                sqlx::Connection::ping(conn).await?;
                            }
                            Ok(true)
                        })
                    })
                    .acquire_timeout(Duration::from_secs(5))
                    .connect_with(options)
                    .await
                    .map_err(connect_err)?;
                Ok(Self {
                    pool: Pool::Postgres(pool),
                    readers: None,
                    begun: Default::default(),
                })
            }
        }
    }

    /// How many tenant transactions this store (and its clones) has begun.
    pub fn transactions_begun(&self) -> u64 {
        self.begun.all.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// How many of [`Self::transactions_begun`] could write ([`Self::tenant`], not [`Self::read`]).
    pub fn write_transactions_begun(&self) -> u64 {
        self.begun.writes.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// How long those that ended were open, summed: on SQLite the time its one writer was held,
    /// which bounds the write transactions a second can hold.
    pub fn write_transactions_open(&self) -> Duration {
        Duration::from_nanos(
            self.begun
                .writes_open_nanos
                .load(std::sync::atomic::Ordering::Relaxed),
        )
    }

    /// Postgres: how long their audit append locks were held, summed (zero on SQLite, where the
    /// writer is the lock).
    pub fn append_locks_held(&self) -> Duration {
        Duration::from_nanos(
            self.begun
                .append_locked_nanos
                .load(std::sync::atomic::Ordering::Relaxed),
        )
    }

    /// Counts a read transaction ([`Self::read`], or authentication's own on Postgres).
    fn count_read(&self) {
        self.begun
            .all
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }

    /// The pool for reads outside a tenant transaction.
    fn read_pool(&self) -> ReadPool<'_> {
        match (&self.readers, &self.pool) {
            (Some(r), _) => ReadPool::Sqlite(r),
            (None, Pool::Sqlite(p)) => ReadPool::Sqlite(p),
            (None, Pool::Postgres(p)) => ReadPool::Postgres(p),
        }
    }

    pub fn backend(&self) -> Backend {
        match self.pool {
            Pool::Sqlite(_) => Backend::Sqlite,
            Pool::Postgres(_) => Backend::Postgres,
        }
    }

    /// Applies pending migrations. On Postgres this needs the owner role (see `deploy/postgres`).
    pub async fn migrate(&self) -> StoreResult<()> {
        match &self.pool {
            Pool::Sqlite(p) => SQLITE_MIGRATIONS.run(p).await?,
            Pool::Postgres(p) => POSTGRES_MIGRATIONS.run(p).await?,
        }
        Ok(())
    }

    /// Fails if migrations known to this binary are not applied (Postgres services cannot apply
    /// them: they run as a role without DDL rights).
    pub async fn check_migrations(&self) -> StoreResult<()> {
        let missing = self.pending_migrations().await?;
        if missing.is_empty() {
            Ok(())
        } else {
            Err(StoreError::PendingMigrations(missing.join(", ")))
        }
    }

    /// Postgres only: the service's role must not be able to step around row-level security —
    /// not a superuser, not BYPASSRLS (nor a member of such a role), not owning (or able to
    /// become the owner of) any tenant table.
    pub async fn check_role_safety(&self) -> StoreResult<()> {
        let Pool::Postgres(p) = &self.pool else {
            return Ok(());
        };
        let (role, privileged, owned): (String, Vec<String>, Vec<String>) = sqlx::query_as(
            "SELECT current_user::text,
                    ARRAY(SELECT r.rolname::text FROM pg_roles r
                          WHERE (r.rolsuper OR r.rolbypassrls)
                            AND pg_has_role(current_user, r.oid, 'MEMBER')),
                    ARRAY(SELECT c.relname::text FROM pg_class c
                          JOIN pg_namespace n ON n.oid = c.relnamespace
                          WHERE n.nspname = 'public' AND c.relkind = 'r'
                            AND c.relname = ANY($1)
                            AND pg_has_role(current_user, c.relowner, 'MEMBER'))",
        )
        .bind(TENANT_TABLES.as_slice())
        .fetch_one(p)
        .await?;
        if !privileged.is_empty() {
            return Err(StoreError::UnsafeRole {
                reason: format!(
                    "it is (or can become) {} with SUPERUSER or BYPASSRLS, which ignores row-level security; \
                     connect as a login role that is only a member of elevate_app",
                    privileged.join(", ")
                ),
                role,
            });
        }
        if !owned.is_empty() {
            return Err(StoreError::UnsafeRole {
                reason: format!(
                    "it owns (or can act as the owner of) tenant tables ({}); the owner can disable \
                     row-level security. Connect as a member of elevate_app instead",
                    owned.join(", ")
                ),
                role,
            });
        }
        Ok(())
    }

    /// A round trip to the store (SQLite: on a reader, so a probe never queues behind the
    /// writer's transaction).
    pub async fn ping(&self) -> StoreResult<()> {
        match self.read_pool() {
            ReadPool::Sqlite(p) => {
                sqlx::query("SELECT 1").execute(p).await?;
            }
            ReadPool::Postgres(p) => {
                sqlx::query("SELECT 1").execute(p).await?;
            }
        }
        Ok(())
    }

    /// What autovacuum would do after a bulk fill, for benchmarks: the planner's statistics of
    /// the request and audit tables (`ANALYZE`; without them Postgres plans the due-grants join
    /// for empty tables), and on Postgres a vacuum of the request-state deltas.
    pub async fn analyze(&self) -> StoreResult<()> {
        match &self.pool {
            Pool::Sqlite(p) => {
                sqlx::query("ANALYZE").execute(p).await?;
            }
            Pool::Postgres(p) => {
                // The request-state deltas are written and folded away all day: without a vacuum
                // their index keeps every deleted row (migration 0018).
                sqlx::query("VACUUM (ANALYZE) request_state_deltas")
                    .execute(p)
                    .await?;
                sqlx::query(
                    "ANALYZE requests, grants, approvals, credentials, notification_outbox, audit_events, users, profiles",
                )
                .execute(p)
                .await?;
            }
        }
        Ok(())
    }

    pub async fn close(&self) {
        if let Some(r) = &self.readers {
            r.close().await;
        }
        match &self.pool {
            Pool::Sqlite(p) => p.close().await,
            Pool::Postgres(p) => p.close().await,
        }
    }

    /// Opens a transaction pinned to one tenant, for an action that may write.
    pub async fn tenant(&self, tenant_id: Uuid) -> StoreResult<TenantTx> {
        use std::sync::atomic::Ordering::Relaxed;
        self.begun.all.fetch_add(1, Relaxed);
        self.begun.writes.fetch_add(1, Relaxed);
        let conn = match &self.pool {
            // IMMEDIATE takes the write lock up front, so a read-then-write (the audit chain
            // head, say) cannot fail half-way with SQLITE_BUSY.
            Pool::Sqlite(p) => Conn::Sqlite(p.begin_with("BEGIN IMMEDIATE").await?),
            Pool::Postgres(p) => Conn::Postgres(p.begin_with(pinned("BEGIN", tenant_id)).await?),
        };
        let mut tx = TenantTx::new(tenant_id, conn, false);
        tx.open_clock = Some(OpenClock {
            since: std::time::Instant::now(),
            locked_since: None,
            begun: self.begun.clone(),
        });
        Ok(tx)
    }

    /// Opens a read-only transaction pinned to one tenant: one consistent view, without the
    /// write lock (SQLite) and refused by the database itself if anything in it tries to write.
    /// What pages, lists and authentication read through.
    pub async fn read(&self, tenant_id: Uuid) -> StoreResult<TenantTx> {
        self.count_read();
        let conn = match self.read_pool() {
            ReadPool::Sqlite(p) => Conn::Sqlite(p.begin().await?),
            ReadPool::Postgres(p) => {
                Conn::Postgres(p.begin_with(pinned("BEGIN READ ONLY", tenant_id)).await?)
            }
        };
        Ok(TenantTx::new(tenant_id, conn, true))
    }

    /// One statement, `sql` with a bearer secret's hash as `$1`, before the tenant is known:
    /// what authentication reads. SQLite: on a reader, outside any transaction (the secret's
    /// row names the tenant; the statement's joins stay within it). Postgres: in a read-only
    /// transaction that one round trip begins, pins to the tenant the definer function finds
    /// for the hash (none: no tenant, so row-level security shows nothing) and then the
    /// statement runs under row-level security; three round trips with the commit. The hash is
    /// hex of our own digest in the pinning statement, so it cannot break out of the literal.
    pub(crate) async fn read_by_secret<T>(
        &self,
        kind: SecretKind,
        sql: &'static str,
        hash: &[u8],
    ) -> StoreResult<Option<T>>
    where
        T: for<'r> sqlx::FromRow<'r, sqlx::sqlite::SqliteRow>
            + for<'r> sqlx::FromRow<'r, sqlx::postgres::PgRow>
            + Send
            + Unpin,
    {
        Ok(match self.read_pool() {
            ReadPool::Sqlite(p) => sqlx::query_as(sql).bind(hash).fetch_optional(p).await?,
            ReadPool::Postgres(p) => {
                self.count_read();
                let mut tx = p
                    .begin_with(sqlx::AssertSqlSafe(format!(
                        "BEGIN READ ONLY; SELECT set_config('app.tenant_id', \
                         COALESCE(elevate_secret_tenant('{}', '\\x{}'::bytea)::text, ''), true)",
                        kind.as_str(),
                        hex::encode(hash)
                    )))
                    .await?;
                let row = sqlx::query_as(sql)
                    .bind(hash)
                    .fetch_optional(&mut *tx)
                    .await?;
                tx.commit().await?;
                row
            }
        })
    }

    /// Finds a tenant by its slug, before any tenant is selected.
    pub async fn tenant_by_slug(&self, slug: &str) -> StoreResult<Option<Tenant>> {
        Ok(match self.read_pool() {
            ReadPool::Sqlite(p) => {
                sqlx::query_as(
                    "SELECT tenant_id, slug, name, created_at FROM tenants WHERE slug = $1",
                )
                .bind(slug)
                .fetch_optional(p)
                .await?
            }
            ReadPool::Postgres(p) => {
                sqlx::query_as(
                    "SELECT tenant_id, slug, name, created_at FROM elevate_tenant_by_slug($1)",
                )
                .bind(slug)
                .fetch_optional(p)
                .await?
            }
        })
    }

    /// Every tenant (for start-up checks and background work that visits each tenant in turn).
    pub async fn tenants(&self) -> StoreResult<Vec<Tenant>> {
        Ok(match self.read_pool() {
            ReadPool::Sqlite(p) => {
                sqlx::query_as(
                    "SELECT tenant_id, slug, name, created_at FROM tenants ORDER BY slug",
                )
                .fetch_all(p)
                .await?
            }
            ReadPool::Postgres(p) => {
                sqlx::query_as(
                    "SELECT tenant_id, slug, name, created_at FROM elevate_tenant_list()",
                )
                .fetch_all(p)
                .await?
            }
        })
    }

    /// The tenant a bearer secret's hash belongs to. The caller then opens that tenant and checks
    /// the secret there, under row-level security.
    pub async fn secret_tenant(&self, kind: SecretKind, hash: &[u8]) -> StoreResult<Option<Uuid>> {
        Ok(match self.read_pool() {
            ReadPool::Sqlite(p) => {
                let q = match kind {
                    SecretKind::Api => "SELECT tenant_id FROM api_tokens WHERE secret_hash = $1",
                    SecretKind::Session => "SELECT tenant_id FROM sessions WHERE secret_hash = $1",
                    SecretKind::SignIn => {
                        "SELECT tenant_id FROM signin_links WHERE secret_hash = $1"
                    }
                };
                sqlx::query_scalar(q).bind(hash).fetch_optional(p).await?
            }
            ReadPool::Postgres(p) => {
                sqlx::query_scalar("SELECT elevate_secret_tenant($1, $2)")
                    .bind(kind.as_str())
                    .bind(hash)
                    .fetch_one(p)
                    .await?
            }
        })
    }
}

/// A pool for reads: the SQLite readers, or the Postgres pool.
enum ReadPool<'a> {
    Sqlite(&'a SqlitePool),
    Postgres(&'a PgPool),
}

/// The statement that begins a Postgres transaction and pins it to a tenant for row-level
/// security, sent as one simple query: one round trip instead of two. The id is a `Uuid`, so
/// its text is hex and dashes and cannot break out of the literal.
fn pinned(begin: &str, tenant_id: Uuid) -> sqlx::AssertSqlSafe<String> {
    sqlx::AssertSqlSafe(format!(
        "{begin}; SELECT set_config('app.tenant_id', '{tenant_id}', true)"
    ))
}

pub(crate) enum Conn {
    Sqlite(Transaction<'static, Sqlite>),
    Postgres(Transaction<'static, Postgres>),
}

/// A transaction on one tenant's data. Drop without `commit` rolls back.
pub struct TenantTx {
    tenant_id: Uuid,
    pub(crate) conn: Conn,
    changed: bool,
    audited: bool,
    /// Opened by [`Store::read`]: the database refuses any write in it.
    read_only: bool,
    /// The audit chain's head as this transaction last appended it. Only set once this
    /// transaction holds the tenant's append lock, so later appends need not read it again.
    audit_head: Option<(i64, Vec<u8>)>,
    /// Audit events appended and not yet written (see [`TenantTx::append_audit`]).
    pending_audit: Vec<(crate::model::audit::NewEvent, OffsetDateTime)>,
    /// Write transactions only: counts the time this one is open (declared after `conn`, so
    /// it stops when the connection has gone back).
    open_clock: Option<OpenClock>,
}

impl TenantTx {
    fn new(tenant_id: Uuid, conn: Conn, read_only: bool) -> Self {
        Self {
            tenant_id,
            conn,
            changed: false,
            audited: false,
            read_only,
            audit_head: None,
            pending_audit: Vec::new(),
            open_clock: None,
        }
    }

    /// Whether this is a [`Store::read`] transaction.
    pub fn is_read_only(&self) -> bool {
        self.read_only
    }

    pub fn tenant_id(&self) -> Uuid {
        self.tenant_id
    }

    fn mark_changed(&mut self) {
        self.changed = true;
    }

    /// Commits, unless something changed without an audit record: then nothing is kept.
    pub async fn commit(mut self) -> StoreResult<()> {
        if self.changed && !self.audited {
            self.rollback().await?;
            return Err(StoreError::Unaudited);
        }
        // Last, so the append lock is held only from here to the commit. If this fails the
        // transaction is dropped, rolling back the change with its record.
        self.flush_audit().await?;
        match self.conn {
            Conn::Sqlite(tx) => tx.commit().await?,
            Conn::Postgres(tx) => tx.commit().await?,
        }
        Ok(())
    }

    pub async fn rollback(self) -> StoreResult<()> {
        match self.conn {
            Conn::Sqlite(tx) => tx.rollback().await?,
            Conn::Postgres(tx) => tx.rollback().await?,
        }
        Ok(())
    }
}

/// Timestamps are written in UTC at whole seconds (see `clock::truncate`).
fn ts(t: OffsetDateTime) -> OffsetDateTime {
    crate::clock::truncate(t)
}

fn ts_opt(t: Option<OffsetDateTime>) -> Option<OffsetDateTime> {
    t.map(ts)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_pick_the_backend_and_hide_passwords() {
        assert_eq!(backend_of("sqlite:elevate.db").unwrap(), Backend::Sqlite);
        assert_eq!(backend_of("./elevate.db").unwrap(), Backend::Sqlite);
        assert_eq!(backend_of("postgresql://u@h/d").unwrap(), Backend::Postgres);
        assert!(
            backend_of("mysql://u:p@h/d")
                .unwrap_err()
                .to_string()
                .contains("u:***@h")
        );
        assert_eq!(
            sqlite_path("sqlite://data/e.db?mode=rwc").unwrap(),
            std::path::PathBuf::from("data/e.db")
        );
        assert_eq!(
            redact_url("postgres://app:hunter2@db:5432/x"),
            "postgres://app:***@db:5432/x"
        );
        assert_eq!(redact_url("postgres://app@db/x"), "postgres://app@db/x");
    }
}
