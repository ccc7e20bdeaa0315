//! Connections dropping under the Redis adapter. A test binary of its own: `CLIENT KILL` by type
//! hits every client of that type on the server, so nothing else may run beside it (cargo runs
//! test binaries one at a time), and the two tests here take turns through `SERIAL`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;
use tokio::sync::Mutex;
use tokio::time::{sleep, timeout};
use uos_shared::{Invalidation, RedisState, SharedState};
use uuid::Uuid;

static SERIAL: Mutex<()> = Mutex::const_new(());

fn url() -> String {
    std::env::var("UOS_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379/".into())
}

async fn kill(kind: &str) -> i64 {
    let mut conn = redis::Client::open(url())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .expect("connect (is Redis running?)");
    redis::cmd("CLIENT")
        .arg("KILL")
        .arg("TYPE")
        .arg(kind)
        .arg("SKIPME")
        .arg("yes")
        .query_async(&mut conn)
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs Redis"]
async fn lost_pubsub_connection_resubscribes_and_sends_everything() {
    let _serial = SERIAL.lock().await;
    let prefix = format!("uos-test:{}:", Uuid::now_v7());
    let a = RedisState::connect(&url(), &prefix).await.unwrap();
    let b = RedisState::connect(&url(), &prefix).await.unwrap();
    let mut on_a = a.subscribe();

    assert!(kill("pubsub").await >= 2);
    // Messages may have been lost while away: the replica is told to drop everything.
    let got = timeout(Duration::from_secs(5), on_a.recv()).await;
    assert_eq!(got.unwrap().unwrap(), Invalidation::Everything);

    // And it is subscribed again: messages from the other replica arrive as before.
    let msg = Invalidation::Session(Uuid::now_v7());
    b.publish(&msg).await.unwrap();
    let got = timeout(Duration::from_secs(1), on_a.recv()).await;
    assert_eq!(got.unwrap().unwrap(), msg);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs Redis"]
async fn commands_recover_after_the_connection_is_killed() {
    let _serial = SERIAL.lock().await;
    let prefix = format!("uos-test:{}:", Uuid::now_v7());
    let a = RedisState::connect(&url(), &prefix).await.unwrap();
    assert_eq!(a.hit("k", Duration::from_secs(30)).await.unwrap().count, 1);

    assert!(kill("normal").await >= 1);
    // The first command may see the dropped connection (an error, not a panic); the manager
    // reconnects and a later one goes through, with the count kept in Redis.
    let mut count = None;
    for _ in 0..20 {
        match a.hit("k", Duration::from_secs(30)).await {
            Ok(hit) => {
                count = Some(hit.count);
                break;
            }
            Err(e) => {
                assert!(
                    matches!(e, uos_shared::SharedError::Unavailable(_)),
                    "{e:?}"
                );
                sleep(Duration::from_millis(100)).await;
            }
        }
    }
    assert_eq!(count, Some(2));
}
