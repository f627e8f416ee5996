//! Audit you can prove: checkpoints, the export and its offline verification (with tampering),
//! tenant isolation of exports, append-only Postgres, audit fail-closed, the auditor's page and
//! the streaming sinks.

use std::sync::Arc;

use elevate::audit::checkpoint::{Checkpoint, Kind, parse_public_keys};
use elevate::audit::verify::{Verifier, verify_reader};
use elevate::clock::Clock;
use elevate::model::Role;
use reqwest::StatusCode;
use serde_json::{Value, json};
use ssh_key::rand_core::OsRng;

use crate::fixtures::{append_events, auditor, every};
use crate::helpers::{TestApp, TestDb, ctx, seed_tenant, seed_token, seed_user};

async fn export(app: &TestApp, token: &str) -> String {
    let res = app.get_as(token, "/api/v1/audit/export").await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(
        res.headers()["content-type"].to_str().unwrap(),
        "application/x-ndjson"
    );
    res.text().await.unwrap()
}

async fn public_keys(app: &TestApp, slug: &str) -> Vec<ssh_key::PublicKey> {
    let res = app
        .client
        .get(app.url(&format!("/t/{slug}/audit/public-key")))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    parse_public_keys(&res.text().await.unwrap()).unwrap()
}

async fn checkpoints_sign_the_head_and_an_export_verifies_offline(db: TestDb) {
    let app = TestApp::spawn(db).await;
    let tenant = seed_tenant(app.store(), &app.master, app.clock.as_ref(), "acme").await;
    let token = auditor(&app, &tenant).await;
    append_events(&app, &tenant, 250).await;
    let nobody = app
        .client
        .get(app.url("/t/acme/audit/checkpoint"))
        .send()
        .await
        .unwrap();
    assert_eq!(nobody.status(), StatusCode::NOT_FOUND);

    // Every 100 events: 100 and 200 now; the rest once the oldest unsigned event is a minute old.
    let now = app.clock.now();
    let n = app.checkpoint(&tenant, 100, now).await.unwrap();
    assert_eq!(n, 2);
    let n = app.checkpoint(&tenant, 100, now).await.unwrap();
    assert_eq!(n, 0, "nothing new is due");
    app.clock.advance(time::Duration::seconds(61));
    let n = app.checkpoint(&tenant, 100, app.clock.now()).await.unwrap();
    assert_eq!(n, 1);

    let latest: Value = app
        .client
        .get(app.url("/t/acme/audit/checkpoint"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let head_seq = latest["seq"].as_i64().unwrap();
    assert!(head_seq >= 250, "{latest}");
    assert_eq!(latest["type"], "checkpoint");
    let keys = public_keys(&app, "acme").await;
    let line: elevate::audit::verify::Line = serde_json::from_value(latest).unwrap();
    let elevate::audit::verify::Line::Checkpoint(cp) = line else {
        panic!("not a checkpoint")
    };
    cp.verify(Kind::Checkpoint, &keys).unwrap();

    // The API pages through events, and reading is itself recorded.
    let (s, page): (StatusCode, Value) = {
        let r = app.get_as(&token, "/api/v1/audit?after=10&limit=5").await;
        (r.status(), r.json().await.unwrap())
    };
    assert_eq!(s, StatusCode::OK, "{page}");
    let seqs: Vec<i64> = page["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["seq"].as_i64().unwrap())
        .collect();
    assert_eq!(seqs, vec![11, 12, 13, 14, 15]);
    assert_eq!(page["next_after"], 15);
    let count = async |q: &str| -> usize {
        let r: Value = app
            .get_as(&token, &format!("/api/v1/audit?limit=1000&{q}"))
            .await
            .json()
            .await
            .unwrap();
        r["events"].as_array().unwrap().len()
    };
    assert_eq!(
        count("actor=syst").await,
        3 + 250,
        "seeding (tenant, auditor, token) and 250 events"
    );
    assert_eq!(
        count("actor=50%25_").await,
        0,
        "LIKE wildcards are taken literally"
    );
    assert_eq!(count("action=test.event").await, 250);
    let today = app.clock.now().date();
    assert_eq!(count(&format!("action=test.event&from={today}")).await, 250);
    assert_eq!(
        count(&format!("action=test.event&to={today}")).await,
        250,
        "a bare date as the end includes that day"
    );
    let tomorrow = today.next_day().unwrap();
    assert_eq!(
        count(&format!("action=test.event&from={tomorrow}")).await,
        0
    );
    assert_eq!(
        count(&format!("action=test.event&to={today}T00:00")).await,
        0
    );
    for bad in [
        "/api/v1/audit?after=x",
        "/api/v1/audit?limit=-1",
        "/api/v1/audit?request=nope",
        "/api/v1/audit?from=yesterday",
    ] {
        let r = app.get_as(&token, bad).await;
        assert_eq!(r.status(), StatusCode::BAD_REQUEST, "{bad}");
    }

    let text = export(&app, &token).await;
    let summary = verify_reader(text.as_bytes(), keys.clone())
        .unwrap()
        .unwrap();
    assert_eq!(summary.checkpoints, 3);
    assert_eq!(summary.head_seq, summary.events as i64);
    assert!(summary.head_seq > 250);
    let mut tx = app.store().tenant(tenant.tenant_id).await.unwrap();
    let actions: Vec<String> = tx
        .audit_events(250, 100)
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.action)
        .collect();
    tx.commit().await.unwrap();
    assert!(actions.contains(&"audit.read".to_owned()), "{actions:?}");
    assert!(
        actions.contains(&"audit.exported".to_owned()),
        "{actions:?}"
    );

    // The live store verifies too.
    let live = elevate::audit::verify::verify_store(app.store(), tenant.tenant_id, None)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(live.checkpoints, 3);

    // Someone without the audit role gets nothing.
    let alice = seed_user(
        app.store(),
        app.clock.as_ref(),
        &tenant,
        "alice@acme.example",
        &[Role::Requester],
        &[],
    )
    .await;
    let alice = seed_token(app.store(), app.clock.as_ref(), &alice, &[]).await;
    let r = app.get_as(&alice, "/api/v1/audit/export").await;
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
}

async fn a_tenants_export_holds_nothing_of_another(db: TestDb) {
    let app = TestApp::spawn(db).await;
    let a = seed_tenant(app.store(), &app.master, app.clock.as_ref(), "alpha").await;
    let b = seed_tenant(app.store(), &app.master, app.clock.as_ref(), "bravo").await;
    append_events(&app, &a, 30).await;
    append_events(&app, &b, 30).await;
    for t in [&a, &b] {
        app.checkpoint(t, 10, app.clock.now()).await.unwrap();
    }
    let token = auditor(&app, &a).await;
    let text = export(&app, &token).await;
    assert!(!text.contains(&b.tenant_id.to_string()));
    assert!(
        !text.contains("bravo"),
        "bravo's events leaked into alpha's export"
    );
    for line in text.lines() {
        let v: Value = serde_json::from_str(line).unwrap();
        assert_eq!(v["tenant_id"], json!(a.tenant_id), "{line}");
    }
    let a_keys = public_keys(&app, "alpha").await;
    verify_reader(text.as_bytes(), a_keys).unwrap().unwrap();
    // Bravo's key does not vouch for alpha's log.
    let b_keys = public_keys(&app, "bravo").await;
    let e = verify_reader(text.as_bytes(), b_keys).unwrap().unwrap_err();
    assert!(e.what.contains("not the tenant's audit key"), "{e}");
}

crate::on_both_backends!(
    checkpoints_sign_the_head_and_an_export_verifies_offline,
    a_tenants_export_holds_nothing_of_another,
    the_signer_skips_a_tenant_whose_signed_head_has_not_moved,
);

/// The running signer passes every second: a tenant whose head has not moved since it left it
/// signed (or not due yet) costs one read, not a write transaction; a new event brings the full
/// pass back, and the head is still signed once its oldest unsigned event is a minute old.
async fn the_signer_skips_a_tenant_whose_signed_head_has_not_moved(db: TestDb) {
    use elevate::audit::checkpoint::{Settled, SharedStatus, run_once_settled};
    let app = TestApp::spawn(db).await;
    let tenant = seed_tenant(app.store(), &app.master, app.clock.as_ref(), "acme").await;
    append_events(&app, &tenant, 7).await;
    let status = SharedStatus::default();
    let mut settled = Settled::default();
    let store = app.store();
    // What one pass of the running signer stores.
    macro_rules! pass {
        () => {
            run_once_settled(
                store,
                &app.master,
                every(100),
                app.clock.now(),
                &status,
                &mut settled,
            )
            .await
            .unwrap()
        };
    }

    // Unsigned events a minute old: the head is signed, and settled.
    app.clock.advance(time::Duration::seconds(61));
    assert_eq!(pass!(), 1, "the head is signed");
    let before = store.write_transactions_begun();
    for _ in 0..3 {
        assert_eq!(pass!(), 0);
    }
    assert_eq!(
        store.write_transactions_begun(),
        before,
        "an unchanged, signed head costs no write transaction"
    );

    // A new event brings the full pass back; until it falls due, passes skip the tenant again;
    // it is signed once a minute old.
    append_events(&app, &tenant, 1).await;
    let before = store.write_transactions_begun();
    assert_eq!(pass!(), 0, "not due yet");
    assert!(
        store.write_transactions_begun() > before,
        "a head that moved gets its pass"
    );
    let before = store.write_transactions_begun();
    app.clock.advance(time::Duration::seconds(30));
    assert_eq!(pass!(), 0, "still not due");
    assert_eq!(
        store.write_transactions_begun(),
        before,
        "a head not due yet costs no write transaction"
    );
    app.clock.advance(time::Duration::seconds(31));
    assert_eq!(pass!(), 1, "the new head is signed");
    let mut tx = store.read(tenant.tenant_id).await.unwrap();
    let (head, _) = tx.audit_head().await.unwrap().unwrap();
    let signed = tx.latest_checkpoint().await.unwrap().unwrap().seq;
    tx.commit().await.unwrap();
    assert_eq!(signed, head);
}

/// A small deterministic generator, so a failure can be replayed from its seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// Verification of `lines` (each without its newline). Uses the verifier's state after the
/// untouched prefix (`snapshots[i]` = state after `i * STEP` lines of the original): the verifier
/// is a fold over lines, so this is the same computation as starting over, only faster.
const STEP: usize = 250;

fn verify_from(
    snapshots: &[Verifier],
    lines: &[String],
    first_changed: usize,
    trailing_newline: bool,
) -> Result<(), elevate::audit::verify::Broken> {
    let k = (first_changed / STEP).min(snapshots.len() - 1);
    let mut v = snapshots[k].clone();
    let n = lines.len();
    for (i, l) in lines.iter().enumerate().skip(k * STEP) {
        if i + 1 == n && !trailing_newline {
            // What `verify_reader` does with a last line cut short.
            v.line(&format!("{l}\u{0}"))?;
        } else {
            v.line(l)?;
        }
    }
    v.finish().map(|_| ())
}

#[tokio::test]
async fn a_thousand_random_tamperings_of_a_10000_event_export_are_all_detected() {
    let app = TestApp::spawn(TestDb::sqlite().await).await;
    let tenant = seed_tenant(app.store(), &app.master, app.clock.as_ref(), "acme").await;
    append_events(&app, &tenant, 10_000).await;
    app.checkpoint(&tenant, 100, app.clock.now()).await.unwrap();
    let token = auditor(&app, &tenant).await;
    let text = export(&app, &token).await;
    let keys = public_keys(&app, "acme").await;
    let clean = verify_reader(text.as_bytes(), keys.clone())
        .unwrap()
        .unwrap();
    assert!(clean.events >= 10_000);
    assert_eq!(clean.checkpoints, 100);

    let lines: Vec<String> = text.lines().map(str::to_owned).collect();
    let mut snapshots = vec![Verifier::new(keys.clone(), true)];
    let mut v = snapshots[0].clone();
    for (i, l) in lines.iter().enumerate() {
        v.line(l).unwrap();
        if (i + 1) % STEP == 0 {
            snapshots.push(v.clone());
        }
    }
    let checkpoint_lines: Vec<usize> = (0..lines.len())
        .filter(|&i| lines[i].starts_with(r#"{"type":"checkpoint""#))
        .collect();
    let other_key = ssh_key::PrivateKey::random(&mut OsRng, ssh_key::Algorithm::Ed25519).unwrap();
    let seed = 0x5eed_a0d1_u64;
    let mut rng = Rng(seed);
    let mut detected = [0usize; 5];
    let mut full_rechecks = 0;
    for round in 0..1000 {
        let kind = round % 5;
        let mut m = lines.clone();
        let mut trailing_newline = true;
        let first_changed = match kind {
            // A single byte changed anywhere in a line.
            0 => {
                let i = rng.below(m.len());
                let mut bytes = m[i].clone().into_bytes();
                let j = rng.below(bytes.len());
                let old = bytes[j];
                let mut new = old;
                while new == old {
                    new = b' ' + (rng.below(95) as u8);
                }
                bytes[j] = new;
                m[i] = String::from_utf8_lossy(&bytes).into_owned();
                i
            }
            // A line deleted (event, checkpoint or the head).
            1 => {
                let i = rng.below(m.len());
                m.remove(i);
                i
            }
            // Two neighbouring lines swapped.
            2 => {
                let i = rng.below(m.len() - 1);
                m.swap(i, i + 1);
                i
            }
            // Cut anywhere, even inside a line.
            3 => {
                let mut cut = rng.below(text.len());
                while !text.is_char_boundary(cut) {
                    cut -= 1;
                }
                let kept = &text[..cut];
                trailing_newline = kept.ends_with('\n');
                m = kept.lines().map(str::to_owned).collect();
                m.len().saturating_sub(1)
            }
            // Checkpoint forgeries.
            _ => {
                let ci = checkpoint_lines[rng.below(checkpoint_lines.len())];
                let line: elevate::audit::verify::Line = serde_json::from_str(&m[ci]).unwrap();
                let elevate::audit::verify::Line::Checkpoint(cp) = line else {
                    unreachable!()
                };
                let forged = match round % 4 {
                    // Same statement, signed by another key.
                    0 => Checkpoint {
                        signature: String::new(),
                        ..cp.clone()
                    }
                    .sign(Kind::Checkpoint, &other_key)
                    .unwrap(),
                    // A different head hash, signed by another key.
                    1 => Checkpoint {
                        head_hash: vec![7; 32],
                        signature: String::new(),
                        ..cp.clone()
                    }
                    .sign(Kind::Checkpoint, &other_key)
                    .unwrap(),
                    // The real signature moved onto another seq.
                    2 => Checkpoint {
                        seq: cp.seq - 1,
                        ..cp.clone()
                    },
                    // An event edited and the chain re-hashed after it (no key needed for that).
                    _ => {
                        let target = ci - 1 - rng.below(50);
                        let mut prev: Option<Vec<u8>> = None;
                        for line in m.iter_mut().skip(target) {
                            if !line.starts_with(r#"{"type":"event""#) {
                                continue;
                            }
                            let mut r: elevate::audit::Record =
                                match serde_json::from_str::<elevate::audit::verify::Line>(line)
                                    .unwrap()
                                {
                                    elevate::audit::verify::Line::Event(r) => r,
                                    _ => unreachable!(),
                                };
                            match &prev {
                                None => r.subject = "rewritten history".into(),
                                Some(p) => r.prev_hash = p.clone(),
                            }
                            r.hash = r.compute_hash().unwrap().to_vec();
                            prev = Some(r.hash.clone());
                            *line = elevate::audit::verify::to_line(
                                elevate::audit::verify::LineRef::Event(&r),
                            )
                            .unwrap();
                        }
                        detected[kind] +=
                            usize::from(verify_from(&snapshots, &m, target, true).is_err());
                        continue;
                    }
                };
                m[ci] = elevate::audit::verify::to_line(
                    elevate::audit::verify::LineRef::Checkpoint(&forged),
                )
                .unwrap();
                if round % 4 == 0 {
                    let e = verify_from(&snapshots, &m, ci, true).unwrap_err();
                    assert!(e.what.contains("not the tenant's audit key"), "{e}");
                }
                ci
            }
        };
        let outcome = verify_from(&snapshots, &m, first_changed, trailing_newline);
        // Now and then, the whole file from its first byte through the real entry point.
        if round % 50 == 0 {
            let mut whole = m.join("\n");
            if trailing_newline && !m.is_empty() {
                whole.push('\n');
            }
            let full = verify_reader(whole.as_bytes(), keys.clone())
                .unwrap()
                .map(|_| ());
            assert_eq!(
                full.is_err(),
                outcome.is_err(),
                "round {round}: fast and full paths disagree"
            );
            full_rechecks += 1;
        }
        match outcome {
            Err(_) => detected[kind] += 1,
            Ok(()) => panic!("round {round} (kind {kind}, seed {seed:#x}) was not detected"),
        }
    }
    println!(
        "tampering detected: {} byte edits, {} deletions, {} swaps, {} truncations, {} checkpoint forgeries (of 200 each; {full_rechecks} rechecked from the first byte)",
        detected[0], detected[1], detected[2], detected[3], detected[4]
    );
    assert_eq!(detected, [200; 5]);
}

#[tokio::test]
async fn the_postgres_log_is_append_only_even_for_the_owner() {
    let db = TestDb::postgres().await;
    let app = TestApp::spawn(db).await;
    let tenant = seed_tenant(app.store(), &app.master, app.clock.as_ref(), "acme").await;
    append_events(&app, &tenant, 5).await;
    app.checkpoint(&tenant, 5, app.clock.now()).await.unwrap();
    let mut owner = <sqlx::PgConnection as sqlx::Connection>::connect(&app.db.owner_url)
        .await
        .unwrap();
    for sql in [
        "UPDATE audit_events SET subject = 'rewritten'",
        "DELETE FROM audit_events",
        "TRUNCATE audit_events",
        "UPDATE audit_checkpoints SET seq = seq + 1",
        "DELETE FROM audit_checkpoints",
        "TRUNCATE audit_checkpoints",
    ] {
        let e = sqlx::raw_sql(sqlx::AssertSqlSafe(sql))
            .execute(&mut owner)
            .await
            .unwrap_err()
            .to_string();
        assert!(e.contains("append-only"), "{sql}: {e}");
    }
    // The app role may not even try.
    let mut app_conn = <sqlx::PgConnection as sqlx::Connection>::connect(&app.db.url)
        .await
        .unwrap();
    for sql in [
        "UPDATE audit_checkpoints SET seq = seq + 1",
        "DELETE FROM audit_checkpoints",
        "TRUNCATE audit_events",
    ] {
        let e = sqlx::raw_sql(sqlx::AssertSqlSafe(sql))
            .execute(&mut app_conn)
            .await
            .unwrap_err()
            .to_string();
        assert!(e.contains("permission denied"), "{sql}: {e}");
    }
    let live = elevate::audit::verify::verify_store(app.store(), tenant.tenant_id, None)
        .await
        .unwrap()
        .unwrap();
    assert!(live.events >= 5);
    // The documented maintenance switch lets an operator at psql through, and verification then
    // names what was changed.
    sqlx::raw_sql(sqlx::AssertSqlSafe(
        "SET elevate.audit_maintenance = 'on'; UPDATE audit_events SET subject = 'rewritten' WHERE seq = 3",
    ))
    .execute(&mut owner)
    .await
    .unwrap();
    let broken = elevate::audit::verify::verify_store(app.store(), tenant.tenant_id, None)
        .await
        .unwrap()
        .unwrap_err();
    assert_eq!(broken.seq, 3, "{broken}");
    assert!(broken.what.contains("edited"), "{broken}");

    // elevate does not sign over a chain that no longer links to its last checkpoint.
    let before = {
        let mut tx = app.store().tenant(tenant.tenant_id).await.unwrap();
        let cp = tx.latest_checkpoint().await.unwrap().unwrap().seq;
        tx.commit().await.unwrap();
        cp
    };
    append_events(&app, &tenant, 10).await;
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "UPDATE audit_events SET subject = 'rewritten' WHERE seq = {}",
        before + 2
    )))
    .execute(&mut owner)
    .await
    .unwrap();
    let refused = app
        .checkpoint(&tenant, 5, app.clock.now())
        .await
        .unwrap_err();
    let status = elevate::audit::checkpoint::SharedStatus::default();
    elevate::audit::checkpoint::run_once(
        app.store(),
        &app.master,
        every(5),
        app.clock.now(),
        &status,
    )
    .await
    .unwrap();
    assert!(
        status.lock().unwrap().broken.contains_key("acme"),
        "the broken tenant is reported"
    );
    let ready: Value = app
        .client
        .get(app.url("/readyz"))
        .bearer_auth(crate::helpers::metrics_token(app.store(), app.clock.as_ref(), &tenant).await)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(ready["checks"]["audit"]["sinks"], json!([]), "{ready}");
    assert!(
        format!("{refused:?}").contains("not signing a broken chain"),
        "{refused:?}"
    );
    let mut tx = app.store().tenant(tenant.tenant_id).await.unwrap();
    let latest = tx.latest_checkpoint().await.unwrap().unwrap();
    assert_eq!(latest.seq, before);
    tx.commit().await.unwrap();

    // Nor over a checkpoint row it did not sign (the app role may INSERT checkpoints).
    let other = ssh_key::PrivateKey::random(&mut OsRng, ssh_key::Algorithm::Ed25519).unwrap();
    let forged = Checkpoint::unsigned(
        tenant.tenant_id,
        latest.seq + 1,
        &[9; 32],
        app.clock.now(),
        latest.signing_key_id,
    )
    .sign(Kind::Checkpoint, &other)
    .unwrap();
    let mut tx = app.store().tenant(tenant.tenant_id).await.unwrap();
    assert!(tx.insert_checkpoint(&forged).await.unwrap());
    tx.commit().await.unwrap();
    let refused = app
        .checkpoint(&tenant, 5, app.clock.now())
        .await
        .unwrap_err();
    assert!(
        format!("{refused:?}").contains("not the tenant's audit key"),
        "{refused:?}"
    );
}

#[tokio::test]
async fn without_audit_inserts_nothing_is_approved_or_issued() {
    let pg = crate::db_fixtures::PgTarget::new().await;
    let policy = format!(
        r#"
[[profile]]
name = "prod-shell"
requesters = ["engineering"]
approvers = ["sre"]
[profile.ssh]
principals = ["deploy"]
{}"#,
        crate::fixtures::orders_read_profile(&pg.read)
    );
    let shop = crate::fixtures::shop_with(
        TestApp::spawn(TestDb::postgres().await).await,
        "acme",
        &policy,
    )
    .await;
    shop.add_orders_target(&pg).await;
    let ssh_grant = shop.granted("prod-shell").await;
    let db_grant = shop.granted("orders-read").await;
    let (s, pending) = shop
        .post(
            &shop.alice,
            "/api/v1/requests",
            json!({"profile": "prod-shell", "duration": "1h", "justification": "fix the deploy"}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{pending}");
    let pending_id = pending["id"].as_str().unwrap().to_owned();
    let count = async |sql: &'static str| -> i64 {
        let mut c = <sqlx::PgConnection as sqlx::Connection>::connect(&shop.app.db.owner_url)
            .await
            .unwrap();
        sqlx::query_scalar(sql).fetch_one(&mut c).await.unwrap()
    };
    let prefix = elevate::db_targets::names::tenant_prefix(shop.tenant.tenant_id);
    let target_roles = async || -> i64 {
        let mut c = pg.superuser().await;
        sqlx::query_scalar("SELECT count(*) FROM pg_roles WHERE starts_with(rolname, $1)")
            .bind(&prefix)
            .fetch_one(&mut c)
            .await
            .unwrap()
    };
    let snapshot = async || {
        (
            count("SELECT count(*) FROM requests").await,
            count("SELECT count(*) FROM credentials").await,
            count("SELECT count(*) FROM approvals").await,
            count("SELECT count(*) FROM audit_events").await,
            target_roles().await,
        )
    };
    let before = snapshot().await;
    shop.app
        .db
        .owner_exec("REVOKE INSERT ON audit_events FROM elevate_app")
        .await;

    let (s, r) = shop.approve(&pending_id).await;
    assert_eq!(s, StatusCode::INTERNAL_SERVER_ERROR, "approve: {r}");
    let (s, r) = shop.issue_new_key(&ssh_grant).await;
    assert_eq!(s, StatusCode::INTERNAL_SERVER_ERROR, "SSH certificate: {r}");
    assert!(r.get("certificate").is_none());
    let (s, r) = shop
        .post(
            &shop.alice,
            &format!("/api/v1/requests/{db_grant}/db-credentials"),
            json!({}),
        )
        .await;
    assert_eq!(s, StatusCode::INTERNAL_SERVER_ERROR, "database login: {r}");
    assert!(r.get("password").is_none());
    let (s, r) = shop
        .post(
            &shop.alice,
            "/api/v1/requests",
            json!({"profile": "prod-shell", "duration": "1h", "justification": "again"}),
        )
        .await;
    assert_eq!(s, StatusCode::INTERNAL_SERVER_ERROR, "new request: {r}");
    assert_eq!(
        before,
        snapshot().await,
        "(requests, credentials, approvals, audit events, roles on the target) changed without an audit record"
    );
    let state: String = {
        let mut c = <sqlx::PgConnection as sqlx::Connection>::connect(&shop.app.db.owner_url)
            .await
            .unwrap();
        sqlx::query_scalar("SELECT state FROM requests WHERE id = $1")
            .bind(uuid::Uuid::parse_str(&pending_id).unwrap())
            .fetch_one(&mut c)
            .await
            .unwrap()
    };
    assert_eq!(state, "pending");
}

type Deliveries = Arc<std::sync::Mutex<Vec<(axum::http::HeaderMap, Vec<u8>)>>>;

/// A real HTTP receiver for audit webhooks: records each delivery, answers what the test sets.
#[derive(Clone, Default)]
struct Hook {
    got: Deliveries,
    status: Arc<std::sync::atomic::AtomicU16>,
}

async fn hook() -> (Hook, String) {
    let h = Hook::default();
    h.status.store(500, std::sync::atomic::Ordering::SeqCst);
    let state = h.clone();
    let app = axum::Router::new().route(
        "/audit",
        axum::routing::post(
            |axum::extract::State(s): axum::extract::State<Hook>,
             headers: axum::http::HeaderMap,
             body: axum::body::Bytes| async move {
                let status = s.status.load(std::sync::atomic::Ordering::SeqCst);
                if status == 200 {
                    s.got.lock().unwrap().push((headers, body.to_vec()));
                }
                axum::http::StatusCode::from_u16(status).unwrap()
            },
        ),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/audit", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app.with_state(state)).await });
    (h, url)
}

/// A syslog collector over TCP: every octet-counted frame of every connection.
async fn syslog_tcp() -> (Arc<std::sync::Mutex<Vec<String>>>, String) {
    let got: Arc<std::sync::Mutex<Vec<String>>> = Default::default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = format!("tcp://{}", listener.local_addr().unwrap());
    let sink = got.clone();
    tokio::spawn(async move {
        loop {
            let (mut conn, _) = listener.accept().await.unwrap();
            let mut buf = Vec::new();
            tokio::io::AsyncReadExt::read_to_end(&mut conn, &mut buf)
                .await
                .unwrap();
            let mut rest = &buf[..];
            while !rest.is_empty() {
                let sp = rest.iter().position(|b| *b == b' ').unwrap();
                let len: usize = std::str::from_utf8(&rest[..sp]).unwrap().parse().unwrap();
                let msg = &rest[sp + 1..sp + 1 + len];
                sink.lock()
                    .unwrap()
                    .push(String::from_utf8(msg.to_vec()).unwrap());
                rest = &rest[sp + 1 + len..];
            }
        }
    });
    (got, addr)
}

#[tokio::test]
async fn sinks_stream_events_and_checkpoints_and_a_down_sink_only_falls_behind() {
    let app = TestApp::spawn(TestDb::sqlite().await).await;
    let tenant = seed_tenant(app.store(), &app.master, app.clock.as_ref(), "acme").await;
    let c = ctx(app.clock.as_ref());
    let add = async |kind: &str, target: &str, secret: Option<&str>| {
        elevate::audit::sinks::add_sink(app.store(), &app.master, &c, &tenant, kind, target, secret)
            .await
    };
    assert!(
        add(
            "webhook",
            "ftp://example.org/x",
            Some("a-long-enough-secret")
        )
        .await
        .is_err()
    );
    assert!(
        add("webhook", "http://127.0.0.1:9/x", Some("short"))
            .await
            .is_err()
    );
    assert!(add("syslog", "127.0.0.1:514", None).await.is_err());
    let secret = "an-audit-webhook-secret";
    let (web, url) = hook().await;
    add("webhook", &url, Some(secret)).await.unwrap();
    let (tcp, tcp_addr) = syslog_tcp().await;
    add("syslog", &tcp_addr, None).await.unwrap();
    let udp = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    add(
        "syslog",
        &format!("udp://{}", udp.local_addr().unwrap()),
        None,
    )
    .await
    .unwrap();
    let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dead_addr = format!("tcp://{}", dead.local_addr().unwrap());
    drop(dead);
    add("syslog", &dead_addr, None).await.unwrap();
    // For /readyz and /metrics below (made now: it writes audit events too).
    let metrics_token =
        crate::helpers::metrics_token(app.store(), app.clock.as_ref(), &tenant).await;

    append_events(&app, &tenant, 250).await;
    app.checkpoint(&tenant, 100, app.clock.now()).await.unwrap();
    let head = {
        let mut tx = app.store().tenant(tenant.tenant_id).await.unwrap();
        let h = tx.audit_head().await.unwrap().unwrap().0;
        tx.commit().await.unwrap();
        h
    };
    let master = app.master.clone();
    let started = std::time::Instant::now();
    elevate::audit::sinks::deliver_due(app.store(), &master, "elevate.test", app.clock.now())
        .await
        .unwrap();
    assert!(
        started.elapsed() < std::time::Duration::from_secs(10),
        "a down sink held up delivery"
    );

    // The webhook answered 500: it is behind by everything and says why; the others are caught up.
    let lags = elevate::audit::sinks::lags(app.store(), app.clock.now())
        .await
        .unwrap();
    let lag_of = |target: &str| {
        lags.iter()
            .find(|l| target.contains(&l.target) || l.target.contains(target))
            .unwrap()
            .clone()
    };
    assert_eq!(lag_of(&url).events, head);
    assert!(lag_of(&url).last_error.unwrap().contains("500"));
    assert_eq!(lag_of(&dead_addr).events, head);
    assert!(
        lag_of(&dead_addr)
            .last_error
            .unwrap()
            .contains("cannot reach")
    );
    assert_eq!(lag_of(&tcp_addr).events, 0);

    // TCP syslog got every event and both checkpoints, RFC 5424 framed and in order.
    let got = tcp.lock().unwrap().clone();
    assert_eq!(got.len() as i64, head + 2);
    assert!(got[0].starts_with("<110>1 "), "{}", got[0]);
    assert!(got[0].contains(
        " elevate.test elevate - event [elevate@32473 tenant=\"acme\" seq=\"1\"] \u{feff}{"
    ));
    let checkpoint_at = got
        .iter()
        .position(|m| m.contains(" checkpoint ["))
        .unwrap();
    assert!(
        got[checkpoint_at - 1].contains("seq=\"100\""),
        "a checkpoint follows the event it signs"
    );
    let mut buf = vec![0u8; 65536];
    let (n, _) = udp.recv_from(&mut buf).await.unwrap();
    assert!(String::from_utf8_lossy(&buf[..n]).contains("seq=\"1\""));

    // The webhook comes back; after the backoff it catches up, signed like notifications.
    web.status.store(200, std::sync::atomic::Ordering::SeqCst);
    app.clock.advance(time::Duration::seconds(11));
    elevate::audit::sinks::deliver_due(app.store(), &master, "elevate.test", app.clock.now())
        .await
        .unwrap();
    let deliveries = web.got.lock().unwrap().clone();
    assert!(deliveries.len() >= 2, "{} deliveries", deliveries.len());
    let mut events = 0;
    let mut checkpoints = 0;
    for (headers, body) in &deliveries {
        let ts: i64 = headers["x-elevate-timestamp"]
            .to_str()
            .unwrap()
            .parse()
            .unwrap();
        assert_eq!(
            headers["x-elevate-signature"].to_str().unwrap(),
            elevate::notify::outbox::signature(secret.as_bytes(), ts, body)
        );
        let v: Value = serde_json::from_slice(body).unwrap();
        assert_eq!(v["tenant"], "acme");
        events += v["events"].as_array().unwrap().len();
        checkpoints += v["checkpoints"].as_array().unwrap().len();
    }
    assert_eq!((events as i64, checkpoints), (head, 2));
    // The copy outside elevate checks out with the public key alone.
    let keys = public_keys(&app, "acme").await;
    for (_, body) in &deliveries {
        let v: Value = serde_json::from_slice(body).unwrap();
        for c in v["checkpoints"].as_array().unwrap() {
            let cp: Checkpoint = serde_json::from_value(c.clone()).unwrap();
            cp.verify(Kind::Checkpoint, &keys).unwrap();
        }
    }
    let lags = elevate::audit::sinks::lags(app.store(), app.clock.now())
        .await
        .unwrap();
    assert_eq!(lags.iter().find(|l| l.kind == "webhook").unwrap().events, 0);
    // The lag is on /readyz (for a token with the metrics scope: the tenant's sinks).
    let ready: Value = app
        .client
        .get(app.url("/readyz"))
        .bearer_auth(&metrics_token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let sinks = ready["checks"]["audit"]["sinks"].as_array().unwrap();
    assert_eq!(sinks.len(), 4, "{ready}");
    assert!(
        sinks.iter().any(|s| s["lag_events"].as_i64() == Some(head)),
        "{ready}"
    );
    // ... and on /metrics.
    let metrics = app
        .client
        .get(app.url("/metrics"))
        .bearer_auth(&metrics_token)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("# TYPE elevate_audit_sink_lag_events gauge"),
        "{metrics}"
    );
    let dead_line = metrics
        .lines()
        .find(|l| l.starts_with("elevate_audit_sink_lag_events{") && !l.ends_with(" 0"))
        .unwrap_or_else(|| panic!("no lagging sink in {metrics}"));
    assert!(dead_line.ends_with(&format!(" {head}")), "{dead_line}");
    assert!(
        metrics.contains("elevate_audit_sink_lag_seconds{tenant=\"acme\""),
        "{metrics}"
    );
}

#[tokio::test]
async fn the_audit_page_filters_links_requests_and_shows_its_proof() {
    let shop = crate::fixtures::shop(TestDb::sqlite().await).await;
    let app = &shop.app;
    let id = shop.granted("prod-shell").await;
    app.checkpoint(&shop.tenant, 5, app.clock.now())
        .await
        .unwrap();
    let audrey = seed_user(
        app.store(),
        app.clock.as_ref(),
        &shop.tenant,
        "audrey@acme.example",
        &[Role::Auditor],
        &[],
    )
    .await;
    let alice = seed_user(
        app.store(),
        app.clock.as_ref(),
        &shop.tenant,
        "alice2@acme.example",
        &[Role::Requester],
        &[],
    )
    .await;
    let browser = app.signed_in(&audrey).await;
    let page = browser.get(app.url("/audit")).send().await.unwrap();
    assert_eq!(page.status(), StatusCode::OK);
    let html = page.text().await.unwrap();
    assert!(
        html.contains(r#"<span class="tag ok">verified</span>"#),
        "{html}"
    );
    assert!(html.contains(&format!(r#"href="/requests/{id}""#)));
    assert!(
        html.contains("ssh-ed25519 "),
        "the audit public key is shown"
    );
    assert!(html.contains("/t/acme/audit/public-key"));
    assert!(html.contains("Latest checkpoint</dt><dd>seq "));

    let filtered = browser
        .get(app.url(&format!("/audit?action=request.approved&request={id}")))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(filtered.contains("request.approved"));
    assert!(
        !filtered.contains("<td>request.submitted</td>")
            && !filtered.contains(">request.submitted<"),
        "filtered out"
    );
    assert!(filtered.contains(&format!(
        "/audit/export?action=request.approved&#38;request={id}"
    )));
    let download = browser
        .get(app.url(&format!(
            "/audit/export?action=request.approved&request={id}"
        )))
        .send()
        .await
        .unwrap();
    assert_eq!(download.status(), StatusCode::OK);
    assert!(
        download.headers()["content-disposition"]
            .to_str()
            .unwrap()
            .contains("filtered")
    );
    let lines: Vec<Value> = download
        .text()
        .await
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert!(!lines.is_empty());
    assert!(
        lines
            .iter()
            .all(|l| l["action"] == "request.approved" && l["request_id"] == json!(id))
    );
    let bad = browser
        .get(app.url("/audit?from=someday"))
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), StatusCode::BAD_REQUEST);

    // Admins see it too, and the admin status page shows the audit public key.
    let ada = seed_user(
        app.store(),
        app.clock.as_ref(),
        &shop.tenant,
        "ada@acme.example",
        &[Role::Admin],
        &[],
    )
    .await;
    let admin = app.signed_in(&ada).await;
    assert_eq!(
        admin.get(app.url("/audit")).send().await.unwrap().status(),
        StatusCode::OK
    );
    let status = admin
        .get(app.url("/admin/status"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let key = public_keys(app, "acme").await[0].to_openssh().unwrap();
    assert!(status.contains(&key), "{status}");
    assert!(status.contains("/t/acme/audit/public-key"));
    let main = &status[status.find("<main").unwrap()..];
    assert!(
        main.contains(&key),
        "the key is in the page body, not its title"
    );
    assert!(
        status.contains("<title>Status &middot; elevate</title>")
            || status.contains("<title>Status · elevate</title>"),
        "{status}"
    );

    // Requesters are turned away; looking was recorded.
    let other = app.signed_in(&alice).await;
    assert_eq!(
        other.get(app.url("/audit")).send().await.unwrap().status(),
        StatusCode::FORBIDDEN
    );
    let mut tx = app.store().tenant(shop.tenant.tenant_id).await.unwrap();
    let viewed = tx
        .audit_events(0, 10_000)
        .await
        .unwrap()
        .into_iter()
        .filter(|e| e.action == "audit.viewed" && e.actor.contains("audrey"))
        .count();
    tx.commit().await.unwrap();
    assert_eq!(
        viewed, 2,
        "two pages shown (the refused filter shows nothing)"
    );
}
