//! MariaDB/MySQL targets. Account and role names are quoted by the server's `QUOTE()` and the
//! statements run over the text protocol (account management is not preparable everywhere).
//! MySQL has no `VALID UNTIL`: the reaper's `DROP USER` is what ends a login.

use std::str::FromStr;

use sha1::{Digest, Sha1};
use sqlx::mysql::MySqlConnectOptions;
use sqlx::{ConnectOptions, Connection, MySqlConnection};

use super::{Ended, TargetCheck, TargetError, TargetResult, TargetRights, TargetSpec};

pub async fn connect(spec: &TargetSpec) -> TargetResult<MySqlConnection> {
    let mut url = spec.url.clone();
    // sqlx knows `mysql://`; `mariadb://` is accepted as a spelling of the same.
    if url.scheme() == "mariadb" {
        let rest = url.as_str().trim_start_matches("mariadb");
        url = url::Url::parse(&format!("mysql{rest}"))
            .map_err(|e| TargetError(format!("invalid target URL: {e}")))?;
    }
    // The database in the URL is the one logins use; the admin login needs no rights on it.
    url.set_path("");
    // No statement logging: sqlx logs every statement at debug and slow ones at warn, text and
    // all, and account statements carry credentials.
    let options = MySqlConnectOptions::from_str(url.as_str())?
        .password(spec.password())
        .disable_statement_logging();
    Ok(MySqlConnection::connect_with(&options).await?)
}

async fn quote(c: &mut MySqlConnection, s: &str) -> TargetResult<String> {
    Ok(sqlx::query_scalar("SELECT QUOTE(?)")
        .bind(s)
        .fetch_one(&mut *c)
        .await?)
}

/// `'name'@'%'`, quoted by the server.
async fn account(c: &mut MySqlConnection, user: &str) -> TargetResult<String> {
    Ok(format!("{}@'%'", quote(c, user).await?))
}

async fn run(c: &mut MySqlConnection, built: String) -> TargetResult<()> {
    sqlx::raw_sql(sqlx::AssertSqlSafe(built))
        .execute(&mut *c)
        .await?;
    Ok(())
}

pub async fn check(c: &mut MySqlConnection) -> TargetResult<TargetCheck> {
    let version: String = sqlx::query_scalar("SELECT VERSION()")
        .fetch_one(&mut *c)
        .await?;
    let grants: Vec<String> = sqlx::query_scalar("SHOW GRANTS").fetch_all(&mut *c).await?;
    let can = grants.iter().any(|g| {
        let g = g.to_ascii_uppercase();
        g.starts_with("GRANT ALL PRIVILEGES ON *.*") || g.contains("CREATE USER")
    });
    Ok(TargetCheck {
        version: format!("MariaDB/MySQL {version}"),
        can_create_roles: can,
    })
}

/// The admin login's grants against the documented minimum (`CREATE USER`, `PROCESS`,
/// `CONNECTION ADMIN` on `*.*`, `SELECT` on `mysql.user`, the profile roles `WITH ADMIN OPTION`).
pub async fn rights(c: &mut MySqlConnection, grantable: &[String]) -> TargetResult<TargetRights> {
    let grants: Vec<String> = sqlx::query_scalar("SHOW GRANTS").fetch_all(&mut *c).await?;
    Ok(rights_of(&grants, grantable))
}

/// Reads `SHOW GRANTS` lines (pure, for tests).
pub fn rights_of(grants: &[String], grantable: &[String]) -> TargetRights {
    const ALLOWED_GLOBAL: [&str; 6] = [
        "USAGE",
        "CREATE USER",
        "PROCESS",
        "CONNECTION ADMIN",
        "CONNECTION_ADMIN",
        "SUPER READ ONLY",
    ];
    let mut rights = TargetRights::default();
    let mut admin_roles: Vec<String> = Vec::new();
    for line in grants {
        let upper = line.to_ascii_uppercase();
        let Some(rest) = upper.strip_prefix("GRANT ") else {
            continue;
        };
        match rest.split_once(" ON ") {
            Some((privs, on)) if on.starts_with("*.* ") => {
                for p in privs.split(", ").map(str::trim) {
                    if p == "ALL PRIVILEGES" || p == "SUPER" {
                        rights.superuser = true;
                    } else if p == "CREATE USER" {
                        rights.can_create_roles = true;
                    } else if !ALLOWED_GLOBAL.contains(&p) {
                        rights.extra.push(format!("{p} ON *.*"));
                    }
                }
                if on.contains("WITH GRANT OPTION") {
                    rights.extra.push("WITH GRANT OPTION ON *.*".into());
                }
            }
            Some((privs, on)) => {
                let target = on.split(" TO ").next().unwrap_or(on).trim();
                let allowed = target == "`MYSQL`.`USER`" && privs.trim() == "SELECT";
                if !allowed {
                    rights
                        .extra
                        .push(format!("{} ON {}", privs.trim(), target.to_lowercase()));
                }
            }
            // A role grant: `GRANT `role`@`%` TO ... [WITH ADMIN OPTION]`.
            None if upper.contains("WITH ADMIN OPTION") => {
                let roles = line[6..].split(" TO ").next().unwrap_or_default();
                admin_roles.extend(roles.split(',').map(|r| {
                    r.trim()
                        .split('@')
                        .next()
                        .unwrap_or_default()
                        .trim_matches(|c| c == '`' || c == '\'')
                        .to_owned()
                }));
            }
            None => {}
        }
    }
    if rights.superuser {
        rights.can_create_roles = true;
    } else {
        rights.missing = grantable
            .iter()
            .filter(|r| !admin_roles.contains(r))
            .map(|r| format!("{r} WITH ADMIN OPTION"))
            .collect();
    }
    rights
}

fn lock_key(role: &str) -> String {
    format!("elevate:role:{role}")
}

pub async fn lock(c: &mut MySqlConnection, role: &str) -> TargetResult<()> {
    let got: Option<i64> = sqlx::query_scalar("SELECT GET_LOCK(?, 15)")
        .bind(lock_key(role))
        .fetch_one(&mut *c)
        .await?;
    match got {
        Some(1) => Ok(()),
        _ => Err(TargetError(format!("could not lock {role} on the target"))),
    }
}

pub async fn release(c: &mut MySqlConnection, role: &str) -> TargetResult<()> {
    sqlx::query("SELECT RELEASE_LOCK(?)")
        .bind(lock_key(role))
        .execute(&mut *c)
        .await?;
    Ok(())
}

pub async fn create_login(
    c: &mut MySqlConnection,
    role: &str,
    password: &str,
    roles: &[String],
) -> TargetResult<()> {
    let user = account(c, role).await?;
    create_user(c, &user, password).await?;
    for granted in roles {
        let granted = quote(c, granted).await?;
        run(c, format!("GRANT {granted} TO {user}")).await?;
    }
    // A login uses its first role without `SET ROLE` (MariaDB has one default role). MariaDB
    // lets only a login with UPDATE on the `mysql` schema (root, in effect) set another user's
    // default role; without that the login runs `SET ROLE` itself (`elevate db --exec` does).
    if let Some(first) = roles.first() {
        let first = quote(c, first).await?;
        match run(c, format!("SET DEFAULT ROLE {first} FOR {user}")).await {
            Ok(()) => {}
            Err(e) if e.0.contains("Access denied") => {
                tracing::debug!(role, "no default role: the admin login may not set one");
            }
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// `*` and the upper-case hex of SHA1(SHA1(password)): what `mysql_native_password` stores, so
/// the password itself never travels in a statement the server could log.
pub(crate) fn native_password_hash(password: &str) -> String {
    let twice = Sha1::digest(Sha1::digest(password.as_bytes()));
    format!("*{}", hex::encode_upper(twice))
}

/// Creates the account with a password hash where the server takes one: MariaDB (`IDENTIFIED BY
/// PASSWORD`), MySQL with `mysql_native_password` loaded (`IDENTIFIED WITH ... AS`). A MySQL
/// without that plugin (8.4 and later by default), or a MariaDB whose password-validation plugin
/// runs with `strict_password_validation` (it must see the password), gets the password itself;
/// statement logging is off on this connection either way.
async fn create_user(c: &mut MySqlConnection, user: &str, password: &str) -> TargetResult<()> {
    let version: String = sqlx::query_scalar("SELECT VERSION()")
        .fetch_one(&mut *c)
        .await?;
    let hash = quote(c, &native_password_hash(password)).await?;
    let hashed = if version.contains("MariaDB") {
        format!("CREATE USER {user} IDENTIFIED BY PASSWORD {hash}")
    } else {
        format!("CREATE USER {user} IDENTIFIED WITH mysql_native_password AS {hash}")
    };
    match run(c, hashed).await {
        // ER_PLUGIN_IS_NOT_LOADED and friends; ER_OPTION_PREVENTS_STATEMENT.
        Err(e) if e.0.contains("plugin") || e.0.contains("strict-password-validation") => {
            let secret = quote(c, password).await?;
            run(c, format!("CREATE USER {user} IDENTIFIED BY {secret}")).await
        }
        done => done,
    }
}

async fn kill_sessions(c: &mut MySqlConnection, role: &str) -> TargetResult<u64> {
    let ids: Vec<i64> = sqlx::query_scalar(
        "SELECT CAST(ID AS SIGNED) FROM information_schema.PROCESSLIST WHERE USER = ? AND ID <> CONNECTION_ID()",
    )
    .bind(role)
    .fetch_all(&mut *c)
    .await?;
    let mut killed = 0;
    for id in ids {
        // The id is a number from the server; a session that ended meanwhile is fine.
        match run(c, format!("KILL CONNECTION {id}")).await {
            Ok(()) => killed += 1,
            Err(e) if e.0.contains("Unknown thread id") => {}
            Err(e) => return Err(e),
        }
    }
    Ok(killed)
}

pub async fn end_login(c: &mut MySqlConnection, role: &str) -> TargetResult<Ended> {
    let exists: i64 =
        sqlx::query_scalar("SELECT COUNT(*) FROM mysql.user WHERE User = ? AND Host = '%'")
            .bind(role)
            .fetch_one(&mut *c)
            .await?;
    if exists == 0 {
        // A session may outlive its account; end those too.
        let killed = kill_sessions(c, role).await?;
        return Ok(Ended {
            existed: false,
            sessions_terminated: killed,
        });
    }
    let user = account(c, role).await?;
    run(c, format!("ALTER USER {user} ACCOUNT LOCK")).await?;
    let mut killed = kill_sessions(c, role).await?;
    run(c, format!("DROP USER IF EXISTS {user}")).await?;
    killed += kill_sessions(c, role).await?;
    Ok(Ended {
        existed: true,
        sessions_terminated: killed,
    })
}

pub async fn logins_with_prefix(
    c: &mut MySqlConnection,
    prefix: &str,
) -> TargetResult<Vec<String>> {
    Ok(sqlx::query_scalar(
        "SELECT CAST(User AS CHAR) FROM mysql.user WHERE Host = '%' AND LEFT(User, CHAR_LENGTH(?)) = ? ORDER BY User",
    )
    .bind(prefix)
    .bind(prefix)
    .fetch_all(&mut *c)
    .await?)
}

#[cfg(test)]
mod tests {
    fn lines(l: &[&str]) -> Vec<String> {
        l.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn rights_are_read_from_show_grants_as_mariadb_prints_them() {
        // What MariaDB 11 prints for the documented admin login.
        let documented = lines(&[
            "GRANT `doc_role` TO `doc_probe`@`%` WITH ADMIN OPTION",
            "GRANT PROCESS, CREATE USER, CONNECTION ADMIN ON *.* TO `doc_probe`@`%` IDENTIFIED BY PASSWORD '*B6'",
            "GRANT SELECT ON `mysql`.`user` TO `doc_probe`@`%`",
        ]);
        let r = super::rights_of(&documented, &["doc_role".into()]);
        assert_eq!(
            r,
            super::TargetRights {
                superuser: false,
                can_create_roles: true,
                extra: vec![],
                missing: vec![],
            }
        );
        let r = super::rights_of(&documented, &["doc_role".into(), "other".into()]);
        assert_eq!(r.missing, vec!["other WITH ADMIN OPTION".to_owned()]);
        let root = lines(&[
            "GRANT ALL PRIVILEGES ON *.* TO `root`@`localhost` IDENTIFIED VIA unix_socket WITH GRANT OPTION",
        ]);
        let r = super::rights_of(&root, &["doc_role".into()]);
        assert!(
            r.superuser && r.can_create_roles && r.missing.is_empty(),
            "{r:?}"
        );
        let wide = lines(&[
            "GRANT CREATE USER, RELOAD ON *.* TO `a`@`%`",
            "GRANT ALL PRIVILEGES ON `orders`.* TO `a`@`%`",
        ]);
        let r = super::rights_of(&wide, &[]);
        assert_eq!(
            r.extra,
            vec![
                "RELOAD ON *.*".to_owned(),
                "ALL PRIVILEGES ON `orders`.*".to_owned()
            ]
        );
    }

    #[test]
    fn native_password_hash_matches_the_server() {
        // MariaDB: SELECT PASSWORD('password') and PASSWORD('').
        assert_eq!(
            super::native_password_hash("password"),
            "*2470C0C06DEE42FD1618BB99005ADCA2EC9D1E19"
        );
        assert_eq!(super::native_password_hash("").len(), 41);
    }
}
