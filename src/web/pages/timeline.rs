//! A request's audit events as sentences people read ("bob approved: ok", "certificate 7407...
//! issued for deploy, valid until 14:05"): names instead of ids, comments and reasons inline,
//! the channel (web, API token, server command line, elevate itself) apart, the stored details
//! behind a disclosure as plain fields.

use serde_json::Value;
use time::OffsetDateTime;

use super::when;
use crate::audit::Actor;
use crate::text::shown_owned;

pub struct Step {
    pub at: String,
    pub sentence: String,
    /// How it came: web, API token, server command line, elevate.
    pub channel: String,
    /// The stored details as `field: value` lines (no JSON, no ids of tokens).
    pub details: Vec<(String, String)>,
}

/// (who, channel) from the audit log's actor (`user:EMAIL`, `token:ID:EMAIL`, `cli:USER`,
/// `system`).
fn who(actor: &str) -> (String, &'static str) {
    if let Some(email) = Actor::person_in(actor) {
        let channel = if actor.starts_with("user:") {
            "web"
        } else {
            "API token"
        };
        return (email.to_owned(), channel);
    }
    if let Some(user) = actor.strip_prefix("cli:") {
        return (format!("{user} (operator)"), "server command line");
    }
    if let Some(host) = actor.strip_prefix("host:") {
        return (host.to_owned(), "SSH host");
    }
    ("elevate".to_owned(), "elevate")
}

fn text(details: &Value, key: &str) -> String {
    match &details[key] {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

fn at_epoch(details: &Value, key: &str) -> String {
    details[key]
        .as_i64()
        .and_then(|t| OffsetDateTime::from_unix_timestamp(t).ok())
        .map(when)
        .unwrap_or_default()
}

fn with(base: String, extra: &str, prefix: &str) -> String {
    if extra.trim().is_empty() {
        base
    } else {
        format!("{base}{prefix}{extra}")
    }
}

/// One event as a sentence.
pub fn sentence(action: &str, actor: &str, details: &Value) -> String {
    let (name, _) = who(actor);
    let d = details;
    match action {
        "request.submitted" => {
            let glass = if d["break_glass"] == Value::Bool(true) {
                " as break-glass"
            } else {
                ""
            };
            let secs = d["duration_secs"].as_i64().unwrap_or(0);
            let mut s = format!(
                "{name} asked{glass} for {}: {}",
                crate::duration::format(time::Duration::seconds(secs)),
                text(d, "justification")
            );
            if !text(d, "ticket").is_empty() {
                s.push_str(&format!(" (ticket {})", text(d, "ticket")));
            }
            s
        }
        "request.approved" => format!("{name} approved"),
        "request.commented" => format!("{name} commented: {}", text(d, "comment")),
        "request.denied" => format!("{name} denied the request"),
        "request.cancelled" => format!("{name} cancelled the request"),
        "request.lapsed" => "the request lapsed: nobody decided in time".into(),
        "request.scheduled" => format!("scheduled to start {}", at_epoch(d, "starts_at")),
        "request.refused" => with(format!("{name} was refused"), &text(d, "reason"), ": "),
        "grant.activated" => format!("access granted until {}", at_epoch(d, "not_after")),
        "grant.extended" => format!("access extended until {}", at_epoch(d, "not_after")),
        "grant.extension_requested" => {
            let secs = d["added_secs"].as_i64().unwrap_or(0);
            format!(
                "{name} asked for {} more",
                crate::duration::format(time::Duration::seconds(secs))
            )
        }
        "grant.extension_denied" => format!("{name} denied the extension"),
        "grant.expired" => "access ended at its time".into(),
        "grant.revoked" => with(format!("{name} revoked access"), &text(d, "reason"), ": "),
        "breakglass.reviewed" => format!("{name} signed off the break-glass use"),
        "passkey.stepped_up" => format!("{name} confirmed with a passkey"),
        "ssh.certificate_issued" => format!(
            "SSH certificate {} issued for {}, valid until {}",
            text(d, "serial"),
            d["principals"]
                .as_array()
                .map(|p| p
                    .iter()
                    .filter_map(Value::as_str)
                    .collect::<Vec<_>>()
                    .join(", "))
                .unwrap_or_default(),
            at_epoch(d, "valid_before")
        ),
        "ssh.certificate_refused" => with(
            format!("{name} was refused a certificate"),
            &text(d, "reason"),
            ": ",
        ),
        "ssh.certificates_revoked" => "its SSH certificates were put on the revocation list".into(),
        "db.login_issued" => format!(
            "database login {} on {} issued, valid until {}",
            text(d, "role"),
            text(d, "target"),
            at_epoch(d, "valid_until")
        ),
        "db.login_dropped" => format!("database login {} dropped", text(d, "role")),
        "db.logins_ended" => "its database logins were ended".into(),
        "session.started" => format!(
            "SSH session opened on {} as {}",
            text(d, "host"),
            text(d, "account")
        ),
        "session.ended" => format!(
            "SSH session on {} ended ({})",
            text(d, "host"),
            text(d, "reason").replace('_', " ")
        ),
        "session.refused" => with(
            format!("an SSH login on {name} was refused"),
            &text(d, "reason"),
            ": ",
        ),
        "session.recording_viewed" => format!("{name} watched a session recording"),
        other => format!("{name}: {other}"),
    }
}

/// The stored details as plain fields, without ids of tokens or people.
fn fields(details: &Value) -> Vec<(String, String)> {
    details
        .as_object()
        .map(|o| {
            o.iter()
                .filter(|(_, v)| !v.is_null())
                .map(|(k, v)| {
                    let v = match v {
                        Value::String(s) => s.clone(),
                        other => other.to_string(),
                    };
                    (shown_owned(k), shown_owned(&v))
                })
                .collect()
        })
        .unwrap_or_default()
}

pub fn step(at: OffsetDateTime, action: &str, actor: &str, details: &Value) -> Step {
    let (_, channel) = who(actor);
    Step {
        at: when(at),
        sentence: shown_owned(&sentence(action, actor, details)),
        channel: channel.to_owned(),
        details: fields(details),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn events_read_as_sentences_with_names_not_ids() {
        let token = "token:01a23f63-ecc5-732f-b960-47b5b0bf763f:alice@example.com";
        let s = sentence(
            "request.submitted",
            token,
            &json!({"duration_secs": 1800, "justification": "fix it", "ticket": "INC-7", "break_glass": false}),
        );
        assert_eq!(s, "alice@example.com asked for 30m: fix it (ticket INC-7)");
        assert!(!s.contains("01a23f63"));
        assert_eq!(who(token).1, "API token");
        assert_eq!(
            sentence(
                "request.commented",
                "user:bob@example.com",
                &json!({"comment": "ok"})
            ),
            "bob@example.com commented: ok"
        );
        assert_eq!(
            sentence("grant.revoked", "cli:root", &json!({"reason": "done"})),
            "root (operator) revoked access: done"
        );
        assert!(
            sentence("grant.activated", "system", &json!({"not_after": 0})).contains("1970-01-01")
        );
    }
}
