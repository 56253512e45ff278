//! What every reconcile shares: clients, the remote view, the event recorder, settings.

use std::time::Duration;

use kube::runtime::events::Recorder;

use crate::controller::backoff::Backoff;
use crate::controller::credentials::SecretName;
use crate::controller::remote::Remote;

/// A named step where a test can stop the operator, to kill it exactly there.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Failpoint {
    /// Stop after the remote create answered, before the status is written.
    PauseAfterRemoteCreate,
}

pub struct Context {
    pub kube: kube::Client,
    pub remote: Remote,
    pub recorder: Recorder,
    pub backoff: Backoff,
    pub metrics: std::sync::Arc<crate::metrics::Metrics>,
    /// API URL for credentials that do not name one.
    pub api_url: reqwest::Url,
    pub default_credentials: Option<SecretName>,
    pub resync_interval: Duration,
    pub failpoint: Option<Failpoint>,
}
