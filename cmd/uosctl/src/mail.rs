//! `uosctl mail …`: read the dev mailbox, where the embedded mail backend stores invites and
//! recovery mails instead of sending them.

use std::io::IsTerminal as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Args, Subcommand};
use uos_mail::{DevMailbox, StoredMail};

#[derive(Debug, Subcommand)]
pub enum MailCommand {
    /// One line per stored mail, oldest first: id, sent_at, to, subject (tab-separated).
    List(ListArgs),
    /// Headers and body of one stored mail.
    #[command(after_help = "Exit status: 0 shown, 1 no mail with that id, 2 unreadable mailbox.")]
    Show(ShowArgs),
}

#[derive(Debug, Args)]
pub struct DataDirArg {
    /// The service's data directory (as `data_dir` in its configuration); the mailbox is its
    /// `mailbox/` subdirectory.
    #[arg(long, value_name = "DIR", env = "UOS_DATA_DIR", default_value = ".uos")]
    data_dir: PathBuf,
}

#[derive(Debug, Args)]
pub struct ListArgs {
    #[command(flatten)]
    dir: DataDirArg,
}

#[derive(Debug, Args)]
pub struct ShowArgs {
    /// The mail's id, as `uosctl mail list` prints it.
    id: String,
    #[command(flatten)]
    dir: DataDirArg,
}

pub fn run(cmd: MailCommand) -> anyhow::Result<ExitCode> {
    // The mailbox reports files it skips as tracing warnings; show them to the operator.
    let _ = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_max_level(tracing_subscriber::filter::LevelFilter::WARN)
        .with_ansi(std::io::stderr().is_terminal())
        .without_time()
        .with_target(false)
        .try_init();
    match cmd {
        MailCommand::List(args) => list(&args),
        MailCommand::Show(args) => show(&args),
    }
}

fn list(args: &ListArgs) -> anyhow::Result<ExitCode> {
    let mailbox = open(&args.dir.data_dir)?;
    let mails = mailbox
        .list()
        .with_context(|| format!("listing {}", mailbox.dir().display()))?;
    for mail in &mails {
        println!(
            "{}\t{}\t{}\t{}",
            mail.id,
            sent_at(mail),
            mail.to,
            mail.subject
        );
    }
    if mails.is_empty() {
        eprintln!("no mail in {}", mailbox.dir().display());
    }
    Ok(ExitCode::SUCCESS)
}

fn show(args: &ShowArgs) -> anyhow::Result<ExitCode> {
    let mailbox = open(&args.dir.data_dir)?;
    match mailbox.get(&args.id)? {
        Some(mail) => {
            println!("Id: {}", mail.id);
            println!("Date: {}", sent_at(&mail));
            println!("To: {}", mail.to);
            println!("Subject: {}", mail.subject);
            println!();
            print!("{}", mail.text);
            if !mail.text.ends_with('\n') {
                println!();
            }
            Ok(ExitCode::SUCCESS)
        }
        None => {
            eprintln!(
                "no mail with id {:?} in {}",
                args.id,
                mailbox.dir().display()
            );
            Ok(ExitCode::FAILURE)
        }
    }
}

/// Opens `<data-dir>/mailbox`, refusing to create it: a missing mailbox almost always means the
/// wrong data directory, which an empty listing would hide.
fn open(data_dir: &Path) -> anyhow::Result<DevMailbox> {
    let dir = data_dir.join("mailbox");
    if !dir.is_dir() {
        anyhow::bail!(
            "no dev mailbox at {} (is --data-dir the service's data directory, and does it use \
             the mailbox mail backend?)",
            dir.display()
        );
    }
    Ok(DevMailbox::open(&dir)?)
}

fn sent_at(mail: &StoredMail) -> String {
    mail.sent_at
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}
