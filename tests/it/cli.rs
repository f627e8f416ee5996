//! The `elevate` binary as an operator meets it: start-up with nothing configured, the demo,
//! bootstrap commands, and clear failures for bad input.

use std::process::{Command, Output};

use serde_json::Value;

use crate::fixtures::{Server, elevate};
use crate::helpers::{TestDb, pg_url, temp_dir};

const BIN: &str = env!("CARGO_BIN_EXE_elevate");

fn run(cmd: &mut Command) -> Output {
    cmd.output().unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .danger_accept_invalid_certs(true)
        .build()
        .unwrap()
}

/// `GET /api/v1/me` on a server started by the test (development certificate).
async fn me(base: &str, token: &str) -> reqwest::Response {
    client()
        .get(format!("{base}/api/v1/me"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn serve_with_nothing_configured_starts_on_sqlite_over_tls() {
    let dir = temp_dir("serve");
    // Only the port is chosen, so parallel tests do not fight over 8443.
    let server = Server::start(elevate(&dir).args(["serve", "--listen", "127.0.0.1:0"]));
    assert!(
        server.url.starts_with("https://127.0.0.1:"),
        "{}",
        server.url
    );
    let res = client()
        .get(format!("{}/healthz", server.url))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    for file in [
        "elevate.db",
        "elevate.key",
        "elevate-tls.crt",
        "elevate-tls.key",
    ] {
        assert!(dir.join(file).exists(), "{file} not created");
    }
    use std::os::unix::fs::PermissionsExt;
    for file in ["elevate.key", "elevate-tls.key"] {
        let mode = std::fs::metadata(dir.join(file))
            .unwrap()
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(mode, 0o600, "{file}");
    }
    let status = server.terminate();
    assert!(status.success(), "graceful shutdown exited with {status}");
}

#[tokio::test]
async fn the_demo_seeds_once_and_reissues_tokens_at_each_start() {
    let dir = temp_dir("demo");
    let first = Server::start(elevate(&dir).args(["serve", "--demo", "--listen", "127.0.0.1:0"]));
    let old_alice = first.token_of("alice@example.com");
    let body: Value = me(&first.url, &old_alice).await.json().await.unwrap();
    assert_eq!(body["tenant"]["slug"], "demo");
    assert_eq!(body["user"]["groups"], serde_json::json!(["engineering"]));
    let carol = first.token_of("carol@example.com");
    let carol_me: Value = me(&first.url, &carol).await.json().await.unwrap();
    assert_eq!(carol_me["roles"], serde_json::json!(["admin", "auditor"]));
    assert!(first.terminate().success());

    let second = Server::start(elevate(&dir).args(["serve", "--demo", "--listen", "127.0.0.1:0"]));
    let new_alice = second.token_of("alice@example.com");
    assert_ne!(new_alice, old_alice);
    let old = me(&second.url, &old_alice).await;
    assert_eq!(old.status(), 401);
    let new = me(&second.url, &new_alice).await;
    assert_eq!(new.status(), 200);
    assert_eq!(
        second
            .stdout
            .iter()
            .filter(|l| l.contains("@example.com") && l.contains("elv_"))
            .count(),
        4,
        "{:?}",
        second.stdout
    );
    assert!(second.terminate().success());
}

#[tokio::test]
async fn admin_commands_bootstrap_a_tenant_and_print_only_the_token() {
    let dir = temp_dir("admin");
    let ok = run(elevate(&dir).args(["admin", "tenant", "create", "acme", "--name", "Acme Corp"]));
    assert!(ok.status.success(), "{}", text(&ok.stderr));
    let ok = run(elevate(&dir).args("admin user create --tenant acme --email ops@acme.example --role admin --role approver --group sre".split(' ')));
    assert!(ok.status.success(), "{}", text(&ok.stderr));
    let out = run(elevate(&dir).args("admin token create --tenant acme --email ops@acme.example --scope read --scope admin --ttl 2h".split(' ')));
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    let token = stdout.trim_end();
    assert!(
        token.starts_with("elv_") && !token.contains('\n') && stdout.ends_with('\n'),
        "{stdout:?}"
    );

    let server = Server::start(elevate(&dir).args(["serve", "--listen", "127.0.0.1:0"]));
    let body: Value = me(&server.url, token).await.json().await.unwrap();
    assert_eq!(body["tenant"]["name"], "Acme Corp");
    assert_eq!(
        body["token"]["scopes"],
        serde_json::json!(["read", "admin"])
    );
    assert!(server.terminate().success());

    let dup =
        run(elevate(&dir)
            .args("admin user create --tenant acme --email OPS@acme.example".split(' ')));
    assert_eq!(dup.status.code(), Some(1));
    crate::helpers::assert_contains(&dup.stderr, "already exists");
    let missing =
        run(elevate(&dir).args("admin token create --tenant nope --email x@y.example".split(' ')));
    assert_eq!(missing.status.code(), Some(1));
    assert!(text(&missing.stderr).contains("no tenant nope"));
    let bad_role = run(elevate(&dir)
        .args("admin user create --tenant acme --email a@b.example --role root".split(' ')));
    assert_eq!(bad_role.status.code(), Some(2));
    assert!(text(&bad_role.stderr).contains("unknown role"));
}

fn assert_clean_failure(out: &Output, code: i32, needle: &str) {
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(code), "{err}");
    assert!(err.contains(needle), "expected {needle:?} in: {err}");
    assert!(!err.contains("panicked"), "{err}");
}

#[test]
fn bad_start_up_input_ends_with_one_clear_message() {
    let dir = temp_dir("bad");
    assert_clean_failure(
        &run(elevate(&dir).args(["serve", "--no-such-flag"])),
        2,
        "unexpected argument",
    );

    std::fs::write(
        dir.join("bad.toml"),
        "listen = \"127.0.0.1:0\"\nlisten = 5\n",
    )
    .unwrap();
    let out = run(elevate(&dir).args(["serve", "--config", "bad.toml"]));
    assert_clean_failure(&out, 1, "bad.toml");
    assert!(text(&out.stderr).contains("line 2"));

    let out = run(elevate(&dir).args(
        "serve --listen 127.0.0.1:0 --database postgres://nobody@127.0.0.1:1/elevate".split(' '),
    ));
    assert_clean_failure(
        &out,
        1,
        "cannot connect to database postgres://nobody@127.0.0.1:1/elevate",
    );

    let out = run(elevate(&dir).args(
        "serve --listen 127.0.0.1:0 --database postgres://app:hunter2@127.0.0.1:1/x".split(' '),
    ));
    assert!(
        !text(&out.stderr).contains("hunter2"),
        "password in error output"
    );

    assert_clean_failure(
        &run(elevate(&dir)
            .args("serve --listen 127.0.0.1:0 --master-key-file missing.key".split(' '))),
        1,
        "missing.key",
    );
}

#[test]
fn a_wrong_master_key_stops_start_up() {
    let dir = temp_dir("wrongkey");
    assert!(
        run(elevate(&dir).args(["admin", "tenant", "create", "acme"]))
            .status
            .success()
    );
    // Another key for the same database.
    let other = temp_dir("otherkey");
    assert!(
        run(elevate(&other).args(["admin", "tenant", "create", "zzz"]))
            .status
            .success()
    );
    let out = run(elevate(&dir)
        .args(["serve", "--listen", "127.0.0.1:0", "--master-key-file"])
        .arg(other.join("elevate.key")));
    assert_clean_failure(&out, 1, "cannot unseal");
    assert!(text(&out.stderr).contains("tenant acme"));

    // Losing the key file of a database with sealed secrets is refused, not papered over.
    std::fs::remove_file(dir.join("elevate.key")).unwrap();
    assert_clean_failure(
        &run(elevate(&dir).args(["serve", "--listen", "127.0.0.1:0"])),
        1,
        "already holds sealed secrets",
    );
    assert!(!dir.join("elevate.key").exists());
}

#[tokio::test]
async fn postgres_start_up_refuses_a_superuser_and_runs_as_the_app_role() {
    let db = TestDb::postgres().await;
    let dir = temp_dir("pgserve");
    let out = run(elevate(&dir).args([
        "serve",
        "--listen",
        "127.0.0.1:0",
        "--database",
        &db.owner_url,
    ]));
    assert_clean_failure(&out, 1, "refusing to run as database role");

    let database = db.owner_url.rsplit('/').next().unwrap().to_owned();
    let app_url = pg_url(&database, Some(crate::helpers::APP_LOGIN_ROLE));
    let server = Server::start(elevate(&dir).args([
        "serve",
        "--demo",
        "--listen",
        "127.0.0.1:0",
        "--database",
        &app_url,
    ]));
    let token = server.token_of("bob@example.com");
    let body: Value = me(&server.url, &token).await.json().await.unwrap();
    assert_eq!(body["roles"], serde_json::json!(["approver"]));
    assert!(server.terminate().success());
}

#[tokio::test]
async fn plain_http_behind_a_proxy_and_json_logs() {
    let dir = temp_dir("insecure");
    let mut cmd = elevate(&dir);
    cmd.args(["--log-format", "json", "serve", "--listen", "127.0.0.1:0"])
        .env("ELEVATE_INSECURE_HTTP", "1");
    let server = Server::start(&mut cmd);
    assert!(server.url.starts_with("http://"), "{}", server.url);
    let res = reqwest::get(format!("{}/healthz", server.url))
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert!(res.headers().contains_key("strict-transport-security"));
    let (status, logs) = server.terminate_with_logs();
    assert!(status.success());
    let lines: Vec<&str> = logs.lines().filter(|l| !l.is_empty()).collect();
    assert!(lines.len() >= 2, "{logs}");
    for line in lines {
        let v: Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
        assert!(
            v.get("level").is_some() && v.get("timestamp").is_some(),
            "{line}"
        );
    }
}

/// `elevate completions` for bash, zsh and fish from the real binary (bash's parses with
/// `bash -n`), and `elevate man --out DIR` writing a page per command.
#[test]
fn completions_and_manual_pages_come_from_the_binary() {
    let dir = temp_dir("completions");
    for shell in ["bash", "zsh", "fish"] {
        let out = Command::new(BIN)
            .args(["completions", shell])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{shell}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let script = String::from_utf8(out.stdout).unwrap();
        for word in ["request", "approve", "ssh-cert", "--for"] {
            assert!(script.contains(word), "{shell} completion lacks {word}");
        }
        if shell == "bash" {
            let file = dir.join("elevate.bash");
            std::fs::write(&file, &script).unwrap();
            let check = Command::new("bash").arg("-n").arg(&file).output().unwrap();
            assert!(
                check.status.success(),
                "{}",
                String::from_utf8_lossy(&check.stderr)
            );
        }
    }
    let out = Command::new(BIN)
        .args(["completions", "tcsh"])
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(2),
        "an unknown shell is a usage error"
    );

    let pages = dir.join("man");
    let out = Command::new(BIN)
        .args(["man", "--out"])
        .arg(&pages)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for page in [
        "elevate.1",
        "elevate-request.1",
        "elevate-admin-user-create.1",
    ] {
        let text = std::fs::read_to_string(pages.join(page)).unwrap();
        assert!(text.contains(".TH"), "{page} is not a manual page");
    }
    let request = std::fs::read_to_string(pages.join("elevate-request.1")).unwrap();
    assert!(
        request.contains("justification") || request.contains("approvers see it"),
        "{request}"
    );
}

/// `elevate bench ...` with `args`, which must succeed: what it printed.
fn bench(args: &str) -> String {
    let dir = crate::helpers::temp_dir("bench");
    let out = crate::fixtures::elevate(&dir)
        .args(args.split(' '))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    text
}

/// `elevate bench expiry` files grants, lets the real reaper end them and reports lateness.
#[test]
fn the_expiry_benchmark_ends_every_grant() {
    let text = bench("bench expiry --grants 20 --within 2 --lead 4");
    assert!(text.contains("20 of 20 grants expired"), "{text}");
    assert!(text.contains("20 observed"), "{text}");
}

/// `elevate bench workflow` runs the three-call flow against a real server and prints the rate
/// beside the empty handler's (figures belong in BENCHMARKS.md, not in a test: this only checks
/// that the benchmark works and its flows succeed).
#[test]
fn the_workflow_benchmark_runs_its_flows() {
    let text = bench("bench workflow --seconds 1 --clients 2");
    let line = text
        .lines()
        .find(|l| l.contains(" 2 client(s):"))
        .unwrap_or_else(|| panic!("no result line in {text}"));
    assert!(
        line.contains("flows/s") && line.contains("empty handler"),
        "{line}"
    );
    assert!(!line.contains(", 0 flows)"), "no flow completed: {line}");
}
