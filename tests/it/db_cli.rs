//! Database logins through the real binary, as an operator and an engineer use them: targets set
//! from the command line, `elevate db` printing a login and running psql with it, and a server
//! killed with SIGKILL whose logins are all gone within seconds of its restart.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::db_fixtures::PgTarget;
use crate::helpers::temp_dir;

const BIN: &str = env!("CARGO_BIN_EXE_elevate");

const POLICY: &str = r#"
[[profile]]
name = "orders-read"
requesters = ["engineering"]
approvers = ["sre"]
default_duration = "15s"
[profile.database]
target = "orders"
roles = ["ROLE"]
"#;

/// One elevate installation on disk (SQLite beside its master key and TLS certificate).
struct Install {
    dir: PathBuf,
    db: String,
}

impl Install {
    fn new() -> Self {
        let dir = temp_dir("db-cli");
        let db = format!("sqlite:{}", dir.join("elevate.db").display());
        Install { dir, db }
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(BIN);
        cmd.env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("XDG_CONFIG_HOME", self.dir.join("config"))
            .env("ELEVATE_DATABASE_URL", &self.db)
            .current_dir(&self.dir)
            .args(args);
        cmd
    }

    fn run_with_stdin(&self, args: &[&str], stdin: &str) -> Output {
        crate::helpers::run_with_stdin(self.command(args), stdin)
    }

    fn ok(&self, args: &[&str]) -> String {
        let out = self.command(args).output().unwrap();
        assert!(out.status.success(), "{args:?}: {}", text(&out.stderr));
        text(&out.stdout)
    }

    fn serve(&self, port: u16) -> Child {
        self.command(&["serve", "--listen", &format!("127.0.0.1:{port}")])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap()
    }

    /// A client trusting the development certificate (written by the first `serve`).
    async fn client(&self) -> reqwest::Client {
        let path = self.dir.join(elevate::web::tls::DEV_CERT_FILE);
        for _ in 0..200 {
            if path.exists() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let cert = std::fs::read(path).unwrap();
        reqwest::Client::builder()
            .add_root_certificate(reqwest::Certificate::from_pem(&cert).unwrap())
            .build()
            .unwrap()
    }
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

async fn wait_ready(base: &str, client: &reqwest::Client) {
    for _ in 0..200 {
        if let Ok(r) = client.get(format!("{base}/healthz")).send().await
            && r.status().is_success()
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("elevate serve did not come up at {base}");
}

async fn post(
    client: &reqwest::Client,
    url: String,
    token: &str,
    body: Value,
) -> (StatusCode, Value) {
    let r = client
        .post(url)
        .bearer_auth(token)
        .json(&body)
        .send()
        .await
        .unwrap();
    (r.status(), r.json().await.unwrap_or(Value::Null))
}

/// Sets up tenant acme with alice and bob, the policy and target `orders`; returns their tokens.
fn bootstrap(install: &Install, pg: &PgTarget) -> (String, String) {
    install.ok(&["admin", "tenant", "create", "acme"]);
    for (email, role, group) in [
        ("alice@acme.example", "requester", "engineering"),
        ("bob@acme.example", "approver", "sre"),
    ] {
        install.ok(&[
            "admin", "user", "create", "--tenant", "acme", "--email", email, "--role", role,
            "--group", group,
        ]);
    }
    let policy = install.dir.join("policy.toml");
    std::fs::write(&policy, POLICY.replace("ROLE", &pg.read)).unwrap();
    install.ok(&[
        "policy",
        "apply",
        "--tenant",
        "acme",
        policy.to_str().unwrap(),
    ]);

    // A password in the URL or an empty stdin is refused; the right form saves and checks it.
    let url = pg.admin_url();
    let with_password = url.replacen("@", ":secret@", 1);
    let out = install.run_with_stdin(
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
            &with_password,
        ],
        "pw\n",
    );
    assert!(!out.status.success());
    crate::helpers::assert_contains(&out.stderr, "stdin, not in the URL");
    let out = install.run_with_stdin(
        &[
            "admin", "target", "set", "--tenant", "acme", "orders", "--kind", "postgres", "--url",
            &url,
        ],
        "",
    );
    assert!(!out.status.success());
    crate::helpers::assert_contains(&out.stderr, "on stdin");
    let out = install.run_with_stdin(
        &[
            "admin", "target", "set", "--tenant", "acme", "orders", "--kind", "postgres", "--url",
            &url,
        ],
        &format!("{}\n", pg.admin_password),
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    crate::helpers::assert_contains(&out.stdout, "connection: ok");
    assert!(!text(&out.stdout).contains(&pg.admin_password));
    let tested = install.ok(&["admin", "target", "test", "--tenant", "acme", "orders"]);
    assert!(tested.contains("can create roles"), "{tested}");
    // The password is sealed: the database file does not hold it.
    let raw = std::fs::read(install.dir.join("elevate.db")).unwrap();
    assert!(
        !raw.windows(pg.admin_password.len())
            .any(|w| w == pg.admin_password.as_bytes())
    );

    let token = |email: &str| {
        install
            .ok(&[
                "admin", "token", "create", "--tenant", "acme", "--email", email,
            ])
            .trim()
            .to_owned()
    };
    (token("alice@acme.example"), token("bob@acme.example"))
}

fn elevate_as(install: &Install, home: &Path, args: &[&str]) -> Output {
    install
        .command(args)
        .env("XDG_CONFIG_HOME", home)
        .output()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logins_die_after_a_crash_and_elevate_db_runs_psql() {
    let pg = PgTarget::new().await;
    let install = Install::new();
    let (alice, bob) = bootstrap(&install, &pg);
    let port = free_port();
    let base = format!("https://localhost:{port}");
    let mut server = install.serve(port);
    let client = install.client().await;
    wait_ready(&base, &client).await;

    // 20 grants, each with a login.
    let mut logins = Vec::new();
    let mut ids = Vec::new();
    for i in 0..20 {
        let (s, r) = post(
            &client,
            format!("{base}/api/v1/requests"),
            &alice,
            json!({"profile": "orders-read", "justification": format!("check order {i}")}),
        )
        .await;
        assert_eq!(s, StatusCode::CREATED, "{r}");
        let id = r["id"].as_str().unwrap().to_owned();
        let (s, r) = post(
            &client,
            format!("{base}/api/v1/requests/{id}/approve"),
            &bob,
            json!({}),
        )
        .await;
        assert_eq!(s, StatusCode::OK, "{r}");
        let (s, login) = post(
            &client,
            format!("{base}/api/v1/requests/{id}/db-credentials"),
            &alice,
            json!({}),
        )
        .await;
        assert_eq!(s, StatusCode::CREATED, "{login}");
        logins.push((
            login["username"].as_str().unwrap().to_owned(),
            login["password"].as_str().unwrap().to_owned(),
        ));
        ids.push(id);
    }

    // The engineer's CLI: a printed login, and psql run with the login in its environment.
    let home = temp_dir("db-cli-home");
    let cert = install.dir.join(elevate::web::tls::DEV_CERT_FILE);
    let out = elevate_as(
        &install,
        &home,
        &[
            "login",
            "--server",
            &base,
            "--token",
            &alice,
            "--ca-cert",
            cert.to_str().unwrap(),
        ],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let out = elevate_as(&install, &home, &["db", &ids[0], "--json"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let printed: Value = serde_json::from_slice(&out.stdout).unwrap();
    logins.push((
        printed["username"].as_str().unwrap().to_owned(),
        printed["password"].as_str().unwrap().to_owned(),
    ));
    let out = elevate_as(
        &install,
        &home,
        &[
            "db",
            &ids[1],
            "--exec",
            "--",
            "-XAtc",
            "SELECT current_user || ' ' || string_agg(item, ',' ORDER BY id) FROM orders",
        ],
    );
    assert!(out.status.success(), "psql: {}", text(&out.stderr));
    let answer = text(&out.stdout);
    assert!(answer.trim().ends_with(" widget,gadget"), "{answer}");
    let psql_user = answer.split_whitespace().next().unwrap().to_owned();
    assert!(psql_user.starts_with("elv_"), "{psql_user}");
    logins.push((psql_user, String::new()));
    let out = elevate_as(
        &install,
        &home,
        &[
            "db",
            &ids[2],
            "--exec",
            "--",
            "-XAtc",
            "SELECT * FROM secrets",
        ],
    );
    assert!(
        !out.status.success(),
        "the login reads only what its role allows"
    );
    logins.push((
        text(&out.stderr)
            .split_whitespace()
            .find(|w| w.starts_with("elv_"))
            .unwrap()
            .to_owned(),
        String::new(),
    ));

    // A revocation reaches the target within seconds (the reaper is woken), open session included.
    let (revoked_user, revoked_password) = logins.remove(19);
    let mut revoked_session = pg.login(&revoked_user, &revoked_password).await.unwrap();
    let revoked_id = ids.remove(19);
    let (s, r) = post(
        &client,
        format!("{base}/api/v1/requests/{revoked_id}/revoke"),
        &bob,
        json!({"reason": "done early"}),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{r}");
    let revoked_at = Instant::now();
    while pg.role_exists(&revoked_user).await && revoked_at.elapsed() < Duration::from_secs(5) {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        !pg.role_exists(&revoked_user).await,
        "still there 5 s after the revocation"
    );
    assert!(
        sqlx::query("SELECT 1")
            .execute(&mut revoked_session)
            .await
            .is_err()
    );
    println!(
        "revoked login dropped {:?} after the revocation",
        revoked_at.elapsed()
    );

    let mut open = pg.login(&logins[0].0, &logins[0].1).await.unwrap();
    // Crash: no shutdown, no cleanup.
    server.kill().unwrap();
    server.wait().unwrap();
    for (user, _) in &logins {
        assert!(
            pg.role_exists(user).await,
            "{user} exists until elevate is back"
        );
    }
    // Let every grant end (15 s each), while elevate is down.
    tokio::time::sleep(Duration::from_secs(16)).await;
    assert!(pg.role_exists(&logins[0].0).await);
    assert!(
        pg.login(&logins[0].0, &logins[0].1).await.is_err(),
        "VALID UNTIL refuses new logins even while elevate is down"
    );

    let names: Vec<String> = logins.iter().map(|(u, _)| u.clone()).collect();
    assert_eq!(pg.existing_roles(&names).await, names.len() as i64);
    let started = Instant::now();
    let mut server = install.serve(port);
    let mut left = names.len() as i64;
    while started.elapsed() < Duration::from_secs(5) {
        left = pg.existing_roles(&names).await;
        if left == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let took = started.elapsed();
    assert_eq!(
        left,
        0,
        "{left} of {} logins left after {took:?}",
        logins.len()
    );
    assert!(pg.sessions_gone(&logins[0].0, 1).await);
    assert!(sqlx::query("SELECT 1").execute(&mut open).await.is_err());
    println!(
        "all {} logins dropped {took:?} after the restart",
        logins.len()
    );
    server.kill().unwrap();
    server.wait().unwrap();
}
