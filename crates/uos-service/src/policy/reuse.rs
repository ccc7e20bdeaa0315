//! The replica's signed allows, reused for the same question for up to a second.
//!
//! Signing is most of what a decision costs once the policy, the principal and the budgets
//! come from the replica's copies (an Ed25519 signature is ~20–40 µs on these cores, the
//! rest ~5 µs), so a gateway asking the same question many times a second would otherwise
//! be bounded by the signer. An allow is a pure function of what its key holds: the policy
//! revision, the signing key, the exact policy input (the principal as resolved now, with its
//! status, roles and scopes; the action; the resource with its org's status; the context
//! with the cost) and each applicable budget's spend and limits as read now. Any change to
//! one of them is a different key, so a reused allow is never staler than the copies a fresh
//! one would be decided from. Denials are never reused: each is decided, signed and audited.

use std::collections::HashMap;
use std::sync::{Arc, PoisonError, RwLock};
use std::time::{Duration, Instant};

use crate::kernel::views::DecisionView;

/// How long a signed allow answers the same question. Short enough that `issued_at` stays
/// within a second of the question, as every other per-replica copy of the decision point.
const REUSE_FOR: Duration = Duration::from_secs(1);

/// More signed allows than this and the copies start over: a miss costs one signature. An
/// entry is its key (the policy input, ~1–2 KB) and the decision (~0.5 KB), so this bounds
/// the copies to ~10 MB; a replica asked more distinct questions per second than this only
/// signs more often.
const MAX_ENTRIES: usize = 4_096;

#[derive(Debug, Default)]
pub(crate) struct SignedAllows {
    entries: RwLock<HashMap<String, (Instant, Arc<DecisionView>)>>,
}

impl SignedAllows {
    /// The allow signed for `key` within the last second, if there is one.
    pub(crate) fn get(&self, key: &str) -> Option<Arc<DecisionView>> {
        let entries = self.entries.read().unwrap_or_else(PoisonError::into_inner);
        let (signed_at, view) = entries.get(key)?;
        (signed_at.elapsed() < REUSE_FOR).then(|| Arc::clone(view))
    }

    /// Keeps the allow just signed for `key`.
    pub(crate) fn put(&self, key: String, view: Arc<DecisionView>) {
        let mut entries = self.entries.write().unwrap_or_else(PoisonError::into_inner);
        if entries.len() >= MAX_ENTRIES {
            // Most entries are past their second by then; keeping the fresh ones would need
            // a scan per insert for no better hit rate.
            entries.clear();
        }
        entries.insert(key, (Instant::now(), view));
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use chrono::Utc;
    use uuid::Uuid;

    fn view() -> Arc<DecisionView> {
        Arc::new(DecisionView {
            decision_id: Uuid::now_v7(),
            allow: true,
            reasons: Vec::new(),
            obligations: serde_json::Map::new(),
            policy_revision: "r".into(),
            issued_at: Utc::now(),
            expires_at: Utc::now(),
            key_id: "k".into(),
            signature: "s".into(),
        })
    }

    #[test]
    fn an_allow_answers_its_own_key_only_and_only_for_a_second() {
        let allows = SignedAllows::default();
        let v = view();
        allows.put("a".into(), Arc::clone(&v));
        assert_eq!(allows.get("a").map(|d| d.decision_id), Some(v.decision_id));
        assert!(allows.get("b").is_none());
        allows.entries.write().unwrap().get_mut("a").unwrap().0 =
            Instant::now().checked_sub(REUSE_FOR).unwrap();
        assert!(allows.get("a").is_none());
    }

    #[test]
    fn the_copies_stay_bounded() {
        let allows = SignedAllows::default();
        for i in 0..=MAX_ENTRIES {
            allows.put(i.to_string(), view());
        }
        assert!(allows.entries.read().unwrap().len() <= MAX_ENTRIES);
        assert!(allows.get(&MAX_ENTRIES.to_string()).is_some());
    }
}
