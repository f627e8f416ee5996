//! Issue 13: the approver role is required by the core itself, administrative withdrawal, the
//! eligibility check when the last approval activates a grant, and lockdown refusals.

use proptest::prelude::*;
use time::macros::datetime;

use super::*;

const T0: OffsetDateTime = datetime!(2030-01-01 09:00 UTC);

fn profile(approvals: u32) -> Profile {
    let mut p = crate::policy::parse(
        "[[profile]]\nname = \"prod-shell\"\nmax_duration = \"4h\"\nrequesters = [\"engineering\"]\napprovers = [\"sre\"]\n\
         break_glass = true\n[profile.ssh]\nprincipals = [\"deploy\"]\n",
    )
    .unwrap()
    .remove(0);
    p.approvals_required = approvals;
    p
}

/// `roles` among "approver" and "admin"; everyone here is in the groups given.
fn person(name: &str, groups: &[&str], roles: &[&str]) -> Person {
    Person {
        id: Uuid::from_u128(name.bytes().fold(11u128, |h, b| {
            h.wrapping_mul(31).wrapping_add(u128::from(b))
        })),
        email: format!("{name}@acme.example"),
        groups: groups.iter().map(|g| g.to_string()).collect(),
        is_approver: roles.contains(&"approver"),
        is_admin: roles.contains(&"admin"),
        disabled: false,
        stepped_up: false,
    }
}

fn alice() -> Person {
    person("alice", &["engineering"], &[])
}
fn bob() -> Person {
    person("bob", &["sre"], &["approver"])
}
/// An auditor who is in the approver group but has no approver role.
fn trent() -> Person {
    person("trent", &["sre"], &[])
}
/// An admin in the approver group without the approver role.
fn carol() -> Person {
    person("carol", &["sre"], &["admin"])
}

fn ask() -> NewRequest {
    NewRequest {
        duration: Some(Duration::hours(1)),
        justification: "deploy hotfix".into(),
        ..Default::default()
    }
}

fn pending(p: &Profile) -> Request {
    submit(Uuid::nil(), &alice(), p, ask(), T0).unwrap().0
}

fn active(p: &Profile) -> Request {
    let req = pending(p);
    let (req, _) = step(
        &req,
        &alice(),
        &Event::Approve {
            by: bob(),
            comment: None,
        },
        p,
        T0,
    )
    .unwrap();
    assert_eq!(req.state, State::Active);
    req
}

fn not_allowed(r: Result<(Request, Vec<Effect>), Refusal>) -> String {
    match r {
        Err(Refusal::NotAllowed(m)) => m,
        other => panic!("expected a 403 refusal, got {other:?}"),
    }
}

#[test]
fn group_members_without_the_approver_role_decide_nothing() {
    let p = profile(1);
    let req = pending(&p);
    for who in [trent(), carol()] {
        let m = not_allowed(step(
            &req,
            &alice(),
            &Event::Approve {
                by: who.clone(),
                comment: None,
            },
            &p,
            T0,
        ));
        assert!(m.contains("approver role"), "{m}");
        not_allowed(step(
            &req,
            &alice(),
            &Event::Deny {
                by: who.clone(),
                comment: "no".into(),
            },
            &p,
            T0,
        ));
    }
    // The same person with the role decides.
    let (approved, _) = step(
        &req,
        &alice(),
        &Event::Approve {
            by: bob(),
            comment: None,
        },
        &p,
        T0,
    )
    .unwrap();
    assert_eq!(approved.state, State::Active);

    // Break-glass reviews too.
    let bg = submit(
        Uuid::nil(),
        &alice(),
        &p,
        NewRequest {
            break_glass: true,
            ..ask()
        },
        T0,
    )
    .unwrap()
    .0;
    for who in [trent(), carol()] {
        not_allowed(step(&bg, &alice(), &Event::Review { by: who }, &p, T0));
    }
    let (reviewed, _) = step(&bg, &alice(), &Event::Review { by: bob() }, &p, T0).unwrap();
    assert_eq!(reviewed.reviewed_by, Some(bob().id));
}

#[test]
fn revoking_needs_the_requester_an_approver_or_an_admin() {
    let p = profile(1);
    let req = active(&p);
    let revoke = |by: Person| Event::Revoke {
        by,
        reason: "done".into(),
    };
    // An auditor in the approver group may not.
    not_allowed(step(&req, &alice(), &revoke(trent()), &p, T0));
    // An admin may, with or without the approver role (DESIGN §3).
    let (r, effects) = step(&req, &alice(), &revoke(carol()), &p, T0).unwrap();
    assert_eq!(r.state, State::Revoked);
    assert!(effects.contains(&Effect::EndCredentials));
    // A disabled admin may not.
    let disabled_admin = Person {
        disabled: true,
        ..carol()
    };
    not_allowed(step(&req, &alice(), &revoke(disabled_admin), &p, T0));
    // An approver and the requester may.
    assert!(step(&req, &alice(), &revoke(bob()), &p, T0).is_ok());
    assert!(step(&req, &alice(), &revoke(alice()), &p, T0).is_ok());
    // An approver of another profile's groups may not.
    let other = person("olga", &["dba"], &["approver"]);
    not_allowed(step(&req, &alice(), &revoke(other), &p, T0));
}

#[test]
fn the_last_approval_rechecks_eligibility() {
    let p = profile(2);
    let req = pending(&p);
    let approve = |by: Person| Event::Approve { by, comment: None };
    let (one, _) = step(&req, &alice(), &approve(bob()), &p, T0).unwrap();
    assert_eq!(one.state, State::Pending);
    let dave = person("dave", &["sre"], &["approver"]);

    // Removed from the requester groups while waiting: no grant.
    let moved = person("alice", &["sales"], &[]);
    let (r, effects) = step(&one, &moved, &approve(dave.clone()), &p, T0).unwrap();
    assert_eq!(r.state, State::Revoked);
    assert!(r.grant.is_none());
    assert!(
        matches!(&effects[..], [Effect::Approved { .. }, Effect::Revoked { reason }] if reason.contains("not eligible"))
    );

    // Disabled while waiting: no grant.
    let disabled = Person {
        disabled: true,
        ..alice()
    };
    let (r, _) = step(&one, &disabled, &approve(dave.clone()), &p, T0).unwrap();
    assert_eq!(r.state, State::Revoked);
    assert!(r.grant.is_none());

    // Still eligible: active.
    let (r, _) = step(&one, &alice(), &approve(dave), &p, T0).unwrap();
    assert_eq!(r.state, State::Active);
}

#[test]
fn withdrawal_cancels_pending_and_revokes_grants() {
    let p = profile(1);
    let why = || Event::Withdraw {
        reason: "user disabled".into(),
    };
    let (r, effects) = step(&pending(&p), &alice(), &why(), &p, T0).unwrap();
    assert_eq!(
        (r.state, effects),
        (State::Cancelled, vec![Effect::Cancelled])
    );

    let later = T0 + Duration::minutes(10);
    let (r, effects) = step(&active(&p), &alice(), &why(), &p, later).unwrap();
    assert_eq!(r.state, State::Revoked);
    assert_eq!(r.grant.as_ref().map(|g| g.not_after), Some(later));
    assert!(effects.contains(&Effect::EndCredentials));

    let scheduled = submit(
        Uuid::nil(),
        &alice(),
        &p,
        NewRequest {
            starts_at: Some(T0 + Duration::hours(2)),
            ..ask()
        },
        T0,
    )
    .unwrap()
    .0;
    let (scheduled, _) = step(
        &scheduled,
        &alice(),
        &Event::Approve {
            by: bob(),
            comment: None,
        },
        &p,
        T0,
    )
    .unwrap();
    assert_eq!(scheduled.state, State::Scheduled);
    let (r, _) = step(&scheduled, &alice(), &why(), &p, T0).unwrap();
    assert_eq!(r.state, State::Revoked);

    assert!(matches!(
        step(&r, &alice(), &why(), &p, T0),
        Err(Refusal::Conflict(_))
    ));
}

#[test]
fn a_lockdown_refuses_only_activations() {
    let activated = [Effect::Activated {
        not_after: T0,
        shortcut: None,
    }];
    assert!(refuse_in_lockdown(&activated, None).is_ok());
    let m = refuse_in_lockdown(&activated, Some("incident 7")).unwrap_err();
    assert!(
        matches!(&m, Refusal::Conflict(m) if m.contains("incident 7")),
        "{m:?}"
    );
    assert!(refuse_in_lockdown(&[Effect::Cancelled], Some("incident 7")).is_ok());
    assert!(refuse_in_lockdown(&[], Some("incident 7")).is_ok());
}

fn arb_event() -> impl Strategy<Value = Event> {
    let people = prop_oneof![
        Just(alice()),
        Just(bob()),
        Just(person("dave", &["sre"], &["approver"])),
        Just(trent()),
        Just(carol()),
    ];
    (people, 0u8..5).prop_map(|(who, kind)| match kind {
        0 | 1 => Event::Approve {
            by: who,
            comment: None,
        },
        2 => Event::Deny {
            by: who,
            comment: "no".into(),
        },
        3 => Event::Review { by: who },
        _ => Event::Revoke {
            by: who,
            reason: "done".into(),
        },
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Whatever happens, nobody without the approver role approved, denied or reviewed, and the
    /// auditor never revoked.
    #[test]
    fn only_role_holders_decide(
        approvals in 1u32..=2,
        break_glass in any::<bool>(),
        events in prop::collection::vec(arb_event(), 0..20),
    ) {
        let p = profile(approvals);
        let new = NewRequest { break_glass, ..ask() };
        let (mut req, _) = submit(Uuid::nil(), &alice(), &p, new, T0).unwrap();
        let outsiders = [trent().id, carol().id];
        for event in events {
            let before = req.clone();
            if let Ok((next, _)) = step(&req, &alice(), &event, &p, T0) {
                match &event {
                    Event::Approve { by, .. } | Event::Deny { by, .. } | Event::Review { by } => {
                        prop_assert!(!outsiders.contains(&by.id), "{event:?} moved {before:?}");
                    }
                    Event::Revoke { by, .. } => prop_assert!(by.id != trent().id),
                    _ => {}
                }
                req = next;
            }
            prop_assert!(req.approvals.iter().all(|a| !outsiders.contains(&a.approver)));
            prop_assert!(req.reviewed_by.is_none_or(|r| !outsiders.contains(&r)));
        }
    }
}
