//! `elevate doctor`: the advisor checks of `crate::doctor` against the deployment the same
//! configuration as `serve` describes (flags, `ELEVATE_*`, `--config`). Exit 1 when any finding
//! is an error.

use std::process::ExitCode;

use crate::clock::SystemClock;
use crate::config::{Config, LogFormat, Overrides};

#[derive(Debug, clap::Args)]
pub struct DoctorArgs {
    /// The server's configuration (the same flags and environment as `elevate serve`).
    #[command(flatten)]
    pub overrides: Box<Overrides>,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
}

pub async fn doctor(args: DoctorArgs, log_format: Option<LogFormat>) -> anyhow::Result<ExitCode> {
    let config = Config::load(&args.overrides, log_format)?;
    let report = crate::doctor::run(&config, &SystemClock).await;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report.to_json())?);
    } else {
        println!(
            "elevate doctor: store {}, master key {}\n",
            config.database_url,
            crate::doctor::master_key_path(&config).display()
        );
        print!("{}", report.render());
    }
    Ok(if report.is_healthy() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
