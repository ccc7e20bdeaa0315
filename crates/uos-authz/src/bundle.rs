//! Policy bundles: the set of `*.rego` files the service decides with (the embedded
//! `policies/` or an operator's directory), read as one unit and named by its content hash.

use std::path::{Path, PathBuf};
use std::time::SystemTime;

use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::AuthzError;

/// The policies shipped with the service, compiled into the binary, by file name. The Rego
/// tests are part of the bundle: they run at every start-up, so a broken one stops it.
const EMBEDDED_POLICIES: &[(&str, &str)] = &[
    (
        "decision.rego",
        include_str!("../../../policies/decision.rego"),
    ),
    (
        "decision_test.rego",
        include_str!("../../../policies/decision_test.rego"),
    ),
    ("pdp.rego", include_str!("../../../policies/pdp.rego")),
    (
        "pdp_test.rego",
        include_str!("../../../policies/pdp_test.rego"),
    ),
    ("tables.rego", include_str!("../../../policies/tables.rego")),
];

/// Where bundles come from; a reload reads the same place again.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BundleSource {
    /// The policies compiled into the binary: a reload finds the same revision.
    Embedded,
    /// Every `*.rego` file directly inside this directory.
    Dir(PathBuf),
}

impl std::fmt::Display for BundleSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            BundleSource::Embedded => f.write_str("embedded policies"),
            BundleSource::Dir(dir) => write!(f, "{}", dir.display()),
        }
    }
}

/// One file of a bundle, as `GET /v1/policy/bundle` lists it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ModuleInfo {
    /// The file's name relative to the bundle (`pdp.rego`).
    pub file: String,
    /// SHA-256 of its text, hex.
    pub sha256: String,
}

/// What a loaded bundle is: its revision, when it was loaded and its files.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BundleInfo {
    /// The content hash (hex SHA-256): the `policy_revision` of every decision it makes.
    pub revision: String,
    pub loaded_at: SystemTime,
    pub modules: Vec<ModuleInfo>,
}

/// The text of a bundle, read but not yet compiled.
#[derive(Clone, Debug)]
pub(crate) struct BundleFiles {
    /// `(file name, text)`, sorted by name.
    pub files: Vec<(String, String)>,
    pub revision: String,
}

impl BundleFiles {
    fn new(mut files: Vec<(String, String)>) -> Self {
        // Directory order is arbitrary; a fixed order makes the hash and the errors
        // reproducible.
        files.sort();
        let mut hash = Sha256::new();
        for (name, text) in &files {
            // Name and text, each length-prefixed: moving text between files changes the
            // hash. Names are relative, so the same files give the same revision wherever
            // the directory is mounted (and the shipped directory equals the embedded set).
            for part in [name, text] {
                hash.update((part.len() as u64).to_be_bytes());
                hash.update(part.as_bytes());
            }
        }
        Self {
            files,
            revision: hex::encode(hash.finalize()),
        }
    }

    /// Reads the bundle at `source` now.
    pub fn read(source: &BundleSource) -> Result<Self, AuthzError> {
        match source {
            BundleSource::Embedded => Ok(Self::new(
                EMBEDDED_POLICIES
                    .iter()
                    .map(|(name, text)| ((*name).to_owned(), (*text).to_owned()))
                    .collect(),
            )),
            BundleSource::Dir(dir) => read_dir(dir).map(Self::new),
        }
    }

    pub fn modules(&self) -> Vec<ModuleInfo> {
        self.files
            .iter()
            .map(|(file, text)| ModuleInfo {
                file: file.clone(),
                sha256: hex::encode(Sha256::digest(text.as_bytes())),
            })
            .collect()
    }
}

fn read_dir(dir: &Path) -> Result<Vec<(String, String)>, AuthzError> {
    let io_err = |path: &Path| {
        let path = path.to_path_buf();
        move |source| AuthzError::Io { path, source }
    };
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(io_err(dir))? {
        let path = entry.map_err(io_err(dir))?.path();
        if !(path.is_file() && path.extension().is_some_and(|ext| ext == "rego")) {
            continue;
        }
        let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
            continue;
        };
        let text = std::fs::read_to_string(&path).map_err(io_err(&path))?;
        files.push((name.to_owned(), text));
    }
    if files.is_empty() {
        return Err(AuthzError::NoPolicies {
            path: dir.to_path_buf(),
        });
    }
    Ok(files)
}
