//! The production adapter: an S3-compatible bucket (AWS S3, MinIO, Ceph, …) through the
//! `object_store` crate. Large objects go up as a multipart upload of bounded parts.

use crate::{check_key, ByteStream, ObjectError, ObjectStore, ObjectWriter};
use async_trait::async_trait;
use bytes::Bytes;
use futures::{StreamExt as _, TryStreamExt as _};
use object_store::aws::AmazonS3Builder;
use object_store::buffered::BufWriter;
use object_store::path::Path as ObjectPath;
use object_store::ClientOptions;
use secrecy::{ExposeSecret as _, SecretString};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::AsyncWriteExt as _;

/// Size of each uploaded part: S3's smallest multipart part, so a writer holds little.
const PART_BYTES: usize = 5 * 1024 * 1024;
/// Parts uploading at once per writer: with [`PART_BYTES`], what bounds a writer's memory.
const PARTS_IN_FLIGHT: usize = 2;
/// Every request to the bucket gives up after this long (and is retried by `object_store`).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// How to reach the bucket beyond its name (`object_store.*`). Unset credentials and region
/// come from the standard `AWS_*` environment (or the instance's role), as AWS tools do.
#[derive(Clone, Debug, Default)]
pub struct S3Settings {
    /// `https://host[:port]` of an S3-compatible server; unset: AWS.
    pub endpoint: Option<String>,
    pub access_key_id: Option<String>,
    pub secret_access_key: Option<SecretString>,
    pub region: Option<String>,
}

/// Objects under `prefix` in one bucket.
#[derive(Debug)]
pub struct S3Objects {
    store: Arc<dyn object_store::ObjectStore>,
    bucket: String,
    prefix: String,
}

impl S3Objects {
    pub fn new(bucket: &str, prefix: &str, s: &S3Settings) -> Result<Self, ObjectError> {
        if bucket.is_empty() {
            return Err(ObjectError::Config("s3:// needs a bucket name".into()));
        }
        let prefix = prefix.trim_matches('/');
        if !prefix.is_empty() {
            check_key(prefix)?;
        }
        let mut b = AmazonS3Builder::from_env()
            .with_bucket_name(bucket)
            .with_client_options(
                ClientOptions::new()
                    .with_timeout(REQUEST_TIMEOUT)
                    .with_connect_timeout(CONNECT_TIMEOUT),
            );
        if let Some(endpoint) = &s.endpoint {
            // Plain HTTP only when the operator wrote it (a server on loopback or in-cluster).
            b = b
                .with_endpoint(endpoint)
                .with_allow_http(endpoint.starts_with("http://"));
        }
        if let Some(region) = &s.region {
            b = b.with_region(region);
        }
        if let Some(id) = &s.access_key_id {
            b = b.with_access_key_id(id);
        }
        if let Some(secret) = &s.secret_access_key {
            b = b.with_secret_access_key(secret.expose_secret());
        }
        let store = b.build().map_err(|e| ObjectError::Config(e.to_string()))?;
        Ok(Self {
            store: Arc::new(store),
            bucket: bucket.to_owned(),
            prefix: prefix.to_owned(),
        })
    }

    fn path(&self, key: &str) -> Result<ObjectPath, ObjectError> {
        check_key(key)?;
        let full = if self.prefix.is_empty() {
            key.to_owned()
        } else {
            format!("{}/{key}", self.prefix)
        };
        ObjectPath::parse(full).map_err(|_| ObjectError::InvalidKey(key.to_owned()))
    }
}

fn backend(e: object_store::Error) -> ObjectError {
    match e {
        object_store::Error::NotFound { path, .. } => ObjectError::NotFound(path),
        other => ObjectError::Backend(other.to_string()),
    }
}

#[async_trait]
impl ObjectStore for S3Objects {
    async fn writer(&self, key: &str) -> Result<Box<dyn ObjectWriter>, ObjectError> {
        let path = self.path(key)?;
        let writer = BufWriter::with_capacity(Arc::clone(&self.store), path, PART_BYTES)
            .with_max_concurrency(PARTS_IN_FLIGHT);
        Ok(Box::new(S3Writer { writer }))
    }

    async fn get(&self, key: &str) -> Result<ByteStream, ObjectError> {
        let path = self.path(key)?;
        let found = self.store.get(&path).await.map_err(backend)?;
        Ok(found.into_stream().map_err(backend).boxed())
    }

    fn describe(&self) -> String {
        format!("s3://{}/{}", self.bucket, self.prefix)
    }
}

struct S3Writer {
    writer: BufWriter,
}

#[async_trait]
impl ObjectWriter for S3Writer {
    async fn write(&mut self, chunk: Bytes) -> Result<(), ObjectError> {
        // Waits while PARTS_IN_FLIGHT parts are uploading: the writer's memory stays bounded.
        self.writer.put(chunk).await.map_err(backend)
    }

    async fn finish(mut self: Box<Self>) -> Result<(), ObjectError> {
        self.writer
            .shutdown()
            .await
            .map_err(|e| ObjectError::Backend(e.to_string()))
    }

    async fn abort(mut self: Box<Self>) -> Result<(), ObjectError> {
        self.writer.abort().await.map_err(backend)
    }
}
