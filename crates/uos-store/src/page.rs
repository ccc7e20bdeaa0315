//! Keyset pagination primitives shared by every list query (never OFFSET).

/// Fetch up to `limit` rows strictly after the cursor. Cursors are backend-neutral strings
/// (a UUID or a sequence number); the HTTP layer wraps them into opaque page tokens.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PageRequest {
    pub after: Option<String>,
    pub limit: u32,
}

impl PageRequest {
    pub fn first(limit: u32) -> Self {
        Self { after: None, limit }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct Page<T> {
    pub items: Vec<T>,
    /// Cursor of the last item when more rows follow, `None` on the last page. Backends query
    /// `limit + 1` rows to know this without a count.
    pub next: Option<String>,
}

impl<T> Page<T> {
    /// Build a page from `limit + 1` fetched rows.
    pub fn from_overfetch(mut rows: Vec<T>, limit: u32, cursor: impl Fn(&T) -> String) -> Self {
        let more = rows.len() > limit as usize;
        rows.truncate(limit as usize);
        let next = if more { rows.last().map(&cursor) } else { None };
        Self { items: rows, next }
    }

    /// The same page with each item turned into another (the cursor is unchanged).
    pub fn map<U>(self, f: impl FnMut(T) -> U) -> Page<U> {
        Page {
            items: self.items.into_iter().map(f).collect(),
            next: self.next,
        }
    }
}
