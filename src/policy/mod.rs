//! Policy as code: access profiles in TOML (DESIGN §8), validated into [`Profile`]s. Parsing is
//! pure; `apply` (in `admin`-style core below) stores a new policy version with its audit diff.

mod diff;
mod widen;

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};
use time::Duration;

pub use diff::{PolicyDiff, diff};
pub use widen::widening;

/// SSH certificate extensions a profile may allow (OpenSSH's standard set).
pub const SSH_EXTENSIONS: [&str; 5] = [
    "permit-pty",
    "permit-port-forwarding",
    "permit-agent-forwarding",
    "permit-X11-forwarding",
    "permit-user-rc",
];

const MAX_GRANT: Duration = Duration::days(30);
const MAX_CERT_TTL: Duration = Duration::hours(24);

/// What a profile grants over SSH.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct SshGrant {
    pub principals: Vec<String>,
    pub extensions: Vec<String>,
    pub force_command: Option<String>,
    pub source_address: Vec<String>,
    pub cert_ttl_secs: i64,
    /// Session recordings (`elevate host session`) keep what was typed too, not only the output.
    #[serde(default)]
    pub record_input: bool,
}

/// What a profile grants on a database target.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct DatabaseGrant {
    pub target: String,
    pub roles: Vec<String>,
    /// Receives what a login created during its grant (Postgres `REASSIGN OWNED`); None: the
    /// target's admin login.
    #[serde(default)]
    pub owner: Option<String>,
}

/// A validated access profile, as stored with its policy version.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Profile {
    pub name: String,
    pub description: String,
    pub default_duration_secs: i64,
    pub max_duration_secs: i64,
    pub requesters: Vec<String>,
    pub approvers: Vec<String>,
    pub approvals_required: u32,
    pub require_justification: bool,
    pub ticket_pattern: Option<String>,
    pub step_up: bool,
    pub break_glass: bool,
    pub auto_approve_groups: Vec<String>,
    pub pending_timeout_secs: i64,
    pub ssh: Option<SshGrant>,
    pub database: Option<DatabaseGrant>,
}

impl Profile {
    pub fn may_request(&self, groups: &[String]) -> bool {
        self.requesters.iter().any(|g| groups.contains(g))
    }

    pub fn max_duration(&self) -> Duration {
        Duration::seconds(self.max_duration_secs)
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPolicy {
    #[serde(default)]
    profile: Vec<RawProfile>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawProfile {
    name: String,
    #[serde(default)]
    description: String,
    default_duration: Option<String>,
    max_duration: Option<String>,
    #[serde(default)]
    requesters: Vec<String>,
    #[serde(default)]
    approvers: Vec<String>,
    approvals_required: Option<i64>,
    require_justification: Option<bool>,
    ticket_pattern: Option<String>,
    #[serde(default)]
    step_up: bool,
    #[serde(default)]
    break_glass: bool,
    #[serde(default)]
    auto_approve_groups: Vec<String>,
    pending_timeout: Option<String>,
    ssh: Option<RawSsh>,
    database: Option<RawDatabase>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSsh {
    #[serde(default)]
    principals: Vec<String>,
    extensions: Option<Vec<String>>,
    force_command: Option<String>,
    #[serde(default)]
    source_address: Vec<String>,
    cert_ttl: Option<String>,
    #[serde(default)]
    record_input: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDatabase {
    target: String,
    #[serde(default)]
    roles: Vec<String>,
    owner: Option<String>,
}

/// Everything wrong with a policy file, each naming its profile and field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid policy:\n  {}", .0.join("\n  "))]
pub struct PolicyError(pub Vec<String>);

/// Names of profiles, targets and database roles: ASCII letters, digits, `-`, `_`, `.`.
pub(crate) fn name_ok(s: &str, max: usize) -> bool {
    !s.is_empty()
        && s.len() <= max
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

/// Parses and validates a policy file. Nothing is stored here.
pub fn parse(source: &str) -> Result<Vec<Profile>, PolicyError> {
    let raw: RawPolicy = toml::from_str(source)
        .map_err(|e| PolicyError(vec![e.to_string().trim_end().replace('\n', "\n  ")]))?;
    let mut errors = Vec::new();
    let mut seen = BTreeSet::new();
    let mut profiles = Vec::new();
    for (i, p) in raw.profile.into_iter().enumerate() {
        let label = if p.name.is_empty() {
            format!("profile #{}", i + 1)
        } else {
            format!("profile {:?}", p.name)
        };
        let mut err = |field: &str, msg: String| errors.push(format!("{label}: {field}: {msg}"));
        if !name_ok(&p.name, 63) || p.name.contains('.') {
            err("name", "use 1-63 letters, digits, '-' or '_'".into());
        } else if !seen.insert(p.name.clone()) {
            err("name", "defined twice".into());
        }
        let duration = |field: &str,
                        text: &Option<String>,
                        default: Duration,
                        err: &mut dyn FnMut(&str, String)|
         -> Duration {
            match text {
                None => default,
                Some(t) => crate::duration::parse(t).unwrap_or_else(|e| {
                    err(field, e);
                    default
                }),
            }
        };
        let default_duration = duration(
            "default_duration",
            &p.default_duration,
            Duration::hours(1),
            &mut err,
        );
        let max_duration = duration("max_duration", &p.max_duration, default_duration, &mut err);
        if default_duration > max_duration {
            err(
                "default_duration",
                format!(
                    "{} is longer than max_duration {}",
                    crate::duration::format(default_duration),
                    crate::duration::format(max_duration)
                ),
            );
        }
        if max_duration > MAX_GRANT {
            err("max_duration", "at most 30d".into());
        }
        let pending_timeout = duration(
            "pending_timeout",
            &p.pending_timeout,
            Duration::hours(24),
            &mut err,
        );
        for (field, groups) in [
            ("requesters", &p.requesters),
            ("approvers", &p.approvers),
            ("auto_approve_groups", &p.auto_approve_groups),
        ] {
            if let Some(bad) = groups.iter().find(|g| !name_ok(g, 64)) {
                err(field, format!("invalid group name {bad:?}"));
            }
        }
        if p.requesters.is_empty() {
            err("requesters", "name at least one group that may ask".into());
        }
        let approvals_required = p.approvals_required.unwrap_or(1);
        if !(1..=10).contains(&approvals_required) {
            err("approvals_required", "must be between 1 and 10".into());
        }
        if p.approvers.is_empty() {
            err(
                "approvers",
                "name at least one group that may approve".into(),
            );
        }
        if let Some(pattern) = &p.ticket_pattern
            && let Err(e) = regex::Regex::new(pattern)
        {
            err(
                "ticket_pattern",
                format!("not a valid regular expression: {e}"),
            );
        }
        let ssh = p.ssh.map(|s| {
            if s.principals.is_empty() {
                err("ssh.principals", "name at least one principal".into());
            }
            if let Some(bad) = s.principals.iter().find(|x| !name_ok(x, 64)) {
                err("ssh.principals", format!("invalid principal {bad:?}"));
            }
            let extensions = s.extensions.unwrap_or_else(|| vec!["permit-pty".into()]);
            if let Some(bad) = extensions
                .iter()
                .find(|x| !SSH_EXTENSIONS.contains(&x.as_str()))
            {
                err(
                    "ssh.extensions",
                    format!(
                        "unknown extension {bad:?} (allowed: {})",
                        SSH_EXTENSIONS.join(", ")
                    ),
                );
            }
            if s.force_command
                .as_deref()
                .is_some_and(|c| c.trim().is_empty() || c.contains('\n'))
            {
                err(
                    "ssh.force_command",
                    "must be a non-empty single line".into(),
                );
            }
            if let Some(bad) = s.source_address.iter().find(|a| !cidr_ok(a)) {
                err(
                    "ssh.source_address",
                    format!("{bad:?} is not an IP address or CIDR block"),
                );
            }
            let ttl = duration("ssh.cert_ttl", &s.cert_ttl, Duration::hours(1), &mut err);
            if ttl > MAX_CERT_TTL {
                err("ssh.cert_ttl", "at most 24h".into());
            }
            SshGrant {
                principals: s.principals,
                extensions,
                force_command: s.force_command,
                source_address: s.source_address,
                cert_ttl_secs: ttl.whole_seconds(),
                record_input: s.record_input,
            }
        });
        let database = p.database.map(|d| {
            if !name_ok(&d.target, 64) {
                err(
                    "database.target",
                    "name the target set with `elevate admin target set`".into(),
                );
            }
            if d.roles.is_empty() {
                err("database.roles", "name at least one role to inherit".into());
            }
            if let Some(bad) = d.roles.iter().find(|r| !name_ok(r, 63) || r.contains('.')) {
                err("database.roles", format!("invalid role name {bad:?}"));
            }
            if let Some(owner) = d
                .owner
                .as_deref()
                .filter(|o| !name_ok(o, 63) || o.contains('.'))
            {
                err("database.owner", format!("invalid role name {owner:?}"));
            }
            DatabaseGrant {
                target: d.target,
                roles: d.roles,
                owner: d.owner,
            }
        });
        if ssh.is_none() && database.is_none() {
            err(
                "ssh/database",
                "a profile must grant something: add [profile.ssh] or [profile.database]".into(),
            );
        }
        profiles.push(Profile {
            name: p.name,
            description: p.description,
            default_duration_secs: default_duration.whole_seconds(),
            max_duration_secs: max_duration.whole_seconds(),
            requesters: p.requesters,
            approvers: p.approvers,
            approvals_required: u32::try_from(approvals_required).unwrap_or(1),
            require_justification: p.require_justification.unwrap_or(true),
            ticket_pattern: p.ticket_pattern,
            step_up: p.step_up,
            break_glass: p.break_glass,
            auto_approve_groups: p.auto_approve_groups,
            pending_timeout_secs: pending_timeout.whole_seconds(),
            ssh,
            database,
        });
    }
    if errors.is_empty() {
        Ok(profiles)
    } else {
        Err(PolicyError(errors))
    }
}

fn cidr_ok(s: &str) -> bool {
    let (addr, prefix) = s.split_once('/').map_or((s, None), |(a, p)| (a, Some(p)));
    let Ok(ip) = addr.parse::<std::net::IpAddr>() else {
        return false;
    };
    let max = if ip.is_ipv4() { 32 } else { 128 };
    prefix.is_none_or(|p| p.parse::<u8>().is_ok_and(|n| n <= max))
}

#[cfg(test)]
mod tests;
