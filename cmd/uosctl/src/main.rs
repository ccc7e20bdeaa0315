//! `uosctl`: the operator CLI. Parses arguments and hands each subcommand to its module.

mod audit;
mod declarative;
mod mail;
mod migrate;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "uosctl",
    version,
    about = "Operator tasks for user-org-service"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// Top-level command groups; each group is its own subcommand enum so new groups (migrate,
/// mailbox, …) slot in without touching the others.
#[derive(Debug, Subcommand)]
enum Command {
    /// Audit trail tools.
    #[command(subcommand)]
    Audit(audit::AuditCommand),
    /// The declarative config repository: its format, and checking it offline.
    #[command(subcommand)]
    Declarative(declarative::DeclarativeCommand),
    /// Read the dev mailbox (mails the embedded mail backend stored instead of sending).
    #[command(subcommand)]
    Mail(mail::MailCommand),
    /// Run the store's forward-only migrations (configured like admin-api: UOS_DATABASE_URL).
    Migrate,
}

/// Exit codes: 0 success, 1 the check failed (e.g. a tampered audit chain), 2 usage or input
/// errors (clap also uses 2), so scripts can tell "bad data" from "could not run".
fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Audit(cmd) => audit::run(cmd),
        Command::Declarative(cmd) => declarative::run(cmd),
        Command::Mail(cmd) => mail::run(cmd),
        Command::Migrate => migrate::run(),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory as _;

    #[test]
    fn cli_definition_is_consistent() {
        super::Cli::command().debug_assert();
    }
}
