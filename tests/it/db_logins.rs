//! Database logins end to end on real Postgres and MariaDB: issued for an approved grant, able
//! to do exactly what the profile's roles allow, and gone — sessions included — when the grant
//! expires or is revoked, after a target outage, and after a crash.

use elevate::clock::{Clock, SharedClock};
use elevate::model::TargetKind;
use reqwest::StatusCode;
use serde_json::{Value, json};
use sqlx::Connection;

use crate::db_fixtures::{MyTarget, PgTarget, Proxy};
use crate::fixtures::{Shop, shop_with};
use crate::helpers::{TestApp, TestDb};

fn policy(pg: &PgTarget, my: Option<&MyTarget>) -> String {
    let mut p = format!(
        r#"
[[profile]]
name = "orders-read"
requesters = ["engineering"]
approvers = ["sre"]
max_duration = "4h"
[profile.database]
target = "orders"
roles = ["{read}"]

[[profile]]
name = "orders-write"
requesters = ["engineering"]
approvers = ["sre"]
[profile.database]
target = "orders"
roles = ["{write}"]
owner = "{owner}"

[[profile]]
name = "shell"
requesters = ["engineering"]
approvers = ["sre"]
[profile.ssh]
principals = ["deploy"]

[[profile]]
name = "nowhere"
requesters = ["engineering"]
approvers = ["sre"]
[profile.database]
target = "missing"
roles = ["{read}"]
"#,
        read = pg.read,
        write = pg.write,
        owner = pg.owner,
    );
    if let Some(my) = my {
        p.push_str(&format!(
            r#"
[[profile]]
name = "shop-read"
requesters = ["engineering"]
approvers = ["sre"]
[profile.database]
target = "shop"
roles = ["{read}"]
"#,
            read = my.read
        ));
    }
    p
}

async fn org(db: TestDb, pg: &PgTarget, my: Option<&MyTarget>) -> Shop {
    let shop = shop_with(TestApp::spawn(db).await, "acme", &policy(pg, my)).await;
    shop.app
        .add_target(
            &shop.tenant,
            "orders",
            TargetKind::Postgres,
            &pg.admin_url(),
            &pg.admin_password,
        )
        .await;
    if let Some(my) = my {
        shop.app
            .add_target(
                &shop.tenant,
                "shop",
                TargetKind::Mysql,
                &my.admin_url(),
                &my.admin_password,
            )
            .await;
    }
    shop
}

impl Shop {
    async fn db_login(&self, token: &str, id: &str) -> (StatusCode, Value) {
        self.post(
            token,
            &format!("/api/v1/requests/{id}/db-credentials"),
            json!({}),
        )
        .await
    }

    /// A login for a fresh approved grant of `profile`: (request id, login).
    async fn login_for(&self, profile: &str) -> (String, Value) {
        let id = self.granted(profile).await;
        let (s, login) = self.db_login(&self.alice, &id).await;
        assert_eq!(s, StatusCode::CREATED, "{login}");
        (id, login)
    }

    /// `/readyz` as the tenant's monitoring sees it (a token with the metrics scope).
    async fn ready(&self) -> Value {
        let token =
            crate::helpers::metrics_token(self.app.store(), self.app.clock.as_ref(), &self.tenant)
                .await;
        let r = self
            .app
            .client
            .get(self.app.url("/readyz"))
            .bearer_auth(token)
            .send()
            .await
            .unwrap();
        r.json().await.unwrap()
    }

    async fn count_actions(&self, action: &str) -> usize {
        self.actions()
            .await
            .iter()
            .filter(|(a, _)| a == action)
            .count()
    }

    /// Asks for a login and expects `status` with `reason` in the message.
    async fn refused(&self, token: &str, id: &str, status: StatusCode, reason: &str) {
        let (s, r) = self.db_login(token, id).await;
        assert_eq!(s, status, "{r}");
        let message = r["error"]["message"].as_str().unwrap_or_default();
        assert!(message.contains(reason), "{r}");
    }

    /// One reaper pass: transitions, then database login cleanups.
    async fn reap(&self) -> elevate::db_targets::cleanup::Pass {
        let clock: SharedClock = self.app.clock.clone();
        elevate::reaper::run_once(self.app.store(), &clock, &self.app.base)
            .await
            .unwrap();
        elevate::reaper::clean_db_logins(self.app.store(), &self.app.master, clock.now())
            .await
            .unwrap()
    }

    async fn counts(&self) -> elevate::store::CleanupCounts {
        let mut tx = self
            .app
            .store()
            .tenant(self.tenant.tenant_id)
            .await
            .unwrap();
        let c = tx.db_cleanup_counts(self.app.clock.now()).await.unwrap();
        tx.commit().await.unwrap();
        c
    }
}

fn user_and_password(login: &Value) -> (String, String) {
    (
        login["username"].as_str().unwrap().to_owned(),
        login["password"].as_str().unwrap().to_owned(),
    )
}

async fn expiry_ends_postgres_logins(db: TestDb) {
    let pg = PgTarget::new().await;
    let shop = org(db, &pg, None).await;
    let (id, login) = shop.login_for("orders-read").await;
    let (user, password) = user_and_password(&login);
    assert_eq!(login["target"], "orders");
    assert_eq!(login["host"], "127.0.0.1");
    assert_eq!(login["port"], 5432);
    assert_eq!(login["database"], pg.database.as_str());
    assert!(password.len() >= 24, "{password}");
    assert!(user.starts_with("elv_"), "{user}");
    assert!(
        user.contains(&id.replace('-', "")[24..]),
        "{user} carries the request id"
    );

    // The role exists with VALID UNTIL at the grant's end.
    let mut su = pg.superuser().await;
    let until: time::OffsetDateTime =
        sqlx::query_scalar("SELECT rolvaliduntil FROM pg_roles WHERE rolname = $1")
            .bind(&user)
            .fetch_one(&mut su)
            .await
            .unwrap();
    let expires = time::OffsetDateTime::parse(
        login["expires_at"].as_str().unwrap(),
        &time::format_description::well_known::Rfc3339,
    )
    .unwrap();
    assert_eq!(until, expires);

    // Exactly what the profile's role allows.
    let mut plain = pg.login(&user, &password).await.unwrap();
    let items: Vec<String> = sqlx::query_scalar("SELECT item FROM orders ORDER BY id")
        .fetch_all(&mut plain)
        .await
        .unwrap();
    assert_eq!(items, ["widget", "gadget"]);
    for forbidden in [
        "INSERT INTO orders VALUES (3, 'x')",
        "SELECT * FROM secrets",
        "CREATE TABLE public.mine (x int)",
        "CREATE TABLE work.mine (x int)",
    ] {
        let err = sqlx::raw_sql(sqlx::AssertSqlSafe(forbidden.to_owned()))
            .execute(&mut plain)
            .await
            .expect_err(forbidden);
        assert!(
            err.to_string().contains("permission denied"),
            "{forbidden}: {err}"
        );
    }
    // The password is checked (scram), so a wrong one is refused.
    let wrong = pg.login(&user, "not-the-password-at-all-0123").await;
    assert!(
        wrong.is_err(),
        "Postgres accepted a wrong password: add 'host all +elevate_password_logins 127.0.0.1/32 scram-sha-256' to pg_hba.conf (scripts/test.sh does)"
    );
    // A second session that changed role is still the login's session.
    let mut switched = pg.login(&user, &password).await.unwrap();
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!("SET ROLE {}", pg.read)))
        .execute(&mut switched)
        .await
        .unwrap();
    assert_eq!(pg.sessions_of(&user).await, 2);

    // Not yet: a pass before the end leaves it alone.
    assert_eq!(shop.reap().await.cleaned, 0);
    assert!(pg.role_exists(&user).await);

    shop.app
        .clock
        .advance(time::Duration::hours(1) + time::Duration::seconds(1));
    let pass = shop.reap().await;
    assert_eq!(pass.cleaned, 1, "{pass:?}");
    assert!(pg.sessions_gone(&user, 5).await, "sessions survived expiry");
    assert!(!pg.role_exists(&user).await);
    assert!(pg.login(&user, &password).await.is_err());
    for session in [&mut plain, &mut switched] {
        assert!(
            sqlx::query("SELECT 1")
                .execute(&mut *session)
                .await
                .is_err()
        );
    }

    let actions = shop.actions().await;
    let issued = actions
        .iter()
        .find(|(a, _)| a == "db.login_issued")
        .expect("issue audited");
    assert_eq!(issued.1["role"], user.as_str());
    assert_eq!(issued.1["target"], "orders");
    let dropped = actions
        .iter()
        .find(|(a, _)| a == "db.login_dropped")
        .expect("drop audited");
    assert_eq!(dropped.1["sessions_terminated"], 2);
    // Expiry made it due (no separate "ended" event: the role was due at the grant's end).
    assert!(actions.iter().any(|(a, _)| a == "grant.expired"));
    assert!(!actions.iter().any(|(a, _)| a == "db.logins_ended"));
    // Nothing anywhere holds the password.
    let everything = format!("{actions:?}");
    assert!(!everything.contains(&password));

    // The request page lists the login as dropped; a second pass has nothing to do.
    assert_eq!(shop.reap().await, Default::default());
    assert_eq!(shop.counts().await.open, 0);
}

crate::on_both_backends!(expiry_ends_postgres_logins);

#[tokio::test]
async fn revocation_ends_the_login_and_its_sessions_at_once() {
    let pg = PgTarget::new().await;
    let shop = org(TestDb::sqlite().await, &pg, None).await;
    let (id, login) = shop.login_for("orders-read").await;
    let (user, password) = user_and_password(&login);
    let (_, second) = shop.db_login(&shop.alice, &id).await;
    let (user2, password2) = user_and_password(&second);
    assert_ne!(user, user2, "each call makes a new login");
    let mut open = pg.login(&user, &password).await.unwrap();
    let _open2 = pg.login(&user2, &password2).await.unwrap();

    shop.revoke(&id).await;
    // Revoked, not yet dropped: due now.
    assert_eq!(shop.counts().await.due, 2);
    let pass = shop.reap().await;
    assert_eq!(pass.cleaned, 2);
    assert!(pg.sessions_gone(&user, 5).await);
    assert!(pg.sessions_gone(&user2, 5).await);
    assert!(!pg.role_exists(&user).await && !pg.role_exists(&user2).await);
    assert!(sqlx::query("SELECT 1").execute(&mut open).await.is_err());

    // No new login for a revoked grant; the refusal is audited.
    let (s, r) = shop.db_login(&shop.alice, &id).await;
    assert_eq!(s, StatusCode::CONFLICT, "{r}");
    let ended = shop
        .actions()
        .await
        .into_iter()
        .find(|(a, _)| a == "db.logins_ended")
        .unwrap();
    assert_eq!(ended.1["state"], "revoked");
    assert_eq!(ended.1["roles"].as_array().unwrap().len(), 2);
}

/// Issue 16: the admin connection of a login is kept for the next one (no handshake per
/// login); one the target dropped while idle is replaced, and the login still succeeds.
#[tokio::test]
async fn the_admin_connection_is_kept_and_replaced_when_it_dies() {
    let pg = PgTarget::new().await;
    let shop = org(TestDb::sqlite().await, &pg, None).await;
    let (id, first) = shop.login_for("orders-read").await;
    assert_eq!(
        pg.sessions_of(&pg.admin).await,
        1,
        "the admin connection was not kept"
    );
    let (s, second) = shop.db_login(&shop.alice, &id).await;
    assert_eq!(s, StatusCode::CREATED, "{second}");
    assert_eq!(
        pg.sessions_of(&pg.admin).await,
        1,
        "the second login did not reuse the kept connection"
    );

    // The target ends the idle session (a restart, an idle timeout).
    let mut su = pg.superuser().await;
    sqlx::query("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = $1")
        .bind(&pg.admin)
        .execute(&mut su)
        .await
        .unwrap();
    assert!(pg.sessions_gone(&pg.admin, 5).await);
    let (s, third) = shop.db_login(&shop.alice, &id).await;
    assert_eq!(s, StatusCode::CREATED, "{third}");
    for login in [&first, &second, &third] {
        let (user, password) = user_and_password(login);
        pg.login(&user, &password).await.unwrap();
    }
}

#[tokio::test]
async fn a_table_made_during_the_grant_survives_cleanup() {
    let pg = PgTarget::new().await;
    let shop = org(TestDb::sqlite().await, &pg, None).await;
    let (id, login) = shop.login_for("orders-write").await;
    let (user, password) = user_and_password(&login);
    let mut c = pg.login(&user, &password).await.unwrap();
    sqlx::raw_sql(
        "CREATE TABLE work.fixes (id int, note text); INSERT INTO work.fixes VALUES (1, 'kept')",
    )
    .execute(&mut c)
    .await
    .unwrap();
    c.close().await.unwrap();

    shop.revoke(&id).await;
    assert_eq!(shop.reap().await.cleaned, 1);
    assert!(!pg.role_exists(&user).await);
    let mut su = pg.superuser().await;
    let (owner, note): (String, String) = sqlx::query_as(
        "SELECT tableowner::text, (SELECT note FROM work.fixes) FROM pg_tables
         WHERE schemaname = 'work' AND tablename = 'fixes'",
    )
    .fetch_one(&mut su)
    .await
    .unwrap();
    assert_eq!(owner, pg.owner, "the profile's owner role got the table");
    assert_eq!(note, "kept");
}

/// Issue 16: a cleanup is two target transactions, the lock-out and the drop. When the drop
/// fails (here the admin may no longer hand the login's table to the owner role), the login
/// is locked out and its sessions are gone, but nothing it owned was touched: the next attempt
/// does the whole drop again and succeeds.
#[tokio::test]
async fn a_failed_drop_leaves_the_login_locked_out_and_whole() {
    let pg = PgTarget::new().await;
    let shop = org(TestDb::sqlite().await, &pg, None).await;
    let (id, login) = shop.login_for("orders-write").await;
    let (user, password) = user_and_password(&login);
    let mut c = pg.login(&user, &password).await.unwrap();
    sqlx::raw_sql("CREATE TABLE work.fixes (id int); GRANT SELECT ON work.fixes TO PUBLIC")
        .execute(&mut c)
        .await
        .unwrap();
    pg.superuser_exec(&format!("REVOKE {} FROM {}", pg.owner, pg.admin))
        .await;

    shop.revoke(&id).await;
    let pass = shop.reap().await;
    assert_eq!((pass.cleaned, pass.failed), (0, 1), "{pass:?}");
    assert!(pg.sessions_gone(&user, 5).await, "its session was ended");
    assert!(sqlx::query("SELECT 1").execute(&mut c).await.is_err());
    assert!(
        pg.login(&user, &password).await.is_err(),
        "a login whose drop failed can no longer sign in"
    );
    let mut su = pg.superuser().await;
    let owned: (String, bool) = sqlx::query_as(
        "SELECT t.tableowner::text, has_table_privilege('public', 'work.fixes', 'SELECT')
         FROM pg_tables t WHERE t.schemaname = 'work' AND t.tablename = 'fixes'",
    )
    .fetch_one(&mut su)
    .await
    .unwrap();
    assert_eq!(
        owned,
        (user.clone(), true),
        "the failed drop changed nothing it owned"
    );

    pg.superuser_exec(&format!("GRANT {} TO {}", pg.owner, pg.admin))
        .await;
    shop.app
        .clock
        .advance(elevate::db_targets::cleanup::MAX_BACKOFF);
    assert_eq!(shop.reap().await.cleaned, 1);
    assert!(!pg.role_exists(&user).await);
    let owner: String = sqlx::query_scalar(
        "SELECT tableowner::text FROM pg_tables WHERE schemaname = 'work' AND tablename = 'fixes'",
    )
    .fetch_one(&mut su)
    .await
    .unwrap();
    assert_eq!(owner, pg.owner);
}

#[tokio::test]
async fn refusals_are_clear_and_audited() {
    let pg = PgTarget::new().await;
    let shop = org(TestDb::sqlite().await, &pg, None).await;
    // Pending: not yet.
    let (s, pending) = shop
        .post(
            &shop.alice,
            "/api/v1/requests",
            json!({"profile": "orders-read", "duration": "1h", "justification": "look"}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED);
    let pending_id = pending["id"].as_str().unwrap();
    shop.refused(&shop.alice, pending_id, StatusCode::CONFLICT, "not active")
        .await;
    // Someone else's grant: an approver's token may not ask at all, another requester (who can
    // see it as an admin) is refused by the core.
    let id = shop.granted("orders-read").await;
    let (s, _) = shop.db_login(&shop.bob, &id).await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    let clock = shop.app.clock.clone();
    let carol = crate::helpers::seed_user(
        shop.app.store(),
        clock.as_ref(),
        &shop.tenant,
        "carol@acme.example",
        &[elevate::model::Role::Requester, elevate::model::Role::Admin],
        &["engineering"],
    )
    .await;
    let carol = crate::helpers::seed_token(shop.app.store(), clock.as_ref(), &carol, &[]).await;
    shop.refused(&carol, &id, StatusCode::FORBIDDEN, "only the requester")
        .await;
    // A profile without a database.
    let shell = shop.granted("shell").await;
    shop.refused(
        &shop.alice,
        &shell,
        StatusCode::CONFLICT,
        "grants no database",
    )
    .await;
    // A target nobody configured.
    let nowhere = shop.granted("nowhere").await;
    shop.refused(
        &shop.alice,
        &nowhere,
        StatusCode::CONFLICT,
        "not configured",
    )
    .await;
    // Not a request id at all.
    let (s, _) = shop.db_login(&shop.alice, "nope").await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    let refused = shop.count_actions("db.login_refused").await;
    assert_eq!(refused, 4, "{:?}", shop.actions().await);
    assert_eq!(shop.counts().await.open, 0, "a refusal records no login");
}

#[tokio::test]
async fn cleanup_waits_out_a_target_outage_and_shows_it() {
    let mut pg = PgTarget::new().await;
    let proxy = Proxy::start(5432).await;
    pg.port = proxy.port;
    let shop = org(TestDb::sqlite().await, &pg, None).await;
    let (_, login) = shop.login_for("orders-read").await;
    let (user, password) = user_and_password(&login);
    assert_eq!(login["port"], proxy.port);
    let _open = pg.login(&user, &password).await.unwrap();

    // The target goes away, the grant expires: the cleanup fails, is retried, and is visible.
    proxy.down();
    let issue_while_down = shop.granted("orders-read").await;
    let (s, r) = shop.db_login(&shop.alice, &issue_while_down).await;
    assert_eq!(s, StatusCode::SERVICE_UNAVAILABLE, "{r}");
    assert!(r["error"]["message"].as_str().unwrap().contains("orders"));
    shop.app.clock.advance(time::Duration::hours(2));
    for _ in 0..3 {
        let pass = shop.reap().await;
        assert_eq!(pass.cleaned, 0);
        shop.app.clock.advance(time::Duration::seconds(61));
    }
    let counts = shop.counts().await;
    assert_eq!(counts.stuck, 2, "{counts:?} {:?}", shop.actions().await);
    assert!(pg.role_exists(&user).await, "nothing could reach it");

    let ready = shop.ready().await;
    assert_eq!(ready["checks"]["db_cleanups"]["stuck"], 2, "{ready}");
    let metrics = shop
        .app
        .client
        .get(shop.app.url("/metrics"))
        .bearer_auth(
            crate::helpers::metrics_token(shop.app.store(), shop.app.clock.as_ref(), &shop.tenant)
                .await,
        )
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("elevate_db_cleanups_stuck{tenant=\"acme\"} 2"),
        "{metrics}"
    );
    let failures = shop.count_actions("db.cleanup_failed").await;
    assert_eq!(
        failures, 6,
        "every failed attempt (3 passes x 2 logins) is audited"
    );

    // Back: the next due attempt finishes both (the login that was never made included).
    proxy.up().await;
    shop.app
        .clock
        .advance(elevate::db_targets::cleanup::MAX_BACKOFF);
    let pass = shop.reap().await;
    assert_eq!(pass.cleaned, 2, "{pass:?}");
    assert!(pg.sessions_gone(&user, 5).await);
    assert!(!pg.role_exists(&user).await);
    assert_eq!(shop.counts().await, Default::default());
    let ready = shop.ready().await;
    assert_eq!(ready["checks"]["db_cleanups"]["stuck"], 0, "{ready}");
}

#[tokio::test]
async fn the_sweep_drops_only_this_tenants_unknown_roles() {
    let pg = PgTarget::new().await;
    let shop = org(TestDb::sqlite().await, &pg, None).await;
    let (_, login) = shop.login_for("orders-read").await;
    let (live, _) = user_and_password(&login);
    let prefix = elevate::db_targets::names::tenant_prefix(shop.tenant.tenant_id);
    let orphan = format!("{prefix}deadbeef_orphan");
    let foreign = format!(
        "{}deadbeef_foreign",
        elevate::db_targets::names::tenant_prefix(uuid::Uuid::now_v7())
    );
    let mut su = pg.superuser().await;
    for role in [&orphan, &foreign] {
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
            "CREATE ROLE {role} LOGIN PASSWORD 'x' IN ROLE {}",
            pg.read
        )))
        .execute(&mut su)
        .await
        .unwrap();
    }
    let complete =
        elevate::reaper::sweep_db_roles(shop.app.store(), &shop.app.master, shop.app.clock.now())
            .await
            .unwrap();
    assert!(complete);
    assert!(
        !pg.role_exists(&orphan).await,
        "unknown role with our prefix dropped"
    );
    assert!(pg.role_exists(&live).await, "a live login is kept");
    assert!(
        pg.role_exists(&foreign).await,
        "another tenant's role is not ours"
    );
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!("DROP ROLE {foreign}")))
        .execute(&mut su)
        .await
        .unwrap();
    let swept = shop
        .actions()
        .await
        .into_iter()
        .find(|(a, _)| a == "db.orphan_dropped")
        .unwrap();
    assert_eq!(swept.1["role"], orphan.as_str());
}

#[tokio::test]
async fn mariadb_logins_do_what_the_role_allows_and_die_with_their_sessions() {
    let pg = PgTarget::new().await;
    let my = MyTarget::new().await;
    let shop = org(TestDb::sqlite().await, &pg, Some(&my)).await;
    let (id, login) = shop.login_for("shop-read").await;
    let (user, password) = user_and_password(&login);
    assert_eq!(login["kind"], "mysql");
    assert_eq!(login["port"], 3306);
    assert!(my.user_exists(&user).await);

    // The minimal admin cannot give the login a default role (MariaDB wants root-like rights for
    // that): without its role the login may not even open the database; with it, it may read.
    assert!(my.login(&user, &password).await.is_err());
    let mut c = my.login_without_database(&user, &password).await.unwrap();
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "SET ROLE {}; USE {}",
        my.read, my.database
    )))
    .execute(&mut c)
    .await
    .unwrap();
    let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM orders")
        .fetch_one(&mut c)
        .await
        .unwrap();
    assert_eq!(n, 2);
    for forbidden in [
        "INSERT INTO orders VALUES (3, 'x')",
        "SELECT * FROM secrets",
    ] {
        let err = sqlx::raw_sql(sqlx::AssertSqlSafe(forbidden.to_owned()))
            .execute(&mut c)
            .await
            .expect_err(forbidden);
        assert!(err.to_string().contains("denied"), "{forbidden}: {err}");
    }
    assert!(
        my.login_without_database(&user, "wrong-password-0123456789abc")
            .await
            .is_err()
    );
    assert_eq!(my.sessions_of(&user).await, 1);

    shop.revoke(&id).await;
    let pass = shop.reap().await;
    assert_eq!(
        pass.cleaned,
        1,
        "{pass:?} {:?}",
        shop.actions().await.last()
    );
    assert!(!my.user_exists(&user).await);
    assert_eq!(my.sessions_of(&user).await, 0);
    assert!(sqlx::query("SELECT 1").execute(&mut c).await.is_err());
    assert!(my.login_without_database(&user, &password).await.is_err());
    // A second cleanup of the same login is a no-op (idempotent).
    let mut admin = elevate::db_targets::TargetSpec::open(
        &{
            let mut tx = shop
                .app
                .store()
                .tenant(shop.tenant.tenant_id)
                .await
                .unwrap();
            let t = tx.target_by_name("shop").await.unwrap().unwrap();
            tx.commit().await.unwrap();
            t
        },
        &shop.app.master,
    )
    .unwrap()
    .connect()
    .await
    .unwrap();
    let again = admin.end_login(&user, None).await.unwrap();
    assert!(!again.existed);
    admin.close().await;
}

#[tokio::test]
async fn the_request_page_shows_a_login_once_in_chromium() {
    let pg = PgTarget::new().await;
    let shop = org(TestDb::sqlite().await, &pg, None).await;
    let id = shop.granted("orders-read").await;
    let session = shop
        .app
        .session_for(&shop.user("alice@acme.example").await)
        .await;
    let report = crate::browser::run_script(
        "db_login.mjs",
        vec![shop.app.base.clone(), id.clone(), session],
    )
    .await;
    assert_eq!(report["error"], Value::Null, "{report}");
    assert_eq!(report["cspViolations"], json!([]), "{report}");
    assert_eq!(report["consoleErrors"], json!([]), "{report}");
    let user = report["user"].as_str().unwrap();
    let password = report["password"].as_str().unwrap();
    assert!(user.starts_with("elv_") && password.len() >= 24, "{report}");
    assert!(
        report["command"]
            .as_str()
            .unwrap()
            .contains(&format!("user={user}"))
            && !report["command"].as_str().unwrap().contains(password),
        "{report}"
    );
    // The login shown works; the request page lists it afterwards, without its password.
    let mut c = pg.login(user, password).await.unwrap();
    let n: i64 = sqlx::query_scalar("SELECT count(*) FROM orders")
        .fetch_one(&mut c)
        .await
        .unwrap();
    assert_eq!(n, 2);
    let listed = report["requestPage"].as_str().unwrap();
    assert!(
        listed.contains(user) && listed.contains("active"),
        "{listed}"
    );
    assert!(!listed.contains(password), "{listed}");
}

#[tokio::test]
async fn admins_see_targets_test_them_and_see_stuck_cleanups() {
    let mut pg = PgTarget::new().await;
    let proxy = Proxy::start(5432).await;
    pg.port = proxy.port;
    let shop = org(TestDb::sqlite().await, &pg, None).await;
    let clock = shop.app.clock.clone();
    let carol = crate::helpers::seed_user(
        shop.app.store(),
        clock.as_ref(),
        &shop.tenant,
        "carol@acme.example",
        &[elevate::model::Role::Admin],
        &[],
    )
    .await;
    let admin = shop.app.signed_in(&carol).await;
    let (id, _) = shop.login_for("orders-read").await;

    let page = admin
        .get(shop.app.url("/admin/targets"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(page.contains(&pg.admin_url()), "{page}");
    assert!(!page.contains(&pg.admin_password));
    let csrf = crate::helpers::csrf_in(&page);
    let test = |csrf: String| {
        let admin = admin.clone();
        let url = shop.app.url("/admin/targets/orders/test");
        async move {
            let r = admin
                .post(url)
                .form(&[("csrf", csrf)])
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), StatusCode::OK);
            r.text().await.unwrap()
        }
    };
    let ok = test(csrf.clone()).await;
    assert!(
        ok.contains("may create roles") && ok.contains("PostgreSQL"),
        "{ok}"
    );

    proxy.down();
    let failed = test(csrf.clone()).await;
    assert!(failed.contains("cannot connect"), "{failed}");
    let ready = shop.ready().await;
    assert_eq!(
        ready["checks"]["targets_unreachable"][0]["target"], "orders",
        "{ready}"
    );
    shop.revoke(&id).await;
    shop.reap().await;
    let status = admin
        .get(shop.app.url("/admin/status"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        status.contains(&id) && status.contains("Connection refused"),
        "{status}"
    );
    // Not for requesters.
    let alice = shop
        .app
        .signed_in(&shop.user("alice@acme.example").await)
        .await;
    let r = alice
        .get(shop.app.url("/admin/targets"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    proxy.up().await;
}

/// Two replicas' reapers at once on the shared Postgres store: every login is dropped and
/// recorded exactly once.
#[tokio::test]
async fn concurrent_reapers_drop_each_login_once() {
    let pg = PgTarget::new().await;
    let shop = org(TestDb::postgres().await, &pg, None).await;
    let id = shop.granted("orders-read").await;
    let mut users = Vec::new();
    for _ in 0..6 {
        let (s, login) = shop.db_login(&shop.alice, &id).await;
        assert_eq!(s, StatusCode::CREATED, "{login}");
        users.push(login["username"].as_str().unwrap().to_owned());
    }
    shop.revoke(&id).await;
    let now = shop.app.clock.now();
    let (store, master) = (shop.app.store(), &shop.app.master);
    let (a, b) = tokio::join!(
        elevate::reaper::clean_db_logins(store, master, now),
        elevate::reaper::clean_db_logins(store, master, now),
    );
    let (a, b) = (a.unwrap(), b.unwrap());
    assert_eq!(a.cleaned + b.cleaned, 6, "{a:?} {b:?}");
    assert_eq!(a.failed + b.failed, 0);
    assert_eq!(pg.existing_roles(&users).await, 0);
    let dropped = shop.count_actions("db.login_dropped").await;
    assert_eq!(dropped, 6);
}
