//! The store: the service role cannot step around row-level security, every tenant table is
//! isolated, `SECURITY DEFINER` functions pin `search_path`, migrations are applied, the clocks
//! agree, and Postgres keeps its statistics.

use time::OffsetDateTime;

use super::{Report, list};
use crate::config::Config;
use crate::store::{Backend, Store};

/// Connects to the configured store without creating or migrating anything.
pub async fn open(report: &mut Report, config: &Config) -> Option<Store> {
    let url = config.database_url.expose();
    if let Some(path) = crate::store::sqlite_path(url)
        && !path.exists()
    {
        report.error(
            "store.connect",
            format!("there is no SQLite database at {}", path.display()),
            "point ELEVATE_DATABASE_URL at the deployment's database (doctor creates nothing)",
        );
        return None;
    }
    super::connect(report, url).await
}

pub async fn checks(report: &mut Report, store: &Store, now: OffsetDateTime) {
    match store.pending_migrations().await {
        Ok(p) if p.is_empty() => report.ok("store.migrations", "every migration is applied"),
        Ok(p) => report.error(
            "store.migrations",
            format!("migrations not applied: {}", list(&p)),
            match store.backend() {
                Backend::Postgres => {
                    "run `elevate migrate --database <owner URL>` as the owner role, then restart"
                }
                Backend::Sqlite => "start `elevate serve` once (SQLite migrates itself at start)",
            },
        ),
        Err(e) => report.error(
            "store.migrations",
            format!("cannot read the applied migrations: {e}"),
            "check the database URL and the role's rights",
        ),
    }
    if store.backend() == Backend::Sqlite {
        report.info(
            "store.sqlite",
            "the store is SQLite: one replica, on this machine's disk".into(),
            "for production with several replicas use PostgreSQL (deploy/postgres/README.md)",
        );
        return;
    }
    role(report, store).await;
    rls(report, store).await;
    definers(report, store).await;
    clock(report, store, now).await;
    vacuum(report, store).await;
}

const APP_ROLE_FIX: &str = "connect the service as a login role that is only a member of \
    elevate_app (deploy/postgres/README.md); run migrations as the owner with `elevate migrate`";

async fn role(report: &mut Report, store: &Store) {
    let r = match store.role_report().await {
        Ok(Some(r)) => r,
        Ok(None) => return,
        Err(e) => {
            report.error(
                "store.role",
                format!("cannot read the service role: {e}"),
                APP_ROLE_FIX,
            );
            return;
        }
    };
    let mut bad = false;
    if r.superuser {
        bad = true;
        report.error(
            "store.role.superuser",
            format!(
                "the service connects as {}, a superuser: row-level security does not apply to it",
                r.role
            ),
            APP_ROLE_FIX,
        );
    }
    if r.bypassrls {
        bad = true;
        report.error(
            "store.role.bypassrls",
            format!(
                "the service role {} has BYPASSRLS: row-level security does not apply to it",
                r.role
            ),
            APP_ROLE_FIX,
        );
    }
    let inherited: Vec<String> = r
        .privileged_roles
        .iter()
        .filter(|p| **p != r.role)
        .cloned()
        .collect();
    if !inherited.is_empty() {
        bad = true;
        report.error(
            "store.role.privileged_member",
            format!(
                "the service role {} is a member of {} (SUPERUSER or BYPASSRLS)",
                r.role,
                list(&inherited)
            ),
            APP_ROLE_FIX,
        );
    }
    if !r.owned_tables.is_empty() {
        bad = true;
        report.error(
            "store.role.owner",
            format!(
                "the service role {} owns (or can become the owner of) {}: an owner can turn row-level security off",
                r.role,
                list(&r.owned_tables)
            ),
            APP_ROLE_FIX,
        );
    }
    if !bad {
        report.ok(
            "store.role",
            format!(
                "the service role {} is no superuser, has no BYPASSRLS and owns no table",
                r.role
            ),
        );
    }
}

async fn rls(report: &mut Report, store: &Store) {
    let tables = match store.rls_report().await {
        Ok(t) => t,
        Err(e) => {
            report.error(
                "store.rls",
                format!("cannot read row-level security: {e}"),
                "check the database URL",
            );
            return;
        }
    };
    let mut problems = Vec::new();
    for t in &tables {
        let mut missing = Vec::new();
        if !t.exists {
            missing.push("the table is missing");
        } else {
            if !t.enabled {
                missing.push("RLS not enabled");
            }
            if !t.forced {
                missing.push("RLS not forced");
            }
            if t.policies == 0 {
                missing.push("no policy");
            }
        }
        if !missing.is_empty() {
            problems.push(format!("{} ({})", t.table, missing.join(", ")));
        }
    }
    if problems.is_empty() {
        report.ok(
            "store.rls",
            format!(
                "all {} tenant tables have row-level security enabled, forced and a policy",
                tables.len()
            ),
        );
    } else {
        report.error(
            "store.rls",
            format!("tenant tables not isolated: {}", problems.join("; ")),
            "apply the migrations as the owner (`elevate migrate`); never alter them by hand \
             (`ALTER TABLE t ENABLE ROW LEVEL SECURITY, FORCE ROW LEVEL SECURITY` and its policy, as in migration 0002)",
        );
    }
}

async fn definers(report: &mut Report, store: &Store) {
    match store.definer_functions().await {
        Ok(f) => {
            let unpinned: Vec<String> = f
                .iter()
                .filter(|f| !f.pins_search_path)
                .map(|f| f.name.clone())
                .collect();
            if unpinned.is_empty() {
                report.ok(
                    "store.security_definer",
                    format!(
                        "{} SECURITY DEFINER functions, each pins search_path",
                        f.len()
                    ),
                );
            } else {
                report.error(
                    "store.security_definer",
                    format!(
                        "SECURITY DEFINER functions without a pinned search_path: {}",
                        list(&unpinned)
                    ),
                    "ALTER FUNCTION ... SET search_path = pg_catalog, pg_temp (and schema-qualify \
                     every name in its body), or drop the function",
                );
            }
        }
        Err(e) => report.error(
            "store.security_definer",
            format!("cannot list SECURITY DEFINER functions: {e}"),
            "check the database URL",
        ),
    }
}

/// Certificates start 60 s in the past, so a skew beyond that breaks them; beyond a few seconds
/// expiry and checkpoints drift.
async fn clock(report: &mut Report, store: &Store, now: OffsetDateTime) {
    let Ok(Some(server)) = store.server_time().await else {
        return;
    };
    let skew = (server - now).whole_seconds();
    let found = format!("the database clock is {skew:+} s from this machine's");
    let fix = "run NTP (chrony, systemd-timesyncd) on both machines";
    match skew.abs() {
        s if s > 60 => report.error("store.clock_skew", found, fix),
        s if s > 5 => report.warn("store.clock_skew", found, fix),
        _ => report.ok("store.clock_skew", found),
    }
}

async fn vacuum(report: &mut Report, store: &Store) {
    let v = match store.vacuum_report().await {
        Ok(Some(v)) => v,
        Ok(None) => return,
        Err(e) => {
            report.warn(
                "store.autovacuum",
                format!("cannot read autovacuum settings: {e}"),
                "check the database URL",
            );
            return;
        }
    };
    let mut fine = true;
    if !v.autovacuum || !v.track_counts {
        fine = false;
        report.warn(
            "store.autovacuum",
            format!(
                "autovacuum is {} and track_counts is {}: dead rows pile up and the planner's \
                 statistics go stale (one host with autovacuum off made each certificate cost \
                 2.5x the Postgres CPU; request_state_deltas is filled and emptied all day and \
                 /metrics reads it)",
                if v.autovacuum { "on" } else { "off" },
                if v.track_counts { "on" } else { "off" }
            ),
            "set autovacuum = on and track_counts = on in postgresql.conf and reload",
        );
    }
    if !v.disabled_tables.is_empty() {
        fine = false;
        report.warn(
            "store.autovacuum",
            format!("autovacuum is disabled on {}", list(&v.disabled_tables)),
            "ALTER TABLE ... RESET (autovacuum_enabled)",
        );
    }
    if !v.unanalysed.is_empty() {
        fine = false;
        let tables: Vec<String> = v
            .unanalysed
            .iter()
            .map(|(t, rows, changed)| format!("{t} ({rows} rows, {changed} changed since)"))
            .collect();
        report.warn(
            "store.analyze",
            format!("tables without recent statistics: {}", list(&tables)),
            "run ANALYZE as the owner, and check that autovacuum is on and keeps up",
        );
    }
    if !v.unvacuumed.is_empty() {
        fine = false;
        let tables: Vec<String> = v
            .unvacuumed
            .iter()
            .map(|(t, dead, live)| format!("{t} ({dead} dead rows, {live} live)"))
            .collect();
        report.warn(
            "store.vacuum",
            format!("tables not vacuumed: {}", list(&tables)),
            "run VACUUM as the owner, and check that autovacuum is on and keeps up \
             (request_state_deltas is filled and emptied all day; /metrics reads it)",
        );
    }
    if fine {
        report.ok(
            "store.autovacuum",
            "autovacuum is on and the tables have statistics",
        );
    }
}
