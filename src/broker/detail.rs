//! A request with the people around it, for `GET /api/v1/requests/{id}` and `elevate status ID`:
//! the requester's and approvers' addresses, and each decision with its comment, as the audit
//! log recorded them (comments live only there).

use std::collections::HashMap;

use time::OffsetDateTime;
use uuid::Uuid;

use super::Shown;
use crate::audit::{Actor, Record};
use crate::error::AppResult;
use crate::model::{Tenant, User};
use crate::store::{Store, TenantTx};

/// A decision as the audit log has it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    /// The deciding person's address (or the operator or elevate).
    pub by: String,
    /// `approved`, `denied` or `extension_denied`.
    pub decision: &'static str,
    pub at: OffsetDateTime,
    pub comment: Option<String>,
}

#[derive(Debug, Clone)]
pub struct Detail {
    pub shown: Shown,
    pub requester_email: String,
    /// The requester's groups now (what approvers weigh a request against).
    pub requester_groups: Vec<String>,
    /// Address of each approver of the request.
    pub approver_emails: HashMap<Uuid, String>,
    pub decisions: Vec<Decision>,
    /// The request's audit events, oldest first (the request page's timeline).
    pub events: Vec<Record>,
}

/// Request `id`, if `user` may see it, with its people and decisions: one read transaction.
pub async fn load(store: &Store, tenant: &Tenant, user: &User, id: Uuid) -> AppResult<Detail> {
    let mut tx = store.read(tenant.tenant_id).await?;
    let shown = Shown::from(super::service::load_in(&mut tx, user, id).await?);
    let detail = fill(&mut tx, &mut People::default(), shown).await?;
    tx.commit().await?;
    Ok(detail)
}

/// A page of listed requests (already filtered to what the viewer may see) with their people
/// and decisions, in one read transaction; each person is read once.
pub async fn of_listed(
    store: &Store,
    tenant: &Tenant,
    listed: Vec<super::service::Listed>,
) -> AppResult<Vec<Detail>> {
    let mut tx = store.read(tenant.tenant_id).await?;
    let mut people = People::default();
    let mut out = Vec::with_capacity(listed.len());
    for l in listed {
        out.push(fill(&mut tx, &mut people, Shown::from((l.stored, l.profile))).await?);
    }
    tx.commit().await?;
    Ok(out)
}

/// People read so far: id → (address, groups).
#[derive(Default)]
struct People(HashMap<Uuid, (String, Vec<String>)>);

impl People {
    async fn get(
        &mut self,
        tx: &mut TenantTx,
        id: Uuid,
    ) -> AppResult<Option<&(String, Vec<String>)>> {
        if let std::collections::hash_map::Entry::Vacant(slot) = self.0.entry(id)
            && let Some(user) = tx.user_by_id(id).await?
        {
            slot.insert((user.email, user.group_names.0));
        }
        Ok(self.0.get(&id))
    }
}

async fn fill(tx: &mut TenantTx, people: &mut People, shown: Shown) -> AppResult<Detail> {
    let r = &shown.stored.request;
    let (requester_email, requester_groups) = people
        .get(tx, r.requester)
        .await?
        .cloned()
        .unwrap_or_default();
    let mut approver_emails = HashMap::new();
    for a in &r.approvals {
        if let Some((email, _)) = people.get(tx, a.approver).await? {
            approver_emails.insert(a.approver, email.clone());
        }
    }
    let events = tx.audit_events_for_request(r.id).await?;
    Ok(Detail {
        decisions: decisions(&events),
        events,
        requester_email,
        requester_groups,
        approver_emails,
        shown,
    })
}

/// What a grant has issued so far: certificates and database logins, and how many still work.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Issued {
    pub certificates: usize,
    pub certificates_valid: usize,
    pub db_logins: usize,
    pub db_logins_live: usize,
}

/// [`Issued`] for each of `requests` (already checked visible to the viewer), in one read
/// transaction.
pub async fn issued_for(
    store: &Store,
    tenant: &Tenant,
    requests: &[Uuid],
    now: OffsetDateTime,
) -> AppResult<HashMap<Uuid, Issued>> {
    let mut tx = store.read(tenant.tenant_id).await?;
    let mut out = HashMap::new();
    for id in requests {
        let certs = tx.ssh_certs_for_request(*id).await?;
        let logins = tx.db_logins_for_request(*id).await?;
        out.insert(
            *id,
            Issued {
                certificates: certs.len(),
                certificates_valid: certs
                    .iter()
                    .filter(|c| c.revoked_at.is_none() && c.valid_before > now)
                    .count(),
                db_logins: logins.len(),
                db_logins_live: logins
                    .iter()
                    .filter(|l| l.cleaned_up_at.is_none() && l.revoked_at.is_none())
                    .count(),
            },
        );
    }
    tx.commit().await?;
    Ok(out)
}

/// Decisions in the order made. A comment is its own event, written right after the decision
/// by the same actor.
fn decisions(events: &[Record]) -> Vec<Decision> {
    let mut out: Vec<Decision> = Vec::new();
    for e in events {
        let decision = match e.action.as_str() {
            "request.approved" => "approved",
            "request.denied" => "denied",
            "grant.extension_denied" => "extension_denied",
            "request.commented" => {
                let comment = e.details.0["comment"].as_str().map(str::to_owned);
                if let Some(last) = out
                    .iter_mut()
                    .rev()
                    .find(|d| d.by == by(&e.actor) && d.comment.is_none())
                {
                    last.comment = comment;
                }
                continue;
            }
            _ => continue,
        };
        out.push(Decision {
            by: by(&e.actor),
            decision,
            at: e.at,
            comment: None,
        });
    }
    out
}

fn by(actor: &str) -> String {
    Actor::person_in(actor).unwrap_or(actor).to_owned()
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn event(action: &str, actor: &str, details: serde_json::Value) -> Record {
        Record {
            tenant_id: Uuid::nil(),
            seq: 0,
            at: OffsetDateTime::UNIX_EPOCH,
            actor: actor.into(),
            action: action.into(),
            subject: String::new(),
            request_id: None,
            ip: None,
            user_agent: None,
            details: sqlx::types::Json(details),
            prev_hash: vec![],
            hash: vec![],
        }
    }

    #[test]
    fn each_comment_joins_the_decision_of_its_author() {
        let events = [
            event("request.submitted", "user:alice@x", json!({})),
            event("request.approved", "user:bob@x", json!({})),
            event("request.denied", "token:0a:dave@x", json!({})),
            event(
                "request.commented",
                "token:0a:dave@x",
                json!({"comment": "not now"}),
            ),
        ];
        let got = decisions(&events);
        assert_eq!(got.len(), 2);
        assert_eq!((got[0].by.as_str(), got[0].decision), ("bob@x", "approved"));
        assert_eq!(got[0].comment, None);
        assert_eq!((got[1].by.as_str(), got[1].decision), ("dave@x", "denied"));
        assert_eq!(got[1].comment.as_deref(), Some("not now"));
    }
}
