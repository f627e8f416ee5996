//! The audit log's vocabulary: events, records and their hash chain. It lives below the store,
//! which appends and reads records, and below `audit`, whose services sign, export and verify
//! them; writer and verifier agree byte for byte because both use this.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use time::OffsetDateTime;
use uuid::Uuid;

/// Who is acting and from where, for the audit record.
#[derive(Debug, Clone)]
pub struct Ctx {
    pub actor: Actor,
    pub origin: Origin,
    pub now: OffsetDateTime,
}

impl Ctx {
    pub fn event(&self, action: &'static str, subject: impl Into<String>) -> NewEvent {
        NewEvent::new(self.actor.clone(), action, subject).origin(self.origin.clone())
    }
}

/// The hash that precedes a tenant's first event.
pub const GENESIS_HASH: [u8; 32] = [0u8; 32];

/// Who did it. Rendered as `kind:identifier` in the `actor` column.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Actor {
    User {
        id: Uuid,
        email: String,
    },
    Token {
        id: Uuid,
        email: String,
    },
    /// An operator at the server's command line (`elevate admin ...`), named by OS user.
    Cli {
        os_user: String,
    },
    /// An SSH host's helper (`elevate host session`), by its registered name.
    Host {
        id: Uuid,
        name: String,
    },
    /// elevate itself (reaper, demo seeding, start-up).
    System,
}

impl Actor {
    pub fn cli() -> Self {
        let os_user = std::env::var("SUDO_USER")
            .or_else(|_| std::env::var("USER"))
            .unwrap_or_else(|_| "unknown".into());
        Actor::Cli { os_user }
    }

    pub fn render(&self) -> String {
        match self {
            Actor::User { email, .. } => format!("user:{email}"),
            Actor::Token { id, email } => format!("token:{id}:{email}"),
            Actor::Cli { os_user } => format!("cli:{os_user}"),
            Actor::Host { name, .. } => format!("host:{name}"),
            Actor::System => "system".into(),
        }
    }

    /// The person's address in a rendered actor (`user:EMAIL`, `token:ID:EMAIL`); None for an
    /// operator or elevate itself.
    pub fn person_in(rendered: &str) -> Option<&str> {
        if let Some(email) = rendered.strip_prefix("user:") {
            return Some(email);
        }
        let rest = rendered.strip_prefix("token:")?;
        Some(rest.split_once(':').map_or(rest, |(_, email)| email))
    }
}

/// Where an action came from.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Origin {
    pub ip: Option<String>,
    pub user_agent: Option<String>,
}

/// An event to append. Details are JSON and must never carry a secret.
#[derive(Debug, Clone)]
pub struct NewEvent {
    pub actor: Actor,
    pub action: &'static str,
    pub subject: String,
    pub request_id: Option<Uuid>,
    pub origin: Origin,
    pub details: serde_json::Value,
}

impl NewEvent {
    pub fn new(actor: Actor, action: &'static str, subject: impl Into<String>) -> Self {
        Self {
            actor,
            action,
            subject: subject.into(),
            request_id: None,
            origin: Origin::default(),
            details: serde_json::Value::Object(Default::default()),
        }
    }

    pub fn details(mut self, details: serde_json::Value) -> Self {
        self.details = details;
        self
    }

    pub fn origin(mut self, origin: Origin) -> Self {
        self.origin = origin;
        self
    }

    pub fn request(mut self, request_id: Uuid) -> Self {
        self.request_id = Some(request_id);
        self
    }
}

/// A stored event, as read back from the store and as exported.
#[derive(
    Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize, sqlx::FromRow, utoipa::ToSchema,
)]
pub struct Record {
    pub tenant_id: Uuid,
    pub seq: i64,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub at: OffsetDateTime,
    pub actor: String,
    pub action: String,
    pub subject: String,
    pub request_id: Option<Uuid>,
    pub ip: Option<String>,
    pub user_agent: Option<String>,
    #[schema(value_type = Object)]
    pub details: sqlx::types::Json<serde_json::Value>,
    /// Hex of the previous event's hash.
    #[serde(with = "hex::serde")]
    #[schema(value_type = String)]
    pub prev_hash: Vec<u8>,
    /// Hex of SHA-256 over this event's canonical form and `prev_hash`.
    #[serde(with = "hex::serde")]
    #[schema(value_type = String)]
    pub hash: Vec<u8>,
}

/// The fields covered by the hash, in a fixed order. serde_json writes struct fields in
/// declaration order and object keys sorted (no `preserve_order`), so this is canonical.
#[derive(Serialize)]
struct Canonical<'a> {
    v: u8,
    tenant_id: &'a Uuid,
    seq: i64,
    at: String,
    actor: &'a str,
    action: &'a str,
    subject: &'a str,
    request_id: &'a Option<Uuid>,
    ip: &'a Option<String>,
    user_agent: &'a Option<String>,
    details: &'a serde_json::Value,
}

impl Record {
    pub fn canonical_bytes(&self) -> Result<Vec<u8>, serde_json::Error> {
        let at = self
            .at
            .format(&time::format_description::well_known::Rfc3339)
            .map_err(serde::ser::Error::custom)?;
        serde_json::to_vec(&Canonical {
            v: 1,
            tenant_id: &self.tenant_id,
            seq: self.seq,
            at,
            actor: &self.actor,
            action: &self.action,
            subject: &self.subject,
            request_id: &self.request_id,
            ip: &self.ip,
            user_agent: &self.user_agent,
            details: &self.details.0,
        })
    }

    pub fn compute_hash(&self) -> Result<[u8; 32], serde_json::Error> {
        Ok(chain_hash(&self.prev_hash, &self.canonical_bytes()?))
    }
}

pub fn chain_hash(prev_hash: &[u8], canonical: &[u8]) -> [u8; 32] {
    Sha256::new()
        .chain_update(prev_hash)
        .chain_update(canonical)
        .finalize()
        .into()
}

/// Where a chain stops being valid.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChainBreak {
    #[error("event {seq}: sequence gap (expected {expected})")]
    Gap { seq: i64, expected: i64 },
    #[error("event {seq}: prev_hash does not match the previous event's hash")]
    Link { seq: i64 },
    #[error("event {seq}: content does not match its hash (edited)")]
    Content { seq: i64 },
}

/// Checks a tenant's events in order from sequence 1: gapless, linked, unedited.
pub fn verify_chain(records: &[Record]) -> Result<(), ChainBreak> {
    let mut prev = GENESIS_HASH.to_vec();
    for (i, r) in records.iter().enumerate() {
        let expected = i as i64 + 1;
        if r.seq != expected {
            return Err(ChainBreak::Gap {
                seq: r.seq,
                expected,
            });
        }
        if r.prev_hash != prev {
            return Err(ChainBreak::Link { seq: r.seq });
        }
        match r.compute_hash() {
            Ok(h) if h.as_slice() == r.hash.as_slice() => {}
            _ => return Err(ChainBreak::Content { seq: r.seq }),
        }
        prev = r.hash.clone();
    }
    Ok(())
}

/// A signed statement "the chain of `tenant_id` had `head_hash` at `seq` at time `at`".
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Checkpoint {
    pub tenant_id: Uuid,
    pub seq: i64,
    #[serde(with = "hex::serde")]
    pub head_hash: Vec<u8>,
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
    pub signing_key_id: Uuid,
    /// Heads only: how many checkpoints the export carries before it, so dropping one is
    /// detected too.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checkpoints: Option<u64>,
    /// PEM-armoured SSHSIG.
    pub signature: String,
}

/// Which events to show or export. Empty means all.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Filter {
    /// Part of the actor (`user:alice@example.com`, `token:...`, `system`).
    pub actor: Option<String>,
    /// An exact action (`request.approved`).
    pub action: Option<String>,
    pub request_id: Option<Uuid>,
    /// From this time on (inclusive) ...
    pub from: Option<OffsetDateTime>,
    /// ... until this time (exclusive).
    pub to: Option<OffsetDateTime>,
}

impl Filter {
    pub fn is_empty(&self) -> bool {
        *self == Filter::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chain(n: i64) -> Vec<Record> {
        let tenant_id = Uuid::new_v4();
        let mut prev = GENESIS_HASH.to_vec();
        (1..=n)
            .map(|seq| {
                let mut r = Record {
                    tenant_id,
                    seq,
                    at: time::macros::datetime!(2030-01-01 00:00:00 UTC),
                    actor: "system".into(),
                    action: "test.event".into(),
                    subject: format!("s{seq}"),
                    request_id: None,
                    ip: None,
                    user_agent: None,
                    details: sqlx::types::Json(serde_json::json!({"b": 1, "a": [seq]})),
                    prev_hash: prev.clone(),
                    hash: vec![],
                };
                r.hash = r.compute_hash().unwrap().to_vec();
                prev = r.hash.clone();
                r
            })
            .collect()
    }

    #[test]
    fn intact_chain_verifies() {
        assert_eq!(verify_chain(&chain(5)), Ok(()));
    }

    #[test]
    fn edits_gaps_and_relinks_are_named() {
        let mut c = chain(5);
        c[2].subject = "edited".into();
        assert_eq!(verify_chain(&c), Err(ChainBreak::Content { seq: 3 }));

        let mut c = chain(5);
        c.remove(1);
        assert_eq!(
            verify_chain(&c),
            Err(ChainBreak::Gap {
                seq: 3,
                expected: 2
            })
        );

        let mut c = chain(5);
        c[3].prev_hash = vec![1; 32];
        assert_eq!(verify_chain(&c), Err(ChainBreak::Link { seq: 4 }));
    }

    #[test]
    fn canonical_form_sorts_detail_keys() {
        let c = chain(1);
        let text = String::from_utf8(c[0].canonical_bytes().unwrap()).unwrap();
        assert!(text.contains(r#""details":{"a":[1],"b":1}"#), "{text}");
    }
}
