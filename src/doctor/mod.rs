//! `elevate doctor`: advisor checks of a deployment, in the manner of Supabase's advisors. Each
//! finding has a stable id, a severity, what was found and how to fix it; checks that pass are
//! listed too. Nothing here changes the deployment: the store is only read, the master key only
//! opens, probes only connect.
//!
//! One file per group of checks: `database` (the service role, row-level security, migrations,
//! clock, autovacuum), `keys` (the master key file and the secrets it seals), `tls` (public URL
//! and certificate), `services` (SMTP, OpenID providers), `targets` (database targets and their
//! admin logins), `audit` (chains, checkpoints, stuck cleanups).

mod audit;
mod database;
mod keys;
mod policy;
mod services;
mod targets;
mod tls;

use std::path::PathBuf;

use serde::Serialize;

use crate::clock::Clock;
use crate::config::Config;
use crate::crypto::MasterKey;
use crate::store::Store;

/// How long one network probe (SMTP, OpenID discovery, a target) may take.
pub const PROBE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Error,
    Warning,
    Info,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Error => "error",
            Severity::Warning => "warning",
            Severity::Info => "info",
        }
    }
}

/// One thing worth telling the operator.
#[derive(Debug, Clone, Serialize)]
pub struct Finding {
    /// Stable, dotted: `store.role.superuser`, `tls.expiry`, ...
    pub id: &'static str,
    pub severity: Severity,
    /// What was found.
    pub found: String,
    /// How to fix it.
    pub fix: String,
}

/// A check that found nothing to report.
#[derive(Debug, Clone, Serialize)]
pub struct Passed {
    pub id: &'static str,
    pub what: String,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct Report {
    pub findings: Vec<Finding>,
    pub passed: Vec<Passed>,
}

impl Report {
    fn add(&mut self, id: &'static str, severity: Severity, found: String, fix: impl Into<String>) {
        self.findings.push(Finding {
            id,
            severity,
            found,
            fix: fix.into(),
        });
    }
    fn error(&mut self, id: &'static str, found: String, fix: impl Into<String>) {
        self.add(id, Severity::Error, found, fix);
    }
    fn warn(&mut self, id: &'static str, found: String, fix: impl Into<String>) {
        self.add(id, Severity::Warning, found, fix);
    }
    fn info(&mut self, id: &'static str, found: String, fix: impl Into<String>) {
        self.add(id, Severity::Info, found, fix);
    }
    fn ok(&mut self, id: &'static str, what: impl Into<String>) {
        self.passed.push(Passed {
            id,
            what: what.into(),
        });
    }

    pub fn count(&self, severity: Severity) -> usize {
        self.findings
            .iter()
            .filter(|f| f.severity == severity)
            .count()
    }

    /// Exit status: 0 when nothing is an error.
    pub fn is_healthy(&self) -> bool {
        self.count(Severity::Error) == 0
    }

    /// For machines: findings (errors first), passed checks and the counts.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "ok": self.is_healthy(),
            "errors": self.count(Severity::Error),
            "warnings": self.count(Severity::Warning),
            "infos": self.count(Severity::Info),
            "findings": self.findings,
            "passed": self.passed,
        })
    }

    /// For people: findings by severity, each with its fix, then the checks that passed.
    pub fn render(&self) -> String {
        let mut out = String::new();
        for f in &self.findings {
            out.push_str(&format!(
                "{:<7} {}\n        {}\n        fix: {}\n",
                f.severity.as_str(),
                f.id,
                f.found,
                f.fix
            ));
        }
        if !self.passed.is_empty() {
            if !out.is_empty() {
                out.push('\n');
            }
            for p in &self.passed {
                out.push_str(&format!("ok      {:<28} {}\n", p.id, p.what));
            }
        }
        out.push_str(&format!(
            "\n{} error(s), {} warning(s), {} note(s): {}\n",
            self.count(Severity::Error),
            self.count(Severity::Warning),
            self.count(Severity::Info),
            if self.is_healthy() {
                "no error-level finding"
            } else {
                "fix the errors above"
            }
        ));
        out
    }

    fn sort(&mut self) {
        self.findings.sort_by_key(|f| f.severity);
    }
}

/// The master key file the server would use: the configured one, else `elevate.key` beside the
/// database (which `serve` generates on first start).
pub fn master_key_path(config: &Config) -> PathBuf {
    config
        .master_key_file
        .clone()
        .unwrap_or_else(|| config.data_dir().join("elevate.key"))
}

/// Runs every check against the deployment `config` describes.
pub async fn run(config: &Config, clock: &dyn Clock) -> Report {
    let mut report = Report::default();
    let now = clock.now();

    tls::public_url(&mut report, config);
    tls::certificate(&mut report, config, now);
    let key_path = master_key_path(config);
    keys::key_file(&mut report, config, &key_path);
    let master = match MasterKey::load(&key_path) {
        Ok(k) => Some(k),
        Err(e) => {
            report.error(
                "master_key.load",
                format!("cannot load the master key {}: {e}", key_path.display()),
                "point ELEVATE_MASTER_KEY_FILE (or master_key_file) at the key this database was \
                 created with; never generate a new one for a database that holds sealed secrets",
            );
            None
        }
    };

    let store = database::open(&mut report, config).await;
    // The network probes do not depend on each other: run them at once.
    let probes = async {
        let mut r = Report::default();
        let (smtp, oidc) = tokio::join!(
            services::smtp(config),
            services::oidc(config, store.as_ref())
        );
        for part in [smtp, oidc] {
            r.findings.extend(part.findings);
            r.passed.extend(part.passed);
        }
        r
    };
    let stored = async {
        let mut r = Report::default();
        if let Some(store) = &store {
            database::checks(&mut r, store, now).await;
            if let Some(master) = &master {
                keys::sealed_secrets(&mut r, store, master).await;
                targets::check(&mut r, store, master).await;
            }
            audit::check(&mut r, store, config, now).await;
            policy::check(&mut r, store).await;
        }
        r
    };
    let (probed, checked) = tokio::join!(probes, stored);
    for part in [probed, checked] {
        report.findings.extend(part.findings);
        report.passed.extend(part.passed);
    }
    if let Some(store) = store {
        store.close().await;
    }
    report.sort();
    report
}

/// `a, b, c` for messages.
fn list(items: &[String]) -> String {
    items.join(", ")
}

/// Opens the store, or says why not.
async fn connect(report: &mut Report, url: &str) -> Option<Store> {
    match Store::connect(url).await {
        Ok(s) => Some(s),
        Err(e) => {
            report.error(
                "store.connect",
                format!("cannot reach the store: {e}"),
                "check ELEVATE_DATABASE_URL (or database_url) and that the database is up",
            );
            None
        }
    }
}
