//! The workspace's boundaries, as cargo resolves them: the client and the emulator depend on
//! neither each other nor Kubernetes, and the operator's binary does not contain the emulator
//! (a dev-dependency only).

use std::collections::BTreeSet;
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
