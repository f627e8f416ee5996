//! The store conformance suite: the same tests against SQLite and Postgres.

use elevate::admin;
use elevate::audit::{self, Actor, NewEvent};
use elevate::clock::{Clock, ManualClock};
use elevate::crypto::token::TokenKind;
use elevate::crypto::{MasterKey, SecretToken};
use elevate::error::AppError;
use elevate::model::{KeyPurpose, Role, Scope, TargetKind};
use elevate::signing_keys::open_signing_key;
use elevate::store::{NewUser, SecretKind, StoreError, UserChange};
use secrecy::ExposeSecret;

use crate::helpers::{TestDb, ctx, seed_tenant, seed_token, seed_user};

crate::on_both_backends!(
    tenants_get_sealed_signing_keys_and_are_found_by_slug,
    users_round_trip_and_emails_are_unique_per_tenant,
    the_store_api_never_crosses_tenants,
    audit_chain_is_gapless_and_linked_under_concurrency,
    a_change_without_its_audit_record_is_not_committed,
    a_failing_audit_write_fails_the_change,
    api_tokens_resolve_to_their_tenant_and_can_be_revoked,
    target_passwords_are_sealed_at_rest,
    a_read_transaction_does_not_wait_for_writers_and_cannot_write,
    audit_events_are_written_at_commit_and_read_back_before_it,
    dropped_and_cancelled_transactions_leave_the_next_one_whole,
);

async fn tenants_get_sealed_signing_keys_and_are_found_by_slug(db: TestDb) {
    let clock = ManualClock::starting_now();
    let master = MasterKey::generate().unwrap();
    let tenant = seed_tenant(&db.store, &master, &clock, "acme").await;
    assert_eq!(
        db.store.tenant_by_slug("acme").await.unwrap(),
        Some(tenant.clone())
    );
    assert_eq!(db.store.tenant_by_slug("nope").await.unwrap(), None);
    assert!(
        db.store
            .tenants()
            .await
            .unwrap()
            .iter()
            .any(|t| t.slug == "acme")
    );

    let again = admin::create_tenant(&db.store, &master, &ctx(&clock), "acme", "").await;
    assert!(matches!(again, Err(AppError::Conflict(m)) if m.contains("acme")));
    let bad = admin::create_tenant(&db.store, &master, &ctx(&clock), "Not A Slug", "").await;
    assert!(matches!(bad, Err(AppError::Unprocessable(_))));

    let mut tx = db.store.tenant(tenant.tenant_id).await.unwrap();
    let ca = tx
        .active_ca_key(KeyPurpose::SshUserCa)
        .await
        .unwrap()
        .expect("an SSH user CA");
    let audit_key = tx
        .active_ca_key(KeyPurpose::AuditSigning)
        .await
        .unwrap()
        .expect("an audit key");
    let events = tx.audit_events(0, 100).await.unwrap();
    tx.commit().await.unwrap();
    assert_ne!(ca.id, audit_key.id);
    assert!(ca.public_key.starts_with("ssh-ed25519 "));
    let sealed_text = String::from_utf8_lossy(&ca.private_sealed);
    assert!(
        !sealed_text.contains("PRIVATE KEY"),
        "private key stored in plaintext"
    );
    let opened = open_signing_key(&master, &ca).unwrap();
    assert_eq!(opened.public_key().to_openssh().unwrap(), ca.public_key);

    elevate::signing_keys::verify_master_key(&db.store, &master)
        .await
        .unwrap();
    let wrong = MasterKey::generate().unwrap();
    let err = elevate::signing_keys::verify_master_key(&db.store, &wrong)
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("cannot unseal") && err.contains("acme"),
        "{err}"
    );

    assert_eq!(events.len(), 1);
    assert_eq!(events[0].action, "tenant.created");
    assert_eq!(
        events[0].details.0["ssh_user_ca"]["key_id"],
        serde_json::json!(ca.id)
    );
}

async fn users_round_trip_and_emails_are_unique_per_tenant(db: TestDb) {
    let clock = ManualClock::starting_now();
    let master = MasterKey::generate().unwrap();
    let a = seed_tenant(&db.store, &master, &clock, "a-org").await;
    let b = seed_tenant(&db.store, &master, &clock, "b-org").await;
    let alice = seed_user(
        &db.store,
        &clock,
        &a,
        " Alice@Example.com",
        &[Role::Requester, Role::Approver],
        &["sre", "eng"],
    )
    .await;
    assert_eq!(alice.email, "alice@example.com");
    assert_eq!(alice.roles.0, vec![Role::Requester, Role::Approver]);
    assert_eq!(
        alice.group_names.0,
        vec!["eng".to_string(), "sre".to_string()]
    );
    assert_eq!(alice.created_at, clock.now());

    let dup = admin::create_user(
        &db.store,
        &ctx(&clock),
        &a,
        "alice@example.com",
        None,
        &[],
        &[],
    )
    .await;
    assert!(matches!(dup, Err(AppError::Conflict(_))), "{dup:?}");
    // The same person may exist in another tenant.
    seed_user(
        &db.store,
        &clock,
        &b,
        "alice@example.com",
        &[Role::Admin],
        &[],
    )
    .await;

    clock.advance(time::Duration::minutes(5));
    let mut tx = db.store.tenant(a.tenant_id).await.unwrap();
    let change = UserChange {
        roles: Some(vec![Role::Auditor]),
        disabled: Some(true),
        ..Default::default()
    };
    let changed = tx
        .update_user(alice.id, &change, clock.now())
        .await
        .unwrap();
    tx.append_audit(
        &NewEvent::new(Actor::System, "user.changed", &alice.email),
        clock.now(),
    )
    .await
    .unwrap();
    tx.commit().await.unwrap();
    assert_eq!(changed.roles.0, vec![Role::Auditor]);
    assert!(changed.disabled);
    assert_eq!(changed.group_names.0, alice.group_names.0);
    assert_eq!(changed.updated_at, clock.now());

    let mut tx = db.store.tenant(a.tenant_id).await.unwrap();
    assert_eq!(
        tx.user_by_email("alice@example.com").await.unwrap(),
        Some(changed.clone())
    );
    assert_eq!(tx.user_by_id(alice.id).await.unwrap(), Some(changed));
    assert_eq!(tx.list_users().await.unwrap().len(), 1);
}

async fn the_store_api_never_crosses_tenants(db: TestDb) {
    let clock = ManualClock::starting_now();
    let master = MasterKey::generate().unwrap();
    let a = seed_tenant(&db.store, &master, &clock, "tenant-a").await;
    let b = seed_tenant(&db.store, &master, &clock, "tenant-b").await;
    let bob = seed_user(
        &db.store,
        &clock,
        &b,
        "bob@b.example",
        &[Role::Approver],
        &["sre"],
    )
    .await;
    let bob_token = seed_token(&db.store, &clock, &bob, &[]).await;
    let hash = elevate::crypto::TokenHash::of(&bob_token);
    let bob_token_id = tx_token_id(&db, &b, bob.id).await;
    let b_ca = {
        let mut tb = db.store.tenant(b.tenant_id).await.unwrap();
        let key = tb
            .active_ca_key(KeyPurpose::SshUserCa)
            .await
            .unwrap()
            .unwrap();
        tb.commit().await.unwrap();
        key
    };

    // (On SQLite a tenant transaction holds the write lock: never open two at once.)
    let mut tx = db.store.tenant(a.tenant_id).await.unwrap();
    assert_eq!(tx.user_by_id(bob.id).await.unwrap(), None);
    assert_eq!(tx.user_by_email("bob@b.example").await.unwrap(), None);
    assert!(tx.list_users().await.unwrap().is_empty());
    assert_eq!(tx.api_token_by_hash(&hash).await.unwrap(), None);
    assert!(tx.api_tokens_of(bob.id).await.unwrap().is_empty());
    assert!(
        !tx.revoke_api_token(bob_token_id, clock.now())
            .await
            .unwrap()
    );
    assert!(matches!(
        tx.update_user(bob.id, &UserChange::default(), clock.now())
            .await,
        Err(StoreError::NotFound)
    ));
    let a_events = tx.audit_events(0, 1000).await.unwrap();
    assert!(a_events.iter().all(|e| e.tenant_id == a.tenant_id));
    assert_eq!(tx.get_tenant().await.unwrap().slug, "tenant-a");
    let a_ca = tx
        .active_ca_key(KeyPurpose::SshUserCa)
        .await
        .unwrap()
        .unwrap();
    assert_ne!(a_ca.id, b_ca.id);
    tx.commit().await.unwrap();

    // A secret resolves to its own tenant only.
    assert_eq!(
        db.store
            .secret_tenant(SecretKind::Api, hash.as_bytes())
            .await
            .unwrap(),
        Some(b.tenant_id)
    );
    assert_eq!(
        db.store
            .secret_tenant(SecretKind::Session, hash.as_bytes())
            .await
            .unwrap(),
        None
    );
}

async fn tx_token_id(db: &TestDb, tenant: &elevate::model::Tenant, user: uuid::Uuid) -> uuid::Uuid {
    let mut tx = db.store.tenant(tenant.tenant_id).await.unwrap();
    let id = tx.api_tokens_of(user).await.unwrap()[0].id;
    tx.commit().await.unwrap();
    id
}

async fn audit_chain_is_gapless_and_linked_under_concurrency(db: TestDb) {
    let clock = std::sync::Arc::new(ManualClock::starting_now());
    let master = MasterKey::generate().unwrap();
    let tenant = seed_tenant(&db.store, &master, clock.as_ref(), "chain").await;
    let mut tasks = Vec::new();
    for i in 0..12 {
        let (store, clock, tenant) = (db.store.clone(), clock.clone(), tenant.clone());
        tasks.push(tokio::spawn(async move {
            let email = format!("u{i}@chain.example");
            admin::create_user(
                &store,
                &ctx(clock.as_ref()),
                &tenant,
                &email,
                None,
                &[Role::Requester],
                &[],
            )
            .await
            .unwrap();
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let mut tx = db.store.tenant(tenant.tenant_id).await.unwrap();
    let events = tx.audit_events(0, 1000).await.unwrap();
    assert_eq!(events.len(), 13);
    assert_eq!(
        events.iter().map(|e| e.seq).collect::<Vec<_>>(),
        (1..=13).collect::<Vec<_>>()
    );
    audit::verify_chain(&events).unwrap();
    assert_eq!(
        tx.audit_events(10, 2)
            .await
            .unwrap()
            .iter()
            .map(|e| e.seq)
            .collect::<Vec<_>>(),
        vec![11, 12]
    );

    // An edited record no longer verifies, and the break is named.
    let mut edited = events.clone();
    edited[4].subject = "someone-else@chain.example".into();
    assert_eq!(
        audit::verify_chain(&edited),
        Err(audit::ChainBreak::Content { seq: 5 })
    );
}

async fn a_change_without_its_audit_record_is_not_committed(db: TestDb) {
    let clock = ManualClock::starting_now();
    let master = MasterKey::generate().unwrap();
    let tenant = seed_tenant(&db.store, &master, &clock, "strict").await;
    let mut tx = db.store.tenant(tenant.tenant_id).await.unwrap();
    let new = NewUser {
        email: "ghost@strict.example".into(),
        display_name: "Ghost".into(),
        roles: vec![],
        groups: vec![],
    };
    tx.insert_user(&new, clock.now()).await.unwrap();
    assert!(matches!(tx.commit().await, Err(StoreError::Unaudited)));
    let mut tx = db.store.tenant(tenant.tenant_id).await.unwrap();
    assert_eq!(
        tx.user_by_email("ghost@strict.example").await.unwrap(),
        None
    );
}

async fn a_failing_audit_write_fails_the_change(db: TestDb) {
    let clock = ManualClock::starting_now();
    let master = MasterKey::generate().unwrap();
    let tenant = seed_tenant(&db.store, &master, &clock, "sabotaged").await;
    match db.backend {
        elevate::store::Backend::Sqlite => {
            db.owner_exec(
                "CREATE TRIGGER audit_sabotage BEFORE INSERT ON audit_events
                 BEGIN SELECT RAISE(ABORT, 'audit store is full'); END;",
            )
            .await
        }
        elevate::store::Backend::Postgres => {
            db.owner_exec("REVOKE INSERT ON audit_events FROM elevate_app")
                .await
        }
    }
    let result = admin::create_user(
        &db.store,
        &ctx(&clock),
        &tenant,
        "eve@sabotaged.example",
        None,
        &[Role::Admin],
        &[],
    )
    .await;
    assert!(matches!(result, Err(AppError::Internal(_))), "{result:?}");
    let mut tx = db.store.tenant(tenant.tenant_id).await.unwrap();
    assert_eq!(
        tx.user_by_email("eve@sabotaged.example").await.unwrap(),
        None,
        "change kept without its audit record"
    );
}

async fn api_tokens_resolve_to_their_tenant_and_can_be_revoked(db: TestDb) {
    let clock = ManualClock::starting_now();
    let master = MasterKey::generate().unwrap();
    let tenant = seed_tenant(&db.store, &master, &clock, "tokens").await;
    let carol = seed_user(
        &db.store,
        &clock,
        &tenant,
        "carol@tokens.example",
        &[Role::Auditor],
        &[],
    )
    .await;

    let refused = admin::create_token(
        &db.store,
        &ctx(&clock),
        &carol,
        "t",
        &[Scope::Admin],
        admin::DEFAULT_TOKEN_TTL,
    )
    .await;
    assert!(matches!(refused, Err(AppError::Forbidden(m)) if m.contains("admin")));

    let issued = admin::create_token(
        &db.store,
        &ctx(&clock),
        &carol,
        "laptop",
        &[],
        time::Duration::days(7),
    )
    .await
    .unwrap();
    assert_eq!(issued.token.scopes.0, vec![Scope::Read, Scope::Audit]);
    assert_eq!(
        issued.token.expires_at,
        Some(clock.now() + time::Duration::days(7))
    );
    let hash =
        elevate::crypto::TokenHash::of_presented(TokenKind::Api, issued.secret.expose()).unwrap();
    assert_eq!(issued.token.secret_hash, hash.as_bytes());
    assert_eq!(
        db.store
            .secret_tenant(SecretKind::Api, hash.as_bytes())
            .await
            .unwrap(),
        Some(tenant.tenant_id)
    );

    let (other, other_hash) = SecretToken::generate(TokenKind::Api).unwrap();
    assert_eq!(
        db.store
            .secret_tenant(SecretKind::Api, other_hash.as_bytes())
            .await
            .unwrap(),
        None
    );
    drop(other);

    assert_eq!(
        admin::revoke_tokens(&db.store, &ctx(&clock), &carol, &[issued.token.id])
            .await
            .unwrap(),
        1
    );
    assert_eq!(
        admin::revoke_tokens(&db.store, &ctx(&clock), &carol, &[issued.token.id])
            .await
            .unwrap(),
        0
    );
    let mut tx = db.store.tenant(tenant.tenant_id).await.unwrap();
    let stored = tx.api_token_by_hash(&hash).await.unwrap().unwrap();
    assert_eq!(stored.revoked_at, Some(clock.now()));
    assert!(!stored.is_usable(clock.now()));
    let actions: Vec<String> = tx
        .audit_events(0, 100)
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.action)
        .collect();
    assert_eq!(
        actions,
        [
            "tenant.created",
            "user.created",
            "token.created",
            "token.revoked"
        ]
    );
}

async fn target_passwords_are_sealed_at_rest(db: TestDb) {
    let clock = ManualClock::starting_now();
    let master = MasterKey::generate().unwrap();
    let tenant = seed_tenant(&db.store, &master, &clock, "targets").await;
    let password = "correct-horse-battery-staple";
    let mut tx = db.store.tenant(tenant.tenant_id).await.unwrap();
    let target = tx
        .upsert_target(
            "orders",
            TargetKind::Postgres,
            "postgres://elevate_admin@db.internal/orders",
            |id| {
                master.seal(
                    &elevate::model::Target::seal_context(tenant.tenant_id, id),
                    password.as_bytes(),
                )
            },
            clock.now(),
        )
        .await
        .unwrap()
        .unwrap();
    tx.append_audit(
        &NewEvent::new(Actor::System, "target.set", "orders"),
        clock.now(),
    )
    .await
    .unwrap();
    tx.commit().await.unwrap();

    let mut tx = db.store.tenant(tenant.tenant_id).await.unwrap();
    let stored = tx.target_by_name("orders").await.unwrap().unwrap();
    assert_eq!(stored.id, target.id);
    assert!(!String::from_utf8_lossy(&stored.admin_secret_sealed).contains(password));
    let context = elevate::model::Target::seal_context(tenant.tenant_id, stored.id);
    assert_eq!(
        master
            .open(&context, &stored.admin_secret_sealed)
            .unwrap()
            .expose_secret()
            .as_slice(),
        password.as_bytes()
    );
    // Bound to its row: the blob does not open as another target's secret.
    let other = elevate::model::Target::seal_context(tenant.tenant_id, uuid::Uuid::now_v7());
    assert!(master.open(&other, &stored.admin_secret_sealed).is_err());
    assert_eq!(tx.targets().await.unwrap().len(), 1);
}

#[tokio::test]
async fn sqlite_audit_log_is_append_only() {
    let db = TestDb::sqlite().await;
    let clock = ManualClock::starting_now();
    let master = MasterKey::generate().unwrap();
    seed_tenant(&db.store, &master, &clock, "append").await;
    let mut c = <sqlx::SqliteConnection as sqlx::Connection>::connect(&db.url)
        .await
        .unwrap();
    let update = sqlx::query("UPDATE audit_events SET subject = 'x'")
        .execute(&mut c)
        .await;
    assert!(update.unwrap_err().to_string().contains("append-only"));
    let delete = sqlx::query("DELETE FROM audit_events")
        .execute(&mut c)
        .await;
    assert!(delete.unwrap_err().to_string().contains("append-only"));
}

fn user(email: &str) -> NewUser {
    NewUser {
        email: email.into(),
        display_name: email.into(),
        roles: vec![],
        groups: vec![],
    }
}

async fn a_read_transaction_does_not_wait_for_writers_and_cannot_write(db: TestDb) {
    let clock = ManualClock::starting_now();
    let master = MasterKey::generate().unwrap();
    let tenant = seed_tenant(&db.store, &master, &clock, "reader").await;
    let mut writer = db.store.tenant(tenant.tenant_id).await.unwrap();
    writer
        .insert_user(&user("new@reader.example"), clock.now())
        .await
        .unwrap();
    // SQLite: a read beside an open write transaction neither waits for its lock nor sees
    // what it has not committed.
    let mut reader = tokio::time::timeout(
        std::time::Duration::from_secs(3),
        db.store.read(tenant.tenant_id),
    )
    .await
    .expect("a read waited for the writer")
    .unwrap();
    assert!(reader.is_read_only());
    assert_eq!(
        reader.user_by_email("new@reader.example").await.unwrap(),
        None
    );
    // The database itself refuses a write in a read transaction, and an audit record is
    // refused before it is queued.
    let event = NewEvent::new(Actor::System, "test.event", "x");
    assert!(reader.append_audit(&event, clock.now()).await.is_err());
    assert!(
        reader
            .insert_user(&user("other@reader.example"), clock.now())
            .await
            .is_err(),
        "a read transaction wrote"
    );
    drop(reader);
    writer.append_audit(&event, clock.now()).await.unwrap();
    writer.commit().await.unwrap();
    let mut reader = db.store.read(tenant.tenant_id).await.unwrap();
    assert!(
        reader
            .user_by_email("new@reader.example")
            .await
            .unwrap()
            .is_some()
    );
    assert_eq!(
        reader.user_by_email("other@reader.example").await.unwrap(),
        None
    );
}

async fn audit_events_are_written_at_commit_and_read_back_before_it(db: TestDb) {
    let clock = ManualClock::starting_now();
    let master = MasterKey::generate().unwrap();
    let tenant = seed_tenant(&db.store, &master, &clock, "deferred").await;
    let head = |db: &TestDb| {
        let store = db.store.clone();
        async move {
            let mut tx = store.read(tenant.tenant_id).await.unwrap();
            tx.audit_head().await.unwrap().map_or(0, |h| h.0)
        }
    };
    let before = head(&db).await;
    let event = |n: u32| NewEvent::new(Actor::System, "test.event", format!("e{n}"));

    // Appended events are read back inside their transaction (the log is written before any
    // read of it), and not seen outside it before commit.
    let mut tx = db.store.tenant(tenant.tenant_id).await.unwrap();
    tx.append_audit(&event(1), clock.now()).await.unwrap();
    tx.append_audit(&event(2), clock.now()).await.unwrap();
    assert_eq!(tx.audit_head().await.unwrap().unwrap().0, before + 2);
    tx.append_audit(&event(3), clock.now()).await.unwrap();
    tx.commit().await.unwrap();
    assert_eq!(head(&db).await, before + 3);

    // A rolled back transaction leaves none of its events.
    let mut tx = db.store.tenant(tenant.tenant_id).await.unwrap();
    tx.append_audit(&event(4), clock.now()).await.unwrap();
    tx.rollback().await.unwrap();
    assert_eq!(head(&db).await, before + 3);

    let mut tx = db.store.read(tenant.tenant_id).await.unwrap();
    let events = tx.audit_events(0, 1000).await.unwrap();
    audit::verify_chain(&events).unwrap();
    let subjects: Vec<&str> = events[before as usize..]
        .iter()
        .map(|e| e.subject.as_str())
        .collect();
    assert_eq!(subjects, ["e1", "e2", "e3"]);
}

/// A transaction dropped without commit, or dropped while a statement of it was on its way
/// (a client that went away mid-request), hands the next one a clean connection: nothing of it
/// is committed and nothing of it is left open. On SQLite the pool no longer pings a connection
/// on its way back (`test_after_release(false)`), so this is what that relies on.
async fn dropped_and_cancelled_transactions_leave_the_next_one_whole(db: TestDb) {
    let clock = ManualClock::starting_now();
    let master = MasterKey::generate().unwrap();
    let tenant = seed_tenant(&db.store, &master, &clock, "dropped").await;
    let event = NewEvent::new(Actor::System, "test.event", "kept");
    let mut in_flight = 0;
    for i in 0..20 {
        let mut tx = db.store.tenant(tenant.tenant_id).await.unwrap();
        let dropped = user(&format!("dropped{i}@tx.example"));
        if i % 2 == 0 {
            tx.insert_user(&dropped, clock.now()).await.unwrap();
        } else {
            // Polled once, so its statement is on its way, then dropped, usually in flight.
            in_flight +=
                u32::from(polled_once_then_dropped(tx.insert_user(&dropped, clock.now())).await);
        }
        drop(tx);
        let mut reader = db.store.read(tenant.tenant_id).await.unwrap();
        in_flight +=
            u32::from(polled_once_then_dropped(reader.user_by_email("x@tx.example")).await);
        drop(reader);

        let mut tx = db
            .store
            .tenant(tenant.tenant_id)
            .await
            .unwrap_or_else(|e| panic!("round {i}: the next transaction: {e}"));
        tx.insert_user(&user(&format!("kept{i}@tx.example")), clock.now())
            .await
            .unwrap_or_else(|e| panic!("round {i}: the next insert: {e}"));
        tx.append_audit(&event, clock.now()).await.unwrap();
        tx.commit().await.unwrap();
        let (kept, dropped) = (
            format!("kept{i}@tx.example"),
            format!("dropped{i}@tx.example"),
        );
        let mut reader = db.store.read(tenant.tenant_id).await.unwrap();
        assert!(
            reader.user_by_email(&kept).await.unwrap().is_some(),
            "round {i}"
        );
        assert_eq!(
            reader.user_by_email(&dropped).await.unwrap(),
            None,
            "round {i}"
        );
    }
    assert!(in_flight > 0, "no call was dropped in flight");
}

/// Polls `f` once and drops it: whether it was still pending then (its call in flight).
async fn polled_once_then_dropped<F: std::future::Future>(f: F) -> bool {
    let mut f = std::pin::pin!(f);
    std::future::poll_fn(|cx| std::task::Poll::Ready(f.as_mut().poll(cx).is_pending())).await
}

/// A pooled Postgres connection the server ended while it sat idle (a restart, a failover, an
/// idle timeout) is replaced when it is next taken, not handed to a transaction that then
/// fails: connections idle for a second or more are pinged first. Busier ones are not (sqlx
/// pinged them on release), which saves a round trip per transaction.
#[tokio::test]
async fn postgres_connections_ended_while_idle_are_replaced() {
    let db = TestDb::postgres().await;
    let clock = ManualClock::starting_now();
    let master = MasterKey::generate().unwrap();
    let tenant = seed_tenant(&db.store, &master, &clock, "idle").await;
    let mut open = Vec::new();
    for _ in 0..4 {
        open.push(db.store.read(tenant.tenant_id).await.unwrap());
    }
    for tx in open {
        tx.commit().await.unwrap();
    }
    db.owner_exec(&format!(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity
         WHERE datname = current_database() AND usename = '{}'",
        crate::helpers::APP_LOGIN_ROLE
    ))
    .await;
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    for i in 0..6 {
        let mut tx = db
            .store
            .read(tenant.tenant_id)
            .await
            .unwrap_or_else(|e| panic!("read {i} after the sessions ended: {e}"));
        assert!(tx.lockdown().await.unwrap().is_none());
        tx.commit().await.unwrap();
        let mut tx = db
            .store
            .tenant(tenant.tenant_id)
            .await
            .unwrap_or_else(|e| panic!("write {i} after the sessions ended: {e}"));
        assert!(tx.lockdown().await.unwrap().is_none());
        tx.rollback().await.unwrap();
    }
}
