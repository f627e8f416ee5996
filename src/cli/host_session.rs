//! `elevate host session`: sshd's `ForceCommand` (with `ExposeAuthInfo yes`). It reads the
//! certificate the user logged in with, asks elevate whether that grant is still active (no
//! answer, no session), runs the shell or command (under a pseudo-terminal when the client asked
//! for one, on plain pipes otherwise, so scp, sftp and `ssh host cmd` work unchanged), records
//! it as asciicast v2 streamed to elevate every couple of seconds, and ends it at the grant's
//! end or within seconds of a revocation or lockdown. If elevate becomes unreachable the
//! session may go on until the certificate's own end, and no further.

use std::io::IsTerminal;
use std::os::unix::process::ExitStatusExt;
use std::path::PathBuf;
use std::process::ExitStatus;
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use time::OffsetDateTime;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::signal::unix::{SignalKind, signal};

use super::asciicast::{Header, Recorder};
use crate::broker::sessions::{EndReason, Opening, Verdict};
use crate::clock::Clock;
use crate::web::host::{Closing, OpenedView, SESSION_KEY_HEADER};

#[derive(Debug, Args)]
pub struct SessionArgs {
    /// The elevate server, like https://elevate.example.com.
    #[arg(long, env = "ELEVATE_SERVER")]
    server: String,
    /// The organisation, by its slug (like acme).
    #[arg(long)]
    tenant: String,
    /// The file holding this host's token (from `elevate admin host add`).
    #[arg(long, value_name = "FILE")]
    token_file: PathBuf,
    /// CA certificate to trust for the server (e.g. the development certificate).
    #[arg(long, env = "ELEVATE_CA_CERT", value_name = "FILE")]
    ca_cert: Option<PathBuf>,
    /// Seconds between checks with elevate (and recording uploads).
    #[arg(long, default_value_t = 2, hide = true)]
    check_every: u64,
}

/// How long a session's processes get between SIGHUP and SIGKILL.
const GRACE: Duration = Duration::from_secs(3);

/// Talks to elevate about one session.
struct Link {
    http: reqwest::Client,
    base: String,
    token: String,
    key: String,
}

enum LinkError {
    /// No answer, or a server error: elevate may be down.
    Unreachable(String),
    /// elevate answered no.
    Refused(String),
}

async fn answer(res: reqwest::Result<reqwest::Response>) -> Result<reqwest::Response, LinkError> {
    let res = res.map_err(|e| LinkError::Unreachable(e.to_string()))?;
    let status = res.status();
    if status.is_success() {
        return Ok(res);
    }
    let body: serde_json::Value = res.json().await.unwrap_or_default();
    let message = body["error"]["message"]
        .as_str()
        .map_or_else(|| format!("HTTP {}", status.as_u16()), str::to_owned);
    if status.is_server_error() || status.as_u16() == 429 {
        Err(LinkError::Unreachable(message))
    } else {
        Err(LinkError::Refused(message))
    }
}

impl Link {
    async fn open(&mut self, o: &Opening) -> Result<OpenedView, LinkError> {
        let res = self
            .http
            .post(format!("{}/sessions", self.base))
            .bearer_auth(&self.token)
            .json(o)
            .send()
            .await;
        let opened: OpenedView = answer(res)
            .await?
            .json()
            .await
            .map_err(|e| LinkError::Unreachable(e.to_string()))?;
        self.key = opened.session_key.clone();
        Ok(opened)
    }

    fn session(&self, id: uuid::Uuid, tail: &str) -> String {
        format!("{}/sessions/{id}{tail}", self.base)
    }

    async fn check(&self, id: uuid::Uuid) -> Result<Verdict, LinkError> {
        let res = self
            .http
            .get(self.session(id, ""))
            .bearer_auth(&self.token)
            .header(SESSION_KEY_HEADER, &self.key)
            .send()
            .await;
        answer(res)
            .await?
            .json()
            .await
            .map_err(|e| LinkError::Unreachable(e.to_string()))
    }

    async fn record(&self, id: uuid::Uuid, seq: i32, data: Vec<u8>) -> Result<(), LinkError> {
        let res = self
            .http
            .put(self.session(id, &format!("/recording/{seq}")))
            .bearer_auth(&self.token)
            .header(SESSION_KEY_HEADER, &self.key)
            .body(data)
            .send()
            .await;
        answer(res).await.map(|_| ())
    }

    async fn close(&self, id: uuid::Uuid, c: &Closing) -> Result<(), LinkError> {
        let res = self
            .http
            .post(self.session(id, "/end"))
            .bearer_auth(&self.token)
            .header(SESSION_KEY_HEADER, &self.key)
            .json(c)
            .send()
            .await;
        answer(res).await.map(|_| ())
    }
}

/// The certificate in `SSH_USER_AUTH` (`publickey <type>-cert-v01@openssh.com <base64>`).
fn certificate_in(user_auth: &str) -> Option<String> {
    user_auth.lines().find_map(|line| {
        let rest = line.strip_prefix("publickey ")?;
        let kind = rest.split_whitespace().next()?;
        kind.contains("-cert-v01@openssh.com")
            .then(|| rest.trim().to_owned())
    })
}

/// Commands whose output is a file transfer's protocol, not something to replay.
fn is_transfer(command: &str) -> bool {
    let program = command.split_whitespace().next().unwrap_or_default();
    let name = program.rsplit('/').next().unwrap_or_default();
    matches!(name, "scp" | "sftp-server" | "internal-sftp" | "rsync")
}

/// The user sees one line, then the session goes.
fn say(raw_terminal: bool, line: &str) {
    let text = if raw_terminal {
        format!("\r\nelevate: {line}\r\n")
    } else {
        format!("elevate: {line}\n")
    };
    let _ = std::io::Write::write_all(&mut std::io::stderr(), text.as_bytes());
}

fn exit_code(status: ExitStatus) -> i32 {
    status
        .code()
        .or_else(|| status.signal().map(|s| 128 + s))
        .unwrap_or(1)
}

/// Puts the terminal back as it was when the helper ends, however it ends.
struct RawMode {
    saved: rustix::termios::Termios,
}

impl RawMode {
    fn enter() -> anyhow::Result<Self> {
        let stdin = rustix::stdio::stdin();
        let saved = rustix::termios::tcgetattr(stdin).context("reading the terminal settings")?;
        let mut raw = saved.clone();
        raw.make_raw();
        rustix::termios::tcsetattr(stdin, rustix::termios::OptionalActions::Now, &raw)
            .context("setting the terminal to raw mode")?;
        Ok(Self { saved })
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        let _ = rustix::termios::tcsetattr(
            rustix::stdio::stdin(),
            rustix::termios::OptionalActions::Now,
            &self.saved,
        );
    }
}

fn window() -> (u16, u16) {
    rustix::termios::tcgetwinsize(rustix::stdio::stdin())
        .map(|w| (w.ws_col, w.ws_row))
        .ok()
        .filter(|(c, r)| *c > 0 && *r > 0)
        .unwrap_or((80, 24))
}

/// The running shell or command, and the streams between it and the user.
struct Running {
    child: tokio::process::Child,
    input: Option<Box<dyn AsyncWrite + Unpin + Send>>,
    output: Option<Box<dyn AsyncRead + Unpin + Send>>,
    errors: Option<Box<dyn AsyncRead + Unpin + Send>>,
    pty: Option<pty_process::OwnedWritePty>,
}

fn spawn(shell: &str, command: Option<&str>, pty: bool) -> anyhow::Result<Running> {
    let login = format!(
        "-{}",
        std::path::Path::new(shell)
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("sh")
    );
    if pty {
        let (pty, pts) = pty_process::open().context("opening a pseudo-terminal")?;
        let (cols, rows) = window();
        pty.resize(pty_process::Size::new(rows, cols))
            .context("sizing the pseudo-terminal")?;
        let cmd = match command {
            Some(c) => pty_process::Command::new(shell).arg("-c").arg(c),
            None => pty_process::Command::new(shell).arg0(&login),
        };
        let child = cmd.spawn(pts).context("starting the shell")?;
        let (read, write) = pty.into_split();
        return Ok(Running {
            child,
            input: None,
            output: Some(Box::new(read)),
            errors: None,
            pty: Some(write),
        });
    }
    let mut cmd = tokio::process::Command::new(shell);
    match command {
        Some(c) => {
            cmd.arg("-c").arg(c);
        }
        None => {
            cmd.arg0(&login);
        }
    }
    let mut child = cmd
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .process_group(0)
        .spawn()
        .context("starting the command")?;
    let input = child.stdin.take().map(|s| Box::new(s) as _);
    let output = child.stdout.take().map(|s| Box::new(s) as _);
    let errors = child.stderr.take().map(|s| Box::new(s) as _);
    Ok(Running {
        child,
        input,
        output,
        errors,
        pty: None,
    })
}

/// SIGHUP to the session's process group, SIGKILL after the grace period.
async fn end_processes(child: &mut tokio::process::Child) -> Option<ExitStatus> {
    let group = child
        .id()
        .and_then(|id| rustix::process::Pid::from_raw(id as i32));
    if let Some(pid) = group {
        let _ = rustix::process::kill_process_group(pid, rustix::process::Signal::HUP);
    }
    if let Ok(Ok(status)) = tokio::time::timeout(GRACE, child.wait()).await {
        return Some(status);
    }
    if let Some(pid) = group {
        let _ = rustix::process::kill_process_group(pid, rustix::process::Signal::KILL);
    }
    child.wait().await.ok()
}

async fn read_some(
    r: &mut Option<Box<dyn AsyncRead + Unpin + Send>>,
    buf: &mut [u8],
) -> Option<usize> {
    match r {
        Some(r) => r.read(buf).await.ok(),
        None => std::future::pending().await,
    }
}

/// The most a helper sends in one upload (the server takes up to 128 KiB, and its body limit
/// is 256 KiB by default).
const UPLOAD_CHUNK: usize = 64 * 1024;

/// Sends what the recorder holds as the next chunks; keeps what elevate did not take for the
/// next try.
async fn flush(link: &Link, id: uuid::Uuid, seq: &mut i32, rec: &mut Recorder) -> bool {
    while rec.pending() > 0 {
        let data = rec.take_at_most(UPLOAD_CHUNK);
        if link.record(id, *seq, data.clone()).await.is_err() {
            rec.put_back(data);
            return false;
        }
        *seq += 1;
    }
    true
}

fn rfc(t: OffsetDateTime) -> String {
    crate::text::when(t)
}

pub async fn run(a: SessionArgs) -> anyhow::Result<i32> {
    let pty = std::io::stdin().is_terminal();
    let refuse = |line: String| {
        say(false, &line);
        Ok(1)
    };
    let Ok(token) = std::fs::read_to_string(&a.token_file) else {
        return refuse(format!(
            "cannot read this host's token from {}; no session without it (ask an admin)",
            a.token_file.display()
        ));
    };
    let Some(certificate) = std::env::var_os("SSH_USER_AUTH")
        .and_then(|p| std::fs::read_to_string(p).ok())
        .and_then(|t| certificate_in(&t))
    else {
        return refuse(
            "this login did not use an elevate certificate (or sshd lacks `ExposeAuthInfo yes`)"
                .into(),
        );
    };
    let principal = std::env::var("USER")
        .or_else(|_| std::env::var("LOGNAME"))
        .unwrap_or_default();
    let command = std::env::var("SSH_ORIGINAL_COMMAND").ok();
    let shell = std::env::var("SHELL")
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "/bin/sh".into());
    let http = super::client::http_client(Duration::from_secs(10), a.ca_cert.as_deref())?;
    let mut link = Link {
        http,
        base: format!(
            "{}/api/host/v1/{}",
            a.server.trim_end_matches('/'),
            a.tenant
        ),
        token: token.trim().to_owned(),
        key: String::new(),
    };
    let opening = Opening {
        certificate,
        principal: principal.clone(),
        command: command.clone(),
        pty,
    };
    let opened = match link.open(&opening).await {
        Ok(o) => o,
        Err(LinkError::Refused(m)) => return refuse(format!("session refused: {m}")),
        Err(LinkError::Unreachable(m)) => {
            return refuse(format!(
                "cannot reach elevate at {} ({m}); no session without it",
                a.server
            ));
        }
    };
    let id = opened.session_id;
    let (cols, rows) = if pty { window() } else { (80, 24) };
    let title = format!("{principal} on request {}", opened.request_id);
    let term = std::env::var("TERM").ok();
    let mut rec = Recorder::new(
        &Header {
            width: cols,
            height: rows,
            timestamp: crate::clock::SystemClock.now().unix_timestamp(),
            title: &title,
            term: term.as_deref(),
            shell: Some(&shell),
        },
        opened.record_input,
    );
    let transfer = command.as_deref().is_some_and(is_transfer);
    if transfer {
        rec.note(&format!(
            "file transfer ({}): its data is not recorded\r\n",
            command.as_deref().unwrap_or_default()
        ));
    }
    let mut seq = 0;
    flush(&link, id, &mut seq, &mut rec).await;

    let raw = if pty { RawMode::enter().ok() } else { None };
    let mut running = match spawn(&shell, command.as_deref(), pty) {
        Ok(r) => r,
        Err(e) => {
            drop(raw);
            say(false, &format!("cannot start the session: {e:#}"));
            let _ = link
                .close(
                    id,
                    &Closing {
                        reason: EndReason::HelperError,
                        exit_status: None,
                    },
                )
                .await;
            return Ok(1);
        }
    };
    let (outcome, status) = relay(
        &a,
        &link,
        id,
        &opened,
        &mut running,
        &mut rec,
        &mut seq,
        raw.is_some(),
        transfer,
    )
    .await;
    drop(raw);
    if let Some(line) = &outcome.message {
        say(false, line);
    }
    let code = status.map(exit_code);
    // What is still buffered goes up before the end is reported (a few tries).
    for _ in 0..3 {
        if flush(&link, id, &mut seq, &mut rec).await {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let _ = link
        .close(
            id,
            &Closing {
                reason: outcome.reason,
                exit_status: code,
            },
        )
        .await;
    Ok(match outcome.reason {
        EndReason::Exit => code.unwrap_or(1),
        _ => code.unwrap_or(1).max(1),
    })
}

/// How a session ended, and the line for the user when elevate ended it.
struct Outcome {
    reason: EndReason,
    message: Option<String>,
}

#[allow(clippy::too_many_arguments)]
async fn relay(
    a: &SessionArgs,
    link: &Link,
    id: uuid::Uuid,
    opened: &OpenedView,
    running: &mut Running,
    rec: &mut Recorder,
    seq: &mut i32,
    raw: bool,
    transfer: bool,
) -> (Outcome, Option<ExitStatus>) {
    let mut stdin = tokio::io::stdin();
    let mut stdout = tokio::io::stdout();
    let mut stderr = tokio::io::stderr();
    let (mut winch, mut hup, mut term) = match (
        signal(SignalKind::window_change()),
        signal(SignalKind::hangup()),
        signal(SignalKind::terminate()),
    ) {
        (Ok(w), Ok(h), Ok(t)) => (w, h, t),
        _ => {
            let status = end_processes(&mut running.child).await;
            let outcome = Outcome {
                reason: EndReason::HelperError,
                message: Some("cannot watch for signals; session ended".into()),
            };
            return (outcome, status);
        }
    };
    let mut not_after = opened.not_after;
    let valid_before = opened.valid_before;
    let mut reachable = true;
    let deadline = |not_after: OffsetDateTime, reachable: bool| {
        let end = if reachable {
            not_after
        } else {
            not_after.min(valid_before)
        };
        let left = (end - crate::clock::SystemClock.now()).max(time::Duration::ZERO);
        tokio::time::Instant::now() + Duration::from_secs_f64(left.as_seconds_f64())
    };
    let mut tick = tokio::time::interval(Duration::from_secs(a.check_every.max(1)));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut inbuf = vec![0u8; 16 * 1024];
    let mut outbuf = vec![0u8; 32 * 1024];
    let mut errbuf = vec![0u8; 32 * 1024];
    let mut stdin_open = true;
    let end_by = |reason: EndReason, message: String| Outcome {
        reason,
        message: Some(message),
    };
    let outcome = loop {
        let until = deadline(not_after, reachable);
        tokio::select! {
            n = stdin.read(&mut inbuf), if stdin_open => match n {
                Ok(n) if n > 0 => {
                    if !transfer {
                        rec.input(&inbuf[..n]);
                    }
                    let ok = match (&mut running.pty, &mut running.input) {
                        (Some(p), _) => p.write_all(&inbuf[..n]).await.is_ok(),
                        (None, Some(i)) => i.write_all(&inbuf[..n]).await.is_ok(),
                        _ => false,
                    };
                    if !ok && running.pty.is_none() {
                        running.input = None;
                    }
                }
                _ => {
                    stdin_open = false;
                    if raw {
                        // The client went away.
                        break Outcome { reason: EndReason::Exit, message: None };
                    }
                    // End of input for the command: close its stdin.
                    running.input = None;
                }
            },
            n = read_some(&mut running.output, &mut outbuf) => match n {
                Some(n) if n > 0 => {
                    if !transfer {
                        rec.output(&outbuf[..n]);
                    }
                    if stdout.write_all(&outbuf[..n]).await.is_err() || stdout.flush().await.is_err() {
                        break Outcome { reason: EndReason::Exit, message: None };
                    }
                }
                _ => running.output = None,
            },
            n = read_some(&mut running.errors, &mut errbuf) => match n {
                Some(n) if n > 0 => {
                    if !transfer {
                        rec.output(&errbuf[..n]);
                    }
                    let _ = stderr.write_all(&errbuf[..n]).await;
                    let _ = stderr.flush().await;
                }
                _ => running.errors = None,
            },
            status = running.child.wait() => {
                // Output still on its way comes first (briefly: a background job may hold it).
                let drain = async {
                    while running.output.is_some() || running.errors.is_some() {
                        tokio::select! {
                            n = read_some(&mut running.output, &mut outbuf) => match n {
                                Some(n) if n > 0 => {
                                    if !transfer { rec.output(&outbuf[..n]); }
                                    let _ = stdout.write_all(&outbuf[..n]).await;
                                }
                                _ => running.output = None,
                            },
                            n = read_some(&mut running.errors, &mut errbuf) => match n {
                                Some(n) if n > 0 => {
                                    if !transfer { rec.output(&errbuf[..n]); }
                                    let _ = stderr.write_all(&errbuf[..n]).await;
                                }
                                _ => running.errors = None,
                            },
                        }
                    }
                };
                let _ = tokio::time::timeout(Duration::from_secs(1), drain).await;
                let _ = stdout.flush().await;
                let _ = stderr.flush().await;
                return (Outcome { reason: EndReason::Exit, message: None }, status.ok());
            },
            _ = winch.recv() => {
                if let Some(p) = &running.pty {
                    let (cols, rows) = window();
                    let _ = p.resize(pty_process::Size::new(rows, cols));
                    rec.resize(cols, rows);
                }
            },
            _ = hup.recv() => break Outcome { reason: EndReason::Exit, message: None },
            _ = term.recv() => break end_by(EndReason::HelperError, "the helper was told to stop".into()),
            _ = tokio::time::sleep_until(until) => {
                break if reachable {
                    end_by(EndReason::Expired, format!("the grant ended at {}; session closed", rfc(not_after)))
                } else {
                    end_by(EndReason::Expired, format!("the certificate ended at {} and elevate cannot be reached; session closed", rfc(valid_before.min(not_after))))
                };
            },
            _ = tick.tick() => {
                flush(link, id, seq, rec).await;
                match link.check(id).await {
                    Ok(v) if v.active => {
                        if !reachable {
                            say(raw, "elevate is reachable again");
                        }
                        reachable = true;
                        not_after = v.not_after;
                    }
                    Ok(v) => {
                        let reason = v.end_reason.unwrap_or(EndReason::Revoked);
                        let message = v.message.unwrap_or_else(|| "the grant is no longer active".into());
                        break end_by(reason, format!("{message}; session closed"));
                    }
                    Err(LinkError::Refused(m)) => {
                        break end_by(EndReason::HelperError, format!("elevate refused this host ({m}); session closed"));
                    }
                    Err(LinkError::Unreachable(_)) => {
                        if reachable {
                            say(raw, &format!(
                                "cannot reach elevate; this session ends at {} at the latest (the certificate's end)",
                                rfc(valid_before.min(not_after))
                            ));
                        }
                        reachable = false;
                    }
                }
            },
        }
    };
    if let Some(m) = &outcome.message {
        rec.note(&format!("\r\nelevate: {m}\r\n"));
        if raw {
            say(true, m);
        }
    }
    let status = end_processes(&mut running.child).await;
    // Already said on the raw terminal; the caller says it otherwise.
    let outcome = if raw {
        Outcome {
            reason: outcome.reason,
            message: None,
        }
    } else {
        outcome
    };
    (outcome, status)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_certificate_is_found_in_ssh_user_auth_and_transfers_are_recognised() {
        let auth =
            "publickey ssh-ed25519 AAAAkey\npublickey ssh-ed25519-cert-v01@openssh.com AAAAcert\n";
        assert_eq!(
            certificate_in(auth).as_deref(),
            Some("ssh-ed25519-cert-v01@openssh.com AAAAcert")
        );
        assert_eq!(certificate_in("publickey ssh-ed25519 AAAA\n"), None);
        assert_eq!(certificate_in("password\n"), None);
        assert!(is_transfer("scp -t /tmp/x"));
        assert!(is_transfer("/usr/lib/openssh/sftp-server"));
        assert!(is_transfer("rsync --server -e.LsfxC . /tmp"));
        assert!(!is_transfer("echo scp"));
    }
}
