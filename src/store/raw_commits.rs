//! The store's raw commit: a transaction that inserts one row into a scratch table and commits,
//! through the pool the product writes through (on SQLite its one writer connection), and
//! nothing else. `elevate bench` quotes audited writes against its rate, measured in the same run.
//! Beside it the raw read: one statement reading one row of that table through the pool the
//! product reads through (on Postgres one round trip, as authentication is).

use super::{Pool, ReadPool, Store, StoreResult};

const CREATE: &str = "CREATE TABLE IF NOT EXISTS elevate_bench_raw_commits (n BIGINT NOT NULL)";
const INSERT: &str = "INSERT INTO elevate_bench_raw_commits (n) VALUES ($1)";
const READ: &str = "SELECT n FROM elevate_bench_raw_commits WHERE n = $1 LIMIT 1";
const DROP: &str = "DROP TABLE IF EXISTS elevate_bench_raw_commits";

impl Store {
    /// Creates (`true`) or drops the scratch table of [`Self::raw_commit`]. For benchmarks only.
    pub async fn raw_commit_table(&self, create: bool) -> StoreResult<()> {
        let sql = if create { CREATE } else { DROP };
        match &self.pool {
            Pool::Sqlite(p) => {
                sqlx::query(sql).execute(p).await?;
            }
            Pool::Postgres(p) => {
                sqlx::query(sql).execute(p).await?;
            }
        }
        Ok(())
    }

    /// One raw read (see the module's comment): the row [`Self::raw_commit`] wrote, so it needs
    /// one raw commit first.
    pub async fn raw_read(&self) -> StoreResult<()> {
        let found: Option<(i64,)> = match self.read_pool() {
            ReadPool::Sqlite(p) => sqlx::query_as(READ).bind(1_i64).fetch_optional(p).await?,
            ReadPool::Postgres(p) => sqlx::query_as(READ).bind(1_i64).fetch_optional(p).await?,
        };
        found
            .map(|_| ())
            .ok_or_else(|| super::StoreError::Corrupt("the raw-read row is missing".into()))
    }

    /// One raw commit (see the module's comment).
    pub async fn raw_commit(&self) -> StoreResult<()> {
        match &self.pool {
            Pool::Sqlite(p) => {
                let mut tx = p.begin_with("BEGIN IMMEDIATE").await?;
                sqlx::query(INSERT).bind(1_i64).execute(&mut *tx).await?;
                tx.commit().await?;
            }
            Pool::Postgres(p) => {
                let mut tx = p.begin().await?;
                sqlx::query(INSERT).bind(1_i64).execute(&mut *tx).await?;
                tx.commit().await?;
            }
        }
        Ok(())
    }
}
