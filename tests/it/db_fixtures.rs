//! Real database targets for the login tests: a fresh Postgres database (or MariaDB schema) per
//! test with its own roles and a non-superuser admin login holding only the documented rights,
//! and a TCP proxy that can take a target off the network and bring it back.

use std::sync::{Arc, Mutex};

use sqlx::{Connection, MySqlConnection, PgConnection};

use crate::helpers::pg_admin_url;

pub const MARIADB_ROOT: &str = "mysql://root@127.0.0.1:3306";

fn tag() -> String {
    uuid::Uuid::new_v4().simple().to_string()[..10].to_owned()
}

async fn pg_exec(url: &str, sql: &str) {
    let mut c = PgConnection::connect(url)
        .await
        .unwrap_or_else(|e| panic!("PostgreSQL at {url}: {e} (scripts/test.sh starts it)"));
    sqlx::raw_sql(sqlx::AssertSqlSafe(sql.to_owned()))
        .execute(&mut c)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
    c.close().await.unwrap();
}

/// A Postgres target: database `et_<tag>` with a table `orders` (readable by `read`), a table
/// `secrets` (nobody's), a schema `work` (writable by `write`), all owned by `owner`; an admin
/// login with CREATEROLE and the profile roles WITH ADMIN OPTION — not a superuser.
pub struct PgTarget {
    pub database: String,
    pub admin: String,
    pub admin_password: String,
    pub read: String,
    pub write: String,
    pub owner: String,
    /// Host and port elevate reaches the target at (a proxy's, in the outage test).
    pub port: u16,
}

impl PgTarget {
    pub async fn new() -> Self {
        let t = tag();
        let target = PgTarget {
            database: format!("et_{t}"),
            admin: format!("et_{t}_admin"),
            admin_password: format!("pw-{}", tag()),
            read: format!("et_{t}_read"),
            write: format!("et_{t}_write"),
            owner: format!("et_{t}_owner"),
            port: 5432,
        };
        let su = pg_admin_url();
        pg_exec(&su, &format!("CREATE DATABASE {}", target.database)).await;
        pg_exec(
            &su,
            &format!(
                "CREATE ROLE {owner} NOLOGIN;
                 CREATE ROLE {read} NOLOGIN IN ROLE elevate_password_logins;
                 CREATE ROLE {write} NOLOGIN IN ROLE elevate_password_logins;
                 CREATE ROLE {admin} LOGIN CREATEROLE PASSWORD '{pw}' IN ROLE elevate_password_logins;
                 GRANT {read}, {write} TO {admin} WITH ADMIN OPTION;
                 GRANT {owner} TO {admin};
                 REVOKE CONNECT ON DATABASE {db} FROM PUBLIC;
                 GRANT CONNECT ON DATABASE {db} TO {admin}, {read}, {write};",
                owner = target.owner,
                read = target.read,
                write = target.write,
                admin = target.admin,
                pw = target.admin_password,
                db = target.database,
            ),
        )
        .await;
        pg_exec(
            &target.superuser_url(),
            &format!(
                "CREATE TABLE orders (id int PRIMARY KEY, item text);
                 INSERT INTO orders VALUES (1, 'widget'), (2, 'gadget');
                 CREATE TABLE secrets (v text); INSERT INTO secrets VALUES ('classified');
                 ALTER TABLE orders OWNER TO {owner}; ALTER TABLE secrets OWNER TO {owner};
                 REVOKE ALL ON SCHEMA public FROM PUBLIC;
                 GRANT USAGE ON SCHEMA public TO {read}, {write};
                 GRANT SELECT ON orders TO {read};
                 CREATE SCHEMA work AUTHORIZATION {owner};
                 GRANT USAGE, CREATE ON SCHEMA work TO {write};",
                owner = target.owner,
                read = target.read,
                write = target.write,
            ),
        )
        .await;
        target
    }

    pub fn superuser_url(&self) -> String {
        crate::helpers::pg_url(&self.database, None)
    }

    /// Runs `sql` as the superuser on the target's database (what an operator does by hand).
    pub async fn superuser_exec(&self, sql: &str) {
        pg_exec(&self.superuser_url(), sql).await;
    }

    /// The URL `elevate admin target set` gets (no password).
    pub fn admin_url(&self) -> String {
        format!(
            "postgres://{}@127.0.0.1:{}/{}",
            self.admin, self.port, self.database
        )
    }

    /// A session as an issued login, straight to Postgres.
    pub async fn login(&self, user: &str, password: &str) -> Result<PgConnection, sqlx::Error> {
        let options = sqlx::postgres::PgConnectOptions::new()
            .host("127.0.0.1")
            .port(5432)
            .database(&self.database)
            .username(user)
            .password(password);
        PgConnection::connect_with(&options).await
    }

    pub async fn superuser(&self) -> PgConnection {
        PgConnection::connect(&self.superuser_url()).await.unwrap()
    }

    pub async fn role_exists(&self, role: &str) -> bool {
        let mut c = self.superuser().await;
        let n: i64 = sqlx::query_scalar("SELECT count(*) FROM pg_roles WHERE rolname = $1")
            .bind(role)
            .fetch_one(&mut c)
            .await
            .unwrap();
        n > 0
    }

    /// How many of `roles` exist (one query, so polling it is cheap).
    pub async fn existing_roles(&self, roles: &[String]) -> i64 {
        let mut c = self.superuser().await;
        sqlx::query_scalar("SELECT count(*) FROM pg_roles WHERE rolname = ANY($1)")
            .bind(roles)
            .fetch_one(&mut c)
            .await
            .unwrap()
    }

    pub async fn sessions_of(&self, role: &str) -> i64 {
        let mut c = self.superuser().await;
        sqlx::query_scalar("SELECT count(*) FROM pg_stat_activity WHERE usename = $1")
            .bind(role)
            .fetch_one(&mut c)
            .await
            .unwrap()
    }

    /// Waits up to `secs` for `role` to have no sessions; true when it has none.
    pub async fn sessions_gone(&self, role: &str, secs: u64) -> bool {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(secs);
        loop {
            if self.sessions_of(role).await == 0 {
                return true;
            }
            if std::time::Instant::now() > deadline {
                return false;
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
    }
}

async fn my_exec(url: &str, sql: &str) {
    let mut c = MySqlConnection::connect(url)
        .await
        .unwrap_or_else(|e| panic!("MariaDB at {url}: {e} (scripts/test.sh starts it)"));
    sqlx::raw_sql(sqlx::AssertSqlSafe(sql.to_owned()))
        .execute(&mut c)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
    c.close().await.unwrap();
}

/// A MariaDB target: schema `et_<tag>` with `orders` (readable by role `read`) and `secrets`,
/// and an admin user with only CREATE USER, PROCESS, CONNECTION ADMIN, SELECT on mysql.user
/// and the role WITH ADMIN OPTION.
pub struct MyTarget {
    pub database: String,
    pub admin: String,
    pub admin_password: String,
    pub read: String,
}

impl MyTarget {
    pub async fn new() -> Self {
        let t = tag();
        let target = MyTarget {
            database: format!("et_{t}"),
            admin: format!("et_{t}_admin"),
            admin_password: format!("pw-{}", tag()),
            read: format!("et_{t}_read"),
        };
        my_exec(
            MARIADB_ROOT,
            &format!(
                "CREATE DATABASE {db};
                 CREATE TABLE {db}.orders (id INT PRIMARY KEY, item TEXT);
                 INSERT INTO {db}.orders VALUES (1, 'widget'), (2, 'gadget');
                 CREATE TABLE {db}.secrets (v TEXT);
                 CREATE ROLE {read};
                 GRANT SELECT ON {db}.orders TO {read};
                 CREATE USER '{admin}'@'%' IDENTIFIED BY '{pw}';
                 GRANT CREATE USER, PROCESS, CONNECTION ADMIN ON *.* TO '{admin}'@'%';
                 GRANT SELECT ON mysql.user TO '{admin}'@'%';
                 GRANT {read} TO '{admin}'@'%' WITH ADMIN OPTION;",
                db = target.database,
                read = target.read,
                admin = target.admin,
                pw = target.admin_password,
            ),
        )
        .await;
        target
    }

    pub fn admin_url(&self) -> String {
        format!("mysql://{}@127.0.0.1:3306/{}", self.admin, self.database)
    }

    pub async fn login(&self, user: &str, password: &str) -> Result<MySqlConnection, sqlx::Error> {
        let options = sqlx::mysql::MySqlConnectOptions::new()
            .host("127.0.0.1")
            .port(3306)
            .database(&self.database)
            .username(user)
            .password(password);
        MySqlConnection::connect_with(&options).await
    }

    pub async fn login_without_database(
        &self,
        user: &str,
        password: &str,
    ) -> Result<MySqlConnection, sqlx::Error> {
        let options = sqlx::mysql::MySqlConnectOptions::new()
            .host("127.0.0.1")
            .port(3306)
            .username(user)
            .password(password);
        MySqlConnection::connect_with(&options).await
    }

    pub async fn root(&self) -> MySqlConnection {
        MySqlConnection::connect(MARIADB_ROOT).await.unwrap()
    }

    pub async fn user_exists(&self, user: &str) -> bool {
        let mut c = self.root().await;
        let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM mysql.user WHERE User = ?")
            .bind(user)
            .fetch_one(&mut c)
            .await
            .unwrap();
        n > 0
    }

    pub async fn sessions_of(&self, user: &str) -> i64 {
        let mut c = self.root().await;
        sqlx::query_scalar("SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE USER = ?")
            .bind(user)
            .fetch_one(&mut c)
            .await
            .unwrap()
    }
}

/// Forwards a loopback port to a target; `down` refuses and cuts every connection until `up`.
pub struct Proxy {
    pub port: u16,
    upstream: u16,
    task: Mutex<Option<tokio::task::JoinHandle<()>>>,
}

impl Proxy {
    pub async fn start(upstream: u16) -> Arc<Self> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let proxy = Arc::new(Proxy {
            port,
            upstream,
            task: Mutex::new(None),
        });
        proxy.serve(listener);
        proxy
    }

    fn serve(&self, listener: tokio::net::TcpListener) {
        let upstream = self.upstream;
        let task = tokio::spawn(async move {
            let mut conns = tokio::task::JoinSet::new();
            while let Ok((mut inbound, _)) = listener.accept().await {
                conns.spawn(async move {
                    if let Ok(mut out) =
                        tokio::net::TcpStream::connect(("127.0.0.1", upstream)).await
                    {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut out).await;
                    }
                });
            }
        });
        *self.task.lock().unwrap() = Some(task);
    }

    /// The target is unreachable: new connections are refused, open ones cut.
    pub fn down(&self) {
        if let Some(task) = self.task.lock().unwrap().take() {
            task.abort();
        }
    }

    pub fn is_down(&self) -> bool {
        self.task.lock().unwrap().is_none()
    }

    pub async fn up(&self) {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", self.port))
            .await
            .unwrap();
        self.serve(listener);
    }
}
