//! The workspace's boundaries, as cargo resolves them: the client and the emulator depend on
//! neither each other nor Kubernetes, and the operator's binary does not contain the emulator
//! (a dev-dependency only). And, read from the source, the controller's: a kind's folder uses
//! what every kind shares, never another kind's folder.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The packages `package` depends on (normal dependencies, every depth), as `cargo tree`
/// names them.
fn dependencies(package: &str) -> BTreeSet<String> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let output = Command::new(cargo)
        .args([
            "tree",
            "--locked",
            "--offline",
            "--package",
            package,
            "--edges",
            "normal,build",
            "--prefix",
            "none",
            "--format",
            "{p}",
        ])
        .output()
        .expect("cargo runs");
    assert!(
        output.status.success(),
        "cargo tree failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter_map(|line| line.split_whitespace().next())
        .map(str::to_string)
        .collect()
}

#[test]
fn the_client_and_the_emulator_know_neither_each_other_nor_kubernetes() {
    let forbidden = ["kube", "k8s-openapi", "kube-runtime", "kube-client"];
    let client = dependencies("flashback-client");
    assert!(client.contains("reqwest"), "the tree was read: {client:?}");
    assert!(!client.contains("flashback-emulator"));
    assert!(!client.contains("flashback-operator"));
    let emulator = dependencies("flashback-emulator");
    assert!(emulator.contains("axum"), "the tree was read: {emulator:?}");
    assert!(!emulator.contains("flashback-client"));
    assert!(!emulator.contains("flashback-operator"));
    for name in forbidden {
        assert!(!client.contains(name), "the client depends on {name}");
        assert!(!emulator.contains(name), "the emulator depends on {name}");
    }
}

#[test]
fn the_operator_links_the_client_but_not_the_emulator() {
    let operator = dependencies("flashback-operator");
    assert!(operator.contains("flashback-client"));
    assert!(operator.contains("kube"));
    assert!(!operator.contains("flashback-emulator"));
}

/// The kinds of the controller: its folders (`src/controller/<kind>/`).
fn kinds(controller: &Path) -> Vec<String> {
    let mut kinds: Vec<String> = std::fs::read_dir(controller)
        .expect("src/controller is read")
        .map(|entry| entry.expect("src/controller is read").path())
        .filter(|path| path.is_dir())
        .filter_map(|path| Some(path.file_name()?.to_str()?.to_string()))
        .collect();
    kinds.sort();
    kinds
}

/// Every `.rs` file under `folder`, at any depth.
fn rust_files(folder: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(folder).expect("a kind's folder is read") {
        let path = entry.expect("a kind's folder is read").path();
        if path.is_dir() {
            files.extend(rust_files(&path));
        } else if path.extension().is_some_and(|ext| ext == "rs") {
            files.push(path);
        }
    }
    files
}

/// The lines (numbered from 1) of `source` that name the module `other` as a path does from
/// inside the controller: `controller::other`, `super::other` (at any depth), or `other`
/// among the items of a `controller::{...}` list.
fn naming(source: &str, other: &str) -> Vec<(usize, String)> {
    let is_ident = |c: char| c.is_ascii_alphanumeric() || c == '_';
    // `other` as a whole word at `at` in `text`.
    let word_at = |text: &str, at: usize| {
        let before = text[..at].chars().next_back();
        let after = text[at + other.len()..].chars().next();
        !before.is_some_and(is_ident) && !after.is_some_and(is_ident)
    };
    let mut found = Vec::new();
    let mut in_list = false;
    for (number, line) in source.lines().enumerate() {
        let mut hit = ["controller::", "super::"].iter().any(|prefix| {
            line.match_indices(&format!("{prefix}{other}"))
                .any(|(at, _)| word_at(line, at + prefix.len()))
        });
        // A `controller::{...}` list, possibly over several lines.
        let mut rest = line;
        loop {
            if !in_list {
                match rest.find("controller::{") {
                    Some(at) => {
                        in_list = true;
                        rest = &rest[at + "controller::{".len()..];
                    }
                    None => break,
                }
            }
            let end = rest.find('}').unwrap_or(rest.len());
            let items = &rest[..end];
            hit |= items.match_indices(other).any(|(at, _)| word_at(items, at));
            if end == rest.len() {
                break;
            }
            in_list = false;
            rest = &rest[end + 1..];
        }
        if hit {
            found.push((number + 1, line.trim().to_string()));
        }
    }
    found
}

#[test]
fn a_kind_names_other_kinds_only_as_paths_the_test_catches() {
    let cases = [
        ("use crate::controller::bucket::plan;", true),
        ("        crate::controller::bucket::plan::desired(&b)", true),
        ("use super::super::bucket::plan::Decision;", true),
        ("use super::bucket;", true),
        ("use crate::controller::{answers, bucket};", true),
        (
            "use crate::controller::{\n    answers,\n    bucket::plan,\n};",
            true,
        ),
        ("use crate::controller::stall::Stall;", false),
        ("use crate::controller::{answers, digest};", false),
        ("use crate::controller::buckets::plan;", false),
        ("use crate::crd::FlashbackBucket; // a bucket", false),
    ];
    for (source, crosses) in cases {
        assert_eq!(!naming(source, "bucket").is_empty(), crosses, "{source}");
    }
}

#[test]
fn no_kind_uses_another_kinds_folder() {
    let controller = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/controller");
    let kinds = kinds(&controller);
    assert!(kinds.len() >= 3, "the kinds' folders were found: {kinds:?}");
    let mut crossings = Vec::new();
    for kind in &kinds {
        for file in rust_files(&controller.join(kind)) {
            let source = std::fs::read_to_string(&file).expect("a source file is read");
            for other in kinds.iter().filter(|other| *other != kind) {
                for (line, text) in naming(&source, other) {
                    let file = file
                        .strip_prefix(env!("CARGO_MANIFEST_DIR"))
                        .unwrap_or(&file);
                    crossings.push(format!("{}:{line}: {text}", file.display()));
                }
            }
        }
    }
    assert!(
        crossings.is_empty(),
        "a kind's folder uses another kind's; what they share belongs in a module of \
         src/controller/ (stall.rs, create_attempt.rs, ...):\n{}",
        crossings.join("\n")
    );
}
