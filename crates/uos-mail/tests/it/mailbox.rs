//! `DevMailbox` on a real directory.

use std::fs;
use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;

use uos_mail::{DevMailbox, Mail, MailError, Mailer as _};

fn mail(n: u32) -> Mail {
    Mail {
        to: format!("user{n}@example.test"),
        subject: format!("Invite {n}"),
        text: format!("Join with token tok_{n}\nüñí\n"),
    }
}

fn mode(path: &Path) -> u32 {
    fs::metadata(path).unwrap().permissions().mode() & 0o777
}

fn file_names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    names
}

#[tokio::test]
async fn sent_mail_round_trips() {
    let tmp = tempfile::tempdir().unwrap();
    let mailbox = DevMailbox::open(&tmp.path().join("mailbox")).unwrap();
    assert_eq!(mailbox.backend(), "mailbox");
    assert!(mailbox.list().unwrap().is_empty());

    let before = chrono::Utc::now();
    mailbox.send(&mail(1)).await.unwrap();
    let after = chrono::Utc::now();

    let listed = mailbox.list().unwrap();
    assert_eq!(listed.len(), 1);
    let stored = &listed[0];
    assert_eq!(stored.to, "user1@example.test");
    assert_eq!(stored.subject, "Invite 1");
    assert_eq!(stored.text, "Join with token tok_1\nüñí\n");
    assert!(before <= stored.sent_at && stored.sent_at <= after);
    let id = uuid::Uuid::parse_str(&stored.id).unwrap();
    assert_eq!(id.get_version_num(), 7);

    assert_eq!(mailbox.get(&stored.id).unwrap().as_ref(), Some(stored));
    assert_eq!(
        mailbox.get(&stored.id.to_uppercase()).unwrap().as_ref(),
        Some(stored)
    );
    assert_eq!(
        mailbox.get(&uuid::Uuid::now_v7().to_string()).unwrap(),
        None
    );
    assert_eq!(mailbox.get("../../etc/passwd").unwrap(), None);
    assert_eq!(mailbox.get("").unwrap(), None);

    // Written atomically: only the final file, no temporary left behind.
    assert_eq!(
        file_names(mailbox.dir()),
        vec![format!("{}.json", stored.id)]
    );

    // A second handle on the same directory (as `uosctl` opens it) sees the same mail.
    let again = DevMailbox::open(mailbox.dir()).unwrap();
    assert_eq!(again.list().unwrap(), listed);
}

#[tokio::test]
async fn list_is_oldest_first() {
    let tmp = tempfile::tempdir().unwrap();
    let mailbox = DevMailbox::open(tmp.path()).unwrap();
    for n in 1..=20 {
        mailbox.send(&mail(n)).await.unwrap();
    }
    let listed = mailbox.list().unwrap();
    let subjects: Vec<_> = listed.iter().map(|m| m.subject.clone()).collect();
    let want: Vec<_> = (1..=20).map(|n| format!("Invite {n}")).collect();
    assert_eq!(subjects, want);
    assert!(listed.windows(2).all(|w| w[0].sent_at <= w[1].sent_at));
    assert!(listed.windows(2).all(|w| w[0].id < w[1].id));
}

#[tokio::test]
async fn directory_is_0700_and_files_0600() {
    let tmp = tempfile::tempdir().unwrap();
    let fresh = tmp.path().join("data").join("mailbox");
    let mailbox = DevMailbox::open(&fresh).unwrap();
    assert_eq!(mode(&fresh), 0o700);
    mailbox.send(&mail(1)).await.unwrap();
    let id = &mailbox.list().unwrap()[0].id;
    assert_eq!(mode(&fresh.join(format!("{id}.json"))), 0o600);

    // An existing directory with a looser mode is tightened, not trusted.
    let loose = tmp.path().join("loose");
    fs::create_dir(&loose).unwrap();
    fs::set_permissions(&loose, fs::Permissions::from_mode(0o755)).unwrap();
    DevMailbox::open(&loose).unwrap();
    assert_eq!(mode(&loose), 0o700);
}

#[tokio::test]
async fn foreign_and_malformed_files_are_skipped() {
    let tmp = tempfile::tempdir().unwrap();
    let mailbox = DevMailbox::open(tmp.path()).unwrap();
    mailbox.send(&mail(1)).await.unwrap();
    let dir = mailbox.dir();

    let garbage_id = uuid::Uuid::now_v7().to_string();
    fs::write(dir.join(format!("{garbage_id}.json")), "{not json").unwrap();
    let wrong_shape_id = uuid::Uuid::now_v7().to_string();
    fs::write(
        dir.join(format!("{wrong_shape_id}.json")),
        r#"{"id": "x", "hello": 1}"#,
    )
    .unwrap();
    // A valid mail under another mail's name: its id does not match, so it is not trusted.
    let real = mailbox.list().unwrap().remove(0);
    let renamed_id = uuid::Uuid::now_v7().to_string();
    fs::write(
        dir.join(format!("{renamed_id}.json")),
        serde_json::json!({
            "id": real.id, "to": real.to, "subject": real.subject,
            "text": real.text, "sent_at": real.sent_at,
        })
        .to_string(),
    )
    .unwrap();
    fs::write(dir.join("README.txt"), "notes").unwrap();
    fs::write(dir.join("not-a-uuid.json"), "{}").unwrap();
    fs::write(dir.join(format!(".{garbage_id}.json.tmp")), "half").unwrap();
    fs::create_dir(dir.join(format!("{}.json", uuid::Uuid::now_v7()))).unwrap();

    let listed = mailbox.list().unwrap();
    assert_eq!(listed, vec![real]);

    // Asked for by id, a malformed file is an error rather than "no such mail".
    assert!(matches!(
        mailbox.get(&garbage_id),
        Err(MailError::Malformed { .. })
    ));
    assert!(matches!(
        mailbox.get(&renamed_id),
        Err(MailError::Malformed { .. })
    ));
}

#[tokio::test]
async fn invalid_mail_is_refused_and_not_stored() {
    let tmp = tempfile::tempdir().unwrap();
    let mailbox = DevMailbox::open(tmp.path()).unwrap();
    let bad_to = Mail {
        to: "not an address".into(),
        ..mail(1)
    };
    assert!(matches!(
        mailbox.send(&bad_to).await,
        Err(MailError::InvalidAddress { field: "to", .. })
    ));
    let bad_subject = Mail {
        subject: "Hi\nBcc: x@example.test".into(),
        ..mail(1)
    };
    assert!(matches!(
        mailbox.send(&bad_subject).await,
        Err(MailError::InvalidMail(_))
    ));
    assert!(mailbox.list().unwrap().is_empty());
    assert!(file_names(mailbox.dir()).is_empty());
}

#[tokio::test]
async fn debug_output_hides_the_body() {
    let tmp = tempfile::tempdir().unwrap();
    let mailbox = DevMailbox::open(tmp.path()).unwrap();
    let m = mail(7);
    mailbox.send(&m).await.unwrap();
    let stored = mailbox.list().unwrap().remove(0);
    for shown in [format!("{m:?}"), format!("{stored:?}")] {
        assert!(!shown.contains("tok_7"), "{shown}");
        assert!(shown.contains("Invite 7"), "{shown}");
    }
}
