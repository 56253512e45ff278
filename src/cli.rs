//! Command line of the `flashback-operator` binary. Every flag also reads an environment
//! variable, so the Helm chart and a shell configure the operator the same way.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::controller;
use crate::settings::Settings;
use crate::telemetry::{self, LogFormat};

/// A Kubernetes operator for Flashback storage repositories.
#[derive(Debug, Parser)]
#[command(name = "flashback-operator", version, about)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,

    #[command(flatten)]
    pub settings: Settings,

    /// Log format: text for people, json for log pipelines. Filter with RUST_LOG.
    #[arg(long, env = "FLASHBACK_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text, global = true)]
    pub log_format: LogFormat,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the operator (the default).
    Run,
    /// Print every CRD the operator serves, as YAML (or, with --dir, write one file each).
    Crds {
        /// Write each CRD into this directory as <plural>.<group>.yaml instead of printing.
        #[arg(long)]
        dir: Option<std::path::PathBuf>,
    },
    /// Log in to Flashback and put the session's refresh token into a credentials Secret.
    ///
    /// The password is asked on the terminal (or read from stdin); the API is --api-url.
    /// Prints the Secret as YAML, or with --apply writes it through the kubeconfig.
    Login {
        /// The account's email.
        #[arg(long)]
        email: String,
        /// The credentials Secret to write, as NAMESPACE/NAME.
        #[arg(long)]
        secret: crate::settings::SecretName,
        /// Write the Secret (server-side apply of its keys) instead of printing it.
        #[arg(long)]
        apply: bool,
    },
    /// Write an organisation's buckets and repositories as FlashbackBuckets and
    /// FlashbackRepositories that adopt them, to bring them under management.
    ///
    /// The token is read from FLASHBACK_TOKEN (or --token-file), never from a flag; the API is
    /// --api-url, and the objects name the namespace --namespace when given. Prints one YAML
    /// stream, or with --dir writes one file per object and a kustomization.yaml.
    Export {
        /// A workspace to export (repeat for several); every workspace of the organisation
        /// when unset.
        #[arg(long = "workspace", value_name = "ID")]
        workspaces: Vec<String>,
        /// Write one file per object and a kustomization.yaml into this new (or empty)
        /// directory, all or nothing, instead of printing.
        #[arg(long, value_name = "DIR")]
        dir: Option<std::path::PathBuf>,
        /// ObserveOnly (only read and report) or Full (correct what differs).
        #[arg(long, default_value = "ObserveOnly", value_parser = parse_management_policy)]
        management_policy: crate::crd::ManagementPolicy,
        /// Orphan (deleting an object leaves the remote) or Delete.
        #[arg(long, default_value = "Orphan", value_parser = parse_deletion_policy)]
        deletion_policy: crate::crd::DeletionPolicy,
        /// Read the Flashback token from this file instead of FLASHBACK_TOKEN.
        #[arg(long, value_name = "FILE")]
        token_file: Option<std::path::PathBuf>,
        /// The Flashback credentials Secret (key `token`) the objects name; unset, they use
        /// the operator's default credentials.
        #[arg(long, value_name = "NAME")]
        credentials_secret: Option<String>,
        /// Leave out what an object of the cluster (read through the kubeconfig) already
        /// manages, instead of marking it.
        #[arg(long)]
        skip_managed: bool,
    },
    /// Write the reference pages of docs/reference/ from their sources (`make docs`).
    #[command(hide = true)]
    Docs {
        /// The directory to write the pages into.
        #[arg(long, default_value = crate::reference::DIR)]
        dir: std::path::PathBuf,
    },
}

/// Runs the chosen subcommand and turns its outcome into the process exit code.
pub fn main(cli: Cli) -> ExitCode {
    match cli.command.unwrap_or(Command::Run) {
        Command::Crds { dir: None } => match crate::crd::crds_yaml() {
            Ok(yaml) => {
                print!("{yaml}");
                ExitCode::SUCCESS
            }
            Err(error) => {
                eprintln!("flashback-operator: cannot render the CRDs: {error}");
                ExitCode::FAILURE
            }
        },
        Command::Crds { dir: Some(dir) } => match crate::crd::write_crds(&dir) {
            Ok(()) => ExitCode::SUCCESS,
            Err(error) => {
                eprintln!("flashback-operator: cannot write the CRDs: {error}");
                ExitCode::FAILURE
            }
        },
        Command::Docs { dir } => match crate::reference::write(&dir) {
            Ok(()) => ExitCode::SUCCESS,
            Err(error) => {
                eprintln!("flashback-operator: cannot write the reference pages: {error:#}");
                ExitCode::FAILURE
            }
        },
        Command::Login {
            email,
            secret,
            apply,
        } => {
            let default = flashback_client::Url::parse(flashback_client::DEFAULT_BASE_URL)
                .expect("the default API URL is a URL");
            let request = crate::login::LoginRequest {
                name_api_url: cli.settings.api_url != default,
                api_url: cli.settings.api_url,
                email,
                secret,
                apply,
            };
            let outcome = tokio::runtime::Runtime::new()
                .map_err(anyhow::Error::from)
                .and_then(|runtime| runtime.block_on(crate::login::run(request)));
            match outcome {
                Ok(()) => ExitCode::SUCCESS,
                Err(error) => {
                    eprintln!("flashback-operator: {}", describe(&error));
                    ExitCode::FAILURE
                }
            }
        }
        Command::Export {
            workspaces,
            dir,
            management_policy,
            deletion_policy,
            token_file,
            credentials_secret,
            skip_managed,
        } => {
            let request = crate::export::Request {
                api_url: cli.settings.api_url,
                workspaces,
                dir,
                token_file,
                options: crate::export::Options {
                    management_policy,
                    deletion_policy,
                    namespace: cli.settings.namespace,
                    credentials_secret,
                    skip_managed,
                },
            };
            let outcome = tokio::runtime::Runtime::new()
                .map_err(anyhow::Error::from)
                .and_then(|runtime| {
                    runtime
                        .block_on(crate::export::run(request))
                        .map_err(anyhow::Error::from)
                });
            match outcome {
                Ok(()) => ExitCode::SUCCESS,
                Err(error) => {
                    let line = describe(&error).replace(['\n', '\r'], " ");
                    eprintln!("flashback-operator: {line}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Run => {
            if let Err(problem) = cli.settings.check() {
                eprintln!("flashback-operator: {problem}");
                return ExitCode::from(2);
            }
            telemetry::init(cli.log_format);
            let runtime = match tokio::runtime::Runtime::new() {
                Ok(runtime) => runtime,
                Err(error) => {
                    eprintln!("flashback-operator: cannot start the async runtime: {error}");
                    return ExitCode::FAILURE;
                }
            };
            let outcome = runtime.block_on(controller::run(cli.settings));
            // A blocking task still running (say, a name lookup of a tenant's API host) must
            // not hold the exit either.
            runtime.shutdown_timeout(std::time::Duration::from_secs(1));
            match outcome {
                Ok(()) => ExitCode::SUCCESS,
                Err(error) => {
                    tracing::error!(error = describe(&error), "operator stopped");
                    ExitCode::FAILURE
                }
            }
        }
    }
}

fn parse_management_policy(value: &str) -> Result<crate::crd::ManagementPolicy, String> {
    match value {
        "ObserveOnly" => Ok(crate::crd::ManagementPolicy::ObserveOnly),
        "Full" => Ok(crate::crd::ManagementPolicy::Full),
        _ => Err("expected ObserveOnly or Full".into()),
    }
}

fn parse_deletion_policy(value: &str) -> Result<crate::crd::DeletionPolicy, String> {
    match value {
        "Orphan" => Ok(crate::crd::DeletionPolicy::Orphan),
        "Delete" => Ok(crate::crd::DeletionPolicy::Delete),
        _ => Err("expected Orphan or Delete".into()),
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
    use crate::settings::SecretName;
    use std::time::Duration;

    #[test]
    fn defaults_are_what_a_user_would_pick() {
        let cli = Cli::try_parse_from(["flashback-operator"]).unwrap();
        assert!(cli.command.is_none());
        assert_eq!(
            cli.settings.api_url.as_str(),
            "https://backend.flashback.tech/"
        );
        assert_eq!(cli.settings.resync_interval, Duration::from_secs(600));
        assert_eq!(cli.settings.namespace, None);
        assert!(!cli.settings.leader_election);
        assert_eq!(cli.settings.metrics_address.to_string(), "0.0.0.0:8080");
        assert_eq!(cli.settings.concurrency, 16);
        assert_eq!(cli.settings.stats_batch_size, 100);
        assert_eq!(cli.settings.namespace_concurrency, 4);
        assert!(cli.settings.allowed_api_hosts.is_empty());
        assert_eq!(cli.settings.shutdown_grace, Duration::from_secs(10));
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
            cli.settings.allowed_api_hosts,
            ["api.flashback.tech", "127.0.0.1:8080"]
        );
    }

    #[test]
    fn leader_election_needs_a_namespace() {
        let cli = Cli::try_parse_from(["flashback-operator", "--leader-election"]).unwrap();
        assert!(cli.settings.leader_election);
        if std::env::var_os("POD_NAMESPACE").is_none() {
            let problem = cli.settings.check().unwrap_err();
            assert!(problem.contains("--leader-election-namespace"), "{problem}");
        }
        let cli = Cli::try_parse_from([
            "flashback-operator",
            "--leader-election=true",
            "--leader-election-namespace",
            "flashback-system",
        ])
        .unwrap();
        assert_eq!(cli.settings.check(), Ok(()));
        let lease = controller::leader::LeaseSettings::from_settings(&cli.settings).unwrap();
        assert_eq!(lease.namespace, "flashback-system");
        assert_eq!(lease.name, "flashback-operator");
        assert_eq!(lease.duration, Duration::from_secs(15));
    }

    #[test]
    fn an_optional_value_flag_does_not_swallow_the_subcommand() {
        let cli = Cli::try_parse_from(["flashback-operator", "--leader-election", "run"]).unwrap();
        assert!(matches!(cli.command, Some(Command::Run)));
        assert!(cli.settings.leader_election);
        let cli =
            Cli::try_parse_from(["flashback-operator", "--access-keys=false", "crds"]).unwrap();
        assert!(matches!(cli.command, Some(Command::Crds { dir: None })));
        assert!(!cli.settings.access_keys);
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
        assert_eq!(cli.settings.resync_interval, Duration::from_secs(30));
        assert_eq!(
            cli.settings.default_credentials_secret,
            Some(SecretName {
                namespace: "flashback-system".into(),
                name: "token".into()
            })
        );
    }

    #[test]
    fn export_reads_its_flags_and_never_a_token_from_one() {
        let cli = Cli::try_parse_from([
            "flashback-operator",
            "export",
            "--api-url",
            "http://127.0.0.1:9",
            "--workspace",
            "ws-a",
            "--workspace",
            "ws-b",
            "--dir",
            "flashback",
            "--management-policy",
            "Full",
            "--namespace",
            "team-a",
            "--skip-managed",
        ])
        .unwrap();
        let Some(Command::Export {
            workspaces,
            dir,
            management_policy,
            deletion_policy,
            skip_managed,
            ..
        }) = cli.command
        else {
            panic!("the export subcommand");
        };
        assert_eq!(workspaces, ["ws-a", "ws-b"]);
        assert_eq!(dir, Some("flashback".into()));
        assert_eq!(management_policy, crate::crd::ManagementPolicy::Full);
        assert_eq!(deletion_policy, crate::crd::DeletionPolicy::Orphan);
        assert!(skip_managed);
        assert_eq!(cli.settings.namespace.as_deref(), Some("team-a"));
        assert_eq!(cli.settings.api_url.as_str(), "http://127.0.0.1:9/");
        let Some(Command::Export {
            management_policy, ..
        }) = Cli::try_parse_from(["flashback-operator", "export"])
            .unwrap()
            .command
        else {
            panic!("the export subcommand");
        };
        assert_eq!(management_policy, crate::crd::ManagementPolicy::ObserveOnly);
        assert!(Cli::try_parse_from(["flashback-operator", "export", "--token", "t"]).is_err());
        let error = Cli::try_parse_from([
            "flashback-operator",
            "export",
            "--management-policy",
            "full",
        ])
        .unwrap_err();
        assert!(error.to_string().contains("ObserveOnly or Full"), "{error}");
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
