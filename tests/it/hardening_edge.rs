//! Issue 13, the edges: passwords kept out of target logs and target URLs, RSA keys nobody
//! should certify, what anonymous `/readyz` and `/metrics` say, and the client address behind a
//! TLS-terminating proxy.

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use elevate::db_targets::targets::{NewTarget, set_target};
use elevate::model::TargetKind;
use reqwest::StatusCode;
use serde_json::json;
use sqlx::Connection;

use crate::db_fixtures::{MyTarget, PgTarget};
use crate::fixtures::{Shop, shop_with};
use crate::helpers::{TestApp, TestDb, ctx, temp_dir};

crate::on_both_backends!(
    target_core_refuses_query_passwords,
    unsafe_rsa_keys_get_no_certificate,
    monitoring_shows_tenants_only_to_their_metrics_token,
);

// ---------------------------------------------------------------------------------------------
// Item 4: database login passwords never reach the log.

/// Everything `tracing` writes on this thread (the test's current-thread runtime runs the server
/// too), at debug level.
#[derive(Clone, Default)]
struct CapturedLog(Arc<Mutex<Vec<u8>>>);

impl CapturedLog {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }

    /// Captures until the guard drops. Tests that capture run one at a time.
    ///
    /// `tracing` caches per-callsite interest process-wide. With a single registered dispatcher
    /// it rebuilds that cache from the thread's default at registration — before `set_default`,
    /// so callsites other tests already hit (sqlx's statement log among them) would stay
    /// disabled. A second, silent dispatcher makes the cache ask every registered one instead.
    async fn install(&self) -> Capture {
        static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
        let turn = ONE_AT_A_TIME.lock().await;
        let sink = self.clone();
        let mine = tracing::Dispatch::new(
            tracing_subscriber::fmt()
                .with_max_level(tracing::Level::DEBUG)
                .with_ansi(false)
                .with_writer(move || sink.clone())
                .finish(),
        );
        let silent = tracing::Dispatch::new(
            tracing_subscriber::fmt()
                .with_max_level(tracing_subscriber::filter::LevelFilter::OFF)
                .finish(),
        );
        Capture {
            _default: tracing::dispatcher::set_default(&mine),
            _silent: silent,
            _turn: turn,
        }
    }
}

struct Capture {
    _default: tracing::dispatcher::DefaultGuard,
    _silent: tracing::Dispatch,
    _turn: tokio::sync::MutexGuard<'static, ()>,
}

impl Write for CapturedLog {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn db_policy(pg: Option<&PgTarget>, my: Option<&MyTarget>) -> String {
    let mut p = String::new();
    if let Some(pg) = pg {
        p.push_str(&format!(
            "[[profile]]\nname = \"orders-read\"\nrequesters = [\"engineering\"]\napprovers = [\"sre\"]\n\
             [profile.database]\ntarget = \"orders\"\nroles = [\"{}\"]\n\n",
            pg.read
        ));
    }
    if let Some(my) = my {
        p.push_str(&format!(
            "[[profile]]\nname = \"shop-read\"\nrequesters = [\"engineering\"]\napprovers = [\"sre\"]\n\
             [profile.database]\ntarget = \"shop\"\nroles = [\"{}\"]\n\n",
            my.read
        ));
    }
    p
}

async fn db_login(shop: &Shop, id: &str) -> (String, String) {
    let (s, login) = shop
        .post(
            &shop.alice,
            &format!("/api/v1/requests/{id}/db-credentials"),
            json!({}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{login}");
    (
        login["username"].as_str().unwrap().to_owned(),
        login["password"].as_str().unwrap().to_owned(),
    )
}

#[tokio::test]
async fn mariadb_passwords_stay_out_of_the_log_of_a_slow_issuance() {
    let my = MyTarget::new().await;
    // From here on (the fixture's own set-up statements name the admin password).
    let log = CapturedLog::default();
    let _guard = log.install().await;
    let shop = shop_with(
        TestApp::spawn(TestDb::sqlite().await).await,
        "acme",
        &db_policy(None, Some(&my)),
    )
    .await;
    shop.app
        .add_target(
            &shop.tenant,
            "shop",
            TargetKind::Mysql,
            &my.admin_url(),
            &my.admin_password,
        )
        .await;
    let id = shop.granted("shop-read").await;

    // Another session holds the accounts table for two seconds: `CREATE USER` waits behind it,
    // which is what makes sqlx log a statement as slow (at warn, with its text).
    let mut root = my.root().await;
    sqlx::raw_sql("LOCK TABLES mysql.global_priv WRITE")
        .execute(&mut root)
        .await
        .unwrap();
    let unlock = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_secs(2)).await;
        sqlx::raw_sql("UNLOCK TABLES")
            .execute(&mut root)
            .await
            .unwrap();
        root.close().await.unwrap();
    });
    let started = Instant::now();
    let (user, password) = db_login(&shop, &id).await;
    let took = started.elapsed();
    unlock.await.unwrap();
    assert!(took >= Duration::from_millis(1900), "not slow: {took:?}");

    let text = log.text();
    // The capture works: the test's own `LOCK TABLES` (same thread as the server) is logged.
    assert!(text.contains("LOCK TABLES"), "nothing captured");
    assert!(!text.contains(&password), "password in the log:\n{text}");
    let hash = native_hash(&password);
    assert!(!text.contains(&hash), "password hash in the log");
    assert!(
        !text.contains(&my.admin_password),
        "admin password in the log"
    );
    // The account was made from the hash, and the password still opens it.
    let mut c = my.root().await;
    let stored: String = sqlx::query_scalar(
        "SELECT CAST(JSON_VALUE(Priv, '$.authentication_string') AS CHAR) FROM mysql.global_priv WHERE User = ?",
    )
    .bind(&user)
    .fetch_one(&mut c)
    .await
    .unwrap();
    assert_eq!(stored, hash);
    let mut session = my.login_without_database(&user, &password).await.unwrap();
    let me: String = sqlx::query_scalar("SELECT CURRENT_USER()")
        .fetch_one(&mut session)
        .await
        .unwrap();
    assert!(me.starts_with(&user), "{me}");
    assert!(my.login_without_database(&user, "wrong").await.is_err());
}

/// `*HEX(SHA1(SHA1(password)))`, computed here independently by the server's `PASSWORD()`.
fn native_hash(password: &str) -> String {
    let out = std::process::Command::new("mariadb")
        .args(["-h", "127.0.0.1", "-u", "root", "-N", "-B", "-e"])
        .arg(format!("SELECT PASSWORD('{password}')"))
        .output()
        .expect("the mariadb client (apt-get install mariadb-client)");
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

#[tokio::test]
async fn postgres_login_statements_stay_out_of_the_debug_log() {
    let pg = PgTarget::new().await;
    let log = CapturedLog::default();
    let _guard = log.install().await;
    let shop = shop_with(
        TestApp::spawn(TestDb::sqlite().await).await,
        "acme",
        &db_policy(Some(&pg), None),
    )
    .await;
    shop.app
        .add_target(
            &shop.tenant,
            "orders",
            TargetKind::Postgres,
            &pg.admin_url(),
            &pg.admin_password,
        )
        .await;
    let id = shop.granted("orders-read").await;
    let (user, password) = db_login(&shop, &id).await;
    // The capture works: a statement on this thread (where the server runs too) is logged.
    let mut probe = pg.superuser().await;
    sqlx::raw_sql("SELECT 'capture-probe'")
        .execute(&mut probe)
        .await
        .unwrap();
    let text = log.text();
    assert!(text.contains("capture-probe"), "nothing captured");
    assert!(!text.contains(&password));
    assert!(!text.contains("SCRAM-SHA-256$"), "a verifier in the log");
    assert!(
        !text.contains("CREATE ROLE"),
        "target statements are logged"
    );
    assert!(pg.login(&user, &password).await.is_ok());
}

// ---------------------------------------------------------------------------------------------
// Item 12: no password anywhere in a target URL.

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[test]
fn target_set_refuses_a_password_anywhere_in_the_url() {
    let dir = temp_dir("target-url");
    let run = |args: &[&str], stdin: &str| {
        let mut cmd = crate::fixtures::elevate(&dir);
        cmd.args(args);
        crate::helpers::run_with_stdin(cmd, stdin)
    };
    let out = run(&["admin", "tenant", "create", "acme"], "");
    assert!(out.status.success(), "{}", text(&out.stderr));
    for url in [
        "postgres://admin@127.0.0.1:5432/orders?password=hunter2",
        "postgres://admin@127.0.0.1:5432/orders?sslmode=disable&PASSWORD=hunter2",
        "postgres://admin@127.0.0.1:5432/orders?sslpassword=hunter2",
        "postgres://admin@127.0.0.1:5432/orders?pwd=hunter2",
        "postgres://admin@127.0.0.1:5432/orders?pass%77ord=hunter2",
        "postgres://admin%3Ahunter2@127.0.0.1:5432/orders",
        "postgres://admin@127.0.0.1:5432/orders#hunter2",
        "postgres://admin@127.0.0.1:5432/orders?options=hunter2",
    ] {
        let out = run(
            &[
                "admin", "target", "set", "--tenant", "acme", "orders", "--kind", "postgres",
                "--url", url,
            ],
            "pw\n",
        );
        assert!(!out.status.success(), "{url} accepted");
        let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
        assert!(
            !stderr.contains("hunter2") && !stdout.contains("hunter2"),
            "{stderr}"
        );
        assert!(
            stderr.contains("target URL") || stderr.contains("not in the URL"),
            "{url}: {stderr}"
        );
    }
    for url in [
        "mysql://admin@127.0.0.1:3306/shop?password=hunter2",
        "mariadb://admin@127.0.0.1:3306/shop?Pass=hunter2",
    ] {
        let out = run(
            &[
                "admin", "target", "set", "--tenant", "acme", "shop", "--kind", "mysql", "--url",
                url,
            ],
            "pw\n",
        );
        assert!(!out.status.success(), "{url} accepted");
        crate::helpers::assert_contains(&out.stderr, "stdin");
    }
    // Nothing was stored or audited.
    let out = run(&["admin", "target", "list", "--tenant", "acme"], "");
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        !text(&out.stdout).contains("orders"),
        "{}",
        text(&out.stdout)
    );
    let raw = std::fs::read(dir.join("elevate.db")).unwrap();
    assert!(!raw.windows(7).any(|w| w == b"hunter2"));
    // A URL with the parameters sqlx reads for TLS is fine.
    let out = run(
        &[
            "admin",
            "target",
            "set",
            "--tenant",
            "acme",
            "orders",
            "--kind",
            "postgres",
            "--url",
            "postgres://admin@127.0.0.1:1/orders?sslmode=disable",
        ],
        "pw\n",
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
}

async fn target_core_refuses_query_passwords(db: TestDb) {
    let app = TestApp::spawn(db).await;
    let tenant =
        crate::helpers::seed_tenant(app.store(), &app.master, app.clock.as_ref(), "acme").await;
    let err = set_target(
        app.store(),
        &app.master,
        &ctx(app.clock.as_ref()),
        &tenant,
        NewTarget {
            name: "orders",
            kind: TargetKind::Postgres,
            url: "postgres://admin@db/orders?Password=hunter2",
            password: "pw",
        },
    )
    .await
    .unwrap_err();
    assert!(err.to_string().contains("stdin"), "{err}");
    let mut tx = app.store().tenant(tenant.tenant_id).await.unwrap();
    assert!(tx.targets().await.unwrap().is_empty());
    let events = tx.audit_events(0, 1000).await.unwrap();
    tx.commit().await.unwrap();
    assert!(events.iter().all(|e| e.action != "target.set"));
    assert!(
        !events
            .iter()
            .any(|e| e.details.0.to_string().contains("hunter2"))
    );

    // A row stored before the check (edited in here by the owner) is not shown to admins.
    app.add_target(
        &tenant,
        "orders",
        TargetKind::Postgres,
        "postgres://admin@db.internal/orders",
        "pw",
    )
    .await;
    app.db
        .owner_exec(
            "UPDATE targets SET url = 'postgres://admin@db.internal/orders?password=hunter2'",
        )
        .await;
    let admin = crate::helpers::seed_user(
        app.store(),
        app.clock.as_ref(),
        &tenant,
        "ops@acme.example",
        &[elevate::model::Role::Admin],
        &[],
    )
    .await;
    let page = app
        .signed_in(&admin)
        .await
        .get(app.url("/admin/targets"))
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), StatusCode::OK);
    let page = page.text().await.unwrap();
    assert!(!page.contains("hunter2"), "{page}");
    assert!(page.contains("set the target again"), "{page}");
}

// ---------------------------------------------------------------------------------------------
// Item 10: RSA keys with a bad exponent or a huge modulus get no certificate.

/// An OpenSSH RSA public key with exponent `e` and a `bits`-bit modulus (not a real key pair:
/// nothing in the check needs one).
fn rsa_key(e: u64, bits: usize) -> String {
    use ssh_key::public::{KeyData, RsaPublicKey};
    use ssh_key::{Mpint, PublicKey};
    let mut n = vec![0x5au8; bits.div_ceil(8)];
    n[0] = 0x80 | 0x35;
    *n.last_mut().unwrap() |= 1;
    let e_bytes: Vec<u8> = e
        .to_be_bytes()
        .into_iter()
        .skip_while(|b| *b == 0)
        .collect();
    let key = RsaPublicKey {
        e: Mpint::from_positive_bytes(&e_bytes).unwrap(),
        n: Mpint::from_positive_bytes(&n).unwrap(),
    };
    PublicKey::new(KeyData::Rsa(key), "crafted@test")
        .to_openssh()
        .unwrap()
}

async fn unsafe_rsa_keys_get_no_certificate(db: TestDb) {
    let shop = crate::fixtures::shop(db).await;
    let id = shop.granted("prod-shell").await;
    for (e, bits, needle) in [
        (1, 3072, "exponent"),
        (3, 3072, "exponent"),
        (65536, 3072, "exponent"),
        (65538, 4096, "exponent"),
        (65537, 65536, "16384"),
        (65537, 16392, "16384"),
    ] {
        let (s, r) = shop.issue(&shop.alice, &id, &rsa_key(e, bits)).await;
        assert_eq!(
            s,
            StatusCode::UNPROCESSABLE_ENTITY,
            "e={e} bits={bits}: {r}"
        );
        let msg = r["error"]["message"].as_str().unwrap();
        assert!(msg.contains(needle), "e={e} bits={bits}: {msg}");
    }
    // The request page says the same, as a 422 page.
    let alice = {
        let mut tx = shop
            .app
            .store()
            .tenant(shop.tenant.tenant_id)
            .await
            .unwrap();
        let u = tx
            .user_by_email("alice@acme.example")
            .await
            .unwrap()
            .unwrap();
        tx.commit().await.unwrap();
        u
    };
    let browser = shop.app.signed_in(&alice).await;
    let page = browser
        .get(shop.app.url(&format!("/requests/{id}")))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let res = browser
        .post(shop.app.url(&format!("/requests/{id}/certificates")))
        .form(&[
            ("csrf", crate::helpers::csrf_in(&page)),
            ("public_key", rsa_key(1, 3072)),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let html = res.text().await.unwrap();
    assert!(html.contains("public exponent"), "{html}");

    // The limits themselves pass (65537 and 16384 bits; a larger odd exponent too).
    for (e, bits) in [(65537, 16384), (65537, 3072), (4_294_967_297, 4096)] {
        let (s, r) = shop.issue(&shop.alice, &id, &rsa_key(e, bits)).await;
        assert_eq!(s, StatusCode::CREATED, "e={e} bits={bits}: {r}");
    }
}

// The CLI runs on this thread while the in-process server answers on another.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_says_why_an_rsa_key_is_refused() {
    let shop = crate::fixtures::shop(TestDb::sqlite().await).await;
    let id = shop.granted("prod-shell").await;
    let home = temp_dir("cli-rsa");
    let cli = |args: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_elevate"))
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("XDG_CONFIG_HOME", &home)
            .args(args)
            .output()
            .unwrap()
    };
    let cert = shop.app.db.dir.join(elevate::web::tls::DEV_CERT_FILE);
    let out = cli(&[
        "login",
        "--server",
        &shop.app.base,
        "--token",
        &shop.alice,
        "--ca-cert",
        cert.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let key = home.join("id_rsa.pub");
    std::fs::write(&key, rsa_key(1, 3072)).unwrap();
    let out = cli(&["ssh-cert", &id, "--key", key.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stdout));
    crate::helpers::assert_contains(&out.stderr, "public exponent");
    assert!(!home.join("id_rsa-cert.pub").exists());
}

// ---------------------------------------------------------------------------------------------
// Item 13: the client address behind a trusted proxy.

async fn ask_as(app: &TestApp, forwarded_for: &str, email: &str) -> StatusCode {
    app.browser()
        .post(app.url("/login"))
        .header("x-forwarded-for", forwarded_for)
        .form(&[("tenant", "acme"), ("email", email)])
        .send()
        .await
        .unwrap()
        .status()
}

/// Asks for links (distinct addresses, so only the per-client limit applies) until refused:
/// how many passed (the limit lets 20 through at once, then one every 6 s).
async fn asks_until_refused(app: &TestApp, forwarded_for: &str, tag: &str) -> usize {
    for i in 0..40 {
        let email = format!("{tag}{i}@acme.example");
        match ask_as(app, forwarded_for, &email).await {
            StatusCode::OK => {}
            StatusCode::TOO_MANY_REQUESTS => return i,
            other => panic!("ask {i}: {other}"),
        }
    }
    40
}

async fn proxied_app(proxies: &str) -> TestApp {
    let proxies = elevate::config::TrustedProxies::parse_list(proxies).unwrap();
    let app = TestApp::spawn_with(TestDb::sqlite().await, |c| c.trusted_proxies = proxies).await;
    crate::helpers::seed_tenant(app.store(), &app.master, app.clock.as_ref(), "acme").await;
    app
}

#[tokio::test]
async fn behind_a_trusted_proxy_each_client_has_its_own_sign_in_limit() {
    // The test client connects from 127.0.0.1: the "proxy".
    let app = proxied_app("127.0.0.0/8,::1").await;
    let first = asks_until_refused(&app, "198.51.100.7", "a").await;
    assert!((20..=22).contains(&first), "{first}");
    // Another client behind the same proxy is not locked out by the first.
    assert_eq!(
        ask_as(&app, "198.51.100.8", "b0@acme.example").await,
        StatusCode::OK
    );
    // A client cannot escape its limit by making up hops left of what the proxy appended.
    assert_eq!(
        ask_as(&app, "203.0.113.1, 198.51.100.7", "c0@acme.example").await,
        StatusCode::TOO_MANY_REQUESTS
    );
    // The audit records the client, not the proxy.
    let tenant = app.store().tenant_by_slug("acme").await.unwrap().unwrap();
    let mut tx = app.store().tenant(tenant.tenant_id).await.unwrap();
    let events = tx.audit_events(0, 1000).await.unwrap();
    tx.commit().await.unwrap();
    let ips: std::collections::BTreeSet<Option<String>> = events
        .iter()
        .filter(|e| e.action == "signin.requested")
        .map(|e| e.ip.clone())
        .collect();
    assert_eq!(
        ips,
        [
            Some("198.51.100.7".to_owned()),
            Some("198.51.100.8".to_owned())
        ]
        .into()
    );
}

#[tokio::test]
async fn without_trusted_proxies_x_forwarded_for_is_ignored() {
    // Trusting some other network is the same as trusting none for this peer.
    for proxies in ["", "10.0.0.0/8"] {
        let app = proxied_app(proxies).await;
        let mut passed = 0;
        for i in 0..40 {
            // A new made-up address each time: it must not buy a new allowance.
            let spoofed = format!("198.51.100.{i}");
            match ask_as(&app, &spoofed, &format!("s{i}@acme.example")).await {
                StatusCode::OK => passed += 1,
                StatusCode::TOO_MANY_REQUESTS => break,
                other => panic!("{other}"),
            }
        }
        assert!((20..=22).contains(&passed), "{proxies:?}: {passed}");
        let tenant = app.store().tenant_by_slug("acme").await.unwrap().unwrap();
        let mut tx = app.store().tenant(tenant.tenant_id).await.unwrap();
        let events = tx.audit_events(0, 1000).await.unwrap();
        tx.commit().await.unwrap();
        assert!(
            events
                .iter()
                .filter(|e| e.action == "signin.requested")
                .all(|e| e.ip.as_deref() == Some("127.0.0.1")),
            "{proxies:?}"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Item 11: anonymous /readyz and /metrics carry aggregates only.

async fn observed(app: &TestApp, path: &str, token: Option<&str>) -> (StatusCode, String) {
    let mut req = app.client.get(app.url(path));
    if let Some(token) = token {
        req = req.bearer_auth(token);
    }
    let res = req.send().await.unwrap();
    (res.status(), res.text().await.unwrap())
}

async fn monitoring_shows_tenants_only_to_their_metrics_token(db: TestDb) {
    use elevate::model::{Role, Scope};
    let app = TestApp::spawn(db).await;
    let (store, clock) = (app.store().clone(), app.clock.clone());
    let mut tokens = Vec::new();
    for slug in ["zebracorp", "yakcorp"] {
        let tenant = crate::helpers::seed_tenant(&store, &app.master, clock.as_ref(), slug).await;
        // A target nothing listens on: unreachable, with the driver's error text.
        set_target(
            &store,
            &app.master,
            &ctx(clock.as_ref()),
            &tenant,
            NewTarget {
                name: &format!("{slug}-db"),
                kind: TargetKind::Postgres,
                url: "postgres://admin@127.0.0.1:1/orders",
                password: "pw",
            },
        )
        .await
        .unwrap();
        let ops = crate::helpers::seed_user(
            &store,
            clock.as_ref(),
            &tenant,
            &format!("ops@{slug}.example"),
            &[Role::Admin],
            &[],
        )
        .await;
        let metrics =
            crate::helpers::seed_token(&store, clock.as_ref(), &ops, &[Scope::Metrics]).await;
        let read = crate::helpers::seed_token(&store, clock.as_ref(), &ops, &[Scope::Read]).await;
        tokens.push((metrics, read));
    }
    let secret_words = [
        "zebracorp",
        "yakcorp",
        "zebracorp-db",
        "yakcorp-db",
        "refused",
        "onnect",
    ];

    // Anonymous: aggregate status, no tenant, target or error text.
    let (s, ready) = observed(&app, "/readyz", None).await;
    assert_eq!(s, StatusCode::OK, "{ready}");
    for w in secret_words {
        assert!(!ready.contains(w), "{w} in anonymous /readyz: {ready}");
    }
    let ready: serde_json::Value = serde_json::from_str(&ready).unwrap();
    assert_eq!(ready["checks"]["targets_unreachable"], 2, "{ready}");
    assert_eq!(ready["checks"]["store"], "ok");
    let (s, metrics) = observed(&app, "/metrics", None).await;
    assert_eq!(s, StatusCode::OK);
    for w in secret_words {
        assert!(!metrics.contains(w), "{w} in anonymous /metrics: {metrics}");
    }
    assert!(!metrics.contains("tenant="), "{metrics}");
    assert!(
        metrics.contains("\nelevate_db_logins_open 0\n"),
        "{metrics}"
    );

    // With the metrics scope: that tenant's details and series, and no other tenant's.
    let (zebra, zebra_read) = &tokens[0];
    let (s, ready) = observed(&app, "/readyz", Some(zebra)).await;
    assert_eq!(s, StatusCode::OK, "{ready}");
    assert!(!ready.contains("yakcorp"), "{ready}");
    let ready: serde_json::Value = serde_json::from_str(&ready).unwrap();
    assert_eq!(ready["tenant"], "zebracorp");
    let unreachable = ready["checks"]["targets_unreachable"].as_array().unwrap();
    assert_eq!(unreachable.len(), 1, "{ready}");
    assert_eq!(unreachable[0]["target"], "zebracorp-db");
    assert!(
        !unreachable[0]["error"].as_str().unwrap().is_empty(),
        "{ready}"
    );
    let (s, metrics) = observed(&app, "/metrics", Some(zebra)).await;
    assert_eq!(s, StatusCode::OK);
    assert!(
        metrics.contains("elevate_db_logins_open{tenant=\"zebracorp\"} 0"),
        "{metrics}"
    );
    assert!(!metrics.contains("yakcorp"), "{metrics}");
    let (_, metrics) = observed(&app, "/metrics", Some(&tokens[1].0)).await;
    assert!(metrics.contains("tenant=\"yakcorp\""), "{metrics}");
    assert!(!metrics.contains("zebracorp"), "{metrics}");

    // A token without the scope, or no valid token, is refused rather than answered anonymously.
    for path in ["/readyz", "/metrics"] {
        let (s, body) = observed(&app, path, Some(zebra_read)).await;
        assert_eq!(s, StatusCode::FORBIDDEN, "{path}: {body}");
        assert!(body.contains("metrics"), "{body}");
        let (s, _) = observed(&app, path, Some("elv_nonsense")).await;
        assert_eq!(s, StatusCode::UNAUTHORIZED, "{path}");
    }
}

#[tokio::test]
async fn only_admins_get_the_metrics_scope() {
    use elevate::model::{Role, Scope};
    let app = TestApp::spawn(TestDb::sqlite().await).await;
    let clock = app.clock.clone();
    let tenant =
        crate::helpers::seed_tenant(app.store(), &app.master, clock.as_ref(), "acme").await;
    let auditor = crate::helpers::seed_user(
        app.store(),
        clock.as_ref(),
        &tenant,
        "audit@acme.example",
        &[Role::Auditor],
        &[],
    )
    .await;
    let err = elevate::admin::create_token(
        app.store(),
        &ctx(clock.as_ref()),
        &auditor,
        "prometheus",
        &[Scope::Metrics],
        elevate::admin::DEFAULT_TOKEN_TTL,
    )
    .await
    .err()
    .expect("refused");
    assert!(err.to_string().contains("admin"), "{err}");
}
