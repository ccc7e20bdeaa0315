//! Small helpers shared by the cases of several aggregates.

use uos_store::PageRequest;

/// The request for the page after `page_next`.
pub fn after(page_next: &Option<String>, limit: u32) -> PageRequest {
    PageRequest {
        after: page_next.clone(),
        limit,
    }
}
