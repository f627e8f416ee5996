//! Passkeys through the real HTTP endpoints with webauthn-authenticator-rs' software passkey
//! (issue 14): register, sign in, approve a `step_up` profile with an assertion bound to the
//! decision; and the refusals: a replayed assertion, one for another request, one for the
//! request before its extension, UV=false, an expired challenge, a wrong origin, removing a
//! passkey without a step-up with another one.

use reqwest::StatusCode;
use serde_json::Value;
use webauthn_authenticator_rs::WebauthnAuthenticator;
use webauthn_authenticator_rs::softpasskey::SoftPasskey;
use webauthn_rs_proto::{CreationChallengeResponse, RequestChallengeResponse};

use crate::fixtures::{Shop, shop_with};
use crate::helpers::{TestApp, TestDb, csrf_in};
use crate::on_both_backends;

const POLICY: &str = r#"
[[profile]]
name = "prod-db-admin"
requesters = ["engineering"]
approvers = ["sre"]
approvals_required = 1
max_duration = "4h"
step_up = true
[profile.ssh]
principals = ["dba"]

[[profile]]
name = "prod-shell"
requesters = ["engineering"]
approvers = ["sre"]
break_glass = true
[profile.ssh]
principals = ["deploy"]
"#;

type Authenticator = SoftPasskey;

/// A signed-in browser of one person, and their software passkey.
struct Person {
    browser: reqwest::Client,
    csrf: String,
    passkey: Authenticator,
}

async fn person(shop: &Shop, email: &str) -> Person {
    let app = &shop.app;
    let browser = app.signed_in(&shop.user(email).await).await;
    let html = browser
        .get(app.url("/passkeys"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    Person {
        csrf: csrf_in(&html),
        browser,
        passkey: SoftPasskey::new(true),
    }
}

fn origin(app: &TestApp) -> url::Url {
    url::Url::parse(&app.base).unwrap()
}

/// POSTs a form, asking for JSON (as `static/passkeys.js` does).
async fn post_json(
    browser: &reqwest::Client,
    app: &TestApp,
    path: &str,
    form: &[(&str, &str)],
) -> (StatusCode, Value) {
    let res = browser
        .post(app.url(path))
        .header("accept", "application/json")
        .form(form)
        .send()
        .await
        .unwrap();
    let status = res.status();
    (status, res.json().await.unwrap_or(Value::Null))
}

async fn post_form(
    browser: &reqwest::Client,
    app: &TestApp,
    path: &str,
    form: &[(&str, &str)],
) -> (StatusCode, String) {
    let res = browser.post(app.url(path)).form(form).send().await.unwrap();
    let status = res.status();
    (status, res.text().await.unwrap_or_default())
}

impl Person {
    /// A page as this person sees it.
    async fn page(&self, app: &TestApp, path: &str) -> String {
        let res = self.browser.get(app.url(path)).send().await.unwrap();
        res.text().await.unwrap()
    }

    /// Posts a form of this person's (their CSRF token first, then `fields`).
    async fn post(
        &self,
        app: &TestApp,
        path: &str,
        fields: &[(&str, &str)],
    ) -> (StatusCode, String) {
        let mut form = vec![("csrf", self.csrf.as_str())];
        form.extend_from_slice(fields);
        post_form(&self.browser, app, path, &form).await
    }

    /// Registers this person's software passkey under `name`.
    async fn register(&mut self, app: &TestApp, name: &str) {
        let (s, c) = post_json(
            &self.browser,
            app,
            "/passkeys/challenge",
            &[("csrf", &self.csrf)],
        )
        .await;
        assert_eq!(s, StatusCode::OK, "{c}");
        let options: CreationChallengeResponse =
            serde_json::from_value(c["options"].clone()).unwrap();
        let answer = self
            .passkey
            .do_registration(origin(app), options)
            .expect("the software passkey registers");
        let (s, body) = self
            .post(
                app,
                "/passkeys",
                &[
                    ("name", name),
                    ("ceremony", c["ceremony"].as_str().unwrap()),
                    ("credential", &serde_json::to_string(&answer).unwrap()),
                ],
            )
            .await;
        assert_eq!(s, StatusCode::SEE_OTHER, "{body}");
    }

    /// A challenge from `path` answered by this person's passkey, as if at `at`: (ceremony,
    /// assertion JSON).
    async fn assert_at(&mut self, app: &TestApp, path: &str, at: url::Url) -> (String, String) {
        let (s, c) = post_json(&self.browser, app, path, &[("csrf", &self.csrf)]).await;
        assert_eq!(s, StatusCode::OK, "{c}");
        let options: RequestChallengeResponse =
            serde_json::from_value(c["options"].clone()).unwrap();
        let answer = self
            .passkey
            .do_authentication(at, options)
            .expect("the software passkey answers");
        (
            c["ceremony"].as_str().unwrap().to_owned(),
            serde_json::to_string(&answer).unwrap(),
        )
    }

    async fn step_up_for(&mut self, app: &TestApp, id: &str) -> (String, String) {
        self.assert_at(app, &format!("/requests/{id}/step-up"), origin(app))
            .await
    }

    /// Answers the challenge at `challenge` with this person's passkey and posts the answer to
    /// `path` with their CSRF token and `fields`: (status, Location, body).
    async fn confirm(
        &mut self,
        app: &TestApp,
        challenge: &str,
        path: &str,
        fields: &[(&str, &str)],
    ) -> (StatusCode, String, String) {
        let (ceremony, credential) = self.assert_at(app, challenge, origin(app)).await;
        let mut form = vec![("csrf", self.csrf.as_str())];
        form.extend_from_slice(fields);
        form.extend([
            ("ceremony", ceremony.as_str()),
            ("credential", credential.as_str()),
        ]);
        let res = self
            .browser
            .post(app.url(path))
            .form(&form)
            .send()
            .await
            .unwrap();
        let status = res.status();
        let location = res
            .headers()
            .get("location")
            .map(|l| l.to_str().unwrap().to_owned())
            .unwrap_or_default();
        (status, location, res.text().await.unwrap_or_default())
    }

    /// Approves request `id` on its page with a step-up (ceremony, assertion).
    async fn approve(
        &self,
        app: &TestApp,
        id: &str,
        proof: &(String, String),
    ) -> (StatusCode, String) {
        self.post(
            app,
            &format!("/requests/{id}/approve"),
            &[
                ("comment", "checked"),
                ("ceremony", &proof.0),
                ("credential", &proof.1),
            ],
        )
        .await
    }
}

fn base64_url(text: &str) -> Vec<u8> {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(text)
        .unwrap()
}

/// `elevate admin tenant set --tenant acme SETTING` against the test's store.
fn tenant_set(app: &TestApp, setting: &str) {
    let dir = crate::helpers::temp_dir("tenant-set");
    let out = crate::fixtures::elevate(&dir)
        .args(format!("admin tenant set --tenant acme {setting}").split(' '))
        .args(["--database", &app.db.url])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

async fn add_person(
    shop: &Shop,
    email: &str,
    role: elevate::model::Role,
    groups: &[&str],
) -> elevate::model::User {
    let app = &shop.app;
    crate::helpers::seed_user(
        app.store(),
        app.clock.as_ref(),
        &shop.tenant,
        email,
        &[role],
        groups,
    )
    .await
}

async fn state(shop: &Shop, id: &str) -> String {
    let (_, r) = shop.app.api(&shop.bob).show(id).await;
    r["state"].as_str().unwrap().to_owned()
}

async fn refusals(shop: &Shop) -> Vec<String> {
    shop.actions()
        .await
        .into_iter()
        .filter(|(a, _)| a == "request.refused")
        .map(|(_, d)| d["reason"].as_str().unwrap_or_default().to_owned())
        .collect()
}

async fn a_step_up_approval_holds_only_for_its_own_decision(db: TestDb) {
    let shop = shop_with(TestApp::spawn(db).await, "acme", POLICY).await;
    let app = &shop.app;
    let alice = app.api(&shop.alice);
    let mut bob = person(&shop, "bob@acme.example").await;

    // Before any passkey: no challenge, with a message saying where to register one.
    let first = alice.request("prod-db-admin", "30m").await;
    let (s, r) = post_json(
        &bob.browser,
        app,
        &format!("/requests/{first}/step-up"),
        &[("csrf", &bob.csrf)],
    )
    .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{r}");
    assert!(
        r["error"]["message"]
            .as_str()
            .unwrap()
            .contains("register one"),
        "{r}"
    );

    bob.register(app, "bob <laptop>").await;
    let page = bob.page(app, "/passkeys").await;
    assert!(
        page.contains("bob &#60;laptop&#62;"),
        "the name, escaped: {page}"
    );
    let registered: Vec<Value> = shop
        .actions()
        .await
        .into_iter()
        .filter(|(a, _)| a == "passkey.registered")
        .map(|(_, d)| d)
        .collect();
    assert_eq!(registered.len(), 1);
    assert!(
        registered[0]["credential_id"]
            .as_str()
            .is_some_and(|c| !c.is_empty())
    );
    assert!(
        registered[0].get("passkey").is_none(),
        "no key material in the audit log"
    );

    // An assertion for another request is refused on this one, and spent.
    let second = alice.request("prod-db-admin", "1h").await;
    let for_second = bob.step_up_for(app, &second).await;
    let (s, body) = bob.approve(app, &first, &for_second).await;
    assert_eq!(s, StatusCode::FORBIDDEN, "{body}");
    assert!(body.contains("something else"), "{body}");
    assert_eq!(state(&shop, &first).await, "pending");
    let (s, body) = bob.approve(app, &second, &for_second).await;
    assert_eq!(
        s,
        StatusCode::FORBIDDEN,
        "a refused assertion stays spent: {body}"
    );
    assert_eq!(state(&shop, &second).await, "pending");

    // The real thing: an assertion for this request approves it, once.
    let proof = bob.step_up_for(app, &first).await;
    let (s, body) = bob.approve(app, &first, &proof).await;
    assert_eq!(s, StatusCode::SEE_OTHER, "{body}");
    assert_eq!(state(&shop, &first).await, "active");
    let detail = bob.page(app, &format!("/requests/{first}")).await;
    assert!(
        detail.contains("1/1<br>bob@acme.example (passkey)"),
        "{detail}"
    );
    let stepped: Vec<Value> = shop
        .actions()
        .await
        .into_iter()
        .filter(|(a, _)| a == "passkey.stepped_up")
        .map(|(_, d)| d)
        .collect();
    assert_eq!(stepped.len(), 1, "{stepped:?}");

    // Replayed on another request: refused (the ceremony is spent).
    let (s, body) = bob.approve(app, &second, &proof).await;
    assert_eq!(s, StatusCode::FORBIDDEN, "{body}");
    assert!(body.contains("already used"), "{body}");

    // An assertion for the request before its extension does not approve the extension.
    let before = bob.step_up_for(app, &first).await;
    let (s, r) = alice
        .post(
            &format!("/api/v1/requests/{first}/extend"),
            serde_json::json!({ "duration": "30m" }),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{r}");
    let (s, body) = bob.approve(app, &first, &before).await;
    assert_eq!(s, StatusCode::FORBIDDEN, "{body}");
    assert!(body.contains("something else"), "{body}");
    let after = bob.step_up_for(app, &first).await;
    let (s, body) = bob.approve(app, &first, &after).await;
    assert_eq!(s, StatusCode::SEE_OTHER, "{body}");

    // An expired challenge, and an assertion made for another origin.
    let late = bob.step_up_for(app, &second).await;
    app.clock.advance(time::Duration::minutes(6));
    let (s, body) = bob.approve(app, &second, &late).await;
    assert_eq!(s, StatusCode::FORBIDDEN, "{body}");
    assert!(body.contains("expired"), "{body}");
    let phished = bob
        .assert_at(
            app,
            &format!("/requests/{second}/step-up"),
            // Same site name, another origin (a look-alike service on another port).
            url::Url::parse("https://localhost:1").unwrap(),
        )
        .await;
    let (s, body) = bob.approve(app, &second, &phished).await;
    assert_eq!(s, StatusCode::FORBIDDEN, "{body}");
    assert_eq!(state(&shop, &second).await, "pending");

    // A bare token still cannot approve.
    let (s, r) = app.api(&shop.bob).approve(&second).await;
    assert_eq!(s, StatusCode::FORBIDDEN, "{r}");
    assert_eq!(r["error"]["code"], "step_up_required", "{r}");

    // Every refusal is audited with its reason.
    let reasons = refusals(&shop).await;
    assert!(
        reasons
            .iter()
            .filter(|r| r.contains("step-up was not accepted"))
            .count()
            >= 5,
        "{reasons:?}"
    );
}

async fn a_passkey_without_user_verification_approves_nothing(db: TestDb) {
    let shop = shop_with(TestApp::spawn(db).await, "acme", POLICY).await;
    let app = &shop.app;
    let mut bob = person(&shop, "bob@acme.example").await;
    bob.register(app, "laptop").await;
    // The same credential, now answering without verifying the user.
    let id = app.api(&shop.alice).request("prod-db-admin", "30m").await;
    let proof = {
        let (s, c) = post_json(
            &bob.browser,
            app,
            &format!("/requests/{id}/step-up"),
            &[("csrf", &bob.csrf)],
        )
        .await;
        assert_eq!(s, StatusCode::OK, "{c}");
        let mut options: RequestChallengeResponse =
            serde_json::from_value(c["options"].clone()).unwrap();
        // The authenticator is told verification is not wanted, so its answer says unverified.
        options.public_key.user_verification =
            webauthn_rs_proto::UserVerificationPolicy::Discouraged_DO_NOT_USE;
        let answer = bob.passkey.do_authentication(origin(app), options).unwrap();
        (
            c["ceremony"].as_str().unwrap().to_owned(),
            serde_json::to_string(&answer).unwrap(),
        )
    };
    let (s, body) = bob.approve(app, &id, &proof).await;
    assert_eq!(s, StatusCode::FORBIDDEN, "{body}");
    assert!(body.contains("user verified bit is not set"), "{body}");
    assert_eq!(state(&shop, &id).await, "pending");
}

/// Break-glass on prod-shell from the new-request page, with a step-up when given one.
async fn file_break_glass(
    p: &Person,
    app: &TestApp,
    proof: Option<&(String, String)>,
) -> (StatusCode, String) {
    let mut form = vec![
        ("csrf", p.csrf.as_str()),
        ("profile", "prod-shell"),
        ("duration", "30m"),
        ("justification", "outage"),
        ("break_glass", "1"),
    ];
    if let Some((ceremony, credential)) = proof {
        form.push(("ceremony", ceremony));
        form.push(("credential", credential));
    }
    post_form(&p.browser, app, "/requests", &form).await
}

async fn break_glass_is_confirmed_with_the_requesters_passkey(db: TestDb) {
    let shop = shop_with(TestApp::spawn(db).await, "acme", POLICY).await;
    let app = &shop.app;
    let break_glass = serde_json::json!({"profile": "prod-shell", "duration": "30m",
        "justification": "outage", "break_glass": true});

    // Without a passkey, and without the tenant setting, break-glass works as before.
    let (s, r) = app
        .api(&shop.alice)
        .post("/api/v1/requests", break_glass.clone())
        .await;
    assert_eq!(
        (s, r["state"].as_str()),
        (StatusCode::CREATED, Some("active")),
        "{r}"
    );

    // With a passkey, a token cannot: the page asks the passkey.
    let mut alice = person(&shop, "alice@acme.example").await;
    alice.register(app, "laptop").await;
    let (s, r) = app
        .api(&shop.alice)
        .post("/api/v1/requests", break_glass.clone())
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN, "{r}");
    assert_eq!(r["error"]["code"], "step_up_required", "{r}");
    let (s, body) = file_break_glass(&alice, app, None).await;
    assert_eq!(s, StatusCode::FORBIDDEN, "{body}");
    let (s, c) = post_json(
        &alice.browser,
        app,
        "/requests/break-glass/step-up",
        &[("csrf", &alice.csrf), ("profile", "prod-shell")],
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{c}");
    let options: RequestChallengeResponse = serde_json::from_value(c["options"].clone()).unwrap();
    let answer = alice
        .passkey
        .do_authentication(origin(app), options)
        .unwrap();
    let proof = (
        c["ceremony"].as_str().unwrap().to_owned(),
        serde_json::to_string(&answer).unwrap(),
    );
    let (s, body) = file_break_glass(&alice, app, Some(&proof)).await;
    assert_eq!(s, StatusCode::SEE_OTHER, "{body}");
    // An approval's step-up does not stand in for break-glass.
    let pending = app.api(&shop.alice).request("prod-db-admin", "30m").await;
    let wrong = alice.step_up_for(app, &pending).await;
    let (s, body) = file_break_glass(&alice, app, Some(&wrong)).await;
    assert_eq!(s, StatusCode::FORBIDDEN, "{body}");
    let stepped: Vec<Value> = shop
        .actions()
        .await
        .into_iter()
        .filter(|(a, d)| a == "passkey.stepped_up" && d["for"] == "break_glass")
        .map(|(_, d)| d)
        .collect();
    assert_eq!(stepped.len(), 1, "{stepped:?}");

    // With the tenant setting on, someone without a passkey is told to register one.
    tenant_set(app, "--require-passkey-for-break-glass on");
    let erin = add_person(
        &shop,
        "erin@acme.example",
        elevate::model::Role::Requester,
        &["engineering"],
    )
    .await;
    let (s, r) = app
        .as_user(&erin)
        .await
        .post("/api/v1/requests", break_glass)
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN, "{r}");
    let message = r["error"]["message"].as_str().unwrap();
    assert!(
        message.contains(&format!("{}/passkeys", app.base)),
        "{message}"
    );
    let changed = shop
        .actions()
        .await
        .into_iter()
        .filter(|(a, _)| a == "tenant.settings_changed")
        .count();
    assert_eq!(changed, 1);
}

on_both_backends!(
    a_step_up_approval_holds_only_for_its_own_decision,
    a_passkey_without_user_verification_approves_nothing,
    break_glass_is_confirmed_with_the_requesters_passkey,
    a_widening_policy_change_waits_for_a_second_admin,
);

#[tokio::test]
async fn a_passkey_signs_in_and_is_removed_only_with_another() {
    let shop = shop_with(TestApp::spawn(TestDb::sqlite().await).await, "acme", POLICY).await;
    let app = &shop.app;
    let mut bob = person(&shop, "bob@acme.example").await;
    bob.register(app, "laptop").await;

    // Sign in with it, in a browser with no session: a full sign-in.
    let browser = app.browser();
    let (s, c) = post_json(
        &browser,
        app,
        "/login/passkey/challenge",
        &[("tenant", "acme")],
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{c}");
    let mut options: RequestChallengeResponse =
        serde_json::from_value(c["options"].clone()).unwrap();
    assert!(
        options.public_key.allow_credentials.is_empty(),
        "the passkey names the person"
    );
    // The software passkey is not discoverable: point it at its credential, and hand back the
    // user handle a discoverable one keeps (it is not signed; the server checks it against the
    // credential).
    let bob_user = shop.user("bob@acme.example").await;
    let registered = {
        let mut tx = app.store().tenant(shop.tenant.tenant_id).await.unwrap();
        let p = tx.passkeys_of(bob_user.id).await.unwrap();
        tx.commit().await.unwrap();
        p
    };
    options.mediation = None;
    options.public_key.allow_credentials = vec![webauthn_rs_proto::AllowCredentials {
        type_: "public-key".into(),
        id: base64_url(&registered[0].credential_id),
        transports: None,
    }];
    let mut answer = bob.passkey.do_authentication(origin(app), options).unwrap();
    answer.response.user_handle = Some(bob_user.id.as_bytes().to_vec());
    let res = browser
        .post(app.url("/login/passkey"))
        .form(&[
            ("tenant", "acme"),
            ("ceremony", c["ceremony"].as_str().unwrap()),
            ("credential", &serde_json::to_string(&answer).unwrap()),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    assert_eq!(res.headers()["location"], "/dashboard");
    let dashboard = browser.get(app.url("/dashboard")).send().await.unwrap();
    assert_eq!(dashboard.status(), StatusCode::OK);
    assert!(dashboard.text().await.unwrap().contains("bob@acme.example"));
    let signins: Vec<Value> = shop
        .actions()
        .await
        .into_iter()
        .filter(|(a, _)| a == "signin.succeeded")
        .map(|(_, d)| d)
        .collect();
    assert_eq!(signins.last().unwrap()["method"], "passkey");

    // The same assertion again: refused, and audited.
    let res = browser
        .post(app.url("/login/passkey"))
        .form(&[
            ("tenant", "acme"),
            ("ceremony", c["ceremony"].as_str().unwrap()),
            ("credential", &serde_json::to_string(&answer).unwrap()),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::BAD_REQUEST);

    // The last passkey of someone who approves step-up profiles stays.
    let first = registered[0].id.to_string();
    let (s, body) = bob
        .post(app, &format!("/passkeys/{first}/remove"), &[])
        .await;
    assert_eq!(s, StatusCode::CONFLICT, "{body}");
    assert!(body.contains("last passkey"), "{body}");

    // With a second one, removing the first needs a step-up with the second.
    let mut second_device = Person {
        browser: bob.browser.clone(),
        csrf: bob.csrf.clone(),
        passkey: SoftPasskey::new(true),
    };
    second_device.register(app, "phone").await;
    let (s, body) = bob
        .post(app, &format!("/passkeys/{first}/remove"), &[])
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN, "{body}");
    // Confirming with the passkey being removed does not count.
    let (s, _, body) = bob
        .confirm(
            app,
            &format!("/passkeys/{first}/challenge"),
            &format!("/passkeys/{first}/remove"),
            &[],
        )
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN, "{body}");
    let (ceremony, credential) = second_device
        .assert_at(app, &format!("/passkeys/{first}/challenge"), origin(app))
        .await;
    let (s, body) = bob
        .post(
            app,
            &format!("/passkeys/{first}/remove"),
            &[("ceremony", &ceremony), ("credential", &credential)],
        )
        .await;
    assert_eq!(s, StatusCode::SEE_OTHER, "{body}");
    let removed = shop
        .actions()
        .await
        .into_iter()
        .filter(|(a, _)| a == "passkey.removed")
        .count();
    assert_eq!(removed, 1);
}

/// The demo's `prod-db-admin` (two approvals, each with a passkey) in Chromium with virtual
/// authenticators: bob and dave register passkeys on /passkeys and approve alice's request from
/// its page; alice registers one and signs in with it; no CSP violation, no console error.
#[tokio::test]
async fn chromium_registers_approves_and_signs_in_with_a_passkey() {
    // Demo mode: the sign-in page also has the email form, whose field offers passkeys in
    // autofill (a conditional request waits there; the button must still work).
    let app = TestApp::spawn_with(TestDb::sqlite().await, |c| c.demo = true).await;
    let (store, clock) = (app.store(), app.clock.as_ref());
    let tenant = crate::helpers::seed_tenant(store, &app.master, clock, "demo").await;
    let ctx = crate::helpers::ctx(clock);
    elevate::broker::policy::apply(store, &ctx, &tenant, elevate::demo::POLICY)
        .await
        .unwrap();
    let user = async |email: &str, role, group: &str| {
        crate::helpers::seed_user(store, clock, &tenant, email, &[role], &[group]).await
    };
    use elevate::model::Role;
    let alice = user("alice@example.com", Role::Requester, "engineering").await;
    let bob = user("bob@example.com", Role::Approver, "sre").await;
    let dave = user("dave@example.com", Role::Approver, "sre").await;
    let alice_api = app.as_user(&alice).await;
    let (s, r) = alice_api
        .post(
            "/api/v1/requests",
            serde_json::json!({"profile": "prod-db-admin", "duration": "30m",
                "justification": "schema migration"}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{r}");
    let id = r["id"].as_str().unwrap().to_owned();
    // Neither approver can do it with a token.
    for approver in [&bob, &dave] {
        let (s, r) = app.as_user(approver).await.approve(&id).await;
        assert_eq!(s, StatusCode::FORBIDDEN, "{r}");
    }
    let mut args = vec![app.base.clone(), id.clone()];
    for person in [&alice, &bob, &dave] {
        args.push(app.session_for(person).await);
    }
    let report = crate::browser::run_script("passkeys.mjs", args).await;
    assert_eq!(report["error"], Value::Null, "{report}");
    let approvers = report["approvers"].as_array().unwrap();
    assert_eq!(approvers.len(), 2, "{report}");
    assert_eq!(
        approvers[0]["registered"]["resident"],
        serde_json::json!([true]),
        "{report}"
    );
    assert_eq!(approvers[0]["state"], "pending", "one of two: {report}");
    assert!(
        approvers[0]["approvals"]
            .as_str()
            .unwrap()
            .contains("Approvals1/2bob@example.com (passkey): \u{201c}looked at it\u{201d}"),
        "{report}"
    );
    assert_eq!(approvers[1]["state"], "active", "{report}");
    assert!(
        approvers[1]["approvals"].as_str().unwrap().contains(
            "2/2bob@example.com (passkey): \u{201c}looked at it\u{201d}dave@example.com (passkey)"
        ),
        "{report}"
    );
    assert_eq!(report["dashboardHeading"], "Welcome, alice", "{report}");
    assert_eq!(report["signedInBy"], "autofill", "{report}");
    assert_eq!(
        report["overflow"],
        serde_json::json!([]),
        "no page scrolls sideways: {report}"
    );
    assert_eq!(
        (
            report["menuHidden"].as_bool(),
            report["menuOpens"].as_bool()
        ),
        (Some(true), Some(true)),
        "{report}"
    );
    assert_eq!(report["cspViolations"], serde_json::json!([]), "{report}");
    assert_eq!(report["consoleErrors"], serde_json::json!([]), "{report}");
    let (_, shown) = alice_api.show(&id).await;
    assert_eq!(shown["state"], "active", "{shown}");
}

/// Admin changes from a browser need a passkey confirmation of the session in the last five
/// minutes from an admin who has a passkey, and from every admin when the tenant requires it.
#[tokio::test]
async fn admin_changes_need_a_recent_step_up_of_the_session() {
    let shop = shop_with(TestApp::spawn(TestDb::sqlite().await).await, "acme", POLICY).await;
    let app = &shop.app;
    let carol = add_person(
        &shop,
        "carol@acme.example",
        elevate::model::Role::Admin,
        &[],
    )
    .await;
    let mut carol_p = person(&shop, &carol.email).await;
    let lockdown = |p: &Person| {
        let (browser, csrf) = (p.browser.clone(), p.csrf.clone());
        let url = app.url("/admin/lockdown");
        async move {
            let form = [("csrf", csrf.as_str()), ("reason", "drill")];
            let res = browser.post(url).form(&form).send().await.unwrap();
            (res.status(), res.text().await.unwrap_or_default())
        }
    };

    // Without a passkey (and the tenant not requiring one): as before.
    let (s, body) = lockdown(&carol_p).await;
    assert_eq!(s, StatusCode::SEE_OTHER, "{body}");
    let (s, _) = carol_p.post(app, "/admin/lockdown/lift", &[]).await;
    assert_eq!(s, StatusCode::SEE_OTHER);

    // With one, the session must confirm first.
    carol_p.register(app, "laptop").await;
    let (s, body) = lockdown(&carol_p).await;
    assert_eq!(s, StatusCode::FORBIDDEN, "{body}");
    assert!(body.contains(&format!("{}/step-up", app.base)), "{body}");
    let (s, body) = carol_p.post(app, "/tokens", &[("name", "ops")]).await;
    assert_eq!(
        s,
        StatusCode::FORBIDDEN,
        "an admin token is an admin change: {body}"
    );
    let (s, location, _) = carol_p
        .confirm(
            app,
            "/step-up/challenge",
            "/step-up",
            &[("next", "/admin/status")],
        )
        .await;
    assert_eq!(s, StatusCode::SEE_OTHER);
    assert_eq!(location, "/admin/status");
    let (s, body) = lockdown(&carol_p).await;
    assert_eq!(s, StatusCode::SEE_OTHER, "{body}");

    // Five minutes later it has to confirm again.
    app.clock.advance(time::Duration::minutes(6));
    let (s, body) = carol_p.post(app, "/admin/lockdown/lift", &[]).await;
    assert_eq!(s, StatusCode::FORBIDDEN, "{body}");
    // A step-up for another session does not count, and a redirect never leaves the site.
    let (ceremony, credential) = carol_p
        .assert_at(app, "/step-up/challenge", origin(app))
        .await;
    let other = person(&shop, &carol.email).await;
    let (s, body) = other
        .post(
            app,
            "/step-up",
            &[("ceremony", &ceremony), ("credential", &credential)],
        )
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN, "{body}");
    let (s, location, _) = carol_p
        .confirm(
            app,
            "/step-up/challenge",
            "/step-up",
            &[("next", "//evil.example/x")],
        )
        .await;
    assert_eq!(s, StatusCode::SEE_OTHER);
    assert_eq!(location, "/dashboard");
    let (s, body) = carol_p.post(app, "/admin/lockdown/lift", &[]).await;
    assert_eq!(s, StatusCode::SEE_OTHER, "{body}");

    // With the tenant requiring it, an admin without a passkey is told to register one; tokens
    // (the CLI, scripts) keep working.
    tenant_set(app, "--require-passkey-for-admin on");
    let dan = add_person(&shop, "dan@acme.example", elevate::model::Role::Admin, &[]).await;
    let dan_p = person(&shop, &dan.email).await;
    let (s, body) = lockdown(&dan_p).await;
    assert_eq!(s, StatusCode::FORBIDDEN, "{body}");
    assert!(body.contains(&format!("{}/passkeys", app.base)), "{body}");
    let (s, r) = app
        .as_user(&dan)
        .await
        .post(
            "/api/v1/tokens",
            serde_json::json!({"name": "ops", "scopes": ["admin"]}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{r}");
}

/// `elevate login --admin`: a device login that asks for admin rights is approved only by an
/// admin whose session confirmed with a passkey (whatever the tenant's settings), and is
/// answered with a one-hour token that holds the admin scope.
#[tokio::test]
async fn an_admin_device_login_needs_a_passkey_confirmation() {
    let shop = shop_with(TestApp::spawn(TestDb::sqlite().await).await, "acme", POLICY).await;
    let app = &shop.app;
    let anonymous = app.browser();
    let begin = |scope: &'static str| {
        let anonymous = anonymous.clone();
        let url = app.url("/api/v1/device/code");
        async move {
            let body = serde_json::json!({"tenant": "acme", "client": "elevate-cli on box", "scope": scope});
            let res = anonymous.post(url).json(&body).send().await.unwrap();
            (res.status(), res.json::<Value>().await.unwrap())
        }
    };
    let poll = |device_code: String| {
        let anonymous = anonymous.clone();
        let url = app.url("/api/v1/device/token");
        async move {
            let body = serde_json::json!({"tenant": "acme", "device_code": device_code});
            let res = anonymous.post(url).json(&body).send().await.unwrap();
            (res.status(), res.json::<Value>().await.unwrap())
        }
    };
    let (s, r) = begin("admin audit").await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{r}");
    let (s, asked) = begin("admin").await;
    assert_eq!(s, StatusCode::OK, "{asked}");
    let user_code = asked["user_code"].as_str().unwrap().to_owned();
    let decide = async |p: &Person, decision: &str| {
        p.post(
            app,
            "/device",
            &[("code", &user_code), ("decision", decision)],
        )
        .await
    };

    // An approver who is not an admin cannot hand out admin rights.
    let bob = person(&shop, "bob@acme.example").await;
    let (s, body) = decide(&bob, "approve").await;
    assert_eq!(s, StatusCode::FORBIDDEN, "{body}");
    assert!(body.contains("you are not an admin"), "{body}");

    // An admin without a passkey is told to register one, even though the tenant does not
    // require passkeys for admin changes; with one, the session must confirm first.
    let carol = add_person(
        &shop,
        "carol@acme.example",
        elevate::model::Role::Admin,
        &[],
    )
    .await;
    let mut carol_p = person(&shop, &carol.email).await;
    let page = carol_p
        .page(app, &format!("/device?code={user_code}"))
        .await;
    assert!(page.contains("with your admin rights"), "{page}");
    assert!(
        page.contains(&format!("/step-up?next=%2Fdevice%3Fcode%3D{user_code}")),
        "{page}"
    );
    let (s, body) = decide(&carol_p, "approve").await;
    assert_eq!(s, StatusCode::FORBIDDEN, "{body}");
    assert!(body.contains(&format!("{}/passkeys", app.base)), "{body}");
    carol_p.register(app, "laptop").await;
    let (s, body) = decide(&carol_p, "approve").await;
    assert_eq!(s, StatusCode::FORBIDDEN, "{body}");
    assert!(body.contains(&format!("{}/step-up", app.base)), "{body}");
    let (s, r) = poll(asked["device_code"].as_str().unwrap().to_owned()).await;
    assert_eq!(
        (s, r["error"].as_str()),
        (StatusCode::BAD_REQUEST, Some("authorization_pending"))
    );

    let (s, _, _) = carol_p
        .confirm(app, "/step-up/challenge", "/step-up", &[])
        .await;
    assert_eq!(s, StatusCode::SEE_OTHER);
    let (s, body) = decide(&carol_p, "approve").await;
    assert_eq!(s, StatusCode::OK, "{body}");
    app.clock.advance(time::Duration::seconds(6));
    let (s, token) = poll(asked["device_code"].as_str().unwrap().to_owned()).await;
    assert_eq!(s, StatusCode::OK, "{token}");
    assert_eq!(token["expires_in"], 3600);
    assert!(
        token["name"].as_str().unwrap().ends_with("(admin)"),
        "{token}"
    );
    let (_, me) = app
        .api(token["access_token"].as_str().unwrap())
        .get("/api/v1/me")
        .await;
    let scopes = me["token"]["scopes"].as_array().unwrap();
    assert!(scopes.contains(&serde_json::json!("admin")), "{me}");
    assert!(
        token["scope"]
            .as_str()
            .unwrap()
            .split(' ')
            .any(|s| s == "admin"),
        "{token}"
    );

    // Without --admin, the same admin's approval (no step-up needed) gives no admin scope.
    app.clock.advance(time::Duration::minutes(6));
    let (_, plain) = begin("").await;
    let code = plain["user_code"].as_str().unwrap();
    let (s, body) = carol_p
        .post(app, "/device", &[("code", code), ("decision", "approve")])
        .await;
    assert_eq!(s, StatusCode::OK, "{body}");
    let (s, token) = poll(plain["device_code"].as_str().unwrap().to_owned()).await;
    assert_eq!(s, StatusCode::OK, "{token}");
    assert!(
        !token["scope"]
            .as_str()
            .unwrap()
            .split(' ')
            .any(|s| s == "admin"),
        "{token}"
    );
}

/// With `policy_two_person`, a policy change that widens access waits for a second admin's
/// passkey approval; a narrowing one applies at once; the proposer cannot approve their own.
async fn a_widening_policy_change_waits_for_a_second_admin(db: TestDb) {
    let shop = shop_with(TestApp::spawn(db).await, "acme", POLICY).await;
    let app = &shop.app;
    let admin = elevate::model::Role::Admin;
    let carol = add_person(&shop, "carol@acme.example", admin, &[]).await;
    let dan = add_person(&shop, "dan@acme.example", admin, &[]).await;
    tenant_set(app, "--policy-two-person on");

    let put = |token: String, body: String| {
        let client = app.client.clone();
        let url = app.url("/api/v1/policy");
        async move {
            let res = client
                .put(url)
                .bearer_auth(token)
                .body(body)
                .send()
                .await
                .unwrap();
            (res.status(), res.json::<Value>().await.unwrap())
        }
    };
    let carol_token = app.as_user(&carol).await.token;
    // Narrowing (max_duration 4h -> 1h): applied at once.
    let narrower = POLICY.replace("max_duration = \"4h\"", "max_duration = \"1h\"");
    let (s, r) = put(carol_token.clone(), narrower.clone()).await;
    assert_eq!(s, StatusCode::CREATED, "{r}");
    assert_eq!(r["version"], 2, "{r}");
    // Widening (step_up off): proposed, not applied.
    let wider = narrower.replace("step_up = true", "step_up = false");
    let (s, r) = put(carol_token.clone(), wider.clone()).await;
    assert_eq!(s, StatusCode::ACCEPTED, "{r}");
    assert_eq!(r["version"], 2, "{r}");
    let widening = r["proposed"]["widening"].to_string();
    assert!(widening.contains("step_up turned off"), "{r}");
    let proposal = r["proposed"]["id"].as_str().unwrap().to_owned();
    let (_, profiles) = app.api(&shop.bob).get("/api/v1/profiles?all=true").await;
    assert!(
        profiles.to_string().contains("\"step_up\":true"),
        "still in force: {profiles}"
    );

    // The proposer cannot approve it, even with a passkey.
    let mut carol_p = person(&shop, &carol.email).await;
    carol_p.register(app, "laptop").await;
    let page = format!("/admin/policy/proposals/{proposal}");
    let (s, _, body) = carol_p
        .confirm(
            app,
            &format!("{page}/step-up"),
            &format!("{page}/approve"),
            &[],
        )
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN, "{body}");
    assert!(body.contains("second admin"), "{body}");

    // Without a step-up, nobody approves it.
    let mut dan_p = person(&shop, &dan.email).await;
    let (s, body) = dan_p.post(app, &format!("{page}/approve"), &[]).await;
    assert_eq!(s, StatusCode::FORBIDDEN, "{body}");

    // A second admin with a passkey: it becomes version 3.
    dan_p.register(app, "phone").await;
    let html = dan_p.page(app, &page).await;
    assert!(
        html.contains("step_up turned off") && html.contains("Approve with a passkey"),
        "{html}"
    );
    let (s, location, _) = dan_p
        .confirm(
            app,
            &format!("{page}/step-up"),
            &format!("{page}/approve"),
            &[],
        )
        .await;
    assert_eq!(s, StatusCode::SEE_OTHER);
    assert_eq!(location, "/admin/policy/3");
    let version_page = dan_p.page(app, "/admin/policy/3").await;
    assert!(
        version_page.contains("Widens access") && version_page.contains("step_up turned off"),
        "{version_page}"
    );
    let actions: Vec<String> = shop.actions().await.into_iter().map(|(a, _)| a).collect();
    assert!(
        actions.contains(&"policy.proposed".to_owned()),
        "{actions:?}"
    );

    // A proposal made on a version that has since changed cannot be approved.
    let widest = wider.replace(
        "approvals_required = 1",
        "approvals_required = 1\nauto_approve_groups = [\"engineering\"]",
    );
    let (s, r) = put(carol_token.clone(), widest).await;
    assert_eq!(s, StatusCode::ACCEPTED, "{r}");
    let stale = r["proposed"]["id"].as_str().unwrap().to_owned();
    let (s, r) = put(
        carol_token,
        wider.replace("break_glass = true", "break_glass = false"),
    )
    .await;
    assert_eq!(
        s,
        StatusCode::CREATED,
        "a narrowing change applies at once: {r}"
    );
    let stale_page = format!("/admin/policy/proposals/{stale}");
    let (s, _, body) = dan_p
        .confirm(
            app,
            &format!("{stale_page}/step-up"),
            &format!("{stale_page}/approve"),
            &[],
        )
        .await;
    assert_eq!(s, StatusCode::CONFLICT, "{body}");
    assert!(body.contains("propose it again"), "{body}");
}

/// Without the email form (no mail server), the sign-in page offers the passkey as a button.
#[tokio::test]
async fn chromium_signs_in_with_the_button_where_autofill_is_not_offered() {
    let shop = shop_with(TestApp::spawn(TestDb::sqlite().await).await, "acme", POLICY).await;
    let app = &shop.app;
    let session = app
        .session_for(&shop.user("alice@acme.example").await)
        .await;
    let args = vec![app.base.clone(), "none".into(), session];
    let report = crate::browser::run_script("passkeys.mjs", args).await;
    assert_eq!(report["error"], Value::Null, "{report}");
    assert_eq!(report["signedInBy"], "button", "{report}");
    assert_eq!(report["dashboardHeading"], "Welcome, alice", "{report}");
    assert_eq!(report["consoleErrors"], serde_json::json!([]), "{report}");
}
