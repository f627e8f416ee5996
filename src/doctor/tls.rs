//! The public URL (https, a domain name: WebAuthn needs one) and the TLS certificate (valid now
//! and for the next 30 days, for the public URL's host, its key kept private).

use std::net::IpAddr;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use time::{Duration, OffsetDateTime};
use x509_parser::extensions::GeneralName;

use super::Report;
use crate::config::Config;

/// A certificate expiring sooner than this is reported.
pub const EXPIRY_WARNING: Duration = Duration::days(30);

pub fn public_url(report: &mut Report, config: &Config) {
    let url = match url::Url::parse(&config.public_url) {
        Ok(u) => u,
        Err(e) => {
            report.error(
                "public_url.https",
                format!("the public URL {:?} does not parse: {e}", config.public_url),
                "set ELEVATE_PUBLIC_URL to https://<the name people use>",
            );
            return;
        }
    };
    if url.scheme() == "https" {
        report.ok("public_url.https", format!("the public URL {url} is https"));
    } else {
        report.error(
            "public_url.https",
            format!(
                "the public URL {url} is not https: browsers refuse passkeys (WebAuthn) and the \
                 __Host- session cookie on it"
            ),
            "set ELEVATE_PUBLIC_URL to https://...; behind a TLS-terminating proxy keep \
             ELEVATE_INSECURE_HTTP=1 but still give the https URL people use",
        );
    }
    match url.host() {
        Some(url::Host::Ipv4(_) | url::Host::Ipv6(_)) => report.error(
            "public_url.domain",
            format!(
                "the public URL names an IP address ({}): WebAuthn needs a domain name",
                url.host_str().unwrap_or_default()
            ),
            "give elevate a DNS name (e.g. https://elevate.example.com) and a certificate for it",
        ),
        Some(url::Host::Domain(d)) if d == "localhost" || d.ends_with(".localhost") => report.warn(
            "public_url.domain",
            format!(
                "the public URL's host is {d}: only this machine can sign in, and links in \
                     mail point nowhere for anyone else"
            ),
            "set ELEVATE_PUBLIC_URL to the https URL people and hosts reach elevate at",
        ),
        Some(url::Host::Domain(d)) => {
            report.ok("public_url.domain", format!("the public URL's host is {d}"));
        }
        None => report.error(
            "public_url.domain",
            format!("the public URL {url} names no host"),
            "set ELEVATE_PUBLIC_URL to https://<domain name>",
        ),
    }
}

/// The certificate file `serve` would use, the key file, and whether they were configured.
fn files(config: &Config) -> (PathBuf, PathBuf, bool) {
    match (&config.tls_cert, &config.tls_key) {
        (Some(c), Some(k)) => (c.clone(), k.clone(), true),
        _ => {
            let dir = config.data_dir();
            (
                dir.join(crate::config::DEV_CERT_FILE),
                dir.join(crate::config::DEV_KEY_FILE),
                false,
            )
        }
    }
}

pub fn certificate(report: &mut Report, config: &Config, now: OffsetDateTime) {
    let host = url::Url::parse(&config.public_url)
        .ok()
        .and_then(|u| u.host_str().map(|h| h.trim_matches(['[', ']']).to_owned()));
    if config.insecure_http {
        report.info(
            "tls.proxy",
            "elevate serves plain HTTP (ELEVATE_INSECURE_HTTP): TLS ends at a proxy".into(),
            format!(
                "check the proxy's certificate for {} and that nothing but the proxy reaches elevate",
                host.as_deref().unwrap_or("the public host")
            ),
        );
        return;
    }
    let (cert_path, key_path, configured) = files(config);
    if !configured && !cert_path.exists() {
        report.warn(
            "tls.certificate",
            "no TLS certificate is configured: serve will generate a self-signed development \
             certificate for localhost"
                .into(),
            "set ELEVATE_TLS_CERT and ELEVATE_TLS_KEY to a certificate for the public URL's host",
        );
        return;
    }
    let bytes = match std::fs::read(&cert_path) {
        Ok(b) => b,
        Err(e) => {
            report.error(
                "tls.certificate",
                format!(
                    "cannot read the TLS certificate {}: {e}",
                    cert_path.display()
                ),
                "set ELEVATE_TLS_CERT to a readable PEM certificate",
            );
            return;
        }
    };
    match inspect(&bytes) {
        Ok(cert) => judge(report, &cert, &cert_path, configured, host.as_deref(), now),
        Err(e) => report.error(
            "tls.certificate",
            format!(
                "the TLS certificate {} does not parse: {e}",
                cert_path.display()
            ),
            "set ELEVATE_TLS_CERT to a PEM file whose first block is the server certificate",
        ),
    }
    key_mode(report, &key_path);
}

/// What doctor needs from a certificate.
struct CertFacts {
    not_before: OffsetDateTime,
    not_after: OffsetDateTime,
    dns_names: Vec<String>,
    ips: Vec<IpAddr>,
    self_signed: bool,
}

fn inspect(pem_bytes: &[u8]) -> Result<CertFacts, String> {
    let (_, pem) = x509_parser::pem::parse_x509_pem(pem_bytes).map_err(|e| e.to_string())?;
    let cert = pem.parse_x509().map_err(|e| e.to_string())?;
    let at = |t: i64| OffsetDateTime::from_unix_timestamp(t).map_err(|e| e.to_string());
    let mut dns_names = Vec::new();
    let mut ips = Vec::new();
    if let Ok(Some(san)) = cert.subject_alternative_name() {
        for name in &san.value.general_names {
            match name {
                GeneralName::DNSName(d) => dns_names.push(d.to_ascii_lowercase()),
                GeneralName::IPAddress(b) => match b.len() {
                    4 => ips.push(IpAddr::from(<[u8; 4]>::try_from(*b).unwrap_or_default())),
                    16 => ips.push(IpAddr::from(<[u8; 16]>::try_from(*b).unwrap_or_default())),
                    _ => {}
                },
                _ => {}
            }
        }
    }
    Ok(CertFacts {
        not_before: at(cert.validity().not_before.timestamp())?,
        not_after: at(cert.validity().not_after.timestamp())?,
        dns_names,
        ips,
        self_signed: cert.subject() == cert.issuer(),
    })
}

/// RFC 6125: exact match, or a wildcard standing for exactly the leftmost label.
fn name_matches(pattern: &str, host: &str) -> bool {
    let host = host.to_ascii_lowercase();
    match pattern.strip_prefix("*.") {
        Some(suffix) => host
            .split_once('.')
            .is_some_and(|(first, rest)| !first.is_empty() && rest == suffix),
        None => pattern == host,
    }
}

fn judge(
    report: &mut Report,
    cert: &CertFacts,
    path: &Path,
    configured: bool,
    host: Option<&str>,
    now: OffsetDateTime,
) {
    let shown = path.display();
    let renew = if configured {
        "renew it (ACME/your CA) and replace ELEVATE_TLS_CERT and ELEVATE_TLS_KEY, then restart"
    } else {
        "set ELEVATE_TLS_CERT and ELEVATE_TLS_KEY to a certificate from your CA (or delete the \
         development certificate to have a new one generated)"
    };
    let day = |t: OffsetDateTime| t.date().to_string();
    if cert.not_after <= now {
        report.error(
            "tls.expiry",
            format!(
                "the TLS certificate {shown} expired on {}: clients refuse to connect",
                day(cert.not_after)
            ),
            renew,
        );
    } else if cert.not_before > now {
        report.error(
            "tls.expiry",
            format!(
                "the TLS certificate {shown} is not valid before {}",
                day(cert.not_before)
            ),
            "check this machine's clock, or use a certificate valid now",
        );
    } else if cert.not_after - now < EXPIRY_WARNING {
        report.warn(
            "tls.expiry",
            format!(
                "the TLS certificate {shown} expires on {} ({} days)",
                day(cert.not_after),
                (cert.not_after - now).whole_days()
            ),
            renew,
        );
    } else {
        report.ok(
            "tls.expiry",
            format!(
                "the TLS certificate is valid until {} ({} days)",
                day(cert.not_after),
                (cert.not_after - now).whole_days()
            ),
        );
    }
    if let Some(host) = host {
        let covered = match host.parse::<IpAddr>() {
            Ok(ip) => cert.ips.contains(&ip),
            Err(_) => cert.dns_names.iter().any(|p| name_matches(p, host)),
        };
        let names: Vec<String> = cert
            .dns_names
            .iter()
            .cloned()
            .chain(cert.ips.iter().map(IpAddr::to_string))
            .collect();
        if covered {
            report.ok(
                "tls.host",
                format!("the TLS certificate covers the public host {host}"),
            );
        } else {
            report.error(
                "tls.host",
                format!(
                    "the TLS certificate {shown} is for {} but the public URL's host is {host}",
                    if names.is_empty() {
                        "no name (no subjectAltName)".to_owned()
                    } else {
                        names.join(", ")
                    }
                ),
                "use a certificate whose subjectAltName names the public URL's host, or fix ELEVATE_PUBLIC_URL",
            );
        }
    }
    if cert.self_signed {
        report.warn(
            "tls.self_signed",
            format!(
                "the TLS certificate {shown} is self-signed{}: browsers warn, and every CLI and \
                 host needs --ca-cert or --pin",
                if configured {
                    ""
                } else {
                    " (the generated development certificate)"
                }
            ),
            "use a certificate from a CA your people and hosts trust (ACME/Let's Encrypt, or your internal CA)",
        );
    }
}

fn key_mode(report: &mut Report, path: &Path) {
    let Ok(meta) = std::fs::metadata(path) else {
        report.error(
            "tls.key",
            format!("cannot read the TLS key {}", path.display()),
            "set ELEVATE_TLS_KEY to the certificate's private key",
        );
        return;
    };
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        report.error(
            "tls.key",
            format!(
                "the TLS key {} has mode {mode:04o}: other users can read it",
                path.display()
            ),
            format!("chmod 600 {}", path.display()),
        );
    } else {
        report.ok("tls.key", format!("the TLS key has mode {mode:04o}"));
    }
}

#[cfg(test)]
mod tests {
    use super::name_matches;

    #[test]
    fn wildcards_stand_for_one_label() {
        assert!(name_matches("elevate.example.com", "Elevate.Example.com"));
        assert!(name_matches("*.example.com", "elevate.example.com"));
        assert!(!name_matches("*.example.com", "example.com"));
        assert!(!name_matches("*.example.com", "a.b.example.com"));
        assert!(!name_matches("example.com", "elevate.example.com"));
    }
}
