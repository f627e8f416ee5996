//! The store's raw commit: a transaction that inserts one row into a scratch table and commits,
//! through the pool the product writes through (on SQLite its one writer connection), and
//! nothing else. `elevate bench` quotes audited writes against its rate, measured in the same run.

use super::{Pool, Store, StoreResult};

const CREATE: &str = "CREATE TABLE IF NOT EXISTS elevate_bench_raw_commits (n BIGINT NOT NULL)";
const INSERT: &str = "INSERT INTO elevate_bench_raw_commits (n) VALUES ($1)";
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
