//! Services elevate talks to: the SMTP server (reachable, speaking, TLS) and each tenant's OpenID
//! provider (discovery answers). The probes are the ones `/readyz` uses.

use secrecy::ExposeSecret;

use super::{PROBE_TIMEOUT, Report};
use crate::config::Config;
use crate::store::Store;

/// `host:port` of an SMTP URL, for messages (the URL itself may carry a password).
fn smtp_host(url: &str) -> String {
    url::Url::parse(url)
        .ok()
        .and_then(|u| {
            let host = u.host_str()?.to_owned();
            Some(match u.port() {
                Some(p) => format!("{host}:{p}"),
                None => host,
            })
        })
        .unwrap_or_else(|| "the configured server".into())
}

pub async fn smtp(config: &Config) -> Report {
    let mut report = Report::default();
    let Some(url) = config
        .smtp_url
        .as_ref()
        .map(|s| s.expose_secret().to_owned())
        .filter(|s| !s.is_empty())
    else {
        report.warn(
            "mail.smtp",
            "no SMTP server is configured: sign-in by email link and mail notifications are \
             unavailable"
                .into(),
            "set ELEVATE_SMTP_URL=smtps://user:pass@host (TLS) or \
             smtp://user:pass@host:587?tls=required (STARTTLS)",
        );
        return report;
    };
    let host = smtp_host(&url);
    if let Ok(u) = url::Url::parse(&url)
        && u.scheme() == "smtp"
        && !u.query_pairs().any(|(k, v)| k == "tls" && v == "required")
    {
        report.warn(
            "mail.tls",
            format!(
                "mail to {host} may travel unencrypted (smtp:// without tls=required): sign-in \
                 links are bearer secrets"
            ),
            "use smtps://host or smtp://host:587?tls=required",
        );
    }
    match crate::notify::mail::probe_smtp(&url, PROBE_TIMEOUT).await {
        Ok(()) => report.ok(
            "mail.smtp",
            format!("the SMTP server {host} answers (EHLO, TLS as configured, NOOP)"),
        ),
        Err(e) => report.error(
            "mail.smtp",
            format!("the SMTP server {host} does not answer: {e}"),
            "check ELEVATE_SMTP_URL (host, port, TLS mode, credentials) and that the server \
             accepts connections from this machine",
        ),
    }
    report
}

pub async fn oidc(config: &Config, store: Option<&Store>) -> Report {
    let mut report = Report::default();
    let known = match store {
        Some(s) => s
            .tenants()
            .await
            .ok()
            .map(|t| t.into_iter().map(|t| t.slug).collect::<Vec<_>>()),
        None => None,
    };
    // All at once: one provider that does not answer must not hold up the others.
    let mut set = tokio::task::JoinSet::new();
    for (tenant, oidc) in &config.oidc {
        let (tenant, issuer) = (tenant.clone(), oidc.issuer.clone());
        set.spawn(async move {
            let outcome = crate::auth::oidc::probe_discovery(&issuer, PROBE_TIMEOUT).await;
            (tenant, issuer, outcome)
        });
    }
    let mut outcomes = set.join_all().await;
    outcomes.sort_by(|a, b| a.0.cmp(&b.0));
    for (tenant, issuer, outcome) in outcomes {
        if let Some(known) = &known
            && !known.contains(&tenant)
        {
            report.warn(
                "oidc.tenant",
                format!("[oidc.{tenant}] names no tenant of this store"),
                "use the tenant's slug as the section name, or remove the section",
            );
        }
        match outcome {
            Ok(()) => report.ok(
                "oidc.discovery",
                format!("{tenant}: {} answers discovery", issuer),
            ),
            Err(e) => report.error(
                "oidc.discovery",
                format!("{tenant}: OpenID discovery at {} fails: {e}", issuer),
                "check [oidc.<tenant>] issuer (its /.well-known/openid-configuration must answer \
                 from this machine) and the provider's status",
            ),
        }
    }
    report
}
