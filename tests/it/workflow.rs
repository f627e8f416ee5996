//! The request workflow end to end over the JSON API, with the reaper moving time.

use elevate::clock::{Clock, SharedClock};
use elevate::model::{Role, Tenant};
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::fixtures::ACME_POLICY as POLICY;
use crate::helpers::{TestApp, TestDb, csrf_in, ctx, seed_tenant, seed_token, seed_user};

struct Org {
    app: TestApp,
    tenant: Tenant,
    alice: String,
    bob: String,
    dave: String,
    erin: String,
    carol: String,
}

async fn org(db: TestDb) -> Org {
    let app = TestApp::spawn(db).await;
    let (store, clock) = (app.store().clone(), app.clock.clone());
    let tenant = seed_tenant(&store, &app.master, clock.as_ref(), "acme").await;
    elevate::broker::policy::apply(&store, &ctx(clock.as_ref()), &tenant, POLICY)
        .await
        .unwrap();
    let token = async |email: &str, roles: &[Role], groups: &[&str]| {
        let user = seed_user(&store, clock.as_ref(), &tenant, email, roles, groups).await;
        seed_token(&store, clock.as_ref(), &user, &[]).await
    };
    let alice = token("alice@acme.example", &[Role::Requester], &["engineering"]).await;
    let bob = token("bob@acme.example", &[Role::Approver], &["sre"]).await;
    let dave = token("dave@acme.example", &[Role::Approver], &["sre"]).await;
    let erin = token(
        "erin@acme.example",
        &[Role::Requester, Role::Approver],
        &["engineering", "sre"],
    )
    .await;
    let carol = token("carol@acme.example", &[Role::Admin, Role::Auditor], &[]).await;
    Org {
        app,
        tenant,
        alice,
        bob,
        dave,
        erin,
        carol,
    }
}

impl Org {
    async fn post(&self, token: &str, path: &str, body: Value) -> (StatusCode, Value) {
        self.app.api(token).post(path, body).await
    }

    async fn get(&self, token: &str, path: &str) -> (StatusCode, Value) {
        self.app.api(token).get(path).await
    }

    async fn ask(&self, token: &str, body: Value) -> Value {
        let (status, r) = self.post(token, "/api/v1/requests", body).await;
        assert_eq!(status, StatusCode::CREATED, "{r}");
        r
    }

    async fn reap(&self) -> usize {
        let clock: SharedClock = self.app.clock.clone();
        elevate::reaper::run_once(self.app.store(), &clock, &self.app.base)
            .await
            .unwrap()
    }

    async fn actions(&self) -> Vec<String> {
        let mut tx = self
            .app
            .store()
            .tenant(self.tenant.tenant_id)
            .await
            .unwrap();
        tx.audit_events(0, 1000)
            .await
            .unwrap()
            .into_iter()
            .map(|e| e.action)
            .collect()
    }
}

fn shell(duration: &str) -> Value {
    json!({"profile": "prod-shell", "duration": duration, "justification": "deploy hotfix", "ticket": "INC-42"})
}

async fn a_request_is_approved_activated_and_expires_on_its_own(db: TestDb) {
    let o = org(db).await;
    let r = o.ask(&o.alice, shell("30m")).await;
    assert_eq!(r["state"], "pending");
    assert_eq!(r["policy_version"], 1);
    let id = r["id"].as_str().unwrap().to_owned();

    o.app.clock.advance(time::Duration::minutes(10));
    let (status, r) = o
        .post(
            &o.bob,
            &format!("/api/v1/requests/{id}/approve"),
            json!({"comment": "ok"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{r}");
    assert_eq!(r["state"], "active");
    let not_after = o.app.clock.now() + time::Duration::minutes(30);
    assert_eq!(
        r["grant"]["not_after"],
        not_after
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap()
    );

    // Visible to its requester, the profile's approvers and admins.
    assert_eq!(
        o.get(&o.dave, &format!("/api/v1/requests/{id}")).await.0,
        StatusCode::OK
    );
    assert_eq!(
        o.get(&o.carol, &format!("/api/v1/requests/{id}")).await.0,
        StatusCode::OK
    );

    // The reaper sleeps until that end (no other deadline is ahead), not a fixed interval.
    let next = elevate::reaper::next_deadline(o.app.store()).await.unwrap();
    assert_eq!(next, Some(not_after));
    assert_eq!(
        elevate::reaper::sleep_until(
            next,
            not_after - time::Duration::seconds(2),
            std::time::Duration::from_secs(5)
        ),
        std::time::Duration::from_millis(2_050)
    );

    o.app.clock.advance(time::Duration::minutes(29));
    assert_eq!(o.reap().await, 0);
    o.app.clock.advance(time::Duration::minutes(1));
    assert_eq!(o.reap().await, 1);
    assert_eq!(
        elevate::reaper::next_deadline(o.app.store()).await.unwrap(),
        None,
        "nothing is ahead once it expired"
    );
    assert_eq!(o.reap().await, 0, "the reaper is idempotent");
    assert_eq!(
        o.get(&o.alice, &format!("/api/v1/requests/{id}")).await.1["state"],
        "expired"
    );
    let actions = o.actions().await;
    for a in [
        "request.submitted",
        "request.approved",
        "grant.activated",
        "request.commented",
        "grant.expired",
    ] {
        assert!(actions.contains(&a.to_owned()), "{a} missing: {actions:?}");
    }
}

crate::on_both_backends!(a_request_is_approved_activated_and_expires_on_its_own);

#[tokio::test]
async fn two_approvers_are_needed_and_nobody_approves_their_own_request() {
    let o = org(TestDb::sqlite().await).await;
    let r = o
        .ask(
            &o.erin,
            json!({"profile": "prod-db-admin", "justification": "migration"}),
        )
        .await;
    let id = r["id"].as_str().unwrap().to_owned();
    let approve = |t: &'static str| format!("/api/v1/requests/{id}/approve{t}");
    let (status, body) = o.post(&o.erin, &approve(""), json!({})).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "self-approval: {body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("own request")
    );
    assert_eq!(
        o.post(&o.bob, &approve(""), json!({})).await.1["state"],
        "pending"
    );
    assert_eq!(
        o.post(&o.bob, &approve(""), json!({})).await.0,
        StatusCode::CONFLICT
    );
    let (_, r) = o.post(&o.dave, &approve(""), json!({})).await;
    assert_eq!(r["state"], "active");
    assert_eq!(r["approvals"].as_array().unwrap().len(), 2);
    assert!(
        o.actions().await.contains(&"request.refused".to_owned()),
        "the self-approval attempt is audited"
    );
}

#[tokio::test]
async fn bad_requests_get_clear_errors_and_change_nothing() {
    let o = org(TestDb::sqlite().await).await;
    let cases = [
        (
            json!({"profile": "nope", "justification": "x"}),
            StatusCode::NOT_FOUND,
            "no profile",
        ),
        (
            shell("5h"),
            StatusCode::UNPROCESSABLE_ENTITY,
            "max_duration",
        ),
        (
            shell("soon"),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid duration",
        ),
        (
            json!({"profile": "prod-shell", "ticket": "INC-1"}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "justification",
        ),
        (
            json!({"profile": "prod-shell", "justification": "x", "ticket": "JIRA-1"}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "does not match",
        ),
    ];
    for (body, status, needle) in cases {
        let (got, err) = o.post(&o.alice, "/api/v1/requests", body.clone()).await;
        assert_eq!(got, status, "{body}: {err}");
        assert!(
            err["error"]["message"].as_str().unwrap().contains(needle),
            "{body}: {err}"
        );
    }
    assert_eq!(
        o.post(&o.bob, "/api/v1/requests", shell("1h")).await.0,
        StatusCode::FORBIDDEN,
        "bob lacks the requester role"
    );
    let (_, list) = o.get(&o.carol, "/api/v1/requests").await;
    assert_eq!(list["requests"], json!([]), "a refused request was stored");

    let id = o.ask(&o.alice, shell("1h")).await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(
        o.post(
            &o.alice,
            &format!("/api/v1/requests/{id}/cancel"),
            json!({})
        )
        .await
        .1["state"],
        "cancelled"
    );
    assert_eq!(o.app.api(&o.bob).approve(&id).await.0, StatusCode::CONFLICT);
    assert_eq!(
        o.get(&o.alice, "/api/v1/requests/not-an-id").await.0,
        StatusCode::NOT_FOUND
    );

    // Another tenant's people cannot see or act on it.
    let other = seed_tenant(o.app.store(), &o.app.master, o.app.clock.as_ref(), "other").await;
    let mallory = seed_user(
        o.app.store(),
        o.app.clock.as_ref(),
        &other,
        "mallory@other.example",
        &[Role::Approver, Role::Admin],
        &["sre"],
    )
    .await;
    let mallory = seed_token(o.app.store(), o.app.clock.as_ref(), &mallory, &[]).await;
    assert_eq!(
        o.get(&mallory, &format!("/api/v1/requests/{id}")).await.0,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        o.post(
            &mallory,
            &format!("/api/v1/requests/{id}/revoke"),
            json!({})
        )
        .await
        .0,
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn break_glass_activates_at_once_and_waits_for_review() {
    let o = org(TestDb::sqlite().await).await;
    let mut body = shell("1h");
    body["break_glass"] = json!(true);
    let r = o.ask(&o.alice, body).await;
    assert_eq!(
        (r["state"].as_str(), r["break_glass"].as_bool()),
        (Some("active"), Some(true))
    );
    let id = r["id"].as_str().unwrap().to_owned();
    let (_, inbox) = o.get(&o.bob, "/api/v1/requests?reviewable=true").await;
    assert_eq!(inbox["requests"][0]["id"], id.as_str());
    let (_, r) = o
        .post(&o.bob, &format!("/api/v1/requests/{id}/review"), json!({}))
        .await;
    assert!(r["reviewed_by"].is_string());
    let (_, inbox) = o.get(&o.bob, "/api/v1/requests?reviewable=true").await;
    assert_eq!(inbox["requests"], json!([]));
    // Bob revokes it early.
    let (_, r) = o.app.api(&o.bob).revoke(&id, "done").await;
    assert_eq!(r["state"], "revoked");
    assert!(
        o.actions()
            .await
            .contains(&"breakglass.reviewed".to_owned())
    );
}

#[tokio::test]
async fn the_reaper_lapses_stale_requests_and_starts_scheduled_ones() {
    let o = org(TestDb::sqlite().await).await;
    let stale = o.ask(&o.alice, shell("1h")).await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let starts = o.app.clock.now() + time::Duration::hours(2);
    let mut body = shell("1h");
    body["starts_at"] = json!(
        starts
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap()
    );
    let later = o.ask(&o.alice, body).await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let (_, r) = o.app.api(&o.bob).approve(&later).await;
    assert_eq!(r["state"], "scheduled");

    o.app.clock.advance(time::Duration::hours(2));
    assert_eq!(o.reap().await, 1);
    let (_, r) = o.get(&o.alice, &format!("/api/v1/requests/{later}")).await;
    assert_eq!(r["state"], "active");
    assert_eq!(
        r["grant"]["not_after"],
        (starts + time::Duration::hours(1))
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap()
    );
    o.app.clock.advance(time::Duration::hours(22));
    o.reap().await;
    assert_eq!(
        o.get(&o.alice, &format!("/api/v1/requests/{stale}"))
            .await
            .1["state"],
        "lapsed"
    );
    let (_, mine) = o
        .get(&o.alice, "/api/v1/requests?mine=true&state=expired")
        .await;
    assert_eq!(mine["requests"].as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn the_pages_request_approve_and_count_down() {
    let o = org(TestDb::sqlite().await).await;
    let user = |email: &str| {
        let (store, tenant) = (o.app.store().clone(), o.tenant.clone());
        let email = email.to_owned();
        async move {
            elevate::admin::user_by_email(&store, &tenant, &email)
                .await
                .unwrap()
        }
    };
    let alice = o.app.signed_in(&user("alice@acme.example").await).await;
    let bob = o.app.signed_in(&user("bob@acme.example").await).await;
    let page = |b: &reqwest::Client, path: &str| {
        let req = b.get(o.app.url(path));
        async move { req.send().await.unwrap().text().await.unwrap() }
    };

    let form = page(&alice, "/requests/new").await;
    assert!(
        form.contains("prod-shell")
            && form.contains("Approved by 1 of sre")
            && form.contains("SSH as deploy"),
        "{form}"
    );
    let csrf = csrf_in(&form);
    let fields = [
        ("csrf", csrf.as_str()),
        ("profile", "prod-shell"),
        ("duration", "45m"),
        ("justification", "deploy"),
        ("ticket", "INC-9"),
    ];
    let res = alice
        .post(o.app.url("/requests"))
        .form(&fields)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    let location = res.headers()["location"].to_str().unwrap().to_owned();
    // Bad input: the same form comes back with what was typed, the reason, and who is signed in.
    for (field, value, says) in [
        ("ticket", "nope", "ticket"),
        ("duration", "99999d", "duration"),
    ] {
        let mut bad = vec![
            ("csrf", csrf.as_str()),
            ("profile", "prod-shell"),
            ("duration", "45m"),
            ("justification", "deploy the hotfix"),
            ("ticket", "INC-9"),
        ];
        bad.retain(|(k, _)| *k != field);
        bad.push((field, value));
        let res = alice
            .post(o.app.url("/requests"))
            .form(&bad)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::UNPROCESSABLE_ENTITY, "{field}");
        let again = res.text().await.unwrap();
        assert!(
            again.contains(r#"role="alert""#) && again.contains(says),
            "{again}"
        );
        assert!(again.contains(">deploy the hotfix</textarea>"), "{again}");
        assert!(again.contains(&format!(r#"value="{value}""#)), "{again}");
        assert!(
            again.contains("alice@acme.example") && !again.contains(">Sign in<"),
            "{again}"
        );
    }

    let inbox = page(&bob, "/approvals").await;
    assert!(
        inbox.contains(&location) && inbox.contains("alice@acme.example"),
        "{inbox}"
    );
    let detail = page(&bob, &location).await;
    assert!(detail.contains("Approve") && !detail.contains("Cancel request"));
    let res = bob
        .post(o.app.url(&format!("{location}/approve")))
        .form(&[("csrf", csrf_in(&detail).as_str()), ("comment", "")])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::SEE_OTHER);

    let detail = page(&alice, &location).await;
    assert!(
        detail.contains(r#"<span class="state active">active</span>"#),
        "{detail}"
    );
    // The timeline reads as sentences: names, not ids; no JSON.
    let timeline = &detail[detail.find("<h2>Timeline</h2>").unwrap()..];
    for step in [
        "alice@acme.example asked for 45m",
        "bob@acme.example approved",
        "access granted until",
    ] {
        assert!(
            timeline.contains(step),
            "timeline misses {step}: {timeline}"
        );
    }
    assert!(
        !timeline.contains("{&quot;") && !timeline.contains("{\""),
        "{timeline}"
    );
    let until = (o.app.clock.now() + time::Duration::minutes(45)).unix_timestamp();
    let dashboard = page(&alice, "/dashboard").await;
    assert!(
        dashboard.contains(&format!(r#"data-until="{until}""#)),
        "{dashboard}"
    );
    let js = o
        .app
        .client
        .get(o.app.url("/static/elevate.js"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        js.headers()["content-type"],
        "text/javascript; charset=utf-8"
    );
}

/// Two reapers at once (as two replicas on one Postgres) move each request exactly once.
async fn concurrent_reapers_move_each_request_once(db: TestDb) {
    let o = org(db).await;
    let mut ids = Vec::new();
    for _ in 0..6 {
        let id = o.ask(&o.alice, shell("1h")).await["id"]
            .as_str()
            .unwrap()
            .to_owned();
        assert_eq!(o.app.api(&o.bob).approve(&id).await.0, StatusCode::OK);
        ids.push(id);
    }
    o.app.clock.advance(time::Duration::hours(1));
    let clock: SharedClock = o.app.clock.clone();
    let (a, b) = tokio::join!(
        elevate::reaper::run_once(o.app.store(), &clock, &o.app.base),
        elevate::reaper::run_once(o.app.store(), &clock, &o.app.base)
    );
    assert_eq!(a.unwrap() + b.unwrap(), 6);
    let expired = o
        .actions()
        .await
        .iter()
        .filter(|a| *a == "grant.expired")
        .count();
    assert_eq!(expired, 6, "a grant expired twice or not at all");
    for id in ids {
        assert_eq!(
            o.get(&o.alice, &format!("/api/v1/requests/{id}")).await.1["state"],
            "expired"
        );
    }
}

mod concurrent {
    crate::on_both_backends!(concurrent_reapers_move_each_request_once);
    use super::concurrent_reapers_move_each_request_once;
}
