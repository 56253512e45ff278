//! `flashback-emulator`: a local Flashback API server. Its first line on stdout is
//! `listening on http://HOST:PORT`.
#![forbid(unsafe_code)]

use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context;
use clap::Parser;
use flashback_emulator::EmulatorConfig;
use tracing_subscriber::EnvFilter;

/// What `--help` says before the options (`-h` shows only its first line).
const LONG_ABOUT: &str = "\
A local emulator of the Flashback platform API, for development, demos and tests.

It serves over plain HTTP the repository and bucket routes of the Flashback REST API, as the
official client calls them: /repo (list, create, update, delete, stats, validate) and /bucket
(list, create, update, delete, stats, status, available, validate), with the API's checks,
error codes and JSON bodies, /workspace and /health. A path the API does not have answers 404
with a JSON body.

Repository access keys: /repo/{id}/apikey (list, create) and /repo/{id}/apikey/{keyId}
(update, delete). The plain secret is answered once, by the create; the emulator keeps only its
SHA-256, and lists a sealed look-alike, so no listing and no state file ever holds it.

Tokens: every call needs `Authorization: Bearer <token>` with one of the --token values,
each its own organisation, which sees nothing of the others, or the access token of a
session of one. Other tokens get 401.

Sessions: POST /user/login {email, password} (a --user) answers an access token living
--access-token-lifetime and a refresh token; POST /user/refresh {refresh_token} spends the
refresh token for a new pair. A spent refresh token sent again is refused, counted as a
reuse, and ends its session; POST /user/logout ends one.

State: kept in memory, and with --state-file also in a JSON file, written shortly after every
change and on shutdown (SIGTERM, ctrl-c), and read back at start.

Control routes, without auth, for tests:
  GET /_emulator/health                   liveness
  GET|DELETE /_emulator/calls             call counters by method, route and status; reset
  GET|PUT|DELETE /_emulator/faults        injected latency, errors, rate limits, failNext
  GET|PUT /_emulator/sessions             token lifetimes; login, refresh, reuse counters
  POST /_emulator/sessions                {org}: a new session of the organisation of a token
  POST /_emulator/sessions/revoke         {tokenId}: end a session
  POST /_emulator/users                   {email, password, org}: a person who can log in
  PATCH /_emulator/repos/{id}             change a repo behind the API's back
  PUT /_emulator/repos/{id}/stats         set a repo's usage figures
  GET /_emulator/repos/{id}/keys          a repo's access keys, as the API lists them
  GET /_emulator/repos/{id}/keys/verify   ?key=&secret=: {\"live\": bool}, is that key usable
  PUT /_emulator/buckets/{id}/stats       set a bucket's usage figures
  GET|PUT /_emulator/limits               quotas (bucketsPerOrganisation)
  GET|PUT /_emulator/rules                soft deletes, refused cloud keys, workspaces
  PUT /_emulator/buckets/{id}/credentials {\"valid\": bool}: the cloud takes its credentials

The first line on stdout is `listening on http://HOST:PORT`; logs go to stderr.";

/// A local emulator of the Flashback platform API, for development, demos and tests.
#[derive(Debug, Parser)]
#[command(name = "flashback-emulator", version, about, long_about = LONG_ABOUT)]
struct Args {
    /// Address to listen on; port 0 picks a free port.
    #[arg(
        long,
        env = "FLASHBACK_EMULATOR_LISTEN",
        default_value = "127.0.0.1:8080"
    )]
    listen: SocketAddr,

    /// An accepted bearer token, each its own organisation. Repeat the flag, or separate with
    /// commas.
    #[arg(
        long = "token",
        env = "FLASHBACK_EMULATOR_TOKENS",
        value_delimiter = ',',
        required = true,
        hide_env_values = true
    )]
    tokens: Vec<String>,

    /// A JSON file that keeps the state across restarts (memory only when absent).
    #[arg(long, env = "FLASHBACK_EMULATOR_STATE_FILE")]
    state_file: Option<PathBuf>,

    /// A person who can log in with `POST /user/login`, as EMAIL:PASSWORD, in the
    /// organisation of the first token. Repeat the flag, or separate with commas.
    #[arg(
        long = "user",
        env = "FLASHBACK_EMULATOR_USERS",
        value_delimiter = ',',
        hide_env_values = true,
        value_parser = parse_user
    )]
    users: Vec<(String, String)>,

    /// How long the access tokens of sessions (logins and refreshes) live, e.g. `1h`, `3s`.
    #[arg(
        long,
        env = "FLASHBACK_EMULATOR_ACCESS_TOKEN_LIFETIME",
        default_value = "1h",
        value_parser = humantime::parse_duration
    )]
    access_token_lifetime: std::time::Duration,

    /// A deleted repository's or bucket's name stays taken (the service's deletes are soft):
    /// a create of that name answers NAME_ALREADY_USED. Without it a delete frees the name.
    #[arg(long, env = "FLASHBACK_EMULATOR_SOFT_DELETE_KEEPS_NAMES")]
    soft_delete_keeps_names: bool,

    /// A workspace every organisation has (repeat the flag, or separate with commas): writes
    /// naming another are refused, and GET /workspace lists these. Without it any workspace
    /// a call names exists.
    #[arg(
        long = "workspace",
        env = "FLASHBACK_EMULATOR_WORKSPACES",
        value_delimiter = ','
    )]
    workspaces: Vec<String>,

    /// Log filter (tracing `EnvFilter` syntax); logs go to stderr.
    #[arg(long, env = "FLASHBACK_EMULATOR_LOG", default_value = "info")]
    log: String,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    tracing_subscriber::fmt()
        .with_env_filter(EnvFilter::try_new(&args.log).context("bad --log filter")?)
        .with_writer(std::io::stderr)
        .init();
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("binding {}", args.listen))?;
    let address = listener.local_addr()?;
    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "listening on http://{address}")?;
    stdout.flush()?;
    drop(stdout);
    tracing::info!(%address, organisations = args.tokens.len(), "emulator started");

    let config = EmulatorConfig {
        tokens: args.tokens,
        state_file: args.state_file,
        users: args.users,
        access_token_lifetime: Some(args.access_token_lifetime),
    };
    let rules = flashback_emulator::Rules {
        soft_delete_keeps_names: args.soft_delete_keeps_names,
        workspaces: (!args.workspaces.is_empty()).then_some(args.workspaces),
        ..flashback_emulator::Rules::default()
    };
    flashback_emulator::serve_with_rules(listener, config, rules, shutdown_signal()).await?;
    tracing::info!("emulator stopped");
    Ok(())
}

/// `EMAIL:PASSWORD`, split at the first colon.
fn parse_user(value: &str) -> Result<(String, String), String> {
    match value.split_once(':') {
        Some((email, password)) if !email.is_empty() && !password.is_empty() => {
            Ok((email.to_owned(), password.to_owned()))
        }
        _ => Err("expected EMAIL:PASSWORD".to_owned()),
    }
}

/// Completes on SIGTERM or ctrl-c.
async fn shutdown_signal() {
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(error) => {
                tracing::warn!(%error, "cannot watch SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        () = terminate => {}
    }
}
