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
    pub result: Result<DeclaredOrg, Vec<Problem>>,
}

/// Every file under `orgs/` of the repository at `root`, in name order. A repository without
/// `orgs/` declares no org. Files that are not `*.yaml` are reported, not skipped: a
/// `acme.yml` that silently declared nothing would be worse than an error.
pub fn read_repo(root: &Path) -> io::Result<Vec<OrgEntry>> {
    let dir = root.join(ORGS_DIR);
    let listing = match std::fs::read_dir(&dir) {
        Ok(l) => l,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let mut names = Vec::new();
    for entry in listing {
        let entry = entry?;
        if entry.file_type()?.is_file() {
            names.push(entry.file_name().to_string_lossy().into_owned());
        }
    }
    names.sort();
    let mut out = Vec::with_capacity(names.len());
    for name in names {
        let file = format!("{ORGS_DIR}/{name}");
        let result = if !name.ends_with(".yaml") {
            Err(vec![Problem {
                file: file.clone(),
                line: 0,
                column: 0,
                field: String::new(),
                message: "org files are named orgs/<slug>.yaml".into(),
            }])
        } else {
            match std::fs::read(dir.join(&name)) {
                Ok(bytes) => match String::from_utf8(bytes) {
                    Ok(text) => parse_org(&file, &text),
                    Err(_) => Err(vec![Problem {
                        file: file.clone(),
                        line: 0,
                        column: 0,
                        field: String::new(),
                        message: "not UTF-8 text".into(),
                    }]),
                },
                Err(e) => return Err(e),
            }
        };
        out.push(OrgEntry { file, result });
    }
    Ok(out)
}
