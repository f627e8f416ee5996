//! `elevate db ID`: a short-lived database login for an active grant, printed, or handed to the
//! database client in its environment (never on its command line, where `ps` would show it).

use std::process::ExitCode;

use anyhow::Context;
use serde_json::Value;

use super::client::Api;

#[derive(Debug, clap::Args)]
pub struct DbArgs {
    /// The request whose active grant the login is for.
    id: String,
    /// Run the database client (psql; mariadb or mysql) logged in, instead of printing the login.
    #[arg(long)]
    exec: bool,
    /// The client program to run with --exec [default: psql, or mariadb/mysql].
    #[arg(long, value_name = "PROGRAM")]
    client: Option<String>,
    /// Print the login as JSON.
    #[arg(long, conflicts_with = "exec")]
    json: bool,
    /// Further arguments for the client, after `--` (e.g. `-- -c "select 1"`).
    #[arg(last = true)]
    args: Vec<String>,
}

fn field<'a>(login: &'a Value, name: &str) -> anyhow::Result<&'a str> {
    login[name]
        .as_str()
        .with_context(|| format!("the server's answer has no {name}"))
}

fn on_path(program: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|paths| std::env::split_paths(&paths).any(|dir| dir.join(program).is_file()))
}

pub async fn db(args: DbArgs) -> anyhow::Result<ExitCode> {
    let api = Api::from_saved()?;
    let login = api
        .post(
            &format!("/requests/{}/db-credentials", args.id),
            serde_json::json!({}),
        )
        .await?;
    let kind = field(&login, "kind")?;
    let host = field(&login, "host")?;
    let port = login["port"].as_u64().unwrap_or_default().to_string();
    let database = field(&login, "database")?;
    let user = field(&login, "username")?;
    let password = field(&login, "password")?;
    if !args.exec {
        if args.json {
            println!("{login}");
        } else {
            println!("target    {} ({kind})", field(&login, "target")?);
            println!("host      {host}");
            println!("port      {port}");
            println!("database  {database}");
            println!("user      {user}");
            println!("password  {password}");
            println!("expires   {}", field(&login, "expires_at")?);
            println!(
                "(the password is shown once; `elevate db {} --exec` logs you in without it)",
                args.id
            );
        }
        return Ok(ExitCode::SUCCESS);
    }
    let mut command = if kind == "postgres" {
        let mut c = std::process::Command::new(args.client.as_deref().unwrap_or("psql"));
        c.env("PGHOST", host)
            .env("PGPORT", &port)
            .env("PGDATABASE", database)
            .env("PGUSER", user)
            .env("PGPASSWORD", password)
            .env("PGAPPNAME", "elevate");
        c
    } else {
        let program = args.client.clone().unwrap_or_else(|| {
            if on_path("mariadb") {
                "mariadb"
            } else {
                "mysql"
            }
            .to_owned()
        });
        let mut c = std::process::Command::new(program);
        c.env("MYSQL_PWD", password)
            .arg(format!("--host={host}"))
            .arg(format!("--port={port}"))
            .arg(format!("--user={user}"));
        // MariaDB lets only a root-like admin set a login's default role, and without its role
        // a login may not open the database: so take the role first, then the database.
        let quoted = |s: &str| format!("`{}`", s.replace('`', "``"));
        let mut init = Vec::new();
        if let Some(role) = login["roles"].get(0).and_then(Value::as_str) {
            init.push(format!("SET ROLE {}", quoted(role)));
        }
        if !database.is_empty() {
            init.push(format!("USE {}", quoted(database)));
        }
        if !init.is_empty() {
            c.arg(format!("--init-command={}", init.join("; ")));
        }
        c
    };
    eprintln!(
        "elevate: logged in as {user} until {}",
        field(&login, "expires_at")?
    );
    let status = command.args(&args.args).status().with_context(
        || "starting the database client (install psql or mariadb, or pass --client)",
    )?;
    Ok(ExitCode::from(
        status
            .code()
            .and_then(|c| u8::try_from(c).ok())
            .unwrap_or(1),
    ))
}
