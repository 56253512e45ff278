//! The `flashback-emulator` binary's own words.

use std::process::Command;

fn run(flag: &str) -> String {
    let output = Command::new(env!("CARGO_BIN_EXE_flashback-emulator"))
        .arg(flag)
        .env_remove("FLASHBACK_EMULATOR_TOKENS")
        .output()
        .unwrap();
    assert!(output.status.success(), "{flag}: {output:?}");
    String::from_utf8(output.stdout).unwrap()
}

#[test]
fn help_says_what_the_emulator_serves_and_how_to_drive_it() {
    let help = run("--help");
    assert!(
        help.starts_with(
            "A local emulator of the Flashback platform API, for development, demos and tests.\n\n"
        ),
        "{help}"
    );
    let lines: Vec<&str> = help.lines().collect();
    for line in [
        "  GET /_emulator/health                   liveness",
        "  GET|DELETE /_emulator/calls             call counters by method, route and status; reset",
        "  GET|PUT|DELETE /_emulator/faults        injected latency, errors, rate limits, failNext",
        "  PATCH /_emulator/repos/{id}             change a repo behind the API's back",
        "  PUT /_emulator/repos/{id}/stats         set a repo's usage figures",
        "  PUT /_emulator/buckets/{id}/stats       set a bucket's usage figures",
        "  GET|PUT /_emulator/rules                soft deletes, refused cloud keys, workspaces",
        "  GET /_emulator/repos/{id}/keys          a repo's access keys, as the API lists them",
        "  GET /_emulator/repos/{id}/keys/verify   ?key=&secret=: {\"live\": bool}, is that key usable",
        "Repository access keys: /repo/{id}/apikey (list, create) and /repo/{id}/apikey/{keyId}",
        "(list, create, update, delete, stats, status, available, validate), with the API's checks,",
        "Tokens: every call needs `Authorization: Bearer <token>` with one of the --token values,",
        "  GET|PUT /_emulator/sessions             token lifetimes; login, refresh, reuse counters",
        "refresh token for a new pair. A spent refresh token sent again is refused, counted as a",
        "State: kept in memory, and with --state-file also in a JSON file, written shortly after every",
        "The first line on stdout is `listening on http://HOST:PORT`; logs go to stderr.",
    ] {
        assert!(lines.contains(&line), "missing {line:?} in:\n{help}");
    }
    // `-h` keeps to the first sentence.
    assert_eq!(
        run("-h").lines().next(),
        Some("A local emulator of the Flashback platform API, for development, demos and tests")
    );
}
