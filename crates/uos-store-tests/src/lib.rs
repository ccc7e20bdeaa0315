//! One conformance suite for every storage backend: each case is an async function taking a
//! freshly migrated store, and [`conformance!`] turns the whole list into one `#[tokio::test]`
//! per case in the backend's own test crate, so every case passes or fails on its own.
//!
//! ```text
//! uos_store_tests::conformance!(fresh_store());                      // SQLite
//! uos_store_tests::conformance!(fresh_store(), #[ignore = "needs PostgreSQL"]);
//! ```
//! The factory expression is evaluated once per test and must produce a [`Fixture`].

// Test support: a failed expectation is a panic with a message, as in any test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

pub mod cases;
pub mod fixtures;

use std::any::Any;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use uos_store::Store;

type Teardown = Pin<Box<dyn Future<Output = ()> + Send>>;

/// A freshly migrated store plus what must outlive it (a temp dir) and what runs after the
/// case (dropping a test database).
pub struct Fixture {
    pub store: Arc<dyn Store>,
    keep: Option<Box<dyn Any + Send>>,
    teardown: Option<Teardown>,
}

impl fmt::Debug for Fixture {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Fixture")
            .field("store", &self.store)
            .finish_non_exhaustive()
    }
}

impl Fixture {
    pub fn new(store: Arc<dyn Store>) -> Self {
        Self {
            store,
            keep: None,
            teardown: None,
        }
    }

    /// Keep `guard` (e.g. a `TempDir`) alive until the case is over.
    pub fn keep(mut self, guard: impl Any + Send) -> Self {
        self.keep = Some(Box::new(guard));
        self
    }

    /// Run `teardown` after the store is closed (only when the case passed).
    pub fn on_teardown(mut self, teardown: impl Future<Output = ()> + Send + 'static) -> Self {
        self.teardown = Some(Box::pin(teardown));
        self
    }

    /// Close the store, run the teardown, then drop the guard.
    pub async fn finish(self) {
        self.store.close().await;
        if let Some(teardown) = self.teardown {
            teardown.await;
        }
        drop(self.keep);
    }
}

/// Expand into one `#[tokio::test]` per conformance case. The calling crate needs `tokio`
/// (with `macros` and `rt-multi-thread`) as a dev-dependency.
#[macro_export]
macro_rules! conformance {
    (@cases ($factory:expr) [$($attr:tt)*]) => {};
    (@cases ($factory:expr) [$($attr:tt)*] $case:ident $(, $rest:ident)*) => {
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        $($attr)*
        async fn $case() {
            let fixture: $crate::Fixture = ($factory).await;
            $crate::cases::$case(fixture.store.clone()).await;
            fixture.finish().await;
        }
        $crate::conformance!(@cases ($factory) [$($attr)*] $($rest),*);
    };
    ($factory:expr $(, #[$attr:meta])* $(,)?) => {
        $crate::conformance!(@cases ($factory) [$(#[$attr])*]
            ping_and_pool_stats,
            org_insert_and_get,
            org_slug_taken,
            org_update_is_optimistic,
            org_list_pages_in_creation_order,
            org_list_filters_member_and_deleted,
            user_insert_and_get,
            user_email_taken,
            user_update_is_optimistic,
            user_list_filters_and_pages,
            user_email_prefix_is_literal,
            user_count_and_batch_get,
            membership_insert_get_and_unique,
            membership_requires_org_and_user,
            membership_update_and_delete,
            membership_list_pages_and_status,
            lock_active_owners_returns_active_owners,
            count_members_with_role_matches_whole_names,
            invite_roundtrip_and_token_unique,
            invite_update_is_optimistic,
            invite_list_pages_per_org,
            role_roundtrip_and_unique,
            role_update_and_delete,
            role_list_pages_by_name,
            sessions_revoke_single_and_all,
            session_touch_moves_last_seen,
            revoke_other_sessions_keeps_one,
            list_live_sessions_skips_revoked_and_expired,
            refresh_token_roundtrip_and_unique,
            refresh_token_is_used_once,
            refresh_session_uses_a_token_of_a_live_session_once,
            refresh_session_refuses_a_dead_session_and_changes_nothing,
            concurrent_refresh_session_one_wins,
            open_session_audited_stores_all_three_or_nothing,
            totp_put_get_confirm_delete,
            totp_step_is_used_once,
            login_user_reads_the_second_factor_with_the_user,
            open_session_stores_the_session_with_its_first_token,
            recovery_codes_replace_and_use_once,
            password_history_newest_first_with_limit,
            password_reset_token_flow,
            password_reset_approval_once_and_pending_list,
            external_identity_link_and_unique,
            idempotency_claim_complete_release,
            idempotency_stale_claim_is_replaced,
            audit_append_moves_head,
            audit_append_refuses_a_fork,
            audit_list_filters_and_pages,
            org_api_key_max_days_roundtrips,
            service_account_insert_get_and_find,
            service_account_update_is_optimistic,
            service_account_name_unique_until_deleted,
            service_account_list_pages_and_deleted,
            count_service_accounts_with_role_skips_deleted,
            api_key_roundtrip_and_prefix_unique,
            api_key_update_is_optimistic,
            api_key_list_pages_per_account,
            revoke_service_account_keys_revokes_live_ones,
            touch_api_keys_keeps_the_latest_use,
            overdue_api_keys_list_claim_and_count,
            revoked_access_tokens_idempotent_and_purged,
            rollback_discards_changes,
            commit_makes_changes_visible_to_read,
            page_boundary_is_exact,
            bad_cursor_is_corrupt,
            concurrent_updates_one_wins,
            concurrent_idempotency_claims_one_wins,
            concurrent_refresh_token_use_one_wins,
            concurrent_overdue_claims_split_the_keys,
            concurrent_touches_do_not_deadlock
        );
    };
}
