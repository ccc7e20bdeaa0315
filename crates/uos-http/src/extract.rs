//! Request extractors shared by every handler: JSON bodies that report every bad field and
//! reject unknown ones, list queries with opaque keyset page tokens, `If-Match`, and the
//! request context (caller, request id, idempotency ticket).

use crate::problem::ApiError;
use axum::body::{Body, Bytes};
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::{header, request::Parts, HeaderValue};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde_json::{Map, Value};
use std::collections::BTreeMap;
use uos_service::{Caller, Ctx, FieldError, IdemTicket, Precondition};
use uos_store::PageRequest;

/// Largest accepted request body.
pub const MAX_BODY_BYTES: usize = 1024 * 1024;

/// A JSON object body parsed field by field (see [`json_body!`]).
pub trait FromJsonObject: Sized {
    fn from_object(obj: Map<String, Value>) -> Result<Self, Vec<FieldError>>;
}

/// Parse one field's value, recording a field error instead of stopping at the first.
/// Like [`take_field`] for an optional field where `null` means "clear it": `None` when
/// absent (or invalid, with the error recorded), `Some(None)` for `null`.
pub fn take_nullable_field<T: serde::de::DeserializeOwned>(
    obj: &mut Map<String, Value>,
    name: &str,
    errors: &mut Vec<FieldError>,
) -> Option<Option<T>> {
    match obj.get(name) {
        None => None,
        Some(Value::Null) => {
            obj.remove(name);
            Some(None)
        }
        Some(_) => take_field(obj, name, false, errors).map(Some),
    }
}

pub fn take_field<T: serde::de::DeserializeOwned>(
    obj: &mut Map<String, Value>,
    name: &str,
    required: bool,
    errors: &mut Vec<FieldError>,
) -> Option<T> {
    match obj.remove(name) {
        None | Some(Value::Null) => {
            if required {
                errors.push(FieldError::new(
                    name,
                    "required",
                    format!("{name} is required"),
                ));
            }
            None
        }
        Some(v) => match serde_json::from_value::<T>(integral(v)) {
            Ok(t) => Some(t),
            Err(e) => {
                let msg = e.to_string();
                let code = if msg.starts_with("invalid type") || msg.starts_with("invalid length") {
                    "invalid_type"
                } else {
                    "invalid"
                };
                errors.push(FieldError::new(name, code, msg));
                None
            }
        },
    }
}

/// JSON does not tell integers from other numbers: `3.0` is the integer 3 (JSON Schema
/// agrees), so an integral float is handed to the field's parser as an integer.
pub(crate) fn integral(v: Value) -> Value {
    match v.as_f64() {
        Some(f) if v.is_f64() && f.fract() == 0.0 && f.abs() < 9.0e15 => {
            // In range and integral, so the cast is exact.
            #[allow(clippy::cast_possible_truncation)]
            Value::from(f as i64)
        }
        _ => v,
    }
}

/// Parses an object as the body type `T` does, every failure joined into one message: for the
/// items of a batch, which serde parses and whose errors it reports at the item.
pub fn object_as<T: FromJsonObject, E: serde::de::Error>(obj: Map<String, Value>) -> Result<T, E> {
    T::from_object(obj).map_err(|errors| {
        let all: Vec<String> = errors
            .iter()
            .map(|e| format!("{}: {}", e.field, e.message))
            .collect();
        E::custom(all.join("; "))
    })
}

/// Anything left in the object after every known field was taken is an unknown field.
pub fn reject_unknown(obj: Map<String, Value>, errors: &mut Vec<FieldError>) {
    for k in obj.keys() {
        errors.push(FieldError::new(
            k.as_str(),
            "unknown_field",
            format!("unknown field {k}"),
        ));
    }
}

/// Declare a request body: a struct plus a [`FromJsonObject`] impl that parses each field
/// through its domain type, collects every failure and rejects unknown fields.
/// `req` fields must be present (and not null); `opt` fields are declared as `Option<T>`.
#[macro_export]
macro_rules! json_body {
    ($(#[$m:meta])* pub struct $name:ident { $( $(#[$fm:meta])* $kind:ident $field:ident : $ty:ty ),* $(,)? }) => {
        $(#[$m])*
        // `deny_unknown_fields` only tells the schema (`additionalProperties: false`) what
        // `reject_unknown` below enforces; serde never sees this struct.
        #[derive(Debug, utoipa::ToSchema)]
        #[serde(deny_unknown_fields)]
        pub struct $name { $( $(#[$fm])* pub $field: $ty ),* }

        impl $crate::extract::FromJsonObject for $name {
            fn from_object(mut obj: serde_json::Map<String, serde_json::Value>) -> Result<Self, Vec<uos_service::FieldError>> {
                let mut errors = Vec::new();
                $( let $field: Option<$ty> = $crate::json_body!(@take $kind obj $field errors); )*
                $crate::extract::reject_unknown(obj, &mut errors);
                if !errors.is_empty() {
                    return Err(errors);
                }
                Ok(Self { $( $field: $crate::json_body!(@final $kind $field errors) ),* })
            }
        }
    };
    (@take req $obj:ident $f:ident $errors:ident) => { $crate::extract::take_field(&mut $obj, stringify!($f), true, &mut $errors) };
    (@take opt $obj:ident $f:ident $errors:ident) => { $crate::extract::take_field(&mut $obj, stringify!($f), false, &mut $errors) };
    // `nul` fields are `Option<Option<T>>`: absent, explicitly null (clear it), or a value.
    (@take nul $obj:ident $f:ident $errors:ident) => { $crate::extract::take_nullable_field(&mut $obj, stringify!($f), &mut $errors).map(Some) };
    (@final req $f:ident $errors:ident) => { match $f { Some(v) => v, None => return Err($errors) } };
    (@final opt $f:ident $errors:ident) => { $f.flatten() };
    (@final nul $f:ident $errors:ident) => { $f.flatten() };
}

/// Read the body with the size limit, mapping an oversized one to 413.
pub async fn read_body(req: Request) -> Result<Bytes, ApiError> {
    axum::body::to_bytes(req.into_body(), MAX_BODY_BYTES)
        .await
        .map_err(|_| ApiError::payload_too_large())
}

/// A JSON request body parsed with [`FromJsonObject`].
#[derive(Debug)]
pub struct ApiJson<T>(pub T);

impl<S: Send + Sync, T: FromJsonObject> FromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, _state: &S) -> Result<Self, Self::Rejection> {
        let value = json_value(req).await?;
        match value {
            Value::Object(obj) => T::from_object(obj)
                .map(ApiJson)
                .map_err(ApiError::validation),
            _ => Err(ApiError::field(
                "body",
                "invalid_type",
                "the body must be a JSON object",
            )),
        }
    }
}

/// A JSON body whose fields are all optional: no body at all (no bytes, no Content-Type)
/// reads as `{}`, so `POST …/rotate` needs none. Anything sent is parsed like [`ApiJson`].
#[derive(Debug)]
pub struct OptionalJson<T>(pub T);

impl<S: Send + Sync, T: FromJsonObject> FromRequest<S> for OptionalJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let (parts, body) = req.into_parts();
        let bytes = read_body(Request::from_parts(parts.clone(), body)).await?;
        if bytes.is_empty() && !parts.headers.contains_key(header::CONTENT_TYPE) {
            return T::from_object(serde_json::Map::new())
                .map(Self)
                .map_err(ApiError::validation);
        }
        let req = Request::from_parts(parts, Body::from(bytes));
        let ApiJson(b) = ApiJson::<T>::from_request(req, state).await?;
        Ok(Self(b))
    }
}

/// Any JSON value (for free-form documents such as preferences).
#[derive(Debug)]
pub struct AnyJson(pub Value);

impl<S: Send + Sync> FromRequest<S> for AnyJson {
    type Rejection = ApiError;

    async fn from_request(req: Request, _state: &S) -> Result<Self, Self::Rejection> {
        json_value(req).await.map(AnyJson)
    }
}

async fn json_value(req: Request) -> Result<Value, ApiError> {
    let is_json = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|mime| {
            let mime = mime.trim().to_ascii_lowercase();
            mime == "application/json"
                || (mime.starts_with("application/") && mime.ends_with("+json"))
        });
    if !is_json {
        return Err(ApiError::field(
            "Content-Type",
            "unsupported_media_type",
            "send the body as application/json",
        ));
    }
    let bytes = read_body(req).await?;
    serde_json::from_slice(&bytes).map_err(|e| {
        ApiError::field(
            "body",
            "malformed_json",
            format!("the body is not valid JSON: {e}"),
        )
    })
}

/// Query parameters, parsed and checked as a whole so every bad or unknown one is reported.
#[derive(Debug)]
pub struct Query {
    params: BTreeMap<String, String>,
    errors: Vec<FieldError>,
}

impl<S: Send + Sync> FromRequestParts<S> for Query {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let raw = parts.uri.query().unwrap_or("");
        let pairs: Vec<(String, String)> = serde_urlencoded::from_str(raw).map_err(|_| {
            ApiError::field("query", "malformed", "the query string cannot be parsed")
        })?;
        let mut params = BTreeMap::new();
        let mut errors = Vec::new();
        for (k, v) in pairs {
            if params.insert(k.clone(), v).is_some() {
                errors.push(FieldError::new(k, "repeated", "give this parameter once"));
            }
        }
        Ok(Self { params, errors })
    }
}

impl Query {
    pub fn take(&mut self, name: &str) -> Option<String> {
        self.params.remove(name)
    }

    /// Parse an optional parameter with `parse`, recording a failure under its name.
    pub fn parse<T, E: std::fmt::Display>(
        &mut self,
        name: &str,
        parse: impl FnOnce(&str) -> Result<T, E>,
    ) -> Option<T> {
        let raw = self.take(name)?;
        match parse(&raw) {
            Ok(v) => Some(v),
            Err(e) => {
                self.errors
                    .push(FieldError::new(name, "invalid", e.to_string()));
                None
            }
        }
    }

    /// `limit` (1-100, default 50) and `page_token` for the list named `kind`.
    pub fn page(&mut self, kind: &str, valid_cursor: impl Fn(&str) -> bool) -> PageRequest {
        let limit = match self.take("limit") {
            None => 50,
            Some(raw) => match raw.parse::<u32>() {
                Ok(n) if (1..=100).contains(&n) => n,
                _ => {
                    self.errors.push(FieldError::new(
                        "limit",
                        "out_of_range",
                        "limit must be an integer from 1 to 100",
                    ));
                    50
                }
            },
        };
        let after = self
            .take("page_token")
            .and_then(|t| match decode_page_token(kind, &t) {
                Some(c) if valid_cursor(&c) => Some(c),
                _ => {
                    self.errors.push(FieldError::new(
                        "page_token",
                        "invalid",
                        "the page token is not valid for this list",
                    ));
                    None
                }
            });
        PageRequest { after, limit }
    }

    /// Fail with every problem found, including parameters nobody asked for.
    pub fn finish(mut self) -> Result<(), ApiError> {
        for k in self.params.keys() {
            self.errors.push(FieldError::new(
                k.as_str(),
                "unknown_parameter",
                format!("unknown query parameter {k}"),
            ));
        }
        if self.errors.is_empty() {
            Ok(())
        } else {
            Err(ApiError::validation(self.errors))
        }
    }
}

/// Page tokens are opaque to clients: the list kind and the keyset cursor, base64url-encoded,
/// so a token from one list is refused by another.
pub fn encode_page_token(kind: &str, cursor: &str) -> String {
    URL_SAFE_NO_PAD.encode(format!("{kind}:{cursor}"))
}

fn decode_page_token(kind: &str, token: &str) -> Option<String> {
    if token.len() > 512 {
        return None;
    }
    let raw = String::from_utf8(URL_SAFE_NO_PAD.decode(token).ok()?).ok()?;
    raw.strip_prefix(kind)?
        .strip_prefix(':')
        .map(str::to_string)
}

pub fn is_uuid(s: &str) -> bool {
    uuid::Uuid::parse_str(s).is_ok()
}

pub fn is_seq(s: &str) -> bool {
    s.parse::<i64>().is_ok_and(|n| n >= 0)
}

/// `If-Match` (RFC 9110 §13.1.1): absent or `*` asks nothing of the (existing) resource;
/// otherwise a comma-separated list of entity tags, of which one must match the current `ETag`
/// under the strong comparison. Our tags are `"<version>"`, so a weak tag (`W/"3"`) or a
/// well-formed tag we never issued (`"abc"`) simply matches nothing: 412, not 400. Only a
/// header that is not entity-tag syntax at all is a bad request.
#[derive(Debug, Clone, Default)]
pub struct IfMatch(pub Precondition);

impl<S: Send + Sync> FromRequestParts<S> for IfMatch {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        parse_if_match(parts.headers.get_all(header::IF_MATCH))
            .map(Self)
            .ok_or_else(|| {
                ApiError::field(
                    "If-Match",
                    "invalid",
                    "If-Match must be * or a comma-separated list of entity tags such as \"3\"",
                )
            })
    }
}

/// Parse every `If-Match` field line as one list; `None` when the syntax is broken. `*` must
/// stand alone; empty list elements are allowed and ignored (RFC 9110 §5.6.1.2).
pub fn parse_if_match(values: header::GetAll<'_, HeaderValue>) -> Option<Precondition> {
    let lines: Vec<&[u8]> = values.iter().map(HeaderValue::as_bytes).collect();
    if lines.is_empty() {
        return Some(Precondition::None);
    }
    if let [line] = lines.as_slice() {
        if trim_ows(line) == b"*" {
            return Some(Precondition::None);
        }
    }
    let mut versions = Vec::new();
    let mut tags = 0;
    for line in lines {
        let mut rest = line;
        loop {
            rest = trim_ows(rest);
            if let Some(r) = rest.strip_prefix(b",") {
                rest = r;
                continue;
            }
            if rest.is_empty() {
                break;
            }
            let (weak, r) = match rest.strip_prefix(b"W/") {
                Some(r) => (true, r),
                None => (false, rest),
            };
            let r = r.strip_prefix(b"\"")?;
            // etagc = %x21 / %x23-7E / obs-text
            let end = r.iter().position(|&b| b == b'"')?;
            let opaque = &r[..end];
            if !opaque.iter().all(|&b| b == 0x21 || b >= 0x23 && b != 0x7f) {
                return None;
            }
            tags += 1;
            if !weak {
                // Strong comparison is octet by octet: `"03"` is not our `"3"`.
                if let Some(v) = std::str::from_utf8(opaque)
                    .ok()
                    .and_then(|s| s.parse::<i64>().ok().filter(|v| v.to_string() == s))
                {
                    versions.push(v);
                }
            }
            rest = trim_ows(&r[end + 1..]);
            match rest.split_first() {
                None => break,
                Some((b',', r)) => rest = r,
                Some(_) => return None,
            }
        }
    }
    (tags > 0).then_some(Precondition::OneOf(versions))
}

/// Optional white space (RFC 9110 §5.6.3) off both ends.
fn trim_ows(mut s: &[u8]) -> &[u8] {
    while let Some((b' ' | b'\t', r)) = s.split_first() {
        s = r;
    }
    while let Some((b' ' | b'\t', r)) = s.split_last() {
        s = r;
    }
    s
}

/// The request id assigned by the request-context middleware.
#[derive(Debug, Clone)]
pub struct RequestId(pub String);

/// The service context of this request.
#[derive(Debug)]
pub struct ReqCtx(pub Ctx);

impl<S: Send + Sync> FromRequestParts<S> for ReqCtx {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        Ok(Self(ctx_from_parts(parts)))
    }
}

pub fn ctx_from_parts(parts: &Parts) -> Ctx {
    let ext = &parts.extensions;
    Ctx {
        request_id: ext
            .get::<RequestId>()
            .map(|r| r.0.clone())
            .unwrap_or_default(),
        caller: ext.get::<Caller>().cloned().unwrap_or(Caller::Anonymous),
        idem: ext.get::<IdemTicket>().cloned(),
        ip: ext
            .get::<crate::client_ip::ClientIp>()
            .map(|c| c.0.to_string()),
        user_agent: parts
            .headers
            .get(header::USER_AGENT)
            .and_then(|v| v.to_str().ok())
            .map(|s| s.chars().take(256).collect()),
        grant_uses: Default::default(),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use axum::http::HeaderMap;

    fn parse(lines: &[&str]) -> Option<Precondition> {
        let mut h = HeaderMap::new();
        for l in lines {
            h.append(header::IF_MATCH, HeaderValue::from_str(l).unwrap());
        }
        parse_if_match(h.get_all(header::IF_MATCH))
    }

    #[test]
    fn if_match_reads_rfc_9110_lists() {
        use Precondition::{None as Any, OneOf};
        assert_eq!(parse(&[]), Some(Any));
        assert_eq!(parse(&[" * "]), Some(Any));
        assert_eq!(parse(&["\"3\""]), Some(OneOf(vec![3])));
        assert_eq!(parse(&["\"1\", W/\"2\" ,,\"x\""]), Some(OneOf(vec![1])));
        assert_eq!(parse(&["\"1\"", "\"2\""]), Some(OneOf(vec![1, 2])));
        // Well-formed tags that match no version of ours: a precondition nothing meets.
        assert_eq!(parse(&["W/\"3\""]), Some(OneOf(vec![])));
        assert_eq!(parse(&["\"03\""]), Some(OneOf(vec![])));
        assert_eq!(parse(&["\"\""]), Some(OneOf(vec![])));
        for bad in [
            "3",
            "\"3",
            "*, \"3\"",
            "*, *",
            ",",
            "\"3\" \"4\"",
            "w/\"3\"",
        ] {
            assert_eq!(parse(&[bad]), None, "{bad} is malformed");
        }
        assert_eq!(parse(&["*", "*"]), None, "* stands alone");
    }
}
