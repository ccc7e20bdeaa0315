//! `SmtpMailer`: delivery to a real SMTP sink, and the ways sending fails.

use std::time::{Duration, Instant};

use secrecy::SecretString;
use uos_mail::{Mail, MailError, Mailer as _, SmtpConfig, SmtpMailer, SmtpSecurity};

use crate::sink::{free_port, SmtpSink};

fn config(port: u16) -> SmtpConfig {
    SmtpConfig {
        host: "127.0.0.1".into(),
        port,
        security: SmtpSecurity::None,
        username: None,
        password: None,
        from: "Identity <noreply@id.example.test>".into(),
        timeout_secs: 5,
    }
}

fn reset_mail() -> Mail {
    Mail {
        to: "Ada Lovelace <ada@example.test>".into(),
        subject: "Reset your password – Zürich office".into(),
        // A non-ASCII body forces a transfer encoding, and the dot line checks dot-stuffing.
        text:
            "Hello Ada,\n\nreset your password: https://id.example.test/reset?token=tok_3f9a.b-7\n\
               Grüße\n.\n..leading dots\n"
                .into(),
    }
}

#[tokio::test]
#[ignore = "needs aiosmtpd"]
async fn sink_receives_exactly_the_mail_sent() {
    let sink = SmtpSink::start();
    let mailer = SmtpMailer::new(&config(sink.port)).unwrap();
    assert_eq!(mailer.backend(), "smtp");
    let mail = reset_mail();
    mailer.send(&mail).await.unwrap();

    let received = sink.received();
    assert_eq!(received.len(), 1, "{received:?}");
    let got = &received[0];
    assert_eq!(got.rcpt_to, "ada@example.test");
    assert_eq!(got.mail_from, "noreply@id.example.test");
    assert_eq!(got.to, "Ada Lovelace <ada@example.test>");
    assert_eq!(got.from, "Identity <noreply@id.example.test>");
    assert_eq!(got.subject, mail.subject);
    assert_eq!(got.content_type, "text/plain");
    assert_eq!(got.body, mail.text);
}

#[tokio::test]
#[ignore = "needs aiosmtpd"]
async fn bodies_survive_the_transfer_encoding() {
    let sink = SmtpSink::start();
    let mailer = SmtpMailer::new(&config(sink.port)).unwrap();
    let long_line = format!("token={}\n", "x".repeat(2000));
    // (sent, received): SMTP always ends the data with a line break, and Python's parser reads
    // CRLF as LF.
    let cases = [
        ("plain ascii\n", "plain ascii\n"),
        ("no final line break", "no final line break\n"),
        ("crlf\r\nlines\r\n", "crlf\nlines\n"),
        ("日本語のテキスト\n", "日本語のテキスト\n"),
        (long_line.as_str(), long_line.as_str()),
        ("trailing blank lines\n\n\n", "trailing blank lines\n\n\n"),
    ];
    for (n, (text, _)) in cases.iter().enumerate() {
        let mail = Mail {
            to: format!("case{n}@example.test"),
            subject: format!("case {n}"),
            text: (*text).to_owned(),
        };
        mailer.send(&mail).await.unwrap();
    }
    let received = sink.received();
    assert_eq!(received.len(), cases.len());
    for (n, (_, want)) in cases.iter().enumerate() {
        let got = received
            .iter()
            .find(|r| r.rcpt_to == format!("case{n}@example.test"))
            .unwrap();
        assert_eq!(got.body, *want, "case {n}");
    }
}

#[tokio::test]
#[ignore = "needs aiosmtpd"]
async fn each_send_is_delivered_separately() {
    let sink = SmtpSink::start();
    let mailer = SmtpMailer::new(&config(sink.port)).unwrap();
    for n in 1..=3 {
        let mail = Mail {
            to: format!("user{n}@example.test"),
            subject: format!("Invite {n}"),
            text: format!("invite token {n}\n"),
        };
        mailer.send(&mail).await.unwrap();
    }
    let mut got: Vec<_> = sink
        .received()
        .into_iter()
        .map(|r| (r.rcpt_to, r.subject, r.body))
        .collect();
    got.sort();
    let want: Vec<_> = (1..=3)
        .map(|n| {
            (
                format!("user{n}@example.test"),
                format!("Invite {n}"),
                format!("invite token {n}\n"),
            )
        })
        .collect();
    assert_eq!(got, want);
}

#[tokio::test]
#[ignore = "needs aiosmtpd"]
async fn starttls_is_required_not_opportunistic() {
    // The sink offers no STARTTLS: a `starttls` mailer must refuse to send in clear text.
    let sink = SmtpSink::start();
    let mut cfg = config(sink.port);
    cfg.security = SmtpSecurity::Starttls;
    let mailer = SmtpMailer::new(&cfg).unwrap();
    let err = mailer.send(&reset_mail()).await.unwrap_err();
    match &err {
        MailError::Smtp { message, .. } => assert!(message.contains("STARTTLS"), "{message}"),
        other => panic!("expected an SMTP error, got {other:?}"),
    }
    assert!(sink.received().is_empty());
}

#[tokio::test]
async fn unreachable_port_is_an_error() {
    let mailer = SmtpMailer::new(&config(free_port())).unwrap();
    let err = mailer.send(&reset_mail()).await.unwrap_err();
    match err {
        MailError::Smtp { permanent, .. } => assert!(!permanent),
        other => panic!("expected an SMTP error, got {other:?}"),
    }
}

#[tokio::test]
async fn silent_server_times_out() {
    // Accepts connections but never greets: the send must give up after timeout_secs.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let _server = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((stream, _)) = listener.accept().await {
            held.push(stream);
        }
    });
    let mut cfg = config(port);
    cfg.timeout_secs = 1;
    let mailer = SmtpMailer::new(&cfg).unwrap();
    let started = Instant::now();
    let err = mailer.send(&reset_mail()).await.unwrap_err();
    assert!(
        matches!(err, MailError::Timeout(_) | MailError::Smtp { .. }),
        "{err:?}"
    );
    assert!(started.elapsed() < Duration::from_secs(3), "{err:?}");
}

#[tokio::test]
async fn bad_recipient_is_an_error() {
    let mailer = SmtpMailer::new(&config(free_port())).unwrap();
    for to in [
        "",
        "not an address",
        "a@",
        "@b.example",
        "Ada <ada@example.test",
    ] {
        let mail = Mail {
            to: to.into(),
            ..reset_mail()
        };
        let err = mailer.send(&mail).await.unwrap_err();
        assert!(
            matches!(err, MailError::InvalidAddress { field: "to", .. }),
            "{to:?}: {err:?}"
        );
    }
}

#[tokio::test]
async fn header_injection_in_subject_is_refused() {
    let mailer = SmtpMailer::new(&config(free_port())).unwrap();
    let mail = Mail {
        subject: "Hello\r\nBcc: victim@example.test".into(),
        ..reset_mail()
    };
    let err = mailer.send(&mail).await.unwrap_err();
    assert!(matches!(err, MailError::InvalidMail(_)), "{err:?}");
}

#[test]
fn bad_sender_is_a_config_error() {
    let mut cfg = config(25);
    cfg.from = "noreply at example".into();
    let err = SmtpMailer::new(&cfg).unwrap_err();
    assert!(
        matches!(err, MailError::InvalidAddress { field: "from", .. }),
        "{err:?}"
    );
}

#[test]
fn invalid_settings_are_refused() {
    let mut cfg = config(25);
    cfg.timeout_secs = 0;
    assert!(matches!(SmtpMailer::new(&cfg), Err(MailError::Config(_))));
    cfg.timeout_secs = u64::MAX;
    assert!(matches!(SmtpMailer::new(&cfg), Err(MailError::Config(_))));

    let mut cfg = config(25);
    cfg.host = " ".into();
    assert!(matches!(SmtpMailer::new(&cfg), Err(MailError::Config(_))));

    // Credentials over a plain connection would leak the password.
    let mut cfg = config(25);
    cfg.username = Some("mailer".into());
    cfg.password = Some(SecretString::from("hunter2"));
    assert!(matches!(SmtpMailer::new(&cfg), Err(MailError::Config(_))));

    let mut cfg = config(587);
    cfg.security = SmtpSecurity::Starttls;
    cfg.username = Some("mailer".into());
    assert!(matches!(SmtpMailer::new(&cfg), Err(MailError::Config(_))));
}

#[test]
fn tls_modes_build_with_credentials_hidden() {
    // Building the rustls config exercises the ring provider without a process-wide default.
    for (security, port) in [(SmtpSecurity::Starttls, 587), (SmtpSecurity::Tls, 465)] {
        let cfg = SmtpConfig {
            host: "smtp.example.test".into(),
            port,
            security,
            username: Some("mailer".into()),
            password: Some(SecretString::from("hunter2")),
            from: "noreply@example.test".into(),
            timeout_secs: 10,
        };
        let mailer = SmtpMailer::new(&cfg).unwrap();
        let shown = format!("{mailer:?} {cfg:?}");
        assert!(!shown.contains("hunter2"), "{shown}");
    }
}

#[test]
fn config_deserializes_strictly() {
    let cfg: SmtpConfig = serde_json::from_value(serde_json::json!({
        "host": "smtp.example.test",
        "port": 465,
        "security": "tls",
        "username": "mailer",
        "password": "hunter2",
        "from": "noreply@example.test",
        "timeout_secs": 10,
    }))
    .unwrap();
    assert_eq!(cfg.security, SmtpSecurity::Tls);
    assert_eq!(cfg.port, 465);

    let cfg: SmtpConfig = serde_json::from_value(serde_json::json!({
        "host": "127.0.0.1", "port": 2525, "security": "none",
        "from": "noreply@example.test", "timeout_secs": 10,
    }))
    .unwrap();
    assert_eq!(cfg.security, SmtpSecurity::None);
    assert!(cfg.username.is_none() && cfg.password.is_none());

    for bad in [
        serde_json::json!({"host": "h", "port": 25, "security": "ssl", "from": "a@b.c", "timeout_secs": 1}),
        serde_json::json!({"host": "h", "port": 25, "security": "none", "from": "a@b.c", "timeout_secs": 1, "tls": true}),
    ] {
        assert!(
            serde_json::from_value::<SmtpConfig>(bad.clone()).is_err(),
            "{bad}"
        );
    }
}
