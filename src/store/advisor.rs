//! What `elevate doctor` asks the database about itself: the service role's powers, row-level
//! security on every tenant table, `SECURITY DEFINER` functions, pending migrations, the server's
//! clock and autovacuum. Read-only; nothing here changes the database.

use time::OffsetDateTime;

use super::{POSTGRES_MIGRATIONS, Pool, SQLITE_MIGRATIONS, Store, StoreResult, TENANT_TABLES};

/// The connected role and what lets it step around row-level security (Postgres).
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct RoleReport {
    pub role: String,
    pub superuser: bool,
    pub bypassrls: bool,
    /// Roles it is (or can become) that are superusers or BYPASSRLS, itself included.
    pub privileged_roles: Vec<String>,
    /// Tenant tables it owns or can act as the owner of.
    pub owned_tables: Vec<String>,
}

/// Row-level security of one tenant table (Postgres).
#[derive(Debug, Clone)]
pub struct TableRls {
    pub table: String,
    pub exists: bool,
    pub enabled: bool,
    pub forced: bool,
    pub policies: i64,
}

/// A `SECURITY DEFINER` function and whether it pins `search_path`.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct DefinerFunction {
    pub name: String,
    pub pins_search_path: bool,
}

/// Autovacuum and planner statistics (Postgres).
#[derive(Debug, Clone)]
pub struct VacuumReport {
    pub autovacuum: bool,
    pub track_counts: bool,
    /// Tenant tables with `autovacuum_enabled = false`.
    pub disabled_tables: Vec<String>,
    /// Tenant tables with many rows or changes the planner has no recent statistics for:
    /// (table, live rows, rows changed since the last analyse).
    pub unanalysed: Vec<(String, i64, i64)>,
    /// Tenant tables whose dead rows far outnumber their live ones, not vacuumed away:
    /// (table, dead rows, live rows).
    pub unvacuumed: Vec<(String, i64, i64)>,
}

impl Store {
    /// Migrations this binary knows that the database has not applied ("version description").
    pub async fn pending_migrations(&self) -> StoreResult<Vec<String>> {
        let (migrator, applied): (&sqlx::migrate::Migrator, Vec<i64>) = match &self.pool {
            Pool::Sqlite(p) => (
                &SQLITE_MIGRATIONS,
                sqlx::query_scalar("SELECT version FROM _sqlx_migrations WHERE success")
                    .fetch_all(p)
                    .await
                    .unwrap_or_default(),
            ),
            Pool::Postgres(p) => (
                &POSTGRES_MIGRATIONS,
                sqlx::query_scalar("SELECT version FROM _sqlx_migrations WHERE success")
                    .fetch_all(p)
                    .await
                    .unwrap_or_default(),
            ),
        };
        Ok(migrator
            .iter()
            .filter(|m| !applied.contains(&m.version))
            .map(|m| format!("{} {}", m.version, m.description))
            .collect())
    }

    /// Postgres: who the service is connected as and what it can become. `None` on SQLite.
    pub async fn role_report(&self) -> StoreResult<Option<RoleReport>> {
        let Pool::Postgres(p) = &self.pool else {
            return Ok(None);
        };
        Ok(Some(
            sqlx::query_as(
                "SELECT current_user::text AS role, r.rolsuper AS superuser, r.rolbypassrls AS bypassrls,
                        ARRAY(SELECT o.rolname::text FROM pg_roles o
                              WHERE (o.rolsuper OR o.rolbypassrls)
                                AND pg_has_role(current_user, o.oid, 'MEMBER')
                              ORDER BY 1) AS privileged_roles,
                        ARRAY(SELECT c.relname::text FROM pg_class c
                              JOIN pg_namespace n ON n.oid = c.relnamespace
                              WHERE n.nspname = 'public' AND c.relkind = 'r'
                                AND c.relname = ANY($1)
                                AND pg_has_role(current_user, c.relowner, 'MEMBER')
                              ORDER BY 1) AS owned_tables
                 FROM pg_roles r WHERE r.rolname = current_user",
            )
            .bind(TENANT_TABLES.as_slice())
            .fetch_one(p)
            .await?,
        ))
    }

    /// Postgres: row-level security of every tenant table. Empty on SQLite.
    pub async fn rls_report(&self) -> StoreResult<Vec<TableRls>> {
        let Pool::Postgres(p) = &self.pool else {
            return Ok(Vec::new());
        };
        let rows: Vec<(String, bool, bool, i64)> = sqlx::query_as(
            "SELECT c.relname::text, c.relrowsecurity, c.relforcerowsecurity,
                    (SELECT COUNT(*) FROM pg_policy pol WHERE pol.polrelid = c.oid)
             FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
             WHERE n.nspname = 'public' AND c.relkind = 'r' AND c.relname = ANY($1)",
        )
        .bind(TENANT_TABLES.as_slice())
        .fetch_all(p)
        .await?;
        Ok(TENANT_TABLES
            .iter()
            .map(|t| {
                let row = rows.iter().find(|r| r.0 == *t);
                TableRls {
                    table: (*t).to_owned(),
                    exists: row.is_some(),
                    enabled: row.is_some_and(|r| r.1),
                    forced: row.is_some_and(|r| r.2),
                    policies: row.map_or(0, |r| r.3),
                }
            })
            .collect())
    }

    /// Postgres: every `SECURITY DEFINER` function outside the system schemas. Empty on SQLite.
    pub async fn definer_functions(&self) -> StoreResult<Vec<DefinerFunction>> {
        let Pool::Postgres(p) = &self.pool else {
            return Ok(Vec::new());
        };
        Ok(sqlx::query_as(
            "SELECT n.nspname::text || '.' || p.proname::text AS name,
                    COALESCE(EXISTS (SELECT 1 FROM unnest(p.proconfig) AS c
                                     WHERE c LIKE 'search\\_path=%'), FALSE) AS pins_search_path
             FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
             WHERE p.prosecdef AND n.nspname NOT IN ('pg_catalog', 'information_schema')
               AND n.nspname NOT LIKE 'pg\\_%'
             ORDER BY 1",
        )
        .fetch_all(p)
        .await?)
    }

    /// Postgres: the database server's clock, to compare with ours. `None` on SQLite (same host).
    pub async fn server_time(&self) -> StoreResult<Option<OffsetDateTime>> {
        let Pool::Postgres(p) = &self.pool else {
            return Ok(None);
        };
        Ok(Some(
            sqlx::query_scalar("SELECT clock_timestamp()")
                .fetch_one(p)
                .await?,
        ))
    }

    /// Postgres: autovacuum settings and tables without recent statistics. `None` on SQLite.
    pub async fn vacuum_report(&self) -> StoreResult<Option<VacuumReport>> {
        let Pool::Postgres(p) = &self.pool else {
            return Ok(None);
        };
        let (autovacuum, track_counts): (String, String) =
            sqlx::query_as("SELECT current_setting('autovacuum'), current_setting('track_counts')")
                .fetch_one(p)
                .await?;
        let disabled_tables: Vec<String> = sqlx::query_scalar(
            "SELECT c.relname::text FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
             WHERE n.nspname = 'public' AND c.relname = ANY($1)
               AND 'autovacuum_enabled=false' = ANY(COALESCE(c.reloptions, '{}'))
             ORDER BY 1",
        )
        .bind(TENANT_TABLES.as_slice())
        .fetch_all(p)
        .await?;
        // Far beyond autovacuum's own thresholds (50 rows + 10 %): statistics are not kept up.
        let unanalysed: Vec<(String, i64, i64)> = sqlx::query_as(
            "SELECT relname::text, n_live_tup, n_mod_since_analyze FROM pg_stat_user_tables
             WHERE schemaname = 'public' AND relname = ANY($1)
               AND ((last_analyze IS NULL AND last_autoanalyze IS NULL AND n_live_tup >= 1000)
                    OR n_mod_since_analyze > GREATEST(1000, n_live_tup))
             ORDER BY 1",
        )
        .bind(TENANT_TABLES.as_slice())
        .fetch_all(p)
        .await?;
        // Autovacuum starts at 50 dead rows + 20 % of the table; this is far past that.
        let unvacuumed: Vec<(String, i64, i64)> = sqlx::query_as(
            "SELECT relname::text, n_dead_tup, n_live_tup FROM pg_stat_user_tables
             WHERE schemaname = 'public' AND relname = ANY($1)
               AND n_dead_tup > GREATEST(1000, n_live_tup)
             ORDER BY 1",
        )
        .bind(TENANT_TABLES.as_slice())
        .fetch_all(p)
        .await?;
        Ok(Some(VacuumReport {
            autovacuum: autovacuum == "on",
            track_counts: track_counts == "on",
            disabled_tables,
            unanalysed,
            unvacuumed,
        }))
    }
}
