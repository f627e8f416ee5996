//! Sign-in by email link through a real SMTP server, sessions, CSRF, and the people pages.

use std::time::Duration;

use elevate::admin;
use elevate::clock::Clock;
use elevate::model::{Role, Tenant, User};
use elevate::store::UserChange;
use reqwest::StatusCode;
use serde_json::Value;

use crate::fixtures::SmtpSink;
use crate::helpers::{TestApp, TestDb, csrf_in, ctx, seed_tenant, seed_user};

fn link_in(mail: &Value) -> String {
    let body = mail["body"].as_str().unwrap();
    body.split_whitespace()
        .find(|w| w.contains("/login/verify?token="))
        .unwrap()
        .to_owned()
}

fn token_of(link: &str) -> String {
    link.split("token=").nth(1).unwrap().to_owned()
}

struct World {
    app: TestApp,
    smtp: SmtpSink,
    tenant: Tenant,
    alice: User,
    carol: User,
}

async fn world(configure: impl FnOnce(&mut elevate::config::Config)) -> World {
    let smtp = SmtpSink::start();
    let url = smtp.url();
    let app = TestApp::spawn_with(TestDb::sqlite().await, |c| {
        c.smtp_url = Some(url.into());
        configure(c);
    })
    .await;
    let tenant = seed_tenant(app.store(), &app.master, app.clock.as_ref(), "acme").await;
    let alice = seed_user(
        app.store(),
        app.clock.as_ref(),
        &tenant,
        "alice@acme.example",
        &[Role::Requester],
        &["engineering"],
    )
    .await;
    let carol = seed_user(
        app.store(),
        app.clock.as_ref(),
        &tenant,
        "carol@acme.example",
        &[Role::Admin],
        &[],
    )
    .await;
    World {
        app,
        smtp,
        tenant,
        alice,
        carol,
    }
}

async fn ask(
    app: &TestApp,
    browser: &reqwest::Client,
    tenant: &str,
    email: &str,
) -> reqwest::Response {
    browser
        .post(app.url("/login"))
        .form(&[("tenant", tenant), ("email", email)])
        .send()
        .await
        .unwrap()
}

async fn redeem(app: &TestApp, browser: &reqwest::Client, link: &str) -> reqwest::Response {
    let confirm = browser.get(link).send().await.unwrap();
    assert_eq!(confirm.status(), 200);
    assert!(confirm.text().await.unwrap().contains(&token_of(link)));
    browser
        .post(app.url("/login/verify"))
        .form(&[("token", token_of(link))])
        .send()
        .await
        .unwrap()
}

/// Signs `email` in through the whole email flow; returns the browser.
async fn sign_in(w: &World, email: &str) -> reqwest::Client {
    let browser = w.app.browser();
    let before = w.smtp.mails().len();
    assert_eq!(ask(&w.app, &browser, "acme", email).await.status(), 200);
    let mail = w.smtp.nth(before + 1).await;
    let res = redeem(&w.app, &browser, &link_in(&mail)).await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    assert_eq!(res.headers()["location"], "/dashboard");
    browser
}

fn set_cookies(res: &reqwest::Response) -> Vec<String> {
    res.headers()
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .collect()
}

async fn page(app: &TestApp, browser: &reqwest::Client, path: &str) -> (StatusCode, String) {
    let res = browser.get(app.url(path)).send().await.unwrap();
    let status = res.status();
    let location = res
        .headers()
        .get("location")
        .map(|l| l.to_str().unwrap().to_owned());
    let body = res.text().await.unwrap();
    (status, location.unwrap_or(body))
}

#[tokio::test]
async fn an_email_link_signs_in_once_in_the_browser_that_asked() {
    let w = world(|_| {}).await;
    let browser = w.app.browser();
    let res = ask(&w.app, &browser, "acme", "Alice@Acme.example").await;
    assert_eq!(res.status(), 200);
    let nonce_cookie = set_cookies(&res)
        .into_iter()
        .find(|c| c.starts_with("__Host-elevate-signin="))
        .unwrap();
    assert!(
        nonce_cookie.ends_with("; Path=/; Secure; HttpOnly; SameSite=Lax; Max-Age=600"),
        "{nonce_cookie}"
    );

    let mail = w.smtp.nth(1).await;
    assert_eq!(mail["to"], serde_json::json!(["alice@acme.example"]));
    assert_eq!(mail["subject"], "Your elevate sign-in link");
    let link = link_in(&mail);
    assert!(
        link.starts_with(&w.app.url("/login/verify?token=ell_")),
        "{link}"
    );

    // Another browser holding the link cannot use it.
    let other = w.app.browser();
    let res = redeem(&w.app, &other, &link).await;
    assert_eq!(res.status(), 400);
    assert!(res.text().await.unwrap().contains("different browser"));

    let res = redeem(&w.app, &browser, &link).await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    let session_cookie = set_cookies(&res)
        .into_iter()
        .find(|c| c.starts_with("__Host-elevate="))
        .unwrap();
    assert!(
        session_cookie.ends_with("; Path=/; Secure; HttpOnly; SameSite=Lax; Max-Age=43200"),
        "{session_cookie}"
    );
    assert!(
        set_cookies(&res)
            .iter()
            .any(|c| c.starts_with("__Host-elevate-signin=;") && c.contains("Max-Age=0"))
    );
    let (status, html) = page(&w.app, &browser, "/dashboard").await;
    assert_eq!(status, 200);
    assert!(html.contains("Welcome, alice") && html.contains("alice@acme.example"));
    let (_, profile) = page(&w.app, &browser, "/profile").await;
    assert!(profile.contains("requester") && profile.contains("engineering"));

    // The link is single use.
    let res = redeem(&w.app, &browser, &link).await;
    assert_eq!(res.status(), 400);

    let mut tx = w.app.store().tenant(w.tenant.tenant_id).await.unwrap();
    let events = tx.audit_events(0, 100).await.unwrap();
    let actions: Vec<&str> = events.iter().map(|e| e.action.as_str()).collect();
    for action in ["signin.requested", "signin.succeeded", "signin.failed"] {
        assert!(
            actions.contains(&action),
            "{action} not audited: {actions:?}"
        );
    }
    let ok = events
        .iter()
        .find(|e| e.action == "signin.succeeded")
        .unwrap();
    assert_eq!(ok.actor, "user:alice@acme.example");
    assert!(ok.ip.is_some() && ok.user_agent.is_some());
    let failures: Vec<&str> = events
        .iter()
        .filter(|e| e.action == "signin.failed")
        .map(|e| e.details.0["reason"].as_str().unwrap())
        .collect();
    assert_eq!(
        failures,
        ["link opened in another browser", "link already used"]
    );
    let log = serde_json::to_string(&events).unwrap();
    assert!(
        !log.contains(&token_of(&link)),
        "the link leaked into the audit log"
    );
}

#[tokio::test]
async fn expired_links_are_refused() {
    let w = world(|_| {}).await;
    let browser = w.app.browser();
    ask(&w.app, &browser, "acme", "alice@acme.example").await;
    let link = link_in(&w.smtp.nth(1).await);
    w.app.clock.advance(time::Duration::minutes(10));
    let res = redeem(&w.app, &browser, &link).await;
    assert_eq!(res.status(), 400);
    let mut tx = w.app.store().tenant(w.tenant.tenant_id).await.unwrap();
    let events = tx.audit_events(0, 100).await.unwrap();
    assert_eq!(events.last().unwrap().details.0["reason"], "link expired");
}

#[tokio::test]
async fn unknown_addresses_get_the_same_answer_and_no_mail() {
    let w = world(|_| {}).await;
    let mut answers = Vec::new();
    for (tenant, email) in [
        ("acme", "alice@acme.example"),
        ("acme", "nobody@acme.example"),
        ("no-such-org", "alice@acme.example"),
    ] {
        let res = ask(&w.app, &w.app.browser(), tenant, email).await;
        let cookie_names: Vec<String> = set_cookies(&res)
            .iter()
            .map(|c| c.split('=').next().unwrap().to_owned())
            .collect();
        answers.push((res.status(), cookie_names, res.text().await.unwrap()));
    }
    assert_eq!(answers[0], answers[1]);
    assert_eq!(answers[0], answers[2]);
    w.smtp.nth(1).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(w.smtp.mails().len(), 1, "mail sent for an unknown address");
    // Disabled people get no link either.
    let mut tx = w.app.store().tenant(w.tenant.tenant_id).await.unwrap();
    let known: Vec<bool> = tx
        .audit_events(0, 100)
        .await
        .unwrap()
        .iter()
        .filter(|e| e.action == "signin.requested")
        .map(|e| e.details.0["known"].as_bool().unwrap())
        .collect();
    assert_eq!(known, [true, false]);
}

#[tokio::test]
async fn sign_in_requests_are_rate_limited_per_address() {
    let w = world(|_| {}).await;
    let browser = w.app.browser();
    for _ in 0..5 {
        assert_eq!(
            ask(&w.app, &browser, "acme", "nobody@acme.example")
                .await
                .status(),
            200
        );
    }
    let res = ask(&w.app, &browser, "acme", "NOBODY@acme.example").await;
    assert_eq!(res.status(), StatusCode::TOO_MANY_REQUESTS);
    let wait: u64 = res.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=120).contains(&wait), "{wait}");
    // Another address from the same client is still served.
    assert_eq!(
        ask(&w.app, &browser, "acme", "alice@acme.example")
            .await
            .status(),
        200
    );
}

#[tokio::test]
async fn sign_in_requests_are_rate_limited_per_client_address() {
    let w = world(|_| {}).await;
    let browser = w.app.browser();
    // Each test has its own server, so its own limiter: twenty different addresses pass...
    for i in 0..20 {
        let email = format!("someone{i}@acme.example");
        assert_eq!(
            ask(&w.app, &browser, "acme", &email).await.status(),
            200,
            "ask {i}"
        );
    }
    // ...and more are refused (one token comes back every 6 s, so a slow machine may pass one or two).
    let mut refused = None;
    for i in 20..30 {
        let res = ask(
            &w.app,
            &browser,
            "acme",
            &format!("someone{i}@acme.example"),
        )
        .await;
        if res.status() == StatusCode::TOO_MANY_REQUESTS {
            refused = Some(res);
            break;
        }
    }
    let res = refused.expect("one client asked for 30 addresses without a 429");
    assert!(res.headers().contains_key("retry-after"));
}

#[tokio::test]
async fn sessions_rotate_and_time_out() {
    let w = world(|_| {}).await;
    let browser = sign_in(&w, "alice@acme.example").await;
    let first = session_ids(&w).await;
    assert_eq!(first.len(), 1);

    // Signing in again in the same browser replaces the session with a new id.
    let before = w.smtp.mails().len();
    ask(&w.app, &browser, "acme", "alice@acme.example").await;
    let link = link_in(&w.smtp.nth(before + 1).await);
    assert_eq!(
        redeem(&w.app, &browser, &link).await.status(),
        StatusCode::SEE_OTHER
    );
    let second = session_ids(&w).await;
    assert_eq!(second.len(), 1);
    assert_ne!(first, second);

    // Idle: 29 minutes is fine, then 30 without a request ends it.
    w.app.clock.advance(time::Duration::minutes(29));
    assert_eq!(page(&w.app, &browser, "/dashboard").await.0, 200);
    w.app.clock.advance(time::Duration::minutes(30));
    assert_eq!(
        page(&w.app, &browser, "/dashboard").await,
        (StatusCode::SEE_OTHER, "/login".into())
    );
    assert!(session_ids(&w).await.is_empty());

    // Absolute: staying active does not stretch a session beyond 12 hours.
    let browser = sign_in(&w, "alice@acme.example").await;
    for _ in 0..28 {
        w.app.clock.advance(time::Duration::minutes(25));
        assert_eq!(page(&w.app, &browser, "/dashboard").await.0, 200);
    }
    w.app.clock.advance(time::Duration::minutes(25));
    assert_eq!(page(&w.app, &browser, "/dashboard").await.1, "/login");
    let mut tx = w.app.store().tenant(w.tenant.tenant_id).await.unwrap();
    let reasons: Vec<String> = tx
        .audit_events(0, 1000)
        .await
        .unwrap()
        .iter()
        .filter(|e| e.action == "session.expired")
        .map(|e| e.details.0["reason"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(reasons, ["idle timeout", "absolute timeout"]);
}

async fn session_ids(w: &World) -> Vec<String> {
    // Raw look at the sessions table: ids only, hashes never leave the test.
    let mut c = <sqlx::SqliteConnection as sqlx::Connection>::connect(&w.app.db.url)
        .await
        .unwrap();
    let ids: Vec<uuid::Uuid> = sqlx::query_scalar("SELECT id FROM sessions")
        .fetch_all(&mut c)
        .await
        .unwrap();
    ids.iter().map(|i| i.to_string()).collect()
}

#[tokio::test]
async fn signing_out_and_disabling_end_sessions() {
    let w = world(|_| {}).await;
    let alice = sign_in(&w, "alice@acme.example").await;
    let (_, html) = page(&w.app, &alice, "/dashboard").await;
    let csrf = csrf_in(&html);

    // No token, a wrong token, or a cross-site origin: refused.
    type Pairs<'a> = &'a [(&'a str, &'a str)];
    let refused: [(Pairs, Pairs); 4] = [
        (&[], &[("x", "1")]),
        (&[], &[("csrf", "forged")]),
        (&[("origin", "https://evil.example")], &[("csrf", &csrf)]),
        (&[("sec-fetch-site", "cross-site")], &[("csrf", &csrf)]),
    ];
    for (headers, form) in refused {
        let mut req = alice.post(w.app.url("/logout")).form(form);
        for (name, value) in headers {
            req = req.header(*name, *value);
        }
        let res = req.send().await.unwrap();
        assert_eq!(res.status(), StatusCode::FORBIDDEN, "{headers:?} {form:?}");
    }
    assert_eq!(
        page(&w.app, &alice, "/dashboard").await.0,
        200,
        "a refused sign-out signed out"
    );

    let res = alice
        .post(w.app.url("/logout"))
        .header("origin", w.app.base.clone())
        .header("sec-fetch-site", "same-origin")
        .form(&[("csrf", &csrf)])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    assert_eq!(page(&w.app, &alice, "/dashboard").await.1, "/login");

    // Disabling ends every session at once.
    let one = sign_in(&w, "alice@acme.example").await;
    let two = sign_in(&w, "alice@acme.example").await;
    assert_eq!(session_ids(&w).await.len(), 2);
    let change = UserChange {
        disabled: Some(true),
        ..Default::default()
    };
    admin::update_user(
        w.app.store(),
        &ctx(w.app.clock.as_ref()),
        &w.tenant,
        w.alice.id,
        &change,
    )
    .await
    .unwrap();
    assert!(session_ids(&w).await.is_empty());
    for b in [one, two] {
        assert_eq!(page(&w.app, &b, "/dashboard").await.1, "/login");
    }
    let mut tx = w.app.store().tenant(w.tenant.tenant_id).await.unwrap();
    let events = tx.audit_events(0, 1000).await.unwrap();
    assert!(events.iter().any(|e| e.action == "signout"));
    let disabled = events.iter().find(|e| e.action == "user.disabled").unwrap();
    assert_eq!(disabled.details.0["sessions_ended"], 2);
}

#[tokio::test]
async fn admins_invite_change_and_disable_people_from_the_pages() {
    let w = world(|_| {}).await;
    let alice = sign_in(&w, "alice@acme.example").await;
    assert_eq!(
        page(&w.app, &alice, "/admin/users").await.0,
        StatusCode::FORBIDDEN
    );

    let carol = sign_in(&w, "carol@acme.example").await;
    let (status, html) = page(&w.app, &carol, "/admin/users").await;
    assert_eq!(status, 200);
    assert!(html.contains("alice@acme.example"));
    let csrf = csrf_in(&html);
    let form = [
        ("csrf", csrf.as_str()),
        ("email", "dave@acme.example"),
        ("name", "Dave"),
        ("role", "approver"),
        ("role", "requester"),
        ("groups", "sre, oncall"),
    ];
    let res = carol
        .post(w.app.url("/admin/users"))
        .form(&form)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert!(
        res.text()
            .await
            .unwrap()
            .contains("Invited dave@acme.example")
    );
    let invite = w
        .smtp
        .mails()
        .into_iter()
        .find(|m| m["to"][0] == "dave@acme.example");
    let invite = match invite {
        Some(m) => m,
        None => w.smtp.nth(w.smtp.mails().len() + 1).await,
    };
    assert!(
        invite["body"]
            .as_str()
            .unwrap()
            .contains("/login?tenant=acme")
    );

    let dave = admin::user_by_email(w.app.store(), &w.tenant, "dave@acme.example")
        .await
        .unwrap();
    assert_eq!(dave.roles.0, [Role::Requester, Role::Approver]);
    assert_eq!(dave.group_names.0, ["oncall", "sre"]);

    // Change roles and groups, then disable.
    let path = format!("/admin/users/{}", w.alice.id);
    let (_, html) = page(&w.app, &carol, &path).await;
    let csrf = csrf_in(&html);
    let form = [
        ("csrf", csrf.as_str()),
        ("name", "Alice A."),
        ("role", "requester"),
        ("role", "approver"),
        ("groups", "engineering sre"),
    ];
    let res = carol
        .post(w.app.url(&path))
        .form(&form)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    let changed = admin::user_by_email(w.app.store(), &w.tenant, "alice@acme.example")
        .await
        .unwrap();
    assert_eq!(changed.roles.0, [Role::Requester, Role::Approver]);
    assert_eq!(changed.display_name, "Alice A.");
    let res = carol
        .post(w.app.url(&format!("{path}/disable")))
        .form(&[("csrf", csrf.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    assert_eq!(page(&w.app, &alice, "/dashboard").await.1, "/login");

    // Admins cannot lock themselves out.
    let own = format!("/admin/users/{}/disable", w.carol.id);
    let res = carol
        .post(w.app.url(&own))
        .form(&[("csrf", csrf.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::CONFLICT);

    let mut tx = w.app.store().tenant(w.tenant.tenant_id).await.unwrap();
    let events = tx.audit_events(0, 1000).await.unwrap();
    let change = events.iter().find(|e| e.action == "user.changed").unwrap();
    assert_eq!(change.actor, "user:carol@acme.example");
    assert_eq!(
        change.details.0["roles"]["to"],
        serde_json::json!(["requester", "approver"])
    );
    assert!(
        events
            .iter()
            .any(|e| e.action == "user.created" && e.subject == "dave@acme.example")
    );
}

#[tokio::test]
async fn tokens_are_created_and_revoked_from_the_tokens_page() {
    let w = world(|_| {}).await;
    let alice = sign_in(&w, "alice@acme.example").await;
    let (_, html) = page(&w.app, &alice, "/tokens").await;
    let csrf = csrf_in(&html);
    let res = alice
        .post(w.app.url("/tokens"))
        .form(&[
            ("csrf", csrf.as_str()),
            ("name", "laptop"),
            ("scope", "read"),
            ("ttl", "1d"),
        ])
        .send()
        .await
        .unwrap();
    let html = res.text().await.unwrap();
    let start = html.find("elv_").expect("the new token is shown");
    let token: String = html[start..]
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || *c == '_' || *c == '-')
        .collect();
    let me = w.app.get_as(&token, "/api/v1/me").await;
    assert_eq!(me.status(), 200);

    let (_, again) = page(&w.app, &alice, "/tokens").await;
    assert!(
        again.contains("laptop") && !again.contains(&token),
        "the token is shown a second time"
    );
    let id = {
        let mut tx = w.app.store().tenant(w.tenant.tenant_id).await.unwrap();
        tx.api_tokens_of(w.alice.id).await.unwrap()[0].id
    };
    let res = alice
        .post(w.app.url(&format!("/tokens/{id}/revoke")))
        .form(&[("csrf", csrf.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    assert_eq!(w.app.get_as(&token, "/api/v1/me").await.status(), 401);
}

#[tokio::test]
async fn the_demo_outbox_exists_only_in_demo_mode_without_smtp() {
    let app = TestApp::spawn(TestDb::sqlite().await).await;
    assert_eq!(
        app.client
            .get(app.url("/dev/outbox"))
            .send()
            .await
            .unwrap()
            .status(),
        404
    );

    let app = TestApp::spawn_with(TestDb::sqlite().await, |c| c.demo = true).await;
    let tenant = seed_tenant(app.store(), &app.master, app.clock.as_ref(), "demo").await;
    seed_user(
        app.store(),
        app.clock.as_ref(),
        &tenant,
        "alice@example.com",
        &[Role::Requester],
        &[],
    )
    .await;
    let browser = app.browser();
    let (_, form) = page(&app, &browser, "/login").await;
    assert!(
        form.contains(r#"value="demo""#),
        "the only tenant is preselected"
    );
    assert_eq!(
        ask(&app, &browser, "demo", "alice@example.com")
            .await
            .status(),
        200
    );
    let (status, outbox) = page(&app, &browser, "/dev/outbox").await;
    assert_eq!(status, 200);
    let start = outbox.find("https://localhost").unwrap();
    let link: String = outbox[start..]
        .split(['"', '<', '\n'])
        .next()
        .unwrap()
        .to_owned();
    let res = redeem(&app, &browser, &link).await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    assert_eq!(page(&app, &browser, "/dashboard").await.0, 200);
    let _ = app.clock.now();
}

/// A page asked for while signed out (the "Decide at .../requests/ID" link of an approver's
/// email, `/device?code=...`) is where the email link leads after sign-in; only paths of this
/// site are followed.
#[tokio::test]
async fn sign_in_returns_to_the_page_asked_for() {
    let w = world(|_| {}).await;
    let browser = w.app.browser();
    let (s, to) = page(&w.app, &browser, "/device?code=BCDF-GHJK").await;
    assert_eq!((s, to.as_str()), (StatusCode::SEE_OTHER, "/login"));
    let before = w.smtp.mails().len();
    assert_eq!(
        ask(&w.app, &browser, "acme", "alice@acme.example")
            .await
            .status(),
        200
    );
    let mail = w.smtp.nth(before + 1).await;
    let res = redeem(&w.app, &browser, &link_in(&mail)).await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    assert_eq!(res.headers()["location"], "/device?code=BCDF-GHJK");
    // Used once: the next sign-in goes to the dashboard.
    assert!(
        set_cookies(&res)
            .iter()
            .any(|c| c.starts_with("__Host-elevate-next=;")),
        "{:?}",
        set_cookies(&res)
    );
    // Signed in, the home and sign-in pages say so.
    let (_, home) = page(&w.app, &browser, "/").await;
    assert!(
        home.contains("alice@acme.example") && home.contains("Your dashboard"),
        "{home}"
    );
    let (_, login) = page(&w.app, &browser, "/login").await;
    assert!(
        login.contains("You are signed in as alice@acme.example"),
        "{login}"
    );
    for unsafe_next in [
        "//evil.example/x",
        "/\\evil.example",
        "https://evil.example/",
    ] {
        assert_eq!(
            elevate::auth::session::same_site_path(unsafe_next),
            None,
            "{unsafe_next}"
        );
    }
    assert_eq!(
        elevate::auth::session::same_site_path("/requests/1?x=2"),
        Some("/requests/1?x=2")
    );
}
