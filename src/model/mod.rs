//! The domain vocabulary shared by the store and the core modules (DESIGN §2).

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use sqlx::types::Json;
use time::OffsetDateTime;
use uuid::Uuid;

pub mod audit;

/// Standing roles only let people use elevate; they grant no production access.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Serialize,
    Deserialize,
    utoipa::ToSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Requester,
    Approver,
    Admin,
    Auditor,
}

impl Role {
    pub const ALL: [Role; 4] = [Role::Requester, Role::Approver, Role::Admin, Role::Auditor];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Requester => "requester",
            Role::Approver => "approver",
            Role::Admin => "admin",
            Role::Auditor => "auditor",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Role {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Role::ALL
            .into_iter()
            .find(|r| r.as_str() == s)
            .ok_or_else(|| {
                format!("unknown role {s:?} (expected requester, approver, admin or auditor)")
            })
    }
}

/// What an API token may do. A token acts only within its scopes *and* its user's roles.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Serialize,
    Deserialize,
    utoipa::ToSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum Scope {
    /// Read own identity, profiles and own requests.
    Read,
    /// File, cancel and use own requests (certificates, database logins).
    Request,
    Approve,
    Admin,
    Audit,
    /// Read this tenant's series on `/metrics` and its details on `/readyz` (monitoring).
    Metrics,
}

impl Scope {
    pub const ALL: [Scope; 6] = [
        Scope::Read,
        Scope::Request,
        Scope::Approve,
        Scope::Admin,
        Scope::Audit,
        Scope::Metrics,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Read => "read",
            Scope::Request => "request",
            Scope::Approve => "approve",
            Scope::Admin => "admin",
            Scope::Audit => "audit",
            Scope::Metrics => "metrics",
        }
    }

    /// The standing role a user needs for a token to carry this scope.
    pub fn required_role(self) -> Option<Role> {
        match self {
            Scope::Read => None,
            Scope::Request => Some(Role::Requester),
            Scope::Approve => Some(Role::Approver),
            Scope::Admin => Some(Role::Admin),
            Scope::Audit => Some(Role::Auditor),
            // Target names, connection errors and backlogs are what the admin pages show.
            Scope::Metrics => Some(Role::Admin),
        }
    }

    /// The scopes a user's roles allow: the default for a new token.
    pub fn allowed_for(roles: &[Role]) -> Vec<Scope> {
        Scope::ALL
            .into_iter()
            .filter(|s| s.required_role().is_none_or(|r| roles.contains(&r)))
            .collect()
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Scope {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Scope::ALL
            .into_iter()
            .find(|r| r.as_str() == s)
            .ok_or_else(|| {
                format!(
                    "unknown scope {s:?} (expected read, request, approve, admin, audit or metrics)"
                )
            })
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, sqlx::FromRow)]
pub struct Tenant {
    pub tenant_id: Uuid,
    pub slug: String,
    pub name: String,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
}

/// A tenant slug appears in URLs (`/t/{tenant}/...`): lowercase letters, digits and dashes.
pub fn validate_slug(slug: &str) -> Result<(), String> {
    let ok = (2..=63).contains(&slug.len())
        && slug
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !slug.starts_with('-')
        && !slug.ends_with('-');
    if ok {
        Ok(())
    } else {
        Err(format!(
            "invalid tenant slug {slug:?}: use 2-63 lowercase letters, digits and inner dashes"
        ))
    }
}

/// Emails are compared case-insensitively, so they are stored lowercased and trimmed. Every entry
/// point (admin CLI and pages, invitations, sign-in links, single sign-on claims, token creation)
/// goes through here, so one person has one address. Whitespace, control characters and invisible
/// characters (zero-width spaces and joiners, bidirectional controls, see
/// [`crate::text::is_invisible`]) are refused: they would make a second account that looks like
/// the first.
pub fn normalize_email(email: &str) -> Result<String, String> {
    let e = email.trim().to_lowercase();
    let valid = e.len() <= 254
        && e.split_once('@').is_some_and(|(local, domain)| {
            !local.is_empty()
                && domain.contains('.')
                && !domain.starts_with('.')
                && !domain.ends_with('.')
        })
        && !e
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || crate::text::is_invisible(c));
    if valid {
        Ok(e)
    } else {
        Err(format!(
            "invalid email address {:?}",
            crate::text::shown(email.trim())
        ))
    }
}

#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct User {
    pub tenant_id: Uuid,
    pub id: Uuid,
    pub email: String,
    pub display_name: String,
    pub roles: Json<Vec<Role>>,
    pub group_names: Json<Vec<String>>,
    pub disabled: bool,
    pub created_at: OffsetDateTime,
    pub updated_at: OffsetDateTime,
}

impl User {
    pub fn has_role(&self, role: Role) -> bool {
        self.roles.0.contains(&role)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct ApiToken {
    pub tenant_id: Uuid,
    pub id: Uuid,
    pub user_id: Uuid,
    pub name: String,
    pub secret_hash: Vec<u8>,
    pub scopes: Json<Vec<Scope>>,
    pub created_at: OffsetDateTime,
    pub expires_at: Option<OffsetDateTime>,
    pub revoked_at: Option<OffsetDateTime>,
    /// When it last authenticated a call, to the hour (written at most once an hour).
    pub last_used_at: Option<OffsetDateTime>,
}

impl ApiToken {
    pub fn is_usable(&self, now: OffsetDateTime) -> bool {
        self.revoked_at.is_none() && self.expires_at.is_none_or(|e| now < e)
    }
}

/// One applied policy file, kept for history and diffs.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct PolicyVersion {
    pub tenant_id: Uuid,
    pub version: i64,
    pub source: String,
    pub digest: Vec<u8>,
    pub created_by: String,
    pub created_at: OffsetDateTime,
}

/// A one-time sign-in link, bound to the browser that asked for it.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct SigninLink {
    pub tenant_id: Uuid,
    pub id: Uuid,
    pub email: String,
    pub secret_hash: Vec<u8>,
    pub browser_nonce_hash: Vec<u8>,
    pub created_at: OffsetDateTime,
    pub expires_at: OffsetDateTime,
    pub used_at: Option<OffsetDateTime>,
}

/// A signed-in browser. `expires_at` is the absolute limit; idle time counts from `last_seen_at`.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct Session {
    pub tenant_id: Uuid,
    pub id: Uuid,
    pub user_id: Uuid,
    pub secret_hash: Vec<u8>,
    pub created_at: OffsetDateTime,
    pub last_seen_at: OffsetDateTime,
    pub expires_at: OffsetDateTime,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum KeyPurpose {
    SshUserCa,
    AuditSigning,
}

impl KeyPurpose {
    pub fn as_str(self) -> &'static str {
        match self {
            KeyPurpose::SshUserCa => "ssh_user_ca",
            KeyPurpose::AuditSigning => "audit_signing",
        }
    }
}

/// A tenant's signing key: public half in the clear, private half sealed under the master key.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct CaKey {
    pub tenant_id: Uuid,
    pub id: Uuid,
    pub purpose: String,
    pub public_key: String,
    pub private_sealed: Vec<u8>,
    pub active: bool,
    pub created_at: OffsetDateTime,
    pub retired_at: Option<OffsetDateTime>,
    pub publish_until: Option<OffsetDateTime>,
}

impl CaKey {
    /// Associated data binding a sealed private key to its tenant and key row.
    pub fn seal_context(tenant_id: Uuid, key_id: Uuid) -> String {
        format!("ca_key:{tenant_id}:{key_id}")
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TargetKind {
    Postgres,
    Mysql,
}

impl TargetKind {
    pub fn as_str(self) -> &'static str {
        match self {
            TargetKind::Postgres => "postgres",
            TargetKind::Mysql => "mysql",
        }
    }
}

impl FromStr for TargetKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "postgres" => Ok(TargetKind::Postgres),
            "mysql" => Ok(TargetKind::Mysql),
            _ => Err(format!(
                "unknown target kind {s:?} (expected postgres or mysql)"
            )),
        }
    }
}

/// A database elevate manages short-lived logins on; its admin password is sealed.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct Target {
    pub tenant_id: Uuid,
    pub id: Uuid,
    pub name: String,
    pub kind: String,
    pub url: String,
    pub admin_secret_sealed: Vec<u8>,
    pub created_at: OffsetDateTime,
    pub updated_at: OffsetDateTime,
}

impl Target {
    pub fn seal_context(tenant_id: Uuid, target_id: Uuid) -> String {
        format!("target:{tenant_id}:{target_id}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slugs_and_emails_are_validated() {
        assert!(validate_slug("demo").is_ok());
        assert!(validate_slug("acme-prod-2").is_ok());
        for bad in ["", "a", "Demo", "-x", "x-", "a/b", "a b", &"x".repeat(64)] {
            assert!(validate_slug(bad).is_err(), "{bad}");
        }
        assert_eq!(
            normalize_email(" Alice@Example.COM ").unwrap(),
            "alice@example.com"
        );
        for bad in ["alice", "@x.com", "a@b", "a@.com", "a b@x.com", "a@x.com."] {
            assert!(normalize_email(bad).is_err(), "{bad}");
        }
        // Invisible characters would make a look-alike second person.
        for bad in [
            "bob\u{200b}@example.com",
            "bob@exa\u{200d}mple.com",
            "\u{feff}bob@example.com",
            "bob\u{202e}@example.com",
            "bob\u{2060}@example.com",
            "bob\0@example.com",
        ] {
            let err = normalize_email(bad).unwrap_err();
            assert!(err.contains("[U+"), "{err}");
        }
        assert_eq!(
            normalize_email("Bob@EXAMPLE.com ").unwrap(),
            "bob@example.com"
        );
    }

    #[test]
    fn scopes_follow_roles() {
        assert_eq!(Scope::allowed_for(&[]), vec![Scope::Read]);
        assert_eq!(
            Scope::allowed_for(&[Role::Requester, Role::Auditor]),
            vec![Scope::Read, Scope::Request, Scope::Audit]
        );
        assert!("root".parse::<Role>().is_err());
        assert_eq!("approve".parse::<Scope>(), Ok(Scope::Approve));
        assert_eq!("metrics".parse::<Scope>(), Ok(Scope::Metrics));
        assert!(Scope::allowed_for(&[Role::Admin]).contains(&Scope::Metrics));
        assert!(!Scope::allowed_for(&[Role::Auditor, Role::Approver]).contains(&Scope::Metrics));
    }
}

/// A registered passkey. `passkey` is webauthn-rs's serialised credential (public key and
/// counter): not secret, but it stays out of the audit log and the pages.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct PasskeyRecord {
    pub id: Uuid,
    pub user_id: Uuid,
    pub credential_id: String,
    pub name: String,
    pub passkey: String,
    pub created_at: OffsetDateTime,
    pub last_used_at: Option<OffsetDateTime>,
}

/// What a WebAuthn ceremony is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CeremonyPurpose {
    Register,
    SignIn,
    StepUp,
}

impl CeremonyPurpose {
    pub fn as_str(self) -> &'static str {
        match self {
            CeremonyPurpose::Register => "register",
            CeremonyPurpose::SignIn => "sign_in",
            CeremonyPurpose::StepUp => "step_up",
        }
    }
}

/// A ceremony in progress, kept server-side until it finishes or expires.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct StoredCeremony {
    pub id: Uuid,
    pub user_id: Option<Uuid>,
    pub purpose: String,
    pub binding: String,
    pub state: String,
    pub expires_at: OffsetDateTime,
}

/// A policy version that widens access, waiting for a second admin (`policy_two_person`).
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct PolicyProposal {
    pub id: Uuid,
    pub base_version: i64,
    pub source: String,
    pub digest: Vec<u8>,
    /// JSON list of the changes that widen access.
    pub widening: String,
    pub proposed_by: String,
    pub proposer_id: Option<Uuid>,
    pub state: String,
    pub decided_by: Option<String>,
    pub created_at: OffsetDateTime,
    pub decided_at: Option<OffsetDateTime>,
}

/// A CLI login waiting for a person (RFC 8628). The device code is stored only as its hash.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct DeviceGrant {
    pub id: Uuid,
    pub user_code: String,
    /// What asked: the CLI's user agent and host name.
    pub client: String,
    pub ip: Option<String>,
    /// Asks for the admin scope (`elevate login --admin`).
    pub admin: bool,
    pub state: String,
    pub user_id: Option<Uuid>,
    pub created_at: OffsetDateTime,
    pub expires_at: OffsetDateTime,
    pub last_polled_at: Option<OffsetDateTime>,
}
