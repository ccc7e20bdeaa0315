//! Access tokens: compact JWS (EdDSA/Ed25519) with a fixed header and claim set, verified
//! strictly — only the exact shape this service issues is accepted.
//!
//! Two kinds share the signing keys and the verification code, told apart by the header's
//! `typ`: user tokens (`JWT`, [`AccessClaims`]) and OAuth2 client-credentials tokens (`at+jwt`
//! as in RFC 9068, [`ClientClaims`]). Each verifier accepts only its own `typ` and claim set, so
//! a token of one kind is never taken for the other.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use uos_keys::{PublicKey, SigningKey};
use uuid::Uuid;

/// Longer tokens are rejected before any decoding; ours are ~400 bytes.
pub const MAX_ACCESS_TOKEN_LEN: usize = 4096;
/// How far `iat` may lie in the future, to absorb clock skew between replicas.
pub const IAT_LEEWAY_SECS: i64 = 30;

const ALG: &str = "EdDSA";
const USER_TYP: &str = "JWT";
/// RFC 9068's media type for JWT access tokens, without the `application/` prefix.
const CLIENT_TYP: &str = "at+jwt";

/// The claims of an access token.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccessClaims {
    /// Issuer: the service's configured public URL.
    pub iss: String,
    /// The user.
    pub sub: Uuid,
    /// The session the token was minted from, so revoking the session revokes the token.
    pub sid: Uuid,
    /// Issued at, Unix seconds.
    pub iat: i64,
    /// Expires at, Unix seconds (exclusive).
    pub exp: i64,
    /// Token id.
    pub jti: Uuid,
}

/// Claims of an OAuth2 client-credentials access token: the service account acts with `scope`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClientClaims {
    /// Issuer: the service's configured public URL.
    pub iss: String,
    /// The service account.
    pub sub: Uuid,
    /// The service account's org.
    pub org: Uuid,
    /// The OAuth2 client id (equal to the service account id as text, but kept as the standard
    /// claim).
    pub client_id: String,
    /// Space-separated granted permissions.
    pub scope: String,
    /// Issued at, Unix seconds.
    pub iat: i64,
    /// Expires at, Unix seconds (exclusive).
    pub exp: i64,
    /// Token id.
    pub jti: Uuid,
}

/// Which kind of token a JWS header claims to be (see [`token_type`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TokenKind {
    /// `typ: "JWT"`: a user's token, for [`verify_access_token`].
    User,
    /// `typ: "at+jwt"`: an OAuth2 client-credentials token, for [`verify_client_token`].
    Client,
}

/// Why an access token was rejected. All of them mean "unauthenticated" to a client; the variants
/// are for logs and metrics.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// Not a token of the shape we issue: size, encoding, JSON, header fields, algorithm, or an
    /// `iat` too far in the future.
    #[error("malformed access token")]
    Malformed,
    #[error("access token signed by an unknown key")]
    UnknownKey,
    #[error("access token signature is invalid")]
    BadSignature,
    #[error("access token has expired")]
    Expired,
    #[error("access token has the wrong issuer")]
    WrongIssuer,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Header {
    alg: String,
    typ: String,
    kid: String,
}

/// The claims every token kind carries and the verifier checks after the signature.
trait RegisteredClaims: DeserializeOwned {
    fn iss(&self) -> &str;
    fn iat(&self) -> i64;
    fn exp(&self) -> i64;
}

impl RegisteredClaims for AccessClaims {
    fn iss(&self) -> &str {
        &self.iss
    }
    fn iat(&self) -> i64 {
        self.iat
    }
    fn exp(&self) -> i64 {
        self.exp
    }
}

impl RegisteredClaims for ClientClaims {
    fn iss(&self) -> &str {
        &self.iss
    }
    fn iat(&self) -> i64 {
        self.iat
    }
    fn exp(&self) -> i64 {
        self.exp
    }
}

/// Signs `claims` as a compact JWS with header `{"alg":"EdDSA","typ":"JWT","kid":<key id>}`.
pub fn issue_access_token(key: &SigningKey, claims: &AccessClaims) -> String {
    // Built with `json!` rather than `serde_json::to_string` because these values cannot fail to
    // serialize, and this keeps the function infallible without an `unwrap`.
    let payload = serde_json::json!({
        "iss": claims.iss,
        "sub": claims.sub,
        "sid": claims.sid,
        "iat": claims.iat,
        "exp": claims.exp,
        "jti": claims.jti,
    });
    sign(key, USER_TYP, &payload)
}

/// Signs `claims` as a compact JWS with header `{"alg":"EdDSA","typ":"at+jwt","kid":<key id>}`.
pub fn issue_client_token(key: &SigningKey, claims: &ClientClaims) -> String {
    // `json!` for the same reason as in `issue_access_token`.
    let payload = serde_json::json!({
        "iss": claims.iss,
        "sub": claims.sub,
        "org": claims.org,
        "client_id": claims.client_id,
        "scope": claims.scope,
        "iat": claims.iat,
        "exp": claims.exp,
        "jti": claims.jti,
    });
    sign(key, CLIENT_TYP, &payload)
}

/// Verifies an access token against the published `keys` and returns its claims.
///
/// Checks, in order: size ≤ [`MAX_ACCESS_TOKEN_LEN`]; exactly three non-empty base64url parts
/// without padding; header is exactly `alg`/`typ`/`kid` with `alg == "EdDSA"`, `typ == "JWT"`;
/// a 64-byte signature; `kid` names one of `keys`; the signature is valid; then the claims
/// parse, `iss == issuer`, `exp > now_unix` and `iat <= now_unix + IAT_LEEWAY_SECS`. Claims
/// are only looked at once the signature is known to be good, so an `Expired`/`WrongIssuer`
/// answer is never about a forgery.
pub fn verify_access_token(
    token: &str,
    keys: &[PublicKey],
    issuer: &str,
    now_unix: i64,
) -> Result<AccessClaims, TokenError> {
    verify(token, USER_TYP, keys, issuer, now_unix)
}

/// Verifies an OAuth2 client-credentials token against the published `keys` and returns its
/// claims: the checks of [`verify_access_token`], except that the header's `typ` must be
/// `"at+jwt"` and the claims must be exactly those of [`ClientClaims`].
pub fn verify_client_token(
    token: &str,
    keys: &[PublicKey],
    issuer: &str,
    now_unix: i64,
) -> Result<ClientClaims, TokenError> {
    verify(token, CLIENT_TYP, keys, issuer, now_unix)
}

/// Which kind a well-formed-looking JWS claims to be, from its header only (no verification):
/// `Some(User)` for `typ: "JWT"`, `Some(Client)` for `typ: "at+jwt"`, or `None` when the header
/// does not decode. Lets the caller pick the verifier without trying both; the verifier still
/// checks everything, so a lying header gains nothing.
pub fn token_type(token: &str) -> Option<TokenKind> {
    if token.len() > MAX_ACCESS_TOKEN_LEN {
        return None;
    }
    let (header_b64, _) = token.split_once('.')?;
    let header: Header = serde_json::from_slice(&decode_part(header_b64).ok()?).ok()?;
    match header.typ.as_str() {
        USER_TYP => Some(TokenKind::User),
        CLIENT_TYP => Some(TokenKind::Client),
        _ => None,
    }
}

/// The compact JWS of `payload` under header `{"alg":"EdDSA","typ":<typ>,"kid":<key id>}`.
fn sign(key: &SigningKey, typ: &str, payload: &serde_json::Value) -> String {
    let header = serde_json::json!({ "alg": ALG, "typ": typ, "kid": key.key_id() });
    let mut token = URL_SAFE_NO_PAD.encode(header.to_string());
    token.push('.');
    URL_SAFE_NO_PAD.encode_string(payload.to_string(), &mut token);
    let signature = key.sign(token.as_bytes());
    token.push('.');
    URL_SAFE_NO_PAD.encode_string(signature, &mut token);
    token
}

/// The checks documented on [`verify_access_token`], with the header's `typ` required to be
/// `typ` and the payload parsed as `C`.
fn verify<C: RegisteredClaims>(
    token: &str,
    typ: &str,
    keys: &[PublicKey],
    issuer: &str,
    now_unix: i64,
) -> Result<C, TokenError> {
    if token.len() > MAX_ACCESS_TOKEN_LEN {
        return Err(TokenError::Malformed);
    }
    let mut parts = token.split('.');
    let (Some(header_b64), Some(payload_b64), Some(signature_b64), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(TokenError::Malformed);
    };
    let header: Header =
        serde_json::from_slice(&decode_part(header_b64)?).map_err(|_| TokenError::Malformed)?;
    if header.alg != ALG || header.typ != typ {
        return Err(TokenError::Malformed);
    }
    let payload = decode_part(payload_b64)?;
    let signature = decode_part(signature_b64)?;
    if signature.len() != 64 {
        return Err(TokenError::Malformed);
    }

    let key = keys
        .iter()
        .find(|k| k.key_id == header.kid)
        .ok_or(TokenError::UnknownKey)?;
    // The signing input is the token text up to the last dot, exactly as received.
    let signing_input = &token[..header_b64.len() + 1 + payload_b64.len()];
    if !key.verify(signing_input.as_bytes(), &signature) {
        return Err(TokenError::BadSignature);
    }

    let claims: C = serde_json::from_slice(&payload).map_err(|_| TokenError::Malformed)?;
    if claims.iss() != issuer {
        return Err(TokenError::WrongIssuer);
    }
    if claims.exp() <= now_unix {
        return Err(TokenError::Expired);
    }
    if claims.iat() > now_unix.saturating_add(IAT_LEEWAY_SECS) {
        return Err(TokenError::Malformed);
    }
    Ok(claims)
}

fn decode_part(part: &str) -> Result<Vec<u8>, TokenError> {
    if part.is_empty() {
        return Err(TokenError::Malformed);
    }
    // URL_SAFE_NO_PAD rejects padding and non-canonical trailing bits, so each token has exactly
    // one accepted spelling.
    URL_SAFE_NO_PAD
        .decode(part)
        .map_err(|_| TokenError::Malformed)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use proptest::prelude::*;

    use super::*;

    const ISS: &str = "https://uos.example";
    const NOW: i64 = 1_800_000_000;

    fn claims() -> AccessClaims {
        AccessClaims {
            iss: ISS.into(),
            sub: Uuid::now_v7(),
            sid: Uuid::now_v7(),
            iat: NOW,
            exp: NOW + 900,
            jti: Uuid::now_v7(),
        }
    }

    fn b64(v: &serde_json::Value) -> String {
        URL_SAFE_NO_PAD.encode(v.to_string())
    }

    fn parts(token: &str) -> Vec<String> {
        token.split('.').map(str::to_owned).collect()
    }

    #[test]
    fn roundtrip() {
        let key = SigningKey::generate();
        let claims = claims();
        let token = issue_access_token(&key, &claims);
        let got = verify_access_token(&token, &[key.public_key()], ISS, NOW).unwrap();
        assert_eq!(got, claims);
    }

    #[test]
    fn header_shape() {
        let key = SigningKey::generate();
        let token = issue_access_token(&key, &claims());
        let header: serde_json::Value =
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(&parts(&token)[0]).unwrap()).unwrap();
        assert_eq!(
            header,
            serde_json::json!({"alg": "EdDSA", "typ": "JWT", "kid": key.key_id()})
        );
    }

    #[test]
    fn finds_key_among_several() {
        let old = SigningKey::generate();
        let new = SigningKey::generate();
        let token = issue_access_token(&old, &claims());
        let keys = [new.public_key(), old.public_key()];
        assert!(verify_access_token(&token, &keys, ISS, NOW).is_ok());
    }

    #[test]
    fn expired() {
        let key = SigningKey::generate();
        let token = issue_access_token(&key, &claims());
        let keys = [key.public_key()];
        assert!(verify_access_token(&token, &keys, ISS, NOW + 899).is_ok());
        assert_eq!(
            verify_access_token(&token, &keys, ISS, NOW + 900),
            Err(TokenError::Expired),
            "exp is exclusive"
        );
    }

    #[test]
    fn iat_in_the_future_beyond_leeway() {
        let key = SigningKey::generate();
        let keys = [key.public_key()];
        let mut c = claims();
        c.iat = NOW + IAT_LEEWAY_SECS;
        assert!(verify_access_token(&issue_access_token(&key, &c), &keys, ISS, NOW).is_ok());
        c.iat = NOW + IAT_LEEWAY_SECS + 1;
        assert_eq!(
            verify_access_token(&issue_access_token(&key, &c), &keys, ISS, NOW),
            Err(TokenError::Malformed)
        );
    }

    #[test]
    fn wrong_issuer() {
        let key = SigningKey::generate();
        let token = issue_access_token(&key, &claims());
        assert_eq!(
            verify_access_token(&token, &[key.public_key()], "https://evil.example", NOW),
            Err(TokenError::WrongIssuer)
        );
    }

    #[test]
    fn tampered_payload() {
        let key = SigningKey::generate();
        let token = issue_access_token(&key, &claims());
        let p = parts(&token);
        let mut forged = claims();
        forged.sub = Uuid::now_v7();
        let token = format!(
            "{}.{}.{}",
            p[0],
            b64(&serde_json::to_value(&forged).unwrap()),
            p[2]
        );
        assert_eq!(
            verify_access_token(&token, &[key.public_key()], ISS, NOW),
            Err(TokenError::BadSignature)
        );
    }

    #[test]
    fn tampered_signature() {
        let key = SigningKey::generate();
        let token = issue_access_token(&key, &claims());
        let p = parts(&token);
        let mut sig = URL_SAFE_NO_PAD.decode(&p[2]).unwrap();
        sig[0] ^= 1;
        let token = format!("{}.{}.{}", p[0], p[1], URL_SAFE_NO_PAD.encode(sig));
        assert_eq!(
            verify_access_token(&token, &[key.public_key()], ISS, NOW),
            Err(TokenError::BadSignature)
        );
    }

    #[test]
    fn tampered_header_alg_none_or_hs256() {
        let key = SigningKey::generate();
        let token = issue_access_token(&key, &claims());
        let p = parts(&token);
        let keys = [key.public_key()];
        for alg in ["none", "HS256", "RS256", "eddsa"] {
            let header = b64(&serde_json::json!({"alg": alg, "typ": "JWT", "kid": key.key_id()}));
            for sig in [p[2].as_str(), ""] {
                let forged = format!("{header}.{}.{sig}", p[1]);
                assert_eq!(
                    verify_access_token(&forged, &keys, ISS, NOW),
                    Err(TokenError::Malformed),
                    "alg {alg:?} with signature {sig:?}"
                );
            }
        }
        let extra = b64(&serde_json::json!({
            "alg": "EdDSA", "typ": "JWT", "kid": key.key_id(), "jku": "https://evil.example"
        }));
        assert_eq!(
            verify_access_token(&format!("{extra}.{}.{}", p[1], p[2]), &keys, ISS, NOW),
            Err(TokenError::Malformed),
            "unexpected header fields are refused"
        );
    }

    #[test]
    fn unknown_kid() {
        let key = SigningKey::generate();
        let token = issue_access_token(&key, &claims());
        assert_eq!(
            verify_access_token(&token, &[SigningKey::generate().public_key()], ISS, NOW),
            Err(TokenError::UnknownKey)
        );
        assert_eq!(
            verify_access_token(&token, &[], ISS, NOW),
            Err(TokenError::UnknownKey)
        );
    }

    #[test]
    fn structurally_malformed() {
        let key = SigningKey::generate();
        let keys = [key.public_key()];
        let token = issue_access_token(&key, &claims());
        let p = parts(&token);
        let cases = [
            String::new(),
            "a.b".into(),
            format!("{}.{}", p[0], p[1]),
            format!("{token}."),
            format!("{token}.{}", p[2]),
            format!("{}.{}.", p[0], p[1]),
            token[..token.len() - 3].to_owned(),
            format!("{}=.{}.{}", p[0], p[1], p[2]),
            format!("{}.{}.{}+", p[0], p[1], p[2]),
            format!("!!!.{}.{}", p[1], p[2]),
            "x".repeat(MAX_ACCESS_TOKEN_LEN + 1),
            format!("{}.{}.{}", b64(&serde_json::json!([1])), p[1], p[2]),
        ];
        for case in &cases {
            let got = verify_access_token(case, &keys, ISS, NOW);
            assert!(
                matches!(got, Err(TokenError::Malformed | TokenError::BadSignature)),
                "{case:?} gave {got:?}"
            );
        }
        assert_eq!(
            verify_access_token(&token[..token.len() - 3], &keys, ISS, NOW),
            Err(TokenError::Malformed),
            "a truncated signature is not valid base64url/length"
        );
    }

    fn client_claims() -> ClientClaims {
        let sub = Uuid::now_v7();
        ClientClaims {
            iss: ISS.into(),
            sub,
            org: Uuid::now_v7(),
            client_id: sub.to_string(),
            scope: "users:read users:write".into(),
            iat: NOW,
            exp: NOW + 300,
            jti: Uuid::now_v7(),
        }
    }

    /// A token signed by `key` with any header and payload, to forge shapes we never issue.
    fn signed(key: &SigningKey, header: &serde_json::Value, payload: &serde_json::Value) -> String {
        let input = format!("{}.{}", b64(header), b64(payload));
        let sig = URL_SAFE_NO_PAD.encode(key.sign(input.as_bytes()));
        format!("{input}.{sig}")
    }

    #[test]
    fn client_roundtrip() {
        let key = SigningKey::generate();
        let claims = client_claims();
        let token = issue_client_token(&key, &claims);
        let got = verify_client_token(&token, &[key.public_key()], ISS, NOW).unwrap();
        assert_eq!(got, claims);
    }

    #[test]
    fn client_header_shape() {
        let key = SigningKey::generate();
        let token = issue_client_token(&key, &client_claims());
        let header: serde_json::Value =
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(&parts(&token)[0]).unwrap()).unwrap();
        assert_eq!(
            header,
            serde_json::json!({"alg": "EdDSA", "typ": "at+jwt", "kid": key.key_id()})
        );
    }

    #[test]
    fn client_expired() {
        let key = SigningKey::generate();
        let token = issue_client_token(&key, &client_claims());
        let keys = [key.public_key()];
        assert!(verify_client_token(&token, &keys, ISS, NOW + 299).is_ok());
        assert_eq!(
            verify_client_token(&token, &keys, ISS, NOW + 300),
            Err(TokenError::Expired),
            "exp is exclusive"
        );
    }

    #[test]
    fn client_iat_in_the_future_beyond_leeway() {
        let key = SigningKey::generate();
        let keys = [key.public_key()];
        let mut c = client_claims();
        c.iat = NOW + IAT_LEEWAY_SECS + 1;
        assert_eq!(
            verify_client_token(&issue_client_token(&key, &c), &keys, ISS, NOW),
            Err(TokenError::Malformed)
        );
    }

    #[test]
    fn client_wrong_issuer() {
        let key = SigningKey::generate();
        let token = issue_client_token(&key, &client_claims());
        assert_eq!(
            verify_client_token(&token, &[key.public_key()], "https://evil.example", NOW),
            Err(TokenError::WrongIssuer)
        );
    }

    #[test]
    fn client_tampered_payload() {
        let key = SigningKey::generate();
        let claims = client_claims();
        let token = issue_client_token(&key, &claims);
        let p = parts(&token);
        let mut forged = claims;
        forged.scope = "admin".into();
        let token = format!(
            "{}.{}.{}",
            p[0],
            b64(&serde_json::to_value(&forged).unwrap()),
            p[2]
        );
        assert_eq!(
            verify_client_token(&token, &[key.public_key()], ISS, NOW),
            Err(TokenError::BadSignature)
        );
    }

    #[test]
    fn client_unknown_kid() {
        let key = SigningKey::generate();
        let token = issue_client_token(&key, &client_claims());
        assert_eq!(
            verify_client_token(&token, &[SigningKey::generate().public_key()], ISS, NOW),
            Err(TokenError::UnknownKey)
        );
    }

    #[test]
    fn user_token_is_not_a_client_token() {
        let key = SigningKey::generate();
        let keys = [key.public_key()];
        let token = issue_access_token(&key, &claims());
        assert_eq!(
            verify_client_token(&token, &keys, ISS, NOW),
            Err(TokenError::Malformed)
        );
        // Even relabelled as at+jwt and validly signed, user claims are not client claims.
        let header = serde_json::json!({"alg": "EdDSA", "typ": "at+jwt", "kid": key.key_id()});
        let forged = signed(&key, &header, &serde_json::to_value(claims()).unwrap());
        assert_eq!(
            verify_client_token(&forged, &keys, ISS, NOW),
            Err(TokenError::Malformed)
        );
    }

    #[test]
    fn client_token_is_not_a_user_token() {
        let key = SigningKey::generate();
        let keys = [key.public_key()];
        let token = issue_client_token(&key, &client_claims());
        assert_eq!(
            verify_access_token(&token, &keys, ISS, NOW),
            Err(TokenError::Malformed)
        );
        // Even relabelled as JWT and validly signed, client claims lack the session.
        let header = serde_json::json!({"alg": "EdDSA", "typ": "JWT", "kid": key.key_id()});
        let forged = signed(
            &key,
            &header,
            &serde_json::to_value(client_claims()).unwrap(),
        );
        assert_eq!(
            verify_access_token(&forged, &keys, ISS, NOW),
            Err(TokenError::Malformed)
        );
    }

    #[test]
    fn client_claims_are_exact() {
        let key = SigningKey::generate();
        let keys = [key.public_key()];
        let header = serde_json::json!({"alg": "EdDSA", "typ": "at+jwt", "kid": key.key_id()});
        let mut extra = serde_json::to_value(client_claims()).unwrap();
        extra["sid"] = serde_json::json!(Uuid::now_v7());
        let mut missing = serde_json::to_value(client_claims()).unwrap();
        missing.as_object_mut().unwrap().remove("scope");
        for payload in [extra, missing] {
            assert_eq!(
                verify_client_token(&signed(&key, &header, &payload), &keys, ISS, NOW),
                Err(TokenError::Malformed),
                "{payload}"
            );
        }
        let exact = serde_json::to_value(client_claims()).unwrap();
        assert!(verify_client_token(&signed(&key, &header, &exact), &keys, ISS, NOW).is_ok());
    }

    #[test]
    fn client_typ_is_exact() {
        let key = SigningKey::generate();
        let keys = [key.public_key()];
        let payload = serde_json::to_value(client_claims()).unwrap();
        for typ in ["AT+JWT", "application/at+jwt", "jwt", ""] {
            let header = serde_json::json!({"alg": "EdDSA", "typ": typ, "kid": key.key_id()});
            let token = signed(&key, &header, &payload);
            assert_eq!(
                verify_client_token(&token, &keys, ISS, NOW),
                Err(TokenError::Malformed),
                "typ {typ:?}"
            );
            assert_eq!(token_type(&token), None, "typ {typ:?}");
        }
    }

    #[test]
    fn token_type_reads_the_header() {
        let key = SigningKey::generate();
        let user = issue_access_token(&key, &claims());
        let client = issue_client_token(&key, &client_claims());
        assert_eq!(token_type(&user), Some(TokenKind::User));
        assert_eq!(token_type(&client), Some(TokenKind::Client));
        // Only the header is read: a header alone, or with a broken signature, still says.
        let header = &parts(&client)[0];
        assert_eq!(
            token_type(&format!("{header}.x.y")),
            Some(TokenKind::Client)
        );
        for junk in [
            String::new(),
            ".".into(),
            "abc".into(),
            header.clone(),
            format!("{header}="),
            format!("!!!.{}", parts(&user)[1]),
            format!("{}.a.b", b64(&serde_json::json!({"typ": "JWT"}))),
            format!("{}.", "x".repeat(MAX_ACCESS_TOKEN_LEN)),
            "uos_000000000000_0000000000000000000000000000000000000000000_21Hwn8".into(),
        ] {
            assert_eq!(token_type(&junk), None, "{junk:?}");
        }
    }

    proptest! {
        #[test]
        fn arbitrary_input_never_panics(s in ".{0,600}") {
            let key = SigningKey::generate();
            prop_assert!(verify_access_token(&s, &[key.public_key()], ISS, NOW).is_err());
            prop_assert!(verify_client_token(&s, &[key.public_key()], ISS, NOW).is_err());
            let _ = token_type(&s);
        }

        #[test]
        fn arbitrary_dotted_parts_never_panic(
            a in "[A-Za-z0-9_-]{0,80}", b in "[A-Za-z0-9_-]{0,80}", c in "[A-Za-z0-9_-]{0,90}"
        ) {
            let key = SigningKey::generate();
            let token = format!("{a}.{b}.{c}");
            prop_assert!(verify_access_token(&token, &[key.public_key()], ISS, NOW).is_err());
            prop_assert!(verify_client_token(&token, &[key.public_key()], ISS, NOW).is_err());
            let _ = token_type(&token);
        }
    }
}
