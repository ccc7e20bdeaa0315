//! The audit export file: one event per line, then one manifest line that says what the file
//! holds (chains, where each starts and ends, how many events) and carries what a verifier
//! needs offline (the signed checkpoint to hold the chains to, the public keys).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use uos_keys::PublicKey;

use crate::{AuditEvent, Checkpoint, ParseError, Signatures};

/// The last line of an export, `{"manifest": {...}}`.
///
/// `first_seq` and `last_seq` are objects keyed by chain name (`{"org:…": 1}`): an export
/// with `since` starts a chain after its genesis, and `first_seq` says where. `count` is the
/// number of event lines in the file.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    /// The chains with events in the file, by name.
    pub chains: Vec<String>,
    pub first_seq: BTreeMap<String, i64>,
    pub last_seq: BTreeMap<String, i64>,
    pub count: u64,
    /// Signed checkpoints, latest last: the chains must reach the heads the latest one saw.
    pub checkpoints: Vec<Checkpoint>,
    /// The audit public keys, retired ones included.
    pub keys: Vec<PublicKey>,
}

#[derive(Serialize, Deserialize)]
struct ManifestLine<T> {
    manifest: T,
}

impl Manifest {
    /// The manifest as its line of the file (without the newline).
    pub fn to_line(&self) -> String {
        // A struct of strings, numbers and maps with string keys always serialises.
        serde_json::to_string(&ManifestLine { manifest: self }).unwrap_or_default()
    }

    /// Counts one more event of the file, as the writer goes (first and last seq per chain).
    pub fn note(&mut self, chain: &str, seq: i64) {
        if !self.first_seq.contains_key(chain) {
            self.chains.push(chain.to_owned());
            self.first_seq.insert(chain.to_owned(), seq);
        }
        self.last_seq.insert(chain.to_owned(), seq);
        self.count += 1;
    }
}

/// An export file read back: its events, the 1-based line each came from, and the manifest
/// with its line (absent in a plain NDJSON list of events).
#[derive(Clone, Debug, Default)]
pub struct ExportFile {
    pub events: Vec<AuditEvent>,
    pub lines: Vec<usize>,
    pub manifest: Option<(usize, Manifest)>,
}

/// Whether `line` is the manifest line: a JSON object whose (first) key is `manifest`. Events
/// are objects too, but none has that key.
fn is_manifest(line: &str) -> bool {
    line.trim_start()
        .strip_prefix('{')
        .is_some_and(|rest| rest.trim_start().starts_with("\"manifest\""))
}

/// NDJSON events, and a last manifest line if there is one. Blank lines are ignored; errors
/// name the 1-based line.
pub fn parse_export(input: &str) -> Result<ExportFile, ParseError> {
    let lines: Vec<(usize, &str)> = input
        .lines()
        .enumerate()
        .map(|(i, line)| (i + 1, line))
        .filter(|(_, line)| !line.trim().is_empty())
        .collect();
    let manifest_at = lines.iter().position(|(_, line)| is_manifest(line));
    let body = &lines[..manifest_at.unwrap_or(lines.len())];
    // Events are parsed on every core; the first bad line in the file is the one reported.
    let events = crate::par::map(body, |(n, line)| {
        serde_json::from_str(line).map_err(|source| ParseError::Line { line: *n, source })
    });
    let mut file = ExportFile {
        events: events.into_iter().collect::<Result<_, _>>()?,
        lines: body.iter().map(|(n, _)| *n).collect(),
        manifest: None,
    };
    if let Some(at) = manifest_at {
        let (n, line) = lines[at];
        if at + 1 < lines.len() {
            return Err(ParseError::Manifest {
                line: n,
                why: "the manifest must be the last line".into(),
            });
        }
        let parsed: ManifestLine<Manifest> =
            serde_json::from_str(line).map_err(|e| ParseError::Manifest {
                line: n,
                why: e.to_string(),
            })?;
        file.manifest = Some((n, parsed.manifest));
    }
    Ok(file)
}

/// What is wrong with an export file, and the first line it shows at.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {what}")]
pub struct ExportError {
    /// 1-based line of the file: the first bad event, or the manifest line for what only the
    /// manifest or the checkpoint shows (a chain cut short, a count that does not match).
    pub line: usize,
    pub what: String,
}

/// An export file that verified: each chain's report, ordered by chain name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExportReport {
    pub chains: Vec<crate::ChainReport>,
    /// The checkpoint the chains were held to, if any.
    pub checkpoint: Option<uuid::Uuid>,
}

/// Verifies an export file offline: every chain's hashes, signatures, links and seq (from the
/// manifest's `first_seq` when the export starts after a chain's genesis, as one with `since`
/// does), that the manifest describes the events the file holds, and that each chain reaches
/// what `checkpoint` saw (by default the manifest's latest). `keys` are the trusted audit
/// keys (by default, the caller passes the manifest's). Stops at the first bad line.
pub fn verify_export(
    file: &ExportFile,
    keys: &[PublicKey],
    checkpoint: Option<&Checkpoint>,
) -> Result<ExportReport, ExportError> {
    verify_export_with(file, keys, checkpoint, Signatures::Every)
}

/// [`verify_export`], checking the signatures `signatures` says (the checkpoint's always).
pub fn verify_export_with(
    file: &ExportFile,
    keys: &[PublicKey],
    checkpoint: Option<&Checkpoint>,
    signatures: Signatures,
) -> Result<ExportReport, ExportError> {
    let end_line = file
        .manifest
        .as_ref()
        .map(|(line, _)| *line)
        .or_else(|| file.lines.last().copied())
        .unwrap_or(1);
    let manifest = file.manifest.as_ref().map(|(_, m)| m);
    let mut chains: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
    for (i, e) in file.events.iter().enumerate() {
        chains.entry(e.chain.as_str()).or_default().push(i);
    }
    // Every chain is checked, and the earliest failure in the file is the one reported.
    let mut reports = Vec::new();
    let mut first_bad: Option<ExportError> = None;
    for (chain, indices) in &chains {
        let first = &file.events[indices[0]];
        let start_seq = manifest
            .and_then(|m| m.first_seq.get(*chain).copied())
            .unwrap_or(1);
        let start = (start_seq > 1).then_some((start_seq, first.prev_hash.as_str()));
        let events: Vec<&AuditEvent> = indices.iter().map(|&i| &file.events[i]).collect();
        match crate::chain::check_chain(&events, keys, start, signatures) {
            Ok(report) => reports.push(report),
            Err((at, e)) => {
                let line = file.lines[indices[at]];
                if first_bad.as_ref().is_none_or(|b| line < b.line) {
                    first_bad = Some(ExportError {
                        line,
                        what: e.to_string(),
                    });
                }
            }
        }
    }
    if let Some(bad) = first_bad {
        return Err(bad);
    }
    if let Some(m) = manifest {
        check_manifest(m, file, &reports, end_line)?;
    }
    let checkpoint = checkpoint.or_else(|| manifest.and_then(|m| m.checkpoints.last()));
    if let Some(c) = checkpoint {
        let fail = |line: usize, e: crate::CheckpointError| ExportError {
            line,
            what: e.to_string(),
        };
        crate::verify_checkpoint(c, keys).map_err(|e| fail(end_line, e))?;
        for (chain, indices) in &chains {
            let events: Vec<&AuditEvent> = indices.iter().map(|&i| &file.events[i]).collect();
            if let Err(e) = crate::checkpoint::check_events_against(c, chain, &events) {
                let line = match &e {
                    crate::CheckpointError::Diverged { seq, .. } => indices
                        .iter()
                        .find(|&&i| file.events[i].seq == *seq)
                        .map_or(end_line, |&i| file.lines[i]),
                    _ => end_line,
                };
                return Err(fail(line, e));
            }
        }
    }
    Ok(ExportReport {
        chains: reports,
        checkpoint: checkpoint.map(|c| c.checkpoint_id),
    })
}

/// The manifest says what the file holds: the same chains, each from its `first_seq` to its
/// `last_seq`, and `count` events in all. Events cut from a chain's end show only here.
fn check_manifest(
    m: &Manifest,
    file: &ExportFile,
    reports: &[crate::ChainReport],
    line: usize,
) -> Result<(), ExportError> {
    let bad = |what: String| Err(ExportError { line, what });
    if m.count != file.events.len() as u64 {
        return bad(format!(
            "the manifest counts {} events, the file holds {}",
            m.count,
            file.events.len()
        ));
    }
    let mut named: Vec<&str> = m.chains.iter().map(String::as_str).collect();
    named.sort_unstable();
    let found: Vec<&str> = reports.iter().map(|r| r.chain.as_str()).collect();
    if named != found {
        return bad(format!(
            "the manifest names chains {named:?}, the file holds {found:?}"
        ));
    }
    for r in reports {
        let last = m.last_seq.get(&r.chain).copied().unwrap_or_default();
        if last != r.head_seq {
            return bad(format!(
                "chain {}: the manifest says it ends at seq {last}, the events end at {} \
                 (events removed or added)",
                r.chain, r.head_seq
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn the_manifest_line_is_recognised_and_must_be_last() {
        let mut m = Manifest::default();
        m.note("org:a", 3);
        m.note("platform", 1);
        m.note("org:a", 4);
        assert_eq!(m.chains, ["org:a", "platform"]);
        assert_eq!(m.first_seq["org:a"], 3);
        assert_eq!(m.last_seq["org:a"], 4);
        assert_eq!(m.count, 3);
        let line = m.to_line();
        assert!(line.starts_with(r#"{"manifest":{"#), "{line}");

        let file = parse_export(&format!("\n{line}\n")).unwrap();
        assert_eq!(file.manifest, Some((2, m)));
        assert!(file.events.is_empty());

        let err = parse_export(&format!("{line}\n{line}\n")).unwrap_err();
        assert!(matches!(err, ParseError::Manifest { line: 1, .. }), "{err}");
        let err = parse_export("{ \"manifest\": 7 }\n").unwrap_err();
        assert!(matches!(err, ParseError::Manifest { line: 1, .. }), "{err}");
    }
}
