//! `cargo xtask api-fuzz` (also a step of `cargo xtask ci`): schemathesis with every check
//! against the release `admin-api`, logged in as a bootstrapped platform admin, on a fresh
//! SQLite data dir. It holds the server to its own `/openapi.json`: no 5xx, every status,
//! media type, header and body documented, invalid input refused and valid input accepted.

use crate::bench::{admin_token, start_server_with};
use crate::services;
use anyhow::{bail, Context};
use clap::Args;
use std::net::TcpListener;
use std::process::Command;

#[derive(Debug, Args)]
pub struct ApiFuzzArgs {
    /// Test cases per operation and phase (schemathesis `--max-examples`). The default keeps
    /// the run to a few minutes on two cores, inside CI's time budget.
    #[arg(long, default_value_t = 25)]
    pub max_examples: u32,
    /// Seed for the generated data; fixed by default so CI runs are reproducible.
    #[arg(long, default_value_t = 20_261_121)]
    pub seed: u64,
}

impl Default for ApiFuzzArgs {
    fn default() -> Self {
        Self {
            max_examples: 25,
            seed: 20_261_121,
        }
    }
}

/// Operations the run leaves out, each because it can end the session of the admin the run is
/// logged in as: every request after it would test nothing but the 401 of a dead token.
/// Everything else, including the admin's other writes, runs.
pub const EXCLUDED: &[(&str, &str)] = &[
    (
        "POST /v1/auth/logout",
        "ends the session of the token it is called with",
    ),
    (
        "POST /v1/me/password",
        "a password change ends every session of the user, the caller's included",
    ),
    (
        "DELETE /v1/me/sessions/{id}",
        "revokes the caller's current session when given its id (GET /v1/me/sessions lists it)",
    ),
    (
        "DELETE /v1/users/{id}/sessions",
        "revokes every session of the user, the caller included when given its own id",
    ),
    (
        "POST /v1/users/{id}/status",
        "suspending, deactivating or deleting the caller's own user ends all its sessions",
    ),
    (
        "DELETE /v1/users/{id}",
        "deleting the caller's own user ends all its sessions",
    ),
    (
        "POST /v1/keys/rotate",
        "the JWKS keeps one previous signing key, so a second rotation retires the key that \
         signed the caller's access token",
    ),
];

/// Rate limits stay on (their headers and the 429's declaration are checked like the rest),
/// but far above what the run sends from its one address: a 429 to a request with invalid
/// data would read as the data being accepted (schemathesis' `negative_data_rejection`).
const RATE_LIMITS: &[(&str, &str)] = &[
    ("UOS_RATE_LIMIT__ROUTES__LOGIN__PER_ADDRESS", "1000000"),
    (
        "UOS_RATE_LIMIT__ROUTES__PASSWORD_FORGOT__PER_ADDRESS",
        "1000000",
    ),
    (
        "UOS_RATE_LIMIT__ROUTES__INVITE_CREATE__PER_CALLER",
        "1000000",
    ),
    (
        "UOS_RATE_LIMIT__ROUTES__INVITE_CREATE__PER_ADDRESS",
        "1000000",
    ),
    (
        "UOS_RATE_LIMIT__ROUTES__API_KEY_CREATE__PER_CALLER",
        "1000000",
    ),
    (
        "UOS_RATE_LIMIT__ROUTES__API_KEY_CREATE__PER_ADDRESS",
        "1000000",
    ),
];

/// The hooks that make positive cases valid beyond what a schema can state (roles of the org,
/// page tokens of the list, reset tokens from the mailbox, the admin's TOTP code); see the
/// module's own doc.
const HOOKS: &str = include_str!("api_fuzz_hooks.py");

/// schemathesis' settings: every check, on every operation the run does not exclude.
///
/// `positive_data_acceptance` accepts, besides its defaults, the answers valid input rightly
/// gets from a stateful API: 410 (an invite or reset that expired or was used), 412 (a
/// well-formed `If-Match` that is not the current `ETag`) and 422 (an `Idempotency-Key` the
/// generator reused for another request). None of them is a refusal of the data's shape.
///
/// `use_after_free` is off: deleting an org is soft in the contract (`status: "deleted"`,
/// restorable until the retention window ends), so a platform admin still reads the org and
/// what is in it after `DELETE /v1/orgs/{slug}`, by design.
const CONFIG: &str = r#"[checks]
enabled = true

[checks.use_after_free]
enabled = false

[checks.positive_data_acceptance]
expected-statuses = ["2xx", "3xx", "401", "403", "404", "409", "410", "412", "422", "429", "5xx"]
"#;

pub fn run(args: &ApiFuzzArgs) -> anyhow::Result<()> {
    services::ensure_schemathesis()?;
    let root = crate::release::workspace_root();
    crate::release::build(&root, "admin-api")?;
    let work = tempfile::Builder::new()
        .prefix("uos-api-fuzz-")
        .tempdir()
        .context("creating a temp dir")?;
    let listen = {
        // The OS picks a free port; it is released for the server a moment later.
        let l = TcpListener::bind("127.0.0.1:0")?;
        l.local_addr()?.to_string()
    };
    let base = format!("http://{listen}");
    let database_url = format!("sqlite://{}/uos.db", work.path().display());
    let _server = start_server_with(
        &root,
        work.path(),
        &database_url,
        &listen,
        &base,
        RATE_LIMITS,
    )?;
    let token = admin_token(&base)?;
    let config_file = work.path().join("schemathesis.toml");
    std::fs::write(&config_file, CONFIG)?;
    std::fs::write(work.path().join("uos_fuzz_hooks.py"), HOOKS)?;

    let mut cmd = Command::new("python3");
    // In the temp dir, so schemathesis' own state (`.schemathesis/`) goes with it.
    cmd.current_dir(work.path())
        .env("PYTHONPATH", work.path())
        .env("SCHEMATHESIS_HOOKS", "uos_fuzz_hooks")
        .env("UOS_FUZZ_BASE", &base)
        .env("UOS_FUZZ_TOKEN", &token)
        .env("UOS_FUZZ_ADMIN_EMAIL", crate::bench::ADMIN)
        .env("UOS_FUZZ_MAILBOX", work.path().join("data").join("mailbox"))
        .args(["-m", "schemathesis.cli", "--config-file"])
        .arg(&config_file)
        .args(["run", &format!("{base}/openapi.json")])
        .args(["--header", &format!("Authorization: Bearer {token}")])
        .args(["--max-examples", &args.max_examples.to_string()])
        .args(["--seed", &args.seed.to_string()])
        // One worker: with two, hypothesis (on Python 3.11) sometimes fails inside `ast` while
        // describing a strategy from two threads at once, a runtime error of the tool itself.
        .args(["--workers", "1", "--no-color"])
        .arg("--report-dir")
        .arg(work.path().join("report"));
    for (name, _why) in EXCLUDED {
        cmd.args(["--exclude-name", name]);
    }
    eprintln!(
        "xtask: schemathesis --checks all against {base} (server log: {})",
        work.path().join("admin-api.log").display()
    );
    let status = cmd.status().context("running schemathesis")?;
    if !status.success() {
        // Keep the log and the data for the failures to be looked at.
        let kept = work.keep();
        bail!(
            "schemathesis found failures ({status}); server log and data kept in {}",
            kept.display()
        );
    }
    eprintln!("xtask: schemathesis passed");
    Ok(())
}
