//! `elevate admin ...`: bootstrap a tenant, its users and their API tokens from a shell on the
//! server. Acts as `cli:<os user>` in the audit log.

use clap::Subcommand;

use super::{StoreArgs, open_store};
use crate::admin;
use crate::audit::Ctx;
use crate::audit::{Actor, Origin};
use crate::clock::{Clock, SystemClock};
use crate::db_targets::targets::{self as db_targets, NewTarget};
use crate::model::{Role, Scope, TargetKind};

#[derive(Debug, Subcommand)]
pub enum AdminCommand {
    /// Tenants (organisations).
    Tenant {
        #[command(subcommand)]
        command: TenantCommand,
    },
    /// People.
    User {
        #[command(subcommand)]
        command: UserCommand,
    },
    /// API tokens.
    Token {
        #[command(subcommand)]
        command: TokenCommand,
    },
    /// The tenant's SSH user CA.
    Ca {
        #[command(subcommand)]
        command: CaCommand,
    },
    /// Webhooks that hear every request transition (signed with HMAC-SHA256).
    Webhook {
        #[command(subcommand)]
        command: WebhookCommand,
    },
    /// SSH hosts that run the session helper (`elevate host session`).
    Host {
        #[command(subcommand)]
        command: super::admin_host::HostAdminCommand,
    },
    /// Database servers elevate makes short-lived logins on.
    Target {
        #[command(subcommand)]
        command: TargetCommand,
    },
    /// Emergency: revoke every active grant of a person (--email) or of the whole tenant at once.
    /// A tenant lockdown also refuses all issuance (certificates, database logins, activations,
    /// break-glass included) until `--lift`.
    Lockdown {
        /// The organisation, by its slug (like acme).
        #[arg(long)]
        tenant: String,
        /// Only this person's grants (their account stays enabled; disable it to end that too).
        #[arg(long, conflicts_with = "lift")]
        email: Option<String>,
        /// Why (kept in the audit log and shown on the admin status page).
        #[arg(long, default_value = "", conflicts_with = "lift")]
        reason: String,
        /// Lift the tenant's lockdown.
        #[arg(long)]
        lift: bool,
        #[command(flatten)]
        store: StoreArgs,
    },
}

#[derive(Debug, Subcommand)]
pub enum TargetCommand {
    /// Register (or replace) a target; its admin login's password is read from stdin.
    Set {
        /// The organisation, by its slug (like acme).
        #[arg(long)]
        tenant: String,
        /// The name profiles use (`[profile.database] target = NAME`).
        name: String,
        /// postgres or mysql (MariaDB too).
        #[arg(long, value_parser = parse_kind)]
        kind: TargetKind,
        /// postgres://ADMIN@HOST:PORT/DATABASE or mysql://ADMIN@HOST:PORT[/DATABASE], no password.
        #[arg(long)]
        url: String,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Log in to a target with its admin login and report what elevate can do there.
    Test {
        /// The organisation, by its slug (like acme).
        #[arg(long)]
        tenant: String,
        /// The name shown in pages, lists and the audit log.
        name: String,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// List a tenant's targets.
    List {
        /// The organisation, by its slug (like acme).
        #[arg(long)]
        tenant: String,
        #[command(flatten)]
        store: StoreArgs,
    },
}

#[derive(Debug, Subcommand)]
pub enum CaCommand {
    /// Make a new SSH user CA the signer; the old public key stays published until the last
    /// certificate it signed has expired.
    Rotate {
        /// The organisation, by its slug (like acme).
        #[arg(long)]
        tenant: String,
        #[command(flatten)]
        store: StoreArgs,
    },
}

#[derive(Debug, Subcommand)]
pub enum WebhookCommand {
    /// Add a webhook; its signing secret is read from stdin.
    Add {
        /// The organisation, by its slug (like acme).
        #[arg(long)]
        tenant: String,
        /// Where to POST the events (https://...).
        #[arg(long)]
        url: String,
        #[command(flatten)]
        store: StoreArgs,
    },
}

#[derive(Debug, Subcommand)]
pub enum TenantCommand {
    /// Create a tenant with its SSH user CA and audit signing key.
    Create {
        /// Short name of the organisation, used in URLs and commands (like acme).
        slug: String,
        /// The name shown in pages, lists and the audit log.
        #[arg(long, default_value = "")]
        name: String,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Change a tenant's settings.
    Set {
        /// The organisation, by its slug (like acme).
        #[arg(long)]
        tenant: String,
        /// Break-glass needs a passkey step-up even from people who have none yet (they are told
        /// to register one). People with a passkey always confirm break-glass with it.
        #[arg(long, value_name = "on|off", value_parser = on_off)]
        require_passkey_for_break_glass: Option<bool>,
        /// Admin changes from a browser need a passkey confirmation in the last five minutes
        /// from every admin (admins with a passkey always confirm). Tokens are not affected.
        #[arg(long, value_name = "on|off", value_parser = on_off)]
        require_passkey_for_admin: Option<bool>,
        /// Policy changes that widen access wait for a second admin's approval with a passkey
        /// (narrowing changes apply at once). Recommended with two or more admins.
        #[arg(long, value_name = "on|off", value_parser = on_off)]
        policy_two_person: Option<bool>,
        #[command(flatten)]
        store: StoreArgs,
    },
}

fn on_off(text: &str) -> Result<bool, String> {
    match text {
        "on" | "true" | "yes" => Ok(true),
        "off" | "false" | "no" => Ok(false),
        other => Err(format!("{other:?}: say on or off")),
    }
}

#[derive(Debug, Subcommand)]
pub enum UserCommand {
    /// Create a user with standing roles and groups.
    Create {
        /// The organisation, by its slug (like acme).
        #[arg(long)]
        tenant: String,
        /// The person's email address.
        #[arg(long)]
        email: String,
        /// The name shown in pages, lists and the audit log.
        #[arg(long)]
        name: Option<String>,
        /// requester, approver, admin or auditor (repeatable).
        #[arg(long = "role", value_parser = parse_role)]
        roles: Vec<Role>,
        /// Group membership (repeatable).
        #[arg(long = "group")]
        groups: Vec<String>,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Disable (offboard) a person: ends their sessions, cancels their pending requests and
    /// revokes every scheduled and active grant at once.
    Disable {
        /// The organisation, by its slug (like acme).
        #[arg(long)]
        tenant: String,
        /// The person's email address.
        #[arg(long)]
        email: String,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Enable a disabled person again (ended grants stay ended).
    Enable {
        /// The organisation, by its slug (like acme).
        #[arg(long)]
        tenant: String,
        /// The person's email address.
        #[arg(long)]
        email: String,
        #[command(flatten)]
        store: StoreArgs,
    },
}

#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Create an API token and print it (only it) on stdout.
    Create {
        /// The organisation, by its slug (like acme).
        #[arg(long)]
        tenant: String,
        /// The person's email address.
        #[arg(long)]
        email: String,
        /// read, request, approve, admin, audit or metrics (repeatable) [default: all the user's roles allow].
        #[arg(long = "scope", value_parser = parse_scope)]
        scopes: Vec<Scope>,
        /// Lifetime, like 12h or 30d (at most 365d).
        #[arg(long, default_value = "30d", value_parser = crate::duration::parse)]
        ttl: time::Duration,
        /// The name shown in pages, lists and the audit log.
        #[arg(long, default_value = "cli")]
        name: String,
        #[command(flatten)]
        store: StoreArgs,
    },
}

fn parse_role(s: &str) -> Result<Role, String> {
    s.parse()
}

fn parse_scope(s: &str) -> Result<Scope, String> {
    s.parse()
}

fn parse_kind(s: &str) -> Result<TargetKind, String> {
    s.parse()
}

pub(super) fn ctx() -> Ctx {
    Ctx {
        actor: Actor::cli(),
        origin: Origin::default(),
        now: SystemClock.now(),
    }
}

pub async fn run(command: AdminCommand) -> anyhow::Result<()> {
    match command {
        AdminCommand::Ca {
            command: CaCommand::Rotate { tenant, store },
        } => {
            return rotate_ca(tenant, store).await;
        }
        AdminCommand::Webhook {
            command: WebhookCommand::Add { tenant, url, store },
        } => {
            return add_webhook(tenant, url, store).await;
        }
        AdminCommand::Target { command } => return target(command).await,
        AdminCommand::Host { command } => return super::admin_host::run(command).await,
        AdminCommand::Lockdown {
            tenant,
            email,
            reason,
            lift,
            store,
        } => return lockdown(tenant, email, reason, lift, store).await,
        AdminCommand::User {
            command:
                UserCommand::Disable {
                    tenant,
                    email,
                    store,
                },
        } => return set_disabled(tenant, email, true, store).await,
        AdminCommand::User {
            command:
                UserCommand::Enable {
                    tenant,
                    email,
                    store,
                },
        } => return set_disabled(tenant, email, false, store).await,
        AdminCommand::Tenant {
            command:
                TenantCommand::Create {
                    slug,
                    name,
                    store: args,
                },
        } => {
            let (store, key) = args.open_with_key().await?;
            let tenant = admin::create_tenant(&store, &key, &ctx(), &slug, &name).await?;
            println!("created tenant {} ({})", tenant.slug, tenant.tenant_id);
            store.close().await;
        }
        AdminCommand::Tenant {
            command:
                TenantCommand::Set {
                    tenant,
                    require_passkey_for_break_glass,
                    require_passkey_for_admin,
                    policy_two_person,
                    store: args,
                },
        } => {
            let settings = [
                (
                    "require_passkey_for_break_glass",
                    require_passkey_for_break_glass,
                ),
                ("require_passkey_for_admin", require_passkey_for_admin),
                ("policy_two_person", policy_two_person),
            ];
            if settings.iter().all(|(_, v)| v.is_none()) {
                anyhow::bail!(
                    "say what to set: --require-passkey-for-break-glass, \
                     --require-passkey-for-admin or --policy-two-person (on|off)"
                );
            }
            let store = open_store(&args.database).await?;
            let tenant = admin::tenant_by_slug(&store, &tenant).await?;
            for (name, value) in settings {
                let Some(on) = value else { continue };
                let changed = admin::set_tenant_setting(&store, &ctx(), &tenant, name, on).await?;
                let state = if on { "on" } else { "off" };
                let verb = if changed { "is now" } else { "was already" };
                println!("{}: {name} {verb} {state}", tenant.slug);
            }
            store.close().await;
        }
        AdminCommand::User {
            command:
                UserCommand::Create {
                    tenant,
                    email,
                    name,
                    roles,
                    groups,
                    store: args,
                },
        } => {
            let store = open_store(&args.database).await?;
            let tenant = admin::tenant_by_slug(&store, &tenant).await?;
            let user = admin::create_user(
                &store,
                &ctx(),
                &tenant,
                &email,
                name.as_deref(),
                &roles,
                &groups,
            )
            .await?;
            let roles: Vec<&str> = user.roles.0.iter().map(|r| r.as_str()).collect();
            println!(
                "created user {} in {} (roles: {}; groups: {})",
                user.email,
                tenant.slug,
                roles.join(", "),
                user.group_names.0.join(", ")
            );
            store.close().await;
        }
        AdminCommand::Token {
            command:
                TokenCommand::Create {
                    tenant,
                    email,
                    scopes,
                    ttl,
                    name,
                    store: args,
                },
        } => {
            let store = open_store(&args.database).await?;
            let tenant = admin::tenant_by_slug(&store, &tenant).await?;
            let user = admin::user_by_email(&store, &tenant, &email).await?;
            let issued = admin::create_token(&store, &ctx(), &user, &name, &scopes, ttl).await?;
            println!("{}", issued.secret.expose());
            store.close().await;
        }
    }
    Ok(())
}

/// Webhooks hear the transitions an operator's command makes when the public URL is known.
fn links() -> Option<String> {
    std::env::var("ELEVATE_PUBLIC_URL")
        .ok()
        .filter(|u| !u.trim().is_empty())
}

async fn set_disabled(
    tenant: String,
    email: String,
    disabled: bool,
    args: StoreArgs,
) -> anyhow::Result<()> {
    let store = open_store(&args.database).await?;
    let tenant = admin::tenant_by_slug(&store, &tenant).await?;
    let user = admin::user_by_email(&store, &tenant, &email).await?;
    let (user, ended) = admin::set_user_disabled(
        &store,
        &ctx(),
        links().as_deref(),
        &tenant,
        user.id,
        disabled,
    )
    .await?;
    store.close().await;
    if disabled {
        println!(
            "disabled {} in {}; ended {} open request(s){}",
            user.email,
            tenant.slug,
            ended.len(),
            ended
                .iter()
                .map(|id| format!("\n  {id}"))
                .collect::<String>()
        );
    } else {
        println!("enabled {} in {}", user.email, tenant.slug);
    }
    Ok(())
}

async fn lockdown(
    tenant: String,
    email: Option<String>,
    reason: String,
    lift: bool,
    args: StoreArgs,
) -> anyhow::Result<()> {
    let store = open_store(&args.database).await?;
    let tenant = admin::tenant_by_slug(&store, &tenant).await?;
    if lift {
        let lifted = admin::lift_lockdown(&store, &ctx(), &tenant).await?;
        store.close().await;
        if lifted {
            println!("lifted the lockdown of {}", tenant.slug);
        } else {
            println!("{} is not in lockdown", tenant.slug);
        }
        return Ok(());
    }
    let user = match &email {
        Some(e) => Some(admin::user_by_email(&store, &tenant, e).await?),
        None => None,
    };
    let revoked = admin::lockdown(
        &store,
        &ctx(),
        links().as_deref(),
        &tenant,
        user.as_ref(),
        &reason,
    )
    .await?;
    store.close().await;
    let whom = match &user {
        Some(u) => u.email.clone(),
        None => format!("tenant {}", tenant.slug),
    };
    println!(
        "lockdown of {whom}: revoked {} grant(s){}",
        revoked.len(),
        revoked
            .iter()
            .map(|id| format!("\n  {id}"))
            .collect::<String>()
    );
    if user.is_none() {
        println!(
            "{} refuses all issuance until `elevate admin lockdown --tenant {} --lift`",
            tenant.slug, tenant.slug
        );
    }
    Ok(())
}

async fn add_webhook(tenant: String, url: String, args: StoreArgs) -> anyhow::Result<()> {
    let mut secret = String::new();
    std::io::stdin().read_line(&mut secret)?;
    let (store, key) = args.open_with_key().await?;
    let tenant = admin::tenant_by_slug(&store, &tenant).await?;
    let id = admin::add_webhook(&store, &key, &ctx(), &tenant, &url, &secret).await?;
    println!("added webhook {id} for {}", tenant.slug);
    store.close().await;
    Ok(())
}

async fn rotate_ca(tenant: String, args: StoreArgs) -> anyhow::Result<()> {
    let (store, key) = args.open_with_key().await?;
    let tenant = admin::tenant_by_slug(&store, &tenant).await?;
    let details = crate::ssh::ca::rotate(&store, &key, &ctx(), &tenant).await?;
    println!(
        "new SSH user CA for {}: {}",
        tenant.slug,
        details["active"]["fingerprint"].as_str().unwrap_or("?")
    );
    if let Some(old) = details.get("retired") {
        let until = old["publish_until"]
            .as_i64()
            .and_then(|t| time::OffsetDateTime::from_unix_timestamp(t).ok())
            .map(crate::text::when)
            .unwrap_or_default();
        println!(
            "retired {} (still published until {until}); hosts pick up both with `elevate host sync`",
            old["fingerprint"].as_str().unwrap_or("?")
        );
    }
    store.close().await;
    Ok(())
}

/// The first line of stdin without its line ending (spaces are part of a password).
fn secret_from_stdin(what: &str) -> anyhow::Result<zeroize::Zeroizing<String>> {
    let mut line = zeroize::Zeroizing::new(String::new());
    std::io::stdin().read_line(&mut line)?;
    let trimmed = line.trim_end_matches(['\r', '\n']);
    if trimmed.is_empty() {
        anyhow::bail!("expected {what} on stdin (e.g. `echo \"$PASSWORD\" | elevate ...`)");
    }
    Ok(zeroize::Zeroizing::new(trimmed.to_owned()))
}

async fn target(command: TargetCommand) -> anyhow::Result<()> {
    match command {
        TargetCommand::Set {
            tenant,
            name,
            kind,
            url,
            store: args,
        } => {
            let password = secret_from_stdin("the target admin password")?;
            let (store, key) = args.open_with_key().await?;
            let tenant = admin::tenant_by_slug(&store, &tenant).await?;
            let target = db_targets::set_target(
                &store,
                &key,
                &ctx(),
                &tenant,
                NewTarget {
                    name: &name,
                    kind,
                    url: &url,
                    password: &password,
                },
            )
            .await?;
            println!(
                "target {} set for {} ({})",
                target.name, tenant.slug, target.url
            );
            match db_targets::check(&target, &key).await {
                Ok(c) if c.can_create_roles => println!("connection: ok ({})", c.version),
                Ok(c) => eprintln!(
                    "warning: connected ({}) but the admin login may not create roles; see deploy/db-targets/README.md",
                    c.version
                ),
                Err(e) => eprintln!("warning: saved, but cannot connect yet: {e}"),
            }
            store.close().await;
        }
        TargetCommand::Test {
            tenant,
            name,
            store: args,
        } => {
            let (store, key) = args.open_with_key().await?;
            let tenant = admin::tenant_by_slug(&store, &tenant).await?;
            let mut tx = store.tenant(tenant.tenant_id).await?;
            let found = tx.target_by_name(&name).await?;
            tx.commit().await?;
            let target =
                found.ok_or_else(|| anyhow::anyhow!("no target {name} in {}", tenant.slug))?;
            let checked = db_targets::check(&target, &key).await;
            store.close().await;
            let c = checked.map_err(|e| anyhow::anyhow!("cannot use target {name}: {e}"))?;
            println!(
                "target {name}: ok ({}; {})",
                c.version,
                if c.can_create_roles {
                    "can create roles"
                } else {
                    "CANNOT create roles"
                }
            );
            if !c.can_create_roles {
                anyhow::bail!("the admin login of {name} may not create roles");
            }
        }
        TargetCommand::List {
            tenant,
            store: args,
        } => {
            let store = open_store(&args.database).await?;
            let tenant = admin::tenant_by_slug(&store, &tenant).await?;
            let mut tx = store.tenant(tenant.tenant_id).await?;
            let targets = tx.targets().await?;
            tx.commit().await?;
            for t in targets {
                let url = crate::db_targets::shown_url(&t.kind, &t.url);
                println!("{}\t{}\t{url}", t.name, t.kind);
            }
            store.close().await;
        }
    }
    Ok(())
}
