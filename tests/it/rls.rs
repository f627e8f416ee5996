//! Tenant isolation in Postgres, proved with hand-written SQL as the service's own role: row-level
//! security, not the store API, is what stops a cross-tenant query.

use elevate::clock::ManualClock;
use elevate::crypto::MasterKey;
use elevate::model::{Role, Tenant};
use elevate::store::{Store, StoreError, TENANT_TABLES};
use sqlx::{Connection, PgConnection};

use crate::helpers::{
    OWNER_LOGIN_ROLE, TestDb, ensure_login_role, pg_url, seed_tenant, seed_token, seed_user,
};

/// Two tenants with users, tokens, keys and audit events.
async fn two_tenants(db: &TestDb) -> (Tenant, Tenant) {
    let clock = ManualClock::starting_now();
    let master = MasterKey::generate().unwrap();
    let a = seed_tenant(&db.store, &master, &clock, "rls-a").await;
    let b = seed_tenant(&db.store, &master, &clock, "rls-b").await;
    for (t, email) in [(&a, "alice@a.example"), (&b, "bob@b.example")] {
        let u = seed_user(&db.store, &clock, t, email, &[Role::Requester], &["eng"]).await;
        seed_token(&db.store, &clock, &u, &[]).await;
    }
    (a, b)
}

async fn app_conn(db: &TestDb) -> PgConnection {
    PgConnection::connect(&db.url).await.unwrap()
}

async fn count(c: &mut PgConnection, table: &str, tenant: Option<&Tenant>) -> i64 {
    let sql = match tenant {
        Some(t) => format!(
            "SELECT count(*) FROM {table} WHERE tenant_id = '{}'",
            t.tenant_id
        ),
        None => format!("SELECT count(*) FROM {table}"),
    };
    sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
        .fetch_one(c)
        .await
        .unwrap()
}

async fn set_tenant(c: &mut PgConnection, t: &str) {
    sqlx::query("SELECT set_config('app.tenant_id', $1, true)")
        .bind(t)
        .execute(c)
        .await
        .unwrap();
}

#[tokio::test]
async fn every_tenant_table_has_forced_rls_and_a_policy() {
    let db = TestDb::postgres().await;
    let mut c = PgConnection::connect(&db.owner_url).await.unwrap();
    let tables: Vec<(String, bool, bool, i64)> = sqlx::query_as(
        "SELECT c.relname::text, c.relrowsecurity, c.relforcerowsecurity,
                (SELECT count(*) FROM pg_policy p WHERE p.polrelid = c.oid AND p.polname = 'tenant_isolation')
         FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
         WHERE n.nspname = 'public' AND c.relkind = 'r' AND c.relname <> '_sqlx_migrations'
         ORDER BY 1",
    )
    .fetch_all(&mut c)
    .await
    .unwrap();
    let names: Vec<&str> = tables.iter().map(|t| t.0.as_str()).collect();
    let mut expected = TENANT_TABLES.to_vec();
    expected.sort();
    assert_eq!(
        names, expected,
        "a table is missing from TENANT_TABLES (and so from the isolation checks)"
    );
    for (name, enabled, forced, policies) in tables {
        assert!(
            enabled && forced && policies == 1,
            "{name}: rls={enabled} force={forced} policies={policies}"
        );
        let has_tenant: bool = sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM information_schema.columns WHERE table_name = $1 AND column_name = 'tenant_id')",
        )
        .bind(&name)
        .fetch_one(&mut c)
        .await
        .unwrap();
        assert!(has_tenant, "{name} has no tenant_id");
    }
}

#[tokio::test]
async fn tenant_a_sees_nothing_of_tenant_b_and_cannot_write_it() {
    let db = TestDb::postgres().await;
    let (a, b) = two_tenants(&db).await;
    let mut c = app_conn(&db).await;

    let mut tx = c.begin().await.unwrap();
    set_tenant(&mut tx, &a.tenant_id.to_string()).await;
    for table in TENANT_TABLES {
        assert_eq!(
            count(&mut tx, table, Some(&b)).await,
            0,
            "{table}: tenant A sees tenant B's rows"
        );
    }
    for table in ["tenants", "users", "api_tokens", "ca_keys", "audit_events"] {
        assert!(
            count(&mut tx, table, Some(&a)).await > 0,
            "{table}: tenant A cannot see its own rows"
        );
        assert_eq!(
            count(&mut tx, table, None).await,
            count(&mut tx, table, Some(&a)).await
        );
    }

    // No inserting into B, no updating or deleting B's rows, no moving own rows to B.
    let insert = sqlx::query(
        "INSERT INTO users (tenant_id, id, email, display_name, created_at, updated_at)
         VALUES ($1, gen_random_uuid(), 'mallory@b.example', 'Mallory', now(), now())",
    )
    .bind(b.tenant_id)
    .execute(&mut *tx)
    .await;
    assert!(
        insert
            .unwrap_err()
            .to_string()
            .contains("row-level security")
    );
    tx.rollback().await.unwrap();

    let mut tx = c.begin().await.unwrap();
    set_tenant(&mut tx, &a.tenant_id.to_string()).await;
    let updated = sqlx::query("UPDATE users SET display_name = 'pwned' WHERE tenant_id = $1")
        .bind(b.tenant_id)
        .execute(&mut *tx)
        .await
        .unwrap();
    assert_eq!(updated.rows_affected(), 0);
    let revoked = sqlx::query("UPDATE api_tokens SET revoked_at = now()")
        .execute(&mut *tx)
        .await
        .unwrap();
    assert_eq!(
        revoked.rows_affected(),
        1,
        "only A's own token is visible to update"
    );
    let deleted = sqlx::query("DELETE FROM api_tokens WHERE tenant_id = $1")
        .bind(b.tenant_id)
        .execute(&mut *tx)
        .await
        .unwrap();
    assert_eq!(deleted.rows_affected(), 0);
    let moved = sqlx::query("UPDATE users SET tenant_id = $1")
        .bind(b.tenant_id)
        .execute(&mut *tx)
        .await;
    assert!(
        moved
            .unwrap_err()
            .to_string()
            .contains("row-level security")
    );
    tx.rollback().await.unwrap();

    // B's data is intact, seen as B.
    let mut tx = c.begin().await.unwrap();
    set_tenant(&mut tx, &b.tenant_id.to_string()).await;
    let name: String = sqlx::query_scalar("SELECT display_name FROM users")
        .fetch_one(&mut *tx)
        .await
        .unwrap();
    assert_eq!(name, "bob");
    assert_eq!(count(&mut tx, "api_tokens", Some(&b)).await, 1);
}

#[tokio::test]
async fn an_unset_tenant_sees_nothing() {
    let db = TestDb::postgres().await;
    two_tenants(&db).await;
    let mut c = app_conn(&db).await;
    for table in TENANT_TABLES {
        assert_eq!(
            count(&mut c, table, None).await,
            0,
            "{table} visible without a tenant"
        );
    }
    let mut tx = c.begin().await.unwrap();
    set_tenant(&mut tx, "").await;
    for table in TENANT_TABLES {
        assert_eq!(
            count(&mut tx, table, None).await,
            0,
            "{table} visible with an empty tenant"
        );
    }
    let insert = sqlx::query("INSERT INTO tenants (tenant_id, slug, name, created_at) VALUES (gen_random_uuid(), 'x', 'x', now())")
        .execute(&mut *tx)
        .await;
    assert!(
        insert.is_err(),
        "a tenant row was written with no tenant set"
    );
}

#[tokio::test]
async fn the_audit_log_is_insert_and_select_only_for_the_app() {
    let db = TestDb::postgres().await;
    let (a, _) = two_tenants(&db).await;
    let mut c = app_conn(&db).await;
    let mut tx = c.begin().await.unwrap();
    set_tenant(&mut tx, &a.tenant_id.to_string()).await;
    let update = sqlx::query("UPDATE audit_events SET subject = 'rewritten'")
        .execute(&mut *tx)
        .await;
    assert!(
        update
            .unwrap_err()
            .to_string()
            .contains("permission denied")
    );
    tx.rollback().await.unwrap();
    let mut tx = c.begin().await.unwrap();
    set_tenant(&mut tx, &a.tenant_id.to_string()).await;
    let delete = sqlx::query("DELETE FROM audit_events")
        .execute(&mut *tx)
        .await;
    assert!(
        delete
            .unwrap_err()
            .to_string()
            .contains("permission denied")
    );
}

#[tokio::test]
async fn security_definer_functions_pin_search_path_and_reveal_only_tenant_ids() {
    let db = TestDb::postgres().await;
    let (a, b) = two_tenants(&db).await;
    let mut c = PgConnection::connect(&db.owner_url).await.unwrap();
    let definers: Vec<(String, Option<Vec<String>>)> = sqlx::query_as(
        "SELECT p.proname::text, p.proconfig FROM pg_proc p
         WHERE p.prosecdef AND p.pronamespace = 'public'::regnamespace ORDER BY 1",
    )
    .fetch_all(&mut c)
    .await
    .unwrap();
    assert!(definers.len() >= 3, "{definers:?}");
    for (name, config) in &definers {
        let pinned = config
            .iter()
            .flatten()
            .any(|s| s.starts_with("search_path=pg_catalog"));
        assert!(
            pinned,
            "SECURITY DEFINER function {name} does not pin search_path: {config:?}"
        );
    }
    let mut app = app_conn(&db).await;
    let slugs: Vec<String> = sqlx::query_scalar("SELECT slug FROM elevate_tenant_list()")
        .fetch_all(&mut app)
        .await
        .unwrap();
    assert_eq!(slugs, vec![a.slug.clone(), b.slug.clone()]);
    // The resolver may read only the columns that map a secret or slug to a tenant.
    let mut owner_tx = c.begin().await.unwrap();
    sqlx::query("SET LOCAL ROLE elevate_resolver")
        .execute(&mut *owner_tx)
        .await
        .unwrap();
    let leak = sqlx::query("SELECT display_name FROM users")
        .execute(&mut *owner_tx)
        .await;
    assert!(leak.unwrap_err().to_string().contains("permission denied"));
    owner_tx.rollback().await.unwrap();
    let mut tx = app.begin().await.unwrap();
    let resolver = sqlx::query("SET LOCAL ROLE elevate_resolver")
        .execute(&mut *tx)
        .await;
    assert!(
        resolver.is_err(),
        "the app role must not be able to become the resolver"
    );
}

#[tokio::test]
async fn the_server_refuses_roles_that_can_bypass_rls() {
    let db = TestDb::postgres().await;
    let superuser = Store::connect(&db.owner_url).await.unwrap();
    let err = superuser.check_role_safety().await.unwrap_err();
    assert!(
        matches!(&err, StoreError::UnsafeRole { reason, .. } if reason.contains("SUPERUSER")),
        "{err}"
    );

    ensure_login_role(&db.owner_url, OWNER_LOGIN_ROLE, "elevate_owner").await;
    let database = db.owner_url.rsplit('/').next().unwrap().to_owned();
    let owner = Store::connect(&pg_url(&database, Some(OWNER_LOGIN_ROLE)))
        .await
        .unwrap();
    let err = owner.check_role_safety().await.unwrap_err();
    assert!(
        matches!(&err, StoreError::UnsafeRole { reason, .. } if reason.contains("owns")),
        "{err}"
    );

    db.store.check_role_safety().await.unwrap();
}
