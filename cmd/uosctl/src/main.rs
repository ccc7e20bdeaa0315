//! `uosctl`: the operator CLI. Parses arguments and hands each subcommand to its module.

mod audit;
mod backup;
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
    /// Back the configured store (and the key files, unless keys are in Vault) up into a new
    /// directory, with a manifest of every file's checksum and the store's inventory (rows per
    /// table, audit chain heads). Safe while the service runs. On PostgreSQL it runs
    /// `pg_dump` as the tables' owner (`UOS_MIGRATION_DATABASE_URL` if set).
    Backup {
        /// The directory to write (created; must be empty).
        #[arg(long)]
        out: std::path::PathBuf,
    },
    /// Restore a backup directory into the configured store, which must be empty, and the key
    /// files into the data directory; checks every file first and the restored store against
    /// the manifest after. On PostgreSQL it runs `pg_restore` in one transaction as the
    /// tables' owner; the service's role must exist on the server.
    Restore {
        /// The backup directory (as `uosctl backup --out` wrote it).
        #[arg(long)]
        from: std::path::PathBuf,
    },
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
        Command::Backup { out } => backup::backup(&out),
        Command::Restore { from } => backup::restore(&from),
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
