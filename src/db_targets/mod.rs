//! Database targets and the short-lived logins elevate makes on them (DESIGN §4). One admin login
//! per target (sealed at rest) creates a role per grant and, when the grant ends, locks it,
//! ends its sessions, hands what it owns to the profile's owner role and drops it. Every step is
//! idempotent: a cleanup interrupted anywhere finishes on the next attempt.
//!
//! Creation and cleanup of one role are serialised on the target itself (a Postgres advisory
//! lock, a MariaDB named lock), and issuance re-checks the stored record under that lock, so a
//! grant ending while its login is being made can never leave a role behind.

pub mod cleanup;
mod idle;
mod mysql;
pub mod names;
mod postgres;
pub mod targets;

use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use time::OffsetDateTime;
use url::Url;
use zeroize::Zeroizing;

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

/// Query parameters a target URL may carry: the ones sqlx reads for the kind, minus anything that
/// names a password or overrides what `parse_url` checked (host, user, database). sqlx's Postgres
/// parser reads `?password=` and logs unknown parameters with their values, so anything else is
/// refused rather than passed on.
const PG_PARAMS: &[&str] = &[
    "sslmode",
    "ssl-mode",
    "sslrootcert",
    "ssl-root-cert",
    "ssl-ca",
    "sslcert",
    "ssl-cert",
    "sslkey",
    "ssl-key",
    "statement-cache-capacity",
    "application_name",
];
const MYSQL_PARAMS: &[&str] = &[
    "sslmode",
    "ssl-mode",
    "sslca",
    "ssl-ca",
    "sslcert",
    "ssl-cert",
    "sslkey",
    "ssl-key",
    "statement-cache-capacity",
    "charset",
    "collation",
    "timezone",
    "time-zone",
];

/// Whether a URL parameter name looks like it carries a secret (`password`, `PWD`,
/// `sslpassword`, `passfile`, `secret`, ...), whatever its case.
fn names_a_secret(key: &str) -> bool {
    let key = key.to_ascii_lowercase();
    ["pass", "pwd", "secret", "token"]
        .iter()
        .any(|s| key.contains(s))
}

const PASSWORD_ON_STDIN: &str = "put the admin password on stdin, not in the URL";

/// Checks a target URL: the scheme matches the kind, a host and user are named, and no password
/// is anywhere in it — user info, query parameters or fragment (the password is sealed
/// separately, while the URL is stored, shown and audited as it is). Errors never echo the URL.
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
    // `user:@host` parses with no password; a percent-encoded colon would still smuggle one.
    if parsed.password().is_some() || parsed.username().to_ascii_lowercase().contains("%3a") {
        return Err(PASSWORD_ON_STDIN.into());
    }
    let allowed = match kind {
        TargetKind::Postgres => PG_PARAMS,
        TargetKind::Mysql => MYSQL_PARAMS,
    };
    for (key, _) in parsed.query_pairs() {
        if names_a_secret(&key) {
            return Err(PASSWORD_ON_STDIN.into());
        }
        if !allowed.contains(&key.as_ref()) {
            return Err(format!(
                "the target URL parameter {:?} is not accepted (allowed: {})",
                key.chars().take(40).collect::<String>(),
                allowed.join(", ")
            ));
        }
    }
    if parsed.fragment().is_some() {
        return Err("a target URL has no #fragment".into());
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

/// A stored target URL as pages and the CLI show it: as stored when it passes [`parse_url`];
/// otherwise (a row from before the checks were tightened, which may hold a password) only its
/// scheme and host, with a hint to set it again.
pub fn shown_url(kind: &str, url: &str) -> String {
    let ok = kind
        .parse::<TargetKind>()
        .ok()
        .and_then(|k| parse_url(k, url).ok());
    match ok {
        Some(parsed) => parsed.to_string(),
        None => match Url::parse(url.trim()) {
            Ok(u) => format!(
                "{}://{} (invalid URL hidden: set the target again)",
                u.scheme(),
                u.host_str().unwrap_or("?")
            ),
            Err(_) => "(invalid URL hidden: set the target again)".into(),
        },
    }
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

/// What a target stores for a new login's password, made before the login is: a PostgreSQL
/// `SCRAM-SHA-256` verifier (4,096 PBKDF2 rounds, about 1 ms), so the password never reaches
/// the target; for MariaDB the password itself (its hash is cheap, made when the user is).
pub struct LoginSecret(Zeroizing<String>);

impl TargetSpec {
    /// The secret for `password` on this target, hashed on a blocking thread so that it can run
    /// beside the round trips that come before the login is created.
    pub async fn login_secret(&self, password: &str) -> TargetResult<LoginSecret> {
        let password = Zeroizing::new(password.to_owned());
        match self.kind {
            TargetKind::Postgres => {
                let verifier =
                    tokio::task::spawn_blocking(move || names::scram_sha256_verifier(&password))
                        .await
                        .map_err(|e| TargetError(format!("cannot hash the password: {e}")))?
                        .map_err(|e| TargetError(format!("cannot hash the password: {e}")))?;
                Ok(LoginSecret(Zeroizing::new(verifier)))
            }
            TargetKind::Mysql => Ok(LoginSecret(password)),
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
        secret: &LoginSecret,
        until: OffsetDateTime,
        roles: &[String],
    ) -> TargetResult<()> {
        let secret = secret.0.as_str();
        bounded(STATEMENT_TIMEOUT, "creating the login", async {
            match self {
                AdminConn::Postgres(c) => {
                    postgres::create_login(c, role, secret, until, roles).await
                }
                AdminConn::Mysql(c) => mysql::create_login(c, role, secret, roles).await,
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

    #[test]
    fn stored_urls_with_passwords_are_not_shown() {
        let shown = shown_url("postgres", "postgres://admin@db/orders?password=hunter2");
        assert_eq!(
            shown,
            "postgres://db (invalid URL hidden: set the target again)"
        );
        let shown = shown_url("mysql", "mysql://admin:hunter2@db/shop");
        assert!(!shown.contains("hunter2"), "{shown}");
        assert_eq!(
            shown_url("postgres", "postgres://admin@db/orders"),
            "postgres://admin@db/orders"
        );
    }

    #[test]
    fn no_password_anywhere_in_a_target_url() {
        let (pg, my) = (TargetKind::Postgres, TargetKind::Mysql);
        assert!(parse_url(pg, "postgres://admin@db/orders?sslmode=require").is_ok());
        assert!(
            parse_url(
                my,
                "mysql://admin@db/shop?ssl-mode=REQUIRED&charset=utf8mb4"
            )
            .is_ok()
        );
        for (kind, url) in [
            (pg, "postgres://admin@db/orders?password=hunter2"),
            (
                pg,
                "postgres://admin@db/orders?sslmode=require&PassWord=hunter2",
            ),
            (pg, "postgres://admin@db/orders?pass=hunter2"),
            (pg, "postgres://admin@db/orders?PWD=hunter2"),
            (pg, "postgres://admin@db/orders?sslpassword=hunter2"),
            (pg, "postgres://admin@db/orders?pass%77ord=hunter2"),
            (pg, "postgres://admin%3Ahunter2@db/orders"),
            (pg, "postgres://admin:hunter2@db/orders"),
            (my, "mysql://admin@db/shop?password=hunter2"),
            (my, "mariadb://admin@db/shop?Passwd=hunter2"),
            (my, "mysql://admin:hunter2@db/shop"),
        ] {
            let err = parse_url(kind, url).unwrap_err();
            assert!(err.contains("stdin"), "{url}: {err}");
            assert!(!err.contains("hunter2"), "{err}");
        }
        // Parameters sqlx would read to override what was checked, or ignore (and log), and
        // fragments, are refused too.
        for (kind, url) in [
            (pg, "postgres://admin@db/orders?user=root"),
            (pg, "postgres://admin@db/orders?host=evil"),
            (pg, "postgres://admin@db/orders?options=-c%20x%3Dy"),
            (pg, "postgres://admin@db/orders?whatever=hunter2"),
            (pg, "postgres://admin@db/orders#hunter2"),
            (my, "mysql://admin@db/shop?socket=/tmp/x"),
        ] {
            let err = parse_url(kind, url).unwrap_err();
            assert!(!err.contains("hunter2"), "{err}");
        }
    }
}
