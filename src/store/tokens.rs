use sqlx::types::Json;
use time::OffsetDateTime;
use uuid::Uuid;

use super::{StoreError, StoreResult, TenantTx, ts, ts_opt};
use crate::crypto::TokenHash;
use crate::model::{ApiToken, Scope};

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
