//! Org files: what a valid one declares, and every problem of an invalid one named at its
//! line and column.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use uos_reconcile::{parse_org, read_repo, Problem};

const ACME: &str = "\
version: 1
slug: acme
display_name: Acme Corp
roles:
  - name: deployer
    description: ships releases
    inherits: [member]
    permissions: [service_accounts:read]
  - name: release-manager
    inherits: [deployer]
members:
  - email: Ann@Example.com
    roles: [owner]
  - email: bob@example.com
    roles: [deployer, member]
service_accounts:
  - name: ci
    roles: [deployer]
    description: the CI pipeline
budget:
  period: monthly
  limit_cents: 50000
  warn_percent: 75
prune: true
";

fn problems(file: &str, text: &str) -> Vec<String> {
    parse_org(file, text)
        .expect_err("the file is invalid")
        .iter()
        .map(Problem::to_string)
        .collect()
}

#[test]
fn a_valid_file_declares_what_it_says() {
    let org = parse_org("orgs/acme.yaml", ACME).unwrap();
    assert_eq!(org.slug.as_str(), "acme");
    assert_eq!(org.display_name, "Acme Corp");
    let roles: Vec<_> = org.roles.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(roles, ["deployer", "release-manager"]);
    assert_eq!(
        org.roles[0].permissions[0].as_str(),
        "service_accounts:read"
    );
    assert_eq!(org.roles[0].description.as_deref(), Some("ships releases"));
    // Emails are normalised as the API normalises them.
    assert_eq!(org.members[0].email.as_str(), "ann@example.com");
    assert_eq!(org.members[1].roles.len(), 2);
    assert_eq!(org.service_accounts[0].name, "ci");
    let budget = org.budget.unwrap();
    assert_eq!(
        (
            budget.period,
            budget.limit_cents,
            budget.warn_percent,
            budget.block_percent
        ),
        ("monthly", 50000, 75, 100)
    );
    assert!(org.prune);
    assert!(!org.heal);
}

#[test]
fn a_minimal_file_is_enough() {
    let org = parse_org(
        "orgs/tiny.yaml",
        "version: 1\nslug: tiny\ndisplay_name: Tiny\n",
    )
    .unwrap();
    assert!(org.roles.is_empty() && org.members.is_empty() && org.budget.is_none());
}

#[test]
fn every_bad_value_is_named_at_its_line_and_column() {
    let text = "\
version: 2
slug: acme
display_name: Acme
roles:
  - name: admin
  - name: ops
    permissions: [org:read, rockets:launch]
    inherits: [nobody]
members:
  - email: not-an-address
    roles: [owner]
  - email: bob@example.com
    roles: [ghost]
  - email: BOB@example.com
    roles: [member]
  - email: carol@example.com
    roles: []
service_accounts:
  - name: ci
    roles: [ops]
  - name: ci
    roles: [member]
budget:
  period: fortnightly
  limit_cents: -5
  warn_percent: 0
";
    assert_eq!(
        problems("orgs/acme.yaml", text),
        [
            "orgs/acme.yaml:1:10: version: must be 1",
            "orgs/acme.yaml:5:11: roles[0].name: admin is a built-in role",
            "orgs/acme.yaml:7:29: roles[1].permissions[1]: unknown permission \"rockets:launch\"",
            "orgs/acme.yaml:8:16: roles[1].inherits[0]: no role nobody is built in or declared here",
            "orgs/acme.yaml:10:12: members[0].email: email must contain '@'",
            "orgs/acme.yaml:13:13: members[1].roles[0]: no role ghost is built in or declared here",
            "orgs/acme.yaml:14:12: members[2].email: bob@example.com is declared twice",
            "orgs/acme.yaml:16:12: members[3].roles: give at least one role",
            "orgs/acme.yaml:21:11: service_accounts[1].name: ci is declared twice",
            "orgs/acme.yaml:24:11: budget.period: period must be daily, weekly, monthly or total",
            "orgs/acme.yaml:25:16: budget.limit_cents: must be between 0 and 1000000000000000",
            "orgs/acme.yaml:26:17: budget.warn_percent: must be between 1 and 1000",
        ]
    );
}

#[test]
fn the_slug_must_match_the_file_name() {
    assert_eq!(
        problems(
            "orgs/acme.yaml",
            "version: 1\nslug: other\ndisplay_name: X\n"
        ),
        ["orgs/acme.yaml:2:7: slug: the file of org other must be orgs/other.yaml"]
    );
}

#[test]
fn an_inheritance_cycle_is_refused() {
    let text = "\
version: 1
slug: acme
display_name: Acme
roles:
  - name: a
    inherits: [b]
  - name: b
    inherits: [a]
";
    let found = problems("orgs/acme.yaml", text);
    assert_eq!(found.len(), 1, "{found:?}");
    assert!(
        found[0].starts_with("orgs/acme.yaml:5:11: roles[0].inherits: role inheritance cycle"),
        "{found:?}"
    );
}

#[test]
fn shape_errors_name_the_field_and_place() {
    // An unknown field (a typo) is refused rather than ignored.
    let found = problems(
        "orgs/acme.yaml",
        "version: 1\nslug: acme\ndisplay_name: A\nmembers:\n  - email: a@b.example\n    role: [owner]\n",
    );
    assert_eq!(found.len(), 1);
    assert_eq!(
        found,
        ["orgs/acme.yaml:6:5: members[0].role: Unknown field `role`, expected `email` or `roles`"]
    );
    // A missing required field.
    let found = problems("orgs/acme.yaml", "version: 1\nslug: acme\n");
    assert!(found[0].contains("display_name"), "{found:?}");
    // A wrong type.
    let found = problems(
        "orgs/acme.yaml",
        "version: 1\nslug: acme\ndisplay_name: A\nbudget:\n  period: daily\n  limit_cents: lots\n",
    );
    assert!(
        found[0].starts_with("orgs/acme.yaml:6:16: budget.limit_cents"),
        "{found:?}"
    );
    // Not YAML at all.
    let found = problems("orgs/acme.yaml", "version: 1\nslug: [acme\n");
    assert!(found[0].starts_with("orgs/acme.yaml:"), "{found:?}");
    assert!(!found[0].starts_with("orgs/acme.yaml:0:0"), "{found:?}");
}

#[test]
fn an_invalid_file_stops_only_its_own_org() {
    let repo = tempfile::tempdir().unwrap();
    assert!(read_repo(repo.path()).unwrap().is_empty(), "no orgs/ yet");
    let orgs = repo.path().join("orgs");
    std::fs::create_dir(&orgs).unwrap();
    std::fs::write(orgs.join("acme.yaml"), ACME).unwrap();
    std::fs::write(orgs.join("broken.yaml"), "version: 1\nslug: broken\n").unwrap();
    std::fs::write(orgs.join("typo.yml"), ACME).unwrap();
    let entries = read_repo(repo.path()).unwrap();
    let files: Vec<_> = entries.iter().map(|e| e.file.as_str()).collect();
    assert_eq!(
        files,
        ["orgs/acme.yaml", "orgs/broken.yaml", "orgs/typo.yml"]
    );
    assert!(entries[0].result.is_ok());
    assert!(entries[1].result.is_err());
    let typo = entries[2].result.as_ref().unwrap_err();
    assert_eq!(typo[0].message, "org files are named orgs/<slug>.yaml");
}

#[test]
fn the_schema_describes_the_format() {
    let schema = uos_reconcile::json_schema();
    assert_eq!(
        schema["$schema"],
        "https://json-schema.org/draft/2020-12/schema"
    );
    let props = schema["properties"].as_object().unwrap();
    let mut names: Vec<_> = props.keys().map(String::as_str).collect();
    names.sort_unstable();
    assert_eq!(
        names,
        [
            "budget",
            "display_name",
            "heal",
            "members",
            "prune",
            "roles",
            "service_accounts",
            "slug",
            "version"
        ]
    );
    assert_eq!(schema["additionalProperties"], false);
    let required: Vec<_> = schema["required"].as_array().unwrap().iter().collect();
    assert_eq!(required, ["version", "slug", "display_name"]);
    assert_eq!(
        schema["$defs"]["MemberEntry"]["additionalProperties"],
        false
    );
}
