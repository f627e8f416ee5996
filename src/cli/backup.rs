//! `elevate backup`, `elevate restore` and `elevate drill` (see `crate::ops`).

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, bail};

use super::{StoreArgs, audit::anchor_dir};
use crate::audit::Ctx;
use crate::audit::anchor::Restored;
use crate::audit::{Actor, Origin};
use crate::clock::{Clock, SystemClock};
use crate::crypto::MasterKey;
use crate::ops::backup as core;
use crate::ops::drill::{self, Scratch};
use crate::store::{Backend, backend_of, data_dir_for};

#[derive(Debug, clap::Args)]
pub struct BackupArgs {
    #[arg(
        long = "database",
        env = "ELEVATE_DATABASE_URL",
        value_name = "URL",
        default_value = "sqlite:elevate.db",
        hide_env_values = true
    )]
    /// The store: a SQLite file (sqlite:elevate.db) or a postgres:// URL.
    database: String,
    /// The backup file to write (never overwritten); its manifest goes beside it as
    /// FILE.manifest.json.
    #[arg(long, value_name = "FILE")]
    out: PathBuf,
}

#[derive(Debug, clap::Args)]
pub struct RestoreArgs {
    /// The backup file (its FILE.manifest.json must be beside it).
    #[arg(long, value_name = "FILE")]
    from: PathBuf,
    /// Replace a store that already holds tenants (stop every server using it first).
    #[arg(long)]
    force: bool,
    /// Skip the sweep of database targets for logins no record accounts for (the server's
    /// start-up sweep still runs).
    #[arg(long)]
    no_sweep: bool,
    /// This replica's audit anchors [default: beside the master key].
    #[arg(long, value_name = "DIR")]
    anchor_dir: Option<PathBuf>,
    #[command(flatten)]
    store: StoreArgs,
}

#[derive(Debug, clap::Args)]
pub struct DrillArgs {
    /// A backup file, or a directory of backups (the newest manifest wins).
    #[arg(
        long,
        value_name = "PATH",
        conflicts_with = "database",
        required_unless_present = "database"
    )]
    from: Option<PathBuf>,
    /// Take a fresh backup of this store first and drill that.
    #[arg(long = "database", value_name = "URL")]
    database: Option<String>,
    /// Postgres backups: a server URL on which the drill creates (and drops) a scratch database,
    /// connecting as a superuser [default: the --database URL's server and role].
    #[arg(
        long,
        value_name = "URL",
        env = "ELEVATE_DRILL_POSTGRES_URL",
        hide_env_values = true
    )]
    scratch: Option<String>,
    /// Also write the report to this file.
    #[arg(long, value_name = "FILE")]
    report: Option<PathBuf>,
    /// The master key the backup's secrets are sealed with [default: elevate.key beside a
    /// SQLite database, or in the working directory].
    #[arg(long, env = "ELEVATE_MASTER_KEY_FILE", value_name = "FILE")]
    master_key_file: Option<PathBuf>,
}

fn ctx() -> Ctx {
    Ctx {
        actor: Actor::cli(),
        origin: Origin::default(),
        now: SystemClock.now(),
    }
}

pub async fn backup(args: BackupArgs) -> anyhow::Result<()> {
    let m = core::backup(&args.database, &args.out, SystemClock.now()).await?;
    println!(
        "backup of the {} store written to {} ({} bytes, sha256 {}); manifest {}",
        m.store,
        args.out.display(),
        m.bytes,
        m.sha256,
        core::manifest_path(&args.out).display()
    );
    for t in &m.tenants {
        println!(
            "  {}: audit head seq {} ({}), latest checkpoint seq {}",
            t.slug,
            t.head_seq,
            hex::encode(&t.head_hash),
            t.checkpoint_seq
        );
    }
    Ok(())
}

/// The master key named by the flag, else `elevate.key` in `dir`; never generated.
fn existing_master_key(explicit: Option<&Path>, dir: &Path) -> anyhow::Result<MasterKey> {
    let path = explicit.map_or_else(|| dir.join("elevate.key"), Path::to_path_buf);
    if !path.exists() {
        bail!(
            "the master key {} is missing: give the key the backup's secrets are sealed with \
             (--master-key-file or ELEVATE_MASTER_KEY_FILE)",
            path.display()
        );
    }
    Ok(MasterKey::load(&path)?)
}

pub async fn restore(args: RestoreArgs) -> anyhow::Result<()> {
    let manifest = core::load_manifest(&args.from)?;
    let key = existing_master_key(
        args.store.master_key_file.as_deref(),
        &data_dir_for(&args.store.database),
    )?
    .with_anchor_dir(anchor_dir(args.anchor_dir.clone(), &args.store));
    let store = core::load(&args.from, &manifest, &args.store.database, args.force).await?;
    let result = async {
        crate::signing_keys::verify_master_key(&store, &key)
            .await
            .context("the restored store's secrets")?;
        core::after_restore(&store, &key, &ctx(), &args.from, &manifest, !args.no_sweep).await
    }
    .await;
    store.close().await;
    let done = result.context(
        "the data is restored but the restore is not finished; fix the cause and run the same \
         command again with --force",
    )?;
    println!(
        "restored {} (taken {}) into {}",
        args.from.display(),
        manifest
            .taken_at
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap_or_default(),
        crate::store::redact_url(&args.store.database)
    );
    for t in done {
        match t.anchor {
            Restored::Reset {
                lost_from,
                lost_to,
                event_seq,
            } => println!(
                "  {}: audit events {lost_from}..={lost_to} are lost; recorded as audit.restored (seq {event_seq})",
                t.slug
            ),
            Restored::NothingLost { .. } => println!(
                "  {}: the audit anchor knew nothing past the backup (head seq {}); anything written after it is lost",
                t.slug, t.backup_head_seq
            ),
        }
        println!(
            "  {}: new SSH user CA {}; {} older key(s) distrusted now: hosts drop them at their next `elevate host sync`",
            t.slug, t.new_ca_fingerprint, t.distrusted_keys
        );
        println!(
            "  {}: revoked {} grant(s) active or scheduled in the backup (their holders ask again); ended {} session(s)",
            t.slug, t.grants_revoked, t.sessions_ended
        );
        if t.orphans_dropped > 0 {
            println!(
                "  {}: dropped {} database login(s) no record accounts for",
                t.slug, t.orphans_dropped
            );
        }
        for (target, e) in &t.sweep_failures {
            eprintln!(
                "warning: {}: target {target} was not swept ({e}); the server's start-up sweep retries it",
                t.slug
            );
        }
    }
    Ok(())
}

pub async fn drill(args: DrillArgs) -> anyhow::Result<ExitCode> {
    let work =
        std::env::temp_dir().join(format!("elevate-drill-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&work).with_context(|| format!("creating {}", work.display()))?;
    let result = drill_in(&args, &work).await;
    let _ = std::fs::remove_dir_all(&work);
    result
}

async fn drill_in(args: &DrillArgs, work: &Path) -> anyhow::Result<ExitCode> {
    let backup = match (&args.from, &args.database) {
        (Some(from), _) => core::latest_backup(from)?,
        (None, Some(database)) => {
            let out = work.join("backup");
            core::backup(database, &out, SystemClock.now())
                .await
                .context("taking the backup to drill")?;
            out
        }
        (None, None) => bail!("give --from FILE|DIR or --database URL"),
    };
    let kind = core::load_manifest(&backup)
        .map(|m| m.store)
        .unwrap_or_default();
    let scratch = if kind == "postgres" {
        let server = args
            .scratch
            .clone()
            .or_else(|| {
                args.database
                    .clone()
                    .filter(|d| backend_of(d).ok() == Some(Backend::Postgres))
            })
            .context(
                "a Postgres backup needs a server to restore into: --scratch postgres://superuser@host/postgres",
            )?;
        Scratch::Postgres(server)
    } else {
        Scratch::SqliteDir(work.to_path_buf())
    };
    let key_dir = match &args.database {
        Some(d) => data_dir_for(d),
        None => PathBuf::from("."),
    };
    // The drill never touches this replica's anchors: they stay where they are.
    let key = existing_master_key(args.master_key_file.as_deref(), &key_dir)?
        .with_anchor_dir(work.join("anchors"));
    let report = drill::drill(&backup, args.from.is_none(), scratch, &key, &ctx()).await;
    let text = report.render();
    print!("{text}");
    if let Some(path) = &args.report {
        std::fs::write(path, &text).with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(if report.ok() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
