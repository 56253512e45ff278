//! Command line of the `flashback-operator` binary. Every flag also reads an environment
//! variable, so the Helm chart and a shell configure the operator the same way.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

use crate::controller::credentials::SecretName;
use crate::controller::{self, Settings};
use crate::telemetry::{self, LogFormat};

/// A Kubernetes operator for Flashback storage repositories.
#[derive(Debug, Parser)]
#[command(name = "flashback-operator", version, about)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,

    #[command(flatten)]
    pub run: RunArgs,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the operator (the default).
    Run,
    /// Print every CRD the operator serves, as YAML.
    Crds,
}

/// Settings of `flashback-operator run`.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// Flashback API base URL, used when a credentials Secret does not name one.
    #[arg(
        long,
        env = "FLASHBACK_API_URL",
        default_value = "https://backend.flashback.tech",
        global = true
    )]
    pub api_url: flashback_client::Url,

    /// Watch FlashbackRepositories in this namespace only; all namespaces when unset.
    #[arg(long, env = "FLASHBACK_WATCH_NAMESPACE", global = true)]
    pub namespace: Option<String>,

    /// Reconcile only FlashbackRepositories whose labels match this selector (e.g.
    /// `shard=a`), so that several operators can split the objects of one cluster.
    #[arg(long, env = "FLASHBACK_SELECTOR", global = true)]
    pub selector: Option<String>,

    /// Credentials for objects without credentialsSecretRef, as NAMESPACE/NAME of a Secret
    /// with key `token` (and optionally `apiUrl`).
    #[arg(long, env = "FLASHBACK_DEFAULT_CREDENTIALS_SECRET", global = true)]
    pub default_credentials_secret: Option<SecretName>,

    /// How often every object is compared with its remote repository (e.g. 30s, 5m, 1h).
    #[arg(long, env = "FLASHBACK_RESYNC_INTERVAL", default_value = "10m", value_parser = parse_duration, global = true)]
    pub resync_interval: Duration,

    /// How often repository statistics are read into status.stats (e.g. 30s, 5m).
    #[arg(long, env = "FLASHBACK_STATS_INTERVAL", default_value = "5m", value_parser = parse_duration, global = true)]
    pub stats_interval: Duration,

    /// Repository ids per statistics call.
    #[arg(long, env = "FLASHBACK_STATS_BATCH_SIZE", default_value_t = 100, value_parser = clap::value_parser!(u16).range(1..=500), global = true)]
    pub stats_batch_size: u16,

    /// How many objects are reconciled at once, in all namespaces together.
    #[arg(
        long,
        env = "FLASHBACK_CONCURRENCY",
        default_value_t = 16,
        value_parser = clap::value_parser!(u16).range(1..),
        global = true
    )]
    pub concurrency: u16,

    /// How many objects of one namespace are reconciled at once. A namespace whose Flashback
    /// API is slow holds at most this many of the --concurrency turns.
    #[arg(
        long,
        env = "FLASHBACK_NAMESPACE_CONCURRENCY",
        default_value_t = 4,
        value_parser = clap::value_parser!(u16).range(1..),
        global = true
    )]
    pub namespace_concurrency: u16,

    /// Hosts that a tenant's credentials Secret may name in its key `apiUrl`, comma-separated:
    /// `host` (any port), `host:port`, or `*` for any host. Unset, a tenant's Secret may not
    /// name an API URL at all (the operator would call any address the Secret names).
    #[arg(
        long,
        env = "FLASHBACK_ALLOWED_API_HOSTS",
        value_delimiter = ',',
        global = true
    )]
    pub allowed_api_hosts: Vec<String>,

    /// Flashback API calls per second allowed for each credential.
    #[arg(
        long,
        env = "FLASHBACK_API_RATE",
        default_value_t = 10.0,
        global = true
    )]
    pub api_rate: f64,

    /// Burst of Flashback API calls allowed for each credential.
    #[arg(long, env = "FLASHBACK_API_BURST", default_value_t = 20, global = true)]
    pub api_burst: u32,

    /// Address of the /metrics, /healthz and /readyz endpoints.
    #[arg(
        long,
        env = "FLASHBACK_METRICS_ADDRESS",
        default_value = "0.0.0.0:8080",
        global = true
    )]
    pub metrics_address: SocketAddr,

    /// Run as one of several replicas: only the holder of a Lease reconciles.
    #[arg(long, env = "FLASHBACK_LEADER_ELECTION", num_args = 0..=1, default_value_t = false, default_missing_value = "true", action = clap::ArgAction::Set, global = true)]
    pub leader_election: bool,

    /// Namespace of the leader Lease; defaults to POD_NAMESPACE.
    #[arg(long, env = "FLASHBACK_LEADER_ELECTION_NAMESPACE", global = true)]
    pub leader_election_namespace: Option<String>,

    /// Name of the leader Lease.
    #[arg(
        long,
        env = "FLASHBACK_LEADER_ELECTION_LEASE",
        default_value = "flashback-operator",
        global = true
    )]
    pub leader_election_lease: String,

    /// How long a leader's Lease lasts without renewal (renewed every third of it).
    #[arg(long, env = "FLASHBACK_LEADER_ELECTION_LEASE_DURATION", default_value = "15s", value_parser = parse_duration, global = true)]
    pub leader_election_lease_duration: Duration,

    /// Log format: text for people, json for log pipelines. Filter with RUST_LOG.
    #[arg(long, env = "FLASHBACK_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text, global = true)]
    pub log_format: LogFormat,

    /// Test-only: stop at a named step so a test can kill the process there.
    #[arg(
        long,
        env = "FLASHBACK_FAILPOINT",
        value_enum,
        hide = true,
        global = true
    )]
    pub failpoint: Option<controller::Failpoint>,
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    let duration = humantime::parse_duration(s)
        .map_err(|e| format!("{e} (write durations like 30s, 5m or 1h)"))?;
    if duration.is_zero() {
        return Err("must be longer than zero".into());
    }
    Ok(duration)
}

/// Runs the chosen subcommand and turns its outcome into the process exit code.
pub fn main(cli: Cli) -> ExitCode {
    match cli.command.unwrap_or(Command::Run) {
        Command::Crds => match crate::crd::crds_yaml() {
            Ok(yaml) => {
                print!("{yaml}");
                ExitCode::SUCCESS
            }
            Err(error) => {
                eprintln!("flashback-operator: cannot render the CRDs: {error}");
                ExitCode::FAILURE
            }
        },
        Command::Run => {
            telemetry::init(cli.run.log_format);
            let runtime = match tokio::runtime::Runtime::new() {
                Ok(runtime) => runtime,
                Err(error) => {
                    eprintln!("flashback-operator: cannot start the async runtime: {error}");
                    return ExitCode::FAILURE;
                }
            };
            let settings = match Settings::from_args(cli.run) {
                Ok(settings) => settings,
                Err(problem) => {
                    eprintln!("flashback-operator: {problem}");
                    return ExitCode::from(2);
                }
            };
            match runtime.block_on(controller::run(settings)) {
                Ok(()) => ExitCode::SUCCESS,
                Err(error) => {
                    tracing::error!(error = describe(&error), "operator stopped");
                    ExitCode::FAILURE
                }
            }
        }
    }
}

/// An error and its causes on one line, each cause once: many errors already repeat their
/// source in their own message.
fn describe(error: &anyhow::Error) -> String {
    let mut text = String::new();
    for cause in error.chain() {
        let cause = cause.to_string();
        if !text.contains(&cause) {
            if !text.is_empty() {
                text.push_str(": ");
            }
            text.push_str(&cause);
        }
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_what_a_user_would_pick() {
        let cli = Cli::try_parse_from(["flashback-operator"]).unwrap();
        assert!(cli.command.is_none());
        assert_eq!(cli.run.api_url.as_str(), "https://backend.flashback.tech/");
        assert_eq!(cli.run.resync_interval, Duration::from_secs(600));
        assert_eq!(cli.run.namespace, None);
        assert!(!cli.run.leader_election);
        assert_eq!(cli.run.metrics_address.to_string(), "0.0.0.0:8080");
        assert_eq!(cli.run.concurrency, 16);
        assert_eq!(cli.run.stats_batch_size, 100);
        assert_eq!(cli.run.namespace_concurrency, 4);
        assert!(cli.run.allowed_api_hosts.is_empty());
    }

    #[test]
    fn allowed_api_hosts_are_a_comma_separated_list() {
        let cli = Cli::try_parse_from([
            "flashback-operator",
            "--allowed-api-hosts",
            "api.flashback.tech,127.0.0.1:8080",
        ])
        .unwrap();
        assert_eq!(
            cli.run.allowed_api_hosts,
            ["api.flashback.tech", "127.0.0.1:8080"]
        );
    }

    #[test]
    fn leader_election_needs_a_namespace() {
        let cli = Cli::try_parse_from(["flashback-operator", "--leader-election"]).unwrap();
        assert!(cli.run.leader_election);
        if std::env::var_os("POD_NAMESPACE").is_none() {
            let problem = Settings::from_args(cli.run).unwrap_err();
            assert!(problem.contains("--leader-election-namespace"), "{problem}");
        }
        let cli = Cli::try_parse_from([
            "flashback-operator",
            "--leader-election=true",
            "--leader-election-namespace",
            "flashback-system",
        ])
        .unwrap();
        let lease = Settings::from_args(cli.run)
            .unwrap()
            .leader_election
            .unwrap();
        assert_eq!(lease.namespace, "flashback-system");
        assert_eq!(lease.name, "flashback-operator");
        assert_eq!(lease.duration, Duration::from_secs(15));
    }

    #[test]
    fn run_flags_follow_the_subcommand() {
        let cli = Cli::try_parse_from([
            "flashback-operator",
            "run",
            "--resync-interval",
            "30s",
            "--default-credentials-secret",
            "flashback-system/token",
        ])
        .unwrap();
        assert!(matches!(cli.command, Some(Command::Run)));
        assert_eq!(cli.run.resync_interval, Duration::from_secs(30));
        assert_eq!(
            cli.run.default_credentials_secret,
            Some(SecretName {
                namespace: "flashback-system".into(),
                name: "token".into()
            })
        );
    }

    #[test]
    fn an_error_chain_names_each_cause_once() {
        let inner = std::io::Error::other("no such file");
        let error = anyhow::Error::new(inner)
            .context("failed to read kubeconfig: no such file")
            .context("cannot reach Kubernetes");
        assert_eq!(
            describe(&error),
            "cannot reach Kubernetes: failed to read kubeconfig: no such file"
        );
    }

    #[test]
    fn bad_values_are_refused_with_a_hint() {
        let error =
            Cli::try_parse_from(["flashback-operator", "--resync-interval", "ten"]).unwrap_err();
        assert!(error.to_string().contains("30s, 5m or 1h"), "{error}");
        let error = Cli::try_parse_from([
            "flashback-operator",
            "--default-credentials-secret",
            "token",
        ])
        .unwrap_err();
        assert!(error.to_string().contains("NAMESPACE/NAME"), "{error}");
    }
}
