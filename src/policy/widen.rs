//! Which changes of a policy widen access: what two admins must agree to when the tenant asks
//! for two people (`policy_two_person`). Narrowing changes apply at once.

use std::collections::BTreeMap;

use super::Profile;

/// The changes from `before` to `after` that widen access, one line each for people (empty when
/// the new policy only narrows or keeps access).
pub fn widening(before: &[Profile], after: &[Profile]) -> Vec<String> {
    let old: BTreeMap<&str, &Profile> = before.iter().map(|p| (p.name.as_str(), p)).collect();
    let mut out = Vec::new();
    for p in after {
        match old.get(p.name.as_str()) {
            None => out.push(format!("{}: new profile", p.name)),
            Some(b) => out.extend(profile_widening(b, p)),
        }
    }
    out
}

fn gained(before: &[String], after: &[String]) -> Vec<String> {
    after
        .iter()
        .filter(|x| !before.contains(x))
        .cloned()
        .collect()
}

fn profile_widening(b: &Profile, a: &Profile) -> Vec<String> {
    let name = &a.name;
    let mut out = Vec::new();
    let mut note = |what: String| out.push(format!("{name}: {what}"));
    for (field, before, after) in [
        ("requesters", &b.requesters, &a.requesters),
        ("approvers", &b.approvers, &a.approvers),
        (
            "auto_approve_groups",
            &b.auto_approve_groups,
            &a.auto_approve_groups,
        ),
    ] {
        let more = gained(before, after);
        if !more.is_empty() {
            note(format!("{field} gain {}", more.join(", ")));
        }
    }
    if a.approvals_required < b.approvals_required {
        note(format!(
            "approvals_required lowered from {} to {}",
            b.approvals_required, a.approvals_required
        ));
    }
    if a.max_duration_secs > b.max_duration_secs {
        note("max_duration raised".into());
    }
    if a.break_glass && !b.break_glass {
        note("break_glass turned on".into());
    }
    if b.step_up && !a.step_up {
        note("step_up turned off".into());
    }
    if b.require_justification && !a.require_justification {
        note("require_justification turned off".into());
    }
    if b.ticket_pattern.is_some() && a.ticket_pattern != b.ticket_pattern {
        note("ticket_pattern changed or removed".into());
    }
    if a.pending_timeout_secs > b.pending_timeout_secs {
        note("pending_timeout raised".into());
    }
    match (&b.ssh, &a.ssh) {
        (None, Some(_)) => note("now grants SSH".into()),
        (Some(bs), Some(s)) => {
            let principals = gained(&bs.principals, &s.principals);
            if !principals.is_empty() {
                note(format!("ssh principals gain {}", principals.join(", ")));
            }
            let extensions = gained(&bs.extensions, &s.extensions);
            if !extensions.is_empty() {
                note(format!("ssh extensions gain {}", extensions.join(", ")));
            }
            if bs.force_command.is_some() && s.force_command != bs.force_command {
                note("ssh force_command changed or removed".into());
            }
            if !bs.source_address.is_empty() && s.source_address != bs.source_address {
                note("ssh source_address changed or removed".into());
            }
            if s.cert_ttl_secs > bs.cert_ttl_secs {
                note("ssh cert_ttl raised".into());
            }
            if bs.record_input && !s.record_input {
                note("ssh sessions no longer record input".into());
            }
        }
        _ => {}
    }
    match (&b.database, &a.database) {
        (None, Some(_)) => note("now grants a database login".into()),
        (Some(bd), Some(d)) => {
            if d.target != bd.target {
                note(format!("database target changed to {}", d.target));
            }
            let roles = gained(&bd.roles, &d.roles);
            if !roles.is_empty() {
                note(format!("database roles gain {}", roles.join(", ")));
            }
        }
        _ => {}
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::parse;

    const BASE: &str = r#"
[[profile]]
name = "shell"
max_duration = "2h"
requesters = ["engineering"]
approvers = ["sre"]
approvals_required = 2
step_up = true
[profile.ssh]
principals = ["deploy"]
"#;

    #[test]
    fn widening_changes_are_named_and_narrowing_ones_are_not() {
        let base = parse(BASE).unwrap();
        assert!(widening(&base, &base).is_empty());
        let narrower =
            parse(&BASE.replace("max_duration = \"2h\"", "max_duration = \"1h\"")).unwrap();
        assert!(widening(&base, &narrower).is_empty());
        assert!(
            widening(&base, &[]).is_empty(),
            "removing a profile narrows"
        );
        for (change, expected) in [
            ("approvals_required = 2", "approvals_required lowered"),
            ("step_up = true", "step_up turned off"),
            ("max_duration = \"2h\"", "max_duration raised"),
            ("requesters = [\"engineering\"]", "requesters gain"),
            ("principals = [\"deploy\"]", "ssh principals gain root"),
        ] {
            let replacement = match change {
                "approvals_required = 2" => "approvals_required = 1",
                "step_up = true" => "step_up = false",
                "max_duration = \"2h\"" => "max_duration = \"8h\"",
                "requesters = [\"engineering\"]" => {
                    "requesters = [\"engineering\", \"contractors\"]"
                }
                _ => "principals = [\"deploy\", \"root\"]",
            };
            let wider = parse(&BASE.replace(change, replacement)).unwrap();
            let found = widening(&base, &wider);
            assert!(
                found.iter().any(|w| w.contains(expected)),
                "{change}: {found:?}"
            );
        }
        let with_break_glass = parse(&format!("{BASE}break_glass = true\n").replace(
            "[profile.ssh]\nprincipals = [\"deploy\"]\nbreak_glass = true",
            "break_glass = true\n[profile.ssh]\nprincipals = [\"deploy\"]",
        ))
        .unwrap();
        assert!(
            widening(&base, &with_break_glass)
                .iter()
                .any(|w| w.contains("break_glass turned on"))
        );
        let added = parse(&format!(
            "{BASE}\n[[profile]]\nname = \"db\"\nrequesters = [\"engineering\"]\napprovers = [\"sre\"]\n[profile.ssh]\nprincipals = [\"x\"]\n"
        ))
        .unwrap();
        assert_eq!(widening(&base, &added), vec!["db: new profile".to_owned()]);
    }
}
