use sqlx::types::Json;
use time::OffsetDateTime;
use uuid::Uuid;

use super::built::{Arg, Sql};
use super::{Backend, Conn, StoreError, StoreResult, TenantTx, ts};
use crate::model::{Role, User};

#[derive(Debug, Clone)]
pub struct NewUser {
    /// Already normalized (`model::normalize_email`).
    pub email: String,
    pub display_name: String,
    pub roles: Vec<Role>,
    pub groups: Vec<String>,
}

/// A change to a user's standing access; `None` leaves a field as it is.
#[derive(Debug, Clone, Default)]
pub struct UserChange {
    pub display_name: Option<String>,
    pub roles: Option<Vec<Role>>,
    pub groups: Option<Vec<String>>,
    pub disabled: Option<bool>,
}

impl TenantTx {
    pub async fn insert_user(&mut self, new: &NewUser, now: OffsetDateTime) -> StoreResult<User> {
        let (tenant_id, id) = (self.tenant_id, Uuid::now_v7());
        let mut roles = new.roles.clone();
        roles.sort();
        roles.dedup();
        let user = sql!(fetch_one User; self,
            "INSERT INTO users (tenant_id, id, email, display_name, roles, group_names, disabled, created_at, updated_at)
             VALUES ($1, $2, $3, $4, $5, $6, FALSE, $7, $7)
             RETURNING tenant_id, id, email, display_name, roles, group_names, disabled, created_at, updated_at",
            tenant_id, id, &new.email, &new.display_name, Json(&roles), Json(&new.groups), ts(now))
        .map_err(|e| StoreError::conflict_or(e, "user"))?;
        self.mark_changed();
        Ok(user)
    }

    pub async fn user_by_email(&mut self, email: &str) -> StoreResult<Option<User>> {
        let tenant_id = self.tenant_id;
        Ok(sql!(fetch_optional User; self,
            "SELECT tenant_id, id, email, display_name, roles, group_names, disabled, created_at, updated_at
             FROM users WHERE tenant_id = $1 AND email = $2", tenant_id, email)?)
    }

    pub async fn user_by_id(&mut self, id: Uuid) -> StoreResult<Option<User>> {
        let tenant_id = self.tenant_id;
        Ok(sql!(fetch_optional User; self,
            "SELECT tenant_id, id, email, display_name, roles, group_names, disabled, created_at, updated_at
             FROM users WHERE tenant_id = $1 AND id = $2", tenant_id, id)?)
    }

    pub async fn list_users(&mut self) -> StoreResult<Vec<User>> {
        let tenant_id = self.tenant_id;
        Ok(sql!(fetch_all User; self,
            "SELECT tenant_id, id, email, display_name, roles, group_names, disabled, created_at, updated_at
             FROM users WHERE tenant_id = $1 ORDER BY email", tenant_id)?)
    }

    /// Enabled users with the approver role in any of `groups`: who is told that a request
    /// of a profile approved by `groups` waits. Found through the partial index
    /// `users_approvers` (migration 0020), so a filing does not read every user of the tenant
    /// into its write transaction.
    pub async fn approvers_in(&mut self, groups: &[String]) -> StoreResult<Vec<User>> {
        if groups.is_empty() {
            return Ok(Vec::new());
        }
        let sql = self.approvers_sql(groups);
        Ok(run_built!(fetch_all User; self, sql)?)
    }

    /// The plan of [`Self::approvers_in`], to check in tests that it uses its index.
    pub async fn explain_approvers_in(&mut self, groups: &[String]) -> StoreResult<Vec<String>> {
        let sql = self.approvers_sql(groups);
        self.explain_built(sql).await
    }

    fn approvers_sql(&self, groups: &[String]) -> Sql {
        let mut sql = Sql::new();
        let tenant = sql.arg(Arg::Uuid(self.tenant_id));
        let groups = sql.arg(Arg::Texts(groups.to_vec()));
        // The index's own condition, word for word, then the exact checks.
        let matches = match self.backend() {
            Backend::Sqlite => format!(
                "NOT disabled AND roles LIKE '%\"approver\"%'
                 AND EXISTS (SELECT 1 FROM json_each(users.roles) WHERE value = 'approver')
                 AND EXISTS (SELECT 1 FROM json_each(users.group_names)
                             WHERE value IN (SELECT value FROM json_each({groups})))"
            ),
            Backend::Postgres => {
                format!("NOT disabled AND roles ? 'approver' AND group_names ?| {groups}::text[]")
            }
        };
        sql.text = format!(
            "SELECT tenant_id, id, email, display_name, roles, group_names, disabled, created_at, updated_at
             FROM users WHERE tenant_id = {tenant} AND {matches} ORDER BY email"
        );
        sql
    }

    pub async fn update_user(
        &mut self,
        id: Uuid,
        change: &UserChange,
        now: OffsetDateTime,
    ) -> StoreResult<User> {
        let current = self.user_by_id(id).await?.ok_or(StoreError::NotFound)?;
        let mut roles = change.roles.clone().unwrap_or(current.roles.0);
        roles.sort();
        roles.dedup();
        let groups = change.groups.clone().unwrap_or(current.group_names.0);
        let display_name = change.display_name.clone().unwrap_or(current.display_name);
        let disabled = change.disabled.unwrap_or(current.disabled);
        let tenant_id = self.tenant_id;
        let user = sql!(fetch_one User; self,
            "UPDATE users SET display_name = $3, roles = $4, group_names = $5, disabled = $6, updated_at = $7
             WHERE tenant_id = $1 AND id = $2
             RETURNING tenant_id, id, email, display_name, roles, group_names, disabled, created_at, updated_at",
            tenant_id, id, &display_name, Json(&roles), Json(&groups), disabled, ts(now))?;
        self.mark_changed();
        Ok(user)
    }
}
