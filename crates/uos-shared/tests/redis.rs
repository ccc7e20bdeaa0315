//! What only the Redis adapter has: a URL that can be wrong, a wire format that others can
//! write to, and a namespace. The conformance suite covers the shared behaviour.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;
use tokio::time::timeout;
use uos_shared::{Invalidation, RedisState, SharedError, SharedState};
use uuid::Uuid;

fn url() -> String {
    std::env::var("UOS_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379/".into())
}

fn prefix() -> String {
    format!("uos-test:{}:", Uuid::now_v7())
}

async fn raw() -> redis::aio::MultiplexedConnection {
    redis::Client::open(url())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .expect("connect (is Redis running?)")
}

// Needs no server: these fail before or at connecting, and must not panic or hang.
#[tokio::test]
async fn bad_url_is_an_error() {
    for bad in [
        "",
        "not a url",
        "http://127.0.0.1:6379/",
        "redis://:6379:x/",
    ] {
        let err = RedisState::connect(bad, "uos:").await.unwrap_err();
        assert!(matches!(err, SharedError::Config(_)), "{bad:?}: {err:?}");
        assert!(uos_shared::connect(Some(bad), "uos:", None).await.is_err());
    }
    // Nothing listens on port 1: refused, reported as unavailable, and the password stays out
    // of the message.
    let err = timeout(
        Duration::from_secs(20),
        RedisState::connect("redis://:hunter2@127.0.0.1:1/", "uos:"),
    )
    .await
    .expect("gives up in time")
    .unwrap_err();
    assert!(matches!(err, SharedError::Unavailable(_)), "{err:?}");
    assert!(!err.to_string().contains("hunter2"), "{err}");
}

#[tokio::test]
#[ignore = "needs Redis"]
async fn connect_picks_redis_for_a_url() {
    let state = uos_shared::connect(Some(&url()), &prefix(), None)
        .await
        .unwrap();
    assert_eq!(state.backend(), "redis");
    state.ping().await.unwrap();
}

#[tokio::test]
#[ignore = "needs Redis"]
async fn malformed_channel_messages_are_ignored() {
    let state = RedisState::connect(&url(), &prefix()).await.unwrap();
    let mut rx = state.subscribe();
    let mut conn = raw().await;
    let good = Invalidation::User(Uuid::now_v7());
    for payload in [
        b"not json".to_vec(),
        b"{\"kind\":\"nope\"}".to_vec(),
        b"{\"kind\":\"session\",\"id\":\"not-a-uuid\"}".to_vec(),
        vec![0xff, 0xfe, 0x00],
        serde_json::to_vec(&good).unwrap(),
    ] {
        let _: i64 = redis::cmd("PUBLISH")
            .arg(state.channel())
            .arg(payload)
            .query_async(&mut conn)
            .await
            .unwrap();
    }
    // The junk is skipped and the listener is still alive for the good message.
    let got = timeout(Duration::from_secs(1), rx.recv()).await.unwrap();
    assert_eq!(got.unwrap(), good);
    state.publish(&Invalidation::Everything).await.unwrap();
    let got = timeout(Duration::from_secs(1), rx.recv()).await.unwrap();
    assert_eq!(got.unwrap(), Invalidation::Everything);
}

#[tokio::test]
#[ignore = "needs Redis"]
async fn prefixes_keep_deployments_apart() {
    let (p1, p2) = (prefix(), prefix());
    let one = RedisState::connect(&url(), &p1).await.unwrap();
    let two = RedisState::connect(&url(), &p2).await.unwrap();
    assert_eq!(one.prefix(), p1);
    assert_eq!(one.channel(), format!("{p1}invalidations"));

    assert_eq!(
        one.hit("k", Duration::from_secs(30)).await.unwrap().count,
        1
    );
    assert_eq!(
        two.hit("k", Duration::from_secs(30)).await.unwrap().count,
        1
    );
    assert!(one
        .put_once("v", "1", Duration::from_secs(30))
        .await
        .unwrap());
    assert_eq!(two.take("v").await.unwrap(), None);

    // The keys really live under the prefix, with a lifetime.
    let mut conn = raw().await;
    let ttl: i64 = redis::cmd("PTTL")
        .arg(format!("{p1}k"))
        .query_async(&mut conn)
        .await
        .unwrap();
    assert!(ttl > 0 && ttl <= 30_000, "{ttl}");
    let plain: i64 = redis::cmd("EXISTS")
        .arg("k")
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(plain, 0);

    let mut on_two = two.subscribe();
    one.publish(&Invalidation::Everything).await.unwrap();
    assert!(timeout(Duration::from_millis(300), on_two.recv())
        .await
        .is_err());
}
