//! The conformance cases. Windows are short (a few hundred ms) so expiry is tested for real;
//! assertions on time left allow for scheduling slack on a loaded machine.

use crate::Replicas;
use std::time::Duration;
use tokio::sync::broadcast;
use tokio::time::{sleep, timeout};
use uos_shared::{Hit, Invalidation, SharedError};
use uuid::Uuid;

const WINDOW: Duration = Duration::from_millis(300);
const LONG: Duration = Duration::from_secs(30);
/// Longer than `WINDOW` with margin for timer and network slack.
const PAST_WINDOW: Duration = Duration::from_millis(450);

fn absent() -> Hit {
    Hit {
        count: 0,
        ttl: Duration::ZERO,
    }
}

pub async fn ping_and_backend(r: Replicas) {
    r.a.ping().await.unwrap();
    r.b.ping().await.unwrap();
    assert!(["memory", "redis"].contains(&r.a.backend()));
    assert_eq!(r.a.backend(), r.b.backend());
}

pub async fn hit_counts_within_window(r: Replicas) {
    let first = r.a.hit("login:x", LONG).await.unwrap();
    assert_eq!(first.count, 1);
    assert!(first.ttl <= LONG && first.ttl > LONG - Duration::from_secs(2));
    assert_eq!(r.a.hit("login:x", LONG).await.unwrap().count, 2);
    // The other replica counts on the same counter.
    assert_eq!(r.b.hit("login:x", LONG).await.unwrap().count, 3);
    // Other keys are other counters.
    assert_eq!(r.a.hit("login:y", LONG).await.unwrap().count, 1);
}

pub async fn add_counts_many_at_once_in_the_same_window(r: Replicas) {
    let first = r.a.add("quota:x", 40, WINDOW).await.unwrap();
    assert_eq!(first.count, 40);
    assert!(first.ttl > WINDOW / 2 && first.ttl <= WINDOW, "{first:?}");
    // Hits and batches count on one counter, on either replica, in the first one's window.
    assert_eq!(r.b.hit("quota:x", WINDOW).await.unwrap().count, 41);
    sleep(Duration::from_millis(100)).await;
    let later = r.b.add("quota:x", 9, WINDOW).await.unwrap();
    assert_eq!(later.count, 50);
    assert!(later.ttl <= WINDOW - Duration::from_millis(90), "{later:?}");
    // Zero reads the count without changing it.
    assert_eq!(r.a.add("quota:x", 0, WINDOW).await.unwrap().count, 50);
    sleep(PAST_WINDOW).await;
    assert_eq!(r.a.add("quota:x", 3, WINDOW).await.unwrap().count, 3);
}

pub async fn hit_window_expires_and_restarts(r: Replicas) {
    assert_eq!(r.a.hit("k", WINDOW).await.unwrap().count, 1);
    assert_eq!(r.a.hit("k", WINDOW).await.unwrap().count, 2);
    sleep(PAST_WINDOW).await;
    assert_eq!(r.a.peek("k").await.unwrap(), absent());
    let restarted = r.b.hit("k", WINDOW).await.unwrap();
    assert_eq!(restarted.count, 1);
    assert!(
        restarted.ttl > WINDOW / 2 && restarted.ttl <= WINDOW,
        "{restarted:?}"
    );
}

pub async fn hit_window_does_not_slide(r: Replicas) {
    r.a.hit("k", WINDOW).await.unwrap();
    sleep(Duration::from_millis(200)).await;
    let second = r.a.hit("k", WINDOW).await.unwrap();
    assert_eq!(second.count, 2);
    // Still the first hit's window: at most ~100 ms left, not a fresh 300 ms.
    assert!(second.ttl <= Duration::from_millis(110), "{second:?}");
    sleep(Duration::from_millis(250)).await;
    assert_eq!(r.a.peek("k").await.unwrap(), absent());
}

pub async fn hit_gated_counts_the_key_only_while_the_gate_is_within_its_limit(r: Replicas) {
    let (gate, counted) = r.a.hit_gated("ip:1", 2, "acct:x", LONG).await.unwrap();
    assert_eq!(gate.count, 1);
    assert!(gate.ttl <= LONG && gate.ttl > LONG - Duration::from_secs(2));
    let counted = counted.expect("within the limit");
    assert_eq!(counted.count, 1);
    assert!(counted.ttl <= LONG && counted.ttl > LONG - Duration::from_secs(2));
    // The other replica counts on the same counters.
    let (gate, counted) = r.b.hit_gated("ip:1", 2, "acct:x", LONG).await.unwrap();
    assert_eq!((gate.count, counted.map(|h| h.count)), (2, Some(2)));
    // Over the gate's limit: counted at the gate only, whatever the key.
    for key in ["acct:x", "acct:y"] {
        let (gate, counted) = r.a.hit_gated("ip:1", 2, key, LONG).await.unwrap();
        assert!(gate.count > 2, "{gate:?}");
        assert_eq!(counted, None);
    }
    assert_eq!(r.b.peek("acct:x").await.unwrap().count, 2);
    assert_eq!(r.b.peek("acct:y").await.unwrap(), absent());
    assert_eq!(r.b.peek("ip:1").await.unwrap().count, 4);
}

pub async fn hit_gated_windows_are_each_counters_own(r: Replicas) {
    // The key's window started earlier; a gated hit neither restarts nor slides it.
    r.a.hit("acct:x", WINDOW).await.unwrap();
    sleep(Duration::from_millis(200)).await;
    let (gate, counted) = r.a.hit_gated("ip:1", 10, "acct:x", WINDOW).await.unwrap();
    assert!(
        gate.ttl > WINDOW / 2,
        "a new gate counter gets a whole window: {gate:?}"
    );
    let counted = counted.unwrap();
    assert_eq!(counted.count, 2);
    assert!(counted.ttl <= Duration::from_millis(110), "{counted:?}");
    sleep(Duration::from_millis(150)).await;
    assert_eq!(r.b.peek("acct:x").await.unwrap(), absent());
    assert_eq!(r.b.peek("ip:1").await.unwrap().count, 1);
}

pub async fn peek_reports_without_counting(r: Replicas) {
    assert_eq!(r.a.peek("k").await.unwrap(), absent());
    r.a.hit("k", LONG).await.unwrap();
    r.a.hit("k", LONG).await.unwrap();
    let seen = r.b.peek("k").await.unwrap();
    assert_eq!(seen.count, 2);
    assert!(seen.ttl > Duration::ZERO && seen.ttl <= LONG);
    assert_eq!(r.a.peek("k").await.unwrap().count, 2);
    assert_eq!(r.a.hit("k", LONG).await.unwrap().count, 3);
}

pub async fn extend_turns_window_into_lockout(r: Replicas) {
    r.a.hit("lock", WINDOW).await.unwrap();
    r.a.extend("lock", LONG).await.unwrap();
    sleep(PAST_WINDOW).await;
    let locked = r.b.peek("lock").await.unwrap();
    assert_eq!(locked.count, 1);
    assert!(locked.ttl > LONG - Duration::from_secs(2), "{locked:?}");
    // Hits during the lockout keep counting without moving its end.
    let hit = r.a.hit("lock", WINDOW).await.unwrap();
    assert_eq!(hit.count, 2);
    assert!(hit.ttl > WINDOW, "{hit:?}");
    // A shorter extension shortens it again.
    r.b.extend("lock", WINDOW).await.unwrap();
    sleep(PAST_WINDOW).await;
    assert_eq!(r.a.peek("lock").await.unwrap(), absent());
}

pub async fn extend_absent_key_does_nothing(r: Replicas) {
    r.a.extend("missing", LONG).await.unwrap();
    assert_eq!(r.a.peek("missing").await.unwrap(), absent());
    let hit = r.a.hit("missing", WINDOW).await.unwrap();
    assert_eq!(hit.count, 1);
    assert!(hit.ttl <= WINDOW, "{hit:?}");
}

pub async fn clear_removes_counters_and_values(r: Replicas) {
    r.a.hit("counter", LONG).await.unwrap();
    r.a.hit("counter", LONG).await.unwrap();
    r.b.clear("counter").await.unwrap();
    assert_eq!(r.a.peek("counter").await.unwrap(), absent());
    assert_eq!(r.a.hit("counter", LONG).await.unwrap().count, 1);

    assert!(r.a.put_once("value", "v", LONG).await.unwrap());
    r.b.clear("value").await.unwrap();
    assert_eq!(r.a.take("value").await.unwrap(), None);

    r.a.clear("never-there").await.unwrap();
}

pub async fn put_once_sets_only_once(r: Replicas) {
    assert!(r.a.put_once("jti:1", "first", LONG).await.unwrap());
    assert!(!r.a.put_once("jti:1", "second", LONG).await.unwrap());
    assert!(!r.b.put_once("jti:1", "third", LONG).await.unwrap());
    assert_eq!(r.b.take("jti:1").await.unwrap().as_deref(), Some("first"));
    // Once taken, the key is free again.
    assert!(r.a.put_once("jti:1", "again", LONG).await.unwrap());
}

pub async fn put_once_expires(r: Replicas) {
    assert!(r.a.put_once("marker", "1", WINDOW).await.unwrap());
    assert!(!r.b.put_once("marker", "1", WINDOW).await.unwrap());
    sleep(PAST_WINDOW).await;
    assert!(r.b.put_once("marker", "2", WINDOW).await.unwrap());
    assert_eq!(r.a.take("marker").await.unwrap().as_deref(), Some("2"));
}

pub async fn put_once_race_has_one_winner(r: Replicas) {
    let tasks: Vec<_> = (0..50)
        .map(|i| {
            let state = if i % 2 == 0 { r.a.clone() } else { r.b.clone() };
            tokio::spawn(async move { state.put_once("race", &i.to_string(), LONG).await })
        })
        .collect();
    let mut winners = Vec::new();
    for (i, task) in tasks.into_iter().enumerate() {
        if task.await.unwrap().unwrap() {
            winners.push(i.to_string());
        }
    }
    assert_eq!(winners.len(), 1, "{winners:?}");
    assert_eq!(r.a.take("race").await.unwrap(), winners.pop());
}

pub async fn take_returns_value_once(r: Replicas) {
    assert_eq!(r.a.take("mfa:1").await.unwrap(), None);
    assert!(r.a.put_once("mfa:1", "challenge", LONG).await.unwrap());
    assert_eq!(
        r.b.take("mfa:1").await.unwrap().as_deref(),
        Some("challenge")
    );
    assert_eq!(r.a.take("mfa:1").await.unwrap(), None);
    assert_eq!(r.b.take("mfa:1").await.unwrap(), None);
}

pub async fn take_after_expiry_is_absent(r: Replicas) {
    assert!(r.a.put_once("oidc:1", "state", WINDOW).await.unwrap());
    sleep(PAST_WINDOW).await;
    assert_eq!(r.b.take("oidc:1").await.unwrap(), None);
    assert_eq!(r.a.take("oidc:1").await.unwrap(), None);
}

pub async fn take_race_has_one_winner(r: Replicas) {
    assert!(r.a.put_once("once", "secret", LONG).await.unwrap());
    let tasks: Vec<_> = (0..20)
        .map(|i| {
            let state = if i % 2 == 0 { r.a.clone() } else { r.b.clone() };
            tokio::spawn(async move { state.take("once").await })
        })
        .collect();
    let mut got = Vec::new();
    for task in tasks {
        if let Some(v) = task.await.unwrap().unwrap() {
            got.push(v);
        }
    }
    assert_eq!(got, vec!["secret".to_string()]);
}

pub async fn counter_ops_on_text_value_fail(r: Replicas) {
    assert!(r.a.put_once("text", "not a number", LONG).await.unwrap());
    let err = r.a.hit("text", LONG).await.unwrap_err();
    assert!(matches!(err, SharedError::Backend(_)), "{err:?}");
    let err = r.b.peek("text").await.unwrap_err();
    assert!(matches!(err, SharedError::Backend(_)), "{err:?}");
    // The value is untouched.
    assert_eq!(
        r.a.take("text").await.unwrap().as_deref(),
        Some("not a number")
    );
}

pub async fn keys_are_opaque(r: Replicas) {
    let keys = [
        "",
        "a b",
        "a\nb",
        "a\r\nb",
        "*",
        "a*",
        "?",
        "[ab]",
        "{tag}",
        "a:b",
        "a%20b",
        "\"'",
        "\\",
        "\0",
        "ümlaut✓",
        "🦀",
        "uos:",
        "../..",
    ];
    // Every key is its own counter: nothing is a pattern, an escape or a separator.
    for key in keys {
        assert_eq!(r.a.hit(key, LONG).await.unwrap().count, 1, "key {key:?}");
    }
    for key in keys {
        assert_eq!(r.b.peek(key).await.unwrap().count, 1, "key {key:?}");
        r.b.clear(key).await.unwrap();
    }
    // Values round-trip exactly, whatever they hold.
    for (i, key) in keys.iter().enumerate() {
        let value = format!("{key}\u{1F512}\n{i}");
        assert!(
            r.a.put_once(key, &value, LONG).await.unwrap(),
            "key {key:?}"
        );
        assert_eq!(r.b.take(key).await.unwrap(), Some(value), "key {key:?}");
    }
}

pub async fn concurrent_hits_across_replicas_count_each_once(r: Replicas) {
    let tasks: Vec<_> = (0..100)
        .map(|i| {
            let state = if i % 2 == 0 { r.a.clone() } else { r.b.clone() };
            tokio::spawn(async move { state.hit("hot", LONG).await })
        })
        .collect();
    let mut counts = Vec::new();
    for task in tasks {
        counts.push(task.await.unwrap().unwrap().count);
    }
    counts.sort_unstable();
    assert_eq!(counts, (1..=100).collect::<Vec<u64>>());
    assert_eq!(r.a.peek("hot").await.unwrap().count, 100);
}

/// The next invalidation on `rx`, or `None` after `within`.
async fn next(
    rx: &mut broadcast::Receiver<Invalidation>,
    within: Duration,
) -> Option<Invalidation> {
    timeout(within, rx.recv()).await.ok()?.ok()
}

pub async fn publish_reaches_every_replica(r: Replicas) {
    let mut on_a = r.a.subscribe();
    let mut on_b = r.b.subscribe();
    let msgs = [
        Invalidation::Session(Uuid::now_v7()),
        Invalidation::User(Uuid::now_v7()),
        Invalidation::ApiKey("key with spaces / ✓".into()),
        Invalidation::Everything,
    ];
    for msg in &msgs {
        r.a.publish(msg).await.unwrap();
    }
    r.b.publish(&msgs[0]).await.unwrap();
    for rx in [&mut on_a, &mut on_b] {
        let mut seen = Vec::new();
        for _ in 0..msgs.len() + 1 {
            seen.push(next(rx, Duration::from_secs(1)).await);
        }
        let expected: Vec<_> = msgs.iter().chain([&msgs[0]]).cloned().map(Some).collect();
        assert_eq!(seen, expected);
        // Each message arrives once.
        assert_eq!(next(rx, Duration::from_millis(200)).await, None);
    }
    // Nobody listening is fine.
    drop((on_a, on_b));
    r.a.publish(&msgs[1]).await.unwrap();
}

pub async fn lock_out_doubles_with_each_lockout_of_its_history(r: Replicas) {
    r.a.hit("acct:x", LONG).await.unwrap();
    let first =
        r.a.lock_out("acct:x", "acct:x:locks", LONG, 60, 150)
            .await
            .unwrap();
    assert_eq!(first, Duration::from_secs(60), "the base period");
    let locked = r.b.peek("acct:x").await.unwrap();
    assert!(
        locked.count == 1 && locked.ttl > Duration::from_secs(59),
        "the window became the lockout: {locked:?}"
    );
    let second =
        r.b.lock_out("acct:x", "acct:x:locks", LONG, 60, 150)
            .await
            .unwrap();
    assert_eq!(second, Duration::from_secs(120), "doubled");
    let third =
        r.a.lock_out("acct:x", "acct:x:locks", LONG, 60, 150)
            .await
            .unwrap();
    assert_eq!(third, Duration::from_secs(150), "capped");
    assert_eq!(r.b.peek("acct:x:locks").await.unwrap().count, 3);
    // No counter to lengthen: the lockout is still counted, nothing else appears.
    let absent_key =
        r.a.lock_out("acct:y", "acct:y:locks", LONG, 0, 150)
            .await
            .unwrap();
    assert_eq!(absent_key, Duration::from_secs(1), "at least a second");
    assert_eq!(r.b.peek("acct:y").await.unwrap(), absent());
    assert_eq!(r.b.peek("acct:y:locks").await.unwrap().count, 1);
}
