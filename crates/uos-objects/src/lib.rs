//! Object storage port of user-org-service: where large files the service produces (audit
//! exports) are kept, written and read back as streams of bytes so that no file is ever held
//! in memory whole.
//!
//! Two adapters: a local directory (the embedded default, `<data_dir>/exports`) and any
//! S3-compatible bucket through the `object_store` crate. [`open`] picks one from a URL.

mod local;
mod s3;
pub mod testing;

pub use local::LocalObjects;
pub use s3::{S3Objects, S3Settings};

use async_trait::async_trait;
use bytes::Bytes;
use futures::stream::BoxStream;
use std::path::Path;
use std::sync::Arc;

/// The bytes of a stored object, in order, as they arrive.
pub type ByteStream = BoxStream<'static, Result<Bytes, ObjectError>>;

/// Why an object could not be written or read.
#[derive(Debug, thiserror::Error)]
pub enum ObjectError {
    /// No object under this key.
    #[error("object {0} not found")]
    NotFound(String),
    /// The key is not one this store accepts (empty, absolute, with `..`).
    #[error("invalid object key {0:?}")]
    InvalidKey(String),
    /// The configuration names no usable store.
    #[error("object store configuration: {0}")]
    Config(String),
    #[error("object store: {0}")]
    Backend(String),
}

/// A place to keep objects by key (`audit-exports/<id>/<attempt>.ndjson`).
#[async_trait]
pub trait ObjectStore: Send + Sync + std::fmt::Debug + 'static {
    /// Start writing the object `key`. Nothing is visible under `key` until
    /// [`ObjectWriter::finish`]; an object already there is replaced then.
    async fn writer(&self, key: &str) -> Result<Box<dyn ObjectWriter>, ObjectError>;
    /// The object's bytes as a stream, or [`ObjectError::NotFound`].
    async fn get(&self, key: &str) -> Result<ByteStream, ObjectError>;
    /// Where the objects go, for logs (never a credential).
    fn describe(&self) -> String;
}

/// An object being written: chunks in order, then `finish` (or `abort`). Each adapter keeps
/// at most a few parts in memory, whatever the object's size.
#[async_trait]
pub trait ObjectWriter: Send {
    async fn write(&mut self, chunk: Bytes) -> Result<(), ObjectError>;
    /// Make the object visible under its key.
    async fn finish(self: Box<Self>) -> Result<(), ObjectError>;
    /// Give up: nothing becomes visible, and what was uploaded so far is released.
    async fn abort(self: Box<Self>) -> Result<(), ObjectError>;
}

/// Credentials and addressing of an `s3://` store (from `object_store.*`).
#[derive(Clone, Debug, Default)]
pub struct StoreSettings {
    /// `file:///abs/dir`, or `s3://bucket[/prefix]`.
    pub url: String,
    pub s3: S3Settings,
}

/// The store a URL names: `file://<dir>` (created if missing) or `s3://bucket[/prefix]`.
pub fn open(settings: &StoreSettings) -> Result<Arc<dyn ObjectStore>, ObjectError> {
    let url = settings.url.as_str();
    if let Some(dir) = url.strip_prefix("file://") {
        return Ok(Arc::new(LocalObjects::open(Path::new(dir))?));
    }
    if let Some(rest) = url.strip_prefix("s3://") {
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        return Ok(Arc::new(S3Objects::new(bucket, prefix, &settings.s3)?));
    }
    Err(ObjectError::Config(format!(
        "url must start with file:// or s3://, not {url:?}"
    )))
}

/// A key is relative, `/`-separated, and has no empty, `.` or `..` segment: the same key
/// means the same object on every adapter, and none escapes its directory or prefix.
pub(crate) fn check_key(key: &str) -> Result<(), ObjectError> {
    let ok = !key.is_empty()
        && key.split('/').all(|part| {
            !part.is_empty()
                && part != "."
                && part != ".."
                && part
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
        });
    if ok {
        Ok(())
    } else {
        Err(ObjectError::InvalidKey(key.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_stay_inside_the_store() {
        for good in ["a", "audit-exports/0190/x_1.ndjson"] {
            assert!(check_key(good).is_ok(), "{good}");
        }
        for bad in [
            "", "/abs", "a//b", "../up", "a/./b", "a/b/", "sp ace", "a\\b",
        ] {
            assert!(check_key(bad).is_err(), "{bad:?} was accepted");
        }
    }

    #[test]
    fn only_file_and_s3_urls_open() {
        let settings = StoreSettings {
            url: "ftp://x".into(),
            ..StoreSettings::default()
        };
        assert!(matches!(open(&settings), Err(ObjectError::Config(_))));
    }
}
