//! Issue 13: only approvers decide (pages and API), disabling a person ends all their access
//! (real sshd and a real Postgres login), emergency lockdown, the eligibility re-check when the
//! last approval activates a grant, and tokens minted by a token dying with it.

use std::path::Path;

use elevate::model::{Role, Scope, User};
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::db_fixtures::PgTarget;
use crate::fixtures::elevate;
use crate::fixtures::{Shop, krl_revokes, shop_with, sync};
use crate::helpers::{TestApp, TestDb, csrf_in, ctx, seed_token, seed_user, temp_dir};
use crate::sshd::Sshd;

const POLICY: &str = r#"
[[profile]]
name = "shell"
requesters = ["engineering"]
approvers = ["sre"]
break_glass = true
[profile.ssh]
principals = ["deploy"]
"#;

fn db_policy(pg: &PgTarget) -> String {
    format!("{POLICY}{}", crate::fixtures::orders_read_profile(&pg.read))
}

/// Alice (requester) and Bob (approver) from `shop_with`, plus Trent (requester and auditor in
/// the approver group, no approver role) and Carol (admin and requester in the approver group,
/// no approver role).
struct Org {
    shop: Shop,
    trent: User,
    carol: User,
}

async fn org_with(db: TestDb, policy: &str) -> Org {
    let shop = shop_with(TestApp::spawn(db).await, "acme", policy).await;
    let (store, clock) = (shop.app.store().clone(), shop.app.clock.clone());
    let trent = seed_user(
        &store,
        clock.as_ref(),
        &shop.tenant,
        "trent@acme.example",
        &[Role::Requester, Role::Auditor],
        &["sre"],
    )
    .await;
    let carol = seed_user(
        &store,
        clock.as_ref(),
        &shop.tenant,
        "carol@acme.example",
        &[Role::Requester, Role::Admin],
        &["sre"],
    )
    .await;
    Org { shop, trent, carol }
}

impl Org {
    async fn get(&self, token: &str, path: &str) -> (StatusCode, Value) {
        self.shop.app.api(token).get(path).await
    }

    async fn state(&self, id: &str) -> String {
        let (s, r) = self
            .get(&self.shop.bob, &format!("/api/v1/requests/{id}"))
            .await;
        assert_eq!(s, StatusCode::OK, "{r}");
        r["state"].as_str().unwrap().to_owned()
    }

    async fn ask(&self, token: &str, body: Value) -> (StatusCode, Value) {
        self.shop.post(token, "/api/v1/requests", body).await
    }

    /// A pending request of Alice's for `profile`.
    async fn pending(&self, profile: &str) -> String {
        let (s, r) = self
            .ask(
                &self.shop.alice,
                json!({"profile": profile, "duration": "1h", "justification": "fix it"}),
            )
            .await;
        assert_eq!(s, StatusCode::CREATED, "{r}");
        assert_eq!(r["state"], "pending", "{r}");
        r["id"].as_str().unwrap().to_owned()
    }

    async fn count(&self, action: &str) -> usize {
        self.shop
            .actions()
            .await
            .iter()
            .filter(|(a, _)| a == action)
            .count()
    }
}

/// A page's HTML and the CSRF token in it.
async fn page(client: &reqwest::Client, app: &TestApp, path: &str) -> (String, String) {
    let res = client.get(app.url(path)).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::OK, "{path}");
    let html = res.text().await.unwrap();
    let csrf = csrf_in(&html);
    (html, csrf)
}

async fn post_form(
    client: &reqwest::Client,
    app: &TestApp,
    path: &str,
    fields: &[(&str, &str)],
) -> (StatusCode, String) {
    let res = client
        .post(app.url(path))
        .form(fields)
        .send()
        .await
        .unwrap();
    let status = res.status();
    (status, res.text().await.unwrap_or_default())
}

// ---------------------------------------------------------------------------------------------
// Item 1: the approver role is required by the core, whatever the front end.

async fn only_approvers_decide_through_pages_and_api(db: TestDb) {
    let o = org_with(db, POLICY).await;
    let app = &o.shop.app;
    let id = o.pending("shell").await;
    let (s, bg) = o
        .ask(
            &o.shop.alice,
            json!({"profile": "shell", "duration": "1h", "justification": "outage", "break_glass": true}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{bg}");
    let bg = bg["id"].as_str().unwrap().to_owned();

    // Pages: an auditor and an admin in the approver group approve, deny and review nothing.
    for who in [&o.trent, &o.carol] {
        let browser = app.signed_in(who).await;
        let (html, csrf) = page(&browser, app, &format!("/requests/{id}")).await;
        assert!(!html.contains(">Approve<"), "{html}");
        for (action, path) in [
            ("approve", format!("/requests/{id}/approve")),
            ("deny", format!("/requests/{id}/deny")),
            ("review", format!("/requests/{bg}/review")),
        ] {
            let (s, body) = post_form(
                &browser,
                app,
                &path,
                &[("csrf", csrf.as_str()), ("comment", "looks fine")],
            )
            .await;
            assert_eq!(s, StatusCode::FORBIDDEN, "{} {action}: {body}", who.email);
            assert!(body.contains("approver role"), "{body}");
        }
    }
    assert_eq!(o.state(&id).await, "pending");
    let (_, r) = o.get(&o.shop.bob, &format!("/api/v1/requests/{bg}")).await;
    assert_eq!(r["reviewed_by"], Value::Null, "{r}");
    // Every refusal is audited.
    assert_eq!(o.count("request.refused").await, 6);

    // A real approver still decides on the page.
    let bob = o.shop.user("bob@acme.example").await;
    let browser = app.signed_in(&bob).await;
    let (_, csrf) = page(&browser, app, &format!("/requests/{id}")).await;
    let (s, body) = post_form(
        &browser,
        app,
        &format!("/requests/{id}/approve"),
        &[("csrf", csrf.as_str()), ("comment", "")],
    )
    .await;
    assert_eq!(s, StatusCode::SEE_OTHER, "{body}");
    assert_eq!(o.state(&id).await, "active");

    // API: tokens with scopes read + request revoke nobody else's grant, whatever the account's
    // groups; an admin's token with the admin scope does (DESIGN §3); the auditor's never.
    let (store, clock) = (app.store().clone(), app.clock.clone());
    let narrow = [Scope::Read, Scope::Request];
    let trent_token = seed_token(&store, clock.as_ref(), &o.trent, &narrow).await;
    let carol_narrow = seed_token(&store, clock.as_ref(), &o.carol, &narrow).await;
    let carol_admin = seed_token(
        &store,
        clock.as_ref(),
        &o.carol,
        &[Scope::Read, Scope::Admin],
    )
    .await;
    let trent_all = seed_token(&store, clock.as_ref(), &o.trent, &[]).await;
    for token in [&trent_token, &carol_narrow, &trent_all] {
        let (s, r) = o.shop.app.api(token).revoke(&id, "mine now").await;
        assert_eq!(s, StatusCode::FORBIDDEN, "{r}");
    }
    assert_eq!(o.state(&id).await, "active");
    let (s, r) = o.shop.app.api(&carol_admin).revoke(&id, "incident").await;
    assert_eq!(s, StatusCode::OK, "{r}");
    assert_eq!(r["state"], "revoked");
    assert_eq!(o.count("request.refused").await, 9);
}

// ---------------------------------------------------------------------------------------------
// Item 2: disabling a person ends all their access, at once.

async fn disabling_ends_ssh_and_database_access_at_once(db: TestDb) {
    let pg = PgTarget::new().await;
    let o = org_with(db, &db_policy(&pg)).await;
    let app = &o.shop.app;
    o.shop.add_orders_target(&pg).await;
    let sshd = Sshd::start(app, "acme", &["deploy"]);

    // Alice holds an SSH grant with a certificate that logs in, a database grant with an open
    // session, and a pending request.
    let shell = o.shop.granted("shell").await;
    let (key, cert, _) = o.shop.certified(&shell).await;
    assert!(sshd.accepts(&key, &cert));
    let orders = o.shop.granted("orders-read").await;
    let (s, login) = o
        .shop
        .post(
            &o.shop.alice,
            &format!("/api/v1/requests/{orders}/db-credentials"),
            json!({}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{login}");
    let (role, password) = (
        login["username"].as_str().unwrap().to_owned(),
        login["password"].as_str().unwrap().to_owned(),
    );
    let mut session = pg.login(&role, &password).await.unwrap();
    sqlx::query("SELECT 1").execute(&mut session).await.unwrap();
    let waiting = o.pending("shell").await;

    // An admin disables her on the people page.
    let alice = o.shop.user("alice@acme.example").await;
    let admin = app.signed_in(&o.carol).await;
    let (_, csrf) = page(&admin, app, &format!("/admin/users/{}", alice.id)).await;
    let (s, body) = post_form(
        &admin,
        app,
        &format!("/admin/users/{}/disable", alice.id),
        &[("csrf", csrf.as_str())],
    )
    .await;
    assert_eq!(s, StatusCode::SEE_OTHER, "{body}");

    // In the same transaction: both grants revoked, the pending request cancelled.
    assert_eq!(o.state(&shell).await, "revoked");
    assert_eq!(o.state(&orders).await, "revoked");
    assert_eq!(o.state(&waiting).await, "cancelled");
    let actions = o.shop.actions().await;
    let disabled_at = actions
        .iter()
        .position(|(a, _)| a == "user.disabled")
        .unwrap();
    let after: Vec<&str> = actions[disabled_at..]
        .iter()
        .map(|(a, _)| a.as_str())
        .collect();
    for expected in [
        "grant.revoked",
        "ssh.certificates_revoked",
        "db.logins_ended",
        "request.cancelled",
    ] {
        assert!(
            after.contains(&expected),
            "{expected} missing from {after:?}"
        );
    }
    let reason = actions
        .iter()
        .find(|(a, _)| a == "grant.revoked")
        .map(|(_, d)| d["reason"].as_str().unwrap_or_default().to_owned())
        .unwrap();
    assert!(
        reason.contains("alice@acme.example was disabled"),
        "{reason}"
    );

    // The host's next sync puts the certificate on its KRL; sshd refuses it.
    sync(&o.shop, &sshd);
    assert!(krl_revokes(&sshd.etc.join("revoked.krl"), &cert));
    assert!(
        !sshd.accepts(&key, &cert),
        "a disabled person's certificate logged in"
    );

    // The database login is due at once: one reaper pass (the page woke it) drops it and ends its
    // session.
    let clock: elevate::clock::SharedClock = app.clock.clone();
    let pass = elevate::reaper::clean_db_logins(
        app.store(),
        &app.master,
        elevate::clock::Clock::now(clock.as_ref()),
    )
    .await
    .unwrap();
    assert_eq!(pass.cleaned, 1, "{pass:?}");
    assert!(pg.sessions_gone(&role, 5).await, "her session survived");
    assert!(!pg.role_exists(&role).await);
    assert!(pg.login(&role, &password).await.is_err());
    assert!(sqlx::query("SELECT 1").execute(&mut session).await.is_err());

    // And she gets nothing new: her token is dead.
    let (s, _) = o.get(&o.shop.alice, "/api/v1/me").await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);

    // Enabled again during a tenant lockdown, she gets no database login either: the issuer
    // refuses with the lockdown's reason before looking at the grant.
    let ctx = ctx(app.clock.as_ref());
    elevate::admin::set_user_disabled(app.store(), &ctx, None, &o.shop.tenant, alice.id, false)
        .await
        .unwrap();
    elevate::admin::lockdown(app.store(), &ctx, None, &o.shop.tenant, None, "incident 9")
        .await
        .unwrap();
    let (s, r) = o
        .shop
        .post(
            &o.shop.alice,
            &format!("/api/v1/requests/{orders}/db-credentials"),
            json!({}),
        )
        .await;
    assert_eq!(s, StatusCode::CONFLICT, "{r}");
    crate::helpers::assert_error_says(&r, "incident 9");
    assert_eq!(o.count("db.login_refused").await, 1);
}

// ---------------------------------------------------------------------------------------------
// Item 2: the CLI (disable/enable, lockdown and lift) through the binary.

/// Runs `command` (words split on spaces) and then `extra` (kept whole) against `db`.
fn cli(dir: &Path, db: &TestDb, command: &str, extra: &[&str]) -> (bool, String, String) {
    let out = elevate(dir)
        .args(command.split(' '))
        .args(extra)
        .args(["--database", &db.url])
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

async fn the_cli_disables_and_locks_down_until_lifted(db: TestDb) {
    let o = org_with(db, POLICY).await;
    let app = &o.shop.app;
    let dir = temp_dir("offboard-cli");
    let erin = seed_user(
        app.store(),
        app.clock.as_ref(),
        &o.shop.tenant,
        "erin@acme.example",
        &[Role::Requester],
        &["engineering"],
    )
    .await;
    let erin = seed_token(app.store(), app.clock.as_ref(), &erin, &[]).await;

    // Disable and enable.
    let granted = o.shop.granted("shell").await;
    let waiting = o.pending("shell").await;
    let (ok, out, err) = cli(
        &dir,
        &o.shop.app.db,
        "admin user disable --tenant acme --email alice@acme.example",
        &[],
    );
    assert!(ok, "{err}");
    assert!(out.contains("ended 2 open request(s)"), "{out}");
    assert_eq!(o.state(&granted).await, "revoked");
    assert_eq!(o.state(&waiting).await, "cancelled");
    assert_eq!(
        o.get(&o.shop.alice, "/api/v1/me").await.0,
        StatusCode::UNAUTHORIZED
    );
    let (ok, out, err) = cli(
        &dir,
        &o.shop.app.db,
        "admin user enable --tenant acme --email alice@acme.example",
        &[],
    );
    assert!(ok, "{err}");
    assert!(out.contains("enabled alice@acme.example"), "{out}");
    assert_eq!(o.get(&o.shop.alice, "/api/v1/me").await.0, StatusCode::OK);
    let (ok, _, err) = cli(
        &dir,
        &o.shop.app.db,
        "admin user disable --tenant acme --email nobody@acme.example",
        &[],
    );
    assert!(!ok && err.contains("no user nobody@acme.example"), "{err}");

    // A tenant lockdown revokes every grant at once ...
    let alices = o.shop.granted("shell").await;
    let (s, erins) = o
        .ask(
            &erin,
            json!({"profile": "shell", "duration": "1h", "justification": "x"}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED);
    let erins = erins["id"].as_str().unwrap().to_owned();
    let (s, r) = o.shop.approve(&erins).await;
    assert_eq!((s, r["state"].as_str()), (StatusCode::OK, Some("active")));
    let (ok, out, err) = cli(
        &dir,
        &o.shop.app.db,
        "admin lockdown --tenant acme --reason",
        &["incident 7"],
    );
    assert!(ok, "{err}");
    assert!(out.contains("revoked 2 grant(s)"), "{out}");
    assert_eq!(o.state(&alices).await, "revoked");
    assert_eq!(o.state(&erins).await, "revoked");

    // ... and refuses issuance until lifted: certificates, the approval that would activate,
    // break-glass. A request may still be filed (it waits).
    let (s, r) = o.shop.issue_new_key(&alices).await;
    assert_eq!(s, StatusCode::CONFLICT, "{r}");
    crate::helpers::assert_error_says(&r, "lockdown");
    let id = o.pending("shell").await;
    let (s, r) = o.shop.approve(&id).await;
    assert_eq!(s, StatusCode::CONFLICT, "{r}");
    crate::helpers::assert_error_says(&r, "incident 7");
    assert_eq!(o.state(&id).await, "pending");
    let (s, r) = o
        .ask(
            &o.shop.alice,
            json!({"profile": "shell", "duration": "1h", "justification": "outage", "break_glass": true}),
        )
        .await;
    assert_eq!(s, StatusCode::CONFLICT, "{r}");
    // A grant scheduled during the lockdown is not activated when its time comes.
    let starts = (elevate::clock::Clock::now(app.clock.as_ref()) + time::Duration::minutes(10))
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap();
    let (s, later) = o
        .ask(
            &o.shop.alice,
            json!({"profile": "shell", "duration": "1h", "justification": "later", "starts_at": starts}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{later}");
    let later = later["id"].as_str().unwrap().to_owned();
    let (s, r) = o.shop.approve(&later).await;
    assert_eq!(
        (s, r["state"].as_str()),
        (StatusCode::OK, Some("scheduled")),
        "{r}"
    );
    app.clock.advance(time::Duration::minutes(11));
    let clock: elevate::clock::SharedClock = app.clock.clone();
    elevate::reaper::run_once(app.store(), &clock, &app.base)
        .await
        .unwrap();
    assert_eq!(o.state(&later).await, "revoked");

    // The admin status page shows it.
    let admin = app.signed_in(&o.carol).await;
    let (html, _) = page(&admin, app, "/admin/status").await;
    assert!(
        html.contains("LOCKDOWN") && html.contains("incident 7"),
        "{html}"
    );

    // Lifted: the waiting request is approved and issues again.
    let (ok, out, err) = cli(
        &dir,
        &o.shop.app.db,
        "admin lockdown --tenant acme --lift",
        &[],
    );
    assert!(ok, "{err}");
    assert!(out.contains("lifted"), "{out}");
    let (s, r) = o.shop.approve(&id).await;
    assert_eq!(
        (s, r["state"].as_str()),
        (StatusCode::OK, Some("active")),
        "{r}"
    );
    let (s, r) = o.shop.issue_new_key(&id).await;
    assert_eq!(s, StatusCode::CREATED, "{r}");
    let (html, _) = page(&admin, app, "/admin/status").await;
    assert!(html.contains("not in lockdown"), "{html}");

    for action in [
        "lockdown.started",
        "lockdown.lifted",
        "ssh.certificate_refused",
    ] {
        assert_eq!(o.count(action).await, 1, "{action}");
    }
    assert!(o.count("request.refused").await >= 2);
}

// ---------------------------------------------------------------------------------------------
// Item 2: the lockdown buttons on the admin pages.

async fn the_admin_pages_lock_down_a_person_or_the_tenant(db: TestDb) {
    let o = org_with(db, POLICY).await;
    let app = &o.shop.app;
    let first = o.shop.granted("shell").await;
    let alice = o.shop.user("alice@acme.example").await;
    let admin = app.signed_in(&o.carol).await;

    // One person: her grant ends, the tenant is not locked.
    let (html, csrf) = page(&admin, app, &format!("/admin/users/{}", alice.id)).await;
    assert!(html.contains("Revoke all their grants"), "{html}");
    let (s, body) = post_form(
        &admin,
        app,
        "/admin/lockdown",
        &[
            ("csrf", csrf.as_str()),
            ("email", "alice@acme.example"),
            ("reason", "laptop stolen"),
        ],
    )
    .await;
    assert_eq!(s, StatusCode::SEE_OTHER, "{body}");
    assert_eq!(o.state(&first).await, "revoked");
    let events = o.shop.actions().await;
    let person = events.iter().find(|(a, _)| a == "lockdown.person").unwrap();
    assert_eq!(person.1["reason"], "laptop stolen");
    let second = o.shop.granted("shell").await;

    // Without CSRF nothing happens.
    let (s, _) = post_form(&admin, app, "/admin/lockdown", &[("reason", "x")]).await;
    assert!(s.is_client_error(), "{s}");
    assert_eq!(o.state(&second).await, "active");
    // A non-admin cannot.
    let bob = o.shop.user("bob@acme.example").await;
    let bob_browser = app.signed_in(&bob).await;
    let (_, bob_csrf) = page(&bob_browser, app, &format!("/requests/{second}")).await;
    let (s, _) = post_form(
        &bob_browser,
        app,
        "/admin/lockdown",
        &[("csrf", bob_csrf.as_str()), ("reason", "x")],
    )
    .await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    assert_eq!(o.state(&second).await, "active");

    // The whole tenant, then lifted.
    let (_, csrf) = page(&admin, app, "/admin/status").await;
    let (s, _) = post_form(
        &admin,
        app,
        "/admin/lockdown",
        &[("csrf", csrf.as_str()), ("email", ""), ("reason", "breach")],
    )
    .await;
    assert_eq!(s, StatusCode::SEE_OTHER);
    assert_eq!(o.state(&second).await, "revoked");
    let (html, csrf) = page(&admin, app, "/admin/status").await;
    assert!(
        html.contains("LOCKDOWN") && html.contains("breach"),
        "{html}"
    );
    let (s, _) = post_form(
        &admin,
        app,
        "/admin/lockdown/lift",
        &[("csrf", csrf.as_str())],
    )
    .await;
    assert_eq!(s, StatusCode::SEE_OTHER);
    o.shop.granted("shell").await;
}

// ---------------------------------------------------------------------------------------------
// Item 2: eligibility is checked again when the last approval activates a grant.

async fn the_last_approval_rechecks_eligibility(db: TestDb) {
    let o = org_with(db, POLICY).await;
    let app = &o.shop.app;
    let alice = o.shop.user("alice@acme.example").await;

    // Removed from the requester groups while waiting.
    let id = o.pending("shell").await;
    elevate::admin::update_user(
        app.store(),
        &ctx(app.clock.as_ref()),
        &o.shop.tenant,
        alice.id,
        &elevate::store::UserChange {
            groups: Some(vec!["sales".into()]),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    let (s, r) = o.shop.approve(&id).await;
    assert_eq!(s, StatusCode::OK, "{r}");
    assert_eq!(r["state"], "revoked", "{r}");
    let (s, r) = o.shop.issue_new_key(&id).await;
    assert_eq!(s, StatusCode::CONFLICT, "{r}");
    let revoked = o.shop.actions().await;
    let reason = revoked
        .iter()
        .rev()
        .find(|(a, _)| a == "grant.revoked")
        .map(|(_, d)| d["reason"].as_str().unwrap_or_default().to_owned())
        .unwrap();
    assert!(reason.contains("not eligible at activation"), "{reason}");
    assert!(!revoked.iter().any(|(a, _)| a == "grant.activated"));

    // The profile's requesters changed in the policy in force while waiting.
    elevate::admin::update_user(
        app.store(),
        &ctx(app.clock.as_ref()),
        &o.shop.tenant,
        alice.id,
        &elevate::store::UserChange {
            groups: Some(vec!["engineering".into()]),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    let id = o.pending("shell").await;
    elevate::broker::policy::apply(
        app.store(),
        &ctx(app.clock.as_ref()),
        &o.shop.tenant,
        &POLICY.replace(
            r#"requesters = ["engineering"]"#,
            r#"requesters = ["platform"]"#,
        ),
    )
    .await
    .unwrap();
    let (s, r) = o.shop.approve(&id).await;
    assert_eq!(
        (s, r["state"].as_str()),
        (StatusCode::OK, Some("revoked")),
        "{r}"
    );
}

// ---------------------------------------------------------------------------------------------
// Item 16: what a token minted dies with it.

async fn tokens_minted_by_a_token_are_revoked_with_it(db: TestDb) {
    let o = org_with(db, POLICY).await;
    let mint = async |token: &str, name: &str| -> (String, String) {
        let (s, r) = o
            .shop
            .post(
                token,
                "/api/v1/tokens",
                json!({"name": name, "scopes": ["read"]}),
            )
            .await;
        assert_eq!(s, StatusCode::CREATED, "{r}");
        (
            r["id"].as_str().unwrap().to_owned(),
            r["token"].as_str().unwrap().to_owned(),
        )
    };
    let (child_id, child) = mint(&o.shop.alice, "child").await;
    let (_, grandchild) = mint(&child, "grandchild").await;
    let (_, sibling) = mint(&o.shop.alice, "sibling").await;
    let (_, nephew) = mint(&sibling, "nephew").await;
    for t in [&child, &grandchild, &sibling, &nephew] {
        assert_eq!(o.get(t, "/api/v1/me").await.0, StatusCode::OK);
    }

    // Revoking a child takes its descendants, not its parent or siblings.
    let res = o
        .shop
        .app
        .client
        .delete(o.shop.app.url(&format!("/api/v1/tokens/{child_id}")))
        .bearer_auth(&o.shop.alice)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::NO_CONTENT);
    assert_eq!(
        o.get(&child, "/api/v1/me").await.0,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        o.get(&grandchild, "/api/v1/me").await.0,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(o.get(&sibling, "/api/v1/me").await.0, StatusCode::OK);
    assert_eq!(o.get(&o.shop.alice, "/api/v1/me").await.0, StatusCode::OK);

    // Revoking the root takes everything it minted, transitively; each revocation is audited.
    let (_, list) = o.get(&o.shop.alice, "/api/v1/tokens").await;
    let root = list["tokens"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["current"] == true)
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let res = o
        .shop
        .app
        .client
        .delete(o.shop.app.url(&format!("/api/v1/tokens/{root}")))
        .bearer_auth(&o.shop.alice)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::NO_CONTENT);
    for t in [&o.shop.alice, &sibling, &nephew] {
        assert_eq!(o.get(t, "/api/v1/me").await.0, StatusCode::UNAUTHORIZED);
    }
    let events = o.shop.actions().await;
    let cascaded = events
        .iter()
        .filter(|(a, d)| a == "token.revoked" && !d["with_parent"].is_null())
        .count();
    assert_eq!(cascaded, 3, "grandchild, sibling and nephew: {events:?}");
    let minted = events
        .iter()
        .filter(|(a, d)| a == "token.created" && !d["parent_token_id"].is_null())
        .count();
    assert_eq!(minted, 4);
}

crate::on_both_backends!(
    only_approvers_decide_through_pages_and_api,
    the_cli_disables_and_locks_down_until_lifted,
    the_admin_pages_lock_down_a_person_or_the_tenant,
    the_last_approval_rechecks_eligibility,
    tokens_minted_by_a_token_are_revoked_with_it,
);

// `ssh` and `elevate host sync` block: the in-process server needs a second worker thread.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disabling_ends_ssh_and_database_access_at_once_sqlite() {
    disabling_ends_ssh_and_database_access_at_once(TestDb::sqlite().await).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disabling_ends_ssh_and_database_access_at_once_postgres() {
    disabling_ends_ssh_and_database_access_at_once(TestDb::postgres().await).await
}
