//! Small helpers shared by the cases of several aggregates.

use uos_store::{AuditRow, ListedAudit, PageRequest};

/// The request for the page after `page_next`.
pub fn after(page_next: &Option<String>, limit: u32) -> PageRequest {
    PageRequest {
        after: page_next.clone(),
        limit,
    }
}

/// Listed audit events with their payloads parsed, to compare with the rows appended; each
/// payload checked to be the text the store wrote, served without being encoded again.
pub fn parsed(events: Vec<ListedAudit>) -> Vec<AuditRow> {
    events
        .into_iter()
        .map(|e| AuditRow {
            payload: serde_json::from_str(e.payload.get()).expect("a listed payload is JSON"),
            chain: e.chain,
            seq: e.seq,
            id: e.id,
            occurred_at: e.occurred_at,
            org_id: e.org_id,
            actor_id: e.actor_id,
            action: e.action,
            target_id: e.target_id,
            hash: e.hash,
            trace_parent: e.trace_parent,
        })
        .collect()
}
