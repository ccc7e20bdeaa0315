//! Access tokens: compact JWS (EdDSA/Ed25519) with a fixed header and claim set, verified
//! strictly — only the exact shape this service issues is accepted.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use serde::{Deserialize, Serialize};
use uos_keys::{PublicKey, SigningKey};
use uuid::Uuid;

/// Longer tokens are rejected before any decoding; ours are ~400 bytes.
pub const MAX_ACCESS_TOKEN_LEN: usize = 4096;
/// How far `iat` may lie in the future, to absorb clock skew between replicas.
pub const IAT_LEEWAY_SECS: i64 = 30;

const ALG: &str = "EdDSA";
const TYP: &str = "JWT";

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

/// Signs `claims` as a compact JWS with header `{"alg":"EdDSA","typ":"JWT","kid":<key id>}`.
pub fn issue_access_token(key: &SigningKey, claims: &AccessClaims) -> String {
    // Built with `json!` rather than `serde_json::to_string` because these values cannot fail to
    // serialize, and this keeps the function infallible without an `unwrap`.
    let header = serde_json::json!({ "alg": ALG, "typ": TYP, "kid": key.key_id() });
    let payload = serde_json::json!({
        "iss": claims.iss,
        "sub": claims.sub,
        "sid": claims.sid,
        "iat": claims.iat,
        "exp": claims.exp,
        "jti": claims.jti,
    });
    let mut token = URL_SAFE_NO_PAD.encode(header.to_string());
    token.push('.');
    URL_SAFE_NO_PAD.encode_string(payload.to_string(), &mut token);
    let signature = key.sign(token.as_bytes());
    token.push('.');
    URL_SAFE_NO_PAD.encode_string(signature, &mut token);
    token
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
    if header.alg != ALG || header.typ != TYP {
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

    let claims: AccessClaims =
        serde_json::from_slice(&payload).map_err(|_| TokenError::Malformed)?;
    if claims.iss != issuer {
        return Err(TokenError::WrongIssuer);
    }
    if claims.exp <= now_unix {
        return Err(TokenError::Expired);
    }
    if claims.iat > now_unix.saturating_add(IAT_LEEWAY_SECS) {
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

    proptest! {
        #[test]
        fn arbitrary_input_never_panics(s in ".{0,600}") {
            let key = SigningKey::generate();
            prop_assert!(verify_access_token(&s, &[key.public_key()], ISS, NOW).is_err());
        }

        #[test]
        fn arbitrary_dotted_parts_never_panic(
            a in "[A-Za-z0-9_-]{0,80}", b in "[A-Za-z0-9_-]{0,80}", c in "[A-Za-z0-9_-]{0,90}"
        ) {
            let key = SigningKey::generate();
            let token = format!("{a}.{b}.{c}");
            prop_assert!(verify_access_token(&token, &[key.public_key()], ISS, NOW).is_err());
        }
    }
}
