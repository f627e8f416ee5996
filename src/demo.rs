//! `elevate serve --demo`: a tenant `demo` with one person per standing role, so a new user can
//! try every part of elevate at once. Idempotent: existing users are kept; each start revokes the
//! previous demo tokens and issues fresh ones (tokens are stored hashed, so old ones cannot be
//! shown again).

use crate::admin::{self, IssuedToken};
use crate::audit::Ctx;
use crate::audit::{Actor, Origin};
use crate::clock::Clock;
use crate::crypto::MasterKey;
use crate::error::{AppError, AppResult};
use crate::model::{Role, Tenant, User};
use crate::store::Store;

pub const TENANT: &str = "demo";
pub const POLICY: &str = include_str!("demo_policy.toml");
const TOKEN_NAME: &str = "demo";

/// (email, display name, roles, groups)
pub const USERS: [(&str, &str, &[Role], &[&str]); 4] = [
    (
        "alice@example.com",
        "Alice (engineer)",
        &[Role::Requester],
        &["engineering"],
    ),
    ("bob@example.com", "Bob (SRE)", &[Role::Approver], &["sre"]),
    (
        "dave@example.com",
        "Dave (SRE)",
        &[Role::Approver],
        &["sre"],
    ),
    (
        "carol@example.com",
        "Carol (admin)",
        &[Role::Admin, Role::Auditor],
        &[],
    ),
];

pub struct Seeded {
    pub tenant: Tenant,
    pub users: Vec<(User, IssuedToken)>,
}

pub async fn seed(store: &Store, master: &MasterKey, clock: &dyn Clock) -> AppResult<Seeded> {
    let ctx = Ctx {
        actor: Actor::System,
        origin: Origin::default(),
        now: clock.now(),
    };
    let tenant = match store.tenant_by_slug(TENANT).await? {
        Some(t) => t,
        None => admin::create_tenant(store, master, &ctx, TENANT, "Demo Organisation").await?,
    };
    if crate::broker::policy::current(store, &tenant)
        .await?
        .is_none()
    {
        crate::broker::policy::apply(store, &ctx, &tenant, POLICY).await?;
    }
    let mut users = Vec::new();
    for (email, name, roles, groups) in USERS {
        let groups: Vec<String> = groups.iter().map(|g| g.to_string()).collect();
        let user = match admin::user_by_email(store, &tenant, email).await {
            Ok(u) => u,
            Err(AppError::NotFound(_)) => {
                admin::create_user(store, &ctx, &tenant, email, Some(name), roles, &groups).await?
            }
            Err(e) => return Err(e),
        };
        let mut tx = store.tenant(tenant.tenant_id).await?;
        let previous: Vec<_> = tx
            .api_tokens_of(user.id)
            .await?
            .into_iter()
            .filter(|t| t.name == TOKEN_NAME && t.revoked_at.is_none())
            .map(|t| t.id)
            .collect();
        tx.commit().await?;
        admin::revoke_tokens(store, &ctx, &user, &previous).await?;
        let token = admin::create_token(
            store,
            &ctx,
            &user,
            TOKEN_NAME,
            &[],
            admin::DEFAULT_TOKEN_TTL,
        )
        .await?;
        users.push((user, token));
    }
    Ok(Seeded { tenant, users })
}
