//! The file format of `orgs/<slug>.yaml`, as written: every value keeps where it stands in
//! the file, so a value that parses but is wrong is reported at its own line and column. The
//! JSON Schema served at `GET /v1/declarative/schema` is generated from these types, so the
//! schema and the parser cannot disagree about which fields exist.

use marked_yaml::Spanned;
use schemars::JsonSchema;
use serde::Deserialize;

/// The one format version there is.
pub const VERSION: u32 = 1;

/// One org, declared: what the reconciler makes the org look like.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(title = "Declared org (orgs/<slug>.yaml)")]
pub struct OrgFile {
    /// The format version: 1.
    #[schemars(with = "u32")]
    pub version: Spanned<u32>,
    /// The org's slug; the file must be named `orgs/<slug>.yaml`.
    #[schemars(with = "String")]
    pub slug: Spanned<String>,
    /// 1 to 200 characters, no control characters.
    #[schemars(with = "String")]
    pub display_name: Spanned<String>,
    /// The org's custom roles (built-in roles are not declared).
    #[serde(default)]
    pub roles: Vec<RoleEntry>,
    /// The members, by email: an existing user joins, an unknown address is invited.
    #[serde(default)]
    pub members: Vec<MemberEntry>,
    #[serde(default)]
    pub service_accounts: Vec<ServiceAccountEntry>,
    /// The org's budget; absent: the org has none that the reconciler manages.
    #[serde(default)]
    pub budget: Option<BudgetEntry>,
    /// Remove what the reconciler created earlier and this file no longer declares. Objects
    /// created through the API are never removed.
    #[serde(default)]
    #[schemars(with = "bool")]
    pub prune: Option<Spanned<bool>>,
    /// Re-apply the declared state when drift is found (default: report it only).
    #[serde(default)]
    #[schemars(with = "bool")]
    pub heal: Option<Spanned<bool>>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RoleEntry {
    /// Lowercase letters, digits, `-` and `_`; not a built-in role's name.
    #[schemars(with = "String")]
    pub name: Spanned<String>,
    #[serde(default)]
    #[schemars(with = "Option<String>")]
    pub description: Option<Spanned<String>>,
    /// Roles (built-in or declared here) whose permissions this one also has.
    #[serde(default)]
    #[schemars(with = "Vec<String>")]
    pub inherits: Vec<Spanned<String>>,
    /// Permissions such as `members:read`.
    #[serde(default)]
    #[schemars(with = "Vec<String>")]
    pub permissions: Vec<Spanned<String>>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct MemberEntry {
    #[schemars(with = "String")]
    pub email: Spanned<String>,
    /// Built-in or declared roles; at least one.
    #[schemars(with = "Vec<String>")]
    pub roles: Vec<Spanned<String>>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ServiceAccountEntry {
    /// Unique in the org; 1 to 200 characters.
    #[schemars(with = "String")]
    pub name: Spanned<String>,
    /// Built-in or declared roles; at least one.
    #[schemars(with = "Vec<String>")]
    pub roles: Vec<Spanned<String>>,
    #[serde(default)]
    #[schemars(with = "Option<String>")]
    pub description: Option<Spanned<String>>,
}

/// As `PUT /v1/orgs/{slug}/budget`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct BudgetEntry {
    /// `daily`, `weekly`, `monthly` or `total` (UTC calendar periods).
    #[schemars(with = "String")]
    pub period: Spanned<String>,
    #[schemars(with = "i64")]
    pub limit_cents: Spanned<i64>,
    /// Default 80.
    #[serde(default)]
    #[schemars(with = "Option<i32>")]
    pub warn_percent: Option<Spanned<i32>>,
    /// Default 100.
    #[serde(default)]
    #[schemars(with = "Option<i32>")]
    pub block_percent: Option<Spanned<i32>>,
}

/// The JSON Schema (draft 2020-12) of an org file.
pub fn json_schema() -> serde_json::Value {
    serde_json::to_value(schemars::schema_for!(OrgFile)).unwrap_or_default()
}
