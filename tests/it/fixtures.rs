//! Fixtures shared by several test modules: the SSH/database shop (alice asks, bob approves), a
//! webhook receiver, audit events in bulk. Test modules take them from here, never from each
//! other.

use elevate::audit::checkpoint::Schedule;
use elevate::audit::{Actor, NewEvent};
use elevate::clock::Clock;
use elevate::model::{Role, Tenant};
use reqwest::StatusCode;
use serde_json::{Value, json};
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::helpers::{TestApp, TestDb, ctx, seed_tenant, seed_token, seed_user, temp_dir};
use crate::sshd::user_key;

/// One delivery as the receiver saw it.
pub(crate) type Delivery = (axum::http::HeaderMap, Vec<u8>);

/// A real HTTP receiver: records each delivery, answers with the status the test sets.
/// It answers after `delay_ms`, so deliveries of concurrent senders overlap.
#[derive(Clone, Default)]
pub(crate) struct Receiver {
    pub(crate) got: std::sync::Arc<std::sync::Mutex<Vec<Delivery>>>,
    pub(crate) status: std::sync::Arc<std::sync::atomic::AtomicU16>,
    pub(crate) delay_ms: std::sync::Arc<std::sync::atomic::AtomicU64>,
}

pub(crate) async fn receiver() -> (Receiver, String) {
    let r = Receiver::default();
    r.status.store(200, std::sync::atomic::Ordering::SeqCst);
    let state = r.clone();
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(
            |axum::extract::State(s): axum::extract::State<Receiver>,
             headers: axum::http::HeaderMap,
             body: axum::body::Bytes| async move {
                let delay = s.delay_ms.load(std::sync::atomic::Ordering::SeqCst);
                tokio::time::sleep(std::time::Duration::from_millis(delay)).await;
                s.got.lock().unwrap().push((headers, body.to_vec()));
                axum::http::StatusCode::from_u16(s.status.load(std::sync::atomic::Ordering::SeqCst))
                    .unwrap()
            },
        ),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app.with_state(state)).await });
    (r, url)
}

/// Appends `n` plain events to a tenant's chain, a thousand per transaction.
pub(crate) async fn append_events(app: &TestApp, tenant: &Tenant, n: usize) {
    let now = app.clock.now();
    let mut left = n;
    while left > 0 {
        let k = left.min(1000);
        let mut tx = app.store().tenant(tenant.tenant_id).await.unwrap();
        for i in 0..k {
            tx.append_audit(
                &NewEvent::new(Actor::System, "test.event", format!("{}-{i}", tenant.slug))
                    .details(json!({ "i": i, "note": "plain \"quoted\" text ✓" })),
                now,
            )
            .await
            .unwrap();
        }
        tx.commit().await.unwrap();
        left -= k;
    }
}

pub(crate) fn every(n: i64) -> Schedule {
    Schedule {
        every_events: n,
        every: time::Duration::seconds(60),
    }
}

pub(crate) async fn auditor(app: &TestApp, tenant: &Tenant) -> String {
    let u = seed_user(
        app.store(),
        app.clock.as_ref(),
        tenant,
        &format!("audrey@{}.example", tenant.slug),
        &[Role::Auditor],
        &[],
    )
    .await;
    seed_token(app.store(), app.clock.as_ref(), &u, &[]).await
}

/// Tenant acme's profiles in the workflow tests (prod-shell, ...): the policy of `helpers::acme`.
pub(crate) const ACME_POLICY: &str = r#"
[[profile]]
name = "prod-shell"
default_duration = "1h"
max_duration = "4h"
requesters = ["engineering"]
approvers = ["sre"]
ticket_pattern = "^(INC|CHG)-[0-9]+$"
break_glass = true
auto_approve_groups = ["oncall"]
[profile.ssh]
principals = ["deploy"]

[[profile]]
name = "prod-db-admin"
max_duration = "2h"
requesters = ["engineering"]
approvers = ["sre"]
approvals_required = 2
[profile.database]
target = "orders"
roles = ["orders_admin"]
"#;

/// The SSH and database profiles of the shop (prod-shell, web-shell, db-only, ...).
pub(crate) const SHOP_POLICY: &str = r#"
[[profile]]
name = "prod-shell"
default_duration = "1h"
max_duration = "4h"
requesters = ["engineering"]
approvers = ["sre"]
ticket_pattern = "^(INC|CHG)-[0-9]+$"
[profile.ssh]
principals = ["deploy"]
extensions = ["permit-pty", "permit-port-forwarding"]

[[profile]]
name = "web-shell"
requesters = ["engineering"]
approvers = ["sre"]
[profile.ssh]
principals = ["web"]
force_command = "/usr/bin/id -un"
source_address = ["127.0.0.1/32", "::1/128"]
cert_ttl = "10m"

[[profile]]
name = "db-only"
requesters = ["engineering"]
approvers = ["sre"]
[profile.database]
target = "orders"
roles = ["orders_readonly"]
"#;

/// Profile `orders-read`: engineering asks, sre approves, `role` on the Postgres target `orders`.
pub(crate) fn orders_read_profile(role: &str) -> String {
    format!(
        r#"
[[profile]]
name = "orders-read"
requesters = ["engineering"]
approvers = ["sre"]
[profile.database]
target = "orders"
roles = ["{role}"]
"#
    )
}

pub(crate) struct Shop {
    pub app: TestApp,
    pub tenant: Tenant,
    pub alice: String,
    pub bob: String,
    pub dir: PathBuf,
}

pub(crate) async fn shop_in(app: TestApp, slug: &str) -> Shop {
    shop_with(app, slug, SHOP_POLICY).await
}

/// Alice (requester, engineering) and Bob (approver, sre) in tenant `slug` under `policy`.
pub(crate) async fn shop_with(app: TestApp, slug: &str, policy: &str) -> Shop {
    let (store, clock) = (app.store().clone(), app.clock.clone());
    let tenant = seed_tenant(&store, &app.master, clock.as_ref(), slug).await;
    elevate::broker::policy::apply(&store, &ctx(clock.as_ref()), &tenant, policy)
        .await
        .unwrap();
    let alice = seed_user(
        &store,
        clock.as_ref(),
        &tenant,
        &format!("alice@{slug}.example"),
        &[Role::Requester],
        &["engineering"],
    )
    .await;
    let bob = seed_user(
        &store,
        clock.as_ref(),
        &tenant,
        &format!("bob@{slug}.example"),
        &[Role::Approver],
        &["sre"],
    )
    .await;
    Shop {
        alice: seed_token(&store, clock.as_ref(), &alice, &[]).await,
        bob: seed_token(&store, clock.as_ref(), &bob, &[]).await,
        app,
        tenant,
        dir: temp_dir("ssh-keys"),
    }
}

pub(crate) async fn shop(db: TestDb) -> Shop {
    shop_in(TestApp::spawn(db).await, "acme").await
}

impl Shop {
    pub async fn post(&self, token: &str, path: &str, body: Value) -> (StatusCode, Value) {
        self.app.api(token).post(path, body).await
    }

    /// Registers `pg` as the tenant's target `orders` (see `orders_read_profile`).
    pub async fn add_orders_target(&self, pg: &crate::db_fixtures::PgTarget) {
        let kind = elevate::model::TargetKind::Postgres;
        let (url, password) = (pg.admin_url(), &pg.admin_password);
        self.app
            .add_target(&self.tenant, "orders", kind, &url, password)
            .await;
    }

    /// Bob approves request `id`.
    pub async fn approve(&self, id: &str) -> (StatusCode, Value) {
        self.app.api(&self.bob).approve(id).await
    }

    /// Alice's request for `profile`, approved by Bob: its id.
    pub async fn granted(&self, profile: &str) -> String {
        let (s, r) = self
            .post(&self.alice, "/api/v1/requests", json!({"profile": profile, "duration": "1h", "justification": "fix the deploy", "ticket": "INC-7"}))
            .await;
        assert_eq!(s, StatusCode::CREATED, "{r}");
        let id = r["id"].as_str().unwrap().to_owned();
        let (s, r) = self.approve(&id).await;
        assert_eq!(s, StatusCode::OK, "{r}");
        assert_eq!(r["state"], "active", "{r}");
        id
    }

    pub async fn issue(&self, token: &str, id: &str, public_key: &str) -> (StatusCode, Value) {
        self.post(
            token,
            &format!("/api/v1/requests/{id}/ssh-certificate"),
            json!({ "public_key": public_key }),
        )
        .await
    }

    /// Alice asks for a certificate for a new key.
    pub async fn issue_new_key(&self, id: &str) -> (StatusCode, Value) {
        let (_, public) = user_key(&self.dir, "ed25519");
        self.issue(&self.alice, id, &std::fs::read_to_string(public).unwrap())
            .await
    }

    /// A new key certified for request `id`: (private key path, certificate path, answer).
    pub async fn certified(&self, id: &str) -> (PathBuf, PathBuf, Value) {
        let (key, public) = user_key(&self.dir, "ed25519");
        let (s, issued) = self
            .issue(&self.alice, id, &std::fs::read_to_string(&public).unwrap())
            .await;
        assert_eq!(s, StatusCode::CREATED, "{issued}");
        let cert = PathBuf::from(format!("{}-cert.pub", key.display()));
        std::fs::write(&cert, issued["certificate"].as_str().unwrap()).unwrap();
        (key, cert, issued)
    }

    pub async fn user(&self, email: &str) -> elevate::model::User {
        let mut tx = self
            .app
            .store()
            .tenant(self.tenant.tenant_id)
            .await
            .unwrap();
        let u = tx.user_by_email(email).await.unwrap().unwrap();
        tx.commit().await.unwrap();
        u
    }

    pub async fn revoke(&self, id: &str) {
        let (s, r) = self
            .post(
                &self.bob,
                &format!("/api/v1/requests/{id}/revoke"),
                json!({"reason": "done"}),
            )
            .await;
        assert_eq!(s, StatusCode::OK, "{r}");
        assert_eq!(r["state"], "revoked");
    }

    pub async fn actions(&self) -> Vec<(String, Value)> {
        self.app.actions(&self.tenant).await
    }
}

pub(crate) fn sync(shop: &Shop, sshd: &crate::sshd::Sshd) {
    let out = crate::sshd::host_sync(&shop.app, &shop.tenant.slug, &sshd.etc);
    assert!(
        out.status.success(),
        "host sync: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `ssh-keygen -Q`: does this KRL revoke this certificate?
pub(crate) fn krl_revokes(krl: &std::path::Path, cert: &std::path::Path) -> bool {
    let out = std::process::Command::new("ssh-keygen")
        .arg("-Q")
        .arg("-f")
        .arg(krl)
        .arg(cert)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    match out.status.code() {
        Some(0) if text.contains(": ok") => false,
        Some(1) if text.contains("REVOKED") => true,
        other => panic!(
            "ssh-keygen -Q: {other:?} {text} {}",
            String::from_utf8_lossy(&out.stderr)
        ),
    }
}

/// The binary with a clean environment (no ELEVATE_* from the developer's shell).
pub(crate) fn elevate(dir: &std::path::Path) -> std::process::Command {
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_elevate"));
    cmd.current_dir(dir)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("ELEVATE_LOG", "info");
    cmd
}

/// A running server and the URL it printed.
pub(crate) struct Server {
    pub(crate) child: Child,
    pub(crate) url: String,
    pub(crate) stdout: Vec<String>,
    /// Everything the server wrote to stderr so far. Drained from the start, so a chatty log
    /// (`ELEVATE_LOG=debug`) cannot fill the pipe and stall the server before it is ready.
    pub(crate) stderr: std::sync::Arc<std::sync::Mutex<String>>,
    drain: Option<std::thread::JoinHandle<()>>,
}

impl Server {
    /// Starts the server and reads stdout up to the listen line (and, for `--demo`, the token block).
    pub(crate) fn start(cmd: &mut Command) -> Server {
        let demo = cmd.get_args().any(|a| a == "--demo");
        let mut child = cmd
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let mut stderr = child.stderr.take().unwrap();
        let log = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
        let sink = log.clone();
        let drain = std::thread::spawn(move || {
            let mut buf = [0u8; 8192];
            while let Ok(n) = std::io::Read::read(&mut stderr, &mut buf) {
                if n == 0 {
                    break;
                }
                sink.lock()
                    .unwrap()
                    .push_str(&String::from_utf8_lossy(&buf[..n]));
            }
        });
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut lines: Vec<String> = Vec::new();
        let mut url = None;
        while Instant::now() < deadline {
            match rx.recv_timeout(Duration::from_millis(200)) {
                Ok(line) => {
                    if let Some(rest) = line.strip_prefix("elevate listening on ") {
                        url = rest.split_whitespace().next().map(str::to_owned);
                    }
                    let done = url.is_some() && (!demo || line.contains("/dev/outbox"));
                    lines.push(line);
                    if done {
                        break;
                    }
                }
                Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
                    if let Ok(Some(status)) = child.try_wait() {
                        std::thread::sleep(Duration::from_millis(100));
                        panic!("server exited with {status}: {}", log.lock().unwrap());
                    }
                }
                Err(_) => break,
            }
        }
        let url = url.unwrap_or_else(|| panic!("server did not print its address: {lines:?}"));
        assert!(
            !demo || lines.iter().any(|l| l.contains("/dev/outbox")),
            "the demo did not say how to sign in: {lines:?}"
        );
        Server {
            child,
            url,
            stdout: lines,
            stderr: log,
            drain: Some(drain),
        }
    }

    /// [`Self::terminate`], and everything the server wrote to stderr.
    pub(crate) fn terminate_with_logs(mut self) -> (std::process::ExitStatus, String) {
        let log = self.stderr.clone();
        let drain = self.drain.take();
        let status = self.terminate();
        if let Some(d) = drain {
            let _ = d.join();
        }
        let text = log.lock().unwrap().clone();
        (status, text)
    }

    pub(crate) fn terminate(mut self) -> std::process::ExitStatus {
        Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(Instant::now() < deadline, "server did not stop on SIGTERM");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub(crate) fn token_of(&self, email: &str) -> String {
        let line = self
            .stdout
            .iter()
            .find(|l| l.trim_start().starts_with(email))
            .unwrap();
        line.split_whitespace().last().unwrap().to_owned()
    }
}

/// aiosmtpd on a free port, writing each message it receives as JSON.
pub(crate) struct SmtpSink {
    child: Child,
    dir: PathBuf,
    port: u16,
}

impl SmtpSink {
    pub(crate) fn start() -> Self {
        // The probe listener must be closed before the server binds the port.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        Self::start_on(port)
    }

    /// On a given port (a test that first wants the server down).
    pub(crate) fn start_on(port: u16) -> Self {
        let dir = temp_dir("smtp");
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/support/smtp_sink.py");
        let mut child = Command::new("python3")
            .arg(script)
            .arg(port.to_string())
            .arg(&dir)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("python3 is needed for the SMTP test server");
        let mut line = String::new();
        std::io::BufRead::read_line(
            &mut std::io::BufReader::new(child.stdout.take().unwrap()),
            &mut line,
        )
        .unwrap();
        assert_eq!(
            line.trim(),
            "ready",
            "the SMTP test server did not start (pip install aiosmtpd; scripts/test.sh does)"
        );
        SmtpSink { child, dir, port }
    }

    pub(crate) fn url(&self) -> String {
        format!("smtp://127.0.0.1:{}", self.port)
    }

    pub(crate) fn mails(&self) -> Vec<Value> {
        let mut files: Vec<_> = std::fs::read_dir(&self.dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|e| e == "json"))
            .collect();
        files.sort();
        files
            .iter()
            .map(|p| serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap())
            .collect()
    }

    /// Waits for the `n`th message overall and returns it.
    pub(crate) async fn nth(&self, n: usize) -> Value {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let mails = self.mails();
            if mails.len() >= n {
                return mails[n - 1].clone();
            }
            assert!(Instant::now() < deadline, "no mail #{n} arrived");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for SmtpSink {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The CLI as Alice, logged in to the test server, with its own config directory.
pub(crate) struct Engineer {
    env: Vec<(String, std::ffi::OsString)>,
}

impl Engineer {
    pub(crate) async fn logged_in(
        shop: &Shop,
        home: &std::path::Path,
        extra: &[(&str, &std::ffi::OsStr)],
    ) -> Engineer {
        let mut env = vec![
            (
                "PATH".to_owned(),
                std::env::var_os("PATH").unwrap_or_default(),
            ),
            ("XDG_CONFIG_HOME".to_owned(), home.as_os_str().to_owned()),
        ];
        env.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_os_string())));
        let me = Engineer { env };
        let cert_file = shop.app.db.dir.join(elevate::web::tls::DEV_CERT_FILE);
        let login = me
            .command(&[
                "login",
                "--server",
                &shop.app.base,
                "--token",
                &shop.alice,
                "--ca-cert",
                cert_file.to_str().unwrap(),
            ])
            .output()
            .await
            .unwrap();
        assert!(
            login.status.success(),
            "{}",
            String::from_utf8_lossy(&login.stderr)
        );
        me
    }

    pub(crate) fn command(&self, args: &[&str]) -> tokio::process::Command {
        let mut c = tokio::process::Command::new(crate::sshd::BIN);
        c.env_clear()
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .args(args);
        c
    }
}

/// A session opened through the host protocol as `elevate host session` opens one (host
/// `name` registered, a certificate issued to `requester` for a fresh key on `request`), for
/// tests that need a session without an sshd.
pub(crate) struct HostSession {
    app_base: String,
    client: reqwest::Client,
    pub(crate) token: String,
    pub(crate) id: String,
    key: String,
}

impl HostSession {
    pub(crate) async fn open(
        app: &TestApp,
        tenant: &Tenant,
        name: &str,
        requester: &crate::helpers::Api,
        request: &str,
    ) -> HostSession {
        let ctx = ctx(app.clock.as_ref());
        let (_, token) = elevate::admin::hosts::add_host(app.store(), &ctx, tenant, name)
            .await
            .unwrap();
        let key = ssh_key::PrivateKey::random(
            &mut ssh_key::rand_core::OsRng,
            ssh_key::Algorithm::Ed25519,
        )
        .unwrap();
        let (s, cert) = requester
            .ssh_certificate(request, &key.public_key().to_openssh().unwrap())
            .await;
        assert_eq!(s, StatusCode::CREATED, "{cert}");
        let token = token.expose().to_owned();
        let (s, opened) = app
            .api(&token)
            .post(
                &format!("/api/host/v1/{}/sessions", tenant.slug),
                json!({"certificate": cert["certificate"], "principal": "deploy", "pty": true}),
            )
            .await;
        assert_eq!(s, StatusCode::CREATED, "{opened}");
        HostSession {
            app_base: format!("{}/api/host/v1/{}/sessions", app.base, tenant.slug),
            client: app.browser(),
            token,
            id: opened["session_id"].as_str().unwrap().to_owned(),
            key: opened["session_key"].as_str().unwrap().to_owned(),
        }
    }

    fn call(&self, method: reqwest::Method, tail: &str) -> reqwest::RequestBuilder {
        self.client
            .request(method, format!("{}/{}{tail}", self.app_base, self.id))
            .bearer_auth(&self.token)
            .header("x-elevate-session-key", &self.key)
    }

    pub(crate) async fn record(&self, seq: i32, data: &str) -> StatusCode {
        let res = self
            .call(reqwest::Method::PUT, &format!("/recording/{seq}"))
            .body(data.to_owned())
            .send()
            .await
            .unwrap();
        res.status()
    }

    /// The verdict the helper polls.
    pub(crate) async fn check(&self) -> Value {
        let res = self.call(reqwest::Method::GET, "").send().await.unwrap();
        assert_eq!(res.status(), StatusCode::OK);
        res.json().await.unwrap()
    }

    pub(crate) async fn close(&self, reason: &str) -> StatusCode {
        let res = self
            .call(reqwest::Method::POST, "/end")
            .json(&json!({"reason": reason, "exit_status": 0}))
            .send()
            .await
            .unwrap();
        res.status()
    }
}
