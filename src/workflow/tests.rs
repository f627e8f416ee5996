use proptest::prelude::*;
use time::macros::datetime;

use super::*;

const T0: OffsetDateTime = datetime!(2030-01-01 09:00 UTC);

fn profile(approvals: u32) -> Profile {
    let mut p = crate::policy::parse(
        "[[profile]]\nname = \"prod-shell\"\nmax_duration = \"4h\"\nrequesters = [\"engineering\"]\napprovers = [\"sre\"]\n\
         ticket_pattern = \"^INC-[0-9]+$\"\nbreak_glass = true\nauto_approve_groups = [\"oncall\"]\n[profile.ssh]\nprincipals = [\"deploy\"]\n",
    )
    .unwrap()
    .remove(0);
    p.approvals_required = approvals;
    p
}

fn person(name: &str, groups: &[&str]) -> Person {
    Person {
        id: Uuid::from_u128(
            name.bytes()
                .fold(7u128, |h, b| h.wrapping_mul(31).wrapping_add(u128::from(b))),
        ),
        email: format!("{name}@acme.example"),
        groups: groups.iter().map(|g| g.to_string()).collect(),
        // Approver-group members hold the approver role here; tests_offboard covers who does not.
        is_approver: groups.contains(&"sre"),
        is_admin: name == "carol",
        disabled: false,
        stepped_up: false,
    }
}

fn alice() -> Person {
    person("alice", &["engineering"])
}

fn ask(duration: Duration) -> NewRequest {
    NewRequest {
        duration: Some(duration),
        justification: "deploy hotfix".into(),
        ticket: Some("INC-42".into()),
        ..Default::default()
    }
}

fn approve(by: &Person) -> Event {
    Event::Approve {
        by: by.clone(),
        comment: None,
    }
}

#[test]
fn one_approval_activates_at_once_and_the_clock_starts_then() {
    let p = profile(1);
    let (req, effects) = submit(Uuid::nil(), &alice(), &p, ask(Duration::hours(1)), T0).unwrap();
    assert_eq!((req.state, effects.len()), (State::Pending, 0));
    let later = T0 + Duration::minutes(20);
    let (req, effects) = step(
        &req,
        &alice(),
        &approve(&person("bob", &["sre"])),
        &p,
        later,
    )
    .unwrap();
    assert_eq!(req.state, State::Active);
    assert_eq!(
        req.grant.as_ref().unwrap().not_after,
        later + Duration::hours(1)
    );
    assert!(effects.contains(&Effect::Activated {
        not_after: later + Duration::hours(1),
        shortcut: None
    }));
    let (req, effects) = step(
        &req,
        &alice(),
        &Event::Tick {
            requester: Some(alice()),
        },
        &p,
        later + Duration::hours(1),
    )
    .unwrap();
    assert_eq!(req.state, State::Expired);
    assert_eq!(effects, [Effect::Expired, Effect::EndCredentials]);
}

#[test]
fn two_approvals_need_two_distinct_approvers_and_never_the_requester() {
    let p = profile(2);
    let bob = person("bob", &["sre"]);
    let (req, _) = submit(Uuid::nil(), &alice(), &p, ask(Duration::hours(1)), T0).unwrap();
    let (req, _) = step(&req, &alice(), &approve(&bob), &p, T0).unwrap();
    assert_eq!(req.state, State::Pending);
    assert!(matches!(
        step(&req, &alice(), &approve(&bob), &p, T0),
        Err(Refusal::Conflict(_))
    ));
    // The requester, even in the approver group, or a second account with the same address.
    let alice_sre = Person {
        groups: vec!["engineering".into(), "sre".into()],
        ..alice()
    };
    assert!(matches!(
        step(&req, &alice(), &approve(&alice_sre), &p, T0),
        Err(Refusal::NotAllowed(_))
    ));
    let twin = Person {
        id: Uuid::new_v4(),
        email: "ALICE@acme.example".into(),
        groups: vec!["sre".into()],
        ..alice()
    };
    assert!(matches!(
        step(&req, &alice(), &approve(&twin), &p, T0),
        Err(Refusal::NotAllowed(_))
    ));
    assert!(matches!(
        step(&req, &alice(), &approve(&person("eve", &["eng"])), &p, T0),
        Err(Refusal::NotAllowed(_))
    ));
    let (req, _) = step(&req, &alice(), &approve(&person("dave", &["sre"])), &p, T0).unwrap();
    assert_eq!(req.state, State::Active);
}

#[test]
fn submissions_follow_the_profile_rules() {
    let p = profile(1);
    let refuse = |new: NewRequest, who: &Person| submit(Uuid::nil(), who, &p, new, T0).unwrap_err();
    assert!(
        matches!(refuse(ask(Duration::hours(5)), &alice()), Refusal::Invalid(m) if m.contains("max_duration"))
    );
    assert!(
        matches!(refuse(NewRequest { justification: " ".into(), ..ask(Duration::hours(1)) }, &alice()), Refusal::Invalid(m) if m.contains("justification"))
    );
    assert!(
        matches!(refuse(NewRequest { ticket: Some("JIRA-1".into()), ..ask(Duration::hours(1)) }, &alice()), Refusal::Invalid(m) if m.contains("does not match"))
    );
    assert!(
        matches!(refuse(NewRequest { ticket: None, ..ask(Duration::hours(1)) }, &alice()), Refusal::Invalid(m) if m.contains("requires a ticket"))
    );
    assert!(matches!(
        refuse(ask(Duration::hours(1)), &person("bob", &["sre"])),
        Refusal::NotAllowed(_)
    ));
    let disabled = Person {
        disabled: true,
        ..alice()
    };
    assert!(matches!(
        refuse(ask(Duration::hours(1)), &disabled),
        Refusal::NotAllowed(_)
    ));
    let (req, _) = submit(
        Uuid::nil(),
        &alice(),
        &p,
        NewRequest {
            duration: None,
            ..ask(Duration::ZERO)
        },
        T0,
    )
    .unwrap();
    assert_eq!(req.duration, Duration::hours(1), "default_duration applies");
}

#[test]
fn auto_approval_and_break_glass_are_recorded_and_break_glass_needs_review() {
    let p = profile(1);
    let oncall = person("olga", &["engineering", "oncall"]);
    let (req, effects) = submit(Uuid::nil(), &oncall, &p, ask(Duration::hours(1)), T0).unwrap();
    assert_eq!(
        (req.state, req.shortcut),
        (State::Active, Some(Shortcut::AutoApproved))
    );
    assert!(matches!(
        effects[0],
        Effect::Activated {
            shortcut: Some(Shortcut::AutoApproved),
            ..
        }
    ));

    let (req, _) = submit(
        Uuid::nil(),
        &alice(),
        &p,
        NewRequest {
            break_glass: true,
            ..ask(Duration::hours(1))
        },
        T0,
    )
    .unwrap();
    assert_eq!(
        (req.state, req.shortcut),
        (State::Active, Some(Shortcut::BreakGlass))
    );
    assert!(matches!(
        step(&req, &alice(), &Event::Review { by: alice() }, &p, T0),
        Err(Refusal::NotAllowed(_))
    ));
    let bob = person("bob", &["sre"]);
    let (req, effects) = step(&req, &alice(), &Event::Review { by: bob.clone() }, &p, T0).unwrap();
    assert_eq!(
        (req.reviewed_by, effects),
        (Some(bob.id), vec![Effect::Reviewed { by: bob.id }])
    );
    assert!(matches!(
        step(&req, &alice(), &Event::Review { by: bob }, &p, T0),
        Err(Refusal::Conflict(_))
    ));

    let mut closed = p.clone();
    closed.break_glass = false;
    let refused = submit(
        Uuid::nil(),
        &alice(),
        &closed,
        NewRequest {
            break_glass: true,
            ..ask(Duration::hours(1))
        },
        T0,
    );
    assert!(matches!(refused, Err(Refusal::NotAllowed(_))));
}

#[test]
fn scheduled_grants_recheck_eligibility_at_activation() {
    let p = profile(1);
    let starts = T0 + Duration::hours(2);
    let (req, _) = submit(
        Uuid::nil(),
        &alice(),
        &p,
        NewRequest {
            starts_at: Some(starts),
            ..ask(Duration::hours(1))
        },
        T0,
    )
    .unwrap();
    let (req, effects) = step(&req, &alice(), &approve(&person("bob", &["sre"])), &p, T0).unwrap();
    assert_eq!(
        (req.state, effects.last().unwrap()),
        (State::Scheduled, &Effect::Scheduled { starts_at: starts })
    );
    let tick = |who: Option<Person>| Event::Tick { requester: who };
    let (same, _) = step(
        &req,
        &alice(),
        &tick(Some(alice())),
        &p,
        starts - Duration::seconds(1),
    )
    .unwrap();
    assert_eq!(same.state, State::Scheduled);
    let (active, _) = step(&req, &alice(), &tick(Some(alice())), &p, starts).unwrap();
    assert_eq!(active.grant.unwrap().not_after, starts + Duration::hours(1));
    let moved = Person {
        groups: vec!["sales".into()],
        ..alice()
    };
    let (revoked, effects) = step(&req, &alice(), &tick(Some(moved)), &p, starts).unwrap();
    assert_eq!(revoked.state, State::Revoked);
    assert!(matches!(&effects[0], Effect::Revoked { reason } if reason.contains("not eligible")));
    assert_eq!(
        step(&req, &alice(), &tick(None), &p, starts)
            .unwrap()
            .0
            .state,
        State::Revoked
    );
}

#[test]
fn extensions_are_approved_again_and_capped_by_max_duration() {
    let p = profile(1);
    let bob = person("bob", &["sre"]);
    let (req, _) = submit(Uuid::nil(), &alice(), &p, ask(Duration::hours(3)), T0).unwrap();
    let (req, _) = step(&req, &alice(), &approve(&bob), &p, T0).unwrap();
    let too_long = Event::Extend {
        by: alice(),
        added: Duration::hours(2),
    };
    assert!(matches!(
        step(&req, &alice(), &too_long, &p, T0),
        Err(Refusal::Invalid(_))
    ));
    let (req, _) = step(
        &req,
        &alice(),
        &Event::Extend {
            by: alice(),
            added: Duration::hours(1),
        },
        &p,
        T0,
    )
    .unwrap();
    assert!(req.extension.is_some());
    // The first round's approval does not count for the extension.
    let (req, effects) = step(&req, &alice(), &approve(&bob), &p, T0 + Duration::hours(1)).unwrap();
    assert_eq!(
        req.grant.as_ref().unwrap().not_after,
        T0 + Duration::hours(4)
    );
    assert!(effects.contains(&Effect::Extended {
        not_after: T0 + Duration::hours(4)
    }));
}

#[test]
fn pending_requests_lapse_and_only_the_requester_cancels() {
    let p = profile(1);
    let (req, _) = submit(Uuid::nil(), &alice(), &p, ask(Duration::hours(1)), T0).unwrap();
    assert!(matches!(
        step(
            &req,
            &alice(),
            &Event::Cancel {
                by: person("bob", &["sre"])
            },
            &p,
            T0
        ),
        Err(Refusal::NotAllowed(_))
    ));
    let (lapsed, _) = step(
        &req,
        &alice(),
        &Event::Tick {
            requester: Some(alice()),
        },
        &p,
        T0 + Duration::hours(24),
    )
    .unwrap();
    assert_eq!(lapsed.state, State::Lapsed);
    let (cancelled, _) = step(&req, &alice(), &Event::Cancel { by: alice() }, &p, T0).unwrap();
    assert_eq!(cancelled.state, State::Cancelled);
}

fn arb_event() -> impl Strategy<Value = (Event, i64)> {
    let people = prop_oneof![
        Just(alice()),
        Just(person("bob", &["sre"])),
        Just(person("dave", &["sre"])),
        Just(person("erin", &["sre", "engineering"])),
        Just(person("carol", &[])),
        Just(person("mallory", &["sales"])),
    ];
    let event = (people, 0u8..7, 1i64..=6).prop_map(|(who, kind, hours)| match kind {
        0 | 1 => Event::Approve {
            by: who,
            comment: None,
        },
        2 => Event::Deny {
            by: who,
            comment: "no".into(),
        },
        3 => Event::Cancel { by: who },
        4 => Event::Revoke {
            by: who,
            reason: "done".into(),
        },
        5 => Event::Extend {
            by: who,
            added: Duration::minutes(30 * hours),
        },
        _ => Event::Tick {
            requester: Some(alice()),
        },
    });
    (event, 0i64..(3 * 3600))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn random_histories_keep_the_invariants(
        approvals in 1u32..=3,
        hours in 1i64..=4,
        scheduled in any::<bool>(),
        break_glass in any::<bool>(),
        events in prop::collection::vec(arb_event(), 0..40),
    ) {
        let p = profile(approvals);
        let starts_at = scheduled.then_some(T0 + Duration::hours(1));
        let new = NewRequest { starts_at, break_glass, ..ask(Duration::hours(hours)) };
        let (mut req, _) = submit(Uuid::nil(), &alice(), &p, new, T0).unwrap();
        let mut now = T0;
        for (event, wait) in events {
            now += Duration::seconds(wait);
            let before = req.clone();
            match step(&req, &alice(), &event, &p, now) {
                Ok((next, _)) => req = next,
                Err(_) => prop_assert_eq!(&req, &before),
            }
            if before.state.is_terminal() {
                prop_assert_eq!(req.state, before.state, "terminal state left");
            }
            if let Some(g) = &req.grant {
                prop_assert!(g.not_after - g.activated_at <= p.max_duration(), "grant longer than max_duration");
            }
            let granted = req.grant.is_some();
            if granted {
                let first_round = req.approvals.iter().filter(|a| a.round == 0).count() as u32;
                prop_assert!(
                    first_round >= p.approvals_required || req.shortcut.is_some(),
                    "active without approvals or a recorded reason"
                );
                prop_assert!(req.approvals.iter().all(|a| a.approver != alice().id), "self-approval");
            }
        }
    }
}

#[test]
fn a_step_up_profile_is_approved_only_with_a_step_up() {
    let p = Profile {
        step_up: true,
        ..profile(1)
    };
    let (req, _) = submit(Uuid::nil(), &alice(), &p, ask(Duration::hours(1)), T0).unwrap();
    let bob = person("bob", &["sre"]);
    let refused = step(&req, &alice(), &approve(&bob), &p, T0).unwrap_err();
    assert!(matches!(refused, Refusal::StepUpRequired(_)), "{refused:?}");
    let bob = Person {
        stepped_up: true,
        ..bob
    };
    let (req, _) = step(&req, &alice(), &approve(&bob), &p, T0).unwrap();
    assert_eq!(req.state, State::Active);
}
