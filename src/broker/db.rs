//! Issuing a database login for a grant. Order matters: the record and its audit event are
//! committed before the role exists (so a crash can never leave a role elevate does not know),
//! the record is re-checked under the target's lock for the role (so a grant that ended meanwhile
//! gets no role), and the password is returned once and never stored.

use serde_json::json;
use time::OffsetDateTime;
use uuid::Uuid;
use zeroize::Zeroizing;

use crate::audit::Ctx;
use crate::broker::service;
use crate::crypto::MasterKey;
use crate::db_targets::{TargetSpec, names};
use crate::error::{AppError, AppResult};
use crate::model::{TargetKind, Tenant, User};
use crate::store::{DbLoginRecord, Store};

/// A login just created: shown to the requester once.
pub struct IssuedLogin {
    /// The profile the grant is for.
    pub profile: String,
    pub target: String,
    pub kind: TargetKind,
    pub host: String,
    pub port: u16,
    pub database: String,
    pub username: String,
    pub password: Zeroizing<String>,
    pub expires_at: OffsetDateTime,
    /// The profile's roles the login inherits (MariaDB: `SET ROLE` the first one).
    pub roles: Vec<String>,
}

impl std::fmt::Debug for IssuedLogin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IssuedLogin")
            .field("target", &self.target)
            .field("username", &self.username)
            .field("expires_at", &self.expires_at)
            .finish_non_exhaustive()
    }
}

/// Creates a login on the profile's target for request `id` of `user`.
pub async fn issue(
    store: &Store,
    master: &MasterKey,
    ctx: &Ctx,
    tenant: &Tenant,
    user: &User,
    id: Uuid,
) -> AppResult<IssuedLogin> {
    let now = ctx.now;
    let mut tx = store.tenant(tenant.tenant_id).await?;
    let Some((stored, profile)) = service::lock_visible(&mut tx, user, id).await? else {
        tx.rollback().await?;
        return Err(AppError::NotFound(format!("no request {id}")));
    };
    if let Some(err) = service::lockdown_refusal(&mut tx).await? {
        tx.rollback().await?;
        return service::refuse_credential(store, tenant, ctx, id, "db.login_refused", err).await;
    }
    let r = &stored.request;
    let target = match &profile.database {
        Some(db) => tx.target_by_name(&db.target).await?,
        None => None,
    };
    let refusal = crate::workflow::credential_refusal(
        r,
        user.id,
        profile.database.is_some(),
        "database",
        &profile.name,
        now,
    )
    .or_else(|| {
        target.is_none().then(|| {
            AppError::Conflict(format!(
                "database target {} is not configured (elevate admin target set)",
                profile
                    .database
                    .as_ref()
                    .map(|d| d.target.as_str())
                    .unwrap_or("?")
            ))
        })
    });
    if let Some(err) = refusal {
        tx.rollback().await?;
        return service::refuse_credential(store, tenant, ctx, id, "db.login_refused", err).await;
    }
    let (Some(db), Some(grant), Some(target)) = (&profile.database, &r.grant, target) else {
        return Err(AppError::internal(anyhow::anyhow!("checked above")));
    };
    let spec = TargetSpec::open(&target, master).map_err(AppError::Internal)?;
    let record = DbLoginRecord {
        id: Uuid::now_v7(),
        request_id: id,
        target_name: target.name.clone(),
        role_name: names::role_name(tenant.tenant_id, id).map_err(AppError::internal)?,
        owner_role: db.owner.clone(),
        valid_after: now,
        valid_before: grant.not_after,
        revoked_at: None,
        cleaned_up_at: None,
        cleanup_attempts: 0,
        next_attempt_at: Some(grant.not_after),
        last_error: None,
        created_at: now,
    };
    tx.insert_db_login(&record).await?;
    tx.append_audit(
        &ctx.event("db.login_issued", &profile.name)
            .request(id)
            .details(json!({
                "target": target.name,
                "role": record.role_name,
                "roles": db.roles,
                "valid_until": grant.not_after.unix_timestamp(),
            })),
        now,
    )
    .await?;
    tx.commit().await?;

    let password = names::password().map_err(AppError::internal)?;
    match create(store, tenant, &spec, &record, &db.roles, &password, now).await {
        Ok(()) => Ok(IssuedLogin {
            profile: profile.name.clone(),
            target: target.name,
            kind: spec.kind,
            host: spec.host(),
            port: spec.port(),
            database: spec.database(),
            username: record.role_name,
            password,
            expires_at: record.valid_before,
            roles: db.roles.clone(),
        }),
        Err(err) => {
            // The role may half-exist: the reaper makes sure it does not.
            let mut tx = store.tenant(tenant.tenant_id).await?;
            tx.abandon_db_login(record.id, &err.to_string(), now)
                .await?;
            tx.append_audit(
                &ctx.event("db.login_failed", &profile.name)
                    .request(id)
                    .details(json!({
                        "target": record.target_name,
                        "role": record.role_name,
                        "reason": err.to_string(),
                    })),
                now,
            )
            .await?;
            tx.commit().await?;
            Err(err)
        }
    }
}

/// Creates the role under the target's lock for it, if its record is still live.
async fn create(
    store: &Store,
    tenant: &Tenant,
    spec: &TargetSpec,
    record: &DbLoginRecord,
    roles: &[String],
    password: &str,
    now: OffsetDateTime,
) -> AppResult<()> {
    let unavailable = |e: crate::db_targets::TargetError| {
        tracing::warn!(target = %spec.name, error = %e, "database target failed");
        AppError::Unavailable(format!("database target {} failed: {e}", spec.name))
    };
    // The password's hash (about 1 ms of CPU) is made while the role lock is taken.
    let (conn, secret) = tokio::join!(
        spec.locked_for(tenant.tenant_id, &record.role_name),
        spec.login_secret(password)
    );
    let mut conn = conn.map_err(unavailable)?;
    let secret = match secret {
        Ok(secret) => secret,
        Err(e) => {
            conn.close().await;
            return Err(unavailable(e));
        }
    };
    let result = async {
        let mut tx = store.read(tenant.tenant_id).await?;
        let live = tx
            .db_login(record.id)
            .await?
            .is_some_and(|c| c.is_live(now));
        tx.commit().await?;
        if !live {
            return Err(AppError::Conflict(
                "the grant ended while its login was being made".into(),
            ));
        }
        conn.create_login(&record.role_name, &secret, record.valid_before, roles)
            .await
            .map_err(unavailable)
    }
    .await;
    spec.give_back(tenant.tenant_id, conn, &record.role_name, result.is_ok())
        .await;
    result
}

/// The client command for a login, without its password (the client asks for it).
pub fn client_hint(login: &IssuedLogin) -> String {
    match login.kind {
        TargetKind::Postgres => format!(
            "psql \"host={} port={} dbname={} user={}\"",
            login.host, login.port, login.database, login.username
        ),
        // The login may have no default role (see mysql.rs): take it, then open the database.
        TargetKind::Mysql => {
            let mut init: Vec<String> = login
                .roles
                .first()
                .map(|r| format!("SET ROLE `{r}`"))
                .into_iter()
                .collect();
            if !login.database.is_empty() {
                init.push(format!("USE `{}`", login.database));
            }
            format!(
                "mariadb -h {} -P {} -u {} -p --init-command='{}'",
                login.host,
                login.port,
                login.username,
                init.join("; ")
            )
        }
    }
}
