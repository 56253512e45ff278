//! The documentation's links: every relative link of the README, `docs/` and the other Markdown
//! files of the repository names a file that exists, and every `#anchor` a heading of its
//! target, as the forge slugs it. Needs no cluster (`make unit` runs it).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Every Markdown file of the repository, build output and Git's own files aside.
fn markdown_files(dir: &Path, into: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        if path.is_dir() {
            if !name.starts_with('.') && name != "target" {
                markdown_files(&path, into);
            }
        } else if name.ends_with(".md") {
            into.push(path);
        }
    }
}

/// The lines of `text` outside fenced code blocks, with inline code spans blanked out.
fn prose_lines(text: &str) -> Vec<String> {
    let mut lines = Vec::new();
    let mut fenced = false;
    for line in text.lines() {
        if line.trim_start().starts_with("```") {
            fenced = !fenced;
            continue;
        }
        if fenced {
            continue;
        }
        let mut prose = String::with_capacity(line.len());
        for (i, part) in line.split('`').enumerate() {
            if i % 2 == 0 {
                prose.push_str(part);
            } else {
                prose.push_str(&" ".repeat(part.len() + 2));
            }
        }
        lines.push(prose);
    }
    lines
}

/// The targets of the inline links (`[text](target)`, images too) and of the link reference
/// definitions (`[name]: target`) of `text`.
fn link_targets(text: &str) -> Vec<String> {
    let mut targets = Vec::new();
    for line in prose_lines(text) {
        let trimmed = line.trim_start();
        if trimmed.starts_with('[')
            && let Some((_, rest)) = trimmed.split_once("]:")
        {
            if let Some(target) = rest.split_whitespace().next() {
                targets.push(target.to_string());
            }
            continue;
        }
        let mut rest = line.as_str();
        while let Some(at) = rest.find("](") {
            rest = &rest[at + 2..];
            let end = rest.find(')').unwrap_or(rest.len());
            let target = rest[..end].split_whitespace().next().unwrap_or_default();
            targets.push(target.trim_matches(|c| c == '<' || c == '>').to_string());
            rest = &rest[end..];
        }
    }
    targets
}

/// A heading's anchor as GitHub makes it: lower case, punctuation other than `-` and `_`
/// dropped, each space a `-`.
fn slug(heading: &str) -> String {
    heading
        .trim()
        .to_lowercase()
        .chars()
        .filter(|c| c.is_alphanumeric() || matches!(c, ' ' | '-' | '_'))
        .map(|c| if c == ' ' { '-' } else { c })
        .collect()
}

/// The heading text as the forge shows it: code spans and links reduced to their text.
fn heading_text(heading: &str) -> String {
    let mut text = heading.replace('`', "");
    while let (Some(open), Some(middle)) = (text.find('['), text.find("](")) {
        let Some(close) = text[middle..].find(')') else {
            break;
        };
        if open > middle {
            break;
        }
        text = format!(
            "{}{}{}",
            &text[..open],
            &text[open + 1..middle],
            &text[middle + close + 1..]
        );
    }
    text
}

/// The anchors of a Markdown file's headings; a repeated slug gets `-1`, `-2`, ...
fn anchors(text: &str) -> Vec<String> {
    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    let mut anchors = Vec::new();
    let mut fenced = false;
    for line in text.lines() {
        if line.trim_start().starts_with("```") {
            fenced = !fenced;
            continue;
        }
        let Some(heading) = line.strip_prefix('#') else {
            continue;
        };
        let heading = heading.trim_start_matches('#');
        if fenced || !heading.starts_with(' ') {
            continue;
        }
        let base = slug(&heading_text(heading));
        let count = seen.entry(base.clone()).or_default();
        anchors.push(if *count == 0 {
            base.clone()
        } else {
            format!("{base}-{count}")
        });
        *count += 1;
    }
    anchors
}

#[test]
fn headings_slug_as_on_the_forge() {
    assert_eq!(
        slug(&heading_text("Alerts (`metrics.prometheusRule.enabled`)")),
        "alerts-metricsprometheusruleenabled"
    );
    assert_eq!(
        slug(&heading_text(
            "The control API (`/_emulator/`, no auth, never affected by faults)"
        )),
        "the-control-api-_emulator-no-auth-never-affected-by-faults"
    );
    assert_eq!(
        slug(&heading_text("Argo CD and [Flux](https://fluxcd.io)")),
        "argo-cd-and-flux"
    );
    assert_eq!(
        anchors("# A\n```\n# not a heading\n```\n## A\n#hashtag\n"),
        ["a", "a-1"]
    );
    assert_eq!(
        link_targets("[a](docs/x.md#y) `[b](no.md)` [c]\n\n[c]: https://e.org\n"),
        ["docs/x.md#y", "https://e.org"]
    );
}

#[test]
fn every_relative_link_and_anchor_of_the_docs_resolves() {
    let root = root();
    let mut files = Vec::new();
    markdown_files(&root, &mut files);
    files.sort();
    assert!(
        files.iter().any(|f| f.ends_with("docs/resources.md")),
        "the docs were found: {files:?}"
    );
    let mut broken = Vec::new();
    for file in &files {
        let text = std::fs::read_to_string(file).unwrap();
        let name = file.strip_prefix(&root).unwrap().display().to_string();
        for target in link_targets(&text) {
            if target.is_empty() || target.contains("://") || target.starts_with("mailto:") {
                continue;
            }
            let (path, anchor) = match target.split_once('#') {
                Some((path, anchor)) => (path, Some(anchor)),
                None => (target.as_str(), None),
            };
            let linked = if path.is_empty() {
                file.clone()
            } else {
                file.parent().unwrap().join(path)
            };
            if !linked.exists() {
                broken.push(format!("{name}: {target}: no such file"));
                continue;
            }
            let Some(anchor) = anchor else { continue };
            if !linked.is_file() || !path_is_markdown(&linked) {
                broken.push(format!(
                    "{name}: {target}: an anchor into a non-Markdown file"
                ));
                continue;
            }
            let headings = anchors(&std::fs::read_to_string(&linked).unwrap());
            if !headings.iter().any(|h| h == anchor) {
                broken.push(format!("{name}: {target}: no such heading"));
            }
        }
    }
    assert!(broken.is_empty(), "broken links:\n{}", broken.join("\n"));
}

fn path_is_markdown(path: &Path) -> bool {
    path.extension().is_some_and(|ext| ext == "md")
}
