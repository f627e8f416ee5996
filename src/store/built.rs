//! SQL built at run time (which conditions a list or search has), with its values bound in
//! order: for queries whose filters must be plain conditions so the planner can use an index
//! (a catch-all `($n IS NULL OR col = $n)` cannot).

use time::OffsetDateTime;
use uuid::Uuid;

use super::{Conn, StoreResult, TenantTx};

pub(super) enum Arg {
    Uuid(Uuid),
    Text(String),
    /// A list of strings: JSON text on SQLite (read with `json_each`), `text[]` on Postgres.
    Texts(Vec<String>),
    Time(OffsetDateTime),
    Int(i64),
}

/// SQL text with `$n` placeholders and the values they stand for, in order.
pub(super) struct Sql {
    pub(super) text: String,
    pub(super) args: Vec<Arg>,
}

impl Sql {
    pub(super) fn new() -> Self {
        Sql {
            text: String::new(),
            args: Vec::new(),
        }
    }

    /// Fixed `text` with the values of its placeholders.
    pub(super) fn of(text: &str, args: Vec<Arg>) -> Self {
        Sql {
            text: text.to_owned(),
            args,
        }
    }

    pub(super) fn arg(&mut self, a: Arg) -> String {
        self.args.push(a);
        format!("${}", self.args.len())
    }
}

/// Runs `$sql` (a [`Sql`]) with its arguments bound, on whichever backend `$tx` is.
macro_rules! run_built {
    ($fetch:ident $ty:ty; $tx:expr, $sql:expr) => {{
        let sql: Sql = $sql;
        match &mut $tx.conn {
            Conn::Sqlite(c) => {
                let mut q = sqlx::query_as::<_, $ty>(sqlx::AssertSqlSafe(sql.text));
                for a in sql.args {
                    q = match a {
                        Arg::Uuid(v) => q.bind(v),
                        Arg::Text(v) => q.bind(v),
                        Arg::Texts(v) => q.bind(serde_json::to_string(&v).unwrap_or_default()),
                        Arg::Time(v) => q.bind(v),
                        Arg::Int(v) => q.bind(v),
                    };
                }
                q.$fetch(&mut **c).await
            }
            Conn::Postgres(c) => {
                let mut q = sqlx::query_as::<_, $ty>(sqlx::AssertSqlSafe(sql.text));
                for a in sql.args {
                    q = match a {
                        Arg::Uuid(v) => q.bind(v),
                        Arg::Text(v) => q.bind(v),
                        Arg::Texts(v) => q.bind(v),
                        Arg::Time(v) => q.bind(v),
                        Arg::Int(v) => q.bind(v),
                    };
                }
                q.$fetch(&mut **c).await
            }
        }
    }};
}

impl TenantTx {
    /// The plan of `sql`, one line per step, for tests that check which indexes a query uses:
    /// SQLite `EXPLAIN QUERY PLAN`; Postgres `EXPLAIN` with sequential scans off, as on a large
    /// table (tables this small are read whole whatever the indexes).
    pub(super) async fn explain_built(&mut self, mut sql: Sql) -> StoreResult<Vec<String>> {
        Ok(match &mut self.conn {
            Conn::Sqlite(_) => {
                sql.text = format!("EXPLAIN QUERY PLAN {}", sql.text);
                let rows: Vec<(i64, i64, i64, String)> =
                    run_built!(fetch_all (i64, i64, i64, String); self, sql)?;
                rows.into_iter().map(|r| r.3).collect()
            }
            Conn::Postgres(c) => {
                sqlx::query("SET LOCAL enable_seqscan = off")
                    .execute(&mut **c)
                    .await?;
                sql.text = format!("EXPLAIN {}", sql.text);
                let rows: Vec<(String,)> = run_built!(fetch_all (String,); self, sql)?;
                rows.into_iter().map(|r| r.0).collect()
            }
        })
    }
}
