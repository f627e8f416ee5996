//! What backup, restore and the restore drill need from the database itself: a consistent copy
//! of a SQLite store while it serves (`VACUUM INTO`), a Postgres snapshot that `pg_dump` and the
//! manifest share, whether a store is empty, and scratch databases for the drill.

use std::path::Path;
use std::str::FromStr;

use sqlx::postgres::PgConnectOptions;
use sqlx::{Connection, PgConnection, Postgres, Transaction};
use uuid::Uuid;

use super::{Pool, Store, StoreError, StoreResult, redact_url};

/// Where a tenant's audit chain stood when a backup was taken.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct TenantHead {
    pub tenant_id: Uuid,
    pub slug: String,
    /// 0 and the genesis hash for an empty chain.
    pub head_seq: i64,
    pub head_hash: Vec<u8>,
    /// The newest stored checkpoint (0: none).
    pub checkpoint_seq: i64,
}

/// What a restore target holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Occupancy {
    /// No elevate schema at all.
    NoSchema,
    /// Migrated, but no tenant.
    Empty,
    /// This many tenants.
    Tenants(i64),
}

/// A Postgres transaction holding an exported snapshot: `pg_dump --snapshot` sees exactly what
/// this transaction sees, so the manifest's audit heads describe the dump. Keep it open until
/// `pg_dump` has started reading.
pub struct PgSnapshot {
    tx: Transaction<'static, Postgres>,
    pub id: String,
}

impl Store {
    /// SQLite: writes a consistent copy of the database to `path` (which must not exist) while
    /// other connections keep writing (`VACUUM INTO` reads one snapshot).
    pub async fn sqlite_copy_into(&self, path: &Path) -> StoreResult<()> {
        let Pool::Sqlite(p) = &self.pool else {
            return Err(StoreError::Corrupt("not a SQLite store".into()));
        };
        let target = path
            .to_str()
            .ok_or_else(|| StoreError::Corrupt(format!("path {} is not UTF-8", path.display())))?;
        sqlx::query("VACUUM INTO $1")
            .bind(target)
            .execute(p)
            .await?;
        Ok(())
    }

    /// Whether this store may receive a restore (see `ops::backup::restore`).
    pub async fn occupancy(&self) -> StoreResult<Occupancy> {
        let count = match &self.pool {
            Pool::Sqlite(p) => {
                let has: i64 = sqlx::query_scalar(
                    "SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name = 'tenants'",
                )
                .fetch_one(p)
                .await?;
                if has == 0 {
                    return Ok(Occupancy::NoSchema);
                }
                sqlx::query_scalar::<_, i64>("SELECT COUNT(*) FROM tenants")
                    .fetch_one(p)
                    .await?
            }
            Pool::Postgres(p) => {
                let has: bool =
                    sqlx::query_scalar("SELECT to_regclass('public.tenants') IS NOT NULL")
                        .fetch_one(p)
                        .await?;
                if !has {
                    return Ok(Occupancy::NoSchema);
                }
                sqlx::query_scalar::<_, i64>("SELECT COUNT(*) FROM elevate_tenant_list()")
                    .fetch_one(p)
                    .await?
            }
        };
        Ok(if count == 0 {
            Occupancy::Empty
        } else {
            Occupancy::Tenants(count)
        })
    }

    /// Every tenant's audit head, as this store sees it now.
    pub async fn tenant_heads(&self) -> StoreResult<Vec<TenantHead>> {
        let mut out = Vec::new();
        for t in self.tenants().await? {
            let mut tx = self.tenant(t.tenant_id).await?;
            let head = tx.audit_head().await?;
            let checkpoint = tx.latest_checkpoint().await?.map_or(0, |c| c.seq);
            tx.commit().await?;
            let (head_seq, head_hash) =
                head.unwrap_or((0, crate::model::audit::GENESIS_HASH.to_vec()));
            out.push(TenantHead {
                tenant_id: t.tenant_id,
                slug: t.slug,
                head_seq,
                head_hash,
                checkpoint_seq: checkpoint,
            });
        }
        Ok(out)
    }

    /// Postgres: opens a repeatable-read transaction and exports its snapshot for `pg_dump`.
    pub async fn pg_snapshot(&self) -> StoreResult<PgSnapshot> {
        let Pool::Postgres(p) = &self.pool else {
            return Err(StoreError::Corrupt("not a Postgres store".into()));
        };
        let mut tx = p
            .begin_with("BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            .await?;
        let id: String = sqlx::query_scalar("SELECT pg_export_snapshot()")
            .fetch_one(&mut *tx)
            .await?;
        Ok(PgSnapshot { tx, id })
    }
}

impl PgSnapshot {
    /// Every tenant's audit head in the snapshot (any role that may read the tenants: the
    /// tenant is set per query as the service does, so row-level security agrees).
    pub async fn heads(&mut self) -> StoreResult<Vec<TenantHead>> {
        let tenants: Vec<(Uuid, String)> =
            sqlx::query_as("SELECT tenant_id, slug FROM elevate_tenant_list() ORDER BY slug")
                .fetch_all(&mut *self.tx)
                .await?;
        let mut out = Vec::new();
        for (tenant_id, slug) in tenants {
            sqlx::query("SELECT set_config('app.tenant_id', $1, true)")
                .bind(tenant_id.to_string())
                .execute(&mut *self.tx)
                .await?;
            let head: Option<(i64, Vec<u8>)> = sqlx::query_as(
                "SELECT seq, hash FROM audit_events WHERE tenant_id = $1 ORDER BY seq DESC LIMIT 1",
            )
            .bind(tenant_id)
            .fetch_optional(&mut *self.tx)
            .await?;
            let checkpoint: Option<i64> =
                sqlx::query_scalar("SELECT MAX(seq) FROM audit_checkpoints WHERE tenant_id = $1")
                    .bind(tenant_id)
                    .fetch_one(&mut *self.tx)
                    .await?;
            let (head_seq, head_hash) =
                head.unwrap_or((0, crate::model::audit::GENESIS_HASH.to_vec()));
            out.push(TenantHead {
                tenant_id,
                slug,
                head_seq,
                head_hash,
                checkpoint_seq: checkpoint.unwrap_or(0),
            });
        }
        Ok(out)
    }

    /// Ends the snapshot (after `pg_dump` has finished).
    pub async fn finish(self) -> StoreResult<()> {
        self.tx.rollback().await?;
        Ok(())
    }
}

/// A name for a scratch database: only `[a-z0-9_]`, so it needs no quoting.
fn checked_name(name: &str) -> StoreResult<&str> {
    if name.is_empty()
        || name.len() > 63
        || !name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
    {
        return Err(StoreError::Corrupt(format!(
            "invalid scratch database name {name:?}"
        )));
    }
    Ok(name)
}

async fn server_conn(server_url: &str) -> StoreResult<PgConnection> {
    let options = PgConnectOptions::from_str(server_url).map_err(|source| StoreError::Connect {
        url: redact_url(server_url),
        source,
    })?;
    PgConnection::connect_with(&options)
        .await
        .map_err(|source| StoreError::Connect {
            url: redact_url(server_url),
            source,
        })
}

/// Postgres: creates an empty database `name` on the server of `server_url` (needs CREATEDB).
pub async fn create_database(server_url: &str, name: &str) -> StoreResult<()> {
    let name = checked_name(name)?;
    let mut c = server_conn(server_url).await?;
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(&mut c)
        .await?;
    c.close().await?;
    Ok(())
}

/// Postgres: drops the scratch database `name` (ending any session still in it).
pub async fn drop_database(server_url: &str, name: &str) -> StoreResult<()> {
    let name = checked_name(name)?;
    let mut c = server_conn(server_url).await?;
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
    )))
    .execute(&mut c)
    .await?;
    c.close().await?;
    Ok(())
}
