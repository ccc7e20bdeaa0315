//! Reading a checked-out config repository: every `orgs/<slug>.yaml`, each parsed and checked
//! on its own, so one invalid file stops only its own org.

use std::io;
use std::path::Path;

use crate::declared::{parse_org, DeclaredOrg};
use crate::problem::Problem;

/// The directory of org files inside the repository.
pub const ORGS_DIR: &str = "orgs";

/// One org file of the repository, as read.
#[derive(Debug)]
pub struct OrgEntry {
    /// `orgs/<name>`.
    pub file: String,
    /// The file's text (empty when it is not UTF-8): what an apply records as applied.
    pub text: String,
    pub result: Result<DeclaredOrg, Vec<Problem>>,
}

/// Every file under `orgs/` of the working tree at `root`, in name order, each parsed and
/// checked. A repository without `orgs/` declares no org.
pub fn read_repo(root: &Path) -> io::Result<Vec<OrgEntry>> {
    Ok(read_files(read_dir_files(root)?))
}

/// Every file under `orgs/` of the working tree at `root` as (name inside `orgs/`, contents),
/// unparsed.
pub fn read_dir_files(root: &Path) -> io::Result<Vec<(String, Vec<u8>)>> {
    let dir = root.join(ORGS_DIR);
    let listing = match std::fs::read_dir(&dir) {
        Ok(l) => l,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let mut files = Vec::new();
    for entry in listing {
        let entry = entry?;
        if entry.file_type()?.is_file() {
            let name = entry.file_name().to_string_lossy().into_owned();
            files.push((name, std::fs::read(entry.path())?));
        }
    }
    files.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(files)
}

/// The org files given as (name inside `orgs/`, contents), each parsed and checked, in name
/// order.
pub fn read_files(mut files: Vec<(String, Vec<u8>)>) -> Vec<OrgEntry> {
    files.sort_by(|a, b| a.0.cmp(&b.0));
    files
        .into_iter()
        .map(|(name, bytes)| read_file(&name, bytes))
        .collect()
}

/// The org file `name` (inside `orgs/`), parsed and checked. Files that are not `*.yaml` are
/// reported, not skipped: an `acme.yml` that silently declared nothing would be worse than an
/// error.
pub fn read_file(name: &str, bytes: Vec<u8>) -> OrgEntry {
    let file = format!("{ORGS_DIR}/{name}");
    let whole_file = |message: &str| {
        Err(vec![Problem {
            file: file.clone(),
            line: 0,
            column: 0,
            field: String::new(),
            message: message.to_owned(),
        }])
    };
    let text = String::from_utf8(bytes).ok();
    let result = match &text {
        _ if !name.ends_with(".yaml") => whole_file("org files are named orgs/<slug>.yaml"),
        Some(text) => parse_org(&file, text),
        None => whole_file("not UTF-8 text"),
    };
    OrgEntry {
        file,
        text: text.unwrap_or_default(),
        result,
    }
}

/// The org a file in `orgs/` declares: its name without `.yaml` (the parser holds the slug to
/// it, and an invalid file is still reported under it).
pub fn slug_of(name: &str) -> &str {
    name.strip_suffix(".yaml").unwrap_or(name)
}
