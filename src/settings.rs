//! The operator's settings: what `flashback-operator run` is told by flags or environment
//! variables. This module depends on nothing else of the operator's: the command line parses
//! into [`Settings`], and the controller takes them as they are.

use std::fmt;
use std::net::SocketAddr;
use std::str::FromStr;
use std::time::Duration;

/// What `flashback-operator run` is told. Each setting is written down here once: its flag, its
/// environment variable, its default and its help; the controller reads them from here.
#[derive(Debug, Clone, clap::Args)]
pub struct Settings {
    /// Flashback API base URL, used when a credentials Secret does not name one.
    #[arg(
        long,
        env = "FLASHBACK_API_URL",
        default_value = "https://backend.flashback.tech",
        global = true
    )]
    pub api_url: flashback_client::Url,

    /// Watch FlashbackRepositories in this namespace only; all namespaces when unset. For
    /// `export`, the namespace the exported objects name.
    #[arg(long, env = "FLASHBACK_WATCH_NAMESPACE", global = true)]
    pub namespace: Option<String>,

    /// Serve only the FlashbackRepositories, FlashbackBuckets and FlashbackAccessKeys whose
    /// labels match this selector (e.g. `flashback.tech/shard in (blue)`), so that several
    /// operators (shards) split the objects of one cluster. Objects outside it are still read,
    /// to tell who holds which remote id, but never written.
    #[arg(long, env = "FLASHBACK_SELECTOR", global = true)]
    pub selector: Option<String>,

    /// With --selector: how long an object that comes from another shard while that shard was
    /// acting on it (its status says Reconciling) waits before this one acts, so that a call
    /// the other shard sent just before it saw the new label has ended. Longer than one
    /// Flashback API write (30 s).
    #[arg(long, env = "FLASHBACK_HANDOVER_GRACE", default_value = "45s", value_parser = parse_duration, global = true)]
    pub handover_grace: Duration,

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

    /// Repository ids per statistics call, 1 to 500 (100 ids make a query of 3.7 KB).
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
        value_parser = parse_host,
        global = true
    )]
    pub allowed_api_hosts: Vec<String>,

    /// Flashback API calls per second allowed for each credential.
    #[arg(
        long,
        env = "FLASHBACK_API_RATE",
        default_value_t = 10.0,
        value_parser = parse_rate,
        global = true
    )]
    pub api_rate: f64,

    /// Burst of Flashback API calls allowed for each credential.
    #[arg(long, env = "FLASHBACK_API_BURST", default_value_t = 20, global = true)]
    pub api_burst: u32,

    /// After SIGTERM, how long in-flight reconciles may take to finish; those still waiting on
    /// a Flashback API then are cancelled (and looked at again by the next leader), so that
    /// one tenant's hanging API cannot hold the exit. Keep it well below the Pod's
    /// terminationGracePeriodSeconds: the Lease is released after it. The chart sets a third of
    /// terminationGracePeriodSeconds.
    #[arg(long, env = "FLASHBACK_SHUTDOWN_GRACE", default_value = "10s", value_parser = parse_duration, global = true)]
    pub shutdown_grace: Duration,

    /// Address of the /metrics, /healthz and /readyz endpoints.
    #[arg(
        long,
        env = "FLASHBACK_METRICS_ADDRESS",
        default_value = "0.0.0.0:8080",
        global = true
    )]
    pub metrics_address: SocketAddr,

    /// Serve FlashbackAccessKeys: write repository keys into Secrets. Needs permission to
    /// get, create, update and delete Secrets; off, the operator never writes a Secret.
    #[arg(long, env = "FLASHBACK_ACCESS_KEYS", num_args = 0..=1, require_equals = true, default_value_t = true, default_missing_value = "true", action = clap::ArgAction::Set, global = true)]
    pub access_keys: bool,

    /// Keep the sessions of credentials Secrets that hold a `refreshToken`, renewed tokens
    /// written into a `<name>-session` Secret beside each. Needs permission to create and
    /// update Secrets; off, such a Secret's `token` is used as it is, and one with only a
    /// `refreshToken` stalls its objects (InvalidCredentials).
    #[arg(long, env = "FLASHBACK_SESSIONS", num_args = 0..=1, require_equals = true, default_value_t = true, default_missing_value = "true", action = clap::ArgAction::Set, global = true)]
    pub sessions: bool,

    /// Run as one of several replicas: only the holder of a Lease reconciles.
    #[arg(long, env = "FLASHBACK_LEADER_ELECTION", num_args = 0..=1, require_equals = true, default_value_t = false, default_missing_value = "true", action = clap::ArgAction::Set, global = true)]
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
    #[arg(long, env = "FLASHBACK_LEADER_ELECTION_LEASE_DURATION", default_value = "15s", value_parser = parse_lease_duration, global = true)]
    pub leader_election_lease_duration: Duration,
}

impl Settings {
    /// Whether the settings can work together; an error names the flag to fix.
    pub fn check(&self) -> Result<(), String> {
        if self.leader_election && self.leader_election_namespace().is_none() {
            return Err(
                "--leader-election needs --leader-election-namespace (or POD_NAMESPACE)".into(),
            );
        }
        Ok(())
    }

    /// Where the leader Lease lives: the flag, else the pod's own namespace.
    pub fn leader_election_namespace(&self) -> Option<String> {
        self.leader_election_namespace
            .clone()
            .or_else(|| std::env::var("POD_NAMESPACE").ok())
            .filter(|namespace| !namespace.is_empty())
    }

    /// How long one listing of a workspace serves reconciles: long enough that the objects of
    /// a resync sweep share it, short enough that drift is seen a few seconds after a resync.
    pub fn listing_max_age(&self) -> Duration {
        (self.resync_interval / 20).clamp(Duration::from_millis(500), Duration::from_secs(5))
    }
}

/// `NAMESPACE/NAME` of a Secret.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SecretName {
    pub namespace: String,
    pub name: String,
}

impl fmt::Display for SecretName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

impl FromStr for SecretName {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.split_once('/') {
            Some((namespace, name))
                if !namespace.is_empty() && !name.is_empty() && !name.contains('/') =>
            {
                Ok(Self {
                    namespace: namespace.to_string(),
                    name: name.to_string(),
                })
            }
            _ => Err(format!("expected NAMESPACE/NAME, got {s:?}")),
        }
    }
}

/// A lease renewed every third of its duration needs a few seconds: shorter would renew in a
/// busy loop and hand the lease over on any pause.
fn parse_lease_duration(s: &str) -> Result<Duration, String> {
    let duration = parse_duration(s)?;
    if duration < Duration::from_secs(3) {
        return Err("must be at least 3s".into());
    }
    Ok(duration)
}

/// Calls per second: positive and finite (zero or less would mean no limit at all).
fn parse_rate(s: &str) -> Result<f64, String> {
    match s.trim().parse::<f64>() {
        Ok(rate) if rate.is_finite() && rate >= 0.001 => Ok(rate),
        Ok(_) => Err("must be a number of calls per second of at least 0.001".into()),
        Err(_) => Err(format!("expected a number of calls per second, got {s:?}")),
    }
}

/// One allowed host: trimmed, and with nothing but a host (and port) in it.
fn parse_host(s: &str) -> Result<String, String> {
    let host = s.trim();
    if host.is_empty() || host.chars().any(|c| c.is_whitespace() || c == '/') {
        return Err(format!("expected host, host:port or *, got {s:?}"));
    }
    Ok(host.to_string())
}

pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let duration = humantime::parse_duration(s)
        .map_err(|e| format!("{e} (write durations like 30s, 5m or 1h)"))?;
    if duration.is_zero() {
        return Err("must be longer than zero".into());
    }
    Ok(duration)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// The settings these flags give, every other one at its default.
    pub(crate) fn from_flags(flags: &[&str]) -> Settings {
        #[derive(clap::Parser)]
        struct Flags {
            #[command(flatten)]
            settings: Settings,
        }
        let args = std::iter::once("flashback-operator").chain(flags.iter().copied());
        <Flags as clap::Parser>::try_parse_from(args)
            .expect("valid flags")
            .settings
    }

    #[test]
    fn values_that_would_break_the_operator_are_refused() {
        let refused = |flags: &[&str]| {
            #[derive(clap::Parser)]
            struct Flags {
                #[command(flatten)]
                settings: Settings,
            }
            let args = std::iter::once("flashback-operator").chain(flags.iter().copied());
            <Flags as clap::Parser>::try_parse_from(args)
                .err()
                .map(|e| e.to_string())
                .unwrap_or_default()
        };
        assert!(refused(&["--api-rate", "0"]).contains("at least 0.001"));
        assert!(refused(&["--api-rate", "NaN"]).contains("at least 0.001"));
        assert!(refused(&["--leader-election-lease-duration", "1ms"]).contains("at least 3s"));
        assert!(refused(&["--allowed-api-hosts", "a,,b"]).contains("expected host"));
        assert_eq!(
            from_flags(&["--allowed-api-hosts", "api.example, 127.0.0.1:8080"]).allowed_api_hosts,
            ["api.example", "127.0.0.1:8080"]
        );
        assert_eq!(from_flags(&["--api-rate", "0.5"]).api_rate, 0.5);
    }

    #[test]
    fn listings_live_a_twentieth_of_the_resync_within_bounds() {
        let age = |resync: &str| from_flags(&["--resync-interval", resync]).listing_max_age();
        assert_eq!(age("10m"), Duration::from_secs(5));
        assert_eq!(age("60s"), Duration::from_secs(3));
        assert_eq!(age("3s"), Duration::from_millis(500));
    }
}
