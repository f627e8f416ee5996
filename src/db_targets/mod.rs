//! Database targets and the short-lived logins elevate makes on them (DESIGN §4). One admin login
//! per target (sealed at rest) creates a role per grant and, when the grant ends, locks it,
//! ends its sessions, hands what it owns to the profile's owner role and drops it. Every step is
//! idempotent: a cleanup interrupted anywhere finishes on the next attempt.
//!
//! Creation and cleanup of one role are serialised on the target itself (a Postgres advisory
//! lock, a MariaDB named lock), and issuance re-checks the stored record under that lock, so a
//! grant ending while its login is being made can never leave a role behind.

pub mod cleanup;
pub mod issue;
mod mysql;
pub mod names;
mod postgres;
pub mod targets;

use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use time::OffsetDateTime;
use url::Url;

use crate::crypto::MasterKey;
use crate::model::{Target, TargetKind};

/// How long elevate waits for a target to accept a connection, and for any one statement.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
pub const STATEMENT_TIMEOUT: Duration = Duration::from_secs(20);

/// What went wrong talking to a target. The message is the driver's (never a password).
#[derive(Debug, Clone, thiserror::Error)]
#[error("{0}")]
pub struct TargetError(pub String);

impl From<sqlx::Error> for TargetError {
    fn from(e: sqlx::Error) -> Self {
        match e {
            sqlx::Error::Database(db) => TargetError(db.message().to_owned()),
            other => TargetError(other.to_string()),
        }
    }
}

pub type TargetResult<T> = Result<T, TargetError>;

async fn bounded<T>(
    limit: Duration,
    what: &str,
    f: impl Future<Output = TargetResult<T>>,
) -> TargetResult<T> {
    tokio::time::timeout(limit, f)
        .await
        .map_err(|_| TargetError(format!("{what} timed out after {}s", limit.as_secs())))?
}

/// Checks a target URL: the scheme matches the kind, a host and user are named, and no password
/// is in it (the password is sealed separately).
pub fn parse_url(kind: TargetKind, url: &str) -> Result<Url, String> {
    let parsed = Url::parse(url.trim()).map_err(|e| format!("invalid target URL: {e}"))?;
    let schemes: &[&str] = match kind {
        TargetKind::Postgres => &["postgres", "postgresql"],
        TargetKind::Mysql => &["mysql", "mariadb"],
    };
    if !schemes.contains(&parsed.scheme()) {
        return Err(format!(
            "a {} target URL starts with {}://",
            kind.as_str(),
            schemes[0]
        ));
    }
    if parsed.password().is_some() {
        return Err("put the admin password on stdin, not in the URL".into());
    }
    if parsed.host_str().is_none_or(str::is_empty) {
        return Err("the target URL names no host".into());
    }
    if parsed.username().is_empty() {
        return Err("the target URL names no admin user (scheme://USER@host/db)".into());
    }
    if kind == TargetKind::Postgres && parsed.path().trim_start_matches('/').is_empty() {
        return Err("a postgres target URL names its database (…/DBNAME)".into());
    }
    Ok(parsed)
}

/// A target ready to connect to: its URL and opened admin password.
pub struct TargetSpec {
    pub name: String,
    pub kind: TargetKind,
    pub url: Url,
    password: SecretString,
}

impl std::fmt::Debug for TargetSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TargetSpec")
            .field("name", &self.name)
            .field("kind", &self.kind)
            .field("url", &self.url.as_str())
            .finish_non_exhaustive()
    }
}

impl TargetSpec {
    pub fn open(target: &Target, master: &MasterKey) -> anyhow::Result<Self> {
        let kind: TargetKind = target.kind.parse().map_err(anyhow::Error::msg)?;
        let url = parse_url(kind, &target.url).map_err(anyhow::Error::msg)?;
        let plain = master.open(
            &Target::seal_context(target.tenant_id, target.id),
            &target.admin_secret_sealed,
        )?;
        let password = String::from_utf8(plain.expose_secret().clone())
            .map_err(|_| anyhow::anyhow!("target {} password is not UTF-8", target.name))?;
        Ok(Self {
            name: target.name.clone(),
            kind,
            url,
            password: SecretString::from(password),
        })
    }

    pub fn host(&self) -> String {
        self.url.host_str().unwrap_or_default().to_owned()
    }

    pub fn port(&self) -> u16 {
        self.url.port().unwrap_or(match self.kind {
            TargetKind::Postgres => 5432,
            TargetKind::Mysql => 3306,
        })
    }

    pub fn database(&self) -> String {
        self.url.path().trim_start_matches('/').to_owned()
    }

    fn password(&self) -> &str {
        self.password.expose_secret()
    }

    /// An admin session on the target (one per operation; closing it releases its locks).
    pub async fn connect(&self) -> TargetResult<AdminConn> {
        bounded(CONNECT_TIMEOUT, "connecting", async {
            Ok(match self.kind {
                TargetKind::Postgres => AdminConn::Postgres(postgres::connect(self).await?),
                TargetKind::Mysql => AdminConn::Mysql(mysql::connect(self).await?),
            })
        })
        .await
    }
}

/// The client command for a login, without its password (the client asks for it).
pub fn client_hint(login: &issue::IssuedLogin) -> String {
    match login.kind {
        TargetKind::Postgres => format!(
            "psql \"host={} port={} dbname={} user={}\"",
            login.host, login.port, login.database, login.username
        ),
        // The login may have no default role (see mysql.rs): take it, then open the database.
        TargetKind::Mysql => {
            let mut init: Vec<String> = login
                .roles
                .first()
                .map(|r| format!("SET ROLE `{r}`"))
                .into_iter()
                .collect();
            if !login.database.is_empty() {
                init.push(format!("USE `{}`", login.database));
            }
            format!(
                "mariadb -h {} -P {} -u {} -p --init-command='{}'",
                login.host,
                login.port,
                login.username,
                init.join("; ")
            )
        }
    }
}

/// What a successful connection check found.
#[derive(Debug, Clone)]
pub struct TargetCheck {
    pub version: String,
    /// Whether the admin login may create roles/users (the one right elevate cannot do without).
    pub can_create_roles: bool,
}

/// The admin login's powers, against the minimum `deploy/db-targets/README.md` asks for.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TargetRights {
    /// Superuser (Postgres) or `ALL PRIVILEGES`/`SUPER` on everything (MariaDB/MySQL).
    pub superuser: bool,
    pub can_create_roles: bool,
    /// Rights beyond the documented minimum (`CREATEDB`, `REPLICATION`, predefined roles, ...).
    pub extra: Vec<String>,
    /// Profile roles it cannot hand out (no `ADMIN OPTION`), or owner roles it is not a member of.
    pub missing: Vec<String>,
}

/// What ending a login did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Ended {
    /// The role still existed when the cleanup started.
    pub existed: bool,
    pub sessions_terminated: u64,
}

/// An admin session on a target.
pub enum AdminConn {
    Postgres(sqlx::PgConnection),
    Mysql(sqlx::MySqlConnection),
}

impl AdminConn {
    pub async fn check(&mut self) -> TargetResult<TargetCheck> {
        bounded(STATEMENT_TIMEOUT, "checking", async {
            match self {
                AdminConn::Postgres(c) => postgres::check(c).await,
                AdminConn::Mysql(c) => mysql::check(c).await,
            }
        })
        .await
    }

    /// What the admin login may do: `grantable` are the profile roles it must hand out,
    /// `owners` the roles it must be a member of (Postgres `REASSIGN OWNED`).
    pub async fn rights(
        &mut self,
        grantable: &[String],
        owners: &[String],
    ) -> TargetResult<TargetRights> {
        bounded(
            STATEMENT_TIMEOUT,
            "reading the admin login's rights",
            async {
                match self {
                    AdminConn::Postgres(c) => postgres::rights(c, grantable, owners).await,
                    AdminConn::Mysql(c) => mysql::rights(c, grantable).await,
                }
            },
        )
        .await
    }

    /// Serialises work on one role across elevate replicas; held until `release` or close.
    pub async fn lock(&mut self, role: &str) -> TargetResult<()> {
        bounded(STATEMENT_TIMEOUT, "waiting for the role lock", async {
            match self {
                AdminConn::Postgres(c) => postgres::lock(c, role).await,
                AdminConn::Mysql(c) => mysql::lock(c, role).await,
            }
        })
        .await
    }

    pub async fn release(&mut self, role: &str) -> TargetResult<()> {
        bounded(STATEMENT_TIMEOUT, "releasing the role lock", async {
            match self {
                AdminConn::Postgres(c) => postgres::release(c, role).await,
                AdminConn::Mysql(c) => mysql::release(c, role).await,
            }
        })
        .await
    }

    /// Creates a login role valid until `until` (Postgres enforces it too) inheriting `roles`.
    pub async fn create_login(
        &mut self,
        role: &str,
        password: &str,
        until: OffsetDateTime,
        roles: &[String],
    ) -> TargetResult<()> {
        bounded(STATEMENT_TIMEOUT, "creating the login", async {
            match self {
                AdminConn::Postgres(c) => {
                    postgres::create_login(c, role, password, until, roles).await
                }
                AdminConn::Mysql(c) => mysql::create_login(c, role, password, roles).await,
            }
        })
        .await
    }

    /// Locks the login, ends its sessions, hands its objects to `owner` (Postgres; the admin
    /// login when None) and drops it. Safe to repeat.
    pub async fn end_login(&mut self, role: &str, owner: Option<&str>) -> TargetResult<Ended> {
        bounded(STATEMENT_TIMEOUT, "ending the login", async {
            match self {
                AdminConn::Postgres(c) => postgres::end_login(c, role, owner).await,
                AdminConn::Mysql(c) => mysql::end_login(c, role).await,
            }
        })
        .await
    }

    /// Logins on the target whose names start with `prefix`.
    pub async fn logins_with_prefix(&mut self, prefix: &str) -> TargetResult<Vec<String>> {
        bounded(STATEMENT_TIMEOUT, "listing logins", async {
            match self {
                AdminConn::Postgres(c) => postgres::logins_with_prefix(c, prefix).await,
                AdminConn::Mysql(c) => mysql::logins_with_prefix(c, prefix).await,
            }
        })
        .await
    }

    pub async fn close(self) {
        use sqlx::Connection;
        let _ = match self {
            AdminConn::Postgres(c) => c.close().await,
            AdminConn::Mysql(c) => c.close().await,
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn target_urls_are_checked() {
        let pg = TargetKind::Postgres;
        assert!(parse_url(pg, "postgres://admin@db.internal:5432/orders").is_ok());
        assert!(parse_url(pg, "postgres://admin:secret@db/orders").is_err());
        assert!(parse_url(pg, "postgres://admin@db").is_err());
        assert!(parse_url(pg, "postgres://db/orders").is_err());
        assert!(parse_url(pg, "mysql://admin@db/orders").is_err());
        assert!(parse_url(pg, "not a url").is_err());
        let my = TargetKind::Mysql;
        assert!(parse_url(my, "mysql://admin@127.0.0.1:3306").is_ok());
        assert!(parse_url(my, "postgres://admin@db/x").is_err());
    }
}
