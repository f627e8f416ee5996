//! `elevate admin host add|list|remove|retention`: SSH hosts that run `elevate host session`,
//! and how long their session recordings are kept.

use clap::Subcommand;

use super::admin::ctx;
use super::{StoreArgs, open_store};
use crate::admin::{self, hosts};

#[derive(Debug, Subcommand)]
pub enum HostAdminCommand {
    /// Register a host; prints its host token on stdout, nothing else (put it in the file that
    /// `elevate host session --token-file` reads, readable by everyone who logs in there).
    Add {
        /// The organisation, by its slug (like acme).
        #[arg(long)]
        tenant: String,
        /// The host's name as sessions and pages show it (like web-1.prod).
        name: String,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// The registered hosts, with when each last called.
    List {
        /// The organisation, by its slug (like acme).
        #[arg(long)]
        tenant: String,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Remove a host: its token stops working and its open sessions end within seconds.
    Remove {
        /// The organisation, by its slug (like acme).
        #[arg(long)]
        tenant: String,
        /// The host's name, as `elevate admin host list` shows it.
        name: String,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Show or set how many days session recordings are kept after the session ends.
    Retention {
        /// The organisation, by its slug (like acme).
        #[arg(long)]
        tenant: String,
        /// Days to keep recordings (1-3660); without it, prints the setting.
        days: Option<i32>,
        #[command(flatten)]
        store: StoreArgs,
    },
}

pub async fn run(command: HostAdminCommand) -> anyhow::Result<()> {
    match command {
        HostAdminCommand::Add {
            tenant,
            name,
            store,
        } => {
            let store = open_store(&store.database).await?;
            let tenant = admin::tenant_by_slug(&store, &tenant).await?;
            let (_, secret) = hosts::add_host(&store, &ctx(), &tenant, &name).await?;
            store.close().await;
            println!("{}", secret.expose());
        }
        HostAdminCommand::List { tenant, store } => {
            let store = open_store(&store.database).await?;
            let tenant = admin::tenant_by_slug(&store, &tenant).await?;
            let list = hosts::hosts(&store, &tenant).await?;
            store.close().await;
            if list.is_empty() {
                println!(
                    "no hosts; add one with `elevate admin host add --tenant {} NAME`",
                    tenant.slug
                );
            }
            for h in list {
                let seen = h.last_seen_at.map_or("never".to_owned(), crate::text::when);
                println!(
                    "{}\tadded {}\tlast seen {seen}",
                    h.name,
                    crate::text::when(h.created_at)
                );
            }
        }
        HostAdminCommand::Remove {
            tenant,
            name,
            store,
        } => {
            let store = open_store(&store.database).await?;
            let tenant = admin::tenant_by_slug(&store, &tenant).await?;
            hosts::remove_host(&store, &ctx(), &tenant, &name).await?;
            store.close().await;
            println!("removed host {name}; its token no longer works");
        }
        HostAdminCommand::Retention {
            tenant,
            days,
            store,
        } => {
            let store = open_store(&store.database).await?;
            let tenant = admin::tenant_by_slug(&store, &tenant).await?;
            if let Some(days) = days {
                hosts::set_recording_retention(&store, &ctx(), &tenant, days).await?;
            }
            let days = hosts::recording_retention(&store, &tenant).await?;
            store.close().await;
            println!("session recordings of {} are kept {days} days", tenant.slug);
        }
    }
    Ok(())
}
