//! The engineer's SSH commands: `elevate ssh-cert ID --key FILE.pub` writes a certificate beside
//! the key; `elevate ssh [USER@]HOST` does the whole dance in one command — find or request a
//! grant, make an ephemeral key, get it certified, hand it to ssh-agent (or a private temp dir),
//! run `ssh`.

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::time::Duration;

use anyhow::{Context, bail};
use clap::Args;
use serde_json::{Value, json};
use ssh_key::rand_core::OsRng;
use ssh_key::{Algorithm, Certificate, LineEnding, PrivateKey};
use time::OffsetDateTime;

use crate::clock::Clock;
use time::format_description::well_known::Rfc3339;

use super::client::{Api, describe};

#[derive(Debug, Args)]
pub struct SshCertArgs {
    /// The request whose active grant the certificate is for.
    id: String,
    /// Your public key (e.g. ~/.ssh/id_ed25519.pub); the certificate goes beside it.
    #[arg(long, value_name = "FILE.pub")]
    key: PathBuf,
    /// Print JSON (for scripts) instead of text.
    #[arg(long)]
    pub json: bool,
}

/// `~/.ssh/id_ed25519.pub` → `~/.ssh/id_ed25519-cert.pub`, where `ssh` looks for it.
fn cert_path(key: &Path) -> PathBuf {
    let name = key
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let stem = name.strip_suffix(".pub").unwrap_or(&name);
    key.with_file_name(format!("{stem}-cert.pub"))
}

/// The public key in `path`, checked here so that nothing else (a private key above all) is
/// ever sent to the server.
fn read_public_key(path: &Path) -> anyhow::Result<String> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    if text.contains("PRIVATE KEY") {
        anyhow::bail!(
            "{} is a private key: give its public half ({}.pub); nothing was sent",
            path.display(),
            path.display()
        );
    }
    ssh_key::PublicKey::from_openssh(text.trim()).with_context(|| {
        format!(
            "{} is not an OpenSSH public key (like ~/.ssh/id_ed25519.pub); nothing was sent",
            path.display()
        )
    })?;
    Ok(text.trim().to_owned())
}

pub async fn ssh_cert(args: SshCertArgs) -> anyhow::Result<()> {
    // Before the login is even read: a wrong file never gets near the network.
    let public_key = read_public_key(&args.key)?;
    let api = Api::from_saved()?;
    let issued = api
        .post(
            &format!("/requests/{}/ssh-certificate", args.id),
            json!({ "public_key": public_key }),
        )
        .await?;
    let path = cert_path(&args.key);
    let text = issued["certificate"]
        .as_str()
        .context("no certificate in the answer")?;
    std::fs::write(&path, format!("{}\n", text.trim_end()))
        .with_context(|| format!("writing {}", path.display()))?;
    if args.json {
        let mut out = issued.clone();
        out["path"] = json!(path.display().to_string());
        println!("{out}");
    } else {
        println!(
            "wrote {} (serial {}, principals {}, valid until {})",
            path.display(),
            issued["serial"],
            issued["principals"]
                .as_array()
                .map(|p| p
                    .iter()
                    .filter_map(Value::as_str)
                    .collect::<Vec<_>>()
                    .join(","))
                .unwrap_or_default(),
            issued["valid_before"].as_str().unwrap_or("?")
        );
    }
    Ok(())
}

#[derive(Debug, Args)]
pub struct SshArgs {
    /// Where to log in: HOST or USER@HOST [default user: the profile's first principal].
    destination: String,
    /// The access profile [default: the only SSH profile you may request].
    #[arg(long)]
    profile: Option<String>,
    /// When a new request is needed: how long (like 30m).
    #[arg(long = "for", value_name = "DURATION")]
    duration: Option<String>,
    /// When a new request is needed: the justification.
    #[arg(long, default_value = "")]
    reason: String,
    /// When a new request is needed: the ticket.
    #[arg(long)]
    ticket: Option<String>,
    /// The ssh client to run.
    #[arg(
        long,
        env = "ELEVATE_SSH",
        default_value = "ssh",
        value_name = "PROGRAM"
    )]
    ssh_program: PathBuf,
    /// Passed to ssh after the destination: options and the remote command (after `--`).
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    ssh_args: Vec<String>,
}

fn principals_of(profile: &Value) -> Vec<String> {
    profile["ssh"]["principals"]
        .as_array()
        .map(|p| {
            p.iter()
                .filter_map(Value::as_str)
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default()
}

/// The profile to use: the named one, or the only SSH profile the caller may request.
async fn pick_profile(api: &Api, wanted: Option<&str>) -> anyhow::Result<Value> {
    let all = api.get("/profiles").await?;
    let profiles = all["profiles"].as_array().cloned().unwrap_or_default();
    if let Some(name) = wanted {
        let p = profiles
            .into_iter()
            .find(|p| p["name"] == name)
            .with_context(|| format!("no profile {name}"))?;
        if p["ssh"].is_null() {
            bail!("profile {name} grants no SSH access");
        }
        return Ok(p);
    }
    let ssh: Vec<Value> = profiles
        .into_iter()
        .filter(|p| !p["ssh"].is_null() && p["can_request"] == json!(true))
        .collect();
    if ssh.len() > 1 {
        // Several: the one with an active grant, if only one has.
        let active = api.get("/requests?mine=true&state=active").await?;
        let granted: Vec<&Value> = ssh
            .iter()
            .filter(|p| {
                active["requests"]
                    .as_array()
                    .is_some_and(|l| l.iter().any(|r| r["profile"] == p["name"]))
            })
            .collect();
        if let [one] = granted.as_slice() {
            return Ok((*one).clone());
        }
    }
    match ssh.as_slice() {
        [one] => Ok(one.clone()),
        [] => bail!("no SSH profile you may request"),
        many => bail!(
            "several SSH profiles ({}): choose one with --profile",
            many.iter()
                .filter_map(|p| p["name"].as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

fn parse_time(v: &Value) -> Option<OffsetDateTime> {
    v.as_str()
        .and_then(|s| OffsetDateTime::parse(s, &Rfc3339).ok())
}

/// An active grant of `profile` with at least a minute left, or a new request waited through to
/// its decision (progress on stderr).
async fn ensure_grant(api: &Api, profile: &str, args: &SshArgs) -> anyhow::Result<Value> {
    let mine = api.get("/requests?mine=true&state=active").await?;
    let soon = crate::clock::SystemClock.now() + time::Duration::minutes(1);
    if let Some(r) = mine["requests"].as_array().into_iter().flatten().find(|r| {
        r["profile"] == profile && parse_time(&r["grant"]["not_after"]).is_some_and(|t| t > soon)
    }) {
        eprintln!("using {}", describe(r));
        return Ok(r.clone());
    }
    let mut r = api
        .post(
            "/requests",
            json!({
                "profile": profile,
                "duration": args.duration,
                "justification": args.reason,
                "ticket": args.ticket,
            }),
        )
        .await?;
    let id = r["id"].as_str().unwrap_or_default().to_owned();
    eprintln!("requested {}", describe(&r));
    let mut seen = usize::MAX;
    while matches!(r["state"].as_str(), Some("pending" | "scheduled")) {
        let approvals = r["approvals"].as_array().map_or(0, Vec::len);
        if approvals != seen {
            eprintln!(
                "waiting for approval ({approvals}/{}); Ctrl-C stops waiting, the request stays",
                r["approvals_required"]
            );
            seen = approvals;
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
        r = api.get(&format!("/requests/{id}")).await?;
    }
    if r["state"] != "active" {
        bail!("request {id} is {}", r["state"].as_str().unwrap_or("?"));
    }
    eprintln!("approved: {}", describe(&r));
    Ok(r)
}

/// Where the key lives while `ssh` runs when there is no agent: a 0700 temp dir, removed after.
struct TempKeyDir(PathBuf);

impl Drop for TempKeyDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn temp_key_dir(key: &PrivateKey, cert: &str) -> anyhow::Result<(TempKeyDir, PathBuf, PathBuf)> {
    let mut rand = [0u8; 8];
    getrandom::getrandom(&mut rand).map_err(|e| anyhow::anyhow!("random: {e}"))?;
    let dir = std::env::temp_dir().join(format!("elevate-ssh-{}", hex::encode(rand)));
    std::fs::create_dir(&dir).with_context(|| format!("creating {}", dir.display()))?;
    #[cfg(unix)]
    std::fs::set_permissions(&dir, std::os::unix::fs::PermissionsExt::from_mode(0o700))?;
    let guard = TempKeyDir(dir.clone());
    let key_path = dir.join("id_ed25519");
    let pem = key.to_openssh(LineEnding::LF)?;
    crate::files::write_private(&key_path, pem.as_bytes())?;
    let cert_path = dir.join("id_ed25519-cert.pub");
    std::fs::write(&cert_path, format!("{}\n", cert.trim_end()))?;
    Ok((guard, key_path, cert_path))
}

pub async fn ssh(args: SshArgs) -> anyhow::Result<ExitCode> {
    let api = Api::from_saved()?;
    let profile = pick_profile(&api, args.profile.as_deref()).await?;
    let profile_name = profile["name"].as_str().unwrap_or_default().to_owned();
    let grant = ensure_grant(&api, &profile_name, &args).await?;
    let id = grant["id"].as_str().unwrap_or_default();

    let mut key = PrivateKey::random(&mut OsRng, Algorithm::Ed25519)?;
    key.set_comment(format!("elevate {id}"));
    let public = key.public_key().to_openssh()?;
    let issued = api
        .post(
            &format!("/requests/{id}/ssh-certificate"),
            json!({ "public_key": public }),
        )
        .await?;
    let cert_text = issued["certificate"]
        .as_str()
        .context("no certificate in the answer")?;
    let cert = Certificate::from_openssh(cert_text).context("the server sent a bad certificate")?;
    let lifetime = parse_time(&issued["valid_before"])
        .map(|t| (t - crate::clock::SystemClock.now()).whole_seconds().max(1))
        .unwrap_or(60);
    eprintln!(
        "certificate serial {} for {} valid until {}",
        issued["serial"],
        principals_of(&profile).join(","),
        issued["valid_before"].as_str().unwrap_or("?")
    );

    let destination = if args.destination.contains('@') {
        args.destination.clone()
    } else {
        let user = principals_of(&profile)
            .into_iter()
            .next()
            .context("the profile has no principals")?;
        format!("{user}@{}", args.destination)
    };
    let mut cmd = Command::new(&args.ssh_program);
    let agent = std::env::var_os("SSH_AUTH_SOCK").filter(|s| !s.is_empty());
    let added = match &agent {
        Some(sock) => match crate::ssh::agent::add_certificate(
            Path::new(sock),
            &key,
            &cert,
            Duration::from_secs(u64::try_from(lifetime).unwrap_or(60)),
            &format!("elevate {profile_name} {id}"),
        ) {
            Ok(()) => {
                eprintln!("added to ssh-agent for {lifetime}s");
                true
            }
            Err(e) => {
                eprintln!("warning: {e}; using a temporary key file instead");
                false
            }
        },
        None => false,
    };
    let _dir = if added {
        None
    } else {
        let (dir, key_path, cert_path) = temp_key_dir(&key, cert_text)?;
        cmd.arg("-i")
            .arg(&key_path)
            .arg("-o")
            .arg(format!("CertificateFile={}", cert_path.display()))
            .arg("-o")
            .arg("IdentitiesOnly=yes");
        Some(dir)
    };
    drop(key);
    cmd.arg(&destination).args(&args.ssh_args);
    let status = cmd
        .status()
        .with_context(|| format!("running {}", args.ssh_program.display()))?;
    Ok(match status.code() {
        Some(c) => ExitCode::from(u8::try_from(c).unwrap_or(1)),
        None => ExitCode::FAILURE,
    })
}
