use time::OffsetDateTime;

use super::{Conn, StoreError, StoreResult, TenantTx, ts};
use crate::model::Tenant;

impl TenantTx {
    /// Creates the tenant row for this transaction's tenant id.
    pub async fn insert_tenant(
        &mut self,
        slug: &str,
        name: &str,
        now: OffsetDateTime,
    ) -> StoreResult<Tenant> {
        let tenant_id = self.tenant_id;
        let tenant = sql!(fetch_one Tenant; self,
            "INSERT INTO tenants (tenant_id, slug, name, created_at) VALUES ($1, $2, $3, $4)
             RETURNING tenant_id, slug, name, created_at",
            tenant_id, slug, name, ts(now))
        .map_err(|e| StoreError::conflict_or(e, "tenant"))?;
        self.mark_changed();
        Ok(tenant)
    }

    pub async fn get_tenant(&mut self) -> StoreResult<Tenant> {
        let tenant_id = self.tenant_id;
        sql!(fetch_optional Tenant; self,
            "SELECT tenant_id, slug, name, created_at FROM tenants WHERE tenant_id = $1", tenant_id)?
        .ok_or(StoreError::NotFound)
    }

    /// The tenant's emergency lockdown, when one is in force. On Postgres this takes a share lock
    /// on the tenant row until the transaction ends, so a lockdown being set waits for the
    /// transactions that read "not locked" (an approval, an issuance) and then revokes what they
    /// granted. Callers read it before locking any request (the lockdown takes the tenant row
    /// first, then requests: one order, no deadlock). A read-only transaction grants nothing,
    /// so it reads without the lock.
    pub async fn lockdown(&mut self) -> StoreResult<Option<Lockdown>> {
        let tenant_id = self.tenant_id;
        let read_only = self.read_only;
        let row: Option<(Option<OffsetDateTime>, Option<String>, Option<String>)> = match &mut self.conn {
            Conn::Postgres(c) if read_only => sqlx::query_as(
                "SELECT lockdown_at, lockdown_reason, lockdown_by FROM tenants WHERE tenant_id = $1",
            )
            .bind(tenant_id)
            .fetch_optional(&mut **c)
            .await?,
            Conn::Sqlite(c) => sqlx::query_as(
                "SELECT lockdown_at, lockdown_reason, lockdown_by FROM tenants WHERE tenant_id = $1",
            )
            .bind(tenant_id)
            .fetch_optional(&mut **c)
            .await?,
            Conn::Postgres(c) => sqlx::query_as(
                "SELECT lockdown_at, lockdown_reason, lockdown_by FROM tenants WHERE tenant_id = $1 FOR SHARE",
            )
            .bind(tenant_id)
            .fetch_optional(&mut **c)
            .await?,
        };
        Ok(match row {
            Some((Some(since), reason, set_by)) => Some(Lockdown {
                since,
                reason: reason.unwrap_or_default(),
                set_by: set_by.unwrap_or_default(),
            }),
            _ => None,
        })
    }

    /// Puts the tenant in lockdown (`Some`) or lifts it (`None`). Returns false when nothing
    /// changed (already locked, or not locked); a lockdown in force keeps its first reason.
    pub async fn set_lockdown(&mut self, lockdown: Option<&Lockdown>) -> StoreResult<bool> {
        let tenant_id = self.tenant_id;
        let n = match lockdown {
            Some(l) => sql!(exec self,
                "UPDATE tenants SET lockdown_at = $2, lockdown_reason = $3, lockdown_by = $4
                 WHERE tenant_id = $1 AND lockdown_at IS NULL",
                tenant_id, ts(l.since), &l.reason, &l.set_by)?,
            None => sql!(exec self,
                "UPDATE tenants SET lockdown_at = NULL, lockdown_reason = NULL, lockdown_by = NULL
                 WHERE tenant_id = $1 AND lockdown_at IS NOT NULL", tenant_id)?,
        };
        if n > 0 {
            self.mark_changed();
        }
        Ok(n > 0)
    }
}

/// A tenant-wide emergency lockdown: no grant activates and no credential is issued while it is
/// in force.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lockdown {
    pub since: OffsetDateTime,
    pub reason: String,
    /// Who set it, as the audit log names the actor.
    pub set_by: String,
}

/// A tenant's on/off settings (`elevate admin tenant set`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TenantFlag {
    /// Break-glass needs a passkey step-up even from people who have none (told to register).
    RequirePasskeyForBreakGlass,
    /// Admin changes from a browser need a recent step-up from every admin.
    RequirePasskeyForAdmin,
    /// Policy changes that widen access wait for a second admin.
    PolicyTwoPerson,
}

impl TenantFlag {
    pub const ALL: [TenantFlag; 3] = [
        TenantFlag::RequirePasskeyForBreakGlass,
        TenantFlag::RequirePasskeyForAdmin,
        TenantFlag::PolicyTwoPerson,
    ];

    pub fn name(self) -> &'static str {
        match self {
            TenantFlag::RequirePasskeyForBreakGlass => "require_passkey_for_break_glass",
            TenantFlag::RequirePasskeyForAdmin => "require_passkey_for_admin",
            TenantFlag::PolicyTwoPerson => "policy_two_person",
        }
    }
}

#[derive(sqlx::FromRow)]
struct Flags {
    require_passkey_for_break_glass: bool,
    require_passkey_for_admin: bool,
    policy_two_person: bool,
}

impl TenantTx {
    /// Whether `flag` is on for this tenant.
    pub async fn tenant_flag(&mut self, flag: TenantFlag) -> StoreResult<bool> {
        let tenant_id = self.tenant_id;
        let row = sql!(fetch_optional Flags; self,
            "SELECT require_passkey_for_break_glass, require_passkey_for_admin, policy_two_person
             FROM tenants WHERE tenant_id = $1", tenant_id)?;
        Ok(row.is_some_and(|f| match flag {
            TenantFlag::RequirePasskeyForBreakGlass => f.require_passkey_for_break_glass,
            TenantFlag::RequirePasskeyForAdmin => f.require_passkey_for_admin,
            TenantFlag::PolicyTwoPerson => f.policy_two_person,
        }))
    }

    /// Turns `flag` on or off; false when it already was.
    pub async fn set_tenant_flag(&mut self, flag: TenantFlag, on: bool) -> StoreResult<bool> {
        let tenant_id = self.tenant_id;
        let n = match flag {
            TenantFlag::RequirePasskeyForBreakGlass => sql!(exec self,
                "UPDATE tenants SET require_passkey_for_break_glass = $2
                 WHERE tenant_id = $1 AND require_passkey_for_break_glass <> $2", tenant_id, on)?,
            TenantFlag::RequirePasskeyForAdmin => sql!(exec self,
                "UPDATE tenants SET require_passkey_for_admin = $2
                 WHERE tenant_id = $1 AND require_passkey_for_admin <> $2", tenant_id, on)?,
            TenantFlag::PolicyTwoPerson => sql!(exec self,
                "UPDATE tenants SET policy_two_person = $2
                 WHERE tenant_id = $1 AND policy_two_person <> $2", tenant_id, on)?,
        };
        if n > 0 {
            self.mark_changed();
        }
        Ok(n > 0)
    }
}
