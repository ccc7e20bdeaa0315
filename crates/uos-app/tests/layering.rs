//! The layering the composition root exists for: the HTTP crate never depends on an adapter
//! (it serves whatever services it is given), and the CLI and the reconciler are built
//! without the HTTP crate.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::Path;

/// The crate names in the `[dependencies]` table of the manifest at `path` (relative to the
/// workspace root), dev-dependencies excluded.
fn dependencies(path: &str) -> Vec<String> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let text = std::fs::read_to_string(root.join(path)).expect("read the manifest");
    let mut in_deps = false;
    let mut deps = Vec::new();
    for line in text.lines().map(str::trim) {
        if line.starts_with('[') {
            in_deps = line == "[dependencies]";
        } else if in_deps && !line.is_empty() && !line.starts_with('#') {
            let name = line.split(['=', '.']).next().unwrap_or_default().trim();
            deps.push(name.to_string());
        }
    }
    deps
}

#[test]
fn the_http_crate_depends_on_no_adapter() {
    let deps = dependencies("crates/uos-http/Cargo.toml");
    assert!(
        deps.contains(&"uos-service".to_string()),
        "parsed: {deps:?}"
    );
    for adapter in [
        "uos-app",
        "uos-store-sql",
        "uos-store-sqlite",
        "uos-store-postgres",
        "uos-keys",
        "uos-shared",
        "uos-mail",
        "uos-oidc",
        "uos-objects",
        // The trace exporter: the HTTP crate only carries trace context (uos-telemetry).
        "opentelemetry-otlp",
    ] {
        assert!(
            !deps.iter().any(|d| d == adapter),
            "uos-http must not depend on {adapter}: adapters are chosen in uos-app"
        );
    }
}

#[test]
fn the_cli_is_built_without_the_http_crate() {
    let deps = dependencies("cmd/uosctl/Cargo.toml");
    assert!(deps.contains(&"uos-app".to_string()), "parsed: {deps:?}");
    assert!(
        !deps.iter().any(|d| d == "uos-http"),
        "uosctl builds its services through uos-app, not the HTTP crate"
    );
}

#[test]
fn the_reconciler_is_built_without_the_http_crate() {
    let deps = dependencies("cmd/reconciler/Cargo.toml");
    assert!(deps.contains(&"uos-app".to_string()), "parsed: {deps:?}");
    assert!(
        !deps.iter().any(|d| d == "uos-http"),
        "the reconciler applies through the services uos-app builds, not over HTTP"
    );
}
