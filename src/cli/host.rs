//! `elevate host sync`: run on each SSH host (a systemd timer, see `deploy/sshd/`). Fetches the
//! tenant's user-CA keys and KRL and replaces the files `sshd` reads atomically. Anything wrong
//! with the answer — unreachable server, an error page, a key list that does not parse, a KRL
//! without its magic — leaves the current files alone and exits non-zero.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, bail};
use clap::{Args, Subcommand};

#[derive(Debug, Subcommand)]
pub enum HostCommand {
    /// Fetch CA keys and KRL into DIR (user-ca.pub, revoked.krl).
    Sync(SyncArgs),
    /// sshd's ForceCommand (with `ExposeAuthInfo yes`): runs the session while its grant is
    /// active, records it, and ends it at the grant's end or within seconds of a revocation.
    Session(super::host_session::SessionArgs),
}

#[derive(Debug, Args)]
pub struct SyncArgs {
    /// The elevate server, like https://elevate.example.com.
    #[arg(long, env = "ELEVATE_SERVER")]
    server: String,
    /// The organisation, by its slug (like acme).
    #[arg(long)]
    tenant: String,
    /// Where sshd reads them: user-ca.pub and revoked.krl.
    #[arg(long, default_value = "/etc/ssh/elevate")]
    dir: PathBuf,
    /// CA certificate to trust for the server (e.g. the development certificate).
    #[arg(long, env = "ELEVATE_CA_CERT", value_name = "FILE")]
    ca_cert: Option<PathBuf>,
}

pub const CA_FILE: &str = "user-ca.pub";
pub const KRL_FILE: &str = "revoked.krl";

async fn fetch(http: &reqwest::Client, url: &str) -> anyhow::Result<Vec<u8>> {
    let res = http
        .get(url)
        .send()
        .await
        .with_context(|| format!("cannot reach {url}"))?;
    let status = res.status();
    if !status.is_success() {
        bail!("{url} answered HTTP {}", status.as_u16());
    }
    Ok(res
        .bytes()
        .await
        .with_context(|| format!("reading {url}"))?
        .to_vec())
}

/// Every line must be an OpenSSH public key; at least one.
fn check_ca_keys(bytes: &[u8]) -> anyhow::Result<usize> {
    let text = std::str::from_utf8(bytes).context("the CA key list is not text")?;
    let mut n = 0;
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        ssh_key::PublicKey::from_openssh(line.trim()).with_context(|| {
            format!("the CA key list has a line that is not a public key: {line:.40}")
        })?;
        n += 1;
    }
    if n == 0 {
        bail!("the CA key list is empty");
    }
    Ok(n)
}

/// Write beside, flush to disk, then rename over: `sshd` sees the old file or the new one.
fn replace(dir: &Path, name: &str, bytes: &[u8]) -> anyhow::Result<()> {
    let tmp = dir.join(format!(".{name}.tmp"));
    let target = dir.join(name);
    let mut f =
        std::fs::File::create(&tmp).with_context(|| format!("writing {}", tmp.display()))?;
    f.write_all(bytes)?;
    f.sync_all()?;
    drop(f);
    #[cfg(unix)]
    std::fs::set_permissions(&tmp, std::os::unix::fs::PermissionsExt::from_mode(0o644))?;
    std::fs::rename(&tmp, &target).with_context(|| format!("replacing {}", target.display()))?;
    Ok(())
}

pub async fn run(command: HostCommand) -> anyhow::Result<()> {
    let args = match command {
        HostCommand::Sync(args) => args,
        HostCommand::Session(args) => {
            let code = super::host_session::run(args).await?;
            std::process::exit(code);
        }
    };
    let http = super::client::http_client(Duration::from_secs(20), args.ca_cert.as_deref())?;
    let base = format!(
        "{}/t/{}/ssh",
        args.server.trim_end_matches('/'),
        args.tenant
    );
    let keep = || format!("kept the files in {}", args.dir.display());
    let ca = fetch(&http, &format!("{base}/user-ca.pub"))
        .await
        .with_context(keep)?;
    let keys = check_ca_keys(&ca).with_context(keep)?;
    let krl = fetch(&http, &format!("{base}/krl"))
        .await
        .with_context(keep)?;
    if !crate::ssh::krl::looks_valid(&krl) {
        return Err(anyhow::anyhow!(
            "the KRL from {base}/krl is not an OpenSSH KRL"
        ))
        .with_context(keep);
    }
    std::fs::create_dir_all(&args.dir)
        .with_context(|| format!("creating {}", args.dir.display()))?;
    // KRL first: a host never trusts a new CA key before it has the matching revocations.
    replace(&args.dir, KRL_FILE, &krl)?;
    replace(&args.dir, CA_FILE, &ca)?;
    println!(
        "synced {} CA key(s) and a {}-byte KRL into {}",
        keys,
        krl.len(),
        args.dir.display()
    );
    Ok(())
}
