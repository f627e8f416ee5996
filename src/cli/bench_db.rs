//! `elevate bench db`: in one run against one Postgres target, raw `CREATE ROLE` + `DROP ROLE`
//! pairs per second (in one transaction, and as two commits) versus elevate issuing logins
//! (record + audit + role, through the issuance core on a fresh SQLite store) and cleaning them
//! up (lock, NOLOGIN, terminate, REASSIGN/DROP OWNED and DROP ROLE in one transaction, record +
//! audit). Both sides pay PostgreSQL's PBKDF2 for each password (see BENCHMARKS.md).

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Args;
use sqlx::Connection;

use crate::admin;
use crate::audit::Ctx;
use crate::audit::{Actor, Origin};
use crate::clock::{Clock, SystemClock};
use crate::crypto::MasterKey;
use crate::db_targets::targets::{NewTarget, set_target};
use crate::model::{Role, TargetKind};
use crate::store::Store;
use crate::workflow::{Event, NewRequest};

#[derive(Debug, Args)]
pub struct DbBench {
    /// An admin URL of a Postgres target (no password; set ELEVATE_BENCH_TARGET_PASSWORD if it
    /// needs one). Roles named elv_bench* and elevate_bench_role are created and dropped there.
    #[arg(long, default_value = "postgres://postgres@127.0.0.1:5432/test")]
    target_url: String,
    /// Seconds per measurement.
    #[arg(long, default_value_t = 3)]
    seconds: u64,
}

const ROLE: &str = "elevate_bench_role";

const POLICY: &str = r#"
[[profile]]
name = "bench-db"
max_duration = "24h"
default_duration = "24h"
requesters = ["engineering"]
approvers = ["sre"]
require_justification = false
auto_approve_groups = ["engineering"]
[profile.database]
target = "bench"
roles = ["elevate_bench_role"]
"#;

async fn admin_conn(url: &str, password: &str) -> anyhow::Result<sqlx::PgConnection> {
    use sqlx::ConnectOptions;
    let mut options: sqlx::postgres::PgConnectOptions = url.parse()?;
    // Statements carry role passwords: never logged.
    options = options.disable_statement_logging();
    if !password.is_empty() {
        options = options.password(password);
    }
    sqlx::PgConnection::connect_with(&options)
        .await
        .with_context(|| format!("connecting to {}", crate::store::redact_url(url)))
}

pub async fn run(args: DbBench) -> anyhow::Result<()> {
    let window = Duration::from_secs(args.seconds.max(1));
    let password = std::env::var("ELEVATE_BENCH_TARGET_PASSWORD").unwrap_or_default();
    let mut admin = admin_conn(&args.target_url, &password).await?;
    sqlx::raw_sql(
        "DO $$ BEGIN CREATE ROLE elevate_bench_role NOLOGIN;
         EXCEPTION WHEN duplicate_object THEN NULL; END $$",
    )
    .execute(&mut admin)
    .await?;

    let dir = std::env::temp_dir().join(format!("elevate-bench-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir)?;
    let measured = measure(&mut admin, &dir, &args.target_url, &password, window).await;
    let _ = std::fs::remove_dir_all(&dir);
    let Rates {
        raw,
        raw_two,
        issued,
        cleaned,
    } = measured?;
    let pair = 1.0 / (1.0 / issued + 1.0 / cleaned);
    println!("raw CREATE ROLE + DROP ROLE, one commit: {raw:>8.0} pairs/s");
    println!("raw CREATE ROLE, then DROP ROLE:        {raw_two:>8.0} pairs/s (two commits)");
    println!("elevate issue (record, audit, role):    {issued:>8.0} logins/s");
    println!("elevate cleanup (end, drop, audit):     {cleaned:>8.0} logins/s");
    println!("elevate issue + cleanup:                {pair:>8.0} logins/s");
    println!();
    println!(
        "elevate issue+cleanup / raw one commit: {:>8.0}%",
        100.0 * pair / raw
    );
    println!(
        "elevate issue+cleanup / raw two commits:{:>8.0}%",
        100.0 * pair / raw_two
    );
    sqlx::raw_sql("DROP ROLE IF EXISTS elevate_bench_role")
        .execute(&mut admin)
        .await?;
    admin.close().await?;
    Ok(())
}

/// Pairs of `CREATE ROLE` and `DROP ROLE` per second: in one round trip and one transaction
/// (`together`), or as two statements each committed on its own, as any login that is used
/// between its creation and its end must be: the least a broker's issue and cleanup can cost.
async fn raw_round_trips(
    admin: &mut sqlx::PgConnection,
    window: Duration,
    together: bool,
) -> anyhow::Result<Tally> {
    let start = Instant::now();
    let mut n: u64 = 0;
    while start.elapsed() < window {
        let name = format!("elv_bench_raw_{n}");
        let create = format!(
            "CREATE ROLE {name} LOGIN PASSWORD 'bench-password-0123456789' \
             VALID UNTIL 'infinity' IN ROLE {ROLE}"
        );
        let drop = format!("DROP ROLE {name}");
        if together {
            sqlx::raw_sql(sqlx::AssertSqlSafe(format!("{create}; {drop}")))
                .execute(&mut *admin)
                .await?;
        } else {
            for statement in [create, drop] {
                sqlx::raw_sql(sqlx::AssertSqlSafe(statement))
                    .execute(&mut *admin)
                    .await?;
            }
        }
        n += 1;
    }
    Ok(Tally(n, start.elapsed()))
}

/// Operations done and the time they took, summed over the slices of a run.
#[derive(Default, Clone, Copy)]
struct Tally(u64, Duration);

impl std::ops::AddAssign for Tally {
    fn add_assign(&mut self, other: Tally) {
        self.0 += other.0;
        self.1 += other.1;
    }
}

impl Tally {
    fn rate(self) -> f64 {
        self.0 as f64 / self.1.as_secs_f64().max(1e-9)
    }
}

/// Per second, each over the same stretch of the run.
struct Rates {
    raw: f64,
    raw_two: f64,
    issued: f64,
    cleaned: f64,
}

/// How long each measurement runs before the next one takes its turn. PostgreSQL's cost per
/// password (PBKDF2) drifts by a quarter on this kind of VM from one minute to the next, so the
/// four measurements take turns in short slices instead of running one after another.
const SLICE: Duration = Duration::from_millis(500);

/// The raw pairs and elevate's issue and cleanup, taking turns for `window` each.
async fn measure(
    admin: &mut sqlx::PgConnection,
    dir: &std::path::Path,
    target_url: &str,
    password: &str,
    window: Duration,
) -> anyhow::Result<Rates> {
    let store = Store::connect(&format!("sqlite:{}", dir.join("bench.db").display())).await?;
    store.migrate().await?;
    let master = Arc::new(MasterKey::generate()?);
    let ctx = || Ctx {
        actor: Actor::System,
        origin: Origin::default(),
        now: SystemClock.now(),
    };
    let tenant = admin::create_tenant(&store, &master, &ctx(), "bench", "bench").await?;
    crate::broker::policy::apply(&store, &ctx(), &tenant, POLICY).await?;
    set_target(
        &store,
        &master,
        &ctx(),
        &tenant,
        NewTarget {
            name: "bench",
            kind: TargetKind::Postgres,
            url: target_url,
            // Trust auth takes any password; the target refuses an empty one in `set_target`.
            password: if password.is_empty() {
                "unused"
            } else {
                password
            },
        },
    )
    .await?;
    let user = admin::create_user(
        &store,
        &ctx(),
        &tenant,
        "bench@example.com",
        None,
        &[Role::Requester, Role::Admin],
        &["engineering".into()],
    )
    .await?;
    let links = "http://localhost";
    let caller = crate::broker::Caller::new(ctx(), tenant.clone(), user.clone());
    let (mut raw, mut raw_two, mut issued, mut cleaned) = Default::default();
    let mut measured = Duration::ZERO;
    while measured < window {
        raw += raw_round_trips(admin, SLICE, true).await?;
        raw_two += raw_round_trips(admin, SLICE, false).await?;
        let request = crate::broker::service::file(
            &store,
            links,
            &caller,
            "bench-db",
            NewRequest {
                duration: None,
                justification: String::new(),
                ticket: None,
                starts_at: None,
                break_glass: false,
            },
            None,
        )
        .await?;
        let id = request.0.request.id;
        let start = Instant::now();
        let mut n: u64 = 0;
        while start.elapsed() < SLICE {
            crate::broker::db::issue(&store, &master, &ctx(), &tenant, &user, id).await?;
            n += 1;
        }
        issued += Tally(n, start.elapsed());
        crate::broker::service::act(
            &store,
            links,
            &caller,
            id,
            Event::Revoke {
                by: crate::broker::service::person(&user),
                reason: "benchmark slice done".into(),
            },
            None,
        )
        .await?;
        let start = Instant::now();
        let mut done: u64 = 0;
        while done < n {
            let pass =
                crate::db_targets::cleanup::run_due(&store, &master, &tenant, SystemClock.now())
                    .await?;
            if pass.failed > 0 {
                bail!("{} cleanups failed during the benchmark", pass.failed);
            }
            if pass.cleaned == 0 {
                bail!("cleanup stalled after {done} of {n} logins");
            }
            done += pass.cleaned as u64;
        }
        cleaned += Tally(done, start.elapsed());
        measured += SLICE;
    }
    store.close().await;
    Ok(Rates {
        raw: Tally::rate(raw),
        raw_two: Tally::rate(raw_two),
        issued: Tally::rate(issued),
        cleaned: Tally::rate(cleaned),
    })
}
