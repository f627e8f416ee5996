//! What each front-end action costs the store: at most one read transaction (authentication)
//! before the one transaction that loads, locks and acts (issue 12, item 6). Counted through
//! `Store::transactions_begun`, around real HTTP calls, on both stores.

use reqwest::StatusCode;

use elevate::model::Role;

use crate::fixtures::shop;
use crate::helpers::{TestDb, seed_user};
use crate::on_both_backends;
use crate::sshd::user_key;

/// The transactions `call` begins, measured around it.
async fn cost<T>(
    store: &elevate::store::Store,
    call: impl std::future::Future<Output = T>,
) -> (u64, T) {
    let (n, _, out) = cost_split(store, call).await;
    (n, out)
}

/// The transactions `call` begins, and how many of them could write.
async fn cost_split<T>(
    store: &elevate::store::Store,
    call: impl std::future::Future<Output = T>,
) -> (u64, u64, T) {
    let (before, writes) = (store.transactions_begun(), store.write_transactions_begun());
    let out = call.await;
    (
        store.transactions_begun() - before,
        store.write_transactions_begun() - writes,
        out,
    )
}

async fn each_action_reads_once_and_writes_once(db: TestDb) {
    let shop = shop(db).await;
    let store = shop.app.store().clone();
    let alice = shop.app.api(&shop.alice);
    let bob = shop.app.api(&shop.bob);

    // A token's first use in an hour also writes its last-used time, in a write transaction
    // of its own; every other authentication only reads (SQLite: one statement, outside any
    // tenant transaction; Postgres: one read-only transaction).
    for (who, person) in [(&alice, "alice"), (&bob, "bob")] {
        let (n, writes, (s, r)) = cost_split(&store, who.get("/api/v1/me")).await;
        assert_eq!(s, StatusCode::OK, "{r}");
        assert_eq!(writes, 1, "{person}'s first call");
        assert!(n <= 2, "{person}'s first call took {n} transactions");
        let (n, writes, _) = cost_split(&store, who.get("/api/v1/me")).await;
        assert_eq!(writes, 0, "{person}'s second call");
        assert!(n <= 1, "{person}'s second call took {n} transactions");
    }

    let (n, id) = cost(&store, alice.request("prod-shell", "1h")).await;
    // Filing also reads the policy in force before its write.
    assert!(n <= 3, "filing a request took {n} transactions");

    let (n, writes, (s, r)) = cost_split(&store, bob.approve(&id)).await;
    assert_eq!(s, StatusCode::OK, "{r}");
    assert_eq!(r["state"], "active", "{r}");
    assert!(
        n <= 2,
        "approving took {n} transactions (authentication, then the action)"
    );
    // Authentication reads without the write lock; only the action writes.
    assert_eq!(writes, 1, "approving took {writes} write transactions");

    let key = std::fs::read_to_string(user_key(&shop.dir, "ed25519").1).unwrap();
    let (n, (s, r)) = cost(&store, alice.ssh_certificate(&id, &key)).await;
    assert_eq!(s, StatusCode::CREATED, "{r}");
    assert!(
        n <= 2,
        "issuing a certificate took {n} transactions (authentication, then the issuance)"
    );

    let (n, writes, (s, r)) = cost_split(&store, alice.show(&id)).await;
    assert_eq!(s, StatusCode::OK, "{r}");
    assert!(n <= 2, "showing a request took {n} transactions");
    assert_eq!(
        writes, 0,
        "showing a request took {writes} write transactions"
    );
    let (_, writes, (s, r)) = cost_split(&store, alice.get("/api/v1/requests")).await;
    assert_eq!(s, StatusCode::OK, "{r}");
    assert_eq!(
        writes, 0,
        "listing requests took {writes} write transactions"
    );

    // A refusal costs one more: its audit record is written after the rollback.
    let (n, (s, _)) = cost(&store, bob.ssh_certificate(&id, &key)).await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    assert!(n <= 3, "a refused issuance took {n} transactions");

    let pending = alice.request("prod-shell", "30m").await;
    let (n, (s, r)) = cost(&store, bob.deny(&pending, "not today")).await;
    assert_eq!(
        (s, r["state"].as_str()),
        (StatusCode::OK, Some("denied")),
        "{r}"
    );
    assert!(n <= 2, "denying took {n} transactions");

    let carol = seed_user(
        &store,
        shop.app.clock.as_ref(),
        &shop.tenant,
        "carol@acme.example",
        &[Role::Admin],
        &[],
    )
    .await;
    // A page load in a live session reads only (its last-seen time is written at most once a
    // minute).
    let browser = shop.app.signed_in(&carol).await;
    let (_, writes, page) = cost_split(&store, async {
        browser
            .get(shop.app.url(&format!("/requests/{id}")))
            .send()
            .await
            .unwrap()
            .status()
    })
    .await;
    assert_eq!(page, StatusCode::OK);
    assert_eq!(writes, 0, "a page load took {writes} write transactions");

    let carol = shop.app.as_user(&carol).await;
    carol.get("/api/v1/me").await;
    let (n, (s, r)) = cost(&store, carol.revoke(&id, "offboarding drill")).await;
    assert_eq!(
        (s, r["state"].as_str()),
        (StatusCode::OK, Some("revoked")),
        "{r}"
    );
    assert!(n <= 2, "revoking took {n} transactions");
}

on_both_backends!(each_action_reads_once_and_writes_once);
