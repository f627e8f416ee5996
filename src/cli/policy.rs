//! `elevate policy apply|show`: access profiles as code, from a shell on the server.

use std::path::PathBuf;

use anyhow::Context;
use clap::Subcommand;

use super::{StoreArgs, open_store};
use crate::admin;
use crate::audit::Ctx;
use crate::audit::{Actor, Origin};
use crate::clock::{Clock, SystemClock};

#[derive(Debug, Subcommand)]
pub enum PolicyCommand {
    /// Validate a policy file and make it the tenant's new policy version.
    Apply {
        /// The organisation, by its slug (like acme).
        #[arg(long)]
        tenant: String,
        /// The policy file (TOML; see the README for the format).
        file: PathBuf,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Print the policy file in force.
    Show {
        /// The organisation, by its slug (like acme).
        #[arg(long)]
        tenant: String,
        #[command(flatten)]
        store: StoreArgs,
    },
}

pub async fn run(command: PolicyCommand) -> anyhow::Result<()> {
    match command {
        PolicyCommand::Apply {
            tenant,
            file,
            store: args,
        } => {
            let source = std::fs::read_to_string(&file)
                .with_context(|| format!("cannot read {}", file.display()))?;
            let store = open_store(&args.database).await?;
            let tenant = admin::tenant_by_slug(&store, &tenant).await?;
            let ctx = Ctx {
                actor: Actor::cli(),
                origin: Origin::default(),
                now: SystemClock.now(),
            };
            let applied = crate::broker::policy::apply(&store, &ctx, &tenant, &source)
                .await
                .map_err(|e| anyhow::anyhow!("{}: {e}", file.display()))?;
            if let Some(id) = applied.proposed {
                println!(
                    "proposed {} (it widens access: {}); it waits for a second admin to approve it \
                     with a passkey on the admin policy page (/admin/policy/proposals/{id})",
                    file.display(),
                    applied.widening.join("; ")
                );
            } else if applied.created {
                println!(
                    "applied {} as policy version {}: {}",
                    file.display(),
                    applied.version,
                    applied.diff.summary()
                );
            } else {
                println!(
                    "policy version {} already matches {}: nothing changed",
                    applied.version,
                    file.display()
                );
            }
            for warning in &applied.warnings {
                eprintln!("warning: {warning}");
            }
            store.close().await;
        }
        PolicyCommand::Show {
            tenant,
            store: args,
        } => {
            let store = open_store(&args.database).await?;
            let tenant = admin::tenant_by_slug(&store, &tenant).await?;
            match crate::broker::policy::current(&store, &tenant).await? {
                Some((version, _)) => {
                    eprintln!(
                        "# policy version {} of {}, applied {} by {}",
                        version.version, tenant.slug, version.created_at, version.created_by
                    );
                    print!("{}", version.source);
                }
                None => anyhow::bail!(
                    "tenant {} has no policy yet: elevate policy apply --tenant {} FILE",
                    tenant.slug,
                    tenant.slug
                ),
            }
            store.close().await;
        }
    }
    Ok(())
}
