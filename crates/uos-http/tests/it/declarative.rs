//! Declarative config over HTTP: the org file schema.

use super::*;

backend_test!(the_org_file_schema_is_served_to_anyone, |app| async move {
    let r = app.send(Req::get("/v1/declarative/schema")).await;
    assert_status(&r, 200);
    assert_eq!(r.body, uos_reconcile::json_schema());
    assert_eq!(
        r.body["properties"]["members"]["type"], "array",
        "{}",
        r.text
    );
});
