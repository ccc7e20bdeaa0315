//! Backups of the configured store, with the local key files when keys are not in Vault, and
//! their restore into an empty store (`uosctl backup` / `uosctl restore`).
//!
//! A backup is a directory: the database copy (`database.sqlite`, or `database.pgdump` in
//! `pg_dump`'s custom format), `keys/` (the key files, without which restored tokens, API
//! keys and audit signatures could not be checked), and `manifest.json`: every file's size
//! and SHA-256, and the inventory (rows per table, every audit chain's head) read in the
//! snapshot the copy was made from. A restore checks the files against the manifest before
//! it touches anything, and the restored store against the inventory after.

use std::collections::BTreeMap;
use std::io::Read as _;
use std::path::Path;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};
use uos_store::{AuditHead, Inventory};
use uos_store_postgres::PgStore;
use uos_store_sqlite::SqliteStore;

use crate::{AppError, Config};

/// The manifest's name inside a backup directory.
pub const MANIFEST: &str = "manifest.json";
/// The manifest format this build writes and reads.
const FORMAT: u32 = 1;
/// Where the key files are, under the data directory and inside a backup.
const KEYS: &str = "keys";

/// What a backup holds, and what a restore of it must reproduce.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    pub format: u32,
    /// `sqlite` or `postgres`: a backup restores into the same kind of store.
    pub backend: String,
    /// When the copy's snapshot was taken (the point a restore goes back to).
    pub created_at: DateTime<Utc>,
    pub database: BackupFile,
    /// The key files (none when keys live in Vault/OpenBao Transit).
    pub keys: Vec<BackupFile>,
    /// Rows of every table, in the copy's snapshot.
    pub row_counts: BTreeMap<String, i64>,
    /// Every audit chain's head, in the copy's snapshot.
    pub audit_heads: Vec<ChainHead>,
}

/// A file of a backup, by its path inside the backup directory.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BackupFile {
    pub path: String,
    pub bytes: u64,
    pub sha256: String,
}

/// An audit chain's head as a manifest records it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChainHead {
    pub chain: String,
    pub seq: i64,
    pub hash: String,
}

impl Manifest {
    fn inventory(&self) -> (BTreeMap<String, i64>, Vec<ChainHead>) {
        (self.row_counts.clone(), self.audit_heads.clone())
    }
}

fn summarize(inv: Inventory) -> (BTreeMap<String, i64>, Vec<ChainHead>) {
    let heads = inv
        .audit_heads
        .into_iter()
        .map(|AuditHead { chain, seq, hash }| ChainHead { chain, seq, hash })
        .collect();
    (inv.row_counts.into_iter().collect(), heads)
}

fn bad(message: String) -> AppError {
    AppError::Backup(message)
}

/// The database URL backups read and restores write: the tables' owner's when
/// `migration_database_url` names one (it creates the tables a restore brings back).
fn owner_url(cfg: &Config) -> &str {
    cfg.migration_database_url
        .as_deref()
        .unwrap_or(&cfg.database_url)
}

/// Back the configured store (and the key files, unless keys are in Vault) up into the new
/// directory `out`, while the service runs.
pub async fn backup(cfg: &Config, out: &Path) -> Result<Manifest, AppError> {
    std::fs::create_dir_all(out)?;
    if std::fs::read_dir(out)?.next().is_some() {
        return Err(bad(format!("{} is not empty", out.display())));
    }
    let created_at = Utc::now();
    let url = owner_url(cfg);
    let (backend, name, inventory) = if url.starts_with("sqlite:") {
        let name = "database.sqlite";
        let store = SqliteStore::open_read_only(url).await?;
        let inventory = store.backup_into(&out.join(name)).await;
        uos_store::Store::close(&store).await;
        ("sqlite", name, inventory?)
    } else {
        let name = "database.pgdump";
        let store = PgStore::connect_read_only(url, 1).await?;
        let inventory = store.backup_into(url, &out.join(name)).await;
        uos_store::Store::close(&store).await;
        ("postgres", name, inventory?)
    };
    let database = describe(out, name)?;
    let mut keys = Vec::new();
    if cfg.transit().is_none() {
        let from = cfg.data_dir.join(KEYS);
        std::fs::create_dir(out.join(KEYS))?;
        for name in files_in(&from)? {
            std::fs::copy(from.join(&name), out.join(KEYS).join(&name))?;
            keys.push(describe(out, &format!("{KEYS}/{name}"))?);
        }
    }
    let (row_counts, audit_heads) = summarize(inventory);
    let manifest = Manifest {
        format: FORMAT,
        backend: backend.into(),
        created_at,
        database,
        keys,
        row_counts,
        audit_heads,
    };
    let text = serde_json::to_vec_pretty(&manifest).map_err(|e| bad(e.to_string()))?;
    write_synced(&out.join(MANIFEST), &text)?;
    Ok(manifest)
}

/// Restore the backup in directory `from` into the configured store, which must be empty
/// (no SQLite file; a PostgreSQL database without tables), and its key files into the data
/// directory, which must hold none. Every file is checked against the manifest first, and the
/// restored store against the manifest's inventory after.
pub async fn restore(cfg: &Config, from: &Path) -> Result<Manifest, AppError> {
    let text = std::fs::read(from.join(MANIFEST))?;
    let manifest: Manifest = serde_json::from_slice(&text)
        .map_err(|e| bad(format!("{}: {e}", from.join(MANIFEST).display())))?;
    if manifest.format != FORMAT {
        return Err(bad(format!(
            "backup format {} is not this build's ({FORMAT})",
            manifest.format
        )));
    }
    for file in std::iter::once(&manifest.database).chain(&manifest.keys) {
        // Only names a backup writes: a manifest cannot point a restore outside its
        // directory, or its key files outside the data directory.
        let plain = |name: &str| {
            !name.is_empty() && !name.contains(['/', '\\']) && name != "." && name != ".."
        };
        let expected = match file.path.strip_prefix(&format!("{KEYS}/")) {
            Some(name) => plain(name),
            None => std::ptr::eq(file, &manifest.database) && plain(&file.path),
        };
        if !expected {
            return Err(bad(format!(
                "the manifest names an unexpected file {:?}",
                file.path
            )));
        }
        let found = describe(from, &file.path)?;
        if found != *file {
            return Err(bad(format!(
                "{} does not match the manifest (damaged or changed since the backup)",
                from.join(&file.path).display()
            )));
        }
    }
    let keys_dir = cfg.data_dir.join(KEYS);
    if !manifest.keys.is_empty() && !files_in(&keys_dir)?.is_empty() {
        return Err(bad(format!(
            "{} already holds key files: restore into an empty data directory",
            keys_dir.display()
        )));
    }
    let url = owner_url(cfg);
    let database = from.join(&manifest.database.path);
    match (manifest.backend.as_str(), url.starts_with("sqlite:")) {
        ("sqlite", true) => SqliteStore::restore_from(url, &database).await?,
        ("postgres", false) => PgStore::restore_from(url, &database).await?,
        (backend, _) => {
            return Err(bad(format!(
                "a {backend} backup restores into a {backend} store only"
            )))
        }
    }
    if !manifest.keys.is_empty() {
        std::fs::create_dir_all(&keys_dir)?;
        for file in &manifest.keys {
            let name = file.path.trim_start_matches(&format!("{KEYS}/")).to_owned();
            std::fs::copy(from.join(&file.path), keys_dir.join(name))?;
        }
    }
    let store = crate::open_store_read_only(cfg).await?;
    let restored = async { Inventory::read(&mut *store.read().await?).await }.await;
    store.close().await;
    let restored = summarize(restored?);
    if restored != manifest.inventory() {
        return Err(bad(differences(&manifest.inventory(), &restored)));
    }
    Ok(manifest)
}

/// What differs between the inventory a backup recorded and the restored one.
fn differences(
    want: &(BTreeMap<String, i64>, Vec<ChainHead>),
    got: &(BTreeMap<String, i64>, Vec<ChainHead>),
) -> String {
    let mut out = vec!["the restored store does not match the backup's manifest:".to_owned()];
    for (table, n) in &want.0 {
        let found = got.0.get(table).copied().unwrap_or(0);
        if found != *n {
            out.push(format!("{table}: {found} rows, the backup had {n}"));
        }
    }
    if want.1 != got.1 {
        out.push("the audit chain heads differ".to_owned());
    }
    out.join("; ")
}

/// The regular files directly in `dir`, by name, in name order; none if it does not exist.
fn files_in(dir: &Path) -> Result<Vec<String>, AppError> {
    let listing = match std::fs::read_dir(dir) {
        Ok(l) => l,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e.into()),
    };
    let mut names = Vec::new();
    for entry in listing {
        let entry = entry?;
        if entry.file_type()?.is_file() {
            names.push(entry.file_name().to_string_lossy().into_owned());
        }
    }
    names.sort();
    Ok(names)
}

/// The size and SHA-256 of `path` inside `dir`.
fn describe(dir: &Path, path: &str) -> Result<BackupFile, AppError> {
    let mut file = std::fs::File::open(dir.join(path))?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0; 1 << 16];
    let mut bytes = 0;
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        bytes += n as u64;
    }
    Ok(BackupFile {
        path: path.to_owned(),
        bytes,
        sha256: hex::encode(hasher.finalize()),
    })
}

/// Write `bytes` to the new file `path` and flush it to disk before returning.
fn write_synced(path: &Path, bytes: &[u8]) -> Result<(), AppError> {
    use std::io::Write as _;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)?;
    file.write_all(bytes)?;
    file.sync_all()?;
    Ok(())
}
