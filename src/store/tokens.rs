use sqlx::types::Json;
use time::OffsetDateTime;
use uuid::Uuid;

use super::{SecretKind, Store, StoreError, StoreResult, TenantTx, ts, ts_opt};
use crate::crypto::TokenHash;
use crate::model::{ApiToken, Role, Scope, Tenant, User};

/// A token with its user and tenant, read in one statement (see [`Store::api_principal`]).
#[derive(sqlx::FromRow)]
struct PrincipalRow {
    tenant_id: Uuid,
    t_id: Uuid,
    t_user_id: Uuid,
    t_name: String,
    t_secret_hash: Vec<u8>,
    t_scopes: Json<Vec<Scope>>,
    t_created_at: OffsetDateTime,
    t_expires_at: Option<OffsetDateTime>,
    t_revoked_at: Option<OffsetDateTime>,
    t_last_used_at: Option<OffsetDateTime>,
    u_email: String,
    u_display_name: String,
    u_roles: Json<Vec<Role>>,
    u_group_names: Json<Vec<String>>,
    u_disabled: bool,
    u_created_at: OffsetDateTime,
    u_updated_at: OffsetDateTime,
    n_slug: String,
    n_name: String,
    n_created_at: OffsetDateTime,
}

const PRINCIPAL_SQL: &str = "SELECT t.tenant_id, t.id AS t_id, t.user_id AS t_user_id, t.name AS t_name,
        t.secret_hash AS t_secret_hash, t.scopes AS t_scopes, t.created_at AS t_created_at,
        t.expires_at AS t_expires_at, t.revoked_at AS t_revoked_at, t.last_used_at AS t_last_used_at,
        u.email AS u_email, u.display_name AS u_display_name, u.roles AS u_roles,
        u.group_names AS u_group_names, u.disabled AS u_disabled, u.created_at AS u_created_at,
        u.updated_at AS u_updated_at, n.slug AS n_slug, n.name AS n_name, n.created_at AS n_created_at
    FROM api_tokens t
    JOIN users u ON u.tenant_id = t.tenant_id AND u.id = t.user_id
    JOIN tenants n ON n.tenant_id = t.tenant_id
    WHERE t.secret_hash = $1";

impl PrincipalRow {
    fn split(self) -> (ApiToken, User, Tenant) {
        let token = ApiToken {
            tenant_id: self.tenant_id,
            id: self.t_id,
            user_id: self.t_user_id,
            name: self.t_name,
            secret_hash: self.t_secret_hash,
            scopes: self.t_scopes,
            created_at: self.t_created_at,
            expires_at: self.t_expires_at,
            revoked_at: self.t_revoked_at,
            last_used_at: self.t_last_used_at,
        };
        let user = User {
            tenant_id: self.tenant_id,
            id: self.t_user_id,
            email: self.u_email,
            display_name: self.u_display_name,
            roles: self.u_roles,
            group_names: self.u_group_names,
            disabled: self.u_disabled,
            created_at: self.u_created_at,
            updated_at: self.u_updated_at,
        };
        let tenant = Tenant {
            tenant_id: self.tenant_id,
            slug: self.n_slug,
            name: self.n_name,
            created_at: self.n_created_at,
        };
        (token, user, tenant)
    }
}

impl Store {
    /// The API token `hash` names, with its user and tenant, the match confirmed in constant
    /// time: what authenticating an API call reads, in one statement (see
    /// [`Store::read_by_secret`]).
    pub async fn api_principal(
        &self,
        hash: &TokenHash,
    ) -> StoreResult<Option<(ApiToken, User, Tenant)>> {
        let row: Option<PrincipalRow> = self
            .read_by_secret(SecretKind::Api, PRINCIPAL_SQL, hash.as_bytes())
            .await?;
        Ok(row
            .filter(|r| hash.matches(&r.t_secret_hash))
            .map(PrincipalRow::split))
    }
}

impl TenantTx {
    /// `parent`: the token this one was minted with, if any (revoking it revokes this one).
    #[allow(clippy::too_many_arguments)]
    pub async fn insert_api_token(
        &mut self,
        user_id: Uuid,
        name: &str,
        hash: &TokenHash,
        scopes: &[Scope],
        expires_at: Option<OffsetDateTime>,
        parent: Option<Uuid>,
        now: OffsetDateTime,
    ) -> StoreResult<ApiToken> {
        let (tenant_id, id) = (self.tenant_id, Uuid::now_v7());
        let token = sql!(fetch_one ApiToken; self,
            "INSERT INTO api_tokens (tenant_id, id, user_id, name, secret_hash, scopes, created_at, expires_at, parent_id)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
             RETURNING tenant_id, id, user_id, name, secret_hash, scopes, created_at, expires_at, revoked_at, last_used_at",
            tenant_id, id, user_id, name, hash.as_bytes(), Json(scopes), ts(now), ts_opt(expires_at), parent)
        .map_err(|e| StoreError::conflict_or(e, "token"))?;
        self.mark_changed();
        Ok(token)
    }

    /// Looks a token up by hash, then confirms the match in constant time.
    pub async fn api_token_by_hash(&mut self, hash: &TokenHash) -> StoreResult<Option<ApiToken>> {
        let tenant_id = self.tenant_id;
        let found = sql!(fetch_optional ApiToken; self,
            "SELECT tenant_id, id, user_id, name, secret_hash, scopes, created_at, expires_at, revoked_at, last_used_at
             FROM api_tokens WHERE tenant_id = $1 AND secret_hash = $2", tenant_id, hash.as_bytes())?;
        Ok(found.filter(|t| hash.matches(&t.secret_hash)))
    }

    pub async fn api_tokens_of(&mut self, user_id: Uuid) -> StoreResult<Vec<ApiToken>> {
        let tenant_id = self.tenant_id;
        Ok(sql!(fetch_all ApiToken; self,
            "SELECT tenant_id, id, user_id, name, secret_hash, scopes, created_at, expires_at, revoked_at, last_used_at
             FROM api_tokens WHERE tenant_id = $1 AND user_id = $2 ORDER BY created_at, id", tenant_id, user_id)?)
    }

    /// Every token of the tenant with its owner's address, newest first (the admins' list).
    pub async fn api_tokens_all(&mut self) -> StoreResult<Vec<(ApiToken, String)>> {
        let tenant_id = self.tenant_id;
        let rows: Vec<TokenWithOwner> = sql!(fetch_all TokenWithOwner; self,
            "SELECT t.tenant_id, t.id, t.user_id, t.name, t.secret_hash, t.scopes, t.created_at, t.expires_at,
                    t.revoked_at, t.last_used_at, u.email
             FROM api_tokens t JOIN users u ON u.tenant_id = t.tenant_id AND u.id = t.user_id
             WHERE t.tenant_id = $1 ORDER BY t.created_at DESC, t.id DESC", tenant_id)?;
        Ok(rows.into_iter().map(|r| (r.token, r.email)).collect())
    }

    /// Notes that token `id` authenticated a call at `now`.
    pub async fn touch_api_token(&mut self, id: Uuid, now: OffsetDateTime) -> StoreResult<()> {
        let tenant_id = self.tenant_id;
        sql!(exec self, "UPDATE api_tokens SET last_used_at = $3 WHERE tenant_id = $1 AND id = $2",
            tenant_id, id, ts(now))?;
        Ok(())
    }

    /// Revokes a token; returns false when it was already revoked or does not exist.
    pub async fn revoke_api_token(&mut self, id: Uuid, now: OffsetDateTime) -> StoreResult<bool> {
        let tenant_id = self.tenant_id;
        let n = sql!(exec self,
            "UPDATE api_tokens SET revoked_at = $3 WHERE tenant_id = $1 AND id = $2 AND revoked_at IS NULL",
            tenant_id, id, ts(now))?;
        if n > 0 {
            self.mark_changed();
        }
        Ok(n > 0)
    }

    /// Every token minted from `id`, directly or through other minted tokens (revoked or not).
    pub async fn api_token_descendants(&mut self, id: Uuid) -> StoreResult<Vec<Uuid>> {
        let tenant_id = self.tenant_id;
        let rows: Vec<(Uuid,)> = sql!(fetch_all (Uuid,); self,
            "WITH RECURSIVE minted(id) AS (
                SELECT id FROM api_tokens WHERE tenant_id = $1 AND parent_id = $2
                UNION
                SELECT t.id FROM api_tokens t JOIN minted m ON t.parent_id = m.id WHERE t.tenant_id = $1
             )
             SELECT id FROM minted", tenant_id, id)?;
        Ok(rows.into_iter().map(|(id,)| id).collect())
    }
}

#[derive(sqlx::FromRow)]
struct TokenWithOwner {
    #[sqlx(flatten)]
    token: ApiToken,
    email: String,
}
