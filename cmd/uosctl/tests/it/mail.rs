//! `uosctl mail list|show` on a dev mailbox written by the real `DevMailbox`.

use std::path::Path;
use std::process::{Command, Output};

use uos_mail::{DevMailbox, Mail, Mailer as _};

fn uosctl(args: &[&str], data_dir: Option<&Path>) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_uosctl"));
    cmd.args(args).env_remove("UOS_DATA_DIR");
    if let Some(dir) = data_dir {
        cmd.arg("--data-dir").arg(dir);
    }
    cmd.output().unwrap()
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// A data dir whose mailbox holds two mails, sent in this order.
fn data_dir_with_mails() -> tempfile::TempDir {
    let data = tempfile::tempdir().unwrap();
    let mailbox = DevMailbox::open(&data.path().join("mailbox")).unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    rt.block_on(async {
        for (to, subject, text) in [
            (
                "ada@example.test",
                "You are invited to Acme",
                "Accept: https://id.example.test/invite?token=inv_1\n",
            ),
            (
                "Grace Hopper <grace@example.test>",
                "Reset your password",
                "Reset: https://id.example.test/reset?token=rst_2\nIgnore this if it was not you.",
            ),
        ] {
            let mail = Mail {
                to: to.into(),
                subject: subject.into(),
                text: text.into(),
            };
            mailbox.send(&mail).await.unwrap();
        }
    });
    data
}

#[test]
fn list_prints_one_line_per_mail_oldest_first() {
    let data = data_dir_with_mails();
    let mails = DevMailbox::open(&data.path().join("mailbox"))
        .unwrap()
        .list()
        .unwrap();

    let out = uosctl(&["mail", "list"], Some(data.path()));
    assert_eq!(out.status.code(), Some(0), "stderr: {}", stderr(&out));
    let text = stdout(&out);
    let lines: Vec<Vec<&str>> = text.lines().map(|l| l.split('\t').collect()).collect();
    assert_eq!(lines.len(), 2, "{text}");
    for (line, mail) in lines.iter().zip(&mails) {
        let sent_at = mail
            .sent_at
            .to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
        assert_eq!(
            line,
            &vec![
                mail.id.as_str(),
                sent_at.as_str(),
                mail.to.as_str(),
                mail.subject.as_str()
            ]
        );
    }
    assert_eq!(lines[0][3], "You are invited to Acme");
    assert_eq!(lines[1][2], "Grace Hopper <grace@example.test>");
}

#[test]
fn show_prints_headers_and_body() {
    let data = data_dir_with_mails();
    let mail = DevMailbox::open(&data.path().join("mailbox"))
        .unwrap()
        .list()
        .unwrap()
        .remove(1);

    let out = uosctl(&["mail", "show", &mail.id], Some(data.path()));
    assert_eq!(out.status.code(), Some(0), "stderr: {}", stderr(&out));
    let sent_at = mail
        .sent_at
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    assert_eq!(
        stdout(&out),
        format!(
            "Id: {}\nDate: {sent_at}\nTo: Grace Hopper <grace@example.test>\n\
             Subject: Reset your password\n\n\
             Reset: https://id.example.test/reset?token=rst_2\nIgnore this if it was not you.\n",
            mail.id
        )
    );
}

#[test]
fn data_dir_comes_from_the_environment_too() {
    let data = data_dir_with_mails();
    let out = Command::new(env!("CARGO_BIN_EXE_uosctl"))
        .args(["mail", "list"])
        .env("UOS_DATA_DIR", data.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "stderr: {}", stderr(&out));
    assert_eq!(stdout(&out).lines().count(), 2);
}

#[test]
fn unknown_id_exits_1_and_missing_mailbox_exits_2() {
    let data = data_dir_with_mails();
    let unknown = uuid::Uuid::now_v7().to_string();
    let out = uosctl(&["mail", "show", &unknown], Some(data.path()));
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("no mail with id"), "{}", stderr(&out));

    let empty = tempfile::tempdir().unwrap();
    for args in [&["mail", "list"][..], &["mail", "show", &unknown][..]] {
        let out = uosctl(args, Some(empty.path()));
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        assert!(
            stderr(&out).contains("no dev mailbox at"),
            "{}",
            stderr(&out)
        );
        // The CLI only reads: it does not create a mailbox in the wrong place.
        assert!(!empty.path().join("mailbox").exists());
    }
}

#[test]
fn malformed_files_are_skipped_with_a_warning() {
    let data = data_dir_with_mails();
    let junk = data
        .path()
        .join("mailbox")
        .join(format!("{}.json", uuid::Uuid::now_v7()));
    std::fs::write(&junk, "{not json").unwrap();

    let out = uosctl(&["mail", "list"], Some(data.path()));
    assert_eq!(out.status.code(), Some(0), "stderr: {}", stderr(&out));
    assert_eq!(stdout(&out).lines().count(), 2);
    let warning = stderr(&out);
    assert!(
        warning.contains("WARN") && warning.contains(junk.file_name().unwrap().to_str().unwrap()),
        "{warning}"
    );
}
