//! OpenID Connect single sign-on against a real provider (panva/oidc-provider on node).

use std::process::{Child, Command, Stdio};

use elevate::admin;
use elevate::config::OidcConfig;
use elevate::model::{Role, Tenant};
use reqwest::StatusCode;

use crate::helpers::{TestApp, TestDb, seed_tenant, seed_user};

struct Provider {
    child: Child,
    issuer: String,
}

impl Provider {
    fn start(port: u16, redirect_uri: &str) -> Self {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/support/oidc");
        assert!(
            std::path::Path::new(dir)
                .join("node_modules/oidc-provider")
                .exists(),
            "the OpenID provider for the SSO tests is not installed: run `npm ci --prefix tests/support/oidc` (scripts/test.sh does)"
        );
        let mut child = Command::new("node")
            .arg(format!("{dir}/provider.mjs"))
            .arg(port.to_string())
            .arg(redirect_uri)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("node is needed for the SSO tests");
        let mut line = String::new();
        std::io::BufRead::read_line(
            &mut std::io::BufReader::new(child.stdout.take().unwrap()),
            &mut line,
        )
        .unwrap();
        assert_eq!(line.trim(), "ready", "the OpenID provider did not start");
        Provider {
            child,
            issuer: format!("http://127.0.0.1:{port}"),
        }
    }

    async fn next(&self, account: &str, tamper_nonce: bool) {
        let url = format!(
            "{}/test/next?account={account}&tamper_nonce={}",
            self.issuer,
            u8::from(tamper_nonce)
        );
        assert_eq!(reqwest::get(url).await.unwrap().status(), 200);
    }
}

impl Drop for Provider {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

struct Sso {
    app: TestApp,
    provider: Provider,
    tenant: Tenant,
}

async fn sso(create_users: bool) -> Sso {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let issuer = format!("http://127.0.0.1:{port}");
    let app = TestApp::spawn_with(TestDb::sqlite().await, |c| {
        c.oidc.insert(
            "acme".into(),
            OidcConfig {
                issuer,
                client_id: "elevate".into(),
                client_secret: "test-client-secret".into(),
                groups_claim: "groups".into(),
                create_users,
                default_roles: vec![Role::Requester],
                label: "Sign in with Acme SSO".into(),
            },
        );
    })
    .await;
    let provider = Provider::start(port, &app.url("/login/oidc/callback"));
    let tenant = seed_tenant(app.store(), &app.master, app.clock.as_ref(), "acme").await;
    seed_user(
        app.store(),
        app.clock.as_ref(),
        &tenant,
        "alice@acme.example",
        &[Role::Requester, Role::Approver],
        &["engineering"],
    )
    .await;
    Sso {
        app,
        provider,
        tenant,
    }
}

/// Starts SSO in `browser` and follows the provider's redirects; returns the callback URL.
async fn to_callback(s: &Sso, browser: &reqwest::Client) -> String {
    let res = browser
        .get(s.app.url("/login/oidc?tenant=acme"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    let cookie = res.headers()["set-cookie"].to_str().unwrap().to_owned();
    assert!(
        cookie.starts_with("__Host-elevate-oidc=")
            && cookie.contains("Secure; HttpOnly; SameSite=Lax"),
        "{cookie}"
    );
    let mut url = res.headers()["location"].to_str().unwrap().to_owned();
    assert!(
        url.starts_with(&s.provider.issuer)
            && url.contains("code_challenge_method=S256")
            && url.contains("nonce="),
        "{url}"
    );
    for _ in 0..10 {
        if url.starts_with(&s.app.base) {
            return url;
        }
        let res = browser.get(&url).send().await.unwrap();
        assert!(
            res.status().is_redirection(),
            "provider answered {} at {url}: {}",
            res.status(),
            res.text().await.unwrap()
        );
        let next = res.headers()["location"].to_str().unwrap().to_owned();
        url = if next.starts_with('/') {
            format!("{}{next}", s.provider.issuer)
        } else {
            next
        };
    }
    panic!("the provider never redirected back");
}

async fn callback(s: &Sso, browser: &reqwest::Client, url: &str) -> (StatusCode, String) {
    let res = browser.get(url).send().await.unwrap();
    let status = res.status();
    let location = res
        .headers()
        .get("location")
        .map(|l| l.to_str().unwrap().to_owned());
    let _ = s;
    (status, location.unwrap_or(res.text().await.unwrap()))
}

async fn failures(s: &Sso) -> Vec<String> {
    let mut tx = s.app.store().tenant(s.tenant.tenant_id).await.unwrap();
    tx.audit_events(0, 1000)
        .await
        .unwrap()
        .iter()
        .filter(|e| e.action == "signin.failed")
        .map(|e| e.details.0["reason"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn sso_signs_in_and_maps_groups() {
    let s = sso(false).await;
    let browser = s.app.browser();
    let (_, login) = (
        200,
        browser
            .get(s.app.url("/login?tenant=acme"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap(),
    );
    assert!(login.contains("Sign in with Acme SSO"));

    s.provider.next("alice", false).await;
    let url = to_callback(&s, &browser).await;
    assert_eq!(
        callback(&s, &browser, &url).await,
        (StatusCode::SEE_OTHER, "/dashboard".to_owned())
    );
    let dashboard = browser.get(s.app.url("/dashboard")).send().await.unwrap();
    assert_eq!(dashboard.status(), 200);

    let alice = admin::user_by_email(s.app.store(), &s.tenant, "alice@acme.example")
        .await
        .unwrap();
    assert_eq!(
        alice.group_names.0,
        ["engineering", "oncall"],
        "groups come from the provider's claim"
    );
    assert_eq!(
        alice.roles.0,
        [Role::Requester, Role::Approver],
        "standing roles stay as the admin set them"
    );
    let mut tx = s.app.store().tenant(s.tenant.tenant_id).await.unwrap();
    let events = tx.audit_events(0, 100).await.unwrap();
    let ok = events
        .iter()
        .find(|e| e.action == "signin.succeeded")
        .unwrap();
    assert_eq!(ok.details.0["method"], "oidc");
    assert_eq!(ok.details.0["subject"], "alice");
    assert!(events.iter().any(|e| e.action == "user.changed"
        && e.details.0["groups"]["to"] == serde_json::json!(["engineering", "oncall"])));

    // The callback cannot be replayed: the flow cookie is gone and the code is spent.
    assert_eq!(
        callback(&s, &browser, &url).await.0,
        StatusCode::BAD_REQUEST
    );
}

#[tokio::test]
async fn first_sign_in_creates_the_user_only_when_the_tenant_allows_it() {
    let closed = sso(false).await;
    let browser = closed.app.browser();
    closed.provider.next("newbie", false).await;
    let url = to_callback(&closed, &browser).await;
    assert_eq!(
        callback(&closed, &browser, &url).await.0,
        StatusCode::BAD_REQUEST
    );
    assert_eq!(failures(&closed).await, ["no such user and sign-up is off"]);

    let open = sso(true).await;
    let browser = open.app.browser();
    open.provider.next("newbie", false).await;
    let url = to_callback(&open, &browser).await;
    assert_eq!(callback(&open, &browser, &url).await.1, "/dashboard");
    let newbie = admin::user_by_email(open.app.store(), &open.tenant, "newbie@acme.example")
        .await
        .unwrap();
    assert_eq!(newbie.roles.0, [Role::Requester]);
    assert_eq!(newbie.group_names.0, ["sre"]);
}

#[tokio::test]
async fn unverified_email_wrong_state_wrong_nonce_and_other_browsers_are_refused() {
    let s = sso(true).await;

    s.provider.next("mallory", false).await;
    let browser = s.app.browser();
    let url = to_callback(&s, &browser).await;
    let (status, body) = callback(&s, &browser, &url).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(body.contains("single sign-on failed"));
    assert!(
        admin::user_by_email(s.app.store(), &s.tenant, "mallory@acme.example")
            .await
            .is_err()
    );

    s.provider.next("alice", false).await;
    let browser = s.app.browser();
    let url = to_callback(&s, &browser).await;
    let forged = url.replace("state=", "state=forged");
    assert_eq!(
        callback(&s, &browser, &forged).await.0,
        StatusCode::BAD_REQUEST
    );

    s.provider.next("alice", true).await;
    let browser = s.app.browser();
    let url = to_callback(&s, &browser).await;
    assert_eq!(
        callback(&s, &browser, &url).await.0,
        StatusCode::BAD_REQUEST
    );

    s.provider.next("alice", false).await;
    let url = to_callback(&s, &s.app.browser()).await;
    assert_eq!(
        callback(&s, &s.app.browser(), &url).await.0,
        StatusCode::BAD_REQUEST,
        "callback in a browser that did not start"
    );

    assert_eq!(
        failures(&s).await,
        [
            "email not verified by the provider",
            "state does not match",
            "nonce does not match"
        ]
    );
}

/// Email claims take the same normal form as every other entry point (issue 13 item 15): a
/// zero-width-space look-alike of alice is refused, not signed up as a second alice, and
/// `Alice@ACME.Example` is alice.
#[tokio::test]
async fn email_claims_are_normalised_and_look_alikes_refused() {
    let s = sso(true).await;
    let alice = admin::user_by_email(s.app.store(), &s.tenant, "alice@acme.example")
        .await
        .unwrap();
    let before = {
        let mut tx = s.app.store().tenant(s.tenant.tenant_id).await.unwrap();
        let n = tx.list_users().await.unwrap().len();
        tx.commit().await.unwrap();
        n
    };

    s.provider.next("twin", false).await;
    let browser = s.app.browser();
    let url = to_callback(&s, &browser).await;
    let (status, body) = callback(&s, &browser, &url).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(
        failures(&s).await,
        ["the email claim is not a valid address"]
    );
    let mut tx = s.app.store().tenant(s.tenant.tenant_id).await.unwrap();
    assert_eq!(
        tx.list_users().await.unwrap().len(),
        before,
        "no twin created"
    );
    tx.commit().await.unwrap();

    s.provider.next("loud", false).await;
    let browser = s.app.browser();
    let url = to_callback(&s, &browser).await;
    assert_eq!(callback(&s, &browser, &url).await.1, "/dashboard");
    let mut tx = s.app.store().tenant(s.tenant.tenant_id).await.unwrap();
    let signed_in = tx
        .audit_events(0, 1000)
        .await
        .unwrap()
        .into_iter()
        .rfind(|e| e.action == "signin.succeeded")
        .unwrap();
    assert_eq!(tx.list_users().await.unwrap().len(), before);
    tx.commit().await.unwrap();
    assert_eq!(signed_in.subject, alice.email);
}
