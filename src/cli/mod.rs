//! The `elevate` command line: server and operator commands in one binary (DESIGN §8).

mod admin;
mod admin_host;
mod asciicast;
mod audit;
mod audit_bench;
mod backup;
mod bench;
mod bench_db;
mod bench_expiry;
mod bench_scale;
mod bench_workflow;
mod client;
mod db;
mod docs;
mod doctor;
mod host;
mod host_session;
mod pin;
mod policy;
mod serve;
mod ssh;
mod statement_count;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};

use crate::config::{LogFormat, Overrides};
use crate::crypto::MasterKey;
use crate::store::{Backend, Store};

#[derive(Debug, Parser)]
#[command(
    name = "elevate",
    version,
    about = "Just-in-time privileged access broker"
)]
pub struct Cli {
    /// Log format for the server and operator commands (`serve --log-format json`). Hidden from
    /// `--help`, where client commands would list it for nothing; README and `elevate serve
    /// --help` name it.
    #[arg(
        long,
        global = true,
        hide = true,
        value_enum,
        env = "ELEVATE_LOG_FORMAT"
    )]
    log_format: Option<LogFormat>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the broker (HTTPS on 127.0.0.1:8443 with SQLite ./elevate.db unless configured;
    /// `--log-format json` for structured logs).
    Serve(Box<Overrides>),
    /// Apply database migrations (on Postgres, as the owner role).
    Migrate {
        #[arg(
            long = "database",
            env = "ELEVATE_DATABASE_URL",
            value_name = "URL",
            hide_env_values = true
        )]
        /// The store: a SQLite file (sqlite:elevate.db) or a postgres:// URL.
        database: String,
    },
    /// Bootstrap and administration.
    Admin {
        #[command(subcommand)]
        command: admin::AdminCommand,
    },
    /// Access profiles as code.
    Policy {
        #[command(subcommand)]
        command: policy::PolicyCommand,
    },
    /// Save a server and API token for the commands below.
    Login(client::LoginArgs),
    /// Ask for access: `elevate request prod-shell --for 30m --reason "..." [--wait]`.
    Request(client::RequestArgs),
    /// The profiles I can request, with their durations and approvers.
    Profiles {
        /// Every profile in force, also those I cannot request.
        #[arg(long)]
        all: bool,
        /// Print JSON (for scripts) instead of text.
        #[arg(long)]
        json: bool,
    },
    /// My requests and what waits for my decision, or one request.
    Status {
        /// A request id (all of mine and my inbox when left out).
        id: Option<String>,
        /// Print JSON (for scripts) instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Approve a request (or a pending extension).
    Approve {
        /// The request id (from `elevate status` or the request page).
        id: String,
        /// A comment for the requester and the audit log.
        #[arg(long)]
        comment: Option<String>,
        /// Print JSON (for scripts) instead of text.
        #[arg(long)]
        json: bool,
        /// When the profile needs a passkey, only print the page to approve it on (do not open
        /// a browser).
        #[arg(long)]
        no_browser: bool,
    },
    /// Deny a request (or a pending extension).
    Deny {
        /// The request id (from `elevate status` or the request page).
        id: String,
        /// Why: the requester sees it, the audit log keeps it.
        #[arg(long)]
        comment: String,
        /// Print JSON (for scripts) instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Withdraw my pending or scheduled request.
    Cancel {
        /// The request id (from `elevate status` or the request page).
        id: String,
        /// Print JSON (for scripts) instead of text.
        #[arg(long)]
        json: bool,
    },
    /// End a grant now.
    Revoke {
        /// The request id (from `elevate status` or the request page).
        id: String,
        /// Why the grant ends (kept in the audit log).
        #[arg(long, default_value = "")]
        reason: String,
        /// Print JSON (for scripts) instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Ask for more time on an active grant.
    Extend {
        /// The request id (from `elevate status` or the request page).
        id: String,
        /// How much more time, like 30m or 2h.
        #[arg(long = "for", value_name = "DURATION")]
        duration: String,
        /// Print JSON (for scripts) instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Sign off a break-glass activation.
    Review {
        /// The request id (from `elevate status` or the request page).
        id: String,
        /// Print JSON (for scripts) instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Log in over SSH in one command: grant, ephemeral key, certificate, ssh-agent, `ssh`.
    Ssh(Box<ssh::SshArgs>),
    /// Write a certificate for your key: `elevate ssh-cert ID --key ~/.ssh/id_ed25519.pub`.
    SshCert(ssh::SshCertArgs),
    /// The audit log: export, verify, streaming sinks.
    Audit {
        #[command(subcommand)]
        command: audit::AuditCommand,
    },
    /// A short-lived database login for an active grant: printed, or `--exec` runs psql/mariadb.
    Db(db::DbArgs),
    /// Benchmarks (figures for the performance goals).
    Bench {
        #[command(subcommand)]
        command: bench::BenchCommand,
    },
    /// Advisor checks of a deployment: what is wrong or risky, and how to fix it (exit 1 on errors).
    Doctor(doctor::DoctorArgs),
    /// Shell completions: `elevate completions bash|zsh|fish` prints the script.
    Completions(docs::CompletionsArgs),
    /// Manual pages: `elevate man` prints elevate(1); `--out DIR` writes one page per command.
    Man(docs::ManArgs),
    /// On SSH hosts: keep sshd's CA keys and KRL current.
    Host {
        #[command(subcommand)]
        command: host::HostCommand,
    },
    /// A consistent backup of the store while it serves, with a manifest beside it.
    Backup(backup::BackupArgs),
    /// Restore a backup into an empty store; rotates every user CA, sweeps database targets and
    /// records what was lost.
    Restore(Box<backup::RestoreArgs>),
    /// Restore the latest backup into a scratch store, verify it, and report (exit 1 on failure).
    Drill(backup::DrillArgs),
}

/// Store options shared by operator commands.
#[derive(Debug, Clone, clap::Args)]
pub struct StoreArgs {
    #[arg(
        long = "database",
        env = "ELEVATE_DATABASE_URL",
        value_name = "URL",
        default_value = "sqlite:elevate.db",
        hide_env_values = true
    )]
    /// The store: a SQLite file (sqlite:elevate.db) or a postgres:// URL.
    pub database: String,
    /// Master key file [default: elevate.key beside a SQLite database].
    #[arg(long, env = "ELEVATE_MASTER_KEY_FILE", value_name = "FILE")]
    pub master_key_file: Option<PathBuf>,
}

pub fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(u8::try_from(e.exit_code()).unwrap_or(2));
        }
    };
    init_tracing(cli.log_format.unwrap_or_default());
    // One crypto provider for every rustls user in the process (server, sqlx, clients).
    let _ = rustls::crypto::ring::default_provider().install_default();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let json_errors = cli.command.json_output();
    match runtime.block_on(run(cli)) {
        Ok(code) => code,
        Err(e) if json_errors && e.downcast_ref::<client::Ended>().is_some() => ExitCode::FAILURE,
        Err(e) if json_errors => {
            // Scripts asked for JSON: the error is JSON too, on stdout, with the same exit code.
            let (code, message) = match e.downcast_ref::<client::ApiFailure>() {
                Some(f) => (f.code.clone(), f.message.clone()),
                None => ("error".to_owned(), format!("{e:#}")),
            };
            println!(
                "{}",
                serde_json::json!({ "error": { "code": code, "message": message } })
            );
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

impl Command {
    /// Whether the caller asked for JSON output (`--json`): errors then come as JSON too.
    fn json_output(&self) -> bool {
        match self {
            Command::Status { json, .. }
            | Command::Approve { json, .. }
            | Command::Deny { json, .. }
            | Command::Cancel { json, .. }
            | Command::Revoke { json, .. }
            | Command::Extend { json, .. }
            | Command::Review { json, .. }
            | Command::Profiles { json, .. } => *json,
            Command::Request(args) => args.json,
            Command::SshCert(args) => args.json,
            _ => false,
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    // `elevate ssh` ends with ssh's own exit status.
    let command = match cli.command {
        Command::Doctor(args) => return doctor::doctor(args, cli.log_format).await,
        Command::Ssh(args) => return ssh::ssh(*args).await,
        Command::Db(args) => return db::db(args).await,
        Command::Drill(args) => return backup::drill(args).await,
        other => other,
    };
    run_command(command, cli.log_format)
        .await
        .map(|()| ExitCode::SUCCESS)
}

async fn run_command(command: Command, log_format: Option<LogFormat>) -> anyhow::Result<()> {
    match command {
        Command::Serve(overrides) => serve::run(&overrides, log_format).await,
        Command::Completions(args) => {
            docs::completions(&args, &mut std::io::stdout().lock());
            Ok(())
        }
        Command::Man(args) => docs::man(&args),
        Command::Migrate { database } => {
            let store = Store::connect(&database).await?;
            store.migrate().await?;
            println!(
                "migrations applied to {}",
                crate::store::redact_url(&database)
            );
            Ok(())
        }
        Command::Admin { command } => admin::run(command).await,
        Command::Policy { command } => policy::run(command).await,
        Command::Login(args) => client::login(args).await,
        Command::Request(args) => client::request(args).await,
        Command::Profiles { all, json } => client::profiles(all, json).await,
        Command::Status { id, json } => {
            let api = client::Api::from_saved()?;
            match id {
                Some(id) => {
                    let r = api.get(&format!("/requests/{id}")).await?;
                    if json {
                        client::print(&r, true);
                    } else {
                        println!("{}", client::detail(&r));
                    }
                }
                None => {
                    let mine = api.get("/requests?mine=true").await?;
                    // Everything that waits for me, however many pages.
                    let waiting = api.get_all_pages("/requests?reviewable=true", 50).await?;
                    if json {
                        println!(
                            "{}",
                            serde_json::json!({ "mine": mine["requests"], "reviewable": waiting["requests"] })
                        );
                    } else {
                        println!("My requests:");
                        client::print(&mine, false);
                        if waiting["requests"]
                            .as_array()
                            .is_some_and(|l| !l.is_empty())
                        {
                            println!("\nWaiting for my decision:");
                            client::print(&waiting, false);
                        }
                    }
                }
            }
            Ok(())
        }
        Command::Approve {
            id,
            comment,
            json,
            no_browser,
        } => {
            let done = act(
                &id,
                "approve",
                serde_json::json!({ "comment": comment }),
                json,
            )
            .await;
            if let Err(e) = &done
                && let Some(failure) = e.downcast_ref::<client::ApiFailure>()
                && failure.code == "step_up_required"
            {
                let page = format!("{}/requests/{id}", client::Api::from_saved()?.server());
                eprintln!("This profile is approved only with a passkey: approve it at {page}");
                if !no_browser {
                    client::open_in_browser(&page);
                }
            }
            done
        }
        Command::Deny { id, comment, json } => {
            act(&id, "deny", serde_json::json!({ "comment": comment }), json).await
        }
        Command::Cancel { id, json } => act(&id, "cancel", serde_json::json!({}), json).await,
        Command::Revoke { id, reason, json } => {
            act(&id, "revoke", serde_json::json!({ "reason": reason }), json).await
        }
        Command::Extend { id, duration, json } => {
            act(
                &id,
                "extend",
                serde_json::json!({ "duration": duration }),
                json,
            )
            .await
        }
        Command::Review { id, json } => act(&id, "review", serde_json::json!({}), json).await,
        Command::SshCert(args) => ssh::ssh_cert(args).await,
        Command::Doctor(_) => Ok(()), // handled in `run` (it needs the exit code)
        Command::Host { command } => host::run(command).await,
        Command::Bench { command } => bench::run(command).await,
        Command::Audit { command } => audit::run(command).await,
        Command::Backup(args) => backup::backup(args).await,
        Command::Restore(args) => backup::restore(*args).await,
        // Handled in `run` (they need the exit code).
        Command::Ssh(_) | Command::Db(_) | Command::Drill(_) => Ok(()),
    }
}

async fn act(id: &str, action: &str, body: serde_json::Value, json: bool) -> anyhow::Result<()> {
    let api = client::Api::from_saved()?;
    let r = api.post(&format!("/requests/{id}/{action}"), body).await?;
    client::print(&r, json);
    Ok(())
}

fn init_tracing(format: LogFormat) {
    use tracing_subscriber::EnvFilter;
    use tracing_subscriber::prelude::*;
    let filter = EnvFilter::try_from_env("ELEVATE_LOG")
        .unwrap_or_else(|_| EnvFilter::new("info,sqlx=warn,tower_http=info"));
    // Colour codes only on a terminal: a log redirected to a file or a journal stays plain.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let log = tracing_subscriber::fmt::layer()
        .with_ansi(ansi)
        .with_writer(std::io::stderr);
    let log = match format {
        LogFormat::Text => log.boxed(),
        LogFormat::Json => log.json().flatten_event(true).boxed(),
    };
    let _ = tracing_subscriber::registry()
        .with(log.with_filter(filter))
        .with(statement_count::layer())
        .try_init();
}

impl StoreArgs {
    /// The store (see [`open_store`]) and the master key that opens its sealed secrets.
    pub async fn open_with_key(&self) -> anyhow::Result<(Store, MasterKey)> {
        let store = open_store(&self.database).await?;
        let key = master_key(
            self.master_key_file.as_deref(),
            &crate::store::data_dir_for(&self.database),
            &store,
        )
        .await?;
        Ok((store, key))
    }
}

/// Connects and makes sure the schema is current: SQLite migrates itself (it is embedded and
/// owned by us); Postgres must already be migrated by the owner role.
pub async fn open_store(database: &str) -> anyhow::Result<Store> {
    prepared(Store::connect(database).await?).await
}

/// A connected store made ready: SQLite migrated, Postgres checked to be migrated.
pub async fn prepared(store: Store) -> anyhow::Result<Store> {
    match store.backend() {
        Backend::Sqlite => store
            .migrate()
            .await
            .context("migrating the SQLite database")?,
        Backend::Postgres => store.check_migrations().await?,
    }
    Ok(store)
}

/// The master key: the configured file, else `elevate.key` in `data_dir`, generated on first
/// use — but never for a database that already holds sealed secrets.
pub async fn master_key(
    explicit: Option<&Path>,
    data_dir: &Path,
    store: &Store,
) -> anyhow::Result<MasterKey> {
    if let Some(path) = explicit {
        return Ok(MasterKey::load(path)?);
    }
    let path = data_dir.join("elevate.key");
    if path.exists() {
        return Ok(MasterKey::load(&path)?);
    }
    if !store.tenants().await?.is_empty() {
        anyhow::bail!(
            "{} is missing but the database already holds sealed secrets; set ELEVATE_MASTER_KEY_FILE \
             to the master key this database was created with",
            path.display()
        );
    }
    let key = MasterKey::generate_file(&path)?;
    tracing::warn!(
        path = %path.display(),
        "generated a development master key; production should supply ELEVATE_MASTER_KEY_FILE (kept apart from the database and backed up)"
    );
    Ok(key)
}
