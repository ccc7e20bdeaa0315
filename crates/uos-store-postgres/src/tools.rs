//! Running PostgreSQL's own client programs (`pg_dump`, `pg_restore`) against a database URL
//! without putting its password on a command line, where any local user could read it.

use uos_store::{Result, StoreError};

/// Run `cmd` with the database `url` as its `--dbname`, the password (if any) passed through
/// `PGPASSWORD`; its stderr is the error when it fails. Row-level security binds even the
/// tables' owner (migration 0004), so the session's scope is every org, as the store's own
/// sessions have it, and the program must read and write with row security on.
pub(crate) async fn run(mut cmd: tokio::process::Command, url: &str) -> Result<()> {
    cmd.arg("--enable-row-security")
        .env("PGOPTIONS", "-c uos.org=*");
    let mut parsed = url::Url::parse(url)
        .map_err(|e| StoreError::Unavailable(format!("bad postgres url: {e}")))?;
    if let Some(password) = parsed.password() {
        let password = percent_decode(password);
        cmd.env("PGPASSWORD", password);
        // Infallible for a URL with a host, which one with a password has.
        let _ = parsed.set_password(None);
    }
    let program = cmd.as_std().get_program().to_string_lossy().into_owned();
    let out = cmd
        .arg("--dbname")
        .arg(parsed.as_str())
        .output()
        .await
        .map_err(|e| StoreError::Unavailable(format!("cannot run {program}: {e}")))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(StoreError::Backend(format!(
            "{program} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        )))
    }
}

/// A URL component with its `%XX` escapes decoded (a `+` is itself here, not a space).
fn percent_decode(s: &str) -> String {
    let form = format!("p={}", s.replace('+', "%2B"));
    url::form_urlencoded::parse(form.as_bytes())
        .next()
        .map_or_else(|| s.to_owned(), |(_, v)| v.into_owned())
}
