//! The statistics task, shared by every kind whose remote object has usage figures: on its
//! own interval, it reads the figures of every managed object with batched calls (one series
//! of batches per credential) and patches `status.stats` of only the objects whose figures
//! changed. A kind says what its figures are through [`Measured`].

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::NamespaceResourceScope;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Patch, PatchParams};
use kube::runtime::reflector::Store;
use kube::{Api, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::json;
use tracing::{debug, warn};

use crate::controller::context::Context;
use crate::controller::credentials::{self, Credentialed, Credentials, SecretName};
use crate::controller::periodic::{self, First, Passes};
use crate::crd::{BucketStats, FlashbackBucket, FlashbackRepository, RepositoryStats};
use flashback_client::ApiError;

/// A kind whose remote object has usage figures the status shows.
pub trait Measured:
    kube::Resource<Scope = NamespaceResourceScope, DynamicType = ()>
    + Credentialed
    + Clone
    + Debug
    + DeserializeOwned
    + Send
    + Sync
    + 'static
{
    /// The figures as the status holds them.
    type Stats: Serialize + Send + Sync;
    /// The figures as the API answers them, with the remote id they are about.
    type Fetched: Send + Sync;

    /// The remote object's id, once there is one.
    fn remote_id(&self) -> Option<&str>;
    /// Where that id was confirmed.
    fn recorded_with(&self) -> Option<&crate::crd::RecordedWith>;
    /// The figures the status holds now.
    fn stats(&self) -> Option<&Self::Stats>;
    /// The remote id an answer is about.
    fn fetched_id(fetched: &Self::Fetched) -> &str;
    /// The figures of `ids`, in batched calls.
    fn fetch(
        ctx: &Context,
        credentials: &Credentials,
        ids: &[String],
    ) -> impl std::future::Future<Output = Result<Vec<Self::Fetched>, ApiError>> + Send;
    /// The figures to write, or `None` when the status already holds these.
    fn changed(
        current: Option<&Self::Stats>,
        fetched: &Self::Fetched,
        now: &Time,
    ) -> Option<Self::Stats>;
}

/// Refreshes statistics of every object of `store` every `interval` until `stop` resolves.
/// Each credential's figures are read as their own task (see [`Passes`]): a tenant whose API
/// hangs delays only its own figures, and its pass still in flight is skipped by the ticks
/// that come meanwhile. Stopping cancels the passes in flight.
pub async fn run<K: Measured>(
    store: Store<K>,
    ctx: Arc<Context>,
    interval: Duration,
    stop: impl std::future::Future<Output = ()>,
) {
    let passes = Passes::default();
    periodic::every(&store, interval, First::AtOnce, stop, || async {
        let (started, skipped) = refresh(&store, &ctx, &passes);
        debug!(
            kind = K::kind(&()).as_ref(),
            started, skipped, "statistics pass"
        );
    })
    .await;
}

/// How many status writes of one credential's figures are in flight at once.
const WRITES_AT_ONCE: usize = 8;

/// One tick: starts reading the figures of every credential whose previous pass is done, and
/// returns at once how many (started, skipped because still in flight).
fn refresh<K: Measured>(
    store: &Store<K>,
    ctx: &Arc<Context>,
    passes: &Passes<SecretName>,
) -> (usize, usize) {
    let groups = by_credentials(
        &store.state(),
        ctx.settings.default_credentials_secret.as_ref(),
    );
    let (mut started, mut skipped) = (0, 0);
    for (secret, objects) in groups {
        let pass = refresh_credential(ctx.clone(), secret.clone(), objects);
        if passes.start(secret.clone(), pass) {
            started += 1;
        } else {
            skipped += 1;
            debug!(secret = %secret, kind = K::kind(&()).as_ref(), "the previous statistics pass of this credential is still in flight");
        }
    }
    (started, skipped)
}

/// The statistics of the objects that use one credential.
async fn refresh_credential<K: Measured>(
    ctx: Arc<Context>,
    secret: SecretName,
    objects: Vec<Arc<K>>,
) {
    let ctx = ctx.as_ref();
    let credentials = match ctx.credentials_of(&objects[0]).await {
        Ok(Ok(credentials)) => credentials,
        // The reconciler reports missing or broken credentials on each object.
        Ok(Err(problem)) => {
            debug!(secret = %secret, problem = %problem, "no statistics without credentials");
            return;
        }
        Err(error) => {
            warn!(secret = %secret, error = %error, "cannot read the credentials Secret");
            return;
        }
    };
    // Only ids confirmed with these very credentials: an id another server answered, kept
    // while the object moved to shared credentials, must not read someone else's figures.
    let identity = crate::controller::ownership::Identity::new(&credentials.api_url, &secret);
    let objects: Vec<Arc<K>> = objects
        .into_iter()
        .filter(|o| identity.confirmed(o.recorded_with()))
        .collect();
    if objects.is_empty() {
        return;
    }
    let ids: Vec<String> = objects
        .iter()
        .filter_map(|o| o.remote_id().map(str::to_string))
        .collect();
    let figures = match K::fetch(ctx, &credentials, &ids).await {
        Ok(figures) => figures,
        Err(error) => {
            warn!(secret = %secret, error = %error, kind = K::kind(&()).as_ref(), "cannot read statistics");
            return;
        }
    };
    let by_id: BTreeMap<&str, &K::Fetched> =
        figures.iter().map(|f| (K::fetched_id(f), f)).collect();
    let now = Time(k8s_openapi::jiff::Timestamp::now());
    let writes: Vec<_> = objects
        .iter()
        .filter_map(|object| {
            let fetched = by_id.get(object.remote_id()?)?;
            Some((object, K::changed(object.stats(), fetched, &now)?))
        })
        // Figures wait while objects of their namespace wait for their turn (a burst of
        // creates parks thousands): what people asked for comes first, and 10,000 first
        // figures written during such a burst would add a write to every create. They are
        // written by the first pass that finds the namespace's queue empty.
        .filter(|(object, _)| {
            let namespace = object.namespace().unwrap_or_default();
            ctx.fairness.parked_in(&namespace) == 0
        })
        .collect();
    // Side by side: one after another, 10,000 first figures took longer than an interval.
    futures::stream::iter(writes)
        .for_each_concurrent(WRITES_AT_ONCE, |(object, stats)| async move {
            write(ctx, object.as_ref(), &stats).await
        })
        .await;
}

/// Objects that have a remote object, grouped by the Secret their credentials come from.
fn by_credentials<K: Measured>(
    objects: &[Arc<K>],
    default: Option<&SecretName>,
) -> BTreeMap<SecretName, Vec<Arc<K>>> {
    let mut groups: BTreeMap<SecretName, Vec<Arc<K>>> = BTreeMap::new();
    for object in objects {
        if object.meta().deletion_timestamp.is_some() || object.remote_id().is_none() {
            continue;
        }
        if let Ok(secret) = credentials::secret_for(object, default) {
            groups.entry(secret).or_default().push(object.clone());
        }
    }
    groups
}

async fn write<K: Measured>(ctx: &Context, object: &K, stats: &K::Stats) {
    let api: Api<K> = Api::namespaced(ctx.kube.clone(), &object.namespace().unwrap_or_default());
    let patch = json!({ "status": { "stats": stats } });
    if let Err(error) = api
        .patch_status(
            &object.name_any(),
            &PatchParams::default(),
            &Patch::Merge(patch),
        )
        .await
    {
        warn!(name = object.name_any(), error = %error, "cannot write statistics");
    }
}

/// A figure as the status holds it: capped to what an int64 can hold.
fn capped(value: u128) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

fn capped_signed(value: i128) -> i64 {
    i64::try_from(value).unwrap_or(if value < 0 { i64::MIN } else { i64::MAX })
}

impl Measured for FlashbackRepository {
    type Stats = RepositoryStats;
    type Fetched = flashback_client::RepoStats;

    fn remote_id(&self) -> Option<&str> {
        self.status.as_ref()?.repo_id.as_deref()
    }

    fn recorded_with(&self) -> Option<&crate::crd::RecordedWith> {
        self.status.as_ref()?.recorded_with.as_ref()
    }

    fn stats(&self) -> Option<&RepositoryStats> {
        self.status.as_ref()?.stats.as_ref()
    }

    fn fetched_id(fetched: &Self::Fetched) -> &str {
        &fetched.repo_id
    }

    async fn fetch(
        ctx: &Context,
        credentials: &Credentials,
        ids: &[String],
    ) -> Result<Vec<Self::Fetched>, ApiError> {
        ctx.remote.stats(credentials, ids).await
    }

    fn changed(
        current: Option<&RepositoryStats>,
        fetched: &Self::Fetched,
        now: &Time,
    ) -> Option<RepositoryStats> {
        changed(current, fetched, now)
    }
}

impl Measured for FlashbackBucket {
    type Stats = BucketStats;
    type Fetched = flashback_client::BucketStats;

    fn remote_id(&self) -> Option<&str> {
        self.status.as_ref()?.bucket_id.as_deref()
    }

    fn recorded_with(&self) -> Option<&crate::crd::RecordedWith> {
        self.status.as_ref()?.recorded_with.as_ref()
    }

    fn stats(&self) -> Option<&BucketStats> {
        self.status.as_ref()?.stats.as_ref()
    }

    fn fetched_id(fetched: &Self::Fetched) -> &str {
        &fetched.bucket_id
    }

    async fn fetch(
        ctx: &Context,
        credentials: &Credentials,
        ids: &[String],
    ) -> Result<Vec<Self::Fetched>, ApiError> {
        ctx.remote.client_for(credentials)?.bucket_stats(ids).await
    }

    fn changed(
        current: Option<&BucketStats>,
        fetched: &Self::Fetched,
        now: &Time,
    ) -> Option<BucketStats> {
        let next = BucketStats {
            total_count: capped(fetched.total_count),
            total_upload_bytes: capped(fetched.total_upload_bytes),
            total_download_bytes: capped(fetched.total_download_bytes),
            total_size_change: capped_signed(fetched.total_size_change),
            observed_at: now.clone(),
        };
        let figures = |s: &BucketStats| {
            (
                s.total_count,
                s.total_upload_bytes,
                s.total_download_bytes,
                s.total_size_change,
            )
        };
        (current.map(figures) != Some(figures(&next))).then_some(next)
    }
}

/// The statistics to write, or `None` when the figures are the ones already in the status.
/// Figures beyond what the status can hold (2^63 - 1) are capped there.
pub fn changed(
    current: Option<&RepositoryStats>,
    fetched: &flashback_client::RepoStats,
    now: &Time,
) -> Option<RepositoryStats> {
    let next = RepositoryStats {
        total_upload_bytes: capped(fetched.total_upload_bytes),
        total_download_bytes: capped(fetched.total_download_bytes),
        total_size_change: capped_signed(fetched.total_size_change),
        observed_at: now.clone(),
    };
    let same = current.is_some_and(|c| {
        (
            c.total_upload_bytes,
            c.total_download_bytes,
            c.total_size_change,
        ) == (
            next.total_upload_bytes,
            next.total_download_bytes,
            next.total_size_change,
        )
    });
    (!same).then_some(next)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures;

    fn fetched(upload: u128, download: u128, change: i128) -> flashback_client::RepoStats {
        flashback_client::RepoStats {
            repo_id: "r1".into(),
            total_upload_bytes: upload,
            total_download_bytes: download,
            total_size_change: change,
        }
    }

    #[test]
    fn first_figures_and_changed_figures_are_written() {
        let now = fixtures::time("2026-11-26T20:00:00Z");
        let first = changed(None, &fetched(10, 2, -5), &now).expect("first figures are written");
        assert_eq!(
            (
                first.total_upload_bytes,
                first.total_download_bytes,
                first.total_size_change
            ),
            (10, 2, -5)
        );
        assert_eq!(first.observed_at, now);

        let later = fixtures::time("2026-11-26T20:05:00Z");
        assert_eq!(
            changed(Some(&first), &fetched(10, 2, -5), &later),
            None,
            "same figures, no write"
        );
        let next = changed(Some(&first), &fetched(11, 2, -5), &later)
            .expect("changed figures are written");
        assert_eq!(next.total_upload_bytes, 11);
        assert_eq!(next.observed_at, later);
    }

    #[test]
    fn figures_beyond_int64_are_capped() {
        let now = fixtures::time("2026-11-26T20:00:00Z");
        let huge = changed(None, &fetched(u128::MAX, 0, i128::MIN), &now).unwrap();
        assert_eq!(huge.total_upload_bytes, i64::MAX);
        assert_eq!(huge.total_size_change, i64::MIN);
    }

    #[test]
    fn only_objects_with_a_remote_repo_are_asked_for_and_grouped_by_secret() {
        let mut a = fixtures::repo("team-a", "a");
        a.status = Some(fixtures::status_with_id("ra"));
        let mut b = fixtures::repo("team-a", "b");
        b.status = Some(fixtures::status_with_id("rb"));
        let not_created = fixtures::repo("team-a", "new");
        let mut other = fixtures::repo("team-b", "c");
        other.status = Some(fixtures::status_with_id("rc"));
        let mut deleting = fixtures::repo("team-a", "gone");
        deleting.status = Some(fixtures::status_with_id("rg"));
        deleting.metadata.deletion_timestamp = Some(fixtures::time("2026-11-26T20:00:00Z"));

        let repos: Vec<_> = [a, b, not_created, other, deleting]
            .into_iter()
            .map(Arc::new)
            .collect();
        let groups = by_credentials(&repos, None);
        let names: Vec<(String, Vec<String>)> = groups
            .into_iter()
            .map(|(secret, repos)| {
                (
                    secret.to_string(),
                    repos.iter().map(|r| r.name_any()).collect(),
                )
            })
            .collect();
        assert_eq!(
            names,
            [
                (
                    "team-a/flashback-token".to_string(),
                    vec!["a".to_string(), "b".to_string()]
                ),
                ("team-b/flashback-token".to_string(), vec!["c".to_string()]),
            ]
        );
    }

    #[test]
    fn bucket_figures_are_written_when_they_change_and_capped() {
        let now = fixtures::time("2026-11-28T13:00:00Z");
        let fetched = |count: u128| flashback_client::BucketStats {
            bucket_id: "b1".into(),
            total_count: count,
            total_upload_bytes: 10,
            total_download_bytes: u128::MAX,
            total_size_change: -3,
        };
        let first = <FlashbackBucket as Measured>::changed(None, &fetched(5), &now).unwrap();
        assert_eq!(
            (
                first.total_count,
                first.total_upload_bytes,
                first.total_download_bytes,
                first.total_size_change
            ),
            (5, 10, i64::MAX, -3)
        );
        let later = fixtures::time("2026-11-28T13:05:00Z");
        assert_eq!(
            <FlashbackBucket as Measured>::changed(Some(&first), &fetched(5), &later),
            None
        );
        assert_eq!(
            <FlashbackBucket as Measured>::changed(Some(&first), &fetched(6), &later)
                .unwrap()
                .total_count,
            6
        );
    }
}
