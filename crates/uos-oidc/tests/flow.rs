//! The relying party against a real OpenID Connect provider (npm `oidc-provider`, run by
//! `uos_oidc::testing`). Needs node from `testdata/provider` (`npm ci`, done on first use).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use serde_json::Value;
use uos_oidc::testing::{login, TestProvider, TestProviderOptions};
use uos_oidc::{OidcError, OidcProvider, PendingLogin, ProviderConfig};

/// Registered with the provider; loopback redirect URIs match on any port.
const REGISTERED: &str = "http://127.0.0.1/v1/auth/oidc/test/callback";
/// What this service would use (its own port).
const REDIRECT: &str = "http://127.0.0.1:9/v1/auth/oidc/test/callback";

async fn op(claims_in_id_token: bool) -> TestProvider {
    TestProvider::start_with(TestProviderOptions {
        redirect_uris: vec![REGISTERED.to_owned()],
        claims_in_id_token,
    })
    .await
    .unwrap()
}

async fn rp(op: &TestProvider, edit: impl FnOnce(&mut ProviderConfig)) -> OidcProvider {
    let mut cfg = op.config(REDIRECT);
    edit(&mut cfg);
    OidcProvider::discover("test", cfg).await.unwrap()
}

/// Swap a field of a pending login for another's (the secrets are private fields).
fn with_field_of(pending: &PendingLogin, other: &PendingLogin, field: &str) -> PendingLogin {
    let mut mine = serde_json::to_value(pending).unwrap();
    let theirs = serde_json::to_value(other).unwrap();
    assert_ne!(mine[field], theirs[field]);
    mine[field] = theirs[field].clone();
    serde_json::from_value(mine).unwrap()
}

#[tokio::test]
#[ignore = "needs oidc-provider (node)"]
async fn discovery_and_authorization_url() {
    let op = op(false).await;
    let rp = rp(&op, |_| {}).await;
    assert_eq!(rp.issuer(), op.issuer());
    assert_eq!(rp.name(), "test");
    assert_eq!(rp.config().client_id, op.client_id());

    let (url, pending) = rp.start();
    let url = url::Url::parse(&url).unwrap();
    assert!(url.as_str().starts_with(&format!("{}/auth?", op.issuer())));
    let q = |k: &str| {
        url.query_pairs()
            .find(|(name, _)| name == k)
            .map(|(_, v)| v.into_owned())
    };
    assert_eq!(q("response_type").as_deref(), Some("code"));
    assert_eq!(q("client_id").as_deref(), Some(op.client_id()));
    assert_eq!(q("redirect_uri").as_deref(), Some(REDIRECT));
    assert_eq!(q("code_challenge_method").as_deref(), Some("S256"));
    assert!(q("code_challenge").is_some_and(|c| c.len() == 43));
    assert_eq!(q("state").as_deref(), Some(pending.state.as_str()));
    assert!(q("nonce").is_some_and(|n| n.len() >= 16));
    assert_eq!(q("scope").as_deref(), Some("openid email profile"));
    assert_eq!(pending.provider, "test");

    // Two starts never share state, nonce or verifier.
    let (_, other) = rp.start();
    let (a, b) = (
        serde_json::to_value(&pending).unwrap(),
        serde_json::to_value(&other).unwrap(),
    );
    for field in ["state", "nonce", "pkce_verifier"] {
        assert_ne!(a[field], b[field], "{field}");
    }
}

#[tokio::test]
#[ignore = "needs oidc-provider (node)"]
async fn full_flow_with_claims_from_userinfo() {
    let op = op(false).await;
    let rp = rp(&op, |_| {}).await;
    let (url, pending) = rp.start();
    let callback = login(&url, "alice").await.unwrap();
    assert_eq!(callback.state, pending.state);
    assert!(callback.redirect_url.starts_with(REDIRECT));
    rp.check_callback_issuer(callback.iss.as_deref()).unwrap();

    let who = rp.finish(pending, &callback.code).await.unwrap();
    assert_eq!(who.issuer, op.issuer());
    assert_eq!(who.subject, "alice");
    assert_eq!(who.email.as_deref(), Some("alice@example.com"));
    assert!(who.email_verified);
    assert_eq!(who.name.as_deref(), Some("Alice"));
}

#[tokio::test]
#[ignore = "needs oidc-provider (node)"]
async fn full_flow_with_claims_in_id_token_and_unverified_email() {
    let op = op(true).await;
    let rp = rp(&op, |_| {}).await;
    let (url, pending) = rp.start();
    let callback = login(&url, "unverified-bob").await.unwrap();
    let who = rp.finish(pending, &callback.code).await.unwrap();
    assert_eq!(who.subject, "unverified-bob");
    assert_eq!(who.email.as_deref(), Some("unverified-bob@example.com"));
    assert!(!who.email_verified);
    assert_eq!(who.name.as_deref(), Some("Bob"));

    // trust_email never overrides an explicit email_verified=false.
    let trusting = OidcProvider::discover(
        "trusting",
        ProviderConfig {
            trust_email: true,
            ..op.config(REDIRECT)
        },
    )
    .await
    .unwrap();
    let (url, pending) = trusting.start();
    let callback = login(&url, "unverified-bob").await.unwrap();
    assert!(
        !trusting
            .finish(pending, &callback.code)
            .await
            .unwrap()
            .email_verified
    );
}

#[tokio::test]
#[ignore = "needs oidc-provider (node)"]
async fn custom_claim_mapping_from_id_token_and_userinfo() {
    for claims_in_id_token in [true, false] {
        let op = op(claims_in_id_token).await;
        let map = |cfg: &mut ProviderConfig| {
            cfg.scopes.push("corp".into());
            cfg.email_claim = "corp_email".into();
            cfg.name_claim = "corp_name".into();
        };
        let rp = rp(&op, map).await;
        let (url, pending) = rp.start();
        let callback = login(&url, "carol").await.unwrap();
        let who = rp.finish(pending, &callback.code).await.unwrap();
        assert_eq!(who.email.as_deref(), Some("carol@corp.example"));
        assert!(!who.email_verified, "a custom claim is unverified...");
        assert_eq!(who.name.as_deref(), Some("Carol (Corp)"));

        let trusting = rp_trusting(&op, map).await;
        let (url, pending) = trusting.start();
        let callback = login(&url, "carol").await.unwrap();
        let who = trusting.finish(pending, &callback.code).await.unwrap();
        assert!(who.email_verified, "...unless trust_email");
    }
}

async fn rp_trusting(op: &TestProvider, edit: impl FnOnce(&mut ProviderConfig)) -> OidcProvider {
    rp(op, |cfg| {
        edit(cfg);
        cfg.trust_email = true;
    })
    .await
}

#[tokio::test]
#[ignore = "needs oidc-provider (node)"]
async fn tampered_wrong_and_reused_codes_fail() {
    let op = op(false).await;
    let rp = rp(&op, |_| {}).await;
    let (url, pending) = rp.start();
    let callback = login(&url, "alice").await.unwrap();

    for bad in ["not-a-code", &format!("{}x", callback.code), ""] {
        let err = rp.finish(pending.clone(), bad).await.unwrap_err();
        assert!(matches!(err, OidcError::Exchange(_)), "{bad:?}: {err:?}");
    }
    // The right code still works once (the failures above did not consume it)…
    rp.finish(pending.clone(), &callback.code).await.unwrap();
    // …and only once.
    let err = rp.finish(pending, &callback.code).await.unwrap_err();
    assert!(matches!(err, OidcError::Exchange(_)), "{err:?}");
}

#[tokio::test]
#[ignore = "needs oidc-provider (node)"]
async fn the_other_logins_pending_fails() {
    let op = op(false).await;
    let rp = rp(&op, |_| {}).await;
    let (url_a, pending_a) = rp.start();
    let (_url_b, pending_b) = rp.start();
    let code_a = login(&url_a, "alice").await.unwrap().code;

    // The whole other pending login: its PKCE verifier does not match the code's challenge.
    let err = rp.finish(pending_b.clone(), &code_a).await.unwrap_err();
    assert!(matches!(err, OidcError::Exchange(_)), "{err:?}");

    // Only the verifier swapped.
    let (url_a, pending_a2) = rp.start();
    let code_a2 = login(&url_a, "alice").await.unwrap().code;
    let err = rp
        .finish(
            with_field_of(&pending_a2, &pending_b, "pkce_verifier"),
            &code_a2,
        )
        .await
        .unwrap_err();
    assert!(matches!(err, OidcError::Exchange(_)), "{err:?}");

    // Only the nonce swapped: the exchange works, the ID token does not match.
    let err = rp
        .finish(with_field_of(&pending_a, &pending_b, "nonce"), &code_a)
        .await
        .unwrap_err();
    match err {
        OidcError::InvalidIdToken(message) => assert!(message.contains("nonce"), "{message}"),
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
#[ignore = "needs oidc-provider (node)"]
async fn pending_login_checks() {
    let op = op(false).await;
    let rp = rp(&op, |_| {}).await;
    let other = OidcProvider::discover("other", op.config(REDIRECT))
        .await
        .unwrap();

    let (url, pending) = other.start();
    let code = login(&url, "alice").await.unwrap().code;
    let err = rp.finish(pending, &code).await.unwrap_err();
    assert!(
        matches!(&err, OidcError::ProviderMismatch { expected, actual } if expected == "other" && actual == "test"),
        "{err:?}"
    );

    let (url, pending) = rp.start();
    let code = login(&url, "alice").await.unwrap().code;
    let mut old = serde_json::to_value(&pending).unwrap();
    old["created_at"] = Value::from(pending.created_at - 11 * 60);
    let old: PendingLogin = serde_json::from_value(old).unwrap();
    let err = rp.finish(old, &code).await.unwrap_err();
    assert!(matches!(err, OidcError::LoginExpired), "{err:?}");

    // oidc-provider sends RFC 9207 `iss`, and advertises it: it must match and be there.
    assert!(matches!(
        rp.check_callback_issuer(Some("http://127.0.0.1:1")),
        Err(OidcError::IssuerMismatch)
    ));
    assert!(matches!(
        rp.check_callback_issuer(None),
        Err(OidcError::IssuerMismatch)
    ));
    rp.check_callback_issuer(Some(op.issuer())).unwrap();
}

#[tokio::test]
#[ignore = "needs oidc-provider (node)"]
async fn wrong_client_secret_fails_the_exchange() {
    let op = op(false).await;
    let rp = rp(&op, |cfg| {
        cfg.client_secret = "not-the-secret".to_owned().into();
    })
    .await;
    let (url, pending) = rp.start();
    let code = login(&url, "alice").await.unwrap().code;
    let err = rp.finish(pending, &code).await.unwrap_err();
    assert!(matches!(err, OidcError::Exchange(_)), "{err:?}");
    assert!(!err.to_string().contains(&code));
}

#[tokio::test]
#[ignore = "needs oidc-provider (node)"]
async fn email_domain_allowlist() {
    let op = op(false).await;
    let rp = rp(&op, |cfg| {
        cfg.allowed_email_domains = vec!["example.com".into(), "@Partner.Example".into()];
    })
    .await;
    let attempt = |name: &'static str| {
        let rp = &rp;
        async move {
            let (url, pending) = rp.start();
            let code = login(&url, name).await.unwrap().code;
            rp.finish(pending, &code).await
        }
    };

    assert_eq!(
        attempt("alice").await.unwrap().email.as_deref(),
        Some("alice@example.com")
    );
    assert_eq!(
        attempt("dave@PARTNER.example").await.unwrap().subject,
        "dave@PARTNER.example"
    );
    match attempt("mallory@other.org").await {
        Err(OidcError::EmailDomainNotAllowed(domain)) => assert_eq!(domain, "other.org"),
        other => panic!("{other:?}"),
    }
    // A lookalike is not a subdomain match.
    assert!(matches!(
        attempt("eve@evilexample.com").await,
        Err(OidcError::EmailDomainNotAllowed(_))
    ));
    // An unverified address in an allowed domain does not pass.
    assert!(matches!(
        attempt("unverified-alice").await,
        Err(OidcError::EmailNotVerified)
    ));
}

#[tokio::test]
#[ignore = "needs oidc-provider (node)"]
async fn discovery_failures_are_errors() {
    // Nothing listens there.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let cfg = ProviderConfig::new(
        format!("http://127.0.0.1:{port}"),
        "c",
        "s",
        REDIRECT.to_owned(),
    );
    let err = OidcProvider::discover("gone", cfg).await.unwrap_err();
    assert!(matches!(err, OidcError::Discovery(_)), "{err:?}");

    // A provider that answers for another issuer (localhost vs 127.0.0.1).
    let op = op(false).await;
    let mut cfg = op.config(REDIRECT);
    cfg.issuer = op.issuer().replace("127.0.0.1", "localhost");
    let err = OidcProvider::discover("mismatch", cfg).await.unwrap_err();
    assert!(matches!(err, OidcError::Discovery(_)), "{err:?}");

    // Not a URL at all, and an empty name.
    let err = OidcProvider::discover("bad", ProviderConfig::new("nope", "c", "s", REDIRECT))
        .await
        .unwrap_err();
    assert!(matches!(err, OidcError::Config(_)), "{err:?}");
    let err = OidcProvider::discover("", op.config(REDIRECT))
        .await
        .unwrap_err();
    assert!(matches!(err, OidcError::Config(_)), "{err:?}");
}

/// A one-shot "relying party" endpoint: answers one request with a redirect to `location`.
fn redirect_once(location: String) -> String {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!(
        "http://{}/v1/auth/oidc/test/start",
        listener.local_addr().unwrap()
    );
    std::thread::spawn(move || {
        let (mut stream, _) = listener.accept().unwrap();
        let mut buf = [0u8; 4096];
        let _ = stream.read(&mut buf).unwrap();
        let response = format!(
            "HTTP/1.1 303 See Other\r\nLocation: {location}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        );
        stream.write_all(response.as_bytes()).unwrap();
    });
    url
}

#[tokio::test]
#[ignore = "needs oidc-provider (node)"]
async fn login_can_start_at_the_relying_party() {
    let op = op(false).await;
    let rp = rp(&op, |_| {}).await;
    let (url, pending) = rp.start();
    let callback = login(&redirect_once(url), "erin").await.unwrap();
    assert_eq!(callback.state, pending.state);
    let who = rp.finish(pending, &callback.code).await.unwrap();
    assert_eq!(who.email.as_deref(), Some("erin@example.com"));
}
