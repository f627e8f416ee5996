//! Test harness: fresh stores on both backends, an in-process server on a free port over real TLS,
//! and shortcuts for bootstrapping tenants, users and tokens through the real admin core.

use std::path::PathBuf;
use std::sync::Arc;

use elevate::admin;
use elevate::audit::Ctx;
use elevate::audit::{Actor, Origin};
use elevate::clock::{Clock, ManualClock};
use elevate::config::Config;
use elevate::crypto::MasterKey;
use elevate::model::{Role, Scope, Tenant, User};
use elevate::store::{Backend, Store};
use elevate::web::{self, AppState};
use sqlx::Connection;

pub const APP_LOGIN_ROLE: &str = "elevate_test_app";
pub const OWNER_LOGIN_ROLE: &str = "elevate_test_owner";

pub fn pg_admin_url() -> String {
    std::env::var("ELEVATE_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into())
}

/// The admin URL with another database and, optionally, another user.
pub fn pg_url(database: &str, user: Option<&str>) -> String {
    let base = pg_admin_url();
    let (scheme, rest) = base.split_once("://").expect("postgres URL has a scheme");
    let (userinfo, hostpath) = rest
        .rsplit_once('@')
        .map(|(u, h)| (Some(u), h))
        .unwrap_or((None, rest));
    let host = hostpath.split('/').next().unwrap_or(hostpath);
    let userinfo = match (user, userinfo) {
        (Some(u), _) => format!("{u}@"),
        (None, Some(u)) => format!("{u}@"),
        (None, None) => String::new(),
    };
    format!("{scheme}://{userinfo}{host}/{database}")
}

pub fn temp_dir(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "elevate-it-{tag}-{}",
        uuid::Uuid::new_v4().simple()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A fresh, migrated store on one backend. On Postgres, `store` connects as a login role that
/// is only a member of `elevate_app`, as production does; `owner_url` is the superuser.
pub struct TestDb {
    pub store: Store,
    pub backend: Backend,
    pub url: String,
    pub owner_url: String,
    pub dir: PathBuf,
}

impl TestDb {
    pub async fn sqlite() -> Self {
        let dir = temp_dir("sqlite");
        let url = format!("sqlite:{}", dir.join("elevate.db").display());
        let store = Store::connect(&url).await.unwrap();
        store.migrate().await.unwrap();
        TestDb {
            store,
            backend: Backend::Sqlite,
            owner_url: url.clone(),
            url,
            dir,
        }
    }

    pub async fn postgres() -> Self {
        let name = format!("elevate_t_{}", uuid::Uuid::new_v4().simple());
        let mut admin = sqlx::PgConnection::connect(&pg_admin_url()).await.unwrap_or_else(|e| {
            panic!(
                "PostgreSQL is needed at {} ({e}). Start it (scripts/test.sh does) or set ELEVATE_TEST_POSTGRES_URL.",
                pg_admin_url()
            )
        });
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .execute(&mut admin)
            .await
            .unwrap();
        admin.close().await.unwrap();
        let owner_url = pg_url(&name, None);
        let owner = Store::connect(&owner_url).await.unwrap();
        owner.migrate().await.unwrap();
        owner.close().await;
        ensure_login_role(&owner_url, APP_LOGIN_ROLE, "elevate_app").await;
        let url = pg_url(&name, Some(APP_LOGIN_ROLE));
        let store = Store::connect(&url).await.unwrap();
        store.check_role_safety().await.unwrap();
        store.check_migrations().await.unwrap();
        TestDb {
            store,
            backend: Backend::Postgres,
            url,
            owner_url,
            dir: temp_dir("pg"),
        }
    }

    /// Runs raw SQL as the database owner / superuser (SQLite: on the file itself).
    pub async fn owner_exec(&self, sql: &str) {
        match self.backend {
            Backend::Sqlite => {
                let mut c = sqlx::SqliteConnection::connect(&self.owner_url)
                    .await
                    .unwrap();
                sqlx::raw_sql(sqlx::AssertSqlSafe(sql.to_owned()))
                    .execute(&mut c)
                    .await
                    .unwrap();
            }
            Backend::Postgres => {
                let mut c = sqlx::PgConnection::connect(&self.owner_url).await.unwrap();
                sqlx::raw_sql(sqlx::AssertSqlSafe(sql.to_owned()))
                    .execute(&mut c)
                    .await
                    .unwrap();
            }
        }
    }
}

/// Creates a cluster-wide login role in `member_of` once; tolerates a parallel test doing it too.
pub async fn ensure_login_role(owner_url: &str, role: &str, member_of: &str) {
    let mut c = sqlx::PgConnection::connect(owner_url).await.unwrap();
    let sql = format!(
        "DO $$ BEGIN
            IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '{role}') THEN
                BEGIN CREATE ROLE {role} LOGIN IN ROLE {member_of};
                EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL; END;
            END IF;
        END $$"
    );
    for _ in 0..5 {
        match sqlx::raw_sql(sqlx::AssertSqlSafe(sql.clone()))
            .execute(&mut c)
            .await
        {
            Ok(_) => return,
            // Concurrent catalog updates ("tuple concurrently updated"): try again.
            Err(_) => tokio::time::sleep(std::time::Duration::from_millis(50)).await,
        }
    }
    panic!("could not create login role {role}");
}

pub fn ctx(clock: &dyn Clock) -> Ctx {
    Ctx {
        actor: Actor::System,
        origin: Origin::default(),
        now: clock.now(),
    }
}

/// A tenant with one user per given (email, roles, groups).
pub async fn seed_tenant(
    store: &Store,
    master: &MasterKey,
    clock: &dyn Clock,
    slug: &str,
) -> Tenant {
    admin::create_tenant(store, master, &ctx(clock), slug, &format!("{slug} org"))
        .await
        .unwrap()
}

pub async fn seed_user(
    store: &Store,
    clock: &dyn Clock,
    tenant: &Tenant,
    email: &str,
    roles: &[Role],
    groups: &[&str],
) -> User {
    let groups: Vec<String> = groups.iter().map(|g| g.to_string()).collect();
    admin::create_user(store, &ctx(clock), tenant, email, None, roles, &groups)
        .await
        .unwrap()
}

pub async fn seed_token(store: &Store, clock: &dyn Clock, user: &User, scopes: &[Scope]) -> String {
    admin::create_token(
        store,
        &ctx(clock),
        user,
        "test",
        scopes,
        admin::DEFAULT_TOKEN_TTL,
    )
    .await
    .unwrap()
    .secret
    .expose()
    .to_owned()
}

/// A token that reads `tenant`'s details on `/readyz` and `/metrics` (scope `metrics`, held by a
/// fresh admin).
pub async fn metrics_token(store: &Store, clock: &dyn Clock, tenant: &Tenant) -> String {
    let ops = seed_user(
        store,
        clock,
        tenant,
        &format!(
            "metrics-{}@{}.example",
            uuid::Uuid::new_v4().simple(),
            tenant.slug
        ),
        &[Role::Admin],
        &[],
    )
    .await;
    seed_token(store, clock, &ops, &[Scope::Metrics]).await
}

/// elevate served in-process over TLS on a free port, with a clock the test moves.
pub struct TestApp {
    pub db: TestDb,
    pub base: String,
    pub clock: Arc<ManualClock>,
    pub master: Arc<MasterKey>,
    pub client: reqwest::Client,
    /// What the (not running) reaper reports on /readyz; tests set it.
    pub reaper: elevate::reaper::SharedStatus,
    /// What the (not running) audit checkpointer reports; tests pass it to `run_once`.
    pub audit: elevate::audit::checkpoint::SharedStatus,
    /// The server's counters (`/metrics`): tests pass it to `reaper::run_once_observed`.
    pub telemetry: std::sync::Arc<elevate::telemetry::Telemetry>,
    _shutdown: tokio::sync::oneshot::Sender<()>,
}

impl TestApp {
    pub async fn spawn(db: TestDb) -> Self {
        Self::spawn_with(db, |_| {}).await
    }

    /// Spawns with a configuration adjusted by `configure` (SMTP, demo mode, timeouts).
    pub async fn spawn_with(db: TestDb, configure: impl FnOnce(&mut Config)) -> Self {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let clock = Arc::new(ManualClock::starting_now());
        // On disk beside the database, so operator commands (`elevate admin ...`) can open it too.
        let master = Arc::new(MasterKey::generate_file(&db.dir.join("elevate.key")).unwrap());
        let (cert, key, _) = web::tls::ensure_dev_certificate(&db.dir, clock.now()).unwrap();
        let tls = axum_server::tls_rustls::RustlsConfig::from_config(
            web::tls::server_config(&cert, &key).unwrap(),
        );
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let mut config = Config {
            public_url: format!("https://localhost:{port}"),
            ..Config::default()
        };
        configure(&mut config);
        let state = AppState::new(db.store.clone(), clock.clone(), master.clone(), config).unwrap();
        let reaper = state.reaper.clone();
        let audit = state.audit.clone();
        let telemetry = state.telemetry.clone();
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let app = web::router(state);
        tokio::spawn(web::serve(listener, app, Some(tls), async {
            let _ = rx.await;
        }));
        let client = reqwest::Client::builder()
            .add_root_certificate(
                reqwest::Certificate::from_pem(&std::fs::read(&cert).unwrap()).unwrap(),
            )
            .build()
            .unwrap();
        TestApp {
            db,
            base: format!("https://localhost:{port}"),
            clock,
            master,
            client,
            reaper,
            audit,
            telemetry,
            _shutdown: tx,
        }
    }

    /// A new "browser": keeps cookies, trusts the dev certificate, does not follow redirects.
    pub fn browser(&self) -> reqwest::Client {
        let cert = std::fs::read(self.db.dir.join(web::tls::DEV_CERT_FILE)).unwrap();
        reqwest::Client::builder()
            .add_root_certificate(reqwest::Certificate::from_pem(&cert).unwrap())
            .cookie_store(true)
            .user_agent("elevate-test-browser")
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap()
    }

    /// A browser already signed in as `user` (session made directly in the store).
    pub async fn signed_in(&self, user: &User) -> reqwest::Client {
        let secret = self.session_for(user).await;
        let jar = std::sync::Arc::new(reqwest::cookie::Jar::default());
        let url: reqwest::Url = self.base.parse().unwrap();
        jar.add_cookie_str(
            &format!("__Host-elevate={secret}; Path=/; Secure; HttpOnly"),
            &url,
        );
        let cert = std::fs::read(self.db.dir.join(web::tls::DEV_CERT_FILE)).unwrap();
        reqwest::Client::builder()
            .add_root_certificate(reqwest::Certificate::from_pem(&cert).unwrap())
            .cookie_provider(jar)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap()
    }

    /// A session cookie value for `user` (session made directly in the store, sign-in audited).
    pub async fn session_for(&self, user: &User) -> String {
        let mut tx = self.db.store.tenant(user.tenant_id).await.unwrap();
        let (secret, _) = elevate::auth::session::start_session(
            &mut tx,
            user,
            time::Duration::hours(12),
            &Origin::default(),
            self.clock.now(),
        )
        .await
        .unwrap();
        tx.append_audit(
            &ctx(self.clock.as_ref()).event("signin.succeeded", &user.email),
            self.clock.now(),
        )
        .await
        .unwrap();
        tx.commit().await.unwrap();
        secret.expose().to_owned()
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub fn store(&self) -> &Store {
        &self.db.store
    }

    /// GET with a bearer token.
    pub async fn get_as(&self, token: &str, path: &str) -> reqwest::Response {
        self.client
            .get(self.url(path))
            .bearer_auth(token)
            .send()
            .await
            .unwrap()
    }
}

impl TestApp {
    /// An unauthenticated GET: the status and the body as text.
    pub async fn get_text(&self, path: &str) -> (reqwest::StatusCode, String) {
        let res = self.client.get(self.url(path)).send().await.unwrap();
        (res.status(), res.text().await.unwrap())
    }

    /// Registers a database target for `tenant` through the admin core (password encrypted).
    pub async fn add_target(
        &self,
        tenant: &Tenant,
        name: &str,
        kind: elevate::model::TargetKind,
        url: &str,
        password: &str,
    ) {
        let target = elevate::db_targets::targets::NewTarget {
            name,
            kind,
            url,
            password,
        };
        elevate::db_targets::targets::set_target(
            self.store(),
            &self.master,
            &ctx(self.clock.as_ref()),
            tenant,
            target,
        )
        .await
        .unwrap();
    }

    /// One checkpoint pass over `tenant` at `now`, signing every `every_events` events: how many
    /// checkpoints it signed, or why it refused.
    pub async fn checkpoint(
        &self,
        tenant: &Tenant,
        every_events: i64,
        now: time::OffsetDateTime,
    ) -> Result<usize, elevate::error::AppError> {
        let schedule = crate::fixtures::every(every_events);
        elevate::audit::checkpoint::checkpoint_tenant(
            self.store(),
            &self.master,
            tenant.tenant_id,
            schedule,
            now,
        )
        .await
    }

    /// One checkpointer pass over every tenant at `now`, as the server's task runs it.
    pub async fn checkpoint_all(&self, every_events: i64, now: time::OffsetDateTime) {
        let schedule = crate::fixtures::every(every_events);
        elevate::audit::checkpoint::run_once(
            self.store(),
            &self.master,
            schedule,
            now,
            &self.audit,
        )
        .await
        .unwrap();
    }
}

impl TestApp {
    /// Every audit event of `tenant` so far: (action, details), oldest first.
    pub async fn actions(&self, tenant: &Tenant) -> Vec<(String, serde_json::Value)> {
        let mut tx = self.store().tenant(tenant.tenant_id).await.unwrap();
        let events = tx.audit_events(0, 10_000).await.unwrap();
        tx.commit().await.unwrap();
        events
            .into_iter()
            .map(|e| (e.action, e.details.0))
            .collect()
    }

    /// The API as the holder of `token`.
    pub fn api(&self, token: &str) -> Api {
        Api {
            client: self.client.clone(),
            base: self.base.clone(),
            token: token.to_owned(),
        }
    }

    /// The API as `user`, through a new token with every scope their roles allow.
    pub async fn as_user(&self, user: &User) -> Api {
        let token = seed_token(self.store(), self.clock.as_ref(), user, &[]).await;
        self.api(&token)
    }
}

/// Tenant acme under the workflow tests' policy (`prod-shell`, ...), with alice (requester in
/// engineering) and bob (approver in sre), each with an API client holding all their scopes.
pub struct Acme {
    pub tenant: Tenant,
    pub alice: User,
    pub bob: User,
    pub alice_api: Api,
    pub bob_api: Api,
}

pub async fn acme(app: &TestApp) -> Acme {
    let (store, clock) = (app.store(), app.clock.as_ref());
    let tenant = seed_tenant(store, &app.master, clock, "acme").await;
    elevate::broker::policy::apply(store, &ctx(clock), &tenant, crate::fixtures::ACME_POLICY)
        .await
        .unwrap();
    let alice = seed_user(
        store,
        clock,
        &tenant,
        "alice@acme.example",
        &[Role::Requester],
        &["engineering"],
    )
    .await;
    let bob = seed_user(
        store,
        clock,
        &tenant,
        "bob@acme.example",
        &[Role::Approver],
        &["sre"],
    )
    .await;
    let alice_api = app.as_user(&alice).await;
    let bob_api = app.as_user(&bob).await;
    Acme {
        tenant,
        alice,
        bob,
        alice_api,
        bob_api,
    }
}

/// A typed API client: one bearer token, and the product's words for what it does. Each call
/// answers the status and the JSON body (`null` when there is none), so tests assert both.
#[derive(Clone)]
pub struct Api {
    client: reqwest::Client,
    base: String,
    pub token: String,
}

impl Api {
    pub async fn post(
        &self,
        path: &str,
        body: serde_json::Value,
    ) -> (reqwest::StatusCode, serde_json::Value) {
        let res = self
            .client
            .post(format!("{}{path}", self.base))
            .bearer_auth(&self.token)
            .json(&body)
            .send()
            .await
            .unwrap();
        let status = res.status();
        (status, res.json().await.unwrap_or(serde_json::Value::Null))
    }

    pub async fn get(&self, path: &str) -> (reqwest::StatusCode, serde_json::Value) {
        let res = self
            .client
            .get(format!("{}{path}", self.base))
            .bearer_auth(&self.token)
            .send()
            .await
            .unwrap();
        let status = res.status();
        (status, res.json().await.unwrap_or(serde_json::Value::Null))
    }

    /// Files a request with a justification and a ticket; its id (the filing must succeed).
    pub async fn request(&self, profile: &str, duration: &str) -> String {
        let (s, r) = self
            .post(
                "/api/v1/requests",
                serde_json::json!({"profile": profile, "duration": duration,
                    "justification": "fix the deploy", "ticket": "INC-7"}),
            )
            .await;
        assert_eq!(s, reqwest::StatusCode::CREATED, "{r}");
        r["id"].as_str().unwrap().to_owned()
    }

    pub async fn show(&self, id: &str) -> (reqwest::StatusCode, serde_json::Value) {
        self.get(&format!("/api/v1/requests/{id}")).await
    }

    pub async fn approve(&self, id: &str) -> (reqwest::StatusCode, serde_json::Value) {
        self.post(
            &format!("/api/v1/requests/{id}/approve"),
            serde_json::json!({}),
        )
        .await
    }

    pub async fn deny(&self, id: &str, comment: &str) -> (reqwest::StatusCode, serde_json::Value) {
        self.post(
            &format!("/api/v1/requests/{id}/deny"),
            serde_json::json!({ "comment": comment }),
        )
        .await
    }

    pub async fn revoke(&self, id: &str, reason: &str) -> (reqwest::StatusCode, serde_json::Value) {
        self.post(
            &format!("/api/v1/requests/{id}/revoke"),
            serde_json::json!({ "reason": reason }),
        )
        .await
    }

    pub async fn ssh_certificate(
        &self,
        id: &str,
        public_key: &str,
    ) -> (reqwest::StatusCode, serde_json::Value) {
        self.post(
            &format!("/api/v1/requests/{id}/ssh-certificate"),
            serde_json::json!({ "public_key": public_key }),
        )
        .await
    }
}

/// Runs the same async test body against SQLite and Postgres.
#[macro_export]
macro_rules! on_both_backends {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(#[tokio::test] async fn $name() { super::$name($crate::helpers::TestDb::sqlite().await).await })*
        }
        mod postgres {
            $(#[tokio::test] async fn $name() { super::$name($crate::helpers::TestDb::postgres().await).await })*
        }
    };
}

/// [`on_both_backends`] on two worker threads, for tests that block on `ssh`, `sshd` or
/// `elevate host ...` while the in-process server answers.
#[macro_export]
macro_rules! on_both_backends_threaded {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)] async fn $name() { super::$name($crate::helpers::TestDb::sqlite().await).await })*
        }
        mod postgres {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)] async fn $name() { super::$name($crate::helpers::TestDb::postgres().await).await })*
        }
    };
}

/// The CSRF token of the first form in a page.
pub fn csrf_in(html: &str) -> String {
    let start =
        html.find(r#"name="csrf" value=""#).expect("a CSRF field") + r#"name="csrf" value=""#.len();
    html[start..].split('"').next().unwrap().to_owned()
}

/// Runs a command with `input` on its stdin (secrets go there, never into arguments).
pub fn run_with_stdin(mut cmd: std::process::Command, input: &str) -> std::process::Output {
    use std::io::Write;
    use std::process::Stdio;
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

/// Asserts that `haystack` (text or bytes, e.g. a process's stderr) contains `needle`.
#[track_caller]
pub fn assert_contains(haystack: impl AsRef<[u8]>, needle: &str) {
    let text = String::from_utf8_lossy(haystack.as_ref());
    assert!(text.contains(needle), "expected {needle:?} in:\n{text}");
}

/// Asserts that an API answer is an error whose message contains `needle`.
#[track_caller]
pub fn assert_error_says(answer: &serde_json::Value, needle: &str) {
    let message = answer["error"]["message"].as_str().unwrap_or_default();
    assert!(message.contains(needle), "expected {needle:?} in {answer}");
}
