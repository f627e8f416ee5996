//! The engineer's side of the CLI: `elevate login` stores a server and token, then `request`,
//! `status`, `approve`, `deny`, `cancel`, `revoke`, `extend` and `review` call the JSON API.
//! Human output by default, `--json` for scripts; an API refusal exits 1 with its message.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, bail};
use clap::Args;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

/// Where `elevate login` keeps the server and token (mode 0600).
fn config_path() -> anyhow::Result<PathBuf> {
    let base = std::env::var_os("XDG_CONFIG_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".config")))
        .context("neither XDG_CONFIG_HOME nor HOME is set")?;
    Ok(base.join("elevate").join("cli.toml"))
}

#[derive(Debug, Serialize, Deserialize, Default)]
struct Saved {
    /// The elevate server, like https://elevate.example.com.
    server: String,
    token: String,
    #[serde(default)]
    ca_cert: Option<PathBuf>,
    /// The server certificate's SHA-256 fingerprint, when it was pinned at login (the system
    /// does not trust it).
    #[serde(default)]
    pin: Option<String>,
}

fn write_private(path: &Path, text: &str) -> anyhow::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        #[cfg(unix)]
        std::fs::set_permissions(dir, std::os::unix::fs::PermissionsExt::from_mode(0o700))?;
    }
    crate::files::write_private(path, text.as_bytes())
        .with_context(|| format!("writing {}", path.display()))
}

/// An HTTPS client for the elevate server, trusting `ca_cert` too when given (e.g. the
/// development certificate).
pub fn http_client(timeout: Duration, ca_cert: Option<&Path>) -> anyhow::Result<reqwest::Client> {
    let mut builder = reqwest::Client::builder().timeout(timeout);
    if let Some(path) = ca_cert {
        let pem = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
        builder = builder
            .add_root_certificate(reqwest::Certificate::from_pem(&pem).context("CA certificate")?);
    }
    Ok(builder.build()?)
}

/// A refusal from the server: its HTTP status, its error code and its message. `--json` prints
/// it as `{"error":{"code","message"}}`.
#[derive(Debug, thiserror::Error)]
#[error("{message} (HTTP {status})")]
pub struct ApiFailure {
    pub status: u16,
    pub code: String,
    pub message: String,
}

/// `request --wait` saw the request end without a grant. The request itself was printed (as
/// JSON under `--json`), so only the exit code is left to say it.
#[derive(Debug, thiserror::Error)]
#[error("request {0}")]
pub struct Ended(pub String);

pub struct Api {
    http: reqwest::Client,
    /// The elevate server, like https://elevate.example.com.
    server: String,
    token: String,
}

/// Opens `url` in the person's browser (`$BROWSER`, else `xdg-open`), without waiting for it
/// and without failing: the URL was printed already.
pub fn open_in_browser(url: &str) {
    let program = std::env::var("BROWSER")
        .ok()
        .filter(|b| !b.trim().is_empty())
        .unwrap_or_else(|| "xdg-open".into());
    let started = std::process::Command::new(program.trim())
        .arg(url)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn();
    if started.is_err() {
        eprintln!("(could not start a browser; open the page yourself)");
    }
}

impl Api {
    /// The server this login talks to.
    pub fn server(&self) -> &str {
        &self.server
    }

    fn build(
        server: &str,
        token: &str,
        ca_cert: Option<&Path>,
        pin: Option<&str>,
    ) -> anyhow::Result<Self> {
        let timeout = Duration::from_secs(30);
        let http = match pin {
            Some(pin) => super::pin::client(timeout, Some(pin.to_owned()))?.0,
            None => http_client(timeout, ca_cert)?,
        };
        Ok(Api {
            http,
            server: server.trim_end_matches('/').to_owned(),
            token: token.to_owned(),
        })
    }

    /// From `ELEVATE_SERVER`/`ELEVATE_TOKEN`, else what `elevate login` saved.
    pub fn from_saved() -> anyhow::Result<Self> {
        let saved: Saved = match std::fs::read_to_string(config_path()?) {
            Ok(text) => toml::from_str(&text)
                .context("the saved CLI login is unreadable; run elevate login again")?,
            Err(_) => Saved::default(),
        };
        let server = std::env::var("ELEVATE_SERVER").unwrap_or(saved.server);
        let token = std::env::var("ELEVATE_TOKEN").unwrap_or(saved.token);
        if server.is_empty() || token.is_empty() {
            bail!("not logged in: run `elevate login --server URL`");
        }
        Self::build(
            &server,
            &token,
            saved.ca_cert.as_deref(),
            saved.pin.as_deref(),
        )
    }

    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> anyhow::Result<Value> {
        let mut req = self
            .http
            .request(method, format!("{}/api/v1{path}", self.server))
            .bearer_auth(&self.token);
        if let Some(body) = body {
            req = req.json(&body);
        }
        Ok(self.send(req).await?.json().await.unwrap_or(Value::Null))
    }

    /// Sends a request; a non-2xx answer becomes an error carrying the server's message.
    async fn send(&self, req: reqwest::RequestBuilder) -> anyhow::Result<reqwest::Response> {
        let res = req
            .send()
            .await
            .with_context(|| format!("cannot reach {}", self.server))?;
        let status = res.status();
        if !status.is_success() {
            let body: Value = res.json().await.unwrap_or(Value::Null);
            let message = body["error"]["message"]
                .as_str()
                .unwrap_or("request failed");
            // Messages may quote what someone typed: shown, not replayed to the terminal.
            let mut message = crate::text::shown(message).into_owned();
            if status == reqwest::StatusCode::UNAUTHORIZED {
                message.push_str(": run `elevate login` again");
            }
            return Err(ApiFailure {
                status: status.as_u16(),
                code: body["error"]["code"].as_str().unwrap_or("error").to_owned(),
                message,
            }
            .into());
        }
        Ok(res)
    }

    pub async fn get(&self, path: &str) -> anyhow::Result<Value> {
        self.call(reqwest::Method::GET, path, None).await
    }

    /// A request list with every page (following `next`, at most `max_pages` pages), as one
    /// `{"requests": [...]}`.
    pub async fn get_all_pages(&self, path: &str, max_pages: usize) -> anyhow::Result<Value> {
        let sep = if path.contains('?') { '&' } else { '?' };
        let mut page = self.get(path).await?;
        let mut all: Vec<Value> = page["requests"].as_array().cloned().unwrap_or_default();
        for _ in 1..max_pages {
            let Some(next) = page["next"].as_str().map(str::to_owned) else {
                break;
            };
            page = self.get(&format!("{path}{sep}after={next}")).await?;
            all.extend(page["requests"].as_array().cloned().unwrap_or_default());
        }
        Ok(json!({ "requests": all }))
    }

    pub async fn post(&self, path: &str, body: Value) -> anyhow::Result<Value> {
        self.call(reqwest::Method::POST, path, Some(body)).await
    }

    /// A GET whose body the caller streams (exports); an hour instead of the usual timeout.
    pub async fn get_streaming(&self, path: &str) -> anyhow::Result<reqwest::Response> {
        let req = self
            .http
            .get(format!("{}/api/v1{path}", self.server))
            .bearer_auth(&self.token)
            .timeout(Duration::from_secs(3600));
        self.send(req).await
    }
}

#[derive(Debug, Args)]
pub struct LoginArgs {
    /// The elevate server, like https://elevate.example.com.
    #[arg(long)]
    server: String,
    /// An API token (create one on the API tokens page). Without one, login asks you to
    /// approve it in the browser (a code to confirm on the server's /device page).
    #[arg(long, env = "ELEVATE_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// The organisation to log in to (needed without --token when the server has several).
    #[arg(long)]
    tenant: Option<String>,
    /// Without --token: only print the page to approve the login on (do not open a browser).
    #[arg(long)]
    no_browser: bool,
    /// Without --token: ask for your admin rights too. Approving then needs a passkey
    /// confirmation in the browser, and the token lives one hour.
    #[arg(long, conflicts_with = "token")]
    admin: bool,
    /// CA certificate to trust for the server (e.g. the development certificate).
    #[arg(long, value_name = "FILE")]
    ca_cert: Option<PathBuf>,
    /// Trust the server's certificate by its SHA-256 fingerprint (as `elevate serve` prints it)
    /// when the system does not trust it; without it, login shows the fingerprint and asks.
    #[arg(long, value_name = "SHA256", conflicts_with = "ca_cert")]
    pin: Option<String>,
}

/// Whether the system (or `--ca-cert`) trusts the server's certificate: a request that fails
/// in the TLS handshake does not.
async fn trusted(server: &str, ca_cert: Option<&Path>) -> anyhow::Result<bool> {
    let http = http_client(Duration::from_secs(10), ca_cert)?;
    match http.get(format!("{server}/healthz")).send().await {
        Ok(_) => Ok(true),
        Err(e) if e.is_connect() && format!("{e:?}").to_lowercase().contains("certificate") => {
            Ok(false)
        }
        Err(e) => Err(anyhow::anyhow!("cannot reach {server}: {e}")),
    }
}

/// The pin for `server` when its certificate is not trusted: `--pin` (checked against what the
/// server presents), or the person's yes at a terminal. No token is sent before this.
async fn pin_for(server: &str, asked: Option<&str>) -> anyhow::Result<String> {
    let seen = super::pin::probe(server).await?;
    if let Some(asked) = asked {
        let asked = super::pin::normalize(asked)?;
        if asked != seen {
            bail!("the server's certificate is {seen}, not the pinned {asked}: refusing to log in");
        }
        return Ok(seen);
    }
    eprintln!("The certificate of {server} is not trusted by this system.");
    eprintln!("Its SHA-256 fingerprint is {seen}");
    eprintln!("Compare it with the one `elevate serve` printed at start.");
    if !std::io::IsTerminal::is_terminal(&std::io::stdin()) {
        bail!("not logging in: pass --pin {seen} to trust it (or --ca-cert FILE)");
    }
    eprint!("Trust it for this server? [y/N] ");
    let mut answer = String::new();
    std::io::stdin().read_line(&mut answer)?;
    if !matches!(answer.trim(), "y" | "Y" | "yes") {
        bail!("not logging in: the certificate was not trusted");
    }
    Ok(seen)
}

/// This machine's name, for the token's name ("CLI on HOST") and the approval page.
fn host_name() -> String {
    std::fs::read_to_string("/etc/hostname")
        .ok()
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "this machine".into())
}

/// RFC 8628 from the client's side: ask for a code, show it (and open the page), poll until a
/// person approves or denies it in the browser, or it expires. The new token.
async fn device_login(
    api: &Api,
    tenant: Option<&str>,
    admin: bool,
    open: bool,
) -> anyhow::Result<String> {
    let client = format!(
        "elevate-cli {} on {}",
        env!("CARGO_PKG_VERSION"),
        host_name()
    );
    let res = api
        .http
        .post(format!("{}/api/v1/device/code", api.server))
        .json(&json!({ "tenant": tenant, "client": client, "scope": admin.then_some("admin") }))
        .send()
        .await
        .with_context(|| format!("cannot reach {}", api.server))?;
    let status = res.status();
    let body: Value = res.json().await.unwrap_or(Value::Null);
    if !status.is_success() {
        return Err(ApiFailure {
            status: status.as_u16(),
            code: body["error"]["code"].as_str().unwrap_or("error").to_owned(),
            message: body["error"]["message"]
                .as_str()
                .unwrap_or("refused")
                .to_owned(),
        }
        .into());
    }
    let field = |k: &str| body[k].as_str().unwrap_or_default().to_owned();
    let (device_code, user_code, page) = (
        field("device_code"),
        field("user_code"),
        field("verification_uri"),
    );
    let tenant = field("tenant");
    println!("To log in, open {page} and confirm the code {user_code}");
    if admin {
        println!(
            "(admin rights: you will confirm with your passkey there; the token lasts 1 hour)"
        );
    }
    if open {
        open_in_browser(&field("verification_uri_complete"));
    }
    let mut interval = body["interval"].as_u64().unwrap_or(5).max(1);
    let deadline =
        std::time::Instant::now() + Duration::from_secs(body["expires_in"].as_u64().unwrap_or(600));
    loop {
        tokio::time::sleep(Duration::from_secs(interval)).await;
        if std::time::Instant::now() > deadline {
            bail!("the code expired before it was approved: run elevate login again");
        }
        let res = api
            .http
            .post(format!("{}/api/v1/device/token", api.server))
            .json(&json!({ "tenant": tenant, "device_code": device_code }))
            .send()
            .await
            .with_context(|| format!("cannot reach {}", api.server))?;
        let ok = res.status().is_success();
        let answer: Value = res.json().await.unwrap_or(Value::Null);
        if ok {
            return answer["access_token"]
                .as_str()
                .map(str::to_owned)
                .context("the server answered without a token");
        }
        match answer["error"].as_str().unwrap_or_default() {
            "authorization_pending" => {}
            "slow_down" => interval += 5,
            "access_denied" => bail!("the login was denied in the browser"),
            "expired_token" => {
                bail!("the code expired before it was approved: run elevate login again")
            }
            other => bail!("the server refused the login ({other})"),
        }
    }
}

pub async fn login(args: LoginArgs) -> anyhow::Result<()> {
    let ca_cert = args.ca_cert.map(|p| std::fs::canonicalize(&p).unwrap_or(p));
    let server = args.server.trim_end_matches('/').to_owned();
    let pin = if trusted(&server, ca_cert.as_deref()).await? {
        None
    } else {
        Some(pin_for(&server, args.pin.as_deref()).await?)
    };
    if let Some(pin) = &pin {
        println!("pinned the certificate of {server}: {pin}");
    }
    let token = match args.token.filter(|t| !t.trim().is_empty()) {
        Some(token) => token,
        None => {
            let anonymous = Api::build(&server, "", ca_cert.as_deref(), pin.as_deref())?;
            let tenant = args.tenant.as_deref();
            device_login(&anonymous, tenant, args.admin, !args.no_browser).await?
        }
    };
    let api = Api::build(&server, &token, ca_cert.as_deref(), pin.as_deref())?;
    let me = api.get("/me").await?;
    let saved = Saved {
        server: api.server.clone(),
        token,
        ca_cert,
        pin,
    };
    let path = config_path()?;
    write_private(&path, &toml::to_string(&saved)?)?;
    println!(
        "logged in to {} as {} ({}); saved in {}",
        api.server,
        me["user"]["email"].as_str().unwrap_or("?"),
        me["tenant"]["slug"].as_str().unwrap_or("?"),
        path.display()
    );
    Ok(())
}

/// One line about a request for a terminal. Text is shown through [`crate::text::shown`]: a
/// bidirectional override or control character from the server cannot rewrite the line.
pub fn describe(r: &Value) -> String {
    let field = |k: &str| crate::text::shown(r[k].as_str().unwrap_or("?")).into_owned();
    let state = field("state");
    let mut line = format!(
        "{} {} {} for {}",
        field("id"),
        field("profile"),
        state,
        field("duration")
    );
    if let Some(email) = r["requester_email"].as_str() {
        line.push_str(&format!(" by {}", crate::text::shown(email)));
    }
    match state.as_str() {
        "pending" => line.push_str(&format!(
            " (approvals {}/{})",
            r["approvals"].as_array().map_or(0, Vec::len),
            r["approvals_required"]
        )),
        "active" => {
            let until = r["grant"]["not_after"].as_str().unwrap_or("?");
            line.push_str(&format!(" until {}", human_time(until)));
            if let Some(left) = time_left(until) {
                line.push_str(&format!(" ({left} left)"));
            }
        }
        "scheduled" => line.push_str(&format!(
            " from {}",
            human_time(r["starts_at"].as_str().unwrap_or("?"))
        )),
        _ => {}
    }
    if r["break_glass"] == json!(true) {
        line.push_str(" [break-glass]");
    }
    line
}

/// An RFC 3339 time from the API as people read times everywhere (`2026-12-03 06:34 UTC`); as
/// given when it cannot be read.
fn human_time(rfc3339: &str) -> String {
    time::OffsetDateTime::parse(rfc3339, &time::format_description::well_known::Rfc3339)
        .map_or_else(
            |_| crate::text::shown(rfc3339).into_owned(),
            crate::text::when,
        )
}

/// `1h5m` from now until an RFC 3339 time; None when it has passed or cannot be read.
fn time_left(until: &str) -> Option<String> {
    let end =
        time::OffsetDateTime::parse(until, &time::format_description::well_known::Rfc3339).ok()?;
    let left = end - crate::clock::Clock::now(&crate::clock::SystemClock);
    (left.whole_seconds() > 0).then(|| crate::duration::format(left))
}

/// `elevate status ID`: the request, who asked and why, who decided and what they said.
pub fn detail(r: &Value) -> String {
    let shown = |v: &Value| crate::text::shown(v.as_str().unwrap_or_default()).into_owned();
    let mut out = describe(r);
    let mut row = |label: &str, value: String| {
        if !value.is_empty() {
            out.push_str(&format!("\n  {label:<10} {value}"));
        }
    };
    row("asked by", shown(&r["requester_email"]));
    row(
        "asked at",
        human_time(r["created_at"].as_str().unwrap_or_default()),
    );
    row("reason", shown(&r["justification"]));
    row("ticket", shown(&r["ticket"]));
    let approvals: Vec<String> = r["approvals"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|a| {
            let who = a["approver_email"]
                .as_str()
                .or(a["approver"].as_str())
                .unwrap_or("?");
            let passkey = if a["stepped_up"] == json!(true) {
                " (passkey)"
            } else {
                ""
            };
            format!("{}{passkey}", crate::text::shown(who))
        })
        .collect();
    row(
        "approvals",
        format!(
            "{}/{}{}{}",
            approvals.len(),
            r["approvals_required"],
            if approvals.is_empty() { "" } else { ": " },
            approvals.join(", ")
        ),
    );
    for d in r["decisions"].as_array().into_iter().flatten() {
        let said = d["comment"]
            .as_str()
            .map(|c| format!(": {}", crate::text::shown(c)))
            .unwrap_or_default();
        row(
            "decision",
            format!("{} {}{said}", shown(&d["by"]), shown(&d["decision"])),
        );
    }
    out
}

/// Why a request was denied, from its decisions: `denied by bob@...: not during the freeze`.
pub fn denial(r: &Value) -> Option<String> {
    let d = r["decisions"]
        .as_array()?
        .iter()
        .rev()
        .find(|d| d["decision"] == "denied")?;
    let by = crate::text::shown(d["by"].as_str().unwrap_or("?")).into_owned();
    Some(match d["comment"].as_str() {
        Some(c) => format!("denied by {by}: {}", crate::text::shown(c)),
        None => format!("denied by {by}"),
    })
}

pub fn print(value: &Value, json_output: bool) {
    if json_output {
        println!("{value}");
    } else if let Some(list) = value["requests"].as_array() {
        if list.is_empty() {
            println!("no requests");
        }
        for r in list {
            println!("{}", describe(r));
        }
    } else {
        println!("{}", describe(value));
    }
}

#[derive(Debug, Args)]
pub struct RequestArgs {
    /// The access profile to request.
    profile: String,
    /// How long, like 30m or 2h [default: the profile's default_duration].
    #[arg(long = "for", value_name = "DURATION")]
    duration: Option<String>,
    /// Why you need access: approvers see it, the audit log keeps it.
    #[arg(long, default_value = "")]
    reason: String,
    /// A ticket reference (like INC-123) when the profile asks for one.
    #[arg(long)]
    ticket: Option<String>,
    /// Start later (RFC 3339 time).
    #[arg(long, value_name = "TIME")]
    starts_at: Option<String>,
    /// Activate now without approval (if the profile allows); reviewed afterwards.
    #[arg(long)]
    break_glass: bool,
    /// Wait until the request is decided.
    #[arg(long)]
    wait: bool,
    /// Print JSON (for scripts) instead of text.
    #[arg(long)]
    pub json: bool,
}

pub async fn request(args: RequestArgs) -> anyhow::Result<()> {
    let api = Api::from_saved()?;
    let body = json!({
        "profile": args.profile,
        "duration": args.duration,
        "justification": args.reason,
        "ticket": args.ticket,
        "starts_at": args.starts_at,
        "break_glass": args.break_glass,
    });
    let mut r = api.post("/requests", body).await?;
    if args.wait && r["state"] == "pending" {
        let id = r["id"].as_str().unwrap_or_default().to_owned();
        if !args.json {
            eprintln!("waiting for approval of {id} ...");
        }
        let mut seen = r["approvals"].as_array().map_or(0, Vec::len);
        while r["state"] == "pending" {
            tokio::time::sleep(Duration::from_secs(2)).await;
            r = api.get(&format!("/requests/{id}")).await?;
            let now = r["approvals"].as_array().map_or(0, Vec::len);
            if now > seen && !args.json {
                eprintln!("approvals {now}/{}", r["approvals_required"]);
            }
            seen = now;
        }
    }
    print(&r, args.json);
    if args.wait
        && !args.json
        && let Some(why) = denial(&r)
    {
        eprintln!("{why}");
    }
    match r["state"].as_str() {
        Some("denied" | "lapsed" | "cancelled" | "revoked") if args.wait => {
            Err(Ended(r["state"].as_str().unwrap_or("?").to_owned()).into())
        }
        _ => Ok(()),
    }
}

/// `elevate profiles`: what I can request, for how long, and who approves.
pub async fn profiles(all: bool, json_output: bool) -> anyhow::Result<()> {
    let api = Api::from_saved()?;
    let listed = api.get("/profiles").await?;
    let shown: Vec<&Value> = listed["profiles"]
        .as_array()
        .map(|ps| {
            ps.iter()
                .filter(|p| all || p["can_request"] == json!(true))
                .collect()
        })
        .unwrap_or_default();
    if json_output {
        println!(
            "{}",
            json!({ "version": listed["version"], "profiles": shown })
        );
        return Ok(());
    }
    if shown.is_empty() {
        println!("no profile you can request (--all lists every profile)");
    }
    for p in shown {
        let text = |k: &str| crate::text::shown(p[k].as_str().unwrap_or_default()).into_owned();
        let list = |k: &str| {
            p[k].as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(Value::as_str)
                        .collect::<Vec<_>>()
                        .join(", ")
                })
                .unwrap_or_default()
        };
        let mut flags = Vec::new();
        if p["step_up"] == json!(true) {
            flags.push("passkey step-up");
        }
        if p["break_glass"] == json!(true) {
            flags.push("break-glass");
        }
        if p["can_request"] != json!(true) {
            flags.push("not for you");
        }
        println!(
            "{}  {} (up to {}), {} approval(s) from {}{}",
            text("name"),
            text("default_duration"),
            text("max_duration"),
            p["approvals_required"],
            list("approvers"),
            if flags.is_empty() {
                String::new()
            } else {
                format!("  [{}]", flags.join(", "))
            }
        );
        let description = text("description");
        if !description.is_empty() {
            println!("    {description}");
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn terminal_lines_show_overrides_and_control_characters() {
        let line = describe(&json!({
            "id": "r1",
            "profile": "prod\u{202E}llehs",
            "state": "pending",
            "duration": "1h\u{1b}[2K",
            "approvals": [],
            "approvals_required": 1,
        }));
        assert_eq!(
            line,
            "r1 prod[U+202E]llehs pending for 1h[U+001B][2K (approvals 0/1)"
        );
    }
}
