use proptest::prelude::*;

use super::*;

const EXAMPLE: &str = r#"
[[profile]]
name = "prod-shell"
description = "Shell on production web hosts"
default_duration = "1h"
max_duration = "4h"
requesters = ["engineering"]
approvers = ["sre"]
approvals_required = 1
require_justification = true
ticket_pattern = "^(INC|CHG)-[0-9]+$"
step_up = true
break_glass = false
auto_approve_groups = ["oncall"]
[profile.ssh]
principals = ["deploy"]
extensions = ["permit-pty"]
[profile.database]
target = "orders"
roles = ["orders_readonly"]
"#;

#[test]
fn the_design_example_parses() {
    let profiles = parse(EXAMPLE).unwrap();
    assert_eq!(profiles.len(), 1);
    let p = &profiles[0];
    assert_eq!(
        (p.default_duration_secs, p.max_duration_secs),
        (3600, 4 * 3600)
    );
    assert_eq!(p.approvals_required, 1);
    assert!(p.step_up && !p.break_glass && p.require_justification);
    assert_eq!(p.pending_timeout_secs, 24 * 3600);
    let ssh = p.ssh.as_ref().unwrap();
    assert_eq!(ssh.principals, ["deploy"]);
    assert_eq!(ssh.cert_ttl_secs, 3600);
    assert_eq!(p.database.as_ref().unwrap().roles, ["orders_readonly"]);
    assert!(p.may_request(&["engineering".into()]) && !p.may_request(&["sre".into()]));
}

#[test]
fn defaults_fill_in_what_is_left_out() {
    let p = &parse("[[profile]]\nname = \"db\"\nrequesters = [\"eng\"]\napprovers = [\"dba\"]\n[profile.ssh]\nprincipals = [\"app\"]\n").unwrap()[0];
    assert_eq!((p.default_duration_secs, p.max_duration_secs), (3600, 3600));
    assert_eq!(p.ssh.as_ref().unwrap().extensions, ["permit-pty"]);
    assert!(p.require_justification);
}

#[test]
fn errors_name_the_profile_and_field() {
    let bad = EXAMPLE
        .replace("max_duration = \"4h\"", "max_duration = \"30m\"")
        .replace("^(INC|CHG)-[0-9]+$", "([unclosed")
        .replace(
            "extensions = [\"permit-pty\"]",
            "extensions = [\"permit-everything\"]",
        );
    let err = parse(&bad).unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains(
            r#"profile "prod-shell": default_duration: 1h is longer than max_duration 30m"#
        ),
        "{text}"
    );
    assert!(
        text.contains(r#"profile "prod-shell": ticket_pattern: not a valid regular expression"#),
        "{text}"
    );
    assert!(
        text.contains(
            r#"profile "prod-shell": ssh.extensions: unknown extension "permit-everything""#
        ),
        "{text}"
    );
    assert_eq!(err.0.len(), 3);
}

#[test]
fn parser_errors_carry_the_line() {
    let err = parse(&EXAMPLE.replace("step_up = true", "step_up = maybe"))
        .unwrap_err()
        .to_string();
    assert!(err.contains("line 12"), "{err}");
    let err = parse(&EXAMPLE.replace("step_up = true", "stepup = true"))
        .unwrap_err()
        .to_string();
    assert!(err.contains("stepup") && err.contains("line 12"), "{err}");
}

#[test]
fn profiles_must_grant_something_and_name_who_asks_and_approves() {
    let err = parse("[[profile]]\nname = \"x\"\n")
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("requesters")
            && err.contains("approvers")
            && err.contains("must grant something"),
        "{err}"
    );
    let twice = format!("{EXAMPLE}\n{EXAMPLE}");
    assert!(
        parse(&twice)
            .unwrap_err()
            .to_string()
            .contains("defined twice")
    );
    let zero = EXAMPLE.replace("approvals_required = 1", "approvals_required = 0");
    assert!(
        parse(&zero)
            .unwrap_err()
            .to_string()
            .contains("approvals_required")
    );
    let addr = EXAMPLE.replace(
        "principals = [\"deploy\"]",
        "principals = [\"deploy\"]\nsource_address = [\"10.0.0.0/8\", \"10.1.2.300\"]",
    );
    assert!(parse(&addr).unwrap_err().to_string().contains("10.1.2.300"));
}

#[test]
fn diffs_name_added_removed_and_changed_fields() {
    let before = parse(EXAMPLE).unwrap();
    let mut after = before.clone();
    after[0].max_duration_secs = 2 * 3600;
    after.push(Profile {
        name: "new".into(),
        ..before[0].clone()
    });
    let d = diff(&before, &after);
    assert_eq!(d.added, ["new"]);
    assert!(d.removed.is_empty());
    assert_eq!(
        d.changed["prod-shell"]["max_duration_secs"],
        serde_json::json!({"from": 14400, "to": 7200})
    );
    assert_eq!(d.summary(), "+new ~prod-shell(max_duration_secs)");
    assert!(diff(&after, &after).is_empty());
    assert_eq!(diff(&after, &before[..0]).removed, ["new", "prod-shell"]);
}

proptest! {
    #[test]
    fn any_text_is_refused_or_parsed_without_panicking(s in "\\PC{0,200}") {
        let _ = parse(&s);
    }

    #[test]
    fn durations_in_profiles_are_bounded(default in 1i64..2000, max in 1i64..2000) {
        let text = format!(
            "[[profile]]\nname = \"p\"\nrequesters = [\"a\"]\napprovers = [\"b\"]\ndefault_duration = \"{default}m\"\nmax_duration = \"{max}m\"\n[profile.ssh]\nprincipals = [\"x\"]\n"
        );
        match parse(&text) {
            Ok(p) => prop_assert!(p[0].default_duration_secs <= p[0].max_duration_secs && p[0].max_duration_secs <= 30 * 86_400),
            Err(e) => prop_assert!(default > max, "{e}"),
        }
    }
}
