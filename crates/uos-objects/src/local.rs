//! The embedded default: objects as files in a local directory. A file is written under a
//! temporary name and renamed into place when finished, so a reader never sees half of one.

use crate::{check_key, ByteStream, ObjectError, ObjectStore, ObjectWriter};
use async_trait::async_trait;
use bytes::{Bytes, BytesMut};
use futures::StreamExt as _;
use std::path::{Path, PathBuf};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _, BufWriter};

/// Bytes read from a file per chunk of the stream.
const READ_CHUNK: usize = 64 * 1024;

/// Objects under one directory, a key's `/` being a subdirectory.
#[derive(Debug)]
pub struct LocalObjects {
    root: PathBuf,
}

impl LocalObjects {
    /// The store over `root`, created (owner-only on Unix: exports hold the audit trail) if
    /// missing.
    pub fn open(root: &Path) -> Result<Self, ObjectError> {
        if !root.is_absolute() {
            return Err(ObjectError::Config(format!(
                "file:// needs an absolute directory, not {}",
                root.display()
            )));
        }
        std::fs::create_dir_all(root).map_err(|e| io("create", root, &e))?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            std::fs::set_permissions(root, std::fs::Permissions::from_mode(0o700))
                .map_err(|e| io("restrict", root, &e))?;
        }
        Ok(Self {
            root: root.to_owned(),
        })
    }

    fn path(&self, key: &str) -> Result<PathBuf, ObjectError> {
        check_key(key)?;
        Ok(self.root.join(key))
    }
}

fn io(what: &str, path: &Path, e: &std::io::Error) -> ObjectError {
    ObjectError::Backend(format!("{what} {}: {e}", path.display()))
}

#[async_trait]
impl ObjectStore for LocalObjects {
    async fn writer(&self, key: &str) -> Result<Box<dyn ObjectWriter>, ObjectError> {
        let path = self.path(key)?;
        if let Some(dir) = path.parent() {
            tokio::fs::create_dir_all(dir)
                .await
                .map_err(|e| io("create", dir, &e))?;
        }
        // Unique per writer, so two writers of one key never share a temporary file.
        let partial = path.with_extension(format!("partial-{}", uuid::Uuid::now_v7()));
        let file = tokio::fs::File::create(&partial)
            .await
            .map_err(|e| io("create", &partial, &e))?;
        Ok(Box::new(LocalWriter {
            file: BufWriter::new(file),
            partial,
            path,
        }))
    }

    async fn get(&self, key: &str) -> Result<ByteStream, ObjectError> {
        let path = self.path(key)?;
        let file = match tokio::fs::File::open(&path).await {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(ObjectError::NotFound(key.to_owned()))
            }
            Err(e) => return Err(io("open", &path, &e)),
        };
        let chunks = futures::stream::unfold(Some((file, path)), |state| async move {
            let (mut file, path) = state?;
            let mut buf = BytesMut::zeroed(READ_CHUNK);
            match file.read(&mut buf).await {
                Ok(0) => None,
                Ok(n) => {
                    buf.truncate(n);
                    Some((Ok(buf.freeze()), Some((file, path))))
                }
                // The stream ends after its first error.
                Err(e) => Some((Err(io("read", &path, &e)), None)),
            }
        });
        Ok(chunks.boxed())
    }

    fn describe(&self) -> String {
        format!("file://{}", self.root.display())
    }
}

struct LocalWriter {
    file: BufWriter<tokio::fs::File>,
    partial: PathBuf,
    path: PathBuf,
}

#[async_trait]
impl ObjectWriter for LocalWriter {
    async fn write(&mut self, chunk: Bytes) -> Result<(), ObjectError> {
        self.file
            .write_all(&chunk)
            .await
            .map_err(|e| io("write", &self.partial, &e))
    }

    async fn finish(mut self: Box<Self>) -> Result<(), ObjectError> {
        self.file
            .flush()
            .await
            .map_err(|e| io("write", &self.partial, &e))?;
        // On disk before it is named: a crash never leaves a short file under the real key.
        self.file
            .get_ref()
            .sync_all()
            .await
            .map_err(|e| io("sync", &self.partial, &e))?;
        tokio::fs::rename(&self.partial, &self.path)
            .await
            .map_err(|e| io("rename", &self.path, &e))
    }

    async fn abort(self: Box<Self>) -> Result<(), ObjectError> {
        drop(self.file);
        tokio::fs::remove_file(&self.partial)
            .await
            .map_err(|e| io("remove", &self.partial, &e))
    }
}
