//! The "Resource kinds" section of `docs/authorization.md` is generated from the registry of
//! resource kinds; this keeps the committed document current (`UPDATE_DOCS=1` rewrites it).

use std::path::PathBuf;

use uos_authz::{resource_kinds_markdown, RESOURCE_KINDS_BEGIN, RESOURCE_KINDS_END};

#[test]
fn resource_kinds_section_is_current() {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../docs/authorization.md");
    let doc = std::fs::read_to_string(&path).unwrap();
    let (Some(start), Some(end)) = (doc.find(RESOURCE_KINDS_BEGIN), doc.find(RESOURCE_KINDS_END))
    else {
        panic!(
            "{} lacks the generated section ({RESOURCE_KINDS_BEGIN} … {RESOURCE_KINDS_END})",
            path.display()
        );
    };
    let end = end + RESOURCE_KINDS_END.len();
    let generated = resource_kinds_markdown();
    if std::env::var_os("UPDATE_DOCS").is_some() {
        let updated = format!("{}{generated}{}", &doc[..start], &doc[end..]);
        std::fs::write(&path, updated).unwrap();
        return;
    }
    assert!(
        doc[start..end] == generated,
        "the resource kinds in {} are stale: regenerate them with \
         `UPDATE_DOCS=1 cargo test -p uos-authz --test it docs`",
        path.display()
    );
}
