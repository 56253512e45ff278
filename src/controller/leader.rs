//! Leader election on a `coordination.k8s.io/v1` Lease, so that of several replicas exactly
//! one reconciles. The holder renews the Lease every third of its duration; another replica
//! takes it over once the Lease has not changed for a whole duration, or at once when the
//! holder released it on shutdown. Expiry is measured on this replica's own clock from when it
//! last saw the Lease change, never by comparing clocks of two machines. Every write carries
//! the resourceVersion that was read, so two replicas never both win.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use k8s_openapi::jiff::Timestamp;
use kube::api::{ObjectMeta, PostParams};
use kube::{Api, Client};
use tracing::{info, warn};

use crate::settings::Settings;

/// Where the Lease lives and who this replica is.
#[derive(Debug, Clone)]
pub struct LeaseSettings {
    pub namespace: String,
    pub name: String,
    pub identity: String,
    pub duration: Duration,
}

impl LeaseSettings {
    /// The Lease of these settings; `None` without `--leader-election` (or without a
    /// namespace for it, which `Settings::check` refuses first).
    pub fn from_settings(settings: &Settings) -> Option<Self> {
        if !settings.leader_election {
            return None;
        }
        Some(Self {
            namespace: settings.leader_election_namespace()?,
            name: settings.leader_election_lease.clone(),
            identity: replica_identity(),
            duration: settings.leader_election_lease_duration,
        })
    }

    /// How often the holder renews, and a candidate retries.
    pub fn retry_period(&self) -> Duration {
        self.duration / 3
    }
}

/// This replica's name in the Lease: the pod name when there is one, made unique per process.
fn replica_identity() -> String {
    let base = std::env::var("POD_NAME")
        .or_else(|_| std::env::var("HOSTNAME"))
        .unwrap_or_else(|_| "flashback-operator".into());
    format!("{base}-{}", &uuid::Uuid::new_v4().simple().to_string()[..8])
}

/// What a replica does next with the Lease it read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// There is no Lease yet: create it, held by us.
    Create,
    /// We hold it: renew it.
    Renew,
    /// Nobody holds it, or the holder let it expire: take it over.
    TakeOver,
    /// Someone else holds it: look again later.
    Wait,
}

/// The pure rule of the election. `unchanged_for` is how long this replica has seen the
/// Lease exactly as it is now.
pub fn next_step(lease: Option<&LeaseSpec>, identity: &str, unchanged_for: Duration) -> Step {
    let Some(spec) = lease else {
        return Step::Create;
    };
    match spec.holder_identity.as_deref() {
        Some(holder) if holder == identity => Step::Renew,
        None | Some("") => Step::TakeOver,
        Some(_) => {
            let duration = Duration::from_secs(
                u64::try_from(spec.lease_duration_seconds.unwrap_or(0)).unwrap_or(0),
            );
            if unchanged_for > duration {
                Step::TakeOver
            } else {
                Step::Wait
            }
        }
    }
}

/// The Lease spec that records `identity` as the holder at `now`.
fn held_by(
    previous: Option<&LeaseSpec>,
    settings: &LeaseSettings,
    now: Timestamp,
    new_term: bool,
) -> LeaseSpec {
    let transitions = previous.and_then(|p| p.lease_transitions).unwrap_or(0);
    LeaseSpec {
        holder_identity: Some(settings.identity.clone()),
        lease_duration_seconds: Some(
            i32::try_from(settings.duration.as_secs())
                .unwrap_or(i32::MAX)
                .max(1),
        ),
        acquire_time: if new_term {
            Some(MicroTime(now))
        } else {
            previous.and_then(|p| p.acquire_time.clone())
        },
        renew_time: Some(MicroTime(now)),
        lease_transitions: Some(if new_term && previous.is_some() {
            transitions + 1
        } else {
            transitions
        }),
        ..LeaseSpec::default()
    }
}

/// What makes a Lease record different from another: its holder and last renewal.
type Fingerprint = Option<(Option<String>, Option<MicroTime>)>;

/// One replica's side of the election.
pub struct Elector {
    api: Api<Lease>,
    settings: LeaseSettings,
    /// The Lease as last seen, and when this replica first saw it so.
    observed: Mutex<Option<(Fingerprint, Instant)>>,
}

impl Elector {
    pub fn new(client: Client, settings: LeaseSettings) -> Self {
        Self {
            api: Api::namespaced(client, &settings.namespace),
            settings,
            observed: Mutex::new(None),
        }
    }

    /// How long this replica has seen the Lease exactly as `spec` is.
    fn unchanged_for(&self, spec: Option<&LeaseSpec>) -> Duration {
        let fingerprint = spec.map(|s| (s.holder_identity.clone(), s.renew_time.clone()));
        let mut observed = self.observed.lock().expect("lease observation lock");
        match observed.as_ref() {
            Some((seen, since)) if *seen == fingerprint => since.elapsed(),
            _ => {
                *observed = Some((fingerprint, Instant::now()));
                Duration::ZERO
            }
        }
    }

    /// Tries once to hold the Lease; true when this replica holds it afterwards.
    pub async fn try_hold(&self) -> Result<bool, kube::Error> {
        let now = Timestamp::now();
        let current = self.api.get_opt(&self.settings.name).await?;
        let spec = current.as_ref().and_then(|l| l.spec.as_ref());
        let step = next_step(spec, &self.settings.identity, self.unchanged_for(spec));
        let result = match (step, current) {
            (Step::Wait, _) => return Ok(false),
            (Step::Create, _) | (_, None) => {
                let lease = Lease {
                    metadata: ObjectMeta {
                        name: Some(self.settings.name.clone()),
                        namespace: Some(self.settings.namespace.clone()),
                        ..ObjectMeta::default()
                    },
                    spec: Some(held_by(None, &self.settings, now, true)),
                };
                self.api.create(&PostParams::default(), &lease).await
            }
            (step, Some(mut lease)) => {
                lease.spec = Some(held_by(
                    lease.spec.as_ref(),
                    &self.settings,
                    now,
                    step == Step::TakeOver,
                ));
                self.api
                    .replace(&self.settings.name, &PostParams::default(), &lease)
                    .await
            }
        };
        match result {
            Ok(_) => Ok(true),
            // Another replica wrote first: it holds the Lease now.
            Err(kube::Error::Api(status)) if status.is_conflict() || status.is_already_exists() => {
                Ok(false)
            }
            Err(error) => Err(error),
        }
    }

    /// [`Elector::try_hold`] bounded by one retry period, so a hung API server cannot keep a
    /// replica believing it still leads.
    async fn attempt(&self) -> Result<bool, String> {
        match tokio::time::timeout(self.settings.retry_period(), self.try_hold()).await {
            Ok(Ok(held)) => Ok(held),
            Ok(Err(error)) => Err(error.to_string()),
            Err(_) => Err("the API server did not answer in time".into()),
        }
    }

    /// Waits until this replica holds the Lease, or `None` when `stop` comes first.
    pub async fn acquire(&self, stop: impl std::future::Future<Output = ()>) -> Option<()> {
        tokio::pin!(stop);
        info!(lease = %self.settings.name, identity = %self.settings.identity, "waiting to lead");
        loop {
            match self.attempt().await {
                Ok(true) => {
                    info!(lease = %self.settings.name, identity = %self.settings.identity, "became the leader");
                    return Some(());
                }
                Ok(false) => {}
                Err(error) => warn!(error = %error, "cannot read or write the leader Lease"),
            }
            tokio::select! {
                () = tokio::time::sleep(self.settings.retry_period()) => {}
                () = &mut stop => return None,
            }
        }
    }

    /// Renews the Lease for as long as it can; returns when this replica no longer leads: another
    /// holds the Lease, or it could not be renewed within two thirds of its duration, counted
    /// from when the last successful renewal was sent. A standby waits a whole duration from
    /// when it saw that renewal, so the two never overlap.
    pub async fn hold(&self) {
        let deadline = self.settings.duration * 2 / 3;
        let mut renewed = Instant::now();
        loop {
            let left = deadline.saturating_sub(renewed.elapsed());
            tokio::time::sleep(self.settings.retry_period().min(left)).await;
            let sent = Instant::now();
            let left = deadline.saturating_sub(renewed.elapsed());
            if left.is_zero() {
                warn!(lease = %self.settings.name, "the leader Lease could not be renewed in time");
                return;
            }
            match tokio::time::timeout(left.min(self.settings.retry_period()), self.try_hold())
                .await
            {
                Ok(Ok(true)) => renewed = sent,
                Ok(Ok(false)) => {
                    warn!(lease = %self.settings.name, "another replica holds the Lease now");
                    return;
                }
                Ok(Err(error)) => warn!(error = %error, "cannot renew the leader Lease"),
                Err(_) => warn!("the API server did not answer a Lease renewal in time"),
            }
        }
    }

    /// Gives the Lease up, so another replica can take over without waiting for it to expire.
    pub async fn release(&self) {
        if tokio::time::timeout(self.settings.retry_period(), self.give_up())
            .await
            .is_err()
        {
            warn!(lease = %self.settings.name, "could not release the leader Lease in time");
        }
    }

    async fn give_up(&self) {
        let Ok(Some(mut lease)) = self.api.get_opt(&self.settings.name).await else {
            return;
        };
        let ours = lease
            .spec
            .as_ref()
            .and_then(|s| s.holder_identity.as_deref())
            == Some(&self.settings.identity);
        if !ours {
            return;
        }
        if let Some(spec) = lease.spec.as_mut() {
            spec.holder_identity = None;
        }
        match self
            .api
            .replace(&self.settings.name, &PostParams::default(), &lease)
            .await
        {
            Ok(_) => info!(lease = %self.settings.name, "released the leader Lease"),
            Err(error) => warn!(error = %error, "cannot release the leader Lease"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(seconds: i64) -> Timestamp {
        Timestamp::from_second(1_800_000_000 + seconds).unwrap()
    }

    fn lease(holder: Option<&str>, renewed: i64, duration: i32) -> LeaseSpec {
        LeaseSpec {
            holder_identity: holder.map(str::to_string),
            renew_time: Some(MicroTime(at(renewed))),
            lease_duration_seconds: Some(duration),
            ..LeaseSpec::default()
        }
    }

    const SECOND: Duration = Duration::from_secs(1);

    #[test]
    fn no_lease_is_created_and_our_own_is_renewed() {
        assert_eq!(next_step(None, "a", Duration::ZERO), Step::Create);
        assert_eq!(
            next_step(Some(&lease(Some("a"), 0, 15)), "a", 100 * SECOND),
            Step::Renew
        );
    }

    #[test]
    fn someone_elses_lease_is_respected_until_it_stops_changing_for_its_duration() {
        let theirs = lease(Some("b"), 0, 15);
        assert_eq!(next_step(Some(&theirs), "a", Duration::ZERO), Step::Wait);
        assert_eq!(next_step(Some(&theirs), "a", 15 * SECOND), Step::Wait);
        assert_eq!(next_step(Some(&theirs), "a", 16 * SECOND), Step::TakeOver);
    }

    #[test]
    fn a_released_lease_is_taken_at_once() {
        assert_eq!(
            next_step(Some(&lease(None, 0, 15)), "a", Duration::ZERO),
            Step::TakeOver
        );
        assert_eq!(
            next_step(Some(&lease(Some(""), 0, 15)), "a", Duration::ZERO),
            Step::TakeOver
        );
    }

    #[test]
    fn taking_over_starts_a_new_term_and_renewing_does_not() {
        let settings = LeaseSettings {
            namespace: "ns".into(),
            name: "flashback-operator".into(),
            identity: "a".into(),
            duration: Duration::from_secs(15),
        };
        let mut previous = lease(Some("b"), 0, 15);
        previous.lease_transitions = Some(2);
        let taken = held_by(Some(&previous), &settings, at(20), true);
        assert_eq!(taken.holder_identity.as_deref(), Some("a"));
        assert_eq!(taken.lease_transitions, Some(3));
        assert_eq!(taken.acquire_time, Some(MicroTime(at(20))));
        assert_eq!(taken.lease_duration_seconds, Some(15));

        let renewed = held_by(Some(&taken), &settings, at(25), false);
        assert_eq!(renewed.lease_transitions, Some(3));
        assert_eq!(renewed.acquire_time, Some(MicroTime(at(20))));
        assert_eq!(renewed.renew_time, Some(MicroTime(at(25))));
    }
}
