//! PostgreSQL targets. Every statement that names a role is built by the server's own
//! `format('%I', ...)` / `%L` quoting from bound values, then executed; nothing from a request
//! reaches SQL text (role names are generated, profile roles validated by the policy).

use std::str::FromStr;

use sqlx::postgres::PgConnectOptions;
use sqlx::{ConnectOptions, Connection, PgConnection};
use time::OffsetDateTime;

use super::{Ended, TargetCheck, TargetResult, TargetRights, TargetSpec};

pub async fn connect(spec: &TargetSpec) -> TargetResult<PgConnection> {
    // sqlx only knows the `postgres`/`postgresql` schemes, which `parse_url` allows.
    // No statement logging: a slow statement would be logged with its text (DESIGN §4: a
    // password never reaches a log, even as a verifier).
    let options = PgConnectOptions::from_str(spec.url.as_str())?
        .password(spec.password())
        .application_name("elevate")
        .disable_statement_logging();
    Ok(PgConnection::connect_with(&options).await?)
}

/// Runs a statement that `format(...)` built on the server from the bound arguments.
async fn run_formatted(c: &mut PgConnection, built: String) -> TargetResult<()> {
    sqlx::raw_sql(sqlx::AssertSqlSafe(built))
        .execute(&mut *c)
        .await?;
    Ok(())
}

pub async fn check(c: &mut PgConnection) -> TargetResult<TargetCheck> {
    let (version, can): (String, bool) = sqlx::query_as(
        "SELECT current_setting('server_version'), rolcreaterole OR rolsuper
         FROM pg_roles WHERE rolname = current_user",
    )
    .fetch_one(&mut *c)
    .await?;
    Ok(TargetCheck {
        version: format!("PostgreSQL {version}"),
        can_create_roles: can,
    })
}

/// The admin login's attributes, memberships and ownerships beyond the documented minimum
/// (`CREATEROLE`, the profile roles `WITH ADMIN OPTION`, the owner roles, `CONNECT`).
pub async fn rights(
    c: &mut PgConnection,
    grantable: &[String],
    owners: &[String],
) -> TargetResult<TargetRights> {
    let (superuser, createrole, extra, missing_admin, missing_member): (
        bool,
        bool,
        Vec<String>,
        Vec<String>,
        Vec<String>,
    ) = sqlx::query_as(
        "SELECT r.rolsuper, r.rolcreaterole,
                array_remove(ARRAY[
                    CASE WHEN r.rolcreatedb THEN 'CREATEDB' END,
                    CASE WHEN r.rolreplication THEN 'REPLICATION' END,
                    CASE WHEN r.rolbypassrls THEN 'BYPASSRLS' END], NULL)
                || ARRAY(SELECT 'member of ' || b.rolname FROM pg_auth_members m
                         JOIN pg_roles b ON b.oid = m.roleid
                         WHERE m.member = r.oid AND b.rolname LIKE 'pg\\_%'
                           AND b.rolname <> 'pg_use_reserved_connections' ORDER BY 1)
                || ARRAY(SELECT 'owns database ' || d.datname FROM pg_database d
                         WHERE d.datdba = r.oid ORDER BY 1),
                ARRAY(SELECT x FROM unnest($1::text[]) AS x
                      WHERE NOT EXISTS (SELECT 1 FROM pg_auth_members m
                                        JOIN pg_roles b ON b.oid = m.roleid
                                        WHERE m.member = r.oid AND b.rolname = x AND m.admin_option)
                      ORDER BY 1),
                ARRAY(SELECT x FROM unnest($2::text[]) AS x
                      WHERE NOT COALESCE(pg_has_role(r.oid, (SELECT o.oid FROM pg_roles o WHERE o.rolname = x), 'MEMBER'), FALSE)
                      ORDER BY 1)
         FROM pg_roles r WHERE r.rolname = current_user",
    )
    .bind(grantable)
    .bind(owners)
    .fetch_one(&mut *c)
    .await?;
    let mut missing: Vec<String> = missing_admin
        .into_iter()
        .map(|r| format!("{r} WITH ADMIN OPTION"))
        .collect();
    missing.extend(
        missing_member
            .into_iter()
            .map(|r| format!("membership in {r}")),
    );
    Ok(TargetRights {
        superuser,
        can_create_roles: createrole || superuser,
        extra,
        missing: if superuser { Vec::new() } else { missing },
    })
}

fn lock_key(role: &str) -> String {
    format!("elevate:role:{role}")
}

pub async fn lock(c: &mut PgConnection, role: &str) -> TargetResult<()> {
    sqlx::query("SELECT pg_advisory_lock(hashtextextended($1, 0))")
        .bind(lock_key(role))
        .execute(&mut *c)
        .await?;
    Ok(())
}

pub async fn release(c: &mut PgConnection, role: &str) -> TargetResult<()> {
    sqlx::query("SELECT pg_advisory_unlock(hashtextextended($1, 0))")
        .bind(lock_key(role))
        .execute(&mut *c)
        .await?;
    Ok(())
}

/// Creates `role` with the SCRAM `verifier` of its password (see `LoginSecret`).
pub async fn create_login(
    c: &mut PgConnection,
    role: &str,
    verifier: &str,
    until: OffsetDateTime,
    roles: &[String],
) -> TargetResult<()> {
    let built: String = sqlx::query_scalar(
        "SELECT format('CREATE ROLE %I LOGIN INHERIT PASSWORD %L VALID UNTIL %L IN ROLE %s',
                       $1::text, $2::text, $3::timestamptz,
                       (SELECT string_agg(format('%I', r), ', ') FROM unnest($4::text[]) AS r))",
    )
    .bind(role)
    .bind(verifier)
    .bind(until)
    .bind(roles)
    .fetch_one(&mut *c)
    .await?;
    run_formatted(c, built).await
}

/// The statements that end `role`, each built by the server's `format()` from bound values.
#[derive(sqlx::FromRow)]
struct Ending {
    /// `ALTER ROLE .. NOLOGIN`, then (for an admin that is not yet a member) `GRANT .. TO
    /// CURRENT_USER`: membership lets a non-superuser admin end its sessions and take its objects.
    lock_out: String,
    /// `REASSIGN OWNED`, `DROP OWNED` and `DROP ROLE`, run as one transaction.
    drop_all: String,
}

pub async fn end_login(
    c: &mut PgConnection,
    role: &str,
    owner: Option<&str>,
) -> TargetResult<Ended> {
    // Four round trips: build, lock out, end the sessions, drop. The lock-out commits before
    // the sessions are ended, so none can start after; the drop is one transaction, so a
    // failure leaves the role locked out with everything it owned, and the next attempt redoes it.
    let ending: Option<Ending> = sqlx::query_as(
        "SELECT format('ALTER ROLE %I NOLOGIN', $1::text)
                || CASE WHEN pg_has_role(current_user, r.oid, 'USAGE') THEN ''
                        ELSE format('; GRANT %I TO CURRENT_USER', $1::text) END AS lock_out,
                format('REASSIGN OWNED BY %I TO %s; DROP OWNED BY %I; DROP ROLE IF EXISTS %I',
                       $1::text, COALESCE(quote_ident($2::text), 'CURRENT_USER'),
                       $1::text, $1::text) AS drop_all
         FROM pg_roles r WHERE r.rolname = $1",
    )
    .bind(role)
    .bind(owner)
    .fetch_optional(&mut *c)
    .await?;
    let Some(ending) = ending else {
        return Ok(Ended::default());
    };
    run_formatted(c, ending.lock_out).await?;
    // `usename` is the session (login) role, so sessions that ran `SET ROLE` are included.
    let terminated: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM (
            SELECT pg_terminate_backend(pid, 5000) AS done FROM pg_stat_activity
            WHERE usename = $1 AND pid <> pg_backend_pid()) t WHERE done",
    )
    .bind(role)
    .fetch_one(&mut *c)
    .await?;
    // Several statements in one simple query run as one implicit transaction.
    run_formatted(c, ending.drop_all).await?;
    Ok(Ended {
        existed: true,
        sessions_terminated: u64::try_from(terminated).unwrap_or(0),
    })
}

pub async fn logins_with_prefix(c: &mut PgConnection, prefix: &str) -> TargetResult<Vec<String>> {
    Ok(sqlx::query_scalar(
        "SELECT rolname::text FROM pg_roles WHERE starts_with(rolname::text, $1) ORDER BY rolname",
    )
    .bind(prefix)
    .fetch_all(&mut *c)
    .await?)
}
