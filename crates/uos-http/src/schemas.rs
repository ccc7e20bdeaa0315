//! JSON Schemas of the request values the domain parsers accept, for the OpenAPI document:
//! each says what its parser really takes (lengths, patterns, enums), so a client, and
//! schemathesis, can tell a valid request from an invalid one before sending it. Fields refer
//! to them with `#[schema(schema_with = ...)]`; the `_or_null` forms are for optional fields,
//! where `null` reads as absent.
//!
//! Patterns stay inside the regex dialect JSON Schema tools share (ECMA-262 and Python `re`):
//! no `\p{..}` classes, so control and white-space characters are spelled out.

use uos_domain::invite::{INVITE_MAX_HOURS, INVITE_MIN_HOURS};
use uos_domain::role::PERMISSIONS;
use uos_domain::UserStatus;
use uos_domain::API_KEY_MAX_DAYS;
use utoipa::openapi::schema::{
    AdditionalProperties, AnyOfBuilder, ArrayBuilder, Schema, SchemaType,
};
use utoipa::openapi::{KnownFormat, ObjectBuilder, SchemaFormat, Type};

/// Rust's `char::is_control` (Unicode Cc).
const CONTROL: &str = r"\u0000-\u001F\u007F-\u009F";
/// Rust's `str::trim` (Unicode White_Space).
const SPACE: &str =
    r"\t\n\u000B\u000C\r \u0085\u00A0\u1680\u2000-\u200A\u2028\u2029\u202F\u205F\u3000";

fn string() -> ObjectBuilder {
    ObjectBuilder::new().schema_type(Type::String)
}

fn or_null(b: ObjectBuilder, ty: Type) -> ObjectBuilder {
    b.schema_type(SchemaType::from_iter([ty, Type::Null]))
}

macro_rules! schemas {
    ($( $(#[$doc:meta])* $name:ident / $or_null:ident : $ty:expr => $build:expr; )*) => {
        $(
            $(#[$doc])*
            pub fn $name() -> utoipa::openapi::Object {
                $build.build()
            }

            pub fn $or_null() -> utoipa::openapi::Object {
                or_null($build, $ty).build()
            }
        )*
    };
}

schemas! {
    /// `OrgSlug`.
    slug / slug_or_null: Type::String => string()
        .pattern(Some("^[a-z0-9][a-z0-9-]{1,61}[a-z0-9]$"))
        .examples(["acme"]);
    /// `DisplayName`: 1-200 characters once trimmed, no control characters inside.
    display_name / display_name_or_null: Type::String => string().pattern(Some(format!(
        "^[{SPACE}]*[^{SPACE}{CONTROL}](?:[^{CONTROL}]{{0,198}}[^{SPACE}{CONTROL}])?[{SPACE}]*$"
    )));
    /// `Email`: trimmed and lower-cased by the server.
    email / email_or_null: Type::String => string().format(Some(SchemaFormat::KnownFormat(KnownFormat::Email))).max_length(Some(254));
    /// `RoleName`.
    role_name / role_name_or_null: Type::String => string().pattern(Some("^[a-z][a-z0-9_-]{0,62}$"));
    /// `Locale`: a BCP 47-shaped language tag.
    locale / locale_or_null: Type::String => string()
        .pattern(Some("^[A-Za-z]{2,3}(-[A-Za-z0-9]{2,8})*$"))
        .max_length(Some(35))
        .examples(["de-CH"]);
    /// `Timezone`: an IANA zone name's shape.
    timezone / timezone_or_null: Type::String => string()
        .pattern(Some("^[A-Za-z0-9_+-]+(/[A-Za-z0-9_+-]+)*$"))
        .max_length(Some(64))
        .examples(["Europe/Zurich"]);
    /// A description or reason: at most 500 characters, no control characters.
    description / description_or_null: Type::String => string()
        .pattern(Some(format!("^[^{CONTROL}]{{0,500}}$")));
    /// An opaque token we issued (invite, refresh, reset, MFA): 1 to 256 characters.
    opaque_token / opaque_token_or_null: Type::String => string()
        .min_length(Some(1))
        .max_length(Some(256));
    /// A TOTP or recovery code: 1 to 32 characters, not only white space (an unanchored
    /// pattern: it must contain one other character).
    one_time_code / one_time_code_or_null: Type::String => string()
        .pattern(Some(format!("[^{SPACE}]")))
        .max_length(Some(32));
    /// A permission of the catalogue.
    permission / permission_or_null: Type::String => string().enum_values(Some(PERMISSIONS.iter().copied()));
    /// An invite's lifetime in hours.
    invite_hours / invite_hours_or_null: Type::Integer => ObjectBuilder::new()
        .schema_type(Type::Integer)
        .minimum(Some(INVITE_MIN_HOURS as f64))
        .maximum(Some(INVITE_MAX_HOURS as f64));
    /// An RFC 3339 timestamp.
    date_time / date_time_or_null: Type::String => string()
        .format(Some(SchemaFormat::KnownFormat(KnownFormat::DateTime)));
    /// Days of an API key's life.
    key_days / key_days_or_null: Type::Integer => ObjectBuilder::new()
        .schema_type(Type::Integer)
        .minimum(Some(1.0))
        .maximum(Some(f64::from(API_KEY_MAX_DAYS)));
}

schemas! {
    /// A new password: the length bounds of the password policy's defaults. The policy also
    /// refuses guessable passwords (zxcvbn score), which no schema can say; the minimum length
    /// is configurable (`service.password_min_length`).
    new_password / new_password_or_null: Type::String => string()
        .format(Some(SchemaFormat::Custom("password".into())))
        .min_length(Some(12))
        .max_length(Some(uos_service::PASSWORD_MAX_LEN));
    /// A service account's status as a client may set it.
    account_status / account_status_or_null: Type::String => string()
        .enum_values(Some(["active", "disabled"]));
    /// A user's status.
    user_status / user_status_or_null: Type::String => string()
        .enum_values(Some(UserStatus::ALL.iter().map(|s| s.as_str())));
    /// Why a user's status changes.
    reason / reason_or_null: Type::String => string()
        .max_length(Some(uos_service::REASON_MAX_CHARS));
    /// Why a legal hold stands: 1 to 500 characters, not only white space (an unanchored
    /// pattern: it must contain one other character).
    hold_reason / hold_reason_or_null: Type::String => string()
        .pattern(Some(format!("[^{SPACE}]")))
        .max_length(Some(uos_service::HOLD_REASON_MAX_CHARS));
    /// Seconds the old key of a rotation keeps working.
    overlap_seconds / overlap_seconds_or_null: Type::Integer => ObjectBuilder::new()
        .schema_type(Type::Integer)
        .minimum(Some(0.0))
        .maximum(Some(uos_service::MAX_ROTATION_OVERLAP_SECS as f64));
}

fn array(items: utoipa::openapi::Object, min: Option<usize>, max: Option<usize>) -> ArrayBuilder {
    ArrayBuilder::new()
        .items(items)
        .min_items(min)
        .max_items(max)
}

fn array_or_null(b: ArrayBuilder) -> utoipa::openapi::Array {
    b.schema_type(SchemaType::from_iter([Type::Array, Type::Null]))
        .build()
}

/// `roles` of a membership, invite or service account: 1 to `MAX_ROLES` role names.
pub fn role_list() -> utoipa::openapi::Array {
    array(role_name(), Some(1), Some(uos_service::MAX_ROLES)).build()
}

pub fn role_list_or_null() -> utoipa::openapi::Array {
    array_or_null(array(role_name(), Some(1), Some(uos_service::MAX_ROLES)))
}

/// The roles a custom role inherits.
pub fn role_name_list_or_null() -> utoipa::openapi::Array {
    array_or_null(array(role_name(), None, None))
}

/// A custom role's permissions.
pub fn permission_list() -> utoipa::openapi::Array {
    array(permission(), None, None).build()
}

pub fn permission_list_or_null() -> utoipa::openapi::Array {
    array_or_null(array(permission(), None, None))
}

/// The scopes of a new API key: 1 to 32 permissions.
pub fn scope_list() -> utoipa::openapi::Array {
    array(permission(), Some(1), Some(32)).build()
}

/// A service account's key rotation policy, in the two shapes the server takes: report only
/// (`refuse_after_days` absent or null), or enforced, where refusing overdue keys needs the
/// age that makes a key overdue (`max_key_age_days` set).
pub fn rotation_policy() -> Schema {
    const MAX_AGE: &str = "Keys older than this many days are reported as overdue.";
    const GRACE: &str = "Refuse overdue keys this many days after they became overdue; absent \
                         or null = only report.";
    let days = |min: u32, ty: SchemaType, doc: &str| {
        ObjectBuilder::new()
            .schema_type(ty)
            .minimum(Some(f64::from(min)))
            .maximum(Some(f64::from(API_KEY_MAX_DAYS)))
            .description(Some(doc))
    };
    let integer_or_null = || SchemaType::from_iter([Type::Integer, Type::Null]);
    let object = || {
        ObjectBuilder::new()
            .schema_type(Type::Object)
            .additional_properties(Some(AdditionalProperties::FreeForm(false)))
    };
    let report_only = object()
        .title(Some("report only"))
        .property("max_key_age_days", days(1, integer_or_null(), MAX_AGE))
        .property(
            "refuse_after_days",
            ObjectBuilder::new()
                .schema_type(Type::Null)
                .description(Some(GRACE)),
        );
    let enforced = object()
        .title(Some("enforced"))
        .property("max_key_age_days", days(1, Type::Integer.into(), MAX_AGE))
        .property("refuse_after_days", days(0, integer_or_null(), GRACE))
        .required("max_key_age_days");
    AnyOfBuilder::new()
        .item(report_only)
        .item(enforced)
        .description(Some(
            "A key rotation policy: report overdue keys only, or also refuse them.",
        ))
        .build()
        .into()
}

/// The `context` of a decision request: any object; `cost_cents`, when given, a whole number
/// of cents the budgets are checked against.
pub fn decision_context() -> utoipa::openapi::Object {
    let cost = ObjectBuilder::new()
        .schema_type(SchemaType::from_iter([Type::Integer, Type::Null]))
        .minimum(Some(0))
        .maximum(Some(uos_domain::budget::MAX_LIMIT_CENTS));
    ObjectBuilder::new()
        .schema_type(Type::Object)
        .property("cost_cents", cost)
        .additional_properties(Some(AdditionalProperties::FreeForm(true)))
        .build()
}
