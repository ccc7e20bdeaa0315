//! `docs/audit-events.md` is generated from the registry of audit actions; this keeps the
//! committed file current (`UPDATE_DOCS=1` rewrites it).

use std::path::PathBuf;

#[test]
fn audit_events_doc_is_current() {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../docs/audit-events.md");
    let generated = uos_audit::audit_events_markdown();
    if std::env::var_os("UPDATE_DOCS").is_some() {
        std::fs::write(&path, &generated).unwrap();
        return;
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        committed == generated,
        "{} is stale: regenerate it with `UPDATE_DOCS=1 cargo test -p uos-audit --test it docs`",
        path.display()
    );
}
