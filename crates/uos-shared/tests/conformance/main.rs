//! One conformance suite for every shared-state backend: each case in [`cases`] is an async
//! function taking two replicas that share state, and [`conformance!`] turns the list into one
//! `#[tokio::test]` per case and backend. For memory both replicas are the same state; for
//! Redis they are two independent connections under one random prefix, as two replicas
//! would be, so no test sees another's keys or messages. The Redis cases run twice: in the
//! clear against the machine's Redis, and over TLS (`rediss://`) against one of the test's own.
// Test code: a failed expectation is a panic with a message.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod cases;
mod tls;

use std::sync::Arc;
use uos_shared::SharedState;

/// Two replicas' views of one shared state.
#[derive(Debug, Clone)]
pub struct Replicas {
    pub a: Arc<dyn SharedState>,
    pub b: Arc<dyn SharedState>,
}

macro_rules! conformance {
    (@cases ($factory:expr) [$($attr:tt)*]) => {};
    (@cases ($factory:expr) [$($attr:tt)*] $case:ident $(, $rest:ident)*) => {
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        $($attr)*
        async fn $case() {
            let replicas: $crate::Replicas = ($factory).await;
            $crate::cases::$case(replicas).await;
        }
        conformance!(@cases ($factory) [$($attr)*] $($rest),*);
    };
    ($factory:expr $(, #[$attr:meta])* $(,)?) => {
        conformance!(@cases ($factory) [$(#[$attr])*]
            ping_and_backend,
            hit_counts_within_window,
            add_counts_many_at_once_in_the_same_window,
            hit_window_expires_and_restarts,
            hit_window_does_not_slide,
            hit_gated_counts_the_key_only_while_the_gate_is_within_its_limit,
            hit_gated_windows_are_each_counters_own,
            peek_reports_without_counting,
            extend_turns_window_into_lockout,
            extend_absent_key_does_nothing,
            lock_out_doubles_with_each_lockout_of_its_history,
            clear_removes_counters_and_values,
            put_once_sets_only_once,
            put_once_expires,
            put_once_race_has_one_winner,
            take_returns_value_once,
            take_after_expiry_is_absent,
            take_race_has_one_winner,
            counter_ops_on_text_value_fail,
            keys_are_opaque,
            concurrent_hits_across_replicas_count_each_once,
            publish_reaches_every_replica
        );
    };
}

mod memory {
    use super::Replicas;
    use std::sync::Arc;
    use uos_shared::{MemoryState, SharedState};

    async fn replicas() -> Replicas {
        let state: Arc<dyn SharedState> = Arc::new(MemoryState::new());
        Replicas {
            a: state.clone(),
            b: state,
        }
    }

    conformance!(replicas());
}

mod redis {
    use super::Replicas;
    use std::sync::Arc;
    use uos_shared::RedisState;

    pub fn url() -> String {
        std::env::var("UOS_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379/".into())
    }

    async fn replicas() -> Replicas {
        let prefix = format!("uos-test:{}:", uuid::Uuid::now_v7());
        let a = RedisState::connect(&url(), &prefix)
            .await
            .expect("connect replica a (is Redis running?)");
        let b = RedisState::connect(&url(), &prefix)
            .await
            .expect("connect replica b");
        Replicas {
            a: Arc::new(a),
            b: Arc::new(b),
        }
    }

    conformance!(replicas(), #[ignore = "needs Redis"]);
}

mod redis_tls {
    use super::tls::server;
    use super::Replicas;
    use std::sync::Arc;
    use uos_shared::{RedisState, SharedError};

    async fn replicas() -> Replicas {
        let (url, ca) = (&server().url, Some(&server().ca_pem[..]));
        let prefix = format!("uos-test:{}:", uuid::Uuid::now_v7());
        let a = RedisState::connect_with_ca(url, &prefix, ca)
            .await
            .expect("connect replica a over TLS");
        let b = RedisState::connect_with_ca(url, &prefix, ca)
            .await
            .expect("connect replica b over TLS");
        Replicas {
            a: Arc::new(a),
            b: Arc::new(b),
        }
    }

    conformance!(replicas(), #[ignore = "needs redis-server"]);

    /// The server's certificate must chain to the configured CA: neither the system's trust
    /// store nor an unrelated CA accepts it, and nothing falls back to the clear.
    #[tokio::test]
    #[ignore = "needs redis-server"]
    async fn an_untrusted_certificate_is_refused() {
        let tls = server();
        for ca in [None, Some(&tls.other_ca_pem[..])] {
            let err = RedisState::connect_with_ca(&tls.url, "uos:", ca)
                .await
                .unwrap_err();
            assert!(matches!(err, SharedError::Unavailable(_)), "{err:?}");
        }
        let clear = tls.url.replace("rediss://", "redis://");
        assert!(RedisState::connect(&clear, "uos:").await.is_err());
    }

    /// A CA is only for TLS, and must be a certificate.
    #[tokio::test]
    async fn a_ca_needs_a_tls_url_and_pem() {
        let err = RedisState::connect_with_ca("redis://127.0.0.1:1/", "uos:", Some(b"x"))
            .await
            .unwrap_err();
        assert!(matches!(err, SharedError::Config(_)), "{err:?}");
        let err = RedisState::connect_with_ca("rediss://127.0.0.1:1/", "uos:", Some(b"not pem"))
            .await
            .unwrap_err();
        assert!(matches!(err, SharedError::Config(_)), "{err:?}");
    }
}
