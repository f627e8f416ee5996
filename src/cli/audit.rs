//! `elevate audit ...`: export the log, verify it (an export offline with only the public key,
//! or the live store), and manage the streaming sinks.
//!
//! `export` goes through the API with the saved login (what an auditor has) or, with
//! `--tenant`, straight from the store on the server (what an operator has). `verify --file`
//! needs nothing but the file and the public key; `verify` without it checks the live store.

use std::io::{BufReader, Write};
use std::path::PathBuf;

use anyhow::{Context, bail};
use clap::Subcommand;

use super::{StoreArgs, open_store};
use crate::admin;
use crate::audit::Ctx;
use crate::audit::anchor::Restored;
use crate::audit::checkpoint::parse_public_keys;
use crate::audit::export::Filter;
use crate::audit::verify::{Pin, parse_pins, verify_reader_pinned, verify_store_pinned};
use crate::audit::{Actor, Origin};
use crate::clock::{Clock, SystemClock};
use crate::store::Store;

#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Write the log as JSON lines (events, checkpoints, and a signed head last).
    Export {
        /// Write here instead of stdout.
        #[arg(long, short, value_name = "FILE")]
        output: Option<PathBuf>,
        /// Read from the store on this server instead of the API (operators).
        #[arg(long)]
        tenant: Option<String>,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Recompute the chain and check every checkpoint; name the first broken link.
    Verify {
        /// An export (`-` for stdin) to verify offline.
        #[arg(long, value_name = "FILE", requires = "public_key")]
        file: Option<PathBuf>,
        /// The tenant's audit public key(s), OpenSSH format, one per line. For the live store,
        /// pins the key instead of trusting the one stored beside the log.
        #[arg(long, value_name = "FILE")]
        public_key: Option<PathBuf>,
        /// Without --file: the tenant to check in the live store [default: the only one].
        #[arg(long, conflicts_with = "file")]
        tenant: Option<String>,
        /// Checkpoints published earlier (JSON lines, as `/t/{tenant}/audit/checkpoint` serves
        /// them): the chain must pass through each. Repeatable.
        #[arg(long, value_name = "FILE")]
        checkpoint: Vec<PathBuf>,
        /// Live store: this replica's audit anchors [default: beside the master key]; the chain
        /// must pass through the tenant's anchor.
        #[arg(long, value_name = "DIR", conflicts_with = "file")]
        anchor_dir: Option<PathBuf>,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// After restoring the database from a backup: record the events this replica's audit
    /// anchor knew but the log no longer holds (`audit.restored`), reset the anchor and sign the
    /// head. Without it the signer refuses a log shorter than what it has seen.
    Restored {
        /// The organisation, by its slug (like acme).
        #[arg(long)]
        tenant: String,
        /// Why (recorded in the event), e.g. the backup restored.
        #[arg(long)]
        reason: Option<String>,
        /// This replica's audit anchors [default: beside the master key].
        #[arg(long, value_name = "DIR")]
        anchor_dir: Option<PathBuf>,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Where the log is streamed (webhook or syslog).
    Sink {
        #[command(subcommand)]
        command: SinkCommand,
    },
}

#[derive(Debug, Subcommand)]
pub enum SinkCommand {
    /// Stream a tenant's log to a webhook (secret read from stdin, signed like notification
    /// webhooks) or to syslog (`tcp://HOST:PORT` or `udp://HOST:PORT`, RFC 5424).
    Add {
        /// The organisation, by its slug (like acme).
        #[arg(long)]
        tenant: String,
        #[arg(
            long,
            value_name = "URL",
            conflicts_with = "syslog",
            required_unless_present = "syslog"
        )]
        /// Send to this URL (HTTPS POST, JSON lines).
        webhook: Option<String>,
        /// Send to this syslog server (host:port over TCP).
        #[arg(long, value_name = "tcp://HOST:PORT")]
        syslog: Option<String>,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Each sink and how far behind it is.
    List {
        #[command(flatten)]
        store: StoreArgs,
    },
}

fn ctx() -> Ctx {
    Ctx {
        actor: Actor::cli(),
        origin: Origin::default(),
        now: SystemClock.now(),
    }
}

pub async fn run(command: AuditCommand) -> anyhow::Result<()> {
    match command {
        AuditCommand::Export {
            output,
            tenant,
            store,
        } => export(output, tenant, store).await,
        AuditCommand::Verify {
            file: Some(file),
            public_key: Some(key),
            checkpoint,
            ..
        } => verify_file(&file, &key, &checkpoint),
        AuditCommand::Verify {
            tenant,
            store,
            public_key,
            checkpoint,
            anchor_dir,
            ..
        } => verify_live(tenant, public_key, &checkpoint, anchor_dir, store).await,
        AuditCommand::Restored {
            tenant,
            reason,
            anchor_dir,
            store,
        } => restored(tenant, reason, anchor_dir, store).await,
        AuditCommand::Sink {
            command:
                SinkCommand::Add {
                    tenant,
                    webhook,
                    syslog,
                    store,
                },
        } => add_sink(tenant, webhook, syslog, store).await,
        AuditCommand::Sink {
            command: SinkCommand::List { store },
        } => list_sinks(store).await,
    }
}

fn open_output(output: &Option<PathBuf>) -> anyhow::Result<Box<dyn Write>> {
    Ok(match output {
        Some(p) => Box::new(std::io::BufWriter::new(
            std::fs::File::create(p).with_context(|| format!("creating {}", p.display()))?,
        )),
        None => Box::new(std::io::BufWriter::new(std::io::stdout().lock())),
    })
}

async fn export(
    output: Option<PathBuf>,
    tenant: Option<String>,
    args: StoreArgs,
) -> anyhow::Result<()> {
    match tenant {
        None => {
            let api = super::client::Api::from_saved()?;
            let mut res = api.get_streaming("/audit/export").await?;
            let mut out = open_output(&output)?;
            while let Some(chunk) = res.chunk().await.context("the export was cut off")? {
                out.write_all(&chunk)?;
            }
            out.flush()?;
        }
        Some(slug) => {
            let (store, key) = args.open_with_key().await?;
            let tenant = admin::tenant_by_slug(&store, &slug).await?;
            let c = ctx();
            let mut tx = store.tenant(tenant.tenant_id).await?;
            tx.append_audit(&c.event("audit.exported", slug.clone()), c.now)
                .await?;
            tx.commit().await?;
            let mut rx = crate::audit::export::spawn(
                store.clone(),
                std::sync::Arc::new(key),
                tenant.tenant_id,
                Filter::default(),
                c.now,
            );
            let mut out = open_output(&output)?;
            while let Some(chunk) = rx.recv().await {
                out.write_all(&chunk?)?;
            }
            out.flush()?;
            store.close().await;
        }
    }
    Ok(())
}

fn read_keys(key: &PathBuf) -> anyhow::Result<Vec<ssh_key::PublicKey>> {
    let keys = std::fs::read_to_string(key)
        .with_context(|| format!("reading the public key {}", key.display()))?;
    parse_public_keys(&keys).map_err(|e| anyhow::anyhow!("public key file {}: {e}", key.display()))
}

/// Published checkpoints from `--checkpoint` files, each checked against `keys`.
fn read_pins(files: &[PathBuf], keys: &[ssh_key::PublicKey]) -> anyhow::Result<Vec<Pin>> {
    let mut pins = Vec::new();
    for f in files {
        let text = std::fs::read_to_string(f)
            .with_context(|| format!("reading the checkpoint {}", f.display()))?;
        pins.extend(parse_pins(&text, keys).map_err(|e| anyhow::anyhow!("{}: {e}", f.display()))?);
    }
    Ok(pins)
}

fn verify_file(file: &PathBuf, key: &PathBuf, checkpoints: &[PathBuf]) -> anyhow::Result<()> {
    let keys = read_keys(key)?;
    let pins = read_pins(checkpoints, &keys)?;
    let started = std::time::Instant::now();
    let result = if file.as_os_str() == "-" {
        verify_reader_pinned(std::io::stdin().lock(), keys, pins)
    } else {
        let f = std::fs::File::open(file).with_context(|| format!("opening {}", file.display()))?;
        verify_reader_pinned(BufReader::with_capacity(1 << 20, f), keys, pins)
    }
    .with_context(|| format!("reading {}", file.display()))?;
    match result {
        Ok(summary) => {
            println!("{summary} ({:.2} s)", started.elapsed().as_secs_f64());
            Ok(())
        }
        Err(broken) => bail!("{broken}"),
    }
}

/// Where this replica's anchors are: `--anchor-dir`, else beside the master key file (the same
/// default as `elevate serve`).
pub(super) fn anchor_dir(explicit: Option<PathBuf>, args: &StoreArgs) -> PathBuf {
    explicit.unwrap_or_else(|| match &args.master_key_file {
        Some(f) => f
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .map_or_else(|| PathBuf::from("."), std::path::Path::to_path_buf),
        None => crate::store::data_dir_for(&args.database),
    })
}

async fn verify_live(
    tenant: Option<String>,
    key: Option<PathBuf>,
    checkpoints: &[PathBuf],
    anchors: Option<PathBuf>,
    args: StoreArgs,
) -> anyhow::Result<()> {
    let pinned = key.as_ref().map(read_keys).transpose()?;
    let anchors = anchor_dir(anchors, &args);
    let store = open_store(&args.database).await?;
    let tenant = match tenant {
        Some(slug) => admin::tenant_by_slug(&store, &slug).await?,
        None => {
            let mut all = store.tenants().await?;
            if all.len() != 1 {
                bail!(
                    "the store has {} tenants: name one with --tenant (or verify an export with --file F --public-key K)",
                    all.len()
                );
            }
            all.remove(0)
        }
    };
    let mut pins = Vec::new();
    if !checkpoints.is_empty() {
        let keys = match &pinned {
            Some(k) => k.clone(),
            None => {
                let mut tx = store.tenant(tenant.tenant_id).await?;
                let keys = crate::signing_keys::audit_public_keys(&mut tx).await?;
                tx.commit().await?;
                keys.iter()
                    .filter_map(|(_, k)| ssh_key::PublicKey::from_openssh(k).ok())
                    .collect()
            }
        };
        pins = read_pins(checkpoints, &keys)?;
    }
    if let Some(a) = crate::audit::anchor::load(&anchors, tenant.tenant_id)? {
        pins.push(Pin {
            seq: a.seq,
            hash: a.hash,
            what: "this replica's anchor".into(),
        });
    }
    let result = verify_store_pinned(&store, tenant.tenant_id, pinned, pins).await?;
    let recordings = crate::broker::sessions::verify_recordings(&store, &tenant).await;
    store.close().await;
    let s = match result {
        Ok(s) => s,
        Err(broken) => bail!("tenant {}: {broken}", tenant.slug),
    };
    println!(
        "{s}; {} events after the latest checkpoint (tenant {})",
        s.head_seq - s.signed_through,
        tenant.slug
    );
    let r = recordings?;
    if !r.altered.is_empty() {
        bail!(
            "tenant {}: {} session recording(s) differ from the hash in their session.ended event: {}",
            tenant.slug,
            r.altered.len(),
            r.altered
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    println!(
        "{} session recording(s) match their end events; {} deleted under the retention setting",
        r.checked, r.deleted
    );
    Ok(())
}

async fn restored(
    tenant: String,
    reason: Option<String>,
    anchors: Option<PathBuf>,
    args: StoreArgs,
) -> anyhow::Result<()> {
    let dir = anchor_dir(anchors, &args);
    let (store, key) = args.open_with_key().await?;
    let key = key.with_anchor_dir(dir);
    let tenant = admin::tenant_by_slug(&store, &tenant).await?;
    let result =
        crate::audit::anchor::restored(&store, &key, &ctx(), &tenant, reason.as_deref()).await;
    store.close().await;
    match result? {
        Restored::NothingLost { head_seq } => println!(
            "tenant {}: the audit anchor agrees with the log (head seq {head_seq}); nothing was lost, nothing recorded",
            tenant.slug
        ),
        Restored::Reset {
            lost_from,
            lost_to,
            event_seq,
        } => println!(
            "tenant {}: events {lost_from}..={lost_to} are not in the restored log; recorded as audit.restored (seq {event_seq}), anchor reset and signed",
            tenant.slug
        ),
    }
    Ok(())
}

async fn add_sink(
    tenant: String,
    webhook: Option<String>,
    syslog: Option<String>,
    args: StoreArgs,
) -> anyhow::Result<()> {
    let (kind, target) = match (webhook, syslog) {
        (Some(url), _) => ("webhook", url),
        (None, Some(t)) => ("syslog", t),
        (None, None) => bail!("give --webhook URL or --syslog tcp://HOST:PORT"),
    };
    let secret = if kind == "webhook" {
        let mut s = String::new();
        std::io::stdin().read_line(&mut s)?;
        Some(s)
    } else {
        None
    };
    let (store, key) = args.open_with_key().await?;
    let tenant = admin::tenant_by_slug(&store, &tenant).await?;
    let id = crate::audit::sinks::add_sink(
        &store,
        &key,
        &ctx(),
        &tenant,
        kind,
        &target,
        secret.as_deref(),
    )
    .await?;
    println!("added {kind} audit sink {id} for {}", tenant.slug);
    store.close().await;
    Ok(())
}

async fn list_sinks(args: StoreArgs) -> anyhow::Result<()> {
    let store: Store = open_store(&args.database).await?;
    for l in crate::audit::sinks::lags(&store, SystemClock.now()).await? {
        println!(
            "{}\t{}\t{}\t{}\tbehind {} events / {} s\t{}",
            l.tenant,
            l.sink_id,
            l.kind,
            l.target,
            l.events,
            l.seconds,
            l.last_error.unwrap_or_default()
        );
    }
    store.close().await;
    Ok(())
}
