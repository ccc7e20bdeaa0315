//! Contract tests of `LocalKeyStore` through the public `KeyProvider` API: envelope encryption
//! and signing-key rotation, including what survives a restart.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod encrypt;
mod rotate;
mod transit;

use std::fs;
use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;

/// Every entry of `dir` with its permission bits, sorted by name.
pub fn files_with_modes(dir: &Path) -> Vec<(String, u32)> {
    let mut files: Vec<_> = fs::read_dir(dir)
        .unwrap()
        .map(|entry| {
            let entry = entry.unwrap();
            let mode = entry.metadata().unwrap().permissions().mode() & 0o777;
            (entry.file_name().into_string().unwrap(), mode)
        })
        .collect();
    files.sort();
    files
}
