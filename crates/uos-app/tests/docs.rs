//! The documentation holds together: the configuration reference is the one generated from the
//! configuration types (`UPDATE_DOCS=1` rewrites it), `llms.txt` lists every file under `docs/`
//! and nothing that does not exist, and every relative link of the docs and the README leads to
//! a file (and to a heading, when it names one).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeSet;
use std::path::{Component, Path, PathBuf};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn read(relative: &str) -> String {
    std::fs::read_to_string(root().join(relative))
        .unwrap_or_else(|e| panic!("cannot read {relative}: {e}"))
}

/// Every file under `docs/`, as a path relative to the repository root with `/` separators.
fn docs_files() -> Vec<String> {
    fn walk(dir: &Path, prefix: &str, out: &mut Vec<String>) {
        for entry in std::fs::read_dir(dir).expect("read a docs directory") {
            let entry = entry.expect("read a docs directory entry");
            let name = entry.file_name().to_string_lossy().into_owned();
            let path = format!("{prefix}/{name}");
            if entry.file_type().expect("file type").is_dir() {
                walk(&entry.path(), &path, out);
            } else {
                out.push(path);
            }
        }
    }
    let mut out = Vec::new();
    walk(&root().join("docs"), "docs", &mut out);
    out.sort();
    out
}

/// The lines of `markdown` outside fenced code blocks (whose text is code, not links or
/// headings).
fn prose_lines(markdown: &str) -> impl Iterator<Item = &str> {
    let mut in_fence = false;
    markdown.lines().filter(move |line| {
        if line.trim_start().starts_with("```") {
            in_fence = !in_fence;
            return false;
        }
        !in_fence
    })
}

/// The targets of the markdown links `[text](target)` outside code blocks and code spans.
fn links(markdown: &str) -> Vec<String> {
    let mut out = Vec::new();
    for line in prose_lines(markdown) {
        // Code spans are the odd-numbered pieces between backticks.
        let prose: String = line
            .split('`')
            .enumerate()
            .map(|(i, piece)| if i % 2 == 0 { piece } else { "" })
            .collect::<Vec<_>>()
            .join("");
        let mut rest = prose.as_str();
        while let Some(start) = rest.find("](") {
            let after = &rest[start + 2..];
            let Some(end) = after.find(')') else { break };
            out.push(after[..end].trim().to_string());
            rest = &after[end + 1..];
        }
    }
    out
}

/// `base_dir/target` resolved without touching the file system, relative to the repository
/// root; `None` when it leads outside the repository (`../shared/DESIGN.md`).
fn resolve(base_dir: &str, target: &str) -> Option<String> {
    let mut parts: Vec<String> = Vec::new();
    for component in Path::new(base_dir).join(target).components() {
        match component {
            Component::Normal(p) => parts.push(p.to_string_lossy().into_owned()),
            Component::ParentDir => {
                parts.pop()?;
            }
            _ => {}
        }
    }
    Some(parts.join("/"))
}

/// The anchors a markdown file offers: GitHub's slug of every heading (lower case, punctuation
/// but `-` and `_` dropped, spaces as `-`, repeats numbered), and explicit `<a id="…">`.
fn anchors(markdown: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for line in prose_lines(markdown) {
        if let Some(heading) = line.strip_prefix('#') {
            let text = heading.trim_start_matches('#').trim();
            let slug: String = text
                .to_lowercase()
                .chars()
                .filter(|c| c.is_alphanumeric() || matches!(c, ' ' | '-' | '_'))
                .map(|c| if c == ' ' { '-' } else { c })
                .collect();
            let mut unique = slug.clone();
            let mut n = 0;
            while out.contains(&unique) {
                n += 1;
                unique = format!("{slug}-{n}");
            }
            out.insert(unique);
        }
        let mut rest = line;
        while let Some(start) = rest.find("<a id=\"") {
            let after = &rest[start + 7..];
            let Some(end) = after.find('"') else { break };
            out.insert(after[..end].to_string());
            rest = &after[end..];
        }
    }
    out
}

fn exists(relative: &str) -> bool {
    root().join(relative).exists()
}

/// The files `llms.txt` links to.
fn llms_entries() -> Vec<String> {
    links(&read("llms.txt"))
        .into_iter()
        .map(|target| resolve("", &target).expect("llms.txt links inside the repository"))
        .collect()
}

#[test]
fn configuration_md_is_generated_from_the_types() {
    let generated = uos_app::config_doc::configuration_markdown();
    if std::env::var_os("UPDATE_DOCS").is_some() {
        std::fs::write(root().join("docs/configuration.md"), &generated).unwrap();
        return;
    }
    assert!(
        read("docs/configuration.md") == generated,
        "docs/configuration.md is stale: regenerate it with \
         `UPDATE_DOCS=1 cargo test -p uos-app --test docs`"
    );
}

#[test]
fn llms_txt_lists_every_doc_and_only_existing_files() {
    let listed = llms_entries();
    let unlisted: Vec<String> = docs_files()
        .into_iter()
        .filter(|f| !listed.contains(f))
        .collect();
    assert!(
        unlisted.is_empty(),
        "llms.txt does not list {unlisted:?}: add a `- [Title](path): one line` entry for each"
    );
    let missing: Vec<&String> = listed.iter().filter(|f| !exists(f)).collect();
    assert!(
        missing.is_empty(),
        "llms.txt lists files that do not exist: {missing:?}"
    );
    assert!(
        listed.iter().any(|f| f == "README.md"),
        "llms.txt does not list the README"
    );
}

#[test]
fn relative_links_in_the_docs_and_the_readme_lead_somewhere() {
    let mut sources = vec!["README.md".to_string()];
    sources.extend(docs_files().into_iter().filter(|f| f.ends_with(".md")));
    let mut broken = Vec::new();
    for source in &sources {
        let base_dir = Path::new(source)
            .parent()
            .map(|p| p.to_string_lossy().into_owned())
            .unwrap_or_default();
        for target in links(&read(source)) {
            if target.is_empty() || target.contains("://") || target.starts_with("mailto:") {
                continue;
            }
            let (path, anchor) = match target.split_once('#') {
                Some((path, anchor)) => (path, Some(anchor)),
                None => (target.as_str(), None),
            };
            let file = if path.is_empty() {
                source.clone()
            } else {
                // Outside the repository (the shared design notes) is not this test's to check.
                let Some(file) = resolve(&base_dir, path) else {
                    continue;
                };
                file
            };
            if !exists(&file) {
                broken.push(format!("{source}: ({target}): no file {file}"));
                continue;
            }
            if let Some(anchor) = anchor.filter(|_| file.ends_with(".md")) {
                if !anchors(&read(&file)).contains(anchor) {
                    broken.push(format!(
                        "{source}: ({target}): no heading #{anchor} in {file}"
                    ));
                }
            }
        }
    }
    assert!(broken.is_empty(), "broken links:\n{}", broken.join("\n"));
}

#[test]
fn the_link_checker_finds_what_it_must() {
    // The checks above pass vacuously if parsing finds nothing; this pins the parsing down.
    let md = "See [a](docs/a.md#x-y) and `[b](not/a/link.md)`.\n```\n[c](in/code.md)\n```\n\
              ## X y\n# X y\n<a id=\"z\"></a>\n";
    assert_eq!(links(md), vec!["docs/a.md#x-y"]);
    assert_eq!(
        anchors(md).into_iter().collect::<Vec<_>>(),
        vec!["x-y", "x-y-1", "z"]
    );
    assert_eq!(
        resolve("docs/runbooks", "../dr.md").as_deref(),
        Some("docs/dr.md")
    );
    assert_eq!(resolve("", "../shared/DESIGN.md"), None);
}
