//! Server configuration: defaults, then an optional TOML file (`--config`), then `ELEVATE_*`
//! environment variables, then flags. clap reads each flag's environment variable when the flag
//! is absent, so applying clap's values over the file gives exactly that order.

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

use crate::store::redact_url;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

/// The development TLS certificate and key `serve` writes beside its store when none is
/// configured (and `doctor` looks for).
pub const DEV_CERT_FILE: &str = "elevate-tls.crt";
pub const DEV_KEY_FILE: &str = "elevate-tls.key";

/// A database URL, which may hold a password: `Debug` shows it redacted.
#[derive(Clone, Deserialize)]
#[serde(transparent)]
pub struct DatabaseUrl(String);

impl DatabaseUrl {
    pub fn new(url: impl Into<String>) -> Self {
        Self(url.into())
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for DatabaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", redact_url(&self.0))
    }
}

impl fmt::Display for DatabaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&redact_url(&self.0))
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Address to listen on.
    pub listen: SocketAddr,
    /// The URL people and hosts reach elevate at (links, WebAuthn origin).
    pub public_url: String,
    pub database_url: DatabaseUrl,
    /// Optional owner-role URL used to apply Postgres migrations at start.
    pub migrate_database_url: Option<DatabaseUrl>,
    /// Master key file; when unset, `elevate.key` beside the database is used (and created).
    pub master_key_file: Option<PathBuf>,
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    /// Plain HTTP, for running behind a TLS-terminating proxy.
    pub insecure_http: bool,
    pub smtp_url: Option<SecretString>,
    pub log_format: LogFormat,
    pub demo: bool,
    /// Largest accepted request body, in bytes.
    pub max_body_bytes: usize,
    /// Seconds before a request is cut off.
    pub request_timeout_secs: u64,
    /// A session ends after this long without a request (`30m`).
    pub session_idle_timeout: String,
    /// ... and this long after sign-in whatever happens (`12h`).
    pub session_absolute_timeout: String,
    /// Sender of sign-in mail.
    pub mail_from: String,
    /// OpenID Connect single sign-on, per tenant slug: `[oidc.acme]`.
    pub oidc: std::collections::BTreeMap<String, OidcConfig>,
    /// Audit checkpoints: `[audit]`.
    pub audit: AuditConfig,
    /// Networks of the reverse proxies in front of elevate (`["10.0.0.0/8", "::1"]`): only a
    /// peer in them is believed about the client's address (`X-Forwarded-For`).
    pub trusted_proxies: TrustedProxies,
}

/// Networks whose peers may name the client's address in `X-Forwarded-For`. Empty by default:
/// the header is then ignored and the peer address is the client's.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(try_from = "Vec<String>")]
pub struct TrustedProxies(Vec<ipnet::IpNet>);

impl TrustedProxies {
    /// Comma-separated CIDRs or addresses (`ELEVATE_TRUSTED_PROXIES`).
    pub fn parse_list(text: &str) -> Result<Self, String> {
        Self::try_from(
            text.split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
                .collect::<Vec<_>>(),
        )
    }

    pub fn contains(&self, ip: std::net::IpAddr) -> bool {
        let ip = ip.to_canonical();
        self.0.iter().any(|net| net.contains(&ip))
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The client behind `peer`: `peer` itself unless it is a trusted proxy; then the rightmost
    /// address of the `X-Forwarded-For` chain that is not a trusted proxy (each proxy appends the
    /// address it received from, so everything left of that is the client's to make up). When
    /// every hop is trusted, the leftmost; an entry that is not an address stops the walk at the
    /// trusted hop after it.
    pub fn client_ip<'a>(
        &self,
        peer: std::net::IpAddr,
        forwarded_for: impl DoubleEndedIterator<Item = &'a str>,
    ) -> std::net::IpAddr {
        let mut client = peer.to_canonical();
        if !self.contains(client) {
            return client;
        }
        for hop in forwarded_for.rev() {
            let Some(ip) = parse_hop(hop) else {
                return client;
            };
            client = ip;
            if !self.contains(ip) {
                return ip;
            }
        }
        client
    }
}

/// One `X-Forwarded-For` entry: an address, possibly with a port (`1.2.3.4:5`, `[::1]:5`).
fn parse_hop(hop: &str) -> Option<std::net::IpAddr> {
    let hop = hop.trim();
    hop.parse::<std::net::IpAddr>()
        .ok()
        .or_else(|| hop.parse::<SocketAddr>().ok().map(|s| s.ip()))
        .map(|ip| ip.to_canonical())
}

impl TryFrom<Vec<String>> for TrustedProxies {
    type Error = String;
    fn try_from(items: Vec<String>) -> Result<Self, String> {
        items
            .iter()
            .map(|item| {
                let item = item.trim();
                item.parse::<ipnet::IpNet>()
                    .or_else(|_| item.parse::<std::net::IpAddr>().map(ipnet::IpNet::from))
                    .map(|net| net.trunc())
                    .map_err(|_| {
                        format!("trusted_proxies: {item:?} is not a CIDR (10.0.0.0/8) or address")
                    })
            })
            .collect::<Result<Vec<_>, _>>()
            .map(TrustedProxies)
    }
}

/// When the audit log's head is signed (DESIGN §7): every N events or M seconds.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuditConfig {
    /// Sign every event whose sequence number is a multiple of this (default 1000).
    pub checkpoint_every_events: i64,
    /// ... and the head once its oldest unsigned event is this old (default `60s`).
    pub checkpoint_every: String,
    /// Where this replica keeps its audit anchors (a directory the service can write but the
    /// database cannot reach) [default: beside the master key file].
    pub anchor_dir: Option<PathBuf>,
    /// Up to this many events, `/audit` verifies the whole log while it answers; a longer log
    /// is verified in the background and the page says so until it is done (default 20000).
    pub verify_inline_events: i64,
    /// A page of `/audit` filtered only by actor or date (no index serves a substring) searches
    /// at most this many events back; the page says which it searched and links to older ones
    /// (default 20000).
    pub page_search_events: i64,
}

impl Default for AuditConfig {
    fn default() -> Self {
        Self {
            checkpoint_every_events: 1000,
            checkpoint_every: "60s".into(),
            anchor_dir: None,
            verify_inline_events: 20_000,
            page_search_events: 20_000,
        }
    }
}

/// One tenant's OpenID provider (authorization code flow with PKCE).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OidcConfig {
    /// Issuer URL; its `/.well-known/openid-configuration` is discovered at sign-in.
    pub issuer: String,
    pub client_id: String,
    pub client_secret: SecretString,
    /// The ID-token claim holding the user's groups.
    #[serde(default = "default_groups_claim")]
    pub groups_claim: String,
    /// Create users on their first sign-in (otherwise only existing users may sign in).
    #[serde(default)]
    pub create_users: bool,
    /// Standing roles of users created on first sign-in.
    #[serde(default)]
    pub default_roles: Vec<crate::model::Role>,
    /// Text of the sign-in button.
    #[serde(default = "default_oidc_label")]
    pub label: String,
}

fn default_groups_claim() -> String {
    "groups".into()
}

fn default_oidc_label() -> String {
    "Sign in with single sign-on".into()
}

impl Default for Config {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8443)),
            public_url: "https://localhost:8443".into(),
            database_url: DatabaseUrl::new("sqlite:elevate.db"),
            migrate_database_url: None,
            master_key_file: None,
            tls_cert: None,
            tls_key: None,
            insecure_http: false,
            smtp_url: None,
            log_format: LogFormat::Text,
            demo: false,
            max_body_bytes: 256 * 1024,
            request_timeout_secs: 30,
            session_idle_timeout: "30m".into(),
            session_absolute_timeout: "12h".into(),
            mail_from: "elevate <elevate@localhost>".into(),
            oidc: Default::default(),
            audit: AuditConfig::default(),
            trusted_proxies: TrustedProxies::default(),
        }
    }
}

/// Values from flags (or their environment variables); `None`/`false` leaves the file's value.
#[derive(Debug, Default, Clone, clap::Args)]
pub struct Overrides {
    /// TOML configuration file.
    #[arg(long, env = "ELEVATE_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Address to listen on [default: 127.0.0.1:8443].
    #[arg(long, env = "ELEVATE_LISTEN", value_name = "ADDR")]
    pub listen: Option<SocketAddr>,
    /// Database URL: sqlite:PATH or postgres://... [default: sqlite:elevate.db].
    #[arg(
        long = "database",
        env = "ELEVATE_DATABASE_URL",
        value_name = "URL",
        hide_env_values = true
    )]
    pub database_url: Option<String>,
    /// Owner-role Postgres URL to apply migrations with at start.
    #[arg(
        long = "migrate-database",
        env = "ELEVATE_MIGRATE_DATABASE_URL",
        value_name = "URL",
        hide_env_values = true
    )]
    pub migrate_database_url: Option<String>,
    /// Public URL [default: https://localhost:8443].
    #[arg(long, env = "ELEVATE_PUBLIC_URL", value_name = "URL")]
    pub public_url: Option<String>,
    /// Master key file [default: elevate.key beside a SQLite database].
    #[arg(long, env = "ELEVATE_MASTER_KEY_FILE", value_name = "FILE")]
    pub master_key_file: Option<PathBuf>,
    /// TLS certificate chain (PEM); a development certificate is made when left out.
    #[arg(long, env = "ELEVATE_TLS_CERT", value_name = "FILE")]
    pub tls_cert: Option<PathBuf>,
    /// TLS private key (PEM) for --tls-cert.
    #[arg(long, env = "ELEVATE_TLS_KEY", value_name = "FILE")]
    pub tls_key: Option<PathBuf>,
    /// Serve plain HTTP (only behind a TLS-terminating proxy).
    #[arg(long, env = "ELEVATE_INSECURE_HTTP", action = clap::ArgAction::SetTrue, value_parser = clap::builder::BoolishValueParser::new())]
    pub insecure_http: bool,
    /// SMTP server for sign-in links and notifications (smtp:// or smtps://).
    #[arg(
        long,
        env = "ELEVATE_SMTP_URL",
        value_name = "URL",
        hide_env_values = true
    )]
    pub smtp_url: Option<String>,
    /// Where this replica keeps its audit anchors [default: beside the master key file].
    #[arg(
        long = "audit-anchor-dir",
        env = "ELEVATE_AUDIT_ANCHOR_DIR",
        value_name = "DIR"
    )]
    pub audit_anchor_dir: Option<PathBuf>,
    /// Comma-separated networks of the reverse proxies in front of elevate (CIDRs): only their
    /// `X-Forwarded-For` names the client address (sign-in rate limits, audit records).
    #[arg(long, env = "ELEVATE_TRUSTED_PROXIES", value_name = "CIDRS")]
    pub trusted_proxies: Option<String>,
    /// Seed the demo tenant and print sign-in tokens.
    #[arg(long, env = "ELEVATE_DEMO", action = clap::ArgAction::SetTrue, value_parser = clap::builder::BoolishValueParser::new())]
    pub demo: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {reason}")]
    Read { path: String, reason: String },
    #[error("config file {path}: {reason}")]
    Parse { path: String, reason: String },
    #[error("invalid configuration: {0}")]
    Invalid(String),
}

impl Config {
    pub fn load(overrides: &Overrides, log_format: Option<LogFormat>) -> Result<Self, ConfigError> {
        let (mut config, file_sets_public_url) = match &overrides.config {
            Some(path) => Self::from_file(path)?,
            None => (Self::default(), false),
        };
        let o = overrides.clone();
        if let Some(v) = o.listen {
            config.listen = v;
        }
        if let Some(v) = o.database_url {
            config.database_url = DatabaseUrl::new(v);
        }
        if let Some(v) = o.migrate_database_url {
            config.migrate_database_url = Some(DatabaseUrl::new(v));
        }
        if let Some(v) = o.public_url {
            config.public_url = v;
        }
        config.master_key_file = o.master_key_file.or(config.master_key_file);
        config.tls_cert = o.tls_cert.or(config.tls_cert);
        config.tls_key = o.tls_key.or(config.tls_key);
        config.insecure_http |= o.insecure_http;
        if let Some(v) = o.smtp_url {
            config.smtp_url = Some(SecretString::from(v));
        }
        config.audit.anchor_dir = o.audit_anchor_dir.or(config.audit.anchor_dir);
        config.demo |= o.demo;
        if let Some(v) = o.trusted_proxies {
            config.trusted_proxies =
                TrustedProxies::parse_list(&v).map_err(ConfigError::Invalid)?;
        }
        if let Some(v) = log_format {
            config.log_format = v;
        }
        // Nobody said where elevate is reached: it is reached where it listens, under the name
        // `localhost` (which WebAuthn and the development certificate accept), so the printed
        // commands and the links in mail work with `--listen 127.0.0.1:18443` too.
        if !file_sets_public_url && overrides.public_url.is_none() && config.listen.port() != 0 {
            config.public_url = format!("https://localhost:{}", config.listen.port());
        }
        config.validate()?;
        Ok(config)
    }

    /// The file's settings, and whether it names `public_url` itself.
    fn from_file(path: &Path) -> Result<(Self, bool), ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError::Read {
            path: path.display().to_string(),
            reason: e.to_string(),
        })?;
        let parse_error = |e: toml::de::Error| ConfigError::Parse {
            path: path.display().to_string(),
            reason: e.to_string().trim_end().to_owned(),
        };
        let config: Self = toml::from_str(&text).map_err(parse_error)?;
        let table: toml::Table = toml::from_str(&text).map_err(parse_error)?;
        Ok((config, table.contains_key("public_url")))
    }

    fn validate(&self) -> Result<(), ConfigError> {
        let url = self.public_url.trim_end_matches('/');
        if !(url.starts_with("https://") || url.starts_with("http://")) || url.len() < 10 {
            return Err(ConfigError::Invalid(format!(
                "public_url {:?} must be an absolute http(s) URL",
                self.public_url
            )));
        }
        if self.tls_cert.is_some() != self.tls_key.is_some() {
            return Err(ConfigError::Invalid(
                "tls_cert and tls_key must be given together".into(),
            ));
        }
        if self.max_body_bytes < 1024 {
            return Err(ConfigError::Invalid(
                "max_body_bytes must be at least 1024".into(),
            ));
        }
        crate::store::backend_of(self.database_url.expose())
            .map_err(|e| ConfigError::Invalid(e.to_string()))?;
        let idle = crate::duration::parse(&self.session_idle_timeout)
            .map_err(|e| ConfigError::Invalid(format!("session_idle_timeout: {e}")))?;
        let absolute = crate::duration::parse(&self.session_absolute_timeout)
            .map_err(|e| ConfigError::Invalid(format!("session_absolute_timeout: {e}")))?;
        if idle > absolute {
            return Err(ConfigError::Invalid(
                "session_idle_timeout must not exceed session_absolute_timeout".into(),
            ));
        }
        for (tenant, oidc) in &self.oidc {
            let ok = oidc.issuer.starts_with("https://") || oidc.issuer.starts_with("http://");
            if !ok || oidc.client_id.is_empty() {
                return Err(ConfigError::Invalid(format!(
                    "oidc.{tenant}: issuer must be an http(s) URL and client_id set"
                )));
            }
        }
        if self.audit.checkpoint_every_events < 1 {
            return Err(ConfigError::Invalid(
                "audit.checkpoint_every_events must be at least 1".into(),
            ));
        }
        crate::duration::parse(&self.audit.checkpoint_every)
            .map_err(|e| ConfigError::Invalid(format!("audit.checkpoint_every: {e}")))?;
        self.mail_from
            .parse::<lettre::message::Mailbox>()
            .map_err(|e| ConfigError::Invalid(format!("mail_from {:?}: {e}", self.mail_from)))?;
        Ok(())
    }

    /// Validated in `load`, so the defaults below never apply in practice.
    pub fn session_idle(&self) -> time::Duration {
        crate::duration::parse(&self.session_idle_timeout).unwrap_or(time::Duration::minutes(30))
    }

    pub fn session_absolute(&self) -> time::Duration {
        crate::duration::parse(&self.session_absolute_timeout).unwrap_or(time::Duration::hours(12))
    }

    /// `scheme://host[:port]` of the public URL, for same-origin checks.
    pub fn public_origin(&self) -> String {
        let url = self.public_url.trim_end_matches('/');
        let after_scheme = url.find("://").map(|i| i + 3).unwrap_or(0);
        match url[after_scheme..].find('/') {
            Some(i) => url[..after_scheme + i].to_owned(),
            None => url.to_owned(),
        }
    }

    /// Where generated files (development key and TLS certificate) live: beside a SQLite
    /// database, else the working directory.
    pub fn data_dir(&self) -> PathBuf {
        crate::store::data_dir_for(self.database_url.expose())
    }

    pub fn smtp_configured(&self) -> bool {
        self.smtp_url
            .as_ref()
            .is_some_and(|s| !s.expose_secret().is_empty())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(text: &str) -> PathBuf {
        let path =
            std::env::temp_dir().join(format!("elevate-config-{}.toml", uuid::Uuid::new_v4()));
        std::fs::write(&path, text).unwrap();
        path
    }

    #[test]
    fn defaults_start_on_sqlite_and_https_localhost() {
        let c = Config::load(&Overrides::default(), None).unwrap();
        assert_eq!(c.listen.to_string(), "127.0.0.1:8443");
        assert_eq!(c.database_url.expose(), "sqlite:elevate.db");
        assert_eq!(c.public_url, "https://localhost:8443");
        assert_eq!(c.data_dir(), PathBuf::from("."));
        assert!(!c.insecure_http);
    }

    #[test]
    fn the_public_url_follows_the_listen_port_unless_it_is_set() {
        let listen = |o: &mut Overrides| o.listen = Some("127.0.0.1:18443".parse().unwrap());
        let mut o = Overrides::default();
        listen(&mut o);
        assert_eq!(
            Config::load(&o, None).unwrap().public_url,
            "https://localhost:18443"
        );
        o.public_url = Some("https://elevate.example.com".into());
        assert_eq!(
            Config::load(&o, None).unwrap().public_url,
            "https://elevate.example.com"
        );
        let path = write("public_url = \"https://access.example.com\"\n");
        let mut o = Overrides {
            config: Some(path.clone()),
            ..Default::default()
        };
        listen(&mut o);
        assert_eq!(
            Config::load(&o, None).unwrap().public_url,
            "https://access.example.com"
        );
        std::fs::remove_file(path).unwrap();
    }

    #[test]
    fn flags_override_the_file_which_overrides_defaults() {
        let path =
            write("listen = \"127.0.0.1:9000\"\ndatabase_url = \"sqlite:/var/lib/elevate/e.db\"\n");
        let mut o = Overrides {
            config: Some(path.clone()),
            ..Default::default()
        };
        let c = Config::load(&o, None).unwrap();
        assert_eq!(c.listen.to_string(), "127.0.0.1:9000");
        assert_eq!(c.data_dir(), PathBuf::from("/var/lib/elevate"));
        o.listen = Some("127.0.0.1:9100".parse().unwrap());
        assert_eq!(
            Config::load(&o, None).unwrap().listen.to_string(),
            "127.0.0.1:9100"
        );
        std::fs::remove_file(path).unwrap();
    }

    #[test]
    fn malformed_files_are_named_with_their_line() {
        let path = write("listen = \"127.0.0.1:9000\"\nlisten_typo = 1\n");
        let err = Config::load(
            &Overrides {
                config: Some(path.clone()),
                ..Default::default()
            },
            None,
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains(&path.display().to_string()) && err.contains("line 2"),
            "{err}"
        );
        assert!(err.contains("listen_typo"), "{err}");
        std::fs::remove_file(path).unwrap();
    }

    #[test]
    fn audit_checkpoints_are_configured_in_their_table() {
        let load = |text: &str| {
            let path = write(text);
            let r = Config::load(
                &Overrides {
                    config: Some(path.clone()),
                    ..Default::default()
                },
                None,
            );
            std::fs::remove_file(path).unwrap();
            r
        };
        let d = Config::default().audit;
        assert_eq!(
            (d.checkpoint_every_events, d.checkpoint_every.as_str()),
            (1000, "60s")
        );
        let c = load("[audit]\ncheckpoint_every_events = 5\ncheckpoint_every = \"2m\"\n").unwrap();
        assert_eq!(
            (
                c.audit.checkpoint_every_events,
                c.audit.checkpoint_every.as_str()
            ),
            (5, "2m")
        );
        let e = load("[audit]\ncheckpoint_every_events = 0\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("checkpoint_every_events"), "{e}");
        let e = load("[audit]\ncheckpoint_every = \"soon\"\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("audit.checkpoint_every"), "{e}");
        let e = load("[audit]\nevery = 1\n").unwrap_err().to_string();
        assert!(e.contains("every"), "{e}");
    }

    #[test]
    fn trusted_proxies_come_from_the_file_or_the_environment() {
        let path = write("trusted_proxies = [\"10.0.0.0/8\", \"::1\"]\n");
        let mut o = Overrides {
            config: Some(path.clone()),
            ..Default::default()
        };
        let c = Config::load(&o, None).unwrap();
        assert!(c.trusted_proxies.contains("10.1.2.3".parse().unwrap()));
        assert!(c.trusted_proxies.contains("::1".parse().unwrap()));
        assert!(!c.trusted_proxies.contains("127.0.0.1".parse().unwrap()));
        o.trusted_proxies = Some("127.0.0.0/8, 192.168.1.7".into());
        let c = Config::load(&o, None).unwrap();
        assert!(c.trusted_proxies.contains("127.0.0.1".parse().unwrap()));
        assert!(c.trusted_proxies.contains("192.168.1.7".parse().unwrap()));
        assert!(!c.trusted_proxies.contains("10.1.2.3".parse().unwrap()));
        o.trusted_proxies = Some("10.0.0.0/33".into());
        let e = Config::load(&o, None).unwrap_err().to_string();
        assert!(e.contains("trusted_proxies"), "{e}");
        std::fs::remove_file(&path).unwrap();
        let path = write("trusted_proxies = [\"proxy.internal\"]\n");
        let e = Config::load(
            &Overrides {
                config: Some(path.clone()),
                ..Default::default()
            },
            None,
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("trusted_proxies"), "{e}");
        std::fs::remove_file(path).unwrap();
    }

    #[test]
    fn the_client_is_the_rightmost_untrusted_hop() {
        let proxies = TrustedProxies::parse_list("10.0.0.0/8").unwrap();
        let ip = |s: &str| s.parse::<std::net::IpAddr>().unwrap();
        let client = |peer: &str, xff: &[&str]| proxies.client_ip(ip(peer), xff.iter().copied());
        // Not from a proxy: the header is ignored.
        assert_eq!(client("203.0.113.9", &["198.51.100.1"]), ip("203.0.113.9"));
        // From the proxy: the hop it appended.
        assert_eq!(client("10.0.0.2", &["198.51.100.1"]), ip("198.51.100.1"));
        // A client's own X-Forwarded-For is left of what the proxy appended.
        assert_eq!(
            client("10.0.0.2", &["1.1.1.1", "198.51.100.1"]),
            ip("198.51.100.1")
        );
        // Chained proxies are skipped; ports and mapped addresses are understood.
        assert_eq!(
            client("::ffff:10.0.0.2", &["198.51.100.1:4711", "10.9.9.9"]),
            ip("198.51.100.1")
        );
        assert_eq!(
            client("10.0.0.2", &["[2001:db8::1]:443"]),
            ip("2001:db8::1")
        );
        // Nothing forwarded, or only proxies: the leftmost proxy.
        assert_eq!(client("10.0.0.2", &[]), ip("10.0.0.2"));
        assert_eq!(client("10.0.0.2", &["10.0.0.7"]), ip("10.0.0.7"));
        // Garbage stops the walk at the trusted hop after it.
        assert_eq!(client("10.0.0.2", &["junk", "10.0.0.7"]), ip("10.0.0.7"));
        // Nothing trusted: never the header.
        let none = TrustedProxies::default();
        assert_eq!(
            none.client_ip(ip("10.0.0.2"), ["198.51.100.1"].into_iter()),
            ip("10.0.0.2")
        );
    }

    #[test]
    fn secrets_do_not_show_in_debug() {
        let o = Overrides {
            database_url: Some("postgres://app:hunter2@db/elevate".into()),
            smtp_url: Some("smtp://mail:s3cret@mx".into()),
            ..Default::default()
        };
        let shown = format!("{:?}", Config::load(&o, None).unwrap());
        assert!(
            !shown.contains("hunter2") && !shown.contains("s3cret"),
            "{shown}"
        );
    }

    #[test]
    fn invalid_values_are_refused() {
        let o = Overrides {
            public_url: Some("localhost".into()),
            ..Default::default()
        };
        assert!(
            Config::load(&o, None)
                .unwrap_err()
                .to_string()
                .contains("public_url")
        );
        let o = Overrides {
            database_url: Some("mysql://x".into()),
            ..Default::default()
        };
        assert!(Config::load(&o, None).is_err());
    }
}
