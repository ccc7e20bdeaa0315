//! `docs/configuration.md`, the configuration reference, generated from the JSON Schema of
//! [`Config`]: the fields' doc comments are the descriptions and `Config::default()` gives the
//! defaults, so the reference cannot drift from the types. The docs test of this crate
//! (`tests/docs.rs`) keeps the committed file equal to it (`UPDATE_DOCS=1` rewrites it).

use schemars::schema_for;
use serde_json::{Map, Value};

use crate::Config;

/// One key of the configuration, as the reference lists it.
#[derive(Clone, Debug, PartialEq)]
pub struct ConfigKey {
    /// The dotted path, `service.lockout.threshold`; an entry of a map is `<name>`.
    pub path: String,
    /// The environment variable that sets it, `UOS_SERVICE__LOCKOUT__THRESHOLD`.
    pub env: String,
    /// `integer`, `string`, `list of strings`, or the values an enumeration takes.
    pub kind: String,
    /// The default value; `None` when there is none to show (required, or a secret).
    pub default: Option<Value>,
    /// Must be given whenever its table is given (a field of a map entry, of an optional
    /// section, or of a table such as `service.password_hashing` that has no defaults of its
    /// own).
    pub required: bool,
    /// A secret: documented, never shown with a value.
    pub secret: bool,
    pub description: String,
}

/// A table of the configuration (`[service.lockout]`), with the description of its field.
#[derive(Clone, Debug, PartialEq)]
pub struct ConfigTable {
    pub path: String,
    pub description: String,
    /// The table itself may be left out (`[smtp]`, `[oidc_providers.<name>]`).
    pub optional: bool,
    pub keys: Vec<ConfigKey>,
}

/// Every table of the configuration, the top level first, each with its keys; tables and keys
/// are sorted by name, so the output does not depend on how the schema orders its properties.
pub fn configuration_tables() -> Vec<ConfigTable> {
    let schema = schema_for!(Config);
    let root = schema.as_value();
    let empty = Map::new();
    let defs = root
        .get("$defs")
        .and_then(Value::as_object)
        .unwrap_or(&empty);
    let mut walker = Walker {
        defs,
        tables: Vec::new(),
    };
    walker.table(&[], "", false, root, None);
    walker.tables
}

struct Walker<'a> {
    defs: &'a Map<String, Value>,
    tables: Vec<ConfigTable>,
}

impl<'a> Walker<'a> {
    /// Follows a `$ref` into `$defs`.
    fn resolve(&self, schema: &'a Value) -> &'a Value {
        let target = schema
            .get("$ref")
            .and_then(Value::as_str)
            .and_then(|r| r.strip_prefix("#/$defs/"))
            .and_then(|name| self.defs.get(name));
        target.unwrap_or(schema)
    }

    /// Records the table at `path` (an object schema), its keys, then its sub-tables.
    /// `default` is the table's value in `Config::default()`, when the schema carries it.
    fn table(
        &mut self,
        path: &[String],
        description: &str,
        optional: bool,
        schema: &'a Value,
        default: Option<&'a Value>,
    ) {
        let schema = self.resolve(schema);
        let mut properties: Vec<(&'a String, &'a Value)> = schema
            .get("properties")
            .and_then(Value::as_object)
            .map(|p| p.iter().collect())
            .unwrap_or_default();
        properties.sort_by_key(|(name, _)| *name);
        let required: Vec<&str> = schema
            .get("required")
            .and_then(Value::as_array)
            .map(|r| r.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();

        let index = self.tables.len();
        self.tables.push(ConfigTable {
            path: path.join("."),
            description: clean(description),
            optional,
            keys: Vec::new(),
        });
        let mut sub_tables = Vec::new();
        for (name, field) in properties {
            let mut field_path = path.to_vec();
            field_path.push(name.clone());
            // The parent's default says what the field is when the whole table is left out;
            // the field's own default, what it is when the table is given without it.
            let field_default = default
                .and_then(|d| d.get(name))
                .or_else(|| field.get("default"));
            let (inner, nullable) = self.unwrap_option(field);
            let description = field
                .get("description")
                .or_else(|| inner.get("description"))
                .and_then(Value::as_str)
                .unwrap_or_default();
            if inner.get("properties").is_some() {
                sub_tables.push((field_path, description, nullable, inner, field_default));
            } else if let Some(entry) = inner.get("additionalProperties").filter(|e| e.is_object())
            {
                field_path.push("<name>".into());
                sub_tables.push((field_path, description, true, entry, None));
            } else {
                let key = self.key(
                    field_path,
                    description,
                    inner,
                    nullable,
                    field_default,
                    required.contains(&name.as_str()),
                );
                self.tables[index].keys.push(key);
            }
        }
        for (path, description, optional, schema, default) in sub_tables {
            self.table(&path, description, optional, schema, default);
        }
    }

    /// An `Option<T>`'s schema as T's (resolved), and whether it was optional.
    fn unwrap_option(&self, field: &'a Value) -> (&'a Value, bool) {
        if let Some(any) = field.get("anyOf").and_then(Value::as_array) {
            let not_null: Vec<&Value> = any.iter().filter(|s| !is_null_type(s)).collect();
            if let [only] = not_null.as_slice() {
                if not_null.len() < any.len() {
                    return (self.resolve(only), true);
                }
            }
        }
        let nullable = field
            .get("type")
            .and_then(Value::as_array)
            .is_some_and(|t| t.iter().any(|t| t == "null"));
        (self.resolve(field), nullable)
    }

    fn key(
        &self,
        path: Vec<String>,
        description: &str,
        schema: &Value,
        nullable: bool,
        default: Option<&Value>,
        required: bool,
    ) -> ConfigKey {
        let secret = schema.get("writeOnly") == Some(&Value::Bool(true));
        let (kind, values) = kind(schema);
        let mut description = clean(description);
        if !values.is_empty() {
            description.push_str(&format!(" Values: {}.", values.join("; ")));
        }
        // A missing `Option` is `None` whether or not the schema states a default; a secret's
        // value is never shown, only that an optional one is unset.
        let unset = nullable.then_some(Value::Null);
        let default = if secret {
            unset
        } else {
            default.cloned().or(unset)
        };
        ConfigKey {
            env: format!("UOS_{}", path.join("__").to_uppercase()),
            path: path.join("."),
            kind,
            default,
            required,
            secret,
            description,
        }
    }
}

fn is_null_type(schema: &Value) -> bool {
    schema.get("type").and_then(Value::as_str) == Some("null")
}

/// A scalar's type as the reference names it, and for an enumeration each value with its
/// description (`` `tls`: TLS from the first byte ``).
fn kind(schema: &Value) -> (String, Vec<String>) {
    if let Some(values) = schema.get("enum").and_then(Value::as_array) {
        return (one_of(values.iter()), Vec::new());
    }
    if let Some(variants) = schema.get("oneOf").and_then(Value::as_array) {
        let consts: Vec<&Value> = variants.iter().filter_map(|v| v.get("const")).collect();
        let described = variants
            .iter()
            .filter_map(|v| {
                let value = v.get("const")?;
                let about = v.get("description").and_then(Value::as_str)?;
                let about = clean(about);
                Some(format!(
                    "`{}`: {}",
                    plain(value),
                    about.trim_end_matches('.')
                ))
            })
            .collect();
        return (one_of(consts.into_iter()), described);
    }
    let types: Vec<&str> = match schema.get("type") {
        Some(Value::String(t)) => vec![t.as_str()],
        Some(Value::Array(ts)) => ts.iter().filter_map(Value::as_str).collect(),
        _ => Vec::new(),
    };
    let name = match types.iter().find(|t| **t != "null") {
        Some(&"array") => {
            let item = schema
                .get("items")
                .map(|i| kind(i).0)
                .unwrap_or_else(|| "value".into());
            format!("list of {item}s")
        }
        Some(t) => (*t).to_string(),
        None => "value".into(),
    };
    (name, Vec::new())
}

fn one_of<'v>(values: impl Iterator<Item = &'v Value>) -> String {
    let values: Vec<String> = values.map(|v| format!("`{}`", plain(v))).collect();
    format!("one of {}", values.join(", "))
}

/// A string without its JSON quotes; any other value as JSON.
fn plain(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// A doc comment as one paragraph of markdown: lines joined, rustdoc's intra-doc link brackets
/// (`` [`Name`] ``) dropped, since they lead nowhere outside rustdoc.
fn clean(doc: &str) -> String {
    let text = doc.split_whitespace().collect::<Vec<_>>().join(" ");
    let mut out = String::with_capacity(text.len());
    let mut rest = text.as_str();
    while let Some(start) = rest.find("[`") {
        let after = &rest[start + 1..];
        match after.find("`]") {
            Some(end) if !after[end + 2..].starts_with('(') => {
                out.push_str(&rest[..start]);
                out.push_str(&after[..end + 1]);
                rest = &after[end + 2..];
            }
            _ => {
                out.push_str(&rest[..start + 2]);
                rest = &rest[start + 2..];
            }
        }
    }
    out.push_str(rest);
    out
}

/// How the reference shows a key's default.
fn default_text(key: &ConfigKey, table_optional: bool) -> String {
    match (&key.default, key.required) {
        (Some(Value::Null), _) => "unset".into(),
        (Some(value), false) => format!("default `{value}`"),
        (Some(value), true) => {
            format!("default `{value}`; required when its table is given")
        }
        (None, true) if table_optional => "required in its table".into(),
        (None, true) => "required".into(),
        (None, false) if key.secret => "no value shown (a secret)".into(),
        (None, false) => "no default".into(),
    }
}

/// The markdown of `docs/configuration.md`.
pub fn configuration_markdown() -> String {
    let mut out = String::from(
        "<!-- Generated from the configuration types (crates/uos-app/src/config.rs and the \
         settings it embeds);\n     do not edit. Regenerate with \
         UPDATE_DOCS=1 cargo test -p uos-app --test docs -->\n\
         # Configuration reference\n\n\
         Every setting of `admin-api`, `reconciler` and `uosctl`, which read the same \
         configuration: the\ndefaults below, then the TOML file named by `UOS_CONFIG`, then \
         `UOS_` environment variables,\neach a key's path in upper case with `__` between its \
         parts (`service.lockout.threshold` is\n`UOS_SERVICE__LOCKOUT__THRESHOLD`; in the TOML \
         file, `threshold = 5` under `[service.lockout]`).\nUnknown keys and bad values stop \
         start-up with a message naming the key. `<name>` stands for a\nname you choose (one \
         entry of a map, such as an OIDC provider). Secrets are never shown with a\nvalue; \
         give them through the environment or a file only the service can read.\n",
    );
    for table in configuration_tables() {
        if table.path.is_empty() {
            out.push_str("\n## Top level\n");
        } else {
            out.push_str(&format!("\n## `[{}]`\n", table.path));
            if !table.description.is_empty() {
                out.push_str(&format!("\n{}\n", table.description));
            }
        }
        for key in &table.keys {
            let secret = if key.secret { ", secret" } else { "" };
            out.push_str(&format!(
                "\n### `{path}`\n\n`{env}` · {kind}{secret} · {default}\n",
                path = key.path,
                env = key.env,
                kind = key.kind,
                default = default_text(key, table.optional),
            ));
            if !key.description.is_empty() {
                out.push_str(&format!("\n{}\n", key.description));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::panic)]

    use figment::providers::Serialized;
    use figment::Figment;

    use super::*;

    fn keys() -> Vec<ConfigKey> {
        configuration_tables()
            .into_iter()
            .flat_map(|t| t.keys)
            .collect()
    }

    #[test]
    fn every_key_is_described() {
        let undescribed: Vec<String> = keys()
            .into_iter()
            .filter(|k| k.description.is_empty())
            .map(|k| k.path)
            .collect();
        assert!(
            undescribed.is_empty(),
            "these configuration keys have no doc comment, so the reference cannot explain \
             them: {undescribed:?}"
        );
    }

    #[test]
    fn keys_carry_their_env_var_type_and_default() {
        let keys = keys();
        let find = |path: &str| {
            keys.iter()
                .find(|k| k.path == path)
                .unwrap_or_else(|| panic!("no key {path} in {keys:#?}"))
        };
        let ttl = find("service.access_token_ttl_secs");
        assert_eq!(ttl.env, "UOS_SERVICE__ACCESS_TOKEN_TTL_SECS");
        assert_eq!(ttl.kind, "integer");
        assert_eq!(ttl.default, Some(Value::from(900)));
        assert_eq!(find("listen").default, Some(Value::from("127.0.0.1:8080")));
        assert_eq!(find("kafka.brokers").default, Some(Value::Null));
        let route = find("rate_limit.routes.<name>.per_caller");
        assert_eq!(route.env, "UOS_RATE_LIMIT__ROUTES__<NAME>__PER_CALLER");
        let issuer = find("oidc_providers.<name>.issuer");
        assert!(issuer.required && issuer.default.is_none(), "{issuer:?}");
        assert!(find("smtp.security").kind.contains("`starttls`"));
        for secret in [
            "vault.token",
            "smtp.password",
            "oidc_providers.<name>.client_secret",
        ] {
            let key = find(secret);
            assert!(key.secret, "{secret} is not marked as a secret");
            assert!(
                key.default.as_ref().is_none_or(Value::is_null),
                "{secret} shows a value: {key:?}"
            );
        }
    }

    #[test]
    fn every_listed_default_is_accepted_under_its_key() {
        // The reference's paths are the ones the loader reads: each default given back under
        // its path is a valid configuration (an unknown key would be refused).
        for key in keys() {
            // Map entries and tables without defaults of their own need their other keys too.
            if key.path.contains("<name>") || key.required {
                continue;
            }
            let Some(value) = key.default.filter(|v| !v.is_null()) else {
                continue;
            };
            let loaded =
                Config::from_figment(Figment::new().merge(Serialized::default(&key.path, &value)));
            assert!(
                loaded.is_ok(),
                "{} = {value} is refused: {:?}",
                key.path,
                loaded.err()
            );
        }
    }
}
