#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! Both adapters of the object store port, held to the same promises: a written object reads
//! back byte for byte (across many multipart parts), nothing is visible before `finish` or
//! after `abort`, an absent key is `NotFound`. The S3 adapter runs against a real
//! S3-compatible server (moto), so it is ignored unless asked for.

use bytes::Bytes;
use futures::TryStreamExt as _;
use std::sync::Arc;
use uos_objects::{ObjectError, ObjectStore, StoreSettings};

/// 12 MiB in uneven chunks: more than two S3 parts, and chunks that straddle part borders.
fn chunks() -> Vec<Bytes> {
    (0..97u32)
        .map(|i| {
            let len = 100_000 + (i as usize * 7919) % 60_000;
            Bytes::from(vec![(i % 251) as u8; len])
        })
        .collect()
}

async fn read_all(store: &dyn ObjectStore, key: &str) -> Result<Vec<u8>, ObjectError> {
    let parts: Vec<Bytes> = store.get(key).await?.try_collect().await?;
    Ok(parts.concat())
}

async fn holds_its_promises(store: Arc<dyn ObjectStore>) {
    let key = "audit-exports/one/first.ndjson";
    let mut w = store.writer(key).await.unwrap();
    let mut expected = Vec::new();
    for c in chunks() {
        expected.extend_from_slice(&c);
        w.write(c).await.unwrap();
    }
    assert!(
        matches!(read_all(&*store, key).await, Err(ObjectError::NotFound(_))),
        "visible before finish"
    );
    w.finish().await.unwrap();
    let got = read_all(&*store, key).await.unwrap();
    assert_eq!(got.len(), expected.len(), "length read back");
    assert!(got == expected, "bytes read back differ");

    // A second write of the key replaces the object once finished.
    let mut w = store.writer(key).await.unwrap();
    w.write(Bytes::from_static(b"short\n")).await.unwrap();
    w.finish().await.unwrap();
    assert_eq!(read_all(&*store, key).await.unwrap(), b"short\n");

    let aborted = "audit-exports/two/aborted.ndjson";
    let mut w = store.writer(aborted).await.unwrap();
    w.write(Bytes::from(vec![1u8; 6 * 1024 * 1024]))
        .await
        .unwrap();
    w.abort().await.unwrap();
    assert!(
        matches!(
            read_all(&*store, aborted).await,
            Err(ObjectError::NotFound(_))
        ),
        "an aborted object is visible"
    );
    assert!(matches!(
        store.get("../outside").await.map(|_| ()),
        Err(ObjectError::InvalidKey(_))
    ));
}

#[tokio::test]
async fn local_directory() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("exports");
    let store = uos_objects::open(&StoreSettings {
        url: format!("file://{}", root.display()),
        ..StoreSettings::default()
    })
    .unwrap();
    holds_its_promises(store).await;
    // No temporary file is left behind by a finished or aborted writer.
    let mut left = Vec::new();
    for d in ["audit-exports/one", "audit-exports/two"] {
        for e in std::fs::read_dir(root.join(d)).unwrap() {
            left.push(e.unwrap().file_name().into_string().unwrap());
        }
    }
    assert_eq!(left, ["first.ndjson"]);
}

#[tokio::test]
async fn a_relative_directory_is_refused() {
    let r = uos_objects::open(&StoreSettings {
        url: "file://exports".into(),
        ..StoreSettings::default()
    });
    assert!(matches!(r, Err(ObjectError::Config(_))));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs moto"]
async fn s3_bucket_on_moto() {
    let moto = uos_objects::testing::Moto::start();
    moto.create_bucket("uos-exports");
    let store = uos_objects::open(&StoreSettings {
        url: "s3://uos-exports/some/prefix".into(),
        s3: moto.settings(),
    })
    .unwrap();
    assert_eq!(store.describe(), "s3://uos-exports/some/prefix");
    holds_its_promises(store).await;
}
