//! `elevate completions SHELL` and `elevate man`: shell completions and manual pages, generated
//! from the same clap definitions the binary parses, so they cannot drift from it.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::{Args, CommandFactory, ValueEnum};

use super::Cli;

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum Shell {
    Bash,
    Zsh,
    Fish,
}

#[derive(Debug, Args)]
pub struct CompletionsArgs {
    /// The shell to complete for; the script goes to stdout (e.g. `elevate completions bash >
    /// /etc/bash_completion.d/elevate`).
    #[arg(value_enum)]
    pub shell: Shell,
}

#[derive(Debug, Args)]
pub struct ManArgs {
    /// Write `elevate.1` and one page per command (`elevate-request.1`, ...) into DIR instead of
    /// printing `elevate.1`.
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
}

pub fn completions(args: &CompletionsArgs, out: &mut dyn Write) {
    let mut cmd = Cli::command();
    let shell = match args.shell {
        Shell::Bash => clap_complete::Shell::Bash,
        Shell::Zsh => clap_complete::Shell::Zsh,
        Shell::Fish => clap_complete::Shell::Fish,
    };
    clap_complete::generate(shell, &mut cmd, "elevate", out);
}

pub fn man(args: &ManArgs) -> anyhow::Result<()> {
    let cmd = Cli::command();
    match &args.out {
        None => clap_mangen::Man::new(cmd)
            .render(&mut std::io::stdout().lock())
            .context("writing the manual page"),
        Some(dir) => {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
            let written = write_pages(&cmd, "elevate", dir)?;
            eprintln!("wrote {written} manual pages to {}", dir.display());
            Ok(())
        }
    }
}

/// The page of `cmd` as `name.1`, then its subcommands' pages (`name-sub.1`), recursively.
fn write_pages(cmd: &clap::Command, name: &str, dir: &Path) -> anyhow::Result<usize> {
    let page = cmd.clone().name(name.to_owned());
    let mut buf = Vec::new();
    clap_mangen::Man::new(page)
        .render(&mut buf)
        .context("rendering a manual page")?;
    let path = dir.join(format!("{name}.1"));
    std::fs::write(&path, buf).with_context(|| format!("writing {}", path.display()))?;
    let mut written = 1;
    for sub in cmd.get_subcommands().filter(|s| s.get_name() != "help") {
        written += write_pages(sub, &format!("{name}-{}", sub.get_name()), dir)?;
    }
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every argument and flag of every command says what it is for (`--help`, man pages).
    #[test]
    fn every_argument_has_a_help_line() {
        fn walk(cmd: &clap::Command, path: &str, missing: &mut Vec<String>) {
            for arg in cmd.get_arguments() {
                let id = arg.get_id().as_str();
                if matches!(id, "help" | "version") || arg.is_hide_set() {
                    continue;
                }
                if arg.get_help().is_none() && arg.get_long_help().is_none() {
                    missing.push(format!("{path} {id}"));
                }
            }
            for sub in cmd.get_subcommands() {
                walk(sub, &format!("{path} {}", sub.get_name()), missing);
            }
        }
        let mut missing = Vec::new();
        walk(&Cli::command(), "elevate", &mut missing);
        assert!(missing.is_empty(), "arguments without help: {missing:#?}");
    }

    #[test]
    fn client_commands_do_not_offer_the_servers_log_format() {
        let mut cmd = Cli::command();
        let help = cmd
            .find_subcommand_mut("request")
            .map(|c| c.render_help().to_string())
            .unwrap_or_default();
        assert!(help.contains("--for"), "{help}");
        assert!(!help.contains("--log-format"), "{help}");
    }
}
