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
use crate::admin::{self, Ctx};
use crate::audit::checkpoint::parse_public_keys;
use crate::audit::export::Filter;
use crate::audit::verify::{verify_reader, verify_store};
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
        #[arg(long)]
        tenant: String,
        #[arg(
            long,
            value_name = "URL",
            conflicts_with = "syslog",
            required_unless_present = "syslog"
        )]
        webhook: Option<String>,
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
            ..
        } => verify_file(&file, &key),
        AuditCommand::Verify {
            tenant,
            store,
            public_key,
            ..
        } => verify_live(tenant, public_key, store).await,
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

fn verify_file(file: &PathBuf, key: &PathBuf) -> anyhow::Result<()> {
    let keys = read_keys(key)?;
    let started = std::time::Instant::now();
    let result = if file.as_os_str() == "-" {
        verify_reader(std::io::stdin().lock(), keys)
    } else {
        let f = std::fs::File::open(file).with_context(|| format!("opening {}", file.display()))?;
        verify_reader(BufReader::with_capacity(1 << 20, f), keys)
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

async fn verify_live(
    tenant: Option<String>,
    key: Option<PathBuf>,
    args: StoreArgs,
) -> anyhow::Result<()> {
    let pinned = key.as_ref().map(read_keys).transpose()?;
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
    let result = verify_store(&store, tenant.tenant_id, pinned).await?;
    store.close().await;
    match result {
        Ok(s) => {
            println!(
                "{s}; {} events after the latest checkpoint (tenant {})",
                s.head_seq - s.signed_through,
                tenant.slug
            );
            Ok(())
        }
        Err(broken) => bail!("tenant {}: {broken}", tenant.slug),
    }
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
