//! Request lists (issue 13 item 5): filtered in SQL, paged by cursor, served by indexes, so a
//! requester cannot push a request out of an approver's inbox by filing and cancelling others.

use std::collections::HashSet;

use elevate::broker::service::{self, ListQuery};
use elevate::clock::Clock;
use elevate::model::{Role, User};
use elevate::workflow::State;
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{Acme, TestApp, TestDb, acme, seed_user};

struct Org {
    app: TestApp,
    acme: Acme,
    carol_token: String,
    frank: User,
}

/// The acme fixture's tenant, people and API clients, as `o.alice`, `o.bob_api`, ...
impl std::ops::Deref for Org {
    type Target = Acme;
    fn deref(&self) -> &Acme {
        &self.acme
    }
}

async fn org(db: TestDb) -> Org {
    let app = TestApp::spawn(db).await;
    let acme = acme(&app).await;
    let (store, clock) = (app.store().clone(), app.clock.clone());
    let user = async |email: &str, roles: &[Role], groups: &[&str]| {
        seed_user(&store, clock.as_ref(), &acme.tenant, email, roles, groups).await
    };
    let carol = user("carol@acme.example", &[Role::Admin, Role::Auditor], &[]).await;
    // An approver of another group: sees nothing of alice's.
    let frank = user("frank@acme.example", &[Role::Approver], &["dba"]).await;
    let carol_token = app.as_user(&carol).await.token;
    Org {
        app,
        acme,
        carol_token,
        frank,
    }
}

impl Org {
    async fn post(&self, token: &str, path: &str, body: Value) -> (StatusCode, Value) {
        self.app.api(token).post(path, body).await
    }

    async fn get(&self, token: &str, path: &str) -> (StatusCode, Value) {
        self.app.api(token).get(path).await
    }

    async fn file(&self, break_glass: bool) -> String {
        let (status, r) = self
            .post(
                &self.alice_api.token,
                "/api/v1/requests",
                json!({"profile": "prod-shell", "duration": "30m", "justification": "deploy",
                       "ticket": "INC-1", "break_glass": break_glass}),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{r}");
        r["id"].as_str().unwrap().to_owned()
    }

    /// Every id of a list, following `next` page by page (`limit` per page).
    async fn all_pages(&self, token: &str, query: &str, limit: usize) -> Vec<String> {
        let mut ids = Vec::new();
        let mut after = String::new();
        for _ in 0..1000 {
            let (status, page) = self
                .get(
                    token,
                    &format!("/api/v1/requests?{query}&limit={limit}&after={after}"),
                )
                .await;
            assert_eq!(status, StatusCode::OK, "{page}");
            let items = page["requests"].as_array().unwrap();
            assert!(items.len() <= limit);
            ids.extend(items.iter().map(|r| r["id"].as_str().unwrap().to_owned()));
            match page["next"].as_str() {
                Some(next) => after = next.to_owned(),
                None => return ids,
            }
        }
        panic!("paging did not end");
    }
}

/// The attack: alice activates break-glass and files a pending request, then files and cancels
/// more than 200 requests. Bob's inbox (API and page) and the dashboard still show both.
async fn filing_and_cancelling_many_requests_hides_nothing_from_approvers(db: TestDb) {
    let o = org(db).await;
    let glass = o.file(true).await;
    let pending = o.file(false).await;
    for _ in 0..205 {
        let id = o.file(false).await;
        let (status, r) = o
            .post(
                &o.alice_api.token,
                &format!("/api/v1/requests/{id}/cancel"),
                json!({}),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{r}");
    }

    let (status, inbox) = o
        .get(&o.bob_api.token, "/api/v1/requests?reviewable=true")
        .await;
    assert_eq!(status, StatusCode::OK, "{inbox}");
    let ids: Vec<&str> = inbox["requests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, vec![pending.as_str(), glass.as_str()], "{inbox}");
    assert_eq!(inbox["next"], Value::Null);
    // The state filter is applied in SQL too: the one pending request, not the newest 200 rows.
    let (_, listed) = o
        .get(&o.bob_api.token, "/api/v1/requests?state=pending")
        .await;
    assert_eq!(listed["requests"][0]["id"], pending.as_str());
    assert_eq!(listed["requests"].as_array().unwrap().len(), 1);
    // The unfiltered list pages through all 207 for an approver of the profile.
    let all = o.all_pages(&o.bob_api.token, "", 50).await;
    assert_eq!(all.len(), 207);
    assert!(all.contains(&glass) && all.contains(&pending));

    let bob = o.app.signed_in(&o.bob).await;
    let page = bob
        .get(o.app.url("/approvals"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(page.contains(&format!("/requests/{glass}")), "{page}");
    assert!(page.contains(&format!("/requests/{pending}")), "{page}");
    let dashboard = bob
        .get(o.app.url("/dashboard"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        dashboard.contains("2 waiting for your decision"),
        "{dashboard}"
    );

    // An approver of other groups sees none of it; alice sees her own.
    let frank = service::visible(o.app.store(), &o.tenant, &o.frank, &ListQuery::default())
        .await
        .unwrap();
    assert!(frank.items.is_empty());
    let mine = service::visible(
        o.app.store(),
        &o.tenant,
        &o.alice,
        &ListQuery {
            mine: true,
            states: vec![State::Pending, State::Active],
            ..Default::default()
        },
    )
    .await
    .unwrap();
    let mine: Vec<String> = mine
        .items
        .iter()
        .map(|l| l.stored.request.id.to_string())
        .collect();
    assert_eq!(mine, vec![pending, glass]);
}

/// Paging returns every visible request exactly once, newest first, even while new requests
/// arrive between pages; a bad cursor or limit is a 422.
async fn paging_returns_every_request_once(db: TestDb) {
    let o = org(db).await;
    let mut filed = Vec::new();
    for i in 0..23 {
        filed.push(o.file(false).await);
        if i % 5 == 0 {
            // Several requests in the same second: the id breaks the tie.
            o.app.clock.advance(time::Duration::seconds(1));
        }
    }
    let (_, first) = o.get(&o.carol_token, "/api/v1/requests?limit=4").await;
    let mut seen: Vec<String> = first["requests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_str().unwrap().to_owned())
        .collect();
    // Filed after the first page was read: it is newer, so it never shows up on later pages.
    let late = o.file(false).await;
    let mut after = first["next"].as_str().unwrap().to_owned();
    loop {
        let (status, page) = o
            .get(
                &o.carol_token,
                &format!("/api/v1/requests?limit=4&after={after}"),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{page}");
        seen.extend(
            page["requests"]
                .as_array()
                .unwrap()
                .iter()
                .map(|r| r["id"].as_str().unwrap().to_owned()),
        );
        match page["next"].as_str() {
            Some(n) => after = n.to_owned(),
            None => break,
        }
    }
    let newest_first: Vec<String> = filed.iter().rev().cloned().collect();
    assert_eq!(seen, newest_first);
    assert!(!seen.contains(&late));
    let unique: HashSet<&String> = seen.iter().collect();
    assert_eq!(unique.len(), seen.len());
    // Every page size gives the same rows.
    for limit in [1, 7, 24, 500] {
        let all = o.all_pages(&o.carol_token, "", limit).await;
        let mut want = vec![late.clone()];
        want.extend(newest_first.iter().cloned());
        assert_eq!(all, want, "limit {limit}");
    }
    for bad in ["after=nonsense", "after=12-zz", "limit=0", "limit=501"] {
        let (status, body) = o
            .get(&o.carol_token, &format!("/api/v1/requests?{bad}"))
            .await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{bad}: {body}");
        assert!(body["error"]["message"].is_string());
    }
    // The inbox page pages too.
    let bob = o.app.signed_in(&o.bob).await;
    let page = bob
        .get(o.app.url("/approvals?limit=20"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let next = page
        .split("href=\"/approvals?after=")
        .nth(1)
        .and_then(|s| s.split('"').next())
        .expect("a link to the next page")
        .replace("&amp;", "&");
    let rest = bob
        .get(o.app.url(&format!("/approvals?after={next}")))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(rest.contains(&format!("/requests/{}", filed[0])), "{rest}");
    assert!(!rest.contains("Older requests"));
    let res = bob
        .get(o.app.url("/approvals?after=bogus"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::UNPROCESSABLE_ENTITY);
}

/// The list queries are served by the indexes of migration 0011 (SQLite `EXPLAIN QUERY PLAN`,
/// Postgres `EXPLAIN`): no scan of the requests table, no sort of it.
async fn list_queries_use_their_indexes(db: TestDb) {
    let o = org(db).await;
    let glass = o.file(true).await;
    for _ in 0..3 {
        o.file(false).await;
    }
    let carol = elevate::admin::user_by_email(o.app.store(), &o.tenant, "carol@acme.example")
        .await
        .unwrap();
    let cursor = elevate::store::Cursor::parse(&format!(
        "{}-{}",
        o.app.clock.now().unix_timestamp(),
        glass.replace('-', "")
    ))
    .unwrap();
    let cases: Vec<(&str, &User, ListQuery, &[&str])> = vec![
        (
            "inbox",
            &o.bob,
            ListQuery {
                reviewable: true,
                ..Default::default()
            },
            &["requests_waiting"],
        ),
        (
            "inbox, next page",
            &o.bob,
            ListQuery {
                reviewable: true,
                after: Some(cursor),
                ..Default::default()
            },
            &["requests_waiting"],
        ),
        (
            "mine",
            &o.alice,
            ListQuery {
                mine: true,
                states: vec![State::Pending, State::Scheduled, State::Active],
                ..Default::default()
            },
            &["requests_requester_newest"],
        ),
        (
            "pending",
            &carol,
            ListQuery {
                states: vec![State::Pending],
                ..Default::default()
            },
            // Postgres proves `state = 'pending'` implies the inbox index's predicate.
            &["requests_state_newest", "requests_waiting"],
        ),
        (
            "one state",
            &carol,
            ListQuery {
                states: vec![State::Cancelled],
                ..Default::default()
            },
            &["requests_state_newest"],
        ),
        (
            "everything (admin)",
            &carol,
            ListQuery {
                after: Some(cursor),
                ..Default::default()
            },
            &["requests_newest"],
        ),
        (
            "everything visible (approver)",
            &o.bob,
            ListQuery::default(),
            &["requests_newest", "requests_requester_newest"],
        ),
        (
            "a requester's own",
            &o.alice,
            ListQuery::default(),
            &["requests_requester_newest"],
        ),
    ];
    for (what, user, query, indexes) in cases {
        let filter = service::filter_for(user, &query).unwrap();
        let mut tx = o.app.store().tenant(o.tenant.tenant_id).await.unwrap();
        let plan = tx.explain_list_requests(&filter).await.unwrap().join("\n");
        tx.rollback().await.unwrap();
        assert!(
            indexes.iter().any(|i| plan.contains(i)),
            "{what}: expected {indexes:?} in\n{plan}"
        );
        match o.app.db.backend {
            elevate::store::Backend::Sqlite => {
                for line in plan.lines() {
                    assert!(
                        !line.starts_with("SCAN r") || line.contains("INDEX"),
                        "{what}: table scan\n{plan}"
                    );
                    assert!(!line.contains("TEMP B-TREE"), "{what}: sorts\n{plan}");
                }
            }
            elevate::store::Backend::Postgres => {
                assert!(
                    !plan.contains("Seq Scan on requests"),
                    "{what}: table scan\n{plan}"
                );
            }
        }
    }
}

/// The reaper's query for what is due is served by indexes (open grants by `grants_open` of
/// migration 0014): no scan of the requests or grants of the tenant, however many there are.
async fn the_reapers_query_uses_its_indexes(db: TestDb) {
    let o = org(db).await;
    o.file(true).await;
    o.file(false).await;
    let mut tx = o.app.store().tenant(o.tenant.tenant_id).await.unwrap();
    let plan = tx.explain_due(o.app.clock.now()).await.unwrap().join("\n");
    tx.rollback().await.unwrap();
    // Which request index serves each part is the planner's choice on tables this small; the
    // grants have no other index that leaves out the ended ones.
    assert!(
        plan.contains("grants_open"),
        "grants_open not used:\n{plan}"
    );
    match o.app.db.backend {
        elevate::store::Backend::Sqlite => {
            for line in plan.lines() {
                assert!(
                    !(line.contains("SCAN r")
                        || line.contains("SCAN g")
                        || line.contains("SCAN requests")
                        || line.contains("SCAN grants"))
                        || line.contains("INDEX"),
                    "table scan:\n{plan}"
                );
            }
        }
        elevate::store::Backend::Postgres => {
            assert!(
                !plan.contains("Seq Scan on requests") && !plan.contains("Seq Scan on grants"),
                "table scan:\n{plan}"
            );
        }
    }
}

crate::on_both_backends!(
    filing_and_cancelling_many_requests_hides_nothing_from_approvers,
    paging_returns_every_request_once,
    list_queries_use_their_indexes,
    the_reapers_query_uses_its_indexes,
);
